//! tandem: a static-file HTTP/1.1 server daemon with two I/O engines.
//!
//! Modules, each using only those below it (no cycles):
//!
//! - `daemon`: listeners, workers, signals, reload and stop, pidfile,
//!   privileges, sd_notify; reads `config` and starts `engine` workers.
//! - `engine::{epoll, uring}`: one loop per worker thread, driving an
//!   `http::Conn` per connection and sending the segments it hands out.
//! - `tls`: the sans-IO TLS layer (rustls) between an engine and `Conn`,
//!   the `Session` engines hold, certificates by SNI.
//! - `h2`: the sans-IO HTTP/2 connection (`H2Conn`) beside `Conn`, and
//!   `Http`, the one of the two a connection speaks.
//! - `files`: the static file responder, an `http::Respond`.
//! - `http`: sans-IO HTTP/1.1: parser, `Conn`, the response model
//!   (`Reply`, `Body`, `Segment`). No socket, clock or global lock.
//! - `config`: the TOML schema, defaults and validation.
//! - `metrics`: per-worker counters and their Prometheus text (no I/O).
//! - `log`: error and access logs; `sys`: system call results as `io::Result`.

pub mod config;
pub mod daemon;
pub mod engine;
pub mod files;
pub mod h2;
pub mod http;
pub mod log;
pub mod metrics;
pub mod sys;
pub mod tls;

/// The module order above, checked: a module names (`crate::x`) only the
/// modules listed after it, so there is no cycle among them.
#[cfg(test)]
mod layers {
    use std::path::Path;

    const ORDER: [&str; 10] = [
        "daemon", "engine", "tls", "h2", "files", "http", "config", "metrics", "log", "sys",
    ];

    fn sources(p: &Path, out: &mut Vec<std::path::PathBuf>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                sources(&e.unwrap().path(), out);
            }
        } else if p.is_file() && p.extension().is_some_and(|e| e == "rs") {
            out.push(p.to_path_buf());
        }
    }

    #[test]
    fn modules_only_use_modules_below_them() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut bad = Vec::new();
        for (i, m) in ORDER.iter().enumerate() {
            let mut files = Vec::new();
            sources(&src.join(m), &mut files);
            sources(&src.join(format!("{m}.rs")), &mut files);
            assert!(!files.is_empty(), "no sources for {m}");
            for f in files {
                let text =
                    std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                for (at, _) in text.match_indices("crate::") {
                    let name: String = text[at + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if let Some(j) = ORDER.iter().position(|o| *o == name)
                        && j < i
                    {
                        bad.push(format!("{}: {m} uses {name}", f.display()));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }
}
