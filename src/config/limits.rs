//! The bounds config values are checked against.

use std::time::Duration;

/// Longest timeout a config may set: far beyond any real use, and far from
/// where deadline arithmetic could overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Largest `max_header_size` (1 MiB).
pub const MAX_HEADER_SIZE: usize = 1 << 20;
/// Largest `cache_max_file` (64 MiB): past that, sendfile and splice win.
pub const MAX_CACHE_FILE: u64 = 64 << 20;
/// Largest `max_ranges`.
pub const MAX_RANGES: usize = 1024;
/// Largest `max_connections` per worker.
pub const MAX_CONNECTIONS: usize = 1 << 20;
