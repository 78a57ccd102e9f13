//! Request target -> a path relative to the root. Pure: no filesystem access.
//!
//! A name is bytes, as on Linux: any byte but NUL and `/` may be in one
//! (a tab, a newline, a backslash, bytes that are not UTF-8), requested
//! percent-encoded (`/a%09b.txt`, `/caf%E9.txt`).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use percent_encoding::{AsciiSet, CONTROLS, percent_encode};

/// Bytes escaped in a path segment of a `Location` we build: everything RFC
/// 3986 does not allow in a segment (`pchar`), plus `%` itself.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Why a target cannot name a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not a usable target at all (bad form, an invalid percent escape, a
    /// NUL, above the root) -> 400.
    Bad,
    /// Names something we never serve (above the root, a dotfile) -> 404.
    NotFound,
}

/// A resolved request path.
#[derive(Debug, PartialEq, Eq)]
pub struct ReqPath {
    /// Relative path under the root, segments joined by '/', no leading '/'.
    /// Empty for the root itself. Bytes, not necessarily UTF-8.
    pub rel: OsString,
    /// The decoded target ended with '/' (a directory is asked for).
    pub trailing_slash: bool,
    /// The query string as sent (without '?'), kept for redirects.
    pub query: Option<String>,
}

impl ReqPath {
    /// The normal form of the path asked for: `/`, the segments, and a
    /// trailing `/` when a directory is asked for. Every spelling of one
    /// path (`//a.css`, `/%61.css`, `/./a.css`, `/a.css?v=2`) has the same
    /// normal form: the small-file cache's key. Text, one for one with the
    /// path's bytes: a `%` and each byte of a name that is not UTF-8 are
    /// written `%XX` (so `caf\xE9` is `/caf%E9`, a name spelled `caf%E9`
    /// is `/caf%25E9`); a target with neither is its own normal form.
    pub fn normal(&self) -> String {
        let mut n = String::with_capacity(self.rel.len() + 2);
        n.push('/');
        for chunk in self.rel.as_bytes().utf8_chunks() {
            for (i, part) in chunk.valid().split('%').enumerate() {
                if i > 0 {
                    n.push_str("%25");
                }
                n.push_str(part);
            }
            for b in chunk.invalid() {
                n.push_str(&format!("%{b:02X}"));
            }
        }
        if self.trailing_slash && !self.rel.is_empty() {
            n.push('/');
        }
        n
    }

    /// The `Location` for "add the trailing slash": built from the normalised
    /// path (never from the raw target), each segment percent-encoded, so it
    /// always starts with exactly one `/` and cannot name another host
    /// (`//evil.example/../dir` -> `/dir/`).
    pub fn slash_redirect(&self) -> String {
        let mut loc = String::with_capacity(self.rel.len() + 2);
        for seg in self.rel.as_bytes().split(|&b| b == b'/') {
            if !seg.is_empty() {
                loc.push('/');
                loc.extend(percent_encode(seg, SEGMENT));
            }
        }
        loc.push('/');
        if let Some(q) = &self.query {
            loc.push('?');
            loc.push_str(q);
        }
        loc
    }
}

/// Split the target into path and query. Accepts origin-form and absolute-form.
pub fn split_target(target: &str) -> Result<(&str, Option<&str>), PathError> {
    let target = if target.starts_with('/') {
        target
    } else if let Some(rest) = strip_scheme(target) {
        // absolute-form: http://authority/path?query. Userinfo there is
        // an error (RFC 9110 4.2.4), as it is in Host.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if rest[..end].contains('@') {
            return Err(PathError::Bad);
        }
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            Some(i) => return Ok(("/", Some(&rest[i + 1..]))),
            None => "/",
        }
    } else {
        return Err(PathError::Bad);
    };
    let target = target.split_once('#').map_or(target, |(p, _)| p);
    Ok(match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    })
}

fn strip_scheme(t: &str) -> Option<&str> {
    let lower = t.get(..8)?.to_ascii_lowercase();
    if lower.starts_with("http://") {
        Some(&t[7..])
    } else if lower == "https://" {
        Some(&t[8..])
    } else {
        None
    }
}

/// The path of an origin-form `target` when it is already its own normal
/// form (`ReqPath::normal`), as most are: then a cache lookup needs no
/// decoding and no allocation. None when it might not be (a `%`, an empty
/// or dot-led segment, a control byte): resolve it then. A path
/// with a dot-led segment is never in normal form here, so a hidden name
/// is always judged by `resolve`.
/// One pass over the bytes (it runs for every request).
pub fn normal_form(target: &str) -> Option<&str> {
    let b = target.as_bytes();
    if b.first() != Some(&b'/') {
        return None;
    }
    let mut seg_start = 1;
    let mut end = b.len();
    for (i, &c) in b.iter().enumerate().skip(1) {
        match c {
            b'?' | b'#' => {
                end = i;
                break;
            }
            b'%' | 0..0x20 | 0x7f => return None,
            // An empty segment before another.
            b'/' if i == seg_start => return None,
            b'/' => seg_start = i + 1,
            b'.' if i == seg_start => return None,
            _ => {}
        }
    }
    Some(&target[..end])
}

/// Decode once, resolve dot-segments, refuse anything that could leave the root.
pub fn resolve(target: &str, serve_dotfiles: bool) -> Result<ReqPath, PathError> {
    let (path, query) = split_target(target)?;
    let decoded = decode(path)?;
    if decoded.contains(&0) {
        return Err(PathError::Bad);
    }
    let trailing_slash = decoded.ends_with(b"/");
    let mut segs: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                // Above the root: refuse rather than clamp, like nginx.
                if segs.pop().is_none() {
                    return Err(PathError::Bad);
                }
            }
            s => segs.push(s),
        }
    }
    if !serve_dotfiles && hidden_path(segs.iter().copied()) {
        return Err(PathError::NotFound);
    }
    let last_is_dot = decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    Ok(ReqPath {
        rel: OsString::from_vec(segs.join(&b'/')),
        trailing_slash: trailing_slash || last_is_dot || segs.is_empty(),
        query: query.map(str::to_string),
    })
}

/// Percent-decode a path once. A `%` not followed by two hex digits
/// (`/100%.txt`, `/%zz`, `/%4`) is an error, as in nginx (400), not a
/// literal `%`: the client meant something it did not say.
fn decode(path: &str) -> Result<Vec<u8>, PathError> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::Bad);
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Is segment `i` (0 = first, just below the root) of a resolved path a
/// hidden dotfile when dotfiles are not served? Every dot segment is, except
/// `.well-known` as the first segment (RFC 8615: ACME http-01 challenges,
/// `security.txt`); dot segments below it, and a `.well-known` anywhere
/// else, stay hidden. The one rule for hidden names: request paths here,
/// where symlinks lead and what listings show in `os.rs`.
pub fn is_hidden(i: usize, seg: &[u8]) -> bool {
    seg.starts_with(b".") && !(i == 0 && seg == WELL_KNOWN.as_bytes())
}

/// Does a path below the root (its segments, first just below the root)
/// have a hidden segment? Only what is below the root counts: a root that
/// itself lives under a dot-directory (`/home/u/.sites/www`) is not hidden.
pub fn hidden_path<'a>(segs: impl IntoIterator<Item = &'a [u8]>) -> bool {
    segs.into_iter().enumerate().any(|(i, s)| is_hidden(i, s))
}

/// The one dot-named directory served with dotfiles hidden (RFC 8615).
const WELL_KNOWN: &str = ".well-known";

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(t: &str) -> Result<String, PathError> {
        resolve(t, false).map(|p| p.rel.into_string().expect("UTF-8"))
    }

    fn rel_bytes(t: &str) -> Result<Vec<u8>, PathError> {
        resolve(t, false).map(|p| p.rel.into_vec())
    }

    /// A `%` not followed by two hex digits is a bad request, never a
    /// literal `%` (nginx: 400).
    #[test]
    fn invalid_escapes_are_bad() {
        for t in [
            "/100%.txt",
            "/%zz",
            "/%4",
            "/%",
            "/a%2",
            "/%g0a",
            "/a%%41",
            "/%2%41",
            "/d/%/x",
            "/x?%zz",
        ]
        .iter()
        .filter(|t| !t.contains('?'))
        {
            assert_eq!(rel(t), Err(PathError::Bad), "{t}");
        }
        // In the query it is not the path's business.
        assert_eq!(rel("/x?%zz").as_deref(), Ok("x"));
        assert_eq!(rel("/100%25.txt").as_deref(), Ok("100%.txt"));
        assert_eq!(rel("/%4a%4A").as_deref(), Ok("JJ"));
    }

    /// Any byte but NUL and `/` can be in a name, and is asked for
    /// percent-encoded: control bytes, a backslash, bytes that are not UTF-8.
    #[test]
    fn names_are_bytes() {
        assert_eq!(rel_bytes("/a%09b.txt").unwrap(), b"a\tb.txt");
        assert_eq!(rel_bytes("/a%0Ab.txt").unwrap(), b"a\nb.txt");
        assert_eq!(rel_bytes("/a%0d%7F").unwrap(), b"a\r\x7f");
        assert_eq!(rel_bytes("/caf%E9.txt").unwrap(), b"caf\xe9.txt");
        assert_eq!(rel_bytes("/d%FF/x").unwrap(), b"d\xff/x");
        assert_eq!(rel_bytes("/a%5cb").unwrap(), b"a\\b");
        assert_eq!(rel_bytes("/a\\b").unwrap(), b"a\\b");
        // A backslash is not a separator: "..\\x" is one name.
        let dots = resolve("/..%5cx", true).unwrap().rel.into_vec();
        assert_eq!(dots, b"..\\x");
        assert_eq!(rel("/%00"), Err(PathError::Bad));
        assert_eq!(rel("/a%00b"), Err(PathError::Bad));
        // %2F is a separator once decoded: it cannot be in a name.
        assert_eq!(rel("/a%2Fb").as_deref(), Ok("a/b"));
        // A hidden name stays hidden however its other bytes look.
        assert_eq!(rel("/.%E9"), Err(PathError::NotFound));
    }

    /// The normal form is one for one with the path's bytes: two names
    /// never share a cache key.
    #[test]
    fn normal_form_of_bytes() {
        let normal = |t: &str| resolve(t, false).unwrap().normal();
        assert_eq!(normal("/caf%E9.txt"), "/caf%E9.txt");
        assert_eq!(normal("/caf%e9.txt"), "/caf%E9.txt");
        assert_eq!(normal("/caf%2525E9.txt"), "/caf%2525E9.txt");
        assert_eq!(normal("/caf%25E9.txt"), "/caf%25E9.txt");
        assert_ne!(normal("/caf%25E9.txt"), normal("/caf%E9.txt"));
        assert_eq!(normal("/caf%C3%A9.txt"), "/caf\u{e9}.txt");
        assert_eq!(normal("/a%09b"), "/a\tb");
        assert_eq!(normal("/a%5Cb"), "/a\\b");
        assert_eq!(normal_form("/a\\b"), Some("/a\\b"));
        assert_eq!(normal_form("/caf%E9.txt"), None);
        assert_eq!(
            resolve("/caf%E9/", false).unwrap().slash_redirect(),
            "/caf%E9/"
        );
    }

    #[test]
    fn normalises() {
        assert_eq!(rel("/").unwrap(), "");
        assert_eq!(rel("/a/b.html").unwrap(), "a/b.html");
        assert_eq!(rel("/a/./b/../c").unwrap(), "a/c");
        assert_eq!(rel("//a//b").unwrap(), "a/b");
        assert_eq!(rel("/a%20b").unwrap(), "a b");
        assert_eq!(rel("/%61").unwrap(), "a");
        assert_eq!(rel("/x?q=1").unwrap(), "x");
        assert_eq!(rel("http://h/x/y?z").unwrap(), "x/y");
        assert_eq!(rel("http://h").unwrap(), "");
        for t in [
            "http://u@h/x",
            "http://u:p@h/x",
            "https://@h",
            "http://u@h?q",
        ] {
            assert_eq!(rel(t), Err(PathError::Bad), "{t}");
        }
        assert_eq!(
            rel("http://h/x@y").unwrap(),
            "x@y",
            "an @ in the path is not userinfo"
        );
        assert!(resolve("/d/", false).unwrap().trailing_slash);
        assert!(!resolve("/d", false).unwrap().trailing_slash);
        assert_eq!(
            resolve("/d?a=1", false).unwrap().query.as_deref(),
            Some("a=1")
        );
    }

    /// Every spelling of a path has one normal form, and a target already
    /// in it is recognised without resolving.
    #[test]
    fn normal_form_is_the_segment_rule() {
        // The rule as first written, segment by segment: the oracle.
        fn by_segments(target: &str) -> Option<&str> {
            let path = target.split(['?', '#']).next()?;
            let rest = path.strip_prefix('/')?;
            if path.bytes().any(|b| b == b'%' || b < 0x20 || b == 0x7f) {
                return None;
            }
            let mut segs = rest.split('/').peekable();
            while let Some(seg) = segs.next() {
                let last = segs.peek().is_none();
                if (seg.is_empty() && !last) || seg.starts_with('.') {
                    return None;
                }
            }
            Some(path)
        }
        // Every string of up to 5 bytes over the bytes that matter.
        let alphabet = ["/", ".", "a", "?", "#", "%", "\x01", "\x7f", "é"];
        let mut all = vec![String::new()];
        for _ in 0..5 {
            let next: Vec<String> = all
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(next.iter().filter(|s| s.len() <= 8).cloned());
            all.sort();
            all.dedup();
        }
        assert!(all.len() > 50_000, "{}", all.len());
        for t in &all {
            assert_eq!(normal_form(t), by_segments(t), "{t:?}");
        }
    }

    #[test]
    fn normal_forms() {
        let normal = |t: &str| resolve(t, false).unwrap().normal();
        for (t, want) in [
            ("/a.css", "/a.css"),
            ("//a.css", "/a.css"),
            ("/%61.css", "/a.css"),
            ("/./a.css", "/a.css"),
            ("/x/../a.css", "/a.css"),
            ("/a.css?v=2", "/a.css"),
            ("http://h/a.css", "/a.css"),
            ("/", "/"),
            ("//", "/"),
            ("/d/", "/d/"),
            ("/d//", "/d/"),
            ("/d/.", "/d/"),
            ("/d", "/d"),
            ("/a%20b/c", "/a b/c"),
            ("/\u{e9}t\u{e9}", "/\u{e9}t\u{e9}"),
        ] {
            assert_eq!(normal(t), want, "{t}");
        }
        for t in [
            "/a.css",
            "/a.css?v=2",
            "/a.css#f",
            "/",
            "/d/",
            "/d/e/f.txt",
            "/a b",
            "/\u{e9}t\u{e9}",
            "//a.css",
            "/%61.css",
            "/./a.css",
            "/d/.",
            "/d//",
            "/x/../a.css",
            "/.well-known/x",
            "/.env",
            "/a\\b",
            "http://h/a.css",
            "*",
        ] {
            // Recognised only when it is its own normal form.
            match normal_form(t) {
                Some(k) => assert_eq!(k, normal(t), "{t}"),
                None => {
                    let fast = ["/a.css", "/a.css?v=2", "/a.css#f", "/", "/d/", "/d/e/f.txt"];
                    assert!(!fast.contains(&t), "{t}: not recognised");
                }
            }
        }
    }

    #[test]
    fn slash_redirect_is_local_and_normalised() {
        let loc = |t: &str| resolve(t, false).unwrap().slash_redirect();
        assert_eq!(loc("/css"), "/css/");
        assert_eq!(loc("/a/b?x=1"), "/a/b/?x=1");
        assert_eq!(loc("//evil.example/../css"), "/css/");
        assert_eq!(loc("///evil.example/../css"), "/css/");
        assert_eq!(loc("//evil.example/%2e%2e/css"), "/css/");
        assert_eq!(loc("http://x//evil.example/../css"), "/css/");
        assert_eq!(loc("/%2fevil.example"), "/evil.example/");
        assert_eq!(loc("/a%20b/c%3fd"), "/a%20b/c%3Fd/");
        assert_eq!(loc("/%E2%82%AC"), "/%E2%82%AC/");
        assert_eq!(loc("/a%25b"), "/a%25b/");
        for t in ["//x", "///x", "/./x", "/x/.", "http://h//x"] {
            assert!(!loc(t).starts_with("//"), "{t} -> {}", loc(t));
        }
    }

    #[test]
    fn refuses_escapes() {
        for t in [
            "/..",
            "/../x",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/a/../../x",
            "/..%2fx",
            "/.%2e/x",
            "/%00",
            "/%zz/../x",
            "/%c0%ae%c0%ae/../../x",
            "*",
            "x",
            "http://h/../x",
        ] {
            assert!(rel(t).is_err(), "{t} -> {:?}", rel(t));
        }
        // Double-encoded stays literal: "%2e%2e" is a (dot-less) name, never "..".
        assert_eq!(rel("/%252e%252e/x").unwrap(), "%2e%2e/x");
        assert_eq!(rel("/.git/config"), Err(PathError::NotFound));
        assert_eq!(rel("/a/.env"), Err(PathError::NotFound));
        assert_eq!(
            resolve("/.well-known/x", true).unwrap().rel,
            ".well-known/x"
        );
    }

    #[test]
    fn well_known_is_served_with_dotfiles_hidden() {
        for (t, want) in [
            (
                "/.well-known/acme-challenge/tok",
                ".well-known/acme-challenge/tok",
            ),
            ("/.well-known/security.txt", ".well-known/security.txt"),
            ("/.well-known/", ".well-known"),
            ("/.well-known", ".well-known"),
            ("//.well-known//x", ".well-known/x"),
            ("/a/../.well-known/x", ".well-known/x"),
            ("/.well-known/a/../b", ".well-known/b"),
            // Percent-encoded forms are the decoded form.
            ("/%2ewell-known/x", ".well-known/x"),
            ("/%2Ewell-known/x", ".well-known/x"),
            ("/.well%2dknown/x", ".well-known/x"),
            ("http://h/.well-known/x?q", ".well-known/x"),
        ] {
            assert_eq!(rel(t).as_deref(), Ok(want), "{t}");
        }
        for t in [
            // Any other dot segment, below it or after ".." is resolved.
            "/.well-known/.secret",
            "/.well-known/acme-challenge/.x",
            "/.well-known/../.env",
            "/.well-known/%2e%2e/.env",
            "/.well-known/%2esecret",
            // Only at the root, and only exactly that name.
            "/a/.well-known/x",
            "/a/%2ewell-known/x",
            "/.well-known/.well-known/x",
            "/.Well-Known/x",
            "/.well-knownx/x",
            "/.well-known./x",
            "/.git/config",
        ] {
            assert_eq!(rel(t), Err(PathError::NotFound), "{t}");
        }
        // "/.well-known/.." is the root itself, not hidden.
        assert_eq!(rel("/.well-known/..").as_deref(), Ok(""));
    }
}
