//! The small-file cache: what a request path was answered with last time
//! (the file and its precompressed variants as shared bytes, its type and
//! its rules' headers), so that a hit does no open, fstat, read or close.
//!
//! One cache per worker thread, so a hit takes no lock and shares nothing
//! with the other workers. Entries belong to one responder (one config
//! generation): a reload's new responder starts empty. An entry is served
//! for `cache_revalidate` after it was read; then the path is looked up on
//! disk again, so a change is seen within that interval. The cost of that:
//! one lookup and read per cached path per interval, only for paths still
//! being requested.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::http::reply::Text;

use super::entity::Rep;

/// A cached answer for one request path.
#[derive(Debug)]
pub struct Entry {
    /// The file (`[0]`) and its fresh variants, their bytes in memory.
    pub reps: Vec<Rep>,
    pub ctype: Text,
    /// The header fields the rules set for this path, merged in order.
    pub rules: Vec<(String, String)>,
    /// Served until then; looked up again after.
    pub until: Instant,
}

impl Entry {
    /// Bytes this entry holds (bodies, rendered heads, the rules' fields
    /// and the fixed cost of an entry).
    fn size(&self, key: &str) -> usize {
        const OVERHEAD: usize = 256;
        self.reps
            .iter()
            .map(|r| r.len as usize + r.etag.len() + r.head.as_ref().map_or(0, |h| h.len()))
            .sum::<usize>()
            + self
                .rules
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
            + key.len()
            + OVERHEAD
    }
}

/// A new owner id for a responder's entries.
pub fn new_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Default)]
struct Cache {
    owner: u64,
    map: HashMap<Box<str>, Rc<Entry>>,
    bytes: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The entry for `key`, if this worker has a current one from `owner`.
pub fn get(owner: u64, key: &str, now: Instant) -> Option<Rc<Entry>> {
    CACHE.with(|c| {
        let c = c.borrow();
        if c.owner != owner {
            return None;
        }
        c.map.get(key).filter(|e| now < e.until).cloned()
    })
}

/// Keep `entry` for `key`, within `budget` bytes for this worker: expired
/// entries go first, then others, until it fits. An entry larger than the
/// whole budget is not kept.
pub fn put(owner: u64, key: &str, entry: Entry, budget: usize, now: Instant) -> Rc<Entry> {
    let size = entry.size(key);
    let entry = Rc::new(entry);
    if size > budget {
        return entry;
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.owner != owner {
            // Another generation's entries: let them all go.
            *c = Cache {
                owner,
                ..Cache::default()
            };
        }
        if let Some(old) = c.map.remove(key) {
            c.bytes -= old.size(key);
        }
        if c.bytes + size > budget {
            let mut freed = 0;
            c.map.retain(|k, e| {
                let keep = now < e.until;
                if !keep {
                    freed += e.size(k);
                }
                keep
            });
            c.bytes -= freed;
        }
        while c.bytes + size > budget {
            let Some(k) = c.map.keys().next().cloned() else {
                break;
            };
            if let Some(e) = c.map.remove(&k) {
                c.bytes -= e.size(&k);
            }
        }
        c.bytes += size;
        c.map.insert(key.into(), entry.clone());
        entry
    })
}

/// What this worker's cache holds: (entries, bytes).
#[cfg(test)]
pub fn usage(owner: u64) -> (usize, usize) {
    CACHE.with(|c| {
        let c = c.borrow();
        if c.owner == owner {
            (c.map.len(), c.bytes)
        } else {
            (0, 0)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::config::Config;
    use crate::files::{Responder, Settings};
    use crate::http::parse::with_request;
    use crate::http::{Body, Notes, Now, Reply, Respond};
    use crate::log::Level;

    use super::*;

    fn ask(r: &Responder, at: Instant, fields: &str, target: &str) -> Reply {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
        let now = Now::new(at, SystemTime::now());
        with_request(&raw, |req| {
            r.respond(req, &now, &mut Notes::new(Level::Info))
        })
    }

    /// A header field's value, from the rendered lines or the list.
    fn field(r: &Reply, name: &str) -> Option<String> {
        let rendered = std::str::from_utf8(&r.rendered).unwrap();
        rendered
            .split("\r\n")
            .filter_map(|l| l.split_once(": "))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
            .or_else(|| r.headers.get(name).map(str::to_string))
    }

    fn body(r: &Reply) -> Vec<u8> {
        match &r.body {
            Body::Bytes(b) => b.to_vec(),
            other => panic!("not from the cache: {other:?}"),
        }
    }

    fn responder(dir: &std::path::Path, cfg: &str) -> Responder {
        let cfg = Config::parse(&format!("workers = 1\n{cfg}"), "t").unwrap();
        Responder::new(dir, Settings::from_config(&cfg)).unwrap()
    }

    /// A hit touches nothing on disk: the file can be gone and the cached
    /// answer is still served until it is due to be looked up again.
    #[test]
    fn hits_do_no_lookup_until_revalidation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.css"), b"A-CSS").unwrap();
        let r = responder(dir.path(), "cache_revalidate = \"2s\"");
        let t0 = Instant::now();
        let first = ask(&r, t0, "", "/a.css");
        assert_eq!(body(&first), b"A-CSS");
        std::fs::remove_file(dir.path().join("a.css")).unwrap();
        let hit = ask(&r, t0 + Duration::from_millis(1999), "", "/a.css?v=2");
        assert_eq!(hit.status.0, 200);
        assert_eq!(body(&hit), b"A-CSS");
        assert_eq!(field(&hit, "etag"), field(&first, "etag"));
        let later = ask(&r, t0 + Duration::from_secs(2), "", "/a.css");
        assert_eq!(
            later.status.0, 404,
            "looked up again after cache_revalidate"
        );
    }

    /// Every spelling of a path shares one entry (the key is the path's
    /// normal form, not the raw target): the aliases' answers are the very
    /// same bytes, and the cache holds one entry's worth of them.
    #[test]
    fn aliases_share_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.css"), b"A-CSS").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/index.html"), b"D-INDEX").unwrap();
        let r = responder(dir.path(), "");
        let t0 = Instant::now();
        let first = ask(&r, t0, "", "/a.css");
        let one = usage(r.owner);
        assert_eq!(one.0, 1);
        for alias in [
            "//a.css",
            "/%61.css",
            "/./a.css",
            "/x/../a.css?v=1",
            "http://t/a.css",
        ] {
            let again = ask(&r, t0, "", alias);
            assert_eq!(body(&again), b"A-CSS", "{alias}");
            let (Body::Bytes(a), Body::Bytes(b)) = (&first.body, &again.body) else {
                unreachable!()
            };
            assert_eq!(a.as_ptr(), b.as_ptr(), "{alias}: a copy of its own");
            assert_eq!(usage(r.owner), one, "{alias}: an entry of its own");
        }
        let d = ask(&r, t0, "", "/d/");
        for alias in ["/d//", "/%64/", "/d/.", "//d/./"] {
            let again = ask(&r, t0, "", alias);
            let (Body::Bytes(a), Body::Bytes(b)) = (&d.body, &again.body) else {
                panic!("{alias}: {:?}", again.body)
            };
            assert_eq!(a.as_ptr(), b.as_ptr(), "{alias}: a copy of its own");
        }
        assert_eq!(usage(r.owner).0, 2);
    }

    /// Variants, 304s, ranges and rules come from the cache too.
    #[test]
    fn variants_304_ranges_and_rules_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.css"), b"0123456789").unwrap();
        std::fs::write(dir.path().join("x.css.gz"), b"GZ-BYTES").unwrap();
        let r = responder(
            dir.path(),
            "[[rules]]\nmatch = \"*.css\"\nheaders = { \"Cache-Control\" = \"max-age=9\" }\n",
        );
        let t0 = Instant::now();
        let first = ask(&r, t0, "", "/x.css");
        let tag = field(&first, "etag").unwrap();
        std::fs::remove_file(dir.path().join("x.css")).unwrap();
        std::fs::remove_file(dir.path().join("x.css.gz")).unwrap();
        let gz = ask(&r, t0, "Accept-Encoding: gzip\r\n", "/x.css");
        assert_eq!(body(&gz), b"GZ-BYTES");
        assert_eq!(field(&gz, "content-encoding"), Some("gzip".into()));
        assert_eq!(field(&gz, "vary"), Some("Accept-Encoding".into()));
        assert_eq!(field(&gz, "cache-control"), Some("max-age=9".into()));
        let nm = ask(&r, t0, &format!("If-None-Match: {tag}\r\n"), "/x.css");
        assert_eq!(nm.status.0, 304);
        assert_eq!(field(&nm, "cache-control"), Some("max-age=9".into()));
        let part = ask(&r, t0, "Range: bytes=2-4\r\n", "/x.css");
        assert_eq!(part.status.0, 206);
        assert_eq!(body(&part), b"234");
        assert_eq!(field(&part, "vary"), Some("Accept-Encoding".into()));
    }

    /// A new responder (a reload) starts with nothing cached; files over
    /// cache_max_file are never read into memory; the budget holds.
    #[test]
    fn reload_empties_and_the_bounds_hold() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"A").unwrap();
        std::fs::write(dir.path().join("big.bin"), vec![7u8; 5000]).unwrap();
        let t0 = Instant::now();
        let r = responder(dir.path(), "cache_max_file = 4096");
        assert_eq!(body(&ask(&r, t0, "", "/a.txt")), b"A");
        assert!(matches!(ask(&r, t0, "", "/big.bin").body, Body::File(_)));
        assert_eq!(usage(r.owner).0, 1);
        // One byte of body, and its rendered head (over 100 bytes) counts.
        assert!(usage(r.owner).1 > 256 + 1 + 100, "{:?}", usage(r.owner));
        std::fs::write(dir.path().join("a.txt"), b"B").unwrap();
        let r2 = responder(dir.path(), "cache_max_file = 4096");
        assert_eq!(body(&ask(&r2, t0, "", "/a.txt")), b"B");
        assert_eq!(
            usage(r.owner),
            (0, 0),
            "the old generation's entries are gone"
        );
        // A budget of 4 KiB: 40 files of 100 bytes (about 600 with their
        // heads) cannot all stay.
        let r3 = responder(dir.path(), "cache_size = 4096");
        for i in 0..40 {
            let name = format!("f{i}.txt");
            std::fs::write(dir.path().join(&name), vec![b'x'; 100]).unwrap();
            assert_eq!(ask(&r3, t0, "", &format!("/{name}")).status.0, 200);
            assert!(usage(r3.owner).1 <= 4096, "{:?}", usage(r3.owner));
        }
        assert!(usage(r3.owner).0 >= 4, "{:?}", usage(r3.owner));
    }
}
