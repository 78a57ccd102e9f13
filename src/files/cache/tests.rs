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
        local: r.local(&stats, usize::MAX),
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
        files: Vec::new(),
        rel: Default::default(),
    };
    let pad = size - e(0).size(key);
    let entry = e(pad);
    assert_eq!(entry.size(key), size);
    entry
}

fn keys(c: &Cache, all: &[&str]) -> Vec<String> {
    let mut held: Vec<String> = all
        .iter()
        .filter(|k| c.find(c.hash(k), k).is_some())
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

/// Admission: at the budget, a path asked for once does not evict a
/// popular entry (and is not taken in); one asked for more than twice as
/// often as the least recently used entry does take its place; with room
/// to spare, anything is taken in.
#[test]
fn a_one_hit_path_does_not_evict_a_hot_one() {
    let (_reg, stats) = registered();
    let far = Instant::now() + Duration::from_secs(3600);
    let t = Instant::now();
    let mut c = Cache::new(1, 3000, stats);
    let all = ["/hot", "/warm", "/once", "/rising"];
    // Room: taken in however seldom asked for.
    assert!(c.admits("/hot", 1000));
    for k in ["/hot", "/warm"] {
        assert!(c.get(k, t).is_none());
        c.put(k, sized(k, 1500, far));
    }
    for _ in 0..20 {
        assert!(c.get("/hot", t).is_some());
    }
    assert!(c.get("/warm", t).is_some());
    // Full: a path asked for once would evict /hot (the least recently
    // used now, asked for 21 times): refused.
    assert!(c.get("/once", t).is_none());
    assert!(!c.admits("/once", 1500));
    // /warm (asked for twice) is the oldest now: refused still.
    assert!(c.get("/hot", t).is_some());
    assert!(!c.admits("/once", 1500));
    // Asked for 4 times: not more than twice 2.
    for _ in 0..4 {
        assert!(c.get("/rising", t).is_none());
    }
    assert!(!c.admits("/rising", 1500));
    // 5 times: it takes /warm's place, and /warm's only.
    assert!(c.get("/rising", t).is_none());
    assert!(c.admits("/rising", 1500));
    assert!(!c.admits("/rising", 2500), "it would evict /hot too");
    c.put("/rising", sized("/rising", 1500, far));
    assert_eq!(keys(&c, &all), ["/hot", "/rising"]);
    // Its own entry counts as room: a bigger entry for a cached path is
    // taken in when the rest fits.
    assert!(c.admits("/rising", 1500));
    assert!(!c.admits("/rising", 3001), "over the whole budget");
}

/// Through the responder: once the cache is full of a popular file, files
/// asked for once are answered from disk (a file body, sendfile), not read
/// into memory, and the popular file stays cached (the very same bytes).
#[test]
fn one_hit_files_are_sent_from_disk_and_the_hot_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hot.bin"), vec![b'h'; 3000]).unwrap();
    for i in 0..30 {
        std::fs::write(dir.path().join(format!("{i}.bin")), vec![b'c'; 3000]).unwrap();
    }
    // Room for the hot file and one more, not two more.
    let mut w = worker(dir.path(), "cache_size = 8192");
    let t0 = Instant::now();
    let first = w.ask(t0, "", "/hot.bin");
    for _ in 0..10 {
        w.ask(t0, "", "/hot.bin");
    }
    let mut from_disk = 0;
    for i in 0..30 {
        match w.ask(t0, "", &format!("/{i}.bin")).body {
            Body::File(_) => from_disk += 1,
            Body::Bytes(_) => {}
            other => panic!("{other:?}"),
        }
    }
    // The first one-hit file fits beside the hot one; the rest would
    // evict: sent from disk.
    assert!(from_disk >= 28, "{from_disk} of 30 from disk");
    let hot = w.ask(t0, "", "/hot.bin");
    let (Body::Bytes(a), Body::Bytes(b)) = (&first.body, &hot.body) else {
        panic!("the hot file left the cache: {:?}", hot.body)
    };
    assert_eq!(a.as_ptr(), b.as_ptr(), "read again");
}

/// A revalidation that finds the file unchanged serves the same bytes on
/// (nothing read again); a changed file is read anew.
#[test]
fn an_unchanged_file_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"AAAA").unwrap();
    let mut w = worker(dir.path(), "cache_revalidate = \"1s\"");
    let t0 = Instant::now();
    let first = w.ask(t0, "", "/a.txt");
    let again = w.ask(t0 + Duration::from_secs(2), "", "/a.txt");
    let (Body::Bytes(a), Body::Bytes(b)) = (&first.body, &again.body) else {
        panic!("{:?}", again.body)
    };
    assert_eq!(a.as_ptr(), b.as_ptr(), "read again though unchanged");
    assert_eq!(w.usage().0, 1);
    std::fs::write(dir.path().join("a.txt"), b"BBBBB").unwrap();
    let changed = w.ask(t0 + Duration::from_secs(4), "", "/a.txt");
    assert_eq!(body(&changed), b"BBBBB");
    assert_eq!(w.usage().0, 1);
}

/// A file that would evict several entries must be asked for more than
/// twice as often as all of them together, not each.
#[test]
fn a_large_file_weighs_all_it_would_evict() {
    let (_reg, stats) = registered();
    let far = Instant::now() + Duration::from_secs(3600);
    let t = Instant::now();
    let mut c = Cache::new(1, 3000, stats);
    for k in ["/a", "/b", "/c"] {
        assert!(c.get(k, t).is_none());
        assert!(c.get(k, t).is_none());
        c.put(k, sized(k, 1000, far));
    }
    // Asked for 5 times: more than twice /a's 2, not twice /a's and /b's.
    for _ in 0..5 {
        assert!(c.get("/big", t).is_none());
    }
    assert!(c.admits("/big", 1000));
    assert!(!c.admits("/big", 2000));
    for _ in 0..4 {
        assert!(c.get("/big", t).is_none());
    }
    assert!(c.admits("/big", 2000), "9 > 2 x (2 + 2)");
    assert!(!c.admits("/big", 3000), "9 > 2 x 6? no");
}
