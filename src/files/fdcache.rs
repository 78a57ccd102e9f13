//! The open-file cache, beside the small-file cache: for a path whose file
//! is not held as bytes (larger than `cache_max_file`, over 4 KiB and sent
//! as it is: `Site::held_as_bytes`; or not admitted), the open descriptor
//! with its metadata and rendered 200 head, so a request costs a lookup,
//! the head and a sendfile (no openat2, fstat or close), as nginx's
//! `open_file_cache` does.
//!
//! Entries are [`Entry`]s like the byte cache's, their one representation a
//! shared descriptor (`Source::File`): every response reads it at its own
//! offsets (sendfile with an offset, pread, splice from an offset), never
//! at the descriptor's position. Only a file with no precompressed sibling
//! is kept (its answer is the file itself).
//!
//! Revalidated within `cache_revalidate`, as the byte cache is: then, when
//! next asked for, the entry is kept for another interval if its path
//! still names the same file, unchanged, and its directory still holds no
//! precompressed sibling (`RootDir::still_names`: one fstatat, where
//! opening the path again costs openat2, statx and close); else dropped
//! and the path opened again. So a file replaced, truncated, deleted or
//! made unreadable is seen within that interval.
//!
//! Bounded twice: at most `open_file_cache` entries per worker, and at most
//! half of the worker's descriptor budget (`http::FdBudget`). That budget
//! counts two descriptors per connection, its socket and the file it
//! sends; a file sent from this cache is the cached descriptor itself, so
//! the cache holds what would otherwise be those files' half (a quarter
//! left 4,984 of 10,000 files uncached under RLIMIT_NOFILE 20,000: 0.26
//! opens per request, 5-7% more CPU per request, benches/wrk.sh). When
//! descriptors run short anyway (an accept or an open fails with EMFILE), every entry
//! is closed first (`shed`) and the open is tried again. Eviction is
//! second-chance (CLOCK): an approximation of least recently used that
//! costs a hit one store.
//!
//! How many files it holds is published to the worker's `/metrics` block
//! (`tandem_open_file_cache_entries`) when that count changes (a file
//! taken in, one dropped past its interval or let go once the small-file
//! cache takes it in as bytes, all closed, the cache gone with its
//! worker), as the byte cache publishes its own: never on a hit,
//! nor when an eviction puts one file in another's place.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::{Cache, Entry};
use super::entity::{Rep, Source};
use super::os::Found;
use super::{HEAD_ESTIMATE, Site};
use crate::http::reply::Text;
use crate::http::{Now, Reply, Request};
use crate::metrics::WorkerCounters;

/// The share of a worker's descriptor budget the cache may hold: one in
/// `BUDGET_SHARE`.
pub const BUDGET_SHARE: usize = 2;

#[derive(Debug)]
struct Slot {
    key: Rc<str>,
    entry: Rc<Entry>,
    /// Served until then; revalidated after.
    until: Instant,
    /// Asked for since the clock hand last passed.
    used: bool,
}

/// One worker's open files, at most `cap` of them.
#[derive(Debug)]
pub struct FdCache {
    cap: usize,
    /// `cache_revalidate`.
    every: Duration,
    /// Hashed with foldhash's quality variant, as the byte cache is:
    /// SipHash's cost showed in a profile of many files.
    map: HashMap<Rc<str>, usize, foldhash::quality::RandomState>,
    slots: Vec<Slot>,
    /// The clock hand: the next slot looked at for eviction.
    hand: usize,
    /// Where the worker's `/metrics` gauge of this cache is.
    gauges: Arc<WorkerCounters>,
}

impl FdCache {
    /// At most `entries` open files, and at most half of the
    /// worker's descriptor budget `fd_budget`, each revalidated `every`;
    /// how many it holds shown in `gauges`.
    pub fn new(
        entries: usize,
        fd_budget: usize,
        every: Duration,
        gauges: Arc<WorkerCounters>,
    ) -> FdCache {
        FdCache {
            cap: entries.min(fd_budget / BUDGET_SHARE),
            every,
            map: HashMap::default(),
            slots: Vec::new(),
            hand: 0,
            gauges,
        }
    }

    /// A worker's, by the settings, unless they leave it no room.
    pub(super) fn of(
        s: &super::Settings,
        fd_budget: usize,
        gauges: &Arc<WorkerCounters>,
    ) -> Option<FdCache> {
        Some(FdCache::new(
            s.open_file_cache,
            fd_budget,
            s.cache_revalidate,
            gauges.clone(),
        ))
        .filter(|f| f.cap() > 0)
    }

    /// Most entries (descriptors) it holds.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Entries (open descriptors) held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The entry for `key`. One past its `until` is kept for another
    /// interval when `same(entry)` says its file is unchanged; else
    /// dropped (its descriptor closed once no response holds it), and the
    /// caller opens the path again.
    pub fn get(
        &mut self,
        key: &str,
        now: Instant,
        same: impl FnOnce(&Entry) -> bool,
    ) -> Option<Rc<Entry>> {
        let i = *self.map.get(key)?;
        let s = &mut self.slots[i];
        if now >= s.until {
            if !same(&s.entry) {
                self.remove(i);
                return None;
            }
            s.until = crate::http::later(now, self.every);
        }
        s.used = true;
        Some(s.entry.clone())
    }

    /// Keep `entry` for `key` (replacing the one it had), evicting an
    /// entry not asked for since the hand last passed when full.
    pub fn put(&mut self, key: &str, entry: Rc<Entry>, now: Instant) {
        let until = crate::http::later(now, self.every);
        if let Some(&i) = self.map.get(key) {
            let s = &mut self.slots[i];
            (s.entry, s.until) = (entry, until);
            return;
        }
        if self.cap == 0 {
            return;
        }
        let key: Rc<str> = key.into();
        let slot = Slot {
            key: key.clone(),
            entry,
            until,
            used: false,
        };
        if self.slots.len() < self.cap {
            self.map.insert(key, self.slots.len());
            self.slots.push(slot);
            self.publish();
            return;
        }
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let s = &mut self.slots[self.hand];
            if !std::mem::take(&mut s.used) {
                break;
            }
            self.hand += 1;
        }
        let old = std::mem::replace(&mut self.slots[self.hand], slot);
        self.map.remove(&old.key);
        self.map.insert(key, self.hand);
        self.hand += 1;
    }

    /// Close every entry's descriptor (descriptors ran short, or the root
    /// they were opened from is no longer served). Returns how many.
    pub fn shed(&mut self) -> usize {
        let n = self.slots.len();
        self.map.clear();
        self.slots.clear();
        self.hand = 0;
        if n > 0 {
            self.publish();
        }
        n
    }

    /// Let the entry for `key` go, if there is one.
    pub fn forget(&mut self, key: &str) {
        if let Some(&i) = self.map.get(key) {
            self.remove(i);
        }
    }

    fn remove(&mut self, i: usize) {
        let s = self.slots.swap_remove(i);
        self.map.remove(&s.key);
        if let Some(moved) = self.slots.get(i) {
            self.map.insert(moved.key.clone(), i);
        }
        self.publish();
    }

    /// The count changed: show it on `/metrics` (one relaxed store).
    fn publish(&self) {
        self.gauges.set_open_files(self.slots.len());
    }
}

impl Drop for FdCache {
    /// Its worker ended (or its state was let go): what it held is closed.
    fn drop(&mut self) {
        if !self.slots.is_empty() {
            self.gauges.set_open_files(0);
        }
    }
}

impl Site<'_> {
    /// The answer from the small-file cache, else from the open-file
    /// cache, for `key`.
    pub(super) fn cached(
        &self,
        req: &Request<'_>,
        now: &Now,
        cache: &mut Option<&mut Cache>,
        files: &mut Option<&mut FdCache>,
        key: &str,
    ) -> Option<Reply> {
        let every = self.settings.cache_revalidate;
        let renew = |e: &Entry| {
            self.unchanged_on_disk(key, e, now)
                .then(|| crate::http::later(now.instant(), every))
        };
        if let Some(c) = cache.as_deref_mut()
            && let Some(e) = c.get_or_renew(key, now.instant(), renew)
        {
            return Some(self.serve_cached(req, now, c, key, e));
        }
        let e = self.open_cached(cache.as_deref(), files.as_deref_mut(), key, now)?;
        Some(self.answer_cached(req, now, &e))
    }

    /// The open-file cache's entry for `key`, unless the small-file cache
    /// would now take the file in (it was asked for often enough lately:
    /// `Cache::admits`), which the lookup that follows does: then the
    /// entry is let go, so the file is not held twice, as bytes and as a
    /// descriptor (closed once no response in flight still sends from it).
    fn open_cached(
        &self,
        cache: Option<&Cache>,
        files: Option<&mut FdCache>,
        key: &str,
        now: &Now,
    ) -> Option<Rc<Entry>> {
        let files = files?;
        let e = files.get(key, now.instant(), |e| self.unchanged_on_disk(key, e, now))?;
        let len = e.reps[0].len;
        let promote = cache.is_some_and(|c| {
            self.held_as_bytes(len, &e.ctype, false, true)
                && c.admits(key, len as usize + HEAD_ESTIMATE)
        });
        if promote {
            files.forget(key);
            return None;
        }
        Some(e)
    }

    /// Whether the entry for `key` (bytes or a held descriptor) past its
    /// interval may be served for another: the one rule both caches
    /// revalidate by. The file `key` names itself (not a directory's index
    /// file, where another index name may appear), alone (no precompressed
    /// sibling, and its directory still holds none: `Dirs`), and its path
    /// names that same file, unchanged (`RootDir::still_names`: one
    /// fstatat). Else the path is opened again.
    ///
    /// fstatat follows the directories on the way, so their part is
    /// `Dirs`'s: it opens the directory as `open_beneath` does, once an
    /// interval, with no codings to look for too, and one that no longer
    /// opens under the symlink and dotfile rules (moved out of the root or
    /// to a hidden name, a symlink left in its place) "may hold" siblings:
    /// the path is opened again, and refused.
    fn unchanged_on_disk(&self, key: &str, e: &Entry, now: &Now) -> bool {
        let encs = &self.settings.precompressed;
        let name = e.rel.as_bytes();
        let dir = name
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(&b""[..], |i| &name[..i]);
        let every = self.settings.cache_revalidate;
        let no_sibling = || {
            self.dirs
                .is_some_and(|d| !d.may_hold(self.root, dir, encs, now.instant(), every))
        };
        let rep = &e.reps[0];
        key.as_bytes().get(1..) == Some(name)
            && e.reps.len() == 1
            && e.files.len() == 1
            && no_sibling()
            && self
                .root
                .still_names(&e.rel, &e.files[0], rep.len, rep.mtime)
    }

    /// An open-file cache entry for the file `f` (no siblings): its
    /// descriptor, shared by every response, and its 200 head, rendered
    /// once.
    pub(super) fn open_entry(
        &self,
        now: &Now,
        rel: &OsStr,
        f: Found,
        ctype: Text,
        rules: Vec<(String, String)>,
    ) -> Entry {
        let stamp = f.stamp;
        let source = Source::File(Arc::new(f.file));
        let mut rep = Rep::new(source, f.len, f.mtime, None, rel, now.wall);
        self.render_head(&mut rep, false, &ctype, &rules, now);
        Entry {
            reps: vec![rep],
            fly: Vec::new(),
            made: Vec::new(),
            vary: false,
            ctype,
            rules,
            // The slot's own `until` is what the open-file cache goes by.
            until: crate::http::later(now.instant(), self.settings.cache_revalidate),
            files: vec![stamp],
            rel: rel.to_os_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(until: Instant) -> Rc<Entry> {
        Rc::new(Entry {
            reps: Vec::new(),
            fly: Vec::new(),
            made: Vec::new(),
            vary: false,
            ctype: crate::http::reply::Text::from("text/plain".to_string()),
            rules: Vec::new(),
            until,
            files: Vec::new(),
            rel: Default::default(),
        })
    }

    /// Bounded by the entries asked for and half of the descriptor
    /// budget; a full cache evicts one not asked for lately; past its
    /// interval an entry is kept only while its file is the same; `shed`
    /// closes all. What it holds is on its worker's `/metrics` gauge all
    /// the way, and 0 once it is gone.
    #[test]
    fn bounded_second_chance_and_revalidation() {
        let reg = crate::metrics::Registry::new("epoll");
        let w = reg.worker();
        let gauge = || reg.snapshot().totals.open_files;
        let every = Duration::from_secs(1);
        assert_eq!(FdCache::new(100, 40, every, w.clone()).cap(), 20);
        assert_eq!(FdCache::new(3, 4000, every, w.clone()).cap(), 3);
        let t0 = Instant::now();
        let later = t0 + every;
        let mut c = FdCache::new(3, 4000, every, w.clone());
        let fresh = |_: &Entry| -> bool { panic!("revalidated within the interval") };
        for (n, k) in ["a", "b", "c"].into_iter().enumerate() {
            c.put(k, entry(later), t0);
            assert_eq!(gauge(), n as u64 + 1, "after put {k}");
        }
        c.put("a", entry(later), t0);
        assert_eq!(gauge(), 3, "replaced: as many as before");
        assert!(c.get("a", t0, fresh).is_some());
        assert!(c.get("c", t0, fresh).is_some());
        c.put("d", entry(later), t0);
        assert_eq!(c.len(), 3);
        assert_eq!(gauge(), 3, "one evicted for one taken in");
        assert!(
            c.get("b", t0, fresh).is_none(),
            "b was not asked for: evicted"
        );
        assert!(c.get("a", t0, fresh).is_some() && c.get("c", t0, fresh).is_some());
        assert!(c.get("d", t0, fresh).is_some());
        assert!(c.get("a", later, |_| true).is_some(), "unchanged: kept");
        assert!(c.get("a", later, fresh).is_some(), "for another interval");
        assert!(c.get("c", later, |_| false).is_none(), "changed: dropped");
        assert_eq!(c.len(), 2);
        assert_eq!(gauge(), 2, "one dropped past its interval");
        assert!(c.get("a", t0, fresh).is_some() && c.get("d", t0, fresh).is_some());
        assert_eq!(c.shed(), 2);
        assert_eq!(gauge(), 0, "all closed");
        assert!(c.is_empty() && c.get("a", t0, fresh).is_none());
        c.put("e", entry(later), t0);
        assert_eq!(gauge(), 1);
        drop(c);
        assert_eq!(gauge(), 0, "gone with its worker");
        let mut off = FdCache::new(0, 4000, every, w);
        off.put("a", entry(later), t0);
        assert!(off.is_empty());
        assert_eq!(gauge(), 0);
    }
}
