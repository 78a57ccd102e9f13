//! The open-file cache, beside the small-file cache: for a path whose file
//! is not held as bytes (larger than `cache_max_file`, or not admitted),
//! the open descriptor with its metadata and rendered 200 head, so a
//! request costs a lookup, the head and a sendfile (no openat2, fstat or
//! close), as nginx's `open_file_cache` does.
//!
//! Entries are [`Entry`]s like the byte cache's, their one representation a
//! shared descriptor (`Source::File`): every response reads it at its own
//! offsets (sendfile with an offset, pread, splice from an offset), never
//! at the descriptor's position. Only a file with no precompressed sibling
//! is kept (its answer is the file itself).
//!
//! Revalidated like the byte cache: an entry is served for
//! `cache_revalidate`, then dropped when next asked for, and the path is
//! opened and stat'ed again (so a file replaced, truncated, deleted or made
//! unreadable is seen within that interval).
//!
//! Bounded twice: at most `open_file_cache` entries per worker, and at most
//! a quarter of the worker's descriptor budget (`http::FdBudget`), so the
//! connections and HTTP/2 streams keep three quarters; when descriptors
//! run short anyway (an accept or an open fails with EMFILE), every entry
//! is closed first (`shed`) and the open is tried again. Eviction is
//! second-chance (CLOCK): an approximation of least recently used that
//! costs a hit one store.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::cache::{Cache, Entry};
use super::entity::{Rep, Source};
use super::os::Found;
use super::{HEAD_ESTIMATE, Site};
use crate::http::reply::Text;
use crate::http::{Now, Reply, Request};

/// The share of a worker's descriptor budget the cache may hold: one in
/// `BUDGET_SHARE`.
pub const BUDGET_SHARE: usize = 4;

#[derive(Debug)]
struct Slot {
    key: Rc<str>,
    entry: Rc<Entry>,
    /// Asked for since the clock hand last passed.
    used: bool,
}

/// One worker's open files, at most `cap` of them.
#[derive(Debug)]
pub struct FdCache {
    cap: usize,
    map: HashMap<Rc<str>, usize>,
    slots: Vec<Slot>,
    /// The clock hand: the next slot looked at for eviction.
    hand: usize,
}

impl FdCache {
    /// At most `entries` open files, and at most a quarter of the
    /// worker's descriptor budget `fd_budget`.
    pub fn new(entries: usize, fd_budget: usize) -> FdCache {
        FdCache {
            cap: entries.min(fd_budget / BUDGET_SHARE),
            map: HashMap::new(),
            slots: Vec::new(),
            hand: 0,
        }
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

    /// The entry for `key` within its `until`; one past it is dropped
    /// (its descriptor closed once no response holds it), and the caller
    /// opens the path again.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Rc<Entry>> {
        let i = *self.map.get(key)?;
        if now >= self.slots[i].entry.until {
            self.remove(i);
            return None;
        }
        let s = &mut self.slots[i];
        s.used = true;
        Some(s.entry.clone())
    }

    /// Keep `entry` for `key` (replacing the one it had), evicting an
    /// entry not asked for since the hand last passed when full.
    pub fn put(&mut self, key: &str, entry: Rc<Entry>) {
        if let Some(&i) = self.map.get(key) {
            self.slots[i].entry = entry;
            return;
        }
        if self.cap == 0 {
            return;
        }
        let key: Rc<str> = key.into();
        let slot = Slot {
            key: key.clone(),
            entry,
            used: false,
        };
        if self.slots.len() < self.cap {
            self.map.insert(key, self.slots.len());
            self.slots.push(slot);
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
        n
    }

    fn remove(&mut self, i: usize) {
        let s = self.slots.swap_remove(i);
        self.map.remove(&s.key);
        if let Some(moved) = self.slots.get(i) {
            self.map.insert(moved.key.clone(), i);
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
        if let Some(c) = cache.as_deref_mut()
            && let Some(e) = c.get(key, now.instant)
        {
            return Some(self.serve_cached(req, now, c, key, e));
        }
        let e = self.open_cached(cache.as_deref(), files.as_deref_mut(), key, now)?;
        Some(self.answer_cached(req, now, &e))
    }

    /// The open-file cache's entry for `key`, unless the small-file cache
    /// would now take the file in (it was asked for often enough lately:
    /// `Cache::admits`), which the lookup that follows does.
    fn open_cached(
        &self,
        cache: Option<&Cache>,
        files: Option<&mut FdCache>,
        key: &str,
        now: &Now,
    ) -> Option<Rc<Entry>> {
        let e = files?.get(key, now.instant)?;
        let len = e.reps[0].len;
        let promote = cache.is_some_and(|c| {
            len <= self.settings.cache_max_file && c.admits(key, len as usize + HEAD_ESTIMATE)
        });
        (!promote).then_some(e)
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
            until: crate::http::later(now.instant, self.settings.cache_revalidate),
            files: vec![stamp],
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
        })
    }

    /// Bounded by the entries asked for and a quarter of the descriptor
    /// budget; a full cache evicts one not asked for lately; an entry is
    /// dropped past its `until`; `shed` closes all.
    #[test]
    fn bounded_second_chance_and_expiry() {
        assert_eq!(FdCache::new(100, 40).cap(), 10);
        assert_eq!(FdCache::new(3, 4000).cap(), 3);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let mut c = FdCache::new(3, 4000);
        for k in ["a", "b", "c"] {
            c.put(k, entry(later));
        }
        assert!(c.get("a", t0).is_some());
        assert!(c.get("c", t0).is_some());
        c.put("d", entry(later));
        assert_eq!(c.len(), 3);
        assert!(c.get("b", t0).is_none(), "b was not asked for: evicted");
        assert!(c.get("a", t0).is_some() && c.get("c", t0).is_some());
        assert!(c.get("d", t0).is_some());
        assert!(c.get("a", later).is_none(), "past its until");
        assert_eq!(c.len(), 2);
        assert!(c.get("c", t0).is_some() && c.get("d", t0).is_some());
        assert_eq!(c.shed(), 2);
        assert!(c.is_empty() && c.get("c", t0).is_none());
        let mut off = FdCache::new(0, 4000);
        off.put("a", entry(later));
        assert!(off.is_empty());
    }
}
