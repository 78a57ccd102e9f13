//! Atomic deploys by symlink swap: `root` is `current`, a symlink to
//! `releases/vN`, swapped the way release tools do it
//! (`ln -sfn releases/vN current.tmp && mv -T current.tmp current`). New
//! requests are served from the new release within `cache_revalidate`,
//! without a reload; each answer is wholly from one release; deleting the
//! old release after the swap costs no error. Both engines.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::load::*;
use common::*;

/// The files every release has, and the size of each body.
const FILES: &[(&str, usize)] = &[
    ("index.html", 300),
    ("app.js", 2000),
    ("app.js.gz", 500),
    ("404.html", 200),
    // Over cache_max_file: sent from disk, so it can be in flight while
    // its release is deleted.
    ("big.bin", 512 * 1024),
];

/// The body of `name` in release `n`: one marker line repeated, so a body
/// wholly from one release is exactly `body(name, n)` for the `n` it
/// starts with.
fn body(name: &str, n: u32, len: usize) -> Vec<u8> {
    let line = format!("{name} release v{n:05}\n");
    line.bytes().cycle().take(len).collect()
}

fn len_of(name: &str) -> usize {
    FILES
        .iter()
        .find(|(f, _)| *f == name)
        .expect("a release file")
        .1
}

/// The release number a body claims (its first line).
fn release_of(name: &str, got: &[u8]) -> Option<u32> {
    let prefix = format!("{name} release v");
    let rest = got.strip_prefix(prefix.as_bytes())?;
    std::str::from_utf8(rest.get(..5)?).ok()?.parse().ok()
}

/// A deploy directory: `releases/vN` and the `current` link.
struct Deploy {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

impl Deploy {
    fn new() -> Deploy {
        let dir = tempfile::Builder::new()
            .prefix("tandem-deploy-")
            .tempdir()
            .unwrap();
        set_mode(dir.path(), 0o755);
        let base = dir.path().to_path_buf();
        fs::create_dir(base.join("releases")).unwrap();
        let d = Deploy { _dir: dir, base };
        d.release(1);
        symlink("releases/v1", d.current()).unwrap();
        d
    }

    fn current(&self) -> PathBuf {
        self.base.join("current")
    }

    fn dir(&self, n: u32) -> PathBuf {
        self.base.join(format!("releases/v{n}"))
    }

    /// Write release `n` (the .gz sibling after its source, so it is fresh),
    /// plus a file only this release has.
    fn release(&self, n: u32) {
        let d = self.dir(n);
        fs::create_dir(&d).unwrap();
        for (name, len) in FILES {
            fs::write(d.join(name), body(name, n, *len)).unwrap();
        }
        fs::write(d.join(format!("only-v{n}.css")), body("only", n, 50)).unwrap();
    }

    /// Point `current` at release `n`, atomically.
    fn swap(&self, n: u32) {
        let tmp = self.base.join("current.tmp");
        let _ = fs::remove_file(&tmp);
        symlink(format!("releases/v{n}"), &tmp).unwrap();
        fs::rename(&tmp, self.current()).unwrap();
    }

    fn delete(&self, n: u32) {
        fs::remove_dir_all(self.dir(n)).unwrap();
    }
}

fn config(revalidate: &str) -> String {
    format!(
        "workers = 2\ncache_revalidate = \"{revalidate}\"\nprecompressed = [\"gzip\"]\n\
         error_pages = {{ 404 = \"/404.html\" }}\naccess_log = \"off\"\n"
    )
}

/// The release `path` is served from now (a new connection each time, so
/// either worker may answer), checking the body is wholly that release's.
fn served(srv: &Server, path: &str, name: &str) -> u32 {
    let r = get(srv.addr(), path);
    assert_eq!(r.status, 200, "{path}: {}", r.describe());
    let n = release_of(name, &r.body).unwrap_or_else(|| panic!("{path}: {}", r.describe()));
    assert_eq!(r.body, body(name, n, len_of(name)), "{path}: mixed body");
    n
}

/// Wait until every one of `tries` fresh connections in a row is answered
/// from release `n`; how long that took, or None past `timeout`.
fn wait_release(srv: &Server, n: u32, timeout: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if (0..8).all(|_| served(srv, "/index.html", "index.html") == n) {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10)); // poll interval
    }
}

engine_tests! {
    /// A swap is seen within cache_revalidate, without a reload, by every
    /// worker; the cached answers of the old release go with it; deleting
    /// the old release right after the next swap costs no request.
    fn a_swapped_root_is_served_without_a_reload(e) {
        let d = Deploy::new();
        let srv = start_or_skip!(e, &config("300ms"), &d.current());
        // Cached (index.html, app.js) and not (big.bin): all from v1.
        assert_eq!(served(&srv, "/index.html", "index.html"), 1);
        assert_eq!(served(&srv, "/", "index.html"), 1);
        assert_eq!(served(&srv, "/big.bin", "big.bin"), 1);
        assert_eq!(get(srv.addr(), "/only-v1.css").status, 200);
        // A connection kept open across the swap sees it too (its worker
        // looks again within cache_revalidate of its last look).
        let mut kept = srv.connect();
        let app = b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n";
        assert_eq!(kept.roundtrip(app).body, body("app.js", 1, len_of("app.js")));
        d.release(2);
        d.swap(2);
        let took = wait_release(&srv, 2, Duration::from_secs(5))
            .expect("release 2 served within 5 s of the swap (cache_revalidate is 300ms)");
        eprintln!("{e}: release 2 served {took:?} after the swap");
        let t0 = Instant::now();
        loop {
            let r = kept.roundtrip(app);
            let n = release_of("app.js", &r.body).unwrap_or_else(|| panic!("{}", r.describe()));
            assert_eq!(r.body, body("app.js", n, len_of("app.js")), "mixed: {}", r.describe());
            if n == 2 {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "the kept connection still gets v1");
            std::thread::sleep(Duration::from_millis(10)); // poll interval
        }
        assert_eq!(served(&srv, "/big.bin", "big.bin"), 2);
        let r = get(srv.addr(), "/only-v1.css");
        assert_eq!(r.status, 404, "{}", r.describe());
        assert_eq!(r.body, body("404.html", 2, len_of("404.html")), "the new error page");
        // Next deploy: swap, and delete the old release at once. Until
        // each worker looks again, it may answer from v2 (its cache, or
        // files still open); never an error, never a mix.
        d.release(3);
        d.swap(3);
        d.delete(2);
        for path in ["/", "/index.html", "/app.js", "/big.bin", "/only-v3.css"] {
            let name = match path {
                "/" => "index.html",
                "/only-v3.css" => "only",
                p => &p[1..],
            };
            let r = get(srv.addr(), path);
            assert_eq!(r.status, 200, "{path} right after v2 was deleted: {}", r.describe());
            let n = release_of(name, &r.body).unwrap_or_else(|| panic!("{}", r.describe()));
            let len = if name == "only" { 50 } else { len_of(name) };
            assert_eq!(r.body, body(name, n, len), "{path}: mixed");
        }
        let r = kept.roundtrip(app);
        assert_eq!(r.status, 200, "{}", r.describe());
        wait_release(&srv, 3, Duration::from_secs(5)).expect("release 3 served");
        let text = srv.stderr_text();
        assert!(!text.contains("error"), "error log: {text}");
    }

    /// Swaps every 200 ms under load (keep-alive and slow-reading
    /// connections, plain and gzip answers, 404s with the error page, a big
    /// file sent from disk), each old release deleted right after the swap
    /// that replaced it: no failed request, every body wholly from one
    /// release, and the last release served in the end.
    fn swaps_under_load_fail_no_request(e) {
        let d = Deploy::new();
        let srv = start_or_skip!(e, &config("200ms"), &d.current());
        // Every release a body came from.
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let whole = |path: &str, name: &'static str, status: u16, gz: bool| {
            let seen = seen.clone();
            Target::custom(path, false, move |r| {
                if r.status != status {
                    return Err(format!("status {} (want {status})", r.status));
                }
                let gzip = gz && r.header("content-encoding") == Some("gzip");
                if gzip && r.body.starts_with(&[0x1f, 0x8b]) {
                    // Real gzip: app.js compressed on the fly. That is the
                    // answer when the .gz sibling was not there as the file
                    // was looked up (the release being deleted had lost it
                    // first); the content must still be one release's.
                    let mut plain = Vec::new();
                    let read = std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(r.body),
                        &mut plain,
                    );
                    // A body cut at the load's stop decodes to a prefix.
                    if r.complete {
                        read.map_err(|e| format!("{name}: gzip body: {e}"))?;
                    }
                    let n = release_of(name, &plain)
                        .ok_or_else(|| format!("{name} (gzip): no release marker first"))?;
                    let want = body(name, n, len_of(name));
                    if (r.complete && plain != want) || !want.starts_with(&plain) {
                        return Err(format!("{name} (gzip): not wholly release {n}"));
                    }
                    seen.lock().unwrap().insert(n);
                    return Ok(());
                }
                let name = if gzip { "app.js.gz" } else { name };
                let n = release_of(name, r.body)
                    .ok_or_else(|| format!("{name}: no release marker first"))?;
                let want = body(name, n, len_of(name));
                if r.content_length != want.len() || !want.starts_with(r.body) {
                    return Err(format!("{name}: not wholly release {n}"));
                }
                seen.lock().unwrap().insert(n);
                Ok(())
            })
        };
        let targets = vec![
            whole("/", "index.html", 200, false),
            whole("/index.html", "index.html", 200, false),
            whole("/app.js", "app.js", 200, false),
            whole("/app.js", "app.js", 200, true).with_fields("Accept-Encoding: gzip\r\n"),
            whole("/missing.css", "404.html", 404, false),
        ];
        let big = vec![whole("/big.bin", "big.bin", 200, false)];
        let mut cfg = LoadConfig::new(
            srv.addr(),
            vec![
                Group::new("keepalive", 32, Mode::KeepAlive, targets),
                Group::new(
                    "slow",
                    4,
                    Mode::SlowReader { chunk: 16 * 1024, pause: Duration::from_millis(20), rcvbuf: 16 * 1024 },
                    big,
                ),
            ],
        );
        cfg.duration = Duration::from_secs(30);
        let load = Load::start(cfg);
        assert!(load.wait_for(Duration::from_secs(10), |s| s.complete >= 200), "load started");
        // A swap every 200 ms for 4 s: each release written ahead, swapped
        // in on time, and the one it replaced deleted at once.
        let mut last = 1;
        let t0 = Instant::now();
        while last <= 20 {
            let next = last + 1;
            d.release(next);
            let at = t0 + Duration::from_millis(200) * last;
            std::thread::sleep(at.saturating_duration_since(Instant::now())); // the deploy cadence under test
            d.swap(next);
            d.delete(last);
            last = next;
        }
        let cadence = t0.elapsed() / (last - 1);
        let took = wait_release(&srv, last, Duration::from_secs(5));
        let summary = load.finish();
        let seen = seen.lock().unwrap().clone();
        eprintln!(
            "{e}: {} swaps, one per {cadence:?}; {} releases answered from; {}",
            last - 1,
            seen.len(),
            summary.line()
        );
        assert!(took.is_some(), "the last release ({last}) is served in the end");
        assert_eq!(summary.failed(), 0, "{summary}");
        assert!(summary.ok >= 1000, "{summary}");
        // The load saw the releases change, up to the last one.
        assert!(seen.len() >= 5 && seen.contains(&last), "releases seen: {seen:?}");
        let text = srv.stderr_text();
        assert!(!text.contains("error"), "error log: {text}");
    }
}
