//! The small-file cache: what a request path was answered with last time
//! (the file and its precompressed variants as shared bytes, what was
//! compressed for it on the fly, its type and its rules' headers), so that
//! a hit does no open, fstat, read, close or compression.
//!
//! A [`Cache`] is a plain value: the file responder makes one per worker
//! (`Respond::local`), the worker owns it and lends it to each request
//! through `http::Ctx::local`. So a hit takes no lock and shares nothing
//! with the other workers, and there is no hidden per-thread state. A cache
//! belongs to the responder that made it (one config generation): a
//! reload's new workers start with new, empty caches, and a responder never
//! reads another's (`owner`).
//!
//! Keyed by the request path's normal form (`path::normal_form`,
//! `ReqPath::normal`), so every spelling of a path shares one entry. Within
//! its byte budget (`cache_size` per worker) the least recently used entry
//! goes first: the entries are on a list in order of use, kept in a slab
//! with index links, so a hit, a fill and each eviction cost a hash lookup
//! and a few stores, whatever the cache holds. What it holds is published
//! to the worker's `/metrics` block when it changes (not on a hit).
//!
//! An entry is served for `cache_revalidate` after it was read; then the
//! path is looked up on disk again, so a change is seen within that
//! interval. The cost of that: one lookup and read per cached path per
//! interval, only for paths still being requested.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::http::reply::Text;
use crate::metrics::WorkerCounters;

use super::entity::Rep;

/// A cached answer for one request path.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file (`[0]`) and its fresh variants, their bytes in memory.
    pub reps: Vec<Rep>,
    /// The codings it may be compressed with on the fly (none a sibling's),
    /// in order of preference (`compress::Compression::codings_for`).
    pub fly: Vec<crate::config::Encoding>,
    /// Those made so far: each once, the first time a client asks for it,
    /// then kept here, counted against the budget, and dropped with the
    /// entry (a change on disk makes a new entry).
    pub made: Vec<Rep>,
    /// Its answers depend on Accept-Encoding (it has variants, on disk or
    /// on the fly).
    pub vary: bool,
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
            .chain(&self.made)
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

/// A new owner id for a responder's caches.
pub fn new_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// No slot: the end of the use list.
const NIL: usize = usize::MAX;

/// One cached path, a link in the use list.
#[derive(Debug)]
struct Node {
    key: Rc<str>,
    entry: Rc<Entry>,
    /// `entry.size(key)`, as counted in `Cache::bytes`.
    size: usize,
    /// The entry used just before this one (`NIL`: this is the newest).
    newer: usize,
    /// The entry used just after this one (`NIL`: this is the oldest).
    older: usize,
}

/// One worker's cache for one responder: at most `budget` bytes of entries,
/// the least recently used evicted first.
#[derive(Debug)]
pub struct Cache {
    /// The responder whose entries these are.
    owner: u64,
    budget: usize,
    /// Path (normal form) -> its slot in `nodes`.
    map: HashMap<Rc<str>, usize>,
    /// The slab; `None` slots are listed in `free`.
    nodes: Vec<Option<Node>>,
    free: Vec<usize>,
    /// The most and the least recently used entries (`NIL` when empty).
    newest: usize,
    oldest: usize,
    bytes: usize,
    /// Where the worker's `/metrics` gauges of this cache are.
    gauges: Arc<WorkerCounters>,
    /// The last entry dropped for being past its `until`, and its key: the
    /// lookup that follows may find the file unchanged and keep what was
    /// compressed for it (`take_expired`).
    expired: Option<(Rc<str>, Rc<Entry>)>,
    /// The loop turn (its time) whose compression `spent` counts.
    turn: Option<Instant>,
    spent: usize,
}

impl Cache {
    pub fn new(owner: u64, budget: usize, gauges: Arc<WorkerCounters>) -> Cache {
        Cache {
            owner,
            budget,
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            bytes: 0,
            gauges,
            expired: None,
            turn: None,
            spent: 0,
        }
    }

    /// The id of the responder that made it.
    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes held, as counted against the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The current entry for `key`, now the most recently used one. An
    /// entry past its `until` is dropped (the caller looks the path up
    /// again and puts what it finds).
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Rc<Entry>> {
        let i = *self.map.get(key)?;
        if now >= self.node(i).entry.until {
            let n = self.remove(i);
            self.expired = Some((n.key, n.entry));
            self.publish();
            return None;
        }
        if i != self.newest {
            self.unlink(i);
            self.push_newest(i);
        }
        Some(self.node(i).entry.clone())
    }

    /// Keep `entry` for `key` (replacing the one it had), evicting the least
    /// recently used entries until it fits the budget. An entry larger than
    /// the whole budget is not kept.
    pub fn put(&mut self, key: &str, entry: Entry) -> Rc<Entry> {
        self.expired = None;
        let size = entry.size(key);
        let entry = Rc::new(entry);
        if size > self.budget {
            return entry;
        }
        if let Some(&i) = self.map.get(key) {
            self.remove(i);
        }
        while self.bytes + size > self.budget && self.oldest != NIL {
            self.remove(self.oldest);
        }
        let key: Rc<str> = key.into();
        let node = Node {
            key: key.clone(),
            entry: entry.clone(),
            size,
            newer: NIL,
            older: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = Some(node);
                i
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        self.push_newest(i);
        self.map.insert(key, i);
        self.bytes += size;
        self.publish();
        entry
    }

    /// Drop every entry (they were read from a root that is no longer
    /// served: `release`).
    pub fn clear(&mut self) {
        self.map.clear();
        self.nodes.clear();
        self.free.clear();
        self.newest = NIL;
        self.oldest = NIL;
        self.bytes = 0;
        self.publish();
    }

    /// Whether `n` more source bytes may be compressed in the loop turn
    /// of `at` (the engine reads the clock once per turn, so `at` names
    /// the turn): within `compress::TURN_BUDGET` per turn, then counted.
    pub fn may_compress(&mut self, at: Instant, n: usize) -> bool {
        if self.turn != Some(at) {
            self.turn = Some(at);
            self.spent = 0;
        }
        if self.spent + n > super::compress::TURN_BUDGET {
            return false;
        }
        self.spent += n;
        true
    }

    /// Whether `e`, kept for `key`, would still fit the budget with `more`
    /// bytes (else what is added to it would not be kept, and would be
    /// made again on every request).
    pub fn keeps(&self, key: &str, e: &Entry, more: usize) -> bool {
        e.size(key) + more <= self.budget
    }

    /// A file was compressed with `coding` (`tandem_compressions_total`).
    pub fn compressed(&self, coding: crate::config::Encoding) {
        self.gauges.compressed(coding as usize);
    }

    fn node(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("a listed slot holds a node")
    }

    /// Take slot `i` off the use list (it stays in the slab and the map).
    fn unlink(&mut self, i: usize) {
        let (newer, older) = {
            let n = self.node(i);
            (n.newer, n.older)
        };
        match newer {
            NIL => self.newest = older,
            j => self.node(j).older = older,
        }
        match older {
            NIL => self.oldest = newer,
            j => self.node(j).newer = newer,
        }
    }

    /// Put slot `i` (not on the list) at the newest end.
    fn push_newest(&mut self, i: usize) {
        let old_newest = self.newest;
        {
            let n = self.node(i);
            n.newer = NIL;
            n.older = old_newest;
        }
        match old_newest {
            NIL => self.oldest = i,
            j => self.node(j).newer = i,
        }
        self.newest = i;
    }

    /// Drop slot `i`'s entry.
    fn remove(&mut self, i: usize) -> Node {
        self.unlink(i);
        let n = self.nodes[i].take().expect("a listed slot holds a node");
        self.map.remove(&*n.key);
        self.bytes -= n.size;
        self.free.push(i);
        n
    }

    /// The entry for `key` that `get` last dropped as expired, if it was
    /// this key's (it is given once; any other key's is let go).
    pub fn take_expired(&mut self, key: &str) -> Option<Rc<Entry>> {
        match self.expired.take() {
            Some((k, e)) if &*k == key => Some(e),
            _ => None,
        }
    }

    fn publish(&self) {
        self.gauges.set_cache(self.map.len(), self.bytes);
    }
}

impl Drop for Cache {
    /// Its worker ended: the cache is gone, and so is what it held.
    fn drop(&mut self) {
        self.gauges.set_cache(0, 0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::config::{Config, Encoding};
    use crate::files::{Responder, Settings};
    use crate::http::parse::with_request;
    use crate::http::{Body, Notes, Now, Reply, Respond};
    use crate::log::Level;
    use crate::metrics::Registry;

    use super::*;

    /// A responder and one worker's state for it.
    struct Worker {
        r: Responder,
        local: Box<dyn std::any::Any>,
        reg: Arc<Registry>,
    }

    impl Worker {
        fn ask(&mut self, at: Instant, fields: &str, target: &str) -> Reply {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
            let now = Now::new(at, SystemTime::now());
            with_request(&raw, |req| {
                self.r
                    .respond(req, &now, &mut *self.local, &mut Notes::new(Level::Info))
            })
        }

        /// What its cache holds: (entries, bytes).
        fn usage(&self) -> (usize, usize) {
            let local = self.local.downcast_ref::<crate::files::release::Local>();
            let c = local.and_then(|l| l.cache()).expect("a cache");
            (c.len(), c.bytes())
        }
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

    fn worker(dir: &std::path::Path, cfg: &str) -> Worker {
        let cfg = Config::parse(&format!("workers = 1\n{cfg}"), "t").unwrap();
        let r = Responder::new(dir, Settings::from_config(&cfg)).unwrap();
        let (reg, stats) = registered();
        Worker {
            local: r.local(&stats),
            r,
            reg,
        }
    }

    /// A hit touches nothing on disk: the file can be gone and the cached
    /// answer is still served until it is due to be looked up again.
    #[test]
    fn hits_do_no_lookup_until_revalidation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.css"), b"A-CSS").unwrap();
        let mut w = worker(dir.path(), "cache_revalidate = \"2s\"");
        let t0 = Instant::now();
        let first = w.ask(t0, "", "/a.css");
        assert_eq!(body(&first), b"A-CSS");
        std::fs::remove_file(dir.path().join("a.css")).unwrap();
        let hit = w.ask(t0 + Duration::from_millis(1999), "", "/a.css?v=2");
        assert_eq!(hit.status.0, 200);
        assert_eq!(body(&hit), b"A-CSS");
        assert_eq!(field(&hit, "etag"), field(&first, "etag"));
        let later = w.ask(t0 + Duration::from_secs(2), "", "/a.css");
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
        let mut w = worker(dir.path(), "");
        let t0 = Instant::now();
        let first = w.ask(t0, "", "/a.css");
        let one = w.usage();
        assert_eq!(one.0, 1);
        for alias in [
            "//a.css",
            "/%61.css",
            "/./a.css",
            "/x/../a.css?v=1",
            "http://t/a.css",
        ] {
            let again = w.ask(t0, "", alias);
            assert_eq!(body(&again), b"A-CSS", "{alias}");
            let (Body::Bytes(a), Body::Bytes(b)) = (&first.body, &again.body) else {
                unreachable!()
            };
            assert_eq!(a.as_ptr(), b.as_ptr(), "{alias}: a copy of its own");
            assert_eq!(w.usage(), one, "{alias}: an entry of its own");
        }
        let d = w.ask(t0, "", "/d/");
        for alias in ["/d//", "/%64/", "/d/.", "//d/./"] {
            let again = w.ask(t0, "", alias);
            let (Body::Bytes(a), Body::Bytes(b)) = (&d.body, &again.body) else {
                panic!("{alias}: {:?}", again.body)
            };
            assert_eq!(a.as_ptr(), b.as_ptr(), "{alias}: a copy of its own");
        }
        assert_eq!(w.usage().0, 2);
    }

    /// Variants, 304s, ranges and rules come from the cache too.
    #[test]
    fn variants_304_ranges_and_rules_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.css"), b"0123456789").unwrap();
        std::fs::write(dir.path().join("x.css.gz"), b"GZ-BYTES").unwrap();
        let mut w = worker(
            dir.path(),
            "[[rules]]\nmatch = \"*.css\"\nheaders = { \"Cache-Control\" = \"max-age=9\" }\n",
        );
        let t0 = Instant::now();
        let first = w.ask(t0, "", "/x.css");
        let tag = field(&first, "etag").unwrap();
        std::fs::remove_file(dir.path().join("x.css")).unwrap();
        std::fs::remove_file(dir.path().join("x.css.gz")).unwrap();
        let gz = w.ask(t0, "Accept-Encoding: gzip\r\n", "/x.css");
        assert_eq!(body(&gz), b"GZ-BYTES");
        assert_eq!(field(&gz, "content-encoding"), Some("gzip".into()));
        assert_eq!(field(&gz, "vary"), Some("Accept-Encoding".into()));
        assert_eq!(field(&gz, "cache-control"), Some("max-age=9".into()));
        let nm = w.ask(t0, &format!("If-None-Match: {tag}\r\n"), "/x.css");
        assert_eq!(nm.status.0, 304);
        assert_eq!(field(&nm, "cache-control"), Some("max-age=9".into()));
        let part = w.ask(t0, "Range: bytes=2-4\r\n", "/x.css");
        assert_eq!(part.status.0, 206);
        assert_eq!(body(&part), b"234");
        assert_eq!(field(&part, "vary"), Some("Accept-Encoding".into()));
    }

    /// A new responder (a reload) gets new, empty caches, and never serves
    /// from an old one's; files over cache_max_file are never read into
    /// memory; the budget holds; the worker's gauges follow the cache.
    #[test]
    fn reload_empties_and_the_bounds_hold() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"A").unwrap();
        std::fs::write(dir.path().join("big.bin"), vec![7u8; 5000]).unwrap();
        let t0 = Instant::now();
        let mut w = worker(dir.path(), "cache_max_file = 4096");
        assert_eq!(body(&w.ask(t0, "", "/a.txt")), b"A");
        assert!(matches!(w.ask(t0, "", "/big.bin").body, Body::File(_)));
        assert_eq!(w.usage().0, 1);
        // One byte of body, and its rendered head (over 100 bytes) counts.
        assert!(w.usage().1 > 256 + 1 + 100, "{:?}", w.usage());
        assert_eq!(gauges(&w.reg), w.usage(), "published to /metrics");
        std::fs::write(dir.path().join("a.txt"), b"B").unwrap();
        let mut w2 = worker(dir.path(), "cache_max_file = 4096");
        assert_eq!(w2.usage(), (0, 0), "a new generation starts empty");
        assert_eq!(body(&w2.ask(t0, "", "/a.txt")), b"B");
        // Handed the old generation's cache, the new responder neither
        // reads nor fills it.
        let now = Now::new(t0, SystemTime::now());
        let raw = "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
        let before = w.usage();
        let r = with_request(raw, |req| {
            w2.r.respond(req, &now, &mut *w.local, &mut Notes::new(Level::Info))
        });
        assert!(matches!(r.body, Body::File(_)), "{:?}", r.body);
        assert_eq!(w.usage(), before);
        // The worker ends: its cache goes, and its gauges with it.
        drop(w.local);
        assert_eq!(gauges(&w.reg), (0, 0));
        // A budget of 4 KiB: 40 files of 100 bytes (about 600 with their
        // heads) cannot all stay.
        let mut w3 = worker(dir.path(), "cache_size = 4096");
        for i in 0..40 {
            let name = format!("f{i}.txt");
            std::fs::write(dir.path().join(&name), vec![b'x'; 100]).unwrap();
            assert_eq!(w3.ask(t0, "", &format!("/{name}")).status.0, 200);
            assert!(w3.usage().1 <= 4096, "{:?}", w3.usage());
            assert_eq!(gauges(&w3.reg), w3.usage());
        }
        assert!(w3.usage().0 >= 4, "{:?}", w3.usage());
        // No cache at all when cache_size is 0.
        let w4 = worker(dir.path(), "cache_size = 0");
        let local = w4.local.downcast_ref::<crate::files::release::Local>();
        assert!(local.unwrap().cache().is_none());
    }

    /// Text of `n` bytes that compresses (not one byte repeated).
    fn text(n: usize, seed: u32) -> Vec<u8> {
        let mut t: Vec<u8> = (0..)
            .flat_map(|i| format!("<li id=\"n{seed}-{i}\">item {}</li>\n", i * 7 % 13).into_bytes())
            .take(n)
            .collect();
        t.truncate(n);
        t
    }

    fn compressions(reg: &Registry) -> [u64; 3] {
        reg.snapshot().totals.compressions
    }

    /// Compressed the first time a coding is asked for, then served from
    /// the entry; kept when a revalidation finds the file unchanged, made
    /// anew (new tag) when it changed.
    #[test]
    fn compressed_once_per_coding_and_version() {
        use crate::files::compress::decompress;
        let dir = tempfile::tempdir().unwrap();
        let src = text(4000, 1);
        std::fs::write(dir.path().join("a.html"), &src).unwrap();
        let mut w = worker(dir.path(), "cache_revalidate = \"1s\"");
        let t0 = Instant::now();
        let plain = w.ask(t0, "", "/a.html");
        assert_eq!(field(&plain, "vary"), Some("Accept-Encoding".into()));
        assert_eq!(field(&plain, "content-encoding"), None);
        let br = w.ask(t0, "Accept-Encoding: br\r\n", "/a.html");
        assert_eq!(field(&br, "content-encoding"), Some("br".into()));
        assert_eq!(decompress(Encoding::Br, &body(&br)), src);
        let tag = field(&br, "etag").unwrap();
        assert_ne!(Some(&tag), field(&plain, "etag").as_ref());
        assert_eq!(field(&br, "last-modified"), field(&plain, "last-modified"));
        for i in 0..50 {
            let again = w.ask(t0, "Accept-Encoding: gzip, br\r\n", "/a.html");
            assert_eq!(field(&again, "etag"), Some(tag.clone()), "{i}");
        }
        let gz = w.ask(t0, "Accept-Encoding: gzip\r\n", "/a.html");
        assert_eq!(decompress(Encoding::Gzip, &body(&gz)), src);
        assert_eq!(compressions(&w.reg), [1, 0, 1]);
        // The bytes count against the budget.
        let (_, bytes) = w.usage();
        assert!(bytes > src.len() + body(&br).len() + body(&gz).len());
        // Looked up again, unchanged: nothing is made again.
        let t1 = t0 + Duration::from_secs(2);
        let br1 = w.ask(t1, "Accept-Encoding: br\r\n", "/a.html");
        assert_eq!(field(&br1, "etag"), Some(tag.clone()));
        assert_eq!(compressions(&w.reg), [1, 0, 1]);
        // Changed: made anew, with a new tag.
        std::fs::write(dir.path().join("a.html"), text(4100, 2)).unwrap();
        let t2 = t1 + Duration::from_secs(2);
        let br2 = w.ask(t2, "Accept-Encoding: br\r\n", "/a.html");
        assert_eq!(decompress(Encoding::Br, &body(&br2)), text(4100, 2));
        assert_ne!(field(&br2, "etag"), Some(tag));
        assert_eq!(compressions(&w.reg), [2, 0, 1]);
    }

    /// A burst of first requests for many files in one loop turn compresses
    /// at most `TURN_BUDGET` bytes: the rest are answered as they are (with
    /// Vary), and compressed in a later turn.
    #[test]
    fn a_turn_compresses_within_its_budget() {
        use crate::files::compress::TURN_BUDGET;
        let dir = tempfile::tempdir().unwrap();
        let size = 20 << 10;
        for i in 0..6 {
            std::fs::write(dir.path().join(format!("f{i}.js")), text(size, i)).unwrap();
        }
        let mut w = worker(dir.path(), "");
        let t0 = Instant::now();
        let coded: Vec<bool> = (0..6)
            .map(|i| {
                let r = w.ask(t0, "Accept-Encoding: zstd\r\n", &format!("/f{i}.js"));
                assert_eq!(field(&r, "vary"), Some("Accept-Encoding".into()));
                field(&r, "content-encoding").is_some()
            })
            .collect();
        let fit = TURN_BUDGET / size;
        assert_eq!(coded.iter().filter(|c| **c).count(), fit, "{coded:?}");
        assert!(coded[..fit].iter().all(|c| *c), "{coded:?}");
        // The next turn (another instant) goes on.
        let t1 = t0 + Duration::from_millis(1);
        let r = w.ask(t1, "Accept-Encoding: zstd\r\n", &format!("/f{fit}.js"));
        assert_eq!(field(&r, "content-encoding"), Some("zstd".into()));
        assert_eq!(compressions(&w.reg), [0, fit as u64 + 1, 0]);
    }

    /// A worker's `/metrics` block, registered as the daemon's are.
    fn registered() -> (Arc<Registry>, Arc<WorkerCounters>) {
        let reg = Registry::new("epoll");
        let stats = reg.worker();
        (reg, stats)
    }

    /// The cache gauges, as a scrape reads them.
    fn gauges(reg: &Registry) -> (usize, usize) {
        let t = reg.snapshot().totals;
        (t.cache_entries as usize, t.cache_bytes as usize)
    }

    /// An entry of exactly `size` bytes for `key`, served until `until`.
    fn sized(key: &str, size: usize, until: Instant) -> Entry {
        let e = |pad: usize| Entry {
            reps: Vec::new(),
            fly: Vec::new(),
            made: Vec::new(),
            vary: false,
            ctype: Text::from("text/plain".to_string()),
            rules: vec![(String::new(), "x".repeat(pad))],
            until,
        };
        let pad = size - e(0).size(key);
        let entry = e(pad);
        assert_eq!(entry.size(key), size);
        entry
    }

    fn keys(c: &Cache, all: &[&str]) -> Vec<String> {
        let mut held: Vec<String> = all
            .iter()
            .filter(|k| c.map.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        held.sort();
        held
    }

    /// At the budget, the least recently used entry is the one evicted: a
    /// hit makes an entry the newest, a fill makes it the newest, and
    /// replacing a path's entry counts its bytes once.
    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let (reg, stats) = registered();
        let far = Instant::now() + Duration::from_secs(3600);
        let t = Instant::now();
        let all = ["/a", "/b", "/c", "/d", "/e"];
        let mut c = Cache::new(1, 3000, stats);
        for k in ["/a", "/b", "/c"] {
            c.put(k, sized(k, 1000, far));
        }
        assert_eq!((c.len(), c.bytes()), (3, 3000));
        // Used in the order b, a: c is now the least recently used.
        assert!(c.get("/b", t).is_some());
        assert!(c.get("/a", t).is_some());
        c.put("/d", sized("/d", 1000, far));
        assert_eq!(keys(&c, &all), ["/a", "/b", "/d"]);
        // b is the oldest now; a fill of 2000 takes b and then a.
        c.put("/e", sized("/e", 2000, far));
        assert_eq!(keys(&c, &all), ["/d", "/e"]);
        assert_eq!((c.len(), c.bytes()), (2, 3000));
        assert_eq!(gauges(&reg), (2, 3000));
        // Replacing e with a smaller entry: its old bytes are given back,
        // nothing else goes.
        c.put("/e", sized("/e", 500, far));
        assert_eq!(keys(&c, &all), ["/d", "/e"]);
        assert_eq!(c.bytes(), 1500);
        // Larger than the whole budget: not kept, and nothing is evicted.
        let big = c.put("/a", sized("/a", 3001, far));
        assert_eq!(big.until, far);
        assert_eq!(keys(&c, &all), ["/d", "/e"]);
        // d, the oldest, goes before e; the slot it freed is used again.
        c.put("/b", sized("/b", 2000, far));
        assert_eq!(keys(&c, &all), ["/b", "/e"]);
        assert_eq!(c.nodes.len(), 3, "freed slots are reused");
        assert_eq!(gauges(&reg), (2, 2500));
    }

    /// An entry past its time is dropped when asked for, and its bytes
    /// with it (it does not wait for an eviction).
    #[test]
    fn an_expired_entry_is_dropped_when_asked_for() {
        let (reg, stats) = registered();
        let t = Instant::now();
        let mut c = Cache::new(1, 10_000, stats);
        c.put("/a", sized("/a", 1000, t + Duration::from_secs(1)));
        c.put("/b", sized("/b", 1000, t + Duration::from_secs(9)));
        assert!(c.get("/a", t).is_some());
        assert!(c.get("/a", t + Duration::from_secs(1)).is_none());
        assert_eq!((c.len(), c.bytes()), (1, 1000));
        assert_eq!(gauges(&reg), (1, 1000));
        assert!(c.get("/b", t + Duration::from_secs(1)).is_some());
        drop(c);
        assert_eq!(gauges(&reg), (0, 0));
    }
}
