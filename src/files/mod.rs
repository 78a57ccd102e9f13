//! The static file responder: request target -> what to send. It never touches
//! a socket or the clock; the only OS access is opening files beneath the root
//! (`os.rs`). Bodies are described, not copied: an open file and a range.

pub mod mime;
pub mod os;
pub mod path;

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use crate::config::{Config, Encoding, Symlinks};
use crate::http::{Body, Notes, Now, Reply, Request, Respond, Status};
use crate::log::Level;
use os::{Opened, RootDir};
use path::PathError;

/// Responder settings, from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Names tried, in order, for a directory.
    pub index: Vec<String>,
    pub serve_dotfiles: bool,
    /// Error page by status, a path under the root.
    pub error_pages: Vec<(u16, String)>,
    pub autoindex: bool,
    /// "" for none.
    pub fallback: String,
    pub default_type: String,
    /// Extension (lower case) -> Content-Type.
    pub mime_types: Vec<(String, String)>,
    pub precompressed: Vec<Encoding>,
    pub max_ranges: usize,
    pub symlinks: Symlinks,
    /// Compiled rules, in order.
    pub rules: Vec<(globset::GlobMatcher, Vec<(String, String)>)>,
}

impl Settings {
    /// From a validated config (so every glob compiles).
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            index: cfg.index.0.clone(),
            serve_dotfiles: cfg.serve_dotfiles,
            error_pages: cfg.error_pages(),
            autoindex: cfg.autoindex,
            fallback: cfg.fallback.trim_start_matches('/').to_string(),
            default_type: cfg.default_type.clone(),
            mime_types: cfg
                .mime_types
                .iter()
                .map(|(e, t)| (e.to_ascii_lowercase(), t.clone()))
                .collect(),
            precompressed: cfg.precompressed.clone(),
            max_ranges: cfg.max_ranges,
            symlinks: cfg.symlinks,
            rules: cfg
                .rules
                .iter()
                .filter_map(|r| {
                    let headers = r.headers.iter().map(|(n, v)| (n.clone(), v.clone()));
                    Some((r.glob().ok()?, headers.collect()))
                })
                .collect(),
        }
    }
}

#[derive(Debug)]
pub struct Responder {
    root: RootDir,
    settings: Settings,
    types: mime::Types,
    /// Test hook (`TANDEM_TEST_PANIC_TARGET`, debug builds only): a request
    /// for exactly this target panics the worker, so tests can prove a dead
    /// worker is replaced.
    #[cfg(debug_assertions)]
    panic_target: Option<String>,
}

impl Responder {
    pub fn new(root: &Path, settings: Settings) -> io::Result<Responder> {
        let root = RootDir::open(root, settings.symlinks)
            .map_err(|e| io::Error::new(e.kind(), format!("root {}: {e}", root.display())))?;
        Ok(Responder {
            root,
            types: mime::Types::new(&settings.mime_types, &settings.default_type),
            settings,
            #[cfg(debug_assertions)]
            panic_target: None,
        })
    }

    /// Arm the test hook: a request for exactly `target` panics.
    #[cfg(debug_assertions)]
    pub fn with_panic_target(mut self, target: Option<String>) -> Responder {
        self.panic_target = target.filter(|t| !t.is_empty());
        self
    }

    fn io_error(&self, e: io::Error, notes: &mut Notes) -> Reply {
        match e.kind() {
            io::ErrorKind::PermissionDenied => Reply::status(Status::FORBIDDEN),
            io::ErrorKind::NotFound | io::ErrorKind::InvalidInput => self.not_found(),
            _ if e.raw_os_error() == Some(libc::ENAMETOOLONG) => self.not_found(),
            _ => {
                crate::note!(notes, Level::Error, "open: {e}");
                Reply::status(Status::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// 404, with the root's error page as the body when there is one.
    pub fn not_found(&self) -> Reply {
        self.error(Status::NOT_FOUND)
    }

    /// An error response, with the configured page for its status as the
    /// body when there is one (and it can be opened).
    pub fn error(&self, status: Status) -> Reply {
        if let Some((_, page)) = self
            .settings
            .error_pages
            .iter()
            .find(|(s, _)| *s == status.0)
            && let Ok(Opened::File { file, len, .. }) =
                self.root.open_beneath(page.trim_start_matches('/'))
        {
            return Reply::new(status, Body::file(file, len))
                .with_header("Content-Type", self.types.header_value(page));
        }
        Reply::status(status)
    }
}

impl Respond for Responder {
    /// Answer a GET or HEAD for `req.target`.
    fn respond(&self, req: &Request<'_>, _now: &Now, notes: &mut Notes) -> Reply {
        #[cfg(debug_assertions)]
        if self.panic_target.as_deref() == Some(req.target) {
            panic!("test hook: request for {}", req.target);
        }
        let p = match path::resolve(req.target, self.settings.serve_dotfiles) {
            Ok(p) => p,
            Err(PathError::Bad) => return Reply::status(Status::BAD_REQUEST),
            Err(PathError::NotFound) => return self.not_found(),
        };
        let mut io_error = |e| self.io_error(e, notes);
        match self.root.open_beneath(&p.rel) {
            Ok(Opened::File { file, len, mtime }) => {
                if p.trailing_slash && !p.rel.is_empty() {
                    // "/file.html/" names a directory that is not there.
                    return self.not_found();
                }
                file_reply(&self.types, file, len, mtime, &p.rel)
            }
            Ok(Opened::Dir) => {
                if !p.trailing_slash {
                    return Reply::status(Status::MOVED_PERMANENTLY)
                        .with_header("Location", p.slash_redirect());
                }
                let idx = if p.rel.is_empty() {
                    self.settings.index[0].clone()
                } else {
                    format!("{}/{}", p.rel, self.settings.index[0])
                };
                match self.root.open_beneath(&idx) {
                    Ok(Opened::File { file, len, mtime }) => {
                        file_reply(&self.types, file, len, mtime, &idx)
                    }
                    Ok(_) => self.not_found(),
                    Err(e) => io_error(e),
                }
            }
            Ok(Opened::Other) => self.not_found(),
            Err(e) => io_error(e),
        }
    }
}

fn file_reply(types: &mime::Types, file: File, len: u64, mtime: SystemTime, name: &str) -> Reply {
    Reply::new(Status::OK, Body::file(file, len))
        .with_header("Content-Type", types.header_value(name))
        .with_header("Last-Modified", httpdate::fmt_http_date(mtime))
}
