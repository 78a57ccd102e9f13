//! Content types by file extension.

/// The Content-Type for a file name; text types carry `charset=utf-8`.
pub fn content_type(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() || name.len() > ext.len() + 1 => ext,
        _ => return DEFAULT,
    };
    let mut lower = [0u8; 8];
    if ext.len() > lower.len() {
        return DEFAULT;
    }
    for (d, s) in lower.iter_mut().zip(ext.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    let ext = &lower[..ext.len()];
    TYPES
        .iter()
        .find(|(e, _)| e.as_bytes() == ext)
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

    #[test]
    fn types() {
        assert_eq!(content_type("index.html"), HTML);
        assert_eq!(content_type("A.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("app.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.wasm"), "application/wasm");
        assert_eq!(content_type("x.woff2"), "font/woff2");
        assert_eq!(content_type("pic.avif"), "image/avif");
        assert_eq!(content_type("noext"), DEFAULT);
        assert_eq!(content_type("weird.qqq"), DEFAULT);
        assert_eq!(content_type("x.verylongextension"), DEFAULT);
    }
}
