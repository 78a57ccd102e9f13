//! Content types by file extension: the config's `mime_types` first, then the
//! built-in table, then `default_type`.

use std::borrow::Cow;

/// The Content-Type for a file name from the built-in table alone; text types
/// carry `charset=utf-8`. The extension is matched without regard to ASCII
/// case, in place: no buffer, so no length limit that an entry of `TYPES`
/// could exceed. (The responder uses `Types::header_value`; this is the
/// table's own check.)
#[cfg(test)]
pub fn content_type(name: &str) -> &'static str {
    extension(name).and_then(builtin).unwrap_or(DEFAULT)
}

/// The last extension of a file name (of its last `/` segment): none for a
/// dotfile's name (`.html`) or a trailing dot (`x.`).
fn extension(name: &str) -> Option<&str> {
    let name = name.rsplit('/').next().unwrap_or(name);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext),
        _ => None,
    }
}

fn builtin(ext: &str) -> Option<&'static str> {
    TYPES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map(|(_, t)| *t)
}

/// Content types with the config's overrides and default: built once (per
/// responder), looked up per response without allocating.
#[derive(Debug, Clone)]
pub struct Types {
    /// Extension (no dot) -> Content-Type; compared without regard to ASCII case.
    overrides: Vec<(String, String)>,
    /// `None` when it is the built-in [`DEFAULT`] (so it needs no allocation
    /// as a header value).
    default: Option<String>,
}

/// Where a type came from: the built-in table (static) or the config.
enum Found<'a> {
    Static(&'static str),
    Configured(&'a str),
}

impl Default for Types {
    /// The built-in table alone, with `application/octet-stream` as the default.
    fn default() -> Types {
        Types::new(&[], DEFAULT)
    }
}

impl Types {
    /// From `Settings::mime_types` (extensions without their dot) and
    /// `Settings::default_type`. A later override of the same extension (in
    /// any case) wins, as a later key would.
    pub fn new(overrides: &[(String, String)], default: &str) -> Types {
        let mut kept: Vec<(String, String)> = Vec::with_capacity(overrides.len());
        for (ext, ty) in overrides {
            let ext = ext.trim_start_matches('.').to_ascii_lowercase();
            kept.retain(|(e, _)| *e != ext);
            kept.push((ext, ty.clone()));
        }
        Types {
            overrides: kept,
            default: (default != DEFAULT).then(|| default.to_string()),
        }
    }

    /// The Content-Type for a file name (or a path: only its last segment
    /// counts): an override for its extension, else the built-in table, else
    /// the default type. (Tests; the responder uses `header_value`.)
    #[cfg(test)]
    pub fn content_type(&self, name: &str) -> &str {
        match self.find(name) {
            Found::Static(t) => t,
            Found::Configured(t) => t,
        }
    }

    /// The Content-Type for a file name (an override for its extension,
    /// else the built-in table, else the default type) as a header value:
    /// borrowed (no allocation) for a built-in type, a copy for one from the
    /// config (header values are `Cow<'static, str>`).
    pub fn header_value(&self, name: &str) -> Cow<'static, str> {
        match self.find(name) {
            Found::Static(t) => Cow::Borrowed(t),
            Found::Configured(t) => Cow::Owned(t.to_owned()),
        }
    }

    fn find(&self, name: &str) -> Found<'_> {
        let default = || match &self.default {
            Some(t) => Found::Configured(t),
            None => Found::Static(DEFAULT),
        };
        let Some(ext) = extension(name) else {
            return default();
        };
        if let Some((_, ty)) = self
            .overrides
            .iter()
            .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        {
            return Found::Configured(ty);
        }
        builtin(ext).map_or_else(default, Found::Static)
    }
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
    // The rest of what nginx's stock mime.types names and a site still
    // serves (its values, so a site moved from nginx gets the same types;
    // `ts` is an HLS segment there, not TypeScript).
    ("xhtml", "application/xhtml+xml"),
    ("rss", "application/rss+xml"),
    ("atom", "application/atom+xml"),
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("ts", "video/mp2t"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("eot", "application/vnd.ms-fontobject"),
    ("rtf", "application/rtf"),
    ("ps", "application/postscript"),
    ("eps", "application/postscript"),
    ("doc", "application/msword"),
    ("xls", "application/vnd.ms-excel"),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("odt", "application/vnd.oasis.opendocument.text"),
    ("ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("odp", "application/vnd.oasis.opendocument.presentation"),
    ("kml", "application/vnd.google-earth.kml+xml"),
    ("kmz", "application/vnd.google-earth.kmz"),
    ("jar", "application/java-archive"),
    ("7z", "application/x-7z-compressed"),
    ("rar", "application/x-rar-compressed"),
    ("crt", "application/x-x509-ca-cert"),
    ("pem", "application/x-x509-ca-cert"),
    ("der", "application/x-x509-ca-cert"),
    ("mid", "audio/midi"),
    ("midi", "audio/midi"),
    ("m4a", "audio/x-m4a"),
    ("m4v", "video/x-m4v"),
    ("mov", "video/quicktime"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
    ("3gp", "video/3gpp"),
    ("avi", "video/x-msvideo"),
    ("wmv", "video/x-ms-wmv"),
    ("flv", "video/x-flv"),
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

    fn types_with(overrides: &[(&str, &str)], default: &str) -> Types {
        let o: Vec<(String, String)> = overrides
            .iter()
            .map(|(e, t)| (e.to_string(), t.to_string()))
            .collect();
        Types::new(&o, default)
    }

    #[test]
    fn overrides_then_table_then_default() {
        let t = types_with(
            &[
                ("wasm", "application/x-wasm-custom"),
                ("txt", "text/x-custom"),
            ],
            "text/plain",
        );
        // Overrides, in any case of the file's extension.
        assert_eq!(t.content_type("a.wasm"), "application/x-wasm-custom");
        assert_eq!(t.content_type("a.WASM"), "application/x-wasm-custom");
        assert_eq!(t.content_type("b.txt"), "text/x-custom");
        assert_eq!(t.content_type("b.TxT"), "text/x-custom");
        // Built-in types not overridden are unchanged.
        assert_eq!(t.content_type("index.html"), HTML);
        assert_eq!(t.content_type("A.CSS"), "text/css; charset=utf-8");
        // Anything else gets the default type, not application/octet-stream.
        for name in ["c.unknownext", "noext", ".html", ".txt", "x.", ""] {
            assert_eq!(t.content_type(name), "text/plain", "{name:?}");
        }
        // Only the last extension, of the last path segment.
        assert_eq!(t.content_type("a.txt.gz"), "application/gzip");
        assert_eq!(t.content_type("dir.txt/file"), "text/plain");
        assert_eq!(t.content_type("dir/b.txt"), "text/x-custom");
        assert_eq!(t.content_type("/errors/404.html"), HTML);
    }

    #[test]
    fn override_keys_in_any_case_and_the_last_wins() {
        // Settings lower-cases keys, but Types does not rely on it.
        let t = types_with(
            &[("TXT", "text/a"), ("Md", "text/b"), ("md", "text/c")],
            "x/y",
        );
        assert_eq!(t.content_type("b.txt"), "text/a");
        assert_eq!(t.content_type("b.MD"), "text/c");
        // An override may also replace a built-in type by one with a charset.
        let t = types_with(&[("js", "application/javascript; charset=utf-8")], DEFAULT);
        assert_eq!(
            t.content_type("app.js"),
            "application/javascript; charset=utf-8"
        );
    }

    #[test]
    fn header_values_borrow_built_in_types() {
        let t = types_with(&[("txt", "text/x-custom")], "text/plain");
        assert!(matches!(
            t.header_value("a.css"),
            Cow::Borrowed("text/css; charset=utf-8")
        ));
        assert_eq!(t.header_value("b.txt"), "text/x-custom");
        assert_eq!(t.header_value("c.qqq"), "text/plain");
        // The stock default is the built-in one: no copy either.
        let t = Types::default();
        assert!(matches!(t.header_value("c.qqq"), Cow::Borrowed(DEFAULT)));
        assert_eq!(types_with(&[], DEFAULT).content_type("c"), DEFAULT);
    }

    #[test]
    fn default_types_is_the_free_function() {
        let t = Types::default();
        for name in [
            "index.html",
            "A.CSS",
            "noext",
            ".html",
            "x.",
            "a.html.gz",
            "weird.qqq",
        ] {
            assert_eq!(t.content_type(name), content_type(name), "{name:?}");
        }
        for (ext, ty) in TYPES {
            assert_eq!(t.content_type(&format!("f.{ext}")), *ty);
        }
    }
}
