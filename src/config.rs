//! The TOML configuration: schema, defaults and validation.
//!
//! Every key has a default, so no config file at all runs on the defaults;
//! but a file that sets nothing (empty, or only comments) is an error, as it
//! is for nginx: it is what an editor or a config tool caught mid-write
//! leaves behind, and reloading it would move the server to 127.0.0.1:8080.
//! Unknown keys are errors that name their line.
//!
//! A file is read in three steps, each in its own module: its keys are
//! checked against the schema (`keys`: unknown keys with a suggestion, the
//! shape of `[[rules]]`), its values are read by each key's reader (`de`,
//! driven by the tables in `schema`), and the values are checked against
//! each other (`validate`). Every error names its file, line and key
//! (`error`).

use std::collections::BTreeMap;
use std::path::Path;

mod de;
mod error;
mod keys;
mod schema;
mod validate;

pub use de::parse_address;
pub use error::*;
use keys::{KeyProblem, key_line, rule_key_at, unknown_keys};
pub use schema::{
    Config, Dur, Encoding, EngineChoice, IndexNames, Rule, Symlinks, Workers, key, parse_duration,
    rule_key,
};
pub use validate::{
    MAX_CACHE_FILE, MAX_CONNECTIONS, MAX_HEADER_SIZE, MAX_RANGES, MAX_TIMEOUT,
    RULE_FORBIDDEN_HEADERS, is_field_value, is_tchar, rule_header_problem, same_socket,
};

// The log targets are the log's own type: config depends on log, never the
// reverse. Re-exported so `config::LogTarget` keeps naming it.
pub use crate::log::{LogFormat, LogTarget};

impl Config {
    /// Load and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_source(path).map(|(c, _)| c)
    }

    /// Load and validate a file, and keep its text to point at lines later.
    pub fn load_with_source(path: &Path) -> Result<(Config, Source), ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: name.clone(),
            source: e,
        })?;
        let cfg = Self::parse(&text, &name)?;
        Ok((cfg, Source { path: name, text }))
    }

    /// Parse and validate TOML text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
        let parse_error = |source: toml::de::Error| ConfigError::Parse {
            path: name.to_string(),
            line: source.span().map(|s| line_of(s.start)),
            source: Box::new(source),
        };
        // Syntax first, then the keys (so a typo is named as one, with the
        // key it was probably meant to be), then the values.
        let doc = toml::de::DeTable::parse(text).map_err(parse_error)?;
        if doc.get_ref().is_empty() {
            return Err(ConfigError::Empty {
                path: name.to_string(),
            });
        }
        match unknown_keys(doc.get_ref()) {
            Ok(()) => {}
            Err(KeyProblem::Unknown(u)) => {
                return Err(ConfigError::UnknownKey {
                    path: name.to_string(),
                    line: Some(line_of(u.at)),
                    table: u.table,
                    key: u.key,
                    suggestion: u.suggestion,
                    misplaced: u.misplaced,
                });
            }
            Err(KeyProblem::Rules(r)) => {
                return Err(ConfigError::Shape {
                    path: name.to_string(),
                    line: Some(line_of(r.at)),
                    key: r.key,
                    message: r.message,
                });
            }
        }
        let cfg: Config = toml::from_str(text).map_err(parse_error)?;
        cfg.validate().map_err(|source| ConfigError::Invalid {
            path: name.to_string(),
            line: source
                .rule_key()
                .and_then(|(rule, header)| rule_key_at(doc.get_ref(), rule, header))
                .map(line_of)
                .or_else(|| key_line(text, source.key())),
            source,
        })?;
        Ok(cfg)
    }

    /// `log_level` (kept for its callers: the field is typed now).
    pub fn level(&self) -> crate::log::Level {
        self.log_level
    }

    /// The error pages by status, the old `error_page_404` included.
    pub fn error_pages(&self) -> Vec<(u16, String)> {
        let mut pages: BTreeMap<u16, String> = self
            .error_pages
            .iter()
            .filter_map(|(s, p)| Some((s.parse().ok()?, p.clone())))
            .collect();
        if let Some(p) = &self.error_page_404 {
            pages.insert(404, p.clone());
        }
        pages.retain(|_, p| !p.is_empty());
        pages.into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
