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
//! Admission: a miss that fits without evicting anything is taken in; one
//! that would evict entries is taken in only when it was asked for lately
//! more than twice as often as each of them (`admit`, a frequency sketch of
//! every request), else it is answered from disk and what is cached stays.
//! So a spread of paths wider than the budget does not churn the cache, and
//! a path asked for once never evicts a popular one.
//!
//! An entry is served for `cache_revalidate` after it was read; then the
//! path is looked up on disk again, so a change is seen within that
//! interval. The cost of that: one lookup and read per cached path per
//! interval, only for paths still being requested.

use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::http::reply::Text;
use crate::metrics::WorkerCounters;

use super::admit::{self, Sketch};
use super::entity::Rep;
use super::os::Stamp;

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
    /// The files `reps` were read from (`os::Stamp`), in their order: an
    /// entry is kept on revalidation only while they are the same.
    pub files: Vec<Stamp>,
    /// The file's path beneath the root, as opened (`reps[0]`).
    pub rel: std::ffi::OsString,
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
    /// The key's hash, as the sketch counts it.
    hash: u64,
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
    /// Path (normal form) -> its slot in `nodes`: the slots, found by
    /// their nodes' hashes and keys, so a lookup hashes its key once (for
    /// the sketch too).
    map: hashbrown::HashTable<usize>,
    /// foldhash's quality variant: about a tenth of SipHash's cost on a
    /// short path, its output mixed well enough for the sketch's counters.
    /// It is not HashDoS-resistant (its seed comes from addresses and the
    /// clock, and timing may reveal it), and need not be: the table's
    /// entries are files on disk under their normal form, so whatever
    /// keys a client asks for, a lookup walks only those entries; and a
    /// client that could aim at a path's sketch counters gains nothing it
    /// could not get by asking for that path.
    hasher: foldhash::quality::RandomState,
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
    /// How often each path was asked for lately (`admits`).
    sketch: Sketch,
}

impl Cache {
    pub fn new(owner: u64, budget: usize, gauges: Arc<WorkerCounters>) -> Cache {
        Cache {
            owner,
            budget,
            map: hashbrown::HashTable::new(),
            hasher: foldhash::quality::RandomState::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            bytes: 0,
            gauges,
            expired: None,
            turn: None,
            spent: 0,
            sketch: Sketch::for_budget(budget),
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
    /// Every call counts as a request for `key` (`admits`).
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Rc<Entry>> {
        self.get_or_renew(key, now, |_| None)
    }

    /// `get`, but an entry past its `until` is kept, until the time
    /// `renew` gives, when it gives one (its files found unchanged).
    pub fn get_or_renew(
        &mut self,
        key: &str,
        now: Instant,
        renew: impl FnOnce(&Entry) -> Option<Instant>,
    ) -> Option<Rc<Entry>> {
        let hash = self.hash(key);
        self.sketch.record(hash);
        let i = self.find(hash, key)?;
        if now >= self.node(i).entry.until
            && let Some(until) = renew(&self.node(i).entry)
        {
            Rc::make_mut(&mut self.node(i).entry).until = until;
        }
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

    /// Whether an entry of `size` bytes for `key` is to be taken in: when
    /// it fits without evicting anything; else when `key` was asked for
    /// (`get`) more than twice as often lately as the entries it would
    /// evict (the least recently used first) in all (`admit::beats`). An
    /// entry the key has now counts as evicted. Nothing is changed.
    pub fn admits(&self, key: &str, size: usize) -> bool {
        if size > self.budget {
            return false;
        }
        let hash = self.hash(key);
        let own = self.find(hash, key);
        let mut have = self.bytes - own.map_or(0, |i| self.at(i).size);
        if have + size <= self.budget {
            return true;
        }
        let wants = self.sketch.estimate(hash);
        let mut lost = 0u32;
        let mut i = self.oldest;
        while have + size > self.budget {
            let Some(n) = self.nodes.get(i).and_then(Option::as_ref) else {
                return false;
            };
            if Some(i) != own {
                lost += u32::from(self.sketch.estimate(n.hash));
                if !admit::beats(wants, lost) {
                    return false;
                }
                have -= n.size;
            }
            i = n.newer;
        }
        true
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of `key`, whose hash is `hash`.
    fn find(&self, hash: u64, key: &str) -> Option<usize> {
        let nodes = &self.nodes;
        let same = |&i: &usize| nodes[i].as_ref().is_some_and(|n| *n.key == *key);
        self.map.find(hash, same).copied()
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
        let hash = self.hash(key);
        if let Some(i) = self.find(hash, key) {
            self.remove(i);
        }
        while self.bytes + size > self.budget && self.oldest != NIL {
            self.remove(self.oldest);
        }
        let node = Node {
            key: key.into(),
            hash,
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
        let nodes = &self.nodes;
        let rehash = |&j: &usize| nodes[j].as_ref().map_or(0, |n| n.hash);
        self.map.insert_unique(hash, i, rehash);
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

    fn at(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("a listed slot holds a node")
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
        if let Ok(slot) = self.map.find_entry(n.hash, |&j| j == i) {
            slot.remove();
        }
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

    /// Let go of the entry `get` last dropped as expired, if no lookup
    /// took it (`take_expired`): its path now names another file, one
    /// held by its descriptor, or none. Outside the budget and the
    /// gauges, it is not to outlive the request that dropped it.
    pub fn drop_expired(&mut self) {
        self.expired = None;
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
mod tests;
