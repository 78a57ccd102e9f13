//! Request target -> a path relative to the root. Pure: no filesystem access.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};

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
    /// Not a usable target at all (bad form, NUL, backslash, invalid UTF-8) -> 400.
    Bad,
    /// Names something we never serve (above the root, a dotfile) -> 404.
    NotFound,
}

/// A resolved request path.
#[derive(Debug, PartialEq, Eq)]
pub struct ReqPath {
    /// Relative path under the root, segments joined by '/', no leading '/'.
    /// Empty for the root itself.
    pub rel: String,
    /// The decoded target ended with '/' (a directory is asked for).
    pub trailing_slash: bool,
    /// The query string as sent (without '?'), kept for redirects.
    pub query: Option<String>,
}

impl ReqPath {
    /// The normal form of the path asked for: `/`, the segments, and a
    /// trailing `/` when a directory is asked for. Every spelling of one
    /// path (`//a.css`, `/%61.css`, `/./a.css`, `/a.css?v=2`) has the same
    /// normal form: the small-file cache's key.
    pub fn normal(&self) -> String {
        let mut n = String::with_capacity(self.rel.len() + 2);
        n.push('/');
        n.push_str(&self.rel);
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
        for seg in self.rel.split('/').filter(|s| !s.is_empty()) {
            loc.push('/');
            loc.extend(utf8_percent_encode(seg, SEGMENT));
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
        // absolute-form: http://authority/path?query
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
/// or dot-led segment, a byte `resolve` refuses): resolve it then. A path
/// with a dot-led segment is never in normal form here, so a hidden name
/// is always judged by `resolve`.
pub fn normal_form(target: &str) -> Option<&str> {
    let path = target.split(['?', '#']).next()?;
    let rest = path.strip_prefix('/')?;
    if path
        .bytes()
        .any(|b| b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f)
    {
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

/// Decode once, resolve dot-segments, refuse anything that could leave the root.
pub fn resolve(target: &str, serve_dotfiles: bool) -> Result<ReqPath, PathError> {
    let (path, query) = split_target(target)?;
    let decoded = percent_decode(path.as_bytes()).collect::<Vec<u8>>();
    if decoded.contains(&0) || decoded.contains(&b'\\') {
        return Err(PathError::Bad);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::Bad)?;
    let trailing_slash = decoded.ends_with('/');
    let mut segs: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                // Above the root: refuse rather than clamp, like nginx.
                if segs.pop().is_none() {
                    return Err(PathError::Bad);
                }
            }
            s => segs.push(s),
        }
    }
    if segs
        .iter()
        .any(|s| s.bytes().any(|b| b < 0x20 || b == 0x7f))
    {
        return Err(PathError::Bad);
    }
    if !serve_dotfiles && hidden_path(segs.iter().map(|s| s.as_bytes())) {
        return Err(PathError::NotFound);
    }
    let last_is_dot = decoded.ends_with("/.") || decoded.ends_with("/..");
    Ok(ReqPath {
        rel: segs.join("/"),
        trailing_slash: trailing_slash || last_is_dot || segs.is_empty(),
        query: query.map(str::to_string),
    })
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
        resolve(t, false).map(|p| p.rel)
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
            "/a%5c..%5cx",
            "/a\\b",
            "/%c0%ae%c0%ae/x",
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
