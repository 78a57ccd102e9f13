//! The open-file cache (`open_file_cache`): files not held as bytes keep
//! their descriptor open between requests. A change on disk (renamed over,
//! `cp -p`, truncated and rewritten, deleted, made unreadable) is served
//! within `cache_revalidate`; ranges and HEAD from a held descriptor are
//! right; the descriptors stay within the worker's budget, are closed
//! when descriptors run short, and at reload.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

/// Files over 1 KiB are not held as bytes: they go to the open-file cache.
const CFG: &str = "workers = 1\ncache_max_file = 1024\ncache_revalidate = \"300ms\"";

/// GET `path` until `done` holds for the answer, within 5 s (the change
/// must be seen within cache_revalidate, 300 ms); every answer on the way
/// must pass `ok`.
fn until(
    srv: &Server,
    path: &str,
    ok: impl Fn(&Response) -> bool,
    done: impl Fn(&Response) -> bool,
) {
    let t0 = Instant::now();
    loop {
        let r = get(srv.addr(), path);
        assert!(ok(&r), "GET {path} on the way: {}", r.describe());
        if done(&r) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "GET {path}: not seen in 5 s (cache_revalidate 300ms): {}",
            r.describe()
        );
    }
}

/// How many of the server's descriptors are open regular files under `root`.
/// Each of `files` (name, bytes) asked for three times and checked, then
/// `also`, then the server's descriptor listing.
fn served_then_listed(srv: &Server, files: &[(&str, &[u8])], also: impl FnOnce()) -> String {
    for _ in 0..3 {
        for (name, body) in files {
            assert_bytes_eq(&get(srv.addr(), &format!("/{name}")).body, body, name);
        }
    }
    also();
    fd_listing(srv.pid())
}

/// Whether a descriptor listing has the file `name` open.
fn held_open(listing: &str, name: &str) -> bool {
    listing.lines().any(|l| l.ends_with(&format!("/{name}")))
}

fn files_open(pid: u32, root: &std::path::Path) -> usize {
    let root = root.canonicalize().unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.starts_with(&root) && t.is_file())
                .count()
        })
        .unwrap_or(0)
}

engine_tests! {
    /// A file held open and replaced by another of the same size and
    /// mtime by rename (`cp -p` to a temporary name, then mv), rewritten
    /// in place with a new length, or truncated and rewritten: the new
    /// bytes are served within cache_revalidate, each answer whole.
    fn replaced_file_is_served_new_within_revalidate(e) {
        let site = Site::new();
        let old = pseudo_random(8000, 1);
        site.write("big.bin", &old);
        let srv = start_or_skip!(e, CFG, &site.root);
        let path = site.root.join("big.bin");
        let mut want = old;
        for (i, how) in ["renamed over, same size and mtime", "rewritten longer in place", "truncated then rewritten"].into_iter().enumerate() {
            for _ in 0..3 {
                let r = get(srv.addr(), "/big.bin");
                assert_bytes_eq(&r.body, &want, &format!("{how}: before"));
            }
            assert!(files_open(srv.pid(), &site.root) >= 1, "{how}: big.bin is not held open");
            let next = pseudo_random(if i == 1 { 9000 } else { want.len() }, 10 + i as u64);
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            match i {
                0 => {
                    let tmp = site.root.join(".big.bin.new");
                    std::fs::write(&tmp, &next).unwrap();
                    std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(mtime).unwrap();
                    std::fs::rename(&tmp, &path).unwrap();
                }
                1 => std::fs::write(&path, &next).unwrap(),
                _ => {
                    std::fs::File::options().write(true).truncate(true).open(&path).unwrap();
                    std::fs::write(&path, &next).unwrap();
                }
            }
            // Renamed over: the held descriptor is the old file, whole,
            // until revalidation. In place: the held descriptor reads the
            // new bytes at once; with the old length, until revalidation.
            let (o, n) = (want.clone(), next.clone());
            until(&srv, "/big.bin", |r| r.status == 200 && (r.body == o || r.body == n || i > 0), |r| r.body == n);
            want = next;
        }
    }

    /// A held file deleted: 404 within cache_revalidate; made unreadable:
    /// 403 within it (the workers run as `nobody` when the tests run as root).
    fn deleted_or_unreadable_file_is_seen_within_revalidate(e) {
        let site = Site::new();
        let body = pseudo_random(5000, 2);
        site.write("gone.bin", &body);
        site.write("locked.bin", &body);
        // Root reads mode-000 files anyway: then the workers run as `nobody`.
        let root = running_as_root();
        if root && uid_of_user("nobody").is_none() {
            skip("running as root and there is no `nobody` user, so a mode-000 file is readable");
            return;
        }
        let cfg = format!("{CFG}{}", if root { "\nuser = \"nobody\"\naccess_log = \"off\"" } else { "" });
        let srv = start_or_skip!(e, &cfg, &site.root);
        for p in ["/gone.bin", "/locked.bin", "/gone.bin", "/locked.bin"] {
            assert_bytes_eq(&get(srv.addr(), p).body, &body, p);
        }
        assert!(files_open(srv.pid(), &site.root) >= 2, "not held open:\n{}", fd_listing(srv.pid()));
        std::fs::remove_file(site.path("gone.bin")).unwrap();
        until(&srv, "/gone.bin", |r| r.status == 200 || r.status == 404, |r| r.status == 404);
        set_mode(&site.path("locked.bin"), 0o000);
        until(&srv, "/locked.bin", |r| r.status == 200 || r.status == 403, |r| r.status == 403);
    }

    /// Ranges (one and several), conditionals and HEAD answered from a
    /// held descriptor, after GETs that put it there, each read at its own
    /// offsets: on one connection, pipelined, interleaved with whole GETs.
    fn ranges_and_head_from_a_held_file(e) {
        let site = Site::new();
        let body = pseudo_random(20_000, 3);
        site.write("r.bin", &body);
        let srv = start_or_skip!(e, CFG, &site.root);
        assert_bytes_eq(&get(srv.addr(), "/r.bin").body, &body, "first GET");
        assert!(files_open(srv.pid(), &site.root) >= 1, "not held open:\n{}", fd_listing(srv.pid()));
        let mut c = srv.connect();
        let reqs = b"GET /r.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n\
HEAD /r.bin HTTP/1.1\r\nHost: t\r\n\r\n\
GET /r.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-10\r\n\r\n\
GET /r.bin HTTP/1.1\r\nHost: t\r\n\r\n\
GET /r.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0,19990-\r\n\r\n";
        // Split at odd places.
        for chunk in reqs.chunks(37) {
            c.send(chunk);
        }
        let r = c.read_response("GET");
        assert_status(&r, 206, "range 100-199");
        assert_eq!(r.header("content-range"), Some("bytes 100-199/20000"));
        assert_bytes_eq(&r.body, &body[100..200], "range 100-199");
        let r = c.read_response("HEAD");
        assert_status(&r, 200, "HEAD");
        assert_eq!(r.header("content-length"), Some("20000"));
        assert!(r.body.is_empty());
        let etag = r.header("etag").expect("ETag").to_string();
        let r = c.read_response("GET");
        assert_status(&r, 206, "suffix range");
        assert_bytes_eq(&r.body, &body[19990..], "suffix range");
        let r = c.read_response("GET");
        assert_status(&r, 200, "whole GET");
        assert_bytes_eq(&r.body, &body, "whole GET after ranges");
        let r = c.read_response("GET");
        assert_status(&r, 206, "two ranges");
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert!(r.header("content-type").is_some_and(|t| t.starts_with("multipart/byteranges")), "{}", r.describe());
        assert!(text.contains("bytes 0-0/20000") && text.contains("bytes 19990-19999/20000"), "{text}");
        let r = c.roundtrip(format!("GET /r.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes());
        assert_status(&r, 304, "If-None-Match");
    }

    /// Dotfiles stay hidden and a symlink out of the root stays refused,
    /// asked for before and after the same names' targets were held open.
    fn dotfiles_and_symlinks_unchanged(e) {
        let site = Site::new();
        let body = pseudo_random(3000, 4);
        site.write(".secret.bin", &body);
        site.write("in.bin", &body);
        let outside = site.tempdir().join("outside.bin");
        std::fs::write(&outside, &body).unwrap();
        std::os::unix::fs::symlink(&outside, site.root.join("out.bin")).unwrap();
        std::os::unix::fs::symlink("in.bin", site.root.join("link.bin")).unwrap();
        let srv = start_or_skip!(e, CFG, &site.root);
        for _ in 0..2 {
            assert_status(&get(srv.addr(), "/.secret.bin"), 404, "dotfile");
            assert_status(&get(srv.addr(), "/out.bin"), 404, "symlink out of the root");
            assert_bytes_eq(&get(srv.addr(), "/in.bin").body, &body, "in.bin");
            assert_bytes_eq(&get(srv.addr(), "/link.bin").body, &body, "link within the root");
        }
        // A held file swapped for a symlink out of the root, and a held
        // file's directory swapped for one to a directory outside holding
        // another file of that name: refused (404) within cache_revalidate.
        site.write("d/x.bin", &body);
        let other = site.tempdir().join("elsewhere");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("x.bin"), pseudo_random(3000, 5)).unwrap();
        for p in ["/in.bin", "/d/x.bin", "/in.bin", "/d/x.bin"] {
            assert_bytes_eq(&get(srv.addr(), p).body, &body, p);
        }
        let tmp = site.root.join(".in.tmp");
        std::os::unix::fs::symlink(&outside, &tmp).unwrap();
        std::fs::rename(&tmp, site.root.join("in.bin")).unwrap();
        std::fs::rename(site.root.join("d"), site.tempdir().join("old-d")).unwrap();
        std::os::unix::fs::symlink(&other, site.root.join("d")).unwrap();
        let b = body.clone();
        until(&srv, "/in.bin", |r| r.status == 404 || r.body == b, |r| r.status == 404);
        until(&srv, "/d/x.bin", |r| r.status == 404 || r.body == b, |r| r.status == 404);
    }

    /// A held file's directory moved out of the root, a symlink to it left
    /// in its place; another's renamed to a dotfile name, a symlink to it
    /// left: the same files, but a path the server refuses (404) when it
    /// opens it. Refused within cache_revalidate too for the held ones,
    /// as descriptors (large) and as bytes (small), not served on because
    /// the file the path now leads to is the one held. With no
    /// precompressed siblings looked for (the directory is not read).
    fn held_file_moved_behind_a_refused_symlink_is_refused(e) {
        let site = Site::new();
        let big = pseudo_random(3000, 7);
        let small = pseudo_random(200, 8);
        for d in ["m", "h"] {
            site.write(&format!("{d}/big.bin"), &big);
            site.write(&format!("{d}/small.bin"), &small);
        }
        let srv = start_or_skip!(e, &format!("{CFG}\nprecompressed = []"), &site.root);
        for _ in 0..3 {
            for d in ["m", "h"] {
                assert_bytes_eq(&get(srv.addr(), &format!("/{d}/big.bin")).body, &big, d);
                assert_bytes_eq(&get(srv.addr(), &format!("/{d}/small.bin")).body, &small, d);
            }
        }
        assert!(files_open(srv.pid(), &site.root) >= 2, "not held open:\n{}", fd_listing(srv.pid()));
        let moved = site.tempdir().join("moved-m");
        std::fs::rename(site.root.join("m"), &moved).unwrap();
        std::os::unix::fs::symlink(&moved, site.root.join("m")).unwrap();
        std::fs::rename(site.root.join("h"), site.root.join(".h")).unwrap();
        std::os::unix::fs::symlink(".h", site.root.join("h")).unwrap();
        for p in ["/m/big.bin", "/h/big.bin"] {
            let b = big.clone();
            until(&srv, p, |r| r.status == 404 || r.body == b, |r| r.status == 404);
        }
        for p in ["/m/small.bin", "/h/small.bin"] {
            let b = small.clone();
            until(&srv, p, |r| r.status == 404 || r.body == b, |r| r.status == 404);
        }
    }

    /// A precompressed sibling added next to a held file: served (with
    /// Vary) within cache_revalidate.
    fn sibling_added_next_to_a_held_file(e) {
        let site = Site::new();
        let body = pseudo_random(3000, 6);
        site.write("s/page.bin", &body);
        let srv = start_or_skip!(e, CFG, &site.root);
        let req = b"GET /s/page.bin HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n";
        for _ in 0..2 {
            let r = request(srv.addr(), req);
            assert_bytes_eq(&r.body, &body, "before");
            assert_eq!(r.header("content-encoding"), None);
        }
        assert!(files_open(srv.pid(), &site.root) >= 1, "not held open:\n{}", fd_listing(srv.pid()));
        site.write("s/page.bin.gz", b"GZIP-BYTES");
        let t0 = Instant::now();
        loop {
            let r = request(srv.addr(), req);
            if r.header("content-encoding") == Some("gzip") {
                assert_eq!(r.body, b"GZIP-BYTES");
                assert!(r.header("vary").is_some_and(|v| v.contains("Accept-Encoding")), "{}", r.describe());
                break;
            }
            assert_bytes_eq(&r.body, &body, "meanwhile");
            assert!(t0.elapsed() < Duration::from_secs(5), "the sibling not served in 5 s");
        }
    }

    /// The held descriptors are closed at reload (the old worker's cache
    /// goes with it) and the cache holds at most half of the worker's
    /// descriptors.
    fn held_descriptors_closed_at_reload_and_bounded(e) {
        let site = Site::new();
        for i in 0..60 {
            site.write(&format!("f/{i}.bin"), &pseudo_random(2000, i));
        }
        let srv = start_or_skip!(e, CFG, &site.root);
        let pid = srv.pid();
        assert_eq!(files_open(pid, &site.root), 0);
        let mut c = srv.connect();
        for i in 0..60 {
            let r = c.roundtrip(format!("GET /f/{i}.bin HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            assert_status(&r, 200, "GET");
        }
        drop(c);
        let held = files_open(pid, &site.root);
        assert!(held >= 50, "{held} of 60 files held open:\n{}", fd_listing(pid));
        srv.reload(Duration::from_secs(10)).expect("reload");
        let t0 = Instant::now();
        while files_open(pid, &site.root) > 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "still held after reload:\n{}", fd_listing(pid));
            std::thread::sleep(Duration::from_millis(20)); // poll interval
        }
        drop(srv);
        // A low limit: at most half of (160 - 64 reserved) = 48 held.
        let Some(srv) = Server::launch(e, CFG, &site.root, Launch { nofile: Some(160), ..Default::default() }) else { return };
        let mut c = srv.connect();
        for i in 0..60 {
            let r = c.roundtrip(format!("GET /f/{i}.bin HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            assert_status(&r, 200, "GET (RLIMIT_NOFILE 160)");
        }
        let held = files_open(srv.pid(), &site.root);
        assert!((1..=48).contains(&held), "{held} files held under RLIMIT_NOFILE 160");
    }

    /// `tandem_open_file_cache_entries` shows the files the open-file
    /// caches of all workers hold: one for each of N large files asked
    /// for, on two connections (on one worker or on two: each file is
    /// asked for once, so they hold N in all); none more for hits (asked
    /// again on the same connection: the same worker), for a small file
    /// (held as bytes) or for a missing one; 0 once a reload has closed
    /// them, and counting again from there.
    fn metrics_gauge_shows_the_files_held_open(e) {
        const N: usize = 12;
        const GAUGE: &str = "tandem_open_file_cache_entries";
        let site = Site::new();
        for i in 0..N {
            site.write(&format!("g/{i}.bin"), &pseudo_random(3000, 200 + i as u64));
        }
        site.write("g/small.txt", b"held as bytes, not as a descriptor");
        let cfg = format!("{}\nworkers = 2\nmetrics_listen = [\"127.0.0.1:0\"]", CFG.replacen("workers = 1\n", "", 1));
        let srv = start_or_skip!(e, &cfg, &site.root);
        assert_eq!(srv.metric(GAUGE), 0, "nothing held yet");
        let settles = |want: usize, what: &str| {
            let t0 = Instant::now();
            loop {
                let n = srv.metric(GAUGE);
                if n == want as u64 {
                    return;
                }
                assert!(t0.elapsed() < Duration::from_secs(10), "{what}: {GAUGE} is {n}, not {want}\n{}", fd_listing(srv.pid()));
                std::thread::sleep(Duration::from_millis(20)); // poll interval
            }
        };
        let mut conns = [srv.connect(), srv.connect()];
        let ask = |c: &mut Conn, path: &str| c.roundtrip(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        for i in 0..N {
            assert_status(&ask(&mut conns[i % 2], &format!("/g/{i}.bin")), 200, "GET");
        }
        settles(N, "after N distinct large files");
        assert_eq!(files_open(srv.pid(), &site.root), N, "really held open:\n{}", fd_listing(srv.pid()));
        for i in [0, 7, 1] {
            assert_status(&ask(&mut conns[i % 2], &format!("/g/{i}.bin")), 200, "a hit");
        }
        assert_status(&ask(&mut conns[0], "/g/small.txt"), 200, "a small file");
        assert_status(&ask(&mut conns[1], "/g/nope.bin"), 404, "a missing file");
        assert_eq!(srv.metric(GAUGE), N as u64, "hits, a small file and a missing one hold nothing more");
        drop(conns);
        srv.reload(Duration::from_secs(10)).expect("reload");
        settles(0, "after a reload");
        assert_status(&get(srv.addr(), "/g/3.bin"), 200, "GET after the reload");
        settles(1, "one file asked for after the reload");
    }

    /// A small file first held as a descriptor (the small-file cache was
    /// full and did not rate it above what it holds), then asked for often
    /// enough to be taken in as bytes: its descriptor is let go, not held
    /// beside the bytes until the open-file cache evicts it. Every answer
    /// whole on the way.
    fn promoted_to_bytes_lets_its_descriptor_go(e) {
        let site = Site::new();
        let bodies: Vec<Vec<u8>> = (0..3).map(|i| pseudo_random(3000, 300 + i)).collect();
        for (i, b) in bodies.iter().enumerate() {
            site.write(&format!("p/{i}.bin"), b);
        }
        // Room for two of them as bytes (3,000 B + a 512 B head estimate each).
        let cfg = "workers = 1\ncache_size = 8192\ncache_max_file = 4096";
        let srv = start_or_skip!(e, cfg, &site.root);
        let third = site.root.join("p/2.bin").canonicalize().unwrap();
        let held = || files_open(srv.pid(), &third);
        for (i, body) in bodies.iter().enumerate() {
            let r = get(srv.addr(), &format!("/p/{i}.bin"));
            assert_bytes_eq(&r.body, body, &format!("GET /p/{i}.bin"));
        }
        assert_eq!(held(), 1, "the third file, not taken in as bytes, is held open:\n{}", fd_listing(srv.pid()));
        let t0 = Instant::now();
        while held() > 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "asked for again and again (taken in as bytes), p/2.bin is still held open:\n{}",
                fd_listing(srv.pid())
            );
            let r = get(srv.addr(), "/p/2.bin");
            assert_bytes_eq(&r.body, &bodies[2], "GET /p/2.bin again");
        }
        let r = get(srv.addr(), "/p/2.bin");
        assert_bytes_eq(&r.body, &bodies[2], "GET /p/2.bin as bytes");
        assert_eq!(held(), 0, "served as bytes, not opened again:\n{}", fd_listing(srv.pid()));
    }

    /// A low RLIMIT_NOFILE, many files and many keep-alive clients at
    /// once: no request is refused (503) for want of descriptors.
    fn low_nofile_many_files_many_clients_no_503(e) {
        let site = Site::new();
        // More files than the limit has descriptors for.
        for i in 0..150 {
            site.write(&format!("f/{i}.bin"), &pseudo_random(100_000, 100 + i));
        }
        let cfg = format!("{CFG}\nmax_connections = 1000\nkeepalive_timeout = \"60s\"");
        let Some(srv) = Server::launch(e, &cfg, &site.root, Launch { nofile: Some(160), ..Default::default() }) else { return };
        // 40 clients, each with a request in flight for another file, and
        // none read before all were sent: each holds its socket and a file.
        let mut conns: Vec<Conn> = (0..40).map(|_| srv.connect()).collect();
        for round in 0..8 {
            for (k, c) in conns.iter_mut().enumerate() {
                let i = (k * 7 + round * 13) % 150;
                c.send(format!("GET /f/{i}.bin HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            }
            for (k, c) in conns.iter_mut().enumerate() {
                let i = (k * 7 + round * 13) % 150;
                let r = c.read_response("GET");
                assert_status(&r, 200, &format!("round {round}, client {k}, /f/{i}.bin\n{}", srv.stderr_text()));
                assert_eq!(r.body.len(), 100_000);
            }
        }
        assert!(!srv.stderr_text().contains("EMFILE") && !srv.stderr_text().contains("Too many open files"), "{}", srv.stderr_text());
    }

    /// With the default cache settings, a file over 4 KiB sent as it is
    /// (a type not compressed on the fly, no sibling) is held as a
    /// descriptor and goes out by sendfile, not copied out of memory; one
    /// the cache compresses on the fly, and one of 4 KiB or less, stay
    /// bytes.
    fn large_plain_files_are_held_open_not_as_bytes(e) {
        let site = Site::new();
        let big = pseudo_random(40_000, 11);
        let mid = pseudo_random(4_097, 13);
        let small = pseudo_random(4_096, 12);
        let text: Vec<u8> = (0..40_000).map(|i| b"body { margin: 0 }\n"[i % 19]).collect();
        site.write("big.bin", &big);
        site.write("mid.bin", &mid);
        site.write("small.bin", &small);
        site.write("style.css", &text);
        let srv = start_or_skip!(e, "workers = 1\nprecompressed = []", &site.root);
        let files: [(&str, &[u8]); 4] = [("big.bin", &big), ("mid.bin", &mid), ("small.bin", &small), ("style.css", &text)];
        let open = served_then_listed(&srv, &files, || {
            let gz = request(srv.addr(), b"GET /style.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
            assert_eq!(gz.header("content-encoding"), Some("gzip"), "{}", gz.describe());
        });
        let held = |name: &str| held_open(&open, name);
        assert!(held("big.bin"), "big.bin (40,000 B, sent as it is) not held open:\n{open}");
        assert!(held("mid.bin"), "mid.bin (4,097 B, sent as it is) not held open:\n{open}");
        assert!(!held("small.bin"), "small.bin (4,096 B) held open, not as bytes:\n{open}");
        assert!(!held("style.css"), "style.css (compressed on the fly) held open, not as bytes:\n{open}");
    }

    /// With HTTP/2 cleartext on, where a body from a descriptor goes a DATA
    /// frame at a time, a file up to 32 KiB stays bytes; over it, held open.
    fn h2c_servers_keep_files_up_to_32_kib_as_bytes(e) {
        let site = Site::new();
        let big = pseudo_random(40_000, 14);
        let mid = pseudo_random(32_768, 15);
        site.write("big.bin", &big);
        site.write("mid.bin", &mid);
        let srv = start_or_skip!(e, "workers = 1\nprecompressed = []\nhttp2_cleartext = true", &site.root);
        let open = served_then_listed(&srv, &[("big.bin", &big), ("mid.bin", &mid)], || ());
        let held = |name: &str| held_open(&open, name);
        assert!(held("big.bin"), "big.bin (40,000 B) not held open:\n{open}");
        assert!(!held("mid.bin"), "mid.bin (32,768 B) held open, not as bytes, with h2c on:\n{open}");
    }

    /// A file over 32 KiB held as bytes for its precompressed sibling:
    /// once the sibling is removed, it is sent as it is, from a held
    /// descriptor, and its bytes (and the sibling's) are let go then, not
    /// kept beside the descriptor, outside the cache's budget and gauges,
    /// until some other path's entry expires. 40 MiB, so that the memory
    /// is the allocator's own mapping and its release shows in RSS.
    fn bytes_let_go_when_the_file_moves_to_a_descriptor(e) {
        let site = Site::new();
        let body = pseudo_random(40 << 20, 21);
        site.write("big.bin", &body);
        site.write("big.bin.gz", b"GZIP-BYTES");
        let cfg = "workers = 1\ncache_max_file = 67108864\ncache_revalidate = \"300ms\"";
        let srv = start_or_skip!(e, cfg, &site.root);
        let base = rss_kib(srv.pid());
        let gz = b"GET /big.bin HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n";
        for _ in 0..2 {
            assert_eq!(request(srv.addr(), gz).body, b"GZIP-BYTES");
            assert_bytes_eq(&get(srv.addr(), "/big.bin").body, &body, "with its sibling");
        }
        assert_eq!(files_open(srv.pid(), &site.root), 0, "held open beside its sibling:\n{}", fd_listing(srv.pid()));
        let cached = rss_kib(srv.pid());
        assert!(cached >= base + 30 * 1024, "40 MiB held as bytes: RSS {base} KiB, then {cached} KiB");
        std::fs::remove_file(site.root.join("big.bin.gz")).unwrap();
        until(&srv, "/big.bin", |r| r.body == body, |_| files_open(srv.pid(), &site.root) == 1);
        let after = rss_kib(srv.pid());
        assert!(
            after + 30 * 1024 <= cached,
            "held open now, yet its 40 MiB of bytes were kept: RSS {base} KiB at start, {cached} KiB as bytes, {after} KiB held open"
        );
        assert_bytes_eq(&get(srv.addr(), "/big.bin").body, &body, "from its descriptor");
    }
}
