//! Atomic deploys: the root path followed again while serving.
//!
//! Release tools deploy by swapping a symlink (`root = "/srv/site/current"`,
//! then `ln -sfn releases/v2 current.tmp && mv -T current.tmp current`). A
//! [`RootDir`] holds the directory its path named when it was opened, so
//! each worker keeps the one it serves from and looks at the path again at
//! most once per `cache_revalidate` (one stat(2), compared by device and
//! inode with the held directory); when the path names another directory,
//! the worker takes the new one (opened once for all workers, [`Roots`])
//! and empties its small-file cache, whose entries were read from the old
//! one. What a request opens, it opens from the one `RootDir` its worker
//! held when the request began: the file, its precompressed siblings, its
//! error page, so an answer is wholly from one release. A response in
//! flight keeps the files it opened; a cached one, its bytes.
//!
//! A 404 is the one answer that may be the swap's doing (the old release
//! deleted, or missing what the new one has): before it is sent, the path
//! is looked at again (one stat), and when it names another directory, the
//! request is answered again from that one. So deleting the old release
//! right after the swap costs no error, and the check costs nothing on
//! the other answers.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::Symlinks;

use super::cache::Cache;
use super::dirs::Dirs;
use super::fdcache::FdCache;
use super::os::{FileId, RootDir};

/// The configured root path and the directory it named when last looked
/// at, shared by the workers of one responder.
#[derive(Debug)]
pub struct Roots {
    path: PathBuf,
    /// `path` as stat(2) takes it, made once.
    c_path: CString,
    symlinks: Symlinks,
    dotfiles: bool,
    /// How often the path is looked at again (`cache_revalidate`).
    every: Duration,
    latest: Mutex<Latest>,
}

#[derive(Debug)]
struct Latest {
    root: Arc<RootDir>,
    /// Not looked at again before then (None: at the next ask).
    due: Option<Instant>,
}

impl Roots {
    pub fn open(
        path: &Path,
        symlinks: Symlinks,
        dotfiles: bool,
        every: Duration,
    ) -> io::Result<Roots> {
        let root = RootDir::open(path, symlinks, dotfiles)?;
        // Made absolute once: the path is looked at again for as long as
        // the responder serves, whatever the working directory is then.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Roots {
            c_path: CString::new(path.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "root contains NUL"))?,
            path,
            symlinks,
            dotfiles,
            every,
            latest: Mutex::new(Latest {
                root: Arc::new(root),
                due: None,
            }),
        })
    }

    /// The directory last found, without looking.
    pub fn current(&self) -> Arc<RootDir> {
        self.lock().root.clone()
    }

    /// The directory the path names, looked at again when `every` has
    /// passed since the last look (or at once with `now_please`); for a
    /// caller without a worker's state (tests, tools), on that schedule
    /// too. Opened anew when it is another one than the last found. When it cannot be
    /// looked at or opened (a link being replaced by hand, not atomically),
    /// the last one found is kept and the path looked at again next time.
    pub(super) fn latest(&self, now: Instant, now_please: bool) -> Arc<RootDir> {
        let mut l = self.lock();
        if now_please || l.due.is_none_or(|due| now >= due) {
            l.due = Some(crate::http::later(now, self.every));
            if self.moved(&l.root)
                && let Ok(r) = RootDir::open(&self.path, self.symlinks, self.dotfiles)
            {
                l.root = Arc::new(r);
            }
        }
        l.root.clone()
    }

    /// After a 404 from `root`: the directory to answer again from, when
    /// the path names another one now (else None: the 404 stands).
    pub(super) fn retry(&self, root: &RootDir, now: Instant) -> Option<Arc<RootDir>> {
        if !self.moved(root) {
            return None;
        }
        let new = self.latest(now, true);
        (new.id() != root.id()).then_some(new)
    }

    /// Whether the path names another directory than `root` now (one
    /// stat(2); not when it names nothing).
    fn moved(&self, root: &RootDir) -> bool {
        FileId::of_c(&self.c_path).is_ok_and(|id| id != root.id())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Latest> {
        // Only an Arc is swapped under the lock: a panic cannot leave it
        // half-done.
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One worker's state for the file responder: the root it serves from and
/// its small-file cache (none when `cache_size` is 0), entries read from
/// that root.
#[derive(Debug)]
pub struct Local {
    /// The responder whose state this is (`cache::new_owner`).
    pub(super) owner: u64,
    root: Arc<RootDir>,
    /// The root path is looked at again then (None: at the next request).
    due: Option<Instant>,
    pub(super) cache: Option<Cache>,
    /// Its open-file cache (none when `open_file_cache` is 0).
    pub(super) files: Option<FdCache>,
    /// Which directories of `root` hold no precompressed file.
    pub(super) dirs: Dirs,
}

impl Local {
    pub(super) fn new(
        owner: u64,
        roots: &Roots,
        cache: Option<Cache>,
        files: Option<FdCache>,
    ) -> Local {
        Local {
            owner,
            root: roots.current(),
            due: None,
            cache,
            files,
            dirs: Dirs::default(),
        }
    }

    /// The cache, if any.
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// The caches and directory records of `local`, a worker's (none
    /// without one).
    pub(super) fn parts(
        local: Option<&mut Local>,
    ) -> (Option<&mut Cache>, Option<&mut FdCache>, Option<&Dirs>) {
        match local {
            Some(l) => (l.cache.as_mut(), l.files.as_mut(), Some(&l.dirs)),
            None => (None, None, None),
        }
    }

    /// The root to answer a request from at `now`: the one held, unless
    /// it is time to look at the path again and it names another one.
    pub(super) fn root(&mut self, roots: &Roots, now: Instant) -> Arc<RootDir> {
        if self.due.is_none_or(|due| now >= due) {
            // Its own look (one stat, no lock): the shared record may have
            // been looked at up to an interval ago.
            self.due = Some(crate::http::later(now, roots.every));
            if roots.moved(&self.root) {
                self.take(roots.latest(now, true));
            }
        }
        self.root.clone()
    }

    /// After a 404 from `root`: the root to answer again from, when the
    /// path names another directory now (`Roots::retry`).
    pub(super) fn retry(
        &mut self,
        roots: &Roots,
        root: &RootDir,
        now: Instant,
    ) -> Option<Arc<RootDir>> {
        let new = roots.retry(root, now)?;
        self.take(new.clone());
        Some(new)
    }

    /// Serve from `root` from now on; the cache's entries were read from
    /// the one held so far, so they go when it is another one.
    fn take(&mut self, root: Arc<RootDir>) {
        if !Arc::ptr_eq(&root, &self.root) {
            self.root = root;
            if let Some(c) = &mut self.cache {
                c.clear();
            }
            if let Some(f) = &mut self.files {
                f.shed();
            }
            self.dirs.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::metrics::WorkerCounters;

    fn swap(base: &Path, to: &str) {
        symlink(to, base.join("tmp")).unwrap();
        std::fs::rename(base.join("tmp"), base.join("current")).unwrap();
    }

    /// The path is looked at once per interval, not per request; a swap is
    /// taken at the next look (emptying the cache), or at once after a
    /// 404 from the old directory; a link being replaced keeps the old.
    #[test]
    fn a_swap_is_seen_at_the_next_look_or_after_a_404() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for r in ["a", "b", "c"] {
            std::fs::create_dir(base.join(r)).unwrap();
        }
        symlink("a", base.join("current")).unwrap();
        let every = Duration::from_secs(1);
        let roots = Roots::open(&base.join("current"), Symlinks::WithinRoot, false, every).unwrap();
        let id = |r: &str| FileId::of(&base.join(r)).unwrap();
        let cache = Cache::new(1, 1 << 20, Arc::new(WorkerCounters::default()));
        let mut local = Local::new(1, &roots, Some(cache), None);
        let t0 = Instant::now();
        assert_eq!(local.root(&roots, t0).id(), id("a"));
        swap(base, "b");
        let held = local.root(&roots, t0 + every / 2);
        assert_eq!(
            held.id(),
            id("a"),
            "not looked at again within the interval"
        );
        // Another worker, due to look now, looks itself: it is not held to
        // when the first one looked.
        let mut other = Local::new(1, &roots, None, None);
        assert_eq!(other.root(&roots, t0 + every / 2).id(), id("b"));
        assert_eq!(local.root(&roots, t0 + every).id(), id("b"));
        assert_eq!(
            roots.current().id(),
            id("b"),
            "shared with the other workers"
        );
        assert!(local.cache().unwrap().is_empty());
        // A 404 from the old directory: answered again from the new one.
        let b = local.root(&roots, t0 + every);
        swap(base, "c");
        assert!(
            roots
                .retry(&roots.current(), t0 + every)
                .is_some_and(|r| r.id() == id("c"))
        );
        assert_eq!(local.retry(&roots, &b, t0 + every).unwrap().id(), id("c"));
        let c = local.root(&roots, t0 + every);
        assert!(
            local.retry(&roots, &c, t0).is_none(),
            "not moved: the 404 stands"
        );
        // No link for a moment: the held directory stays.
        std::fs::remove_file(base.join("current")).unwrap();
        assert_eq!(local.root(&roots, t0 + every * 3).id(), id("c"));
        swap(base, "a");
        assert_eq!(local.root(&roots, t0 + every * 4).id(), id("a"));
    }

    /// A worker that takes another root answers nothing more from the
    /// cache it filled from the old one.
    #[test]
    fn a_swap_empties_the_worker_cache() {
        use crate::config::Config;
        use crate::files::{Responder, Settings};
        use crate::http::parse::with_request;
        use crate::http::{Body, Notes, Now, Respond};
        use crate::log::Level;

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for r in ["a", "b"] {
            std::fs::create_dir(base.join(r)).unwrap();
            std::fs::write(base.join(r).join("x.txt"), r).unwrap();
            std::fs::write(base.join(r).join("y.txt"), r).unwrap();
        }
        symlink("a", base.join("current")).unwrap();
        let cfg = Config::parse("workers = 1\ncache_revalidate = \"1s\"", "t").unwrap();
        let r = Responder::new(&base.join("current"), Settings::from_config(&cfg)).unwrap();
        let mut local = r.local(&Arc::new(WorkerCounters::default()), usize::MAX);
        let t0 = Instant::now();
        let mut ask = |at: Instant, target: &str| {
            let now = Now::new(at, std::time::SystemTime::now());
            let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
            let reply = with_request(&raw, |req| {
                r.respond(req, &now, &mut *local, &mut Notes::new(Level::Info))
            });
            match reply.body {
                Body::Bytes(b) => b.to_vec(),
                other => panic!("not from the cache: {other:?}"),
            }
        };
        let every = Duration::from_secs(1);
        // Looked at t0; x.txt cached at t0 + 0.9 s, until t0 + 1.9 s.
        assert_eq!(ask(t0, "/y.txt"), b"a");
        assert_eq!(ask(t0 + every * 9 / 10, "/x.txt"), b"a");
        swap(base, "b");
        assert_eq!(ask(t0 + every * 95 / 100, "/x.txt"), b"a", "not looked yet");
        assert_eq!(ask(t0 + every, "/x.txt"), b"b", "the next look takes b");
    }
}
