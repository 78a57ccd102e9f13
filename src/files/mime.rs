//! Content types by file extension.

/// The Content-Type for a file name; text types carry `charset=utf-8`. The
/// extension is matched without regard to ASCII case, in place: no buffer, so
/// no length limit that an entry of `TYPES` could exceed.
pub fn content_type(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() || name.len() > ext.len() + 1 => ext,
        _ => return DEFAULT,
    };
    TYPES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or(DEFAULT, |(_, t)| t)
}

pub const DEFAULT: &str = "application/octet-stream";
pub const HTML: &str = "text/html; charset=utf-8";

const TYPES: &[(&str, &str)] = &[
    ("html", HTML),
    ("htm", HTML),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("webmanifest", "application/manifest+json"),
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("xml", "text/xml; charset=utf-8"),
    ("svg", "image/svg+xml; charset=utf-8"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/x-icon"),
    ("bmp", "image/bmp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("wasm", "application/wasm"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tar", "application/x-tar"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("ogg", "audio/ogg"),
    ("mp3", "audio/mpeg"),
    ("wav", "audio/wav"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry of the table is reachable by its own extension, in any
    /// ASCII case: an entry that lookup can never match (too long for a
    /// buffer, a dot inside, shadowed by an earlier entry) fails here.
    #[test]
    fn every_table_entry_is_found_by_its_extension() {
        for (i, &(ext, ty)) in TYPES.iter().enumerate() {
            assert!(
                !ext.is_empty() && !ext.contains('.'),
                "entry {i} ({ext:?}) cannot be a file name's last extension"
            );
            assert!(
                !TYPES[..i].iter().any(|(e, _)| e.eq_ignore_ascii_case(ext)),
                "entry {i} ({ext:?}) is shadowed by an earlier entry"
            );
            let upper = ext.to_ascii_uppercase();
            let mixed: String = ext
                .chars()
                .enumerate()
                .map(|(j, c)| {
                    if j % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            for e in [ext, upper.as_str(), mixed.as_str()] {
                for name in [format!("f.{e}"), format!("a.b.{e}")] {
                    assert_eq!(content_type(&name), ty, "{name:?} (table entry {i})");
                }
            }
        }
    }

    #[test]
    fn types() {
        assert_eq!(content_type("index.html"), HTML);
        assert_eq!(content_type("A.CSS"), "text/css; charset=utf-8");
        assert_eq!(
            content_type("site.webmanifest"),
            "application/manifest+json"
        );
        assert_eq!(content_type("noext"), DEFAULT);
        assert_eq!(content_type("weird.qqq"), DEFAULT);
        assert_eq!(content_type("x.verylongextension"), DEFAULT);
        // A dotfile's name is not an extension; a trailing dot has none.
        assert_eq!(content_type(".html"), DEFAULT);
        assert_eq!(content_type("x."), DEFAULT);
        // Only the last extension counts.
        assert_eq!(content_type("a.html.gz"), "application/gzip");
        assert_eq!(content_type("a.webmanifest.bak"), DEFAULT);
    }
}
