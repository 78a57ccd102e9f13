//! Directory listings (`autoindex = true`): a directory without an index file
//! answers 200 with its entries, as HTML or as JSON.
//!
//! Which entries: regular files and directories only (sockets, FIFOs and
//! devices never), no dotfiles unless `serve_dotfiles`, and never a name
//! outside the root: a symlink is listed only when it resolves beneath the
//! root (and not at all with `symlinks = "deny"`). `RootDir::read_dir` does
//! the reading. Every name is listed whatever its bytes (a tab, a newline,
//! a backslash, bytes that are not UTF-8): its link is its bytes
//! percent-encoded, so following it serves that file; its text is `display`.
//!
//! Which form: JSON when the query has `format=json`, HTML for
//! `format=html`; otherwise JSON when `Accept` names `application/json` and
//! does not name `text/html` (no q-value weighing), else HTML. When `Accept`
//! decided, the reply carries `Vary: Accept`.
//!
//! Order: directories first, then by name (byte order).
//!
//! A listing is a representation like a file's: its `ETag` is strong, a
//! hash of the listing's own bytes (so it changes with any entry added,
//! removed, renamed, resized or touched, and differs between the HTML and
//! the JSON form); its `Last-Modified` is the newest of the directory's
//! modification time (an entry added or removed) and its listed entries'
//! (one written or touched), never later than now. Preconditions are
//! evaluated on them by `http::cond`, as for a file: 304 and 412.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use super::Site;
use super::os::{DirEntry, EntryKind, ReadDirOpts};
use super::path::ReqPath;
use crate::http::cond::{self, Precondition, Validators};
use crate::http::reply::HTML;
use crate::http::{Body, Notes, Now, Reply, Request, Status};
use crate::log::rfc3339;

/// Most entries one listing shows. Reading a directory is synchronous in the
/// worker (like every open), so a directory with millions of entries must not
/// make it allocate without bound or stall for long: past this many, the
/// listing is cut (an arbitrary subset, in directory order, then sorted) and
/// the HTML says so.
pub const MAX_ENTRIES: usize = 10_000;

/// Most directory entries looked at for one listing, hidden ones included
/// (a directory of a million dotfiles is as slow to scan as a listed one).
pub const MAX_SCANNED: usize = 100_000;

/// The media type of a JSON listing.
pub const JSON: &str = "application/json";

/// Bytes percent-encoded in a listing's links: everything but RFC 3986's
/// unreserved characters, so no name can read as a scheme (`a:b`), a query,
/// a fragment or another segment.
const LINK: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The two forms of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

/// The form a request asks for, and whether `Accept` decided it (so the
/// reply must say `Vary: Accept`). The query wins: `format=json` or
/// `format=html` among its `&`-separated parameters.
pub fn format(query: Option<&str>, accept: Option<&str>) -> (Format, bool) {
    for param in query.unwrap_or("").split('&') {
        match param {
            "format=json" => return (Format::Json, false),
            "format=html" => return (Format::Html, false),
            _ => {}
        }
    }
    let accept = accept.unwrap_or("").to_ascii_lowercase();
    if accept.contains("application/json") && !accept.contains("text/html") {
        (Format::Json, true)
    } else {
        (Format::Html, true)
    }
}

/// Directories first, then by name, byte order.
pub fn sort(entries: &mut [DirEntry]) {
    entries.sort_by(|a, b| {
        (a.kind != EntryKind::Dir, a.name.as_bytes())
            .cmp(&(b.kind != EntryKind::Dir, b.name.as_bytes()))
    });
}

/// The HTML page for the directory shown as `path` (decoded, with leading
/// and trailing '/'), listing `entries` in the order given.
pub fn html(path: &str, entries: &[DirEntry], truncated: bool) -> Vec<u8> {
    let mut out = String::with_capacity(512 + entries.len() * 160);
    let title = escape_html(path);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!("<title>Index of {title}</title>\n"));
    out.push_str(
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         th,td{padding:.2em 1.2em .2em 0;text-align:left}td.size{text-align:right}</style>\n",
    );
    out.push_str(&format!("</head>\n<body>\n<h1>Index of {title}</h1>\n"));
    out.push_str("<table>\n<thead><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr></thead>\n<tbody>\n");
    if path != "/" {
        out.push_str(
            "<tr><td><a href=\"../\">../</a></td><td class=\"size\">-</td><td></td></tr>\n",
        );
    }
    for e in entries {
        let slash = if e.kind == EntryKind::Dir { "/" } else { "" };
        let href: String = percent_encode(e.name.as_bytes(), LINK).collect();
        let size = match e.kind {
            EntryKind::Dir => "-".to_string(),
            EntryKind::File => e.size.to_string(),
        };
        let (date, time) = (utc(e.mtime), rfc3339(e.mtime));
        out.push_str(&format!(
            "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td class=\"size\">{size}</td>\
             <td><time datetime=\"{time}\">{date}</time></td></tr>\n",
            escape_html(&display(&e.name)),
        ));
    }
    if truncated {
        out.push_str(&format!(
            "<tr><td colspan=\"3\">listing truncated: only {} entries shown</td></tr>\n",
            entries.len()
        ));
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out.into_bytes()
}

/// The JSON listing: an array of `{"name", "type" ("file" | "directory"),
/// "size" (bytes, 0 for a directory), "mtime" (RFC 3339, UTC)}` in the order
/// given.
pub fn json(entries: &[DirEntry]) -> Vec<u8> {
    let mut out = String::with_capacity(2 + entries.len() * 96);
    out.push('[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n{\"name\":");
        escape_json(&e.name.to_string_lossy(), &mut out);
        let kind = match e.kind {
            EntryKind::File => "file",
            EntryKind::Dir => "directory",
        };
        out.push_str(&format!(
            ",\"type\":\"{kind}\",\"size\":{},\"mtime\":\"{}\"}}",
            e.size,
            rfc3339(e.mtime)
        ));
    }
    if !entries.is_empty() {
        out.push('\n');
    }
    out.push_str("]\n");
    out.into_bytes()
}

/// A name (or path) as a listing's HTML shows it: what cannot be shown as
/// text, a byte that is not UTF-8 or a control character (a tab, a
/// newline), is shown as U+FFFD; the link has the exact bytes.
pub fn display(name: &OsStr) -> Cow<'_, str> {
    let lossy = name.to_string_lossy();
    if lossy.chars().any(char::is_control) {
        let shown = lossy
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c });
        Cow::Owned(shown.collect())
    } else {
        lossy
    }
}

/// `s` with `<`, `>`, `&`, `"` and `'` replaced by character references.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as a JSON string literal (quotes included), appended to `out`.
pub fn escape_json(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `YYYY-MM-DD HH:MM`, UTC.
fn utc(t: SystemTime) -> String {
    let (y, mo, d, h, mi, _) = crate::log::split(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
}

impl Site<'_> {
    /// The listing of the directory `p` (which exists and has no index), in
    /// the form `req` asks for; a directory that cannot be read answers as an
    /// open error would (404, 403, 500).
    pub(super) fn listing(
        &self,
        p: &ReqPath,
        req: &Request<'_>,
        now: &Now,
        notes: &mut Notes,
    ) -> Reply {
        let opts = ReadDirOpts {
            dotfiles: self.settings.serve_dotfiles,
            max_entries: MAX_ENTRIES,
            max_scanned: MAX_SCANNED,
        };
        let mut list = match self.root.read_dir(&p.rel, &opts) {
            Ok(l) => l,
            Err(e) => return self.io_error(e, notes),
        };
        sort(&mut list.entries);
        let (form, by_accept) = format(p.query.as_deref(), req.header_str("accept"));
        let (body, ctype) = match form {
            Format::Html => {
                let shown = if p.rel.is_empty() {
                    "/".to_string()
                } else {
                    format!("/{}/", display(&p.rel))
                };
                (html(&shown, &list.entries, list.truncated), HTML)
            }
            Format::Json => (json(&list.entries), JSON),
        };
        let tag = etag(&body);
        let newest = list.entries.iter().map(|e| e.mtime).chain(list.mtime).max();
        // Never later than Date (RFC 9110 §8.8.2.1), as for a file.
        let v = Validators {
            etag: &tag,
            last_modified: newest.and_then(cond::http_date).map(|lm| lm.min(now.wall)),
        };
        let vary = |mut r: Reply| {
            if by_accept {
                r.headers.push("Vary", "Accept");
            }
            r
        };
        let mut reply = match cond::evaluate(req, &v, true) {
            Precondition::Proceed => Reply::new(Status::OK, Body::Bytes(Bytes::from(body)))
                .with_header("Content-Type", ctype),
            Precondition::NotModified => Reply::new(Status::NOT_MODIFIED, Body::Empty),
            Precondition::Failed => return vary(self.error_page(Status::PRECONDITION_FAILED)),
        };
        reply.headers.push("ETag", tag.clone());
        if let Some(lm) = v.last_modified {
            reply
                .headers
                .push("Last-Modified", httpdate::fmt_http_date(lm));
        }
        vary(reply)
    }
}

/// The strong entity tag of a listing: its length and a hash of its bytes.
fn etag(body: &[u8]) -> String {
    format!("\"{:x}-{:016x}\"", body.len(), super::fnv1a(body))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn entry(name: &str, kind: EntryKind, size: u64, secs: u64) -> DirEntry {
        DirEntry {
            name: name.into(),
            kind,
            size,
            mtime: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape_html(r#"<script>&"'x"#),
            "&lt;script&gt;&amp;&quot;&#39;x"
        );
        assert_eq!(escape_html("plain é"), "plain é");
    }

    #[test]
    fn html_escapes_names_and_encodes_links() {
        let name = r#"<script>&"'.txt"#;
        let page = String::from_utf8(html(
            "/a&b/",
            &[
                entry(name, EntryKind::File, 3, 0),
                entry("a:b c", EntryKind::Dir, 0, 0),
            ],
            false,
        ))
        .unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>Index of /a&amp;b/</title>"));
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("&lt;script&gt;&amp;&quot;&#39;.txt</a>"),
            "{page}"
        );
        assert!(
            page.contains("href=\"%3Cscript%3E%26%22%27.txt\""),
            "{page}"
        );
        assert!(page.contains("href=\"a%3Ab%20c/\">a:b c/</a>"), "{page}");
        assert!(page.contains("href=\"../\""));
        assert!(!page.contains("truncated"));
    }

    #[test]
    fn html_root_has_no_parent_link_and_says_truncated() {
        let page =
            String::from_utf8(html("/", &[entry("f", EntryKind::File, 42, 0)], true)).unwrap();
        assert!(!page.contains("../"), "{page}");
        assert!(page.contains("listing truncated"), "{page}");
        assert!(page.contains(">42</td>"), "{page}");
        assert!(page.contains(">1970-01-01 00:00</time>"), "{page}");
    }

    #[test]
    fn sorts_directories_first_then_by_name() {
        let mut v = vec![
            entry("b.txt", EntryKind::File, 1, 0),
            entry("zdir", EntryKind::Dir, 0, 0),
            entry("A.txt", EntryKind::File, 1, 0),
            entry("adir", EntryKind::Dir, 0, 0),
            entry("a.txt", EntryKind::File, 1, 0),
        ];
        sort(&mut v);
        let names: Vec<&str> = v.iter().map(|e| e.name.to_str().unwrap()).collect();
        assert_eq!(names, ["adir", "zdir", "A.txt", "a.txt", "b.txt"]);
    }

    #[test]
    fn json_is_valid_and_round_trips() {
        let names = [
            "plain",
            "quote\"back\\slash",
            "ctl\u{1}\n\t\u{7f}",
            "<script>&'",
            "ünï€😀",
        ];
        let entries: Vec<DirEntry> = names
            .iter()
            .enumerate()
            .map(|(i, n)| entry(n, EntryKind::File, i as u64, 1_700_000_000))
            .chain([entry("d", EntryKind::Dir, 0, 951_782_400)])
            .collect();
        let v: serde_json::Value = serde_json::from_slice(&json(&entries)).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), names.len() + 1);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(arr[i]["name"], *n);
            assert_eq!(arr[i]["type"], "file");
            assert_eq!(arr[i]["size"], i as u64);
            assert_eq!(arr[i]["mtime"], "2023-11-14T22:13:20Z");
        }
        assert_eq!(arr[names.len()]["type"], "directory");
        // 2000-02-29: a leap day.
        assert_eq!(arr[names.len()]["mtime"], "2000-02-29T00:00:00Z");
        let empty: serde_json::Value = serde_json::from_slice(&json(&[])).unwrap();
        assert_eq!(empty, serde_json::json!([]));
    }

    #[test]
    fn dates() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc3339(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(t(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(utc(t(1_709_251_200)), "2024-03-01 00:00");
        assert_eq!(rfc3339(t(4_102_444_800)), "2100-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn picks_the_form() {
        assert_eq!(format(None, None), (Format::Html, true));
        assert_eq!(format(Some("format=json"), None), (Format::Json, false));
        assert_eq!(
            format(Some("a=1&format=json&b"), Some("text/html")),
            (Format::Json, false)
        );
        assert_eq!(
            format(Some("format=html"), Some("application/json")),
            (Format::Html, false)
        );
        assert_eq!(format(Some("xformat=json"), None), (Format::Html, true));
        assert_eq!(format(None, Some("application/json")), (Format::Json, true));
        assert_eq!(
            format(None, Some("Application/JSON;q=0.9, */*;q=0.1")),
            (Format::Json, true)
        );
        assert_eq!(
            format(None, Some("text/html,application/json;q=0.9")),
            (Format::Html, true)
        );
        assert_eq!(format(None, Some("*/*")), (Format::Html, true));
    }
}
