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

use serde::Deserialize;

mod de;
mod error;
mod keys;
mod limits;
mod schema;
mod validate;
mod values;

pub use de::{parse_address, parse_log_target};
pub use error::*;
use keys::{KeyProblem, key_line, rule_key_at, unknown_keys};
pub use limits::{MAX_CACHE_FILE, MAX_CONNECTIONS, MAX_HEADER_SIZE, MAX_RANGES, MAX_TIMEOUT};
pub use schema::{Config, Rule, key, rule_key};
pub use validate::{
    RULE_FORBIDDEN_HEADERS, is_field_value, is_tchar, rule_header_problem, same_socket,
};
pub use values::{Dur, Encoding, EngineChoice, IndexNames, Symlinks, Workers, parse_duration};

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
    /// Every problem is reported (up to [`MAX_ERRORS`]), not the first:
    /// a syntax error stops the reading, but past the syntax every unknown
    /// key, every value that cannot be read and every value that is not
    /// allowed is named, each with its line.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
        let parse_error = |source: toml::de::Error| ConfigError::Parse {
            path: name.to_string(),
            line: source.span().map(|s| line_of(s.start)),
            source: Box::new(source),
        };
        // Syntax first, then the keys (so a typo is named as one, with the
        // key it was probably meant to be), then the values.
        let mut doc = toml::de::DeTable::parse(text).map_err(|e| match e.span() {
            // toml's message names no key; the span is the second one.
            Some(s) if e.message().starts_with("duplicate key") => ConfigError::DuplicateKey {
                path: name.to_string(),
                line: line_of(s.start),
                key: text[s.clone()].to_string(),
                first: key_line(text, text[s].trim_matches('"')),
            },
            _ => parse_error(e),
        })?;
        if doc.get_ref().is_empty() {
            return Err(ConfigError::Empty {
                path: name.to_string(),
            });
        }
        let mut errors = Vec::new();
        // Keys left out of the reading below: unknown ones, and a `rules`
        // whose entries cannot be read.
        let mut drop: Vec<String> = Vec::new();
        for problem in unknown_keys(doc.get_ref()) {
            match problem {
                KeyProblem::Unknown(u) => {
                    drop.push(u.table.unwrap_or(u.key.as_str()).to_string());
                    errors.push(ConfigError::UnknownKey {
                        path: name.to_string(),
                        line: Some(line_of(u.at)),
                        table: u.table,
                        key: u.key,
                        suggestion: u.suggestion,
                        misplaced: u.misplaced,
                    });
                }
                KeyProblem::Rules(r) => {
                    drop.push(r.key.to_string());
                    errors.push(ConfigError::Shape {
                        path: name.to_string(),
                        line: Some(line_of(r.at)),
                        key: r.key,
                        message: r.message,
                    });
                }
            }
        }
        let cfg = read_values(&mut doc, &mut drop, &mut errors, parse_error);
        if let Some(cfg) = &cfg {
            for source in cfg.validate() {
                // A value that could not be read stands at its default:
                // checked against others, it would blame the wrong value.
                if drop.iter().any(|d| d == source.key()) {
                    continue;
                }
                errors.push(ConfigError::Invalid {
                    path: name.to_string(),
                    line: source
                        .rule_key()
                        .and_then(|(rule, header)| rule_key_at(doc.get_ref(), rule, header))
                        .map(line_of)
                        .or_else(|| key_line(text, source.key())),
                    source,
                });
            }
        }
        // In the order of the file, whichever step found them.
        errors.sort_by_key(|e| e.line().unwrap_or(usize::MAX));
        match (cfg, ConfigError::several(errors)) {
            (_, Some(e)) => Err(e),
            (Some(cfg), None) => Ok(cfg),
            // Not reached: no config is read only after an error.
            (None, None) => Err(ConfigError::Empty {
                path: name.to_string(),
            }),
        }
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

/// The values of `doc` (`Config::parse`): each value that cannot be read
/// is reported into `errors`, its key added to `drop`, and the rest read
/// again, so that one bad value does not hide the next. `None` when the
/// errors reach `MAX_ERRORS` or one names no key to drop.
fn read_values(
    doc: &mut toml::Spanned<toml::de::DeTable<'_>>,
    drop: &mut Vec<String>,
    errors: &mut Vec<ConfigError>,
    parse_error: impl Fn(toml::de::Error) -> ConfigError,
) -> Option<Config> {
    loop {
        let all = std::mem::take(doc.get_mut());
        *doc.get_mut() = all
            .into_iter()
            .filter(|(k, _)| !drop.iter().any(|d| d == k.get_ref()))
            .collect();
        if errors.len() >= MAX_ERRORS {
            break None;
        }
        match Config::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(cfg) => break Some(cfg),
            Err(e) => {
                let bad = bad_key(doc.get_ref(), &e);
                errors.push(parse_error(e));
                match bad {
                    Some(k) if !drop.contains(&k) => drop.push(k),
                    _ => break None,
                }
            }
        }
    }
}

/// The top-level key a reading error is about: the key its message starts
/// with (each reader's message does: `workers: expected ...`), else the
/// key whose value holds the error's position.
fn bad_key(doc: &toml::de::DeTable<'_>, e: &toml::de::Error) -> Option<String> {
    let named = e.message().split(':').next().unwrap_or("");
    if let Some((k, _)) = doc.iter().find(|(k, _)| k.get_ref() == named) {
        return Some(k.get_ref().to_string());
    }
    let at = e.span()?.start;
    doc.iter()
        .find(|(k, v)| (k.span().start..v.span().end.max(k.span().end)).contains(&at))
        .map(|(k, _)| k.get_ref().to_string())
}

#[cfg(test)]
mod tests;
