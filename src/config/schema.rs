//! The schema: every key, its type, its default and its reader, in two
//! tables (the top level and a `[[rules]]` entry), and the types of values.
//!
//! To add a key: add its entry to the table below (doc, name, type,
//! default, reader), its line to `conf/tandem.toml` (a test checks both
//! agree), and, when its value needs a check serde cannot make, the check
//! to `validate.rs` with its `Invalid` variant in `error.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::de::*;
use super::values::*;
use crate::log::{Level, LogFormat, LogTarget};

schema! {
    /// The whole configuration. Field docs mirror `conf/tandem.toml`.
    #[derive(Debug, Clone)]
    pub struct Config {
        /// Addresses to listen on.
        listen: Vec<SocketAddr> = vec!["127.0.0.1:8080".parse().unwrap()] => listen,
        /// Directory served as the site root.
        root: PathBuf = PathBuf::from("html")
            => (|v| nonempty("a directory path", v).map(PathBuf::from)),
        /// Files tried, in order, for a directory request.
        index: IndexNames = IndexNames(vec!["index.html".into()]) => index,
        /// I/O engine.
        engine: EngineChoice = EngineChoice::Auto => engine,
        /// Worker threads.
        workers: Workers = Workers::Auto => workers,
        /// Detach into the background.
        daemon: bool = false => boolean,
        /// Pidfile path (none when absent).
        pidfile: Option<PathBuf> = None
            => (|v| nonempty("a file path", v).map(|s| Some(s.into()))),
        /// User to switch to after binding when started as root.
        user: Option<String> = None => (|v| nonempty("a user name", v).map(Some)),
        /// Group to switch to after binding when started as root.
        group: Option<String> = None => (|v| nonempty("a group name", v).map(Some)),
        /// Access log target.
        access_log: LogTarget = LogTarget::Stderr => log_target,
        /// Access log line format: "combined" or "json".
        access_log_format: LogFormat = LogFormat::Combined => log_format,
        /// Error log target.
        error_log: LogTarget = LogTarget::Stderr => log_target,
        /// Minimum level of error log lines: "error", "warn", "info" or "debug".
        log_level: Level = Level::Info => log_level,
        /// Idle time allowed between keep-alive requests.
        keepalive_timeout: Dur = Dur(Duration::from_secs(60)) => duration,
        /// Time allowed to receive a whole request head.
        header_timeout: Dur = Dur(Duration::from_secs(15)) => duration,
        /// Time a response may make no progress before the connection is dropped.
        send_timeout: Dur = Dur(Duration::from_secs(60)) => duration,
        /// Graceful stop: how long in-flight responses may take before they are cut.
        shutdown_timeout: Dur = Dur(Duration::from_secs(10)) => duration,
        /// Graceful stop: how long tandem keeps accepting after SIGTERM, with
        /// /healthz already 503, so a balancer moves away before the listeners
        /// close (the drain, and shutdown_timeout, come after it).
        shutdown_delay: Dur = Dur(Duration::ZERO) => duration,
        /// Largest request head (request line + headers), bytes; larger -> 431.
        max_header_size: usize = 8192 => (|v| usize_of("a number of bytes", v)),
        /// Longest request target, bytes; longer -> 414.
        max_target_size: usize = 4096 => (|v| usize_of("a number of bytes", v)),
        /// Largest request body read and discarded, bytes; larger -> 413.
        max_body_size: u64 = 1024 * 1024 => (|v| count("a number of bytes", v)),
        /// Most connections a worker keeps open; past it, accepting pauses.
        max_connections: usize = 16384
            => (|v| usize_of("a number of connections", v)),
        /// Serve names that start with a dot (except "." and "..", never served).
        serve_dotfiles: bool = false => boolean,
        /// Old spelling of `error_pages = { 404 = ... }`, still understood.
        error_page_404: Option<String> = None
            => (|v| string("a page path under the root", v).map(Some)),
        /// Pages under the root served as the body of error responses, by status.
        error_pages: BTreeMap<String, String> =
            BTreeMap::from([("404".into(), "404.html".into())])
            => (|v| string_table(
                "a table of pages by status, like { 404 = \"404.html\", 500 = \"50x.html\" }",
                "a page path under the root",
                v,
            )),
        /// List directories that have no index file.
        autoindex: bool = false => boolean,
        /// Served with 200 for a GET/HEAD of a missing path without an extension
        /// (single-page apps); "" for none.
        fallback: String = String::new()
            => (|v| string("a page path under the root, or \"\" for none", v)),
        /// Content-Type for extensions the built-in table and `mime_types` lack.
        default_type: String = "application/octet-stream".into()
            => (|v| string("a media type like \"application/octet-stream\"", v)),
        /// Extension -> Content-Type, over the built-in table.
        mime_types: BTreeMap<String, String> = BTreeMap::new()
            => (|v| string_table(
                "a table of media types by extension, like { wasm = \"application/wasm\" }",
                "a media type like \"application/wasm\"",
                v,
            )),
        /// Precompressed siblings looked for, in order of preference.
        precompressed: Vec<Encoding> = vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip]
            => precompressed,
        /// Codings cached files are compressed with on the fly, in order of
        /// preference; [] turns it off.
        compression: Vec<Encoding> = vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip]
            => codings,
        /// Media types compressed on the fly (`type/*` for a whole type).
        compression_types: Vec<String> = [
            "text/*",
            "application/javascript",
            "application/json",
            "application/xml",
            "application/rss+xml",
            "application/atom+xml",
            "application/xhtml+xml",
            "application/manifest+json",
            "application/wasm",
            "image/svg+xml",
        ]
        .map(String::from)
        .to_vec()
            => (|v| string_list("a list of media types like \"text/*\" or \"application/json\"", v)),
        /// Files smaller than this are not compressed on the fly.
        compression_min_size: u64 = 1024 => (|v| count("a number of bytes", v)),
        /// Level by coding, over the defaults (br 5, zstd 6, gzip 6).
        compression_level: BTreeMap<String, u32> = BTreeMap::new() => compression_level,
        /// Most ranges one request may ask for; more -> the whole file.
        max_ranges: usize = 32 => (|v| usize_of("a number of ranges from 0 to 1024", v)),
        /// Bytes of small files (bodies, variants included) kept in memory, in
        /// all; each worker gets its share. 0 turns the cache off.
        cache_size: u64 = 64 << 20
            => (|v| count("a number of bytes (0 turns the cache off)", v)),
        /// Largest file kept in the cache; larger ones are sent from disk.
        cache_max_file: u64 = 64 << 10 => (|v| count("a number of bytes", v)),
        /// Open files (descriptors with their metadata and head) each worker
        /// keeps for files not cached as bytes; at most half of its
        /// descriptors. 0 turns it off.
        open_file_cache: usize = 10_000
            => (|v| usize_of("a number of open files (0 turns the open-file cache off)", v)),
        /// How long a cached file is served before it is looked up again.
        cache_revalidate: Dur = Dur(Duration::from_secs(1)) => duration,
        /// How symlinks under the root are followed.
        symlinks: Symlinks = Symlinks::WithinRoot => symlinks,
        /// Per-path response headers, applied in order.
        rules: Vec<Rule> = Vec::new() => serde,
        /// Addresses of the metrics and health listener (`/metrics`, `/healthz`); none by default.
        metrics_listen: Vec<SocketAddr> = Vec::new() => listen,
        /// TLS (HTTPS) listeners, beside the plaintext `listen`; none by default.
        tls_listen: Vec<SocketAddr> = Vec::new() => listen,
        /// Certificate chains and keys (PEM) for `tls_listen`: SNI picks one by
        /// its certificate's DNS names; the first serves clients without SNI
        /// or with a name none has.
        tls_certificates: Vec<TlsCertificate> = Vec::new() => serde,
        /// Plaintext listeners answer every request with 308 to the same
        /// https:// URL, except under /.well-known/acme-challenge/.
        redirect_to_https: bool = false => boolean,
        /// Offer HTTP/2 (ALPN `h2`) on the TLS listeners.
        http2: bool = true => boolean,
        /// Plaintext listeners speak HTTP/2 to a client that opens with its
        /// preface (prior knowledge, h2c), HTTP/1.1 to the others.
        http2_cleartext: bool = false => boolean,
        /// Streams one HTTP/2 client may have open at once; more are refused.
        h2_max_concurrent_streams: u32 = 128
            => (|v| u32_of("a number of streams", v)),
        /// Streams one HTTP/2 client may cancel (or have refused) per second;
        /// past it, GOAWAY (Rapid Reset).
        h2_max_resets_per_second: u32 = 200
            => (|v| u32_of("a number of streams per second", v)),
        /// Frames that ask for nothing (PING, SETTINGS, empty DATA...) one
        /// HTTP/2 client may send per second; past it, GOAWAY.
        h2_max_control_frames_per_second: u32 = 1000
            => (|v| u32_of("a number of frames per second", v)),
        /// CONTINUATION frames one HTTP/2 header block may take; past it,
        /// GOAWAY (a CONTINUATION flood). 0: a block must fit in its
        /// HEADERS frame.
        h2_max_continuations: u32 = 64
            => (|v| u32_of("a number of frames", v)),
    }
    keys: pub mod key;
}

schema! {
    /// One `[[rules]]` entry: response headers for the paths a glob matches.
    /// Its `match` is required (checked with the document's keys).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Rule {
        /// A glob over the request path (`/assets/**`, `*.css`). Without a `/`
        /// it matches the last path segment in any directory.
        pattern as "match": String = String::new()
            => (|v| nonempty("a glob like \"/assets/**\" or \"*.css\"", v)),
        /// Header fields set on responses for matching paths; a later rule's
        /// field replaces an earlier one's of the same name, except `Vary`,
        /// whose members add up (and to the server's own).
        headers: BTreeMap<String, String> = BTreeMap::new()
            => (|v| string_table(
                "a table of header fields, like { \"Cache-Control\" = \"max-age=3600\" }",
                "a header value (a string)",
                v,
            )),
    }
    keys: pub mod rule_key, in table key::rules;
}

schema! {
    /// One `[[tls_certificates]]` entry: a certificate chain and its key.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TlsCertificate {
        /// The certificate chain, leaf first (certbot's fullchain.pem).
        cert: PathBuf = PathBuf::new()
            => (|v| nonempty("a certificate file path (PEM)", v).map(PathBuf::from)),
        /// Its private key (certbot's privkey.pem).
        key: PathBuf = PathBuf::new()
            => (|v| nonempty("a private key file path (PEM)", v).map(PathBuf::from)),
    }
    keys: pub mod tls_cert_key, in table key::tls_certificates;
}

impl Rule {
    /// The compiled glob: `*` stays within one segment, `**` crosses them; a
    /// pattern without `/` matches the last segment anywhere.
    pub fn glob(&self) -> Result<globset::GlobMatcher, globset::Error> {
        let p = if self.pattern.contains('/') {
            self.pattern.clone()
        } else {
            format!("/**/{}", self.pattern)
        };
        Ok(globset::GlobBuilder::new(&p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()?
            .compile_matcher())
    }
}
