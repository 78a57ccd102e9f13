//! The responder's settings, taken from a validated config once per
//! generation and shared by its workers.

use std::time::Duration;

use crate::config::{Config, Encoding, Symlinks};

use super::compress;

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
    /// Bytes of the small-file cache per worker (0: off).
    pub cache_budget: usize,
    /// Largest file the cache keeps.
    pub cache_max_file: u64,
    /// Largest file held as bytes only to be sent as it is
    /// (`Site::held_as_bytes`): `COPY_MAX` when every listener is
    /// plain (bodies go out by sendfile); `COPY_MAX_H2C` with HTTP/2
    /// cleartext on; with TLS listeners, which copy every body into
    /// records anyway (no kernel TLS), `cache_max_file`.
    pub copy_max: u64,
    /// Open files each worker keeps (`fdcache`; 0: off).
    pub open_file_cache: usize,
    /// How long a cached answer is served before the path is looked up again.
    pub cache_revalidate: Duration,
    /// Compiled rules, in order.
    pub rules: Vec<(globset::GlobMatcher, Vec<(String, String)>)>,
    /// On-the-fly compression of cached files.
    pub compression: compress::Compression,
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
            cache_budget: (cfg.cache_size / cfg.workers.resolve().max(1) as u64) as usize,
            cache_max_file: cfg.cache_max_file,
            copy_max: if !cfg.tls_listen.is_empty() {
                cfg.cache_max_file
            } else if cfg.http2_cleartext {
                COPY_MAX_H2C
            } else {
                COPY_MAX
            },
            open_file_cache: cfg.open_file_cache,
            cache_revalidate: cfg.cache_revalidate.0,
            compression: compress::Compression::from_config(cfg),
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

/// `copy_max` without TLS listeners.
/// A body in memory is copied into the socket's buffers on every send;
/// sendfile hands the kernel the page cache's pages, which over loopback
/// only the reader copies. Measured (`wrk -c100`, fresh servers
/// alternating, CPU per request), one hot file, sendfile against bytes,
/// epoll / io_uring (which sends resident bodies over 4 KiB by direct
/// sendfile): 1 KiB 1.19x / 1.11x (bytes cheaper), 4 KiB 1.00x / 0.98x,
/// 8 KiB 0.96x / 0.96x, 16 KiB 0.92x / 0.86x. With this threshold against
/// 32 KiB (benches/wrk.sh, one run): 16 KiB 0.91x / 0.90x; 10,000 files of
/// 1-64 KiB 0.92x / 0.92x (uniform paths), 0.84x / 0.90x (Zipf-like): the
/// bytes of many files are not in the CPU's caches when copied. And 400
/// clients that never read, filling their buffers with a cached 60 KiB
/// file, cost 10x the CPU from bytes. Over TLS the other way: a file body
/// is read record by record into the plaintext buffer, and 60 KiB from a
/// descriptor cost 1.08x / 1.16x.
const COPY_MAX: u64 = 4 << 10;

/// `copy_max` with `http2_cleartext` on (and no TLS listener). An HTTP/2
/// body from a descriptor goes out a DATA frame at a time, each a write of
/// its own (on io_uring a ring round trip each), where from bytes the
/// frames of several streams leave in one send. h2c, 16 KiB, 10 streams a
/// connection (`h2load`, fresh servers alternating), CPU per request by
/// descriptor against bytes: 1.47x on io_uring, 1.09x on epoll; so such a
/// server keeps the threshold it had before `COPY_MAX`'s 4 KiB.
const COPY_MAX_H2C: u64 = 32 << 10;
