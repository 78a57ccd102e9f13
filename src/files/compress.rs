//! On-the-fly compression of cached files: which files, which codings, at
//! which level, and the per-turn budget that bounds the cost. The bytes are
//! made once per file and coding and kept in the file's cache entry
//! (`cache::Cache::add_made`); this file only decides and compresses.
//!
//! Crates: `flate2` with its `zlib-rs` backend (gzip; pure Rust, 3x the
//! speed of the default miniz_oxide at level 6, same ratio), `brotli` (pure
//! Rust) and `zstd` (the C library, built with `cc` alone). Levels chosen
//! by measurement on a 64 KiB text of HTML, CSS, JS and Markdown (`cargo
//! bench --bench compress`, docs/http.md, compression): at the defaults a
//! 64 KiB file takes about 2.2 ms (br 5), 0.9 ms (zstd 6), 1.0 ms (gzip 6)
//! (medians on the shared 2-core host), the largest a worker compresses.

use std::io::Write;

use crate::config::{Config, Encoding};

/// Default levels, chosen by measurement (docs/http.md, compression).
pub const DEFAULT_LEVEL_BR: u32 = 5;
pub const DEFAULT_LEVEL_ZSTD: u32 = 6;
pub const DEFAULT_LEVEL_GZIP: u32 = 6;

/// Source bytes a worker compresses in one loop turn at most, and so the
/// largest file compressed on the fly (`cache_max_file`'s default). Past
/// it, the turn's further first requests are answered without an on-the-fly
/// coding (identity, or a sibling, with Vary) and compressed on a later
/// request: a burst of first requests for many files costs the loop at
/// most one 64 KiB compression per turn (about 2.5 ms at br 5, the slowest
/// default level).
pub const TURN_BUDGET: usize = 64 << 10;

/// The on-the-fly compression settings (from the config).
#[derive(Debug, Clone, Default)]
pub struct Compression {
    /// Codings made on the fly, in order of preference (empty: off).
    pub codings: Vec<Encoding>,
    /// Media types compressed: `type/subtype`, or `type/*`, lower case.
    pub types: Vec<String>,
    /// Smaller files are sent as they are.
    pub min_size: u64,
    /// Level by coding: br, zstd, gzip.
    pub levels: [u32; 3],
}

impl Compression {
    pub fn from_config(cfg: &Config) -> Compression {
        let level =
            |name: &str, default: u32| cfg.compression_level.get(name).copied().unwrap_or(default);
        Compression {
            codings: cfg.compression.clone(),
            types: cfg
                .compression_types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            min_size: cfg.compression_min_size,
            levels: [
                level("br", DEFAULT_LEVEL_BR),
                level("zstd", DEFAULT_LEVEL_ZSTD),
                level("gzip", DEFAULT_LEVEL_GZIP),
            ],
        }
    }

    /// The level for `coding`.
    pub fn level(&self, coding: Encoding) -> u32 {
        self.levels[coding as usize]
    }

    /// The codings a file of `len` bytes typed `ctype` may be compressed
    /// with on the fly, less those it has a sibling for (`have`): none when
    /// it is too small or not of a listed type.
    pub fn codings_for(&self, ctype: &str, len: u64, have: &[Encoding]) -> Vec<Encoding> {
        if !self.applies(ctype, len) {
            return Vec::new();
        }
        let mut out = self.codings.clone();
        out.retain(|c| !have.contains(c));
        out
    }

    /// Whether a cached file of `len` bytes typed `ctype` is compressed on
    /// the fly (with the codings it has no sibling for).
    pub fn applies(&self, ctype: &str, len: u64) -> bool {
        !self.codings.is_empty()
            && len >= self.min_size
            && len <= TURN_BUDGET as u64
            && self.compressible(ctype)
    }

    /// Whether a Content-Type value (parameters ignored) is listed.
    pub fn compressible(&self, ctype: &str) -> bool {
        let mtype = ctype.split(';').next().unwrap_or("").trim();
        let (top, _) = mtype.split_once('/').unwrap_or((mtype, ""));
        self.types.iter().any(|t| match t.strip_suffix("/*") {
            Some(prefix) => prefix.eq_ignore_ascii_case(top),
            None => t.eq_ignore_ascii_case(mtype),
        })
    }
}

/// `src` in `coding` at `level`: the same bytes for the same input, level
/// and crate version (so the entity tag, made from the source's and the
/// level, names these bytes on every worker and replica).
pub fn compress(coding: Encoding, level: u32, src: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(src.len() / 3 + 64);
    match coding {
        Encoding::Gzip => {
            let mut w = flate2::write::GzEncoder::new(out, flate2::Compression::new(level.min(9)));
            w.write_all(src).expect("writes to a Vec");
            w.finish().expect("writes to a Vec")
        }
        Encoding::Br => {
            let mut out = out;
            let params = brotli::enc::BrotliEncoderParams {
                quality: level.min(11) as i32,
                lgwin: 22,
                size_hint: src.len(),
                ..Default::default()
            };
            let mut input = src;
            brotli::BrotliCompress(&mut input, &mut out, &params).expect("writes to a Vec");
            out
        }
        Encoding::Zstd => zstd::bulk::compress(src, level.min(22) as i32).expect("in memory"),
    }
}

/// The bytes `compress` made, back: for tests and the measurement.
pub fn decompress(coding: Encoding, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        Encoding::Gzip => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        Encoding::Br => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        Encoding::Zstd => out = zstd::stream::decode_all(bytes).expect("zstd"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_deterministic() {
        let text: Vec<u8> = (0..5000)
            .flat_map(|i| format!("<p class=\"x{}\">line {i}</p>\n", i % 7).into_bytes())
            .collect();
        for c in [Encoding::Br, Encoding::Zstd, Encoding::Gzip] {
            let a = compress(c, 5, &text);
            assert!(a.len() < text.len() / 4, "{c:?}: {}", a.len());
            assert_eq!(decompress(c, &a), text, "{c:?}");
            assert_eq!(compress(c, 5, &text), a, "{c:?}: not deterministic");
        }
    }

    /// `tandem_compressions_total` labels its counts by `Encoding as usize`.
    #[test]
    fn metric_labels_follow_the_codings() {
        for c in [Encoding::Br, Encoding::Zstd, Encoding::Gzip] {
            assert_eq!(crate::metrics::CODINGS[c as usize], c.token());
        }
    }

    #[test]
    fn types_and_sizes() {
        let c = Compression {
            codings: vec![Encoding::Br, Encoding::Gzip],
            types: vec!["text/*".into(), "application/json".into()],
            min_size: 1024,
            levels: [5, 3, 6],
        };
        assert!(c.compressible("text/html; charset=utf-8"));
        assert!(c.compressible("Text/CSS"));
        assert!(c.compressible("application/json"));
        assert!(!c.compressible("application/jsonx"));
        assert!(!c.compressible("image/png"));
        assert!(!c.compressible("textual/x"));
        assert_eq!(
            c.codings_for("text/css", 1024, &[Encoding::Gzip]),
            [Encoding::Br]
        );
        assert!(c.codings_for("text/css", 1023, &[]).is_empty());
        assert!(c.codings_for("image/png", 1 << 20, &[]).is_empty());
    }
}
