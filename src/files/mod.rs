//! The static file responder: request target -> what to send. It never touches
//! a socket or the clock; the only OS access is opening files beneath the root
//! (`os.rs`). Bodies are described, not copied: an open file and a range.

pub mod mime;
pub mod os;
pub mod path;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::http::Status;
use os::{Opened, RootDir};
use path::PathError;

/// A response body as the engines see it.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    /// Small fixed bytes (built-in error pages).
    Static(&'static [u8]),
    /// `len` bytes of `file` from `offset`.
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the responder decided.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    pub content_type: Option<&'static str>,
    pub last_modified: Option<SystemTime>,
    /// For redirects: the Location value.
    pub location: Option<String>,
    pub body: Body,
}

impl Reply {
    fn status(status: Status) -> Reply {
        Reply {
            status,
            content_type: Some(mime::HTML),
            last_modified: None,
            location: None,
            body: Body::Static(status.default_page()),
        }
    }
}

/// The parts of a request the responder looks at.
#[derive(Debug, Clone, Copy)]
pub struct FileRequest<'a> {
    pub target: &'a str,
}

/// Responder settings, from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub index: String,
    pub serve_dotfiles: bool,
    pub error_page_404: String,
}

#[derive(Debug)]
pub struct Responder {
    root: RootDir,
    settings: Settings,
    /// Test hook (`TANDEM_TEST_PANIC_TARGET`, debug builds only): a request
    /// for exactly this target panics the worker, so tests can prove a dead
    /// worker is replaced.
    #[cfg(debug_assertions)]
    panic_target: Option<String>,
}

impl Responder {
    pub fn new(root: &Path, settings: Settings) -> io::Result<Responder> {
        let root = RootDir::open(root)
            .map_err(|e| io::Error::new(e.kind(), format!("root {}: {e}", root.display())))?;
        Ok(Responder {
            root,
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

    /// Answer a GET or HEAD for `req.target`.
    pub fn respond(&self, req: FileRequest<'_>) -> Reply {
        #[cfg(debug_assertions)]
        if self.panic_target.as_deref() == Some(req.target) {
            panic!("test hook: request for {}", req.target);
        }
        let p = match path::resolve(req.target, self.settings.serve_dotfiles) {
            Ok(p) => p,
            Err(PathError::Bad) => return Reply::status(Status::BAD_REQUEST),
            Err(PathError::NotFound) => return self.not_found(),
        };
        match self.root.open_beneath(&p.rel) {
            Ok(Opened::File { file, len, mtime }) => {
                if p.trailing_slash && !p.rel.is_empty() {
                    // "/file.html/" names a directory that is not there.
                    return self.not_found();
                }
                file_reply(file, len, mtime, &p.rel)
            }
            Ok(Opened::Dir) => {
                if !p.trailing_slash {
                    return Reply {
                        location: Some(p.slash_redirect()),
                        ..Reply::status(Status::MOVED_PERMANENTLY)
                    };
                }
                let idx = if p.rel.is_empty() {
                    self.settings.index.clone()
                } else {
                    format!("{}/{}", p.rel, self.settings.index)
                };
                match self.root.open_beneath(&idx) {
                    Ok(Opened::File { file, len, mtime }) => file_reply(file, len, mtime, &idx),
                    Ok(_) => self.not_found(),
                    Err(e) => self.io_error(e),
                }
            }
            Ok(Opened::Other) => self.not_found(),
            Err(e) => self.io_error(e),
        }
    }

    fn io_error(&self, e: io::Error) -> Reply {
        match e.kind() {
            io::ErrorKind::PermissionDenied => Reply::status(Status::FORBIDDEN),
            io::ErrorKind::NotFound | io::ErrorKind::InvalidInput => self.not_found(),
            _ if e.raw_os_error() == Some(libc::ENAMETOOLONG) => self.not_found(),
            _ => {
                crate::error!("open: {e}");
                Reply::status(Status::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// 404, with the root's error page as the body when there is one.
    pub fn not_found(&self) -> Reply {
        if !self.settings.error_page_404.is_empty()
            && let Ok(Opened::File { file, len, .. }) = self
                .root
                .open_beneath(self.settings.error_page_404.trim_start_matches('/'))
        {
            return Reply {
                status: Status::NOT_FOUND,
                content_type: Some(mime::content_type(&self.settings.error_page_404)),
                last_modified: None,
                location: None,
                body: Body::File {
                    file: Arc::new(file),
                    offset: 0,
                    len,
                },
            };
        }
        Reply::status(Status::NOT_FOUND)
    }
}

fn file_reply(file: File, len: u64, mtime: SystemTime, name: &str) -> Reply {
    Reply {
        status: Status::OK,
        content_type: Some(mime::content_type(name.rsplit('/').next().unwrap_or(name))),
        last_modified: Some(mtime),
        location: None,
        body: if len == 0 {
            Body::Empty
        } else {
            Body::File {
                file: Arc::new(file),
                offset: 0,
                len,
            }
        },
    }
}
