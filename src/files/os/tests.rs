//! Tests of `RootDir`: both resolution paths (openat2 and the fallback).

use super::*;
use std::os::unix::fs::symlink;

/// base/www: f.txt, d/g.txt, link.txt -> f.txt, linkdir -> d,
/// out.txt -> ../secret.txt; base/secret.txt; base/www-link -> www.
fn site() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let b = t.path();
    std::fs::create_dir_all(b.join("www/d")).unwrap();
    std::fs::write(b.join("www/f.txt"), b"F").unwrap();
    std::fs::write(b.join("www/d/g.txt"), b"G").unwrap();
    std::fs::write(b.join("secret.txt"), b"SECRET").unwrap();
    symlink("f.txt", b.join("www/link.txt")).unwrap();
    symlink("d", b.join("www/linkdir")).unwrap();
    symlink("../secret.txt", b.join("www/out.txt")).unwrap();
    symlink("www", b.join("www-link")).unwrap();
    t
}

fn kind(r: io::Result<Opened>) -> String {
    match r {
        Ok(Opened::File(f)) => format!("file {}", f.len),
        Ok(Opened::Dir) => "dir".into(),
        Ok(Opened::Other) => "other".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Both resolution paths, named: openat2 (when the kernel has it) and
/// the fallback without it.
fn roots(root: &Path, symlinks: Symlinks) -> Vec<(&'static str, RootDir)> {
    let with = RootDir::open(root, symlinks, false).unwrap();
    let without = RootDir::open(root, symlinks, false).unwrap();
    without.beneath.store(false, Ordering::Relaxed);
    let via = if with.beneath.load(Ordering::Relaxed) {
        "openat2"
    } else {
        "fallback"
    };
    vec![(via, with), ("fallback", without)]
}

#[test]
fn within_root_follows_symlinks_that_stay_inside() {
    let t = site();
    for root in [t.path().join("www"), t.path().join("www-link")] {
        for (via, r) in roots(&root, Symlinks::WithinRoot) {
            assert_eq!(kind(r.open_beneath("f.txt")), "file 1", "{via}");
            assert_eq!(kind(r.open_beneath("")), "dir", "{via}");
            assert_eq!(kind(r.open_beneath("link.txt")), "file 1", "{via}");
            assert_eq!(kind(r.open_beneath("linkdir")), "dir", "{via}");
            assert_eq!(kind(r.open_beneath("linkdir/g.txt")), "file 1", "{via}");
            assert_eq!(kind(r.open_beneath("out.txt")), "NotFound", "{via}");
        }
    }
}

#[test]
fn deny_refuses_every_symlink_beneath_the_root_but_not_the_root() {
    let t = site();
    // The root path itself may be a symlink.
    for root in [t.path().join("www"), t.path().join("www-link")] {
        for (via, r) in roots(&root, Symlinks::Deny) {
            assert_eq!(kind(r.open_beneath("f.txt")), "file 1", "{via}");
            assert_eq!(kind(r.open_beneath("d/g.txt")), "file 1", "{via}");
            assert_eq!(kind(r.open_beneath("d")), "dir", "{via}");
            assert_eq!(kind(r.open_beneath("")), "dir", "{via}");
            for rel in [
                "link.txt",
                "linkdir",
                "linkdir/g.txt",
                "out.txt",
                "d/missing",
                "nope/x",
            ] {
                assert_eq!(kind(r.open_beneath(rel)), "NotFound", "{via}: {rel}");
            }
            // A file used as a directory is not found either.
            assert_eq!(kind(r.open_beneath("f.txt/x")), "NotFound", "{via}");
        }
    }
}

/// `read_dir`'s entries as (name, kind, size), by name.
fn listed(r: &RootDir, rel: &str, dotfiles: bool) -> Vec<(String, EntryKind, u64)> {
    let opts = ReadDirOpts {
        dotfiles,
        max_entries: 10_000,
        max_scanned: 100_000,
    };
    let l = r.read_dir(rel, &opts).unwrap();
    assert!(!l.truncated);
    let mut v: Vec<_> = l
        .entries
        .into_iter()
        .map(|e| (e.name.to_string_lossy().into_owned(), e.kind, e.size))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn entries(list: &[(&str, EntryKind, u64)]) -> Vec<(String, EntryKind, u64)> {
    list.iter()
        .map(|&(n, k, s)| (n.to_string(), k, s))
        .collect()
}

#[test]
fn read_dir_keeps_files_and_dirs_beneath_the_root_only() {
    use std::os::unix::ffi::OsStrExt;
    let t = site();
    let d = t.path().join("www/d");
    std::fs::create_dir(d.join("inner")).unwrap();
    std::fs::write(d.join(".hidden"), b"x").unwrap();
    std::fs::write(d.join("ctl\x01name"), b"x").unwrap();
    std::fs::write(d.join("back\\slash"), b"x").unwrap();
    std::fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xffutf8")), b"x").unwrap();
    let fifo = CString::new(d.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    syscall!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }).unwrap();
    symlink(t.path().join("secret.txt"), d.join("abs-out")).unwrap();
    symlink("../../secret.txt", d.join("rel-out")).unwrap();
    symlink("/etc", d.join("etc-out")).unwrap();
    symlink("..", d.join("up")).unwrap();
    symlink("g.txt", d.join("link-in")).unwrap();
    symlink("fifo", d.join("link-fifo")).unwrap();
    symlink("missing", d.join("dangling")).unwrap();
    use EntryKind::{Dir, File};
    for root in [t.path().join("www"), t.path().join("www-link")] {
        for (via, r) in roots(&root, Symlinks::WithinRoot) {
            // Any name but "." and ".." (and dotfiles, when hidden) is
            // listed: control bytes, a backslash, bytes that are not UTF-8.
            let want = [
                ("back\\slash", File, 1),
                ("bad\u{fffd}utf8", File, 1),
                ("ctl\x01name", File, 1),
                ("g.txt", File, 1),
                ("inner", Dir, 0),
                ("link-in", File, 1),
                ("up", Dir, 0),
            ];
            assert_eq!(listed(&r, "d", false), entries(&want), "{via}");
            let want = [
                (".hidden", File, 1),
                ("back\\slash", File, 1),
                ("bad\u{fffd}utf8", File, 1),
                ("ctl\x01name", File, 1),
                ("g.txt", File, 1),
                ("inner", Dir, 0),
                ("link-in", File, 1),
                ("up", Dir, 0),
            ];
            assert_eq!(listed(&r, "d", true), entries(&want), "{via}");
            let want = [
                ("d", Dir, 0),
                ("f.txt", File, 1),
                ("link.txt", File, 1),
                ("linkdir", Dir, 0),
            ];
            assert_eq!(listed(&r, "", false), entries(&want), "{via}");
            assert_eq!(
                listed(&r, "linkdir", false),
                listed(&r, "d", false),
                "{via}"
            );
            for rel in ["d/etc-out", "d/f.txt", "nope", "d/fifo", "d/up/../.."] {
                let e = r.read_dir(
                    rel,
                    &ReadDirOpts {
                        dotfiles: false,
                        max_entries: 10,
                        max_scanned: 10,
                    },
                );
                assert_eq!(
                    e.map(|_| ()).unwrap_err().kind(),
                    io::ErrorKind::NotFound,
                    "{via}: {rel}"
                );
            }
        }
        for (via, r) in roots(&root, Symlinks::Deny) {
            let want = [
                ("back\\slash", File, 1),
                ("bad\u{fffd}utf8", File, 1),
                ("ctl\x01name", File, 1),
                ("g.txt", File, 1),
                ("inner", Dir, 0),
            ];
            assert_eq!(listed(&r, "d", false), entries(&want), "{via}");
            let want = [("d", Dir, 0), ("f.txt", File, 1)];
            assert_eq!(listed(&r, "", false), entries(&want), "{via}");
            let e = r.read_dir(
                "linkdir",
                &ReadDirOpts {
                    dotfiles: false,
                    max_entries: 10,
                    max_scanned: 10,
                },
            );
            assert_eq!(
                e.map(|_| ()).unwrap_err().kind(),
                io::ErrorKind::NotFound,
                "{via}"
            );
        }
    }
}

/// base/.sites/www (a root that itself lives under a dot-directory),
/// with hidden names and links to them: `.git` behind a link, a link to
/// a dotfile, chains of links, and the `.well-known` exception.
fn hidden_site() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let w = t.path().join(".sites/www");
    std::fs::create_dir_all(w.join(".git")).unwrap();
    std::fs::create_dir_all(w.join("d")).unwrap();
    std::fs::create_dir_all(w.join(".well-known/acme-challenge")).unwrap();
    std::fs::write(w.join(".git/config"), b"GIT").unwrap();
    std::fs::write(w.join(".env"), b"ENV").unwrap();
    std::fs::write(w.join("d/g.txt"), b"G").unwrap();
    std::fs::write(w.join(".well-known/acme-challenge/tok"), b"T").unwrap();
    std::fs::write(w.join(".well-known/.x"), b"X").unwrap();
    symlink(".git", w.join("gitlink")).unwrap();
    symlink(".env", w.join("envlink")).unwrap();
    symlink("chain2", w.join("chain1")).unwrap();
    symlink("d/../.git", w.join("chain2")).unwrap();
    symlink("../.env", w.join("d/up-env")).unwrap();
    symlink("../gitlink/config", w.join("d/deep")).unwrap();
    symlink("gitlink/..", w.join("back")).unwrap();
    symlink(".well-known/acme-challenge", w.join("acme")).unwrap();
    symlink(".well-known/.x", w.join("wk-dot")).unwrap();
    symlink("d", w.join("ok")).unwrap();
    symlink("ok/g.txt", w.join("okchain")).unwrap();
    symlink("loop2", w.join("loop1")).unwrap();
    symlink("loop1", w.join("loop2")).unwrap();
    (t, w)
}

#[test]
fn hidden_names_stay_hidden_wherever_a_link_points() {
    let (_t, w) = hidden_site();
    let both = |dotfiles| {
        let with = RootDir::open(&w, Symlinks::WithinRoot, dotfiles).unwrap();
        let without = RootDir::open(&w, Symlinks::WithinRoot, dotfiles).unwrap();
        without.beneath.store(false, Ordering::Relaxed);
        [("openat2", with), ("fallback", without)]
    };
    let hidden = [
        "gitlink",
        "gitlink/config",
        "envlink",
        "chain1",
        "chain1/config",
        "chain2/config",
        "d/up-env",
        "d/deep",
        "ok/up-env",
        "wk-dot",
    ];
    for (via, r) in both(false) {
        for rel in hidden {
            assert_eq!(kind(r.open_beneath(rel)), "NotFound", "{via}: {rel}");
        }
        // Where the links lead is not hidden: served.
        assert_eq!(kind(r.open_beneath("okchain")), "file 1", "{via}");
        assert_eq!(kind(r.open_beneath("ok/g.txt")), "file 1", "{via}");
        assert_eq!(kind(r.open_beneath("acme/tok")), "file 1", "{via}");
        assert_eq!(kind(r.open_beneath("back")), "dir", "{via}: gitlink/..");
        assert_eq!(kind(r.open_beneath("loop1")), "NotFound", "{via}");
        // Only below the root counts: the root is under .sites.
        assert_eq!(kind(r.open_beneath("")), "dir", "{via}");
        assert_eq!(kind(r.open_beneath("d/g.txt")), "file 1", "{via}");
        // Listings never name a link to a hidden name, and a hidden
        // directory behind a link cannot be listed.
        let names: Vec<String> = listed(&r, "", false).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [".well-known", "acme", "back", "d", "ok", "okchain"],
            "{via}: the root's listing"
        );
        let names: Vec<String> = listed(&r, "d", false).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["g.txt"], "{via}: d's listing");
        let opts = ReadDirOpts {
            dotfiles: false,
            max_entries: 10,
            max_scanned: 10,
        };
        for rel in ["gitlink", "chain1"] {
            let e = r.read_dir(rel, &opts).map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{via}: list {rel}");
        }
    }
    // serve_dotfiles = true: every link is followed.
    for (via, r) in both(true) {
        for rel in hidden {
            assert_ne!(kind(r.open_beneath(rel)), "NotFound", "{via}: {rel}");
        }
        assert_eq!(kind(r.open_beneath("gitlink/config")), "file 3", "{via}");
    }
}

#[test]
fn read_dir_is_bounded_and_reads_past_one_buffer() {
    let t = tempfile::tempdir().unwrap();
    // Long names: more than one 32 KiB getdents64 buffer.
    let n = 1500;
    for i in 0..n {
        std::fs::write(t.path().join(format!("{i:0>60}")), b"").unwrap();
    }
    for i in 0..50 {
        std::fs::write(t.path().join(format!(".{i}")), b"").unwrap();
    }
    let r = RootDir::open(t.path(), Symlinks::WithinRoot, false).unwrap();
    let opts = |max_entries, max_scanned| ReadDirOpts {
        dotfiles: false,
        max_entries,
        max_scanned,
    };
    let l = r.read_dir("", &opts(10_000, 100_000)).unwrap();
    assert!(!l.truncated);
    assert_eq!(l.entries.len(), n);
    let l = r.read_dir("", &opts(100, 100_000)).unwrap();
    assert!(l.truncated);
    assert_eq!(l.entries.len(), 100);
    let l = r.read_dir("", &opts(10_000, 10)).unwrap();
    assert!(l.truncated);
    assert!(l.entries.len() <= 10);
    let l = r.read_dir("", &opts(10_000, n + 52)).unwrap();
    assert!(!l.truncated, "exactly every entry (with . and ..) scanned");
}

/// What the responder opens per request: with no precompressed file in a
/// directory, one open per file asked for (and one read of the directory
/// per cache_revalidate), not one more per configured coding; in a
/// directory that has siblings, they are found and served as before, with
/// `Vary` on every answer. The cache is off: every request goes to disk.
#[test]
fn no_sibling_probes_in_a_directory_without_any() {
    use crate::config::Config;
    use crate::files::{Responder, Settings};
    use crate::http::parse::with_request;
    use crate::http::{Notes, Now, Reply, Respond};
    use crate::log::Level;
    use crate::metrics::Registry;
    use std::time::{Instant, SystemTime};

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plain")).unwrap();
    std::fs::create_dir_all(dir.path().join("coded")).unwrap();
    for i in 0..20 {
        std::fs::write(dir.path().join(format!("plain/{i}.css")), b"body{}").unwrap();
    }
    std::fs::write(dir.path().join("coded/a.css"), b"body{}").unwrap();
    std::fs::write(dir.path().join("coded/a.css.gz"), b"GZ").unwrap();
    let cfg = Config::parse("workers = 1\ncache_size = 0", "t").unwrap();
    let r = Responder::new(dir.path(), Settings::from_config(&cfg)).unwrap();
    let mut local = r.local(&Registry::new("epoll").worker(), usize::MAX);
    let t0 = Instant::now();
    let mut ask = |target: &str, fields: &str| -> Reply {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
        let now = Now::new(t0, SystemTime::now());
        with_request(&raw, |req| {
            r.respond(req, &now, &mut *local, &mut Notes::new(Level::Info))
        })
    };
    let vary = |r: &Reply| r.headers.get("vary").map(str::to_string);
    let before = opens();
    for i in 0..20 {
        let reply = ask(&format!("/plain/{i}.css"), "Accept-Encoding: gzip, br\r\n");
        assert_eq!(reply.status.0, 200);
        assert_eq!(vary(&reply), None);
    }
    let spent = opens() - before;
    assert_eq!(spent, 20 + 1, "20 files and the directory, no probes");
    let plain = ask("/coded/a.css", "");
    assert_eq!(vary(&plain).as_deref(), Some("Accept-Encoding"));
    assert_eq!(plain.headers.get("content-encoding"), None);
    let gz = ask("/coded/a.css", "Accept-Encoding: gzip\r\n");
    assert_eq!(gz.headers.get("content-encoding"), Some("gzip"));
    assert_eq!(vary(&gz).as_deref(), Some("Accept-Encoding"));
}
