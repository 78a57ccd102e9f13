//! The static file responder: request target -> what to send. It never touches
//! a socket or the clock (the time is passed in, a `Now`); its only OS
//! access is to files beneath the root, opened by `os.rs` (which also keeps
//! each worker thread's record of opens that ran out of descriptors), then
//! stat'ed, and read whole only to fill the cache. Bodies are described, not
//! copied: an open file and a range, or the shared bytes of a small file from
//! the worker's cache (`cache.rs`), a value the worker owns and lends to each
//! call through `Ctx` (not a thread-local).

pub mod admit;
pub mod cache;
pub mod compress;
pub mod dirs;
pub mod entity;
pub mod fdcache;
pub mod listing;
pub mod mime;
pub mod os;
pub mod path;
pub mod release;
mod settings;

pub use settings::Settings;

use std::any::Any;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Encoding;
use crate::http::reply::{Text, merge_list};
use crate::http::{Body, Headers, Notes, Now, Reply, Request, Respond, Status};
use crate::log::Level;
use crate::metrics::WorkerCounters;
use cache::{Cache, Entry};
use dirs::Dirs;
use entity::{Choice, Rep, Source};
use fdcache::FdCache;
use os::{Found, Opened, RootDir};
use path::{PathError, ReqPath};
use release::{Local, Roots};

/// `Retry-After` of a 503 for want of descriptors, in seconds: idle
/// connections are closed at once, so a retry soon after may well succeed.
const RETRY_AFTER: &str = "1";

#[derive(Debug)]
pub struct Responder {
    /// The root path and the directory it names (`release`).
    roots: Roots,
    settings: Settings,
    types: mime::Types,
    /// Owner id of this responder's caches (one per generation).
    owner: u64,
    /// Stale precompressed siblings already logged.
    stale: entity::StaleLog,
    /// Test hook (`TANDEM_TEST_PANIC_TARGET`, debug builds only): a request
    /// for exactly this target panics the worker, so tests can prove a dead
    /// worker is replaced.
    #[cfg(debug_assertions)]
    panic_target: Option<String>,
}

impl Responder {
    pub fn new(root: &Path, settings: Settings) -> io::Result<Responder> {
        let roots = Roots::open(
            root,
            settings.symlinks,
            settings.serve_dotfiles,
            settings.cache_revalidate,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("root {}: {e}", root.display())))?;
        Ok(Responder {
            roots,
            types: mime::Types::new(&settings.mime_types, &settings.default_type),
            owner: cache::new_owner(),
            stale: entity::StaleLog::default(),
            settings,
            #[cfg(debug_assertions)]
            panic_target: None,
        })
    }

    /// Arm the test hook: a request for exactly `target` panics.
    #[cfg(debug_assertions)]
    pub fn with_panic_target(mut self, target: Option<String>) -> Responder {
        self.panic_target = target.filter(|t| !t.is_empty());
        self
    }

    /// The view of one request answered from `root`, with what the
    /// worker knows of its directories, if it is this responder's worker.
    fn site<'a>(&'a self, root: &'a RootDir, dirs: Option<&'a Dirs>) -> Site<'a> {
        Site {
            r: self,
            root,
            dirs,
        }
    }
}

/// One request's view of the responder: its settings, and the one root
/// (release) that everything the request opens is opened from, its file,
/// the file's precompressed siblings and its error page (`release`).
struct Site<'a> {
    r: &'a Responder,
    root: &'a RootDir,
    /// Which of its directories hold no precompressed file (`dirs`).
    dirs: Option<&'a Dirs>,
}

impl std::ops::Deref for Site<'_> {
    type Target = Responder;

    fn deref(&self) -> &Responder {
        self.r
    }
}

impl Site<'_> {
    fn io_error(&self, e: io::Error, notes: &mut Notes) -> Reply {
        match e.kind() {
            io::ErrorKind::PermissionDenied => self.error_page(Status::FORBIDDEN),
            _ if is_missing(&e) => self.not_found(),
            // Out of descriptors: a passing condition, said as such (the
            // engine logs it, naming the client, and frees descriptors).
            _ if os::out_of_descriptors(&e) => {
                Reply::status(Status::SERVICE_UNAVAILABLE).with_header("Retry-After", RETRY_AFTER)
            }
            _ => {
                crate::note!(notes, Level::Error, "open: {e}");
                self.error_page(Status::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// 404, with the root's error page as the body when there is one.
    fn not_found(&self) -> Reply {
        self.error_page(Status::NOT_FOUND)
    }

    /// An error response, with the configured page for its status as the
    /// body when there is one (and it can be opened).
    fn error_page(&self, status: Status) -> Reply {
        if let Some((_, page)) = self
            .settings
            .error_pages
            .iter()
            .find(|(s, _)| *s == status.0)
            && let Ok(Opened::File(f)) = self.root.open_beneath(page.trim_start_matches('/'))
        {
            return Reply::new(status, Body::file(f.file, f.len))
                .with_header("Content-Type", self.types.header_value(page));
        }
        Reply::status(status)
    }
}

impl Responder {
    /// Answer a GET or HEAD for `req.target`, from the root this worker
    /// holds; a 404 again from the root path's new directory, when it was
    /// swapped meanwhile (`release`).
    fn answer(
        &self,
        req: &Request<'_>,
        now: &Now,
        local: &mut dyn Any,
        notes: &mut Notes,
    ) -> Reply {
        #[cfg(debug_assertions)]
        if self.panic_target.as_deref() == Some(req.target) {
            panic!("test hook: request for {}", req.target);
        }
        // A worker's own state, unless `local` is another responder's.
        let mut local = local
            .downcast_mut::<Local>()
            .filter(|l| l.owner == self.owner);
        let root = match local.as_deref_mut() {
            Some(l) => l.root(&self.roots, now.instant()),
            None => self.roots.latest(now.instant(), false),
        };
        let (cache, files, dirs) = Local::parts(local.as_deref_mut());
        let mut reply = self
            .site(&root, dirs)
            .respond(req, now, cache, files, notes);
        // Out of descriptors with open files cached: they are closed and
        // the request answered again (the cache never costs a 503).
        if reply.status == Status::SERVICE_UNAVAILABLE
            && let Some(l) = local.as_deref_mut()
            && l.files.as_mut().is_some_and(|f| f.shed() > 0)
        {
            os::take_shortage();
            let (cache, files, dirs) = Local::parts(Some(l));
            reply = self
                .site(&root, dirs)
                .respond(req, now, cache, files, notes);
        }
        if reply.status != Status::NOT_FOUND {
            return reply;
        }
        let again = match local.as_deref_mut() {
            Some(l) => l.retry(&self.roots, &root, now.instant()),
            None => self.roots.retry(&root, now.instant()),
        };
        match again {
            Some(new) => {
                let (cache, files, dirs) = Local::parts(local);
                self.site(&new, dirs).respond(req, now, cache, files, notes)
            }
            None => reply,
        }
    }
}

impl Respond for Responder {
    fn error(&self, status: Status) -> Reply {
        self.site(&self.roots.current(), None).error_page(status)
    }

    /// Answer a GET or HEAD for `req.target` (`Responder::answer`); an
    /// entry the byte cache dropped as expired on the way and nothing
    /// renewed (`Cache::drop_expired`) goes with the request.
    fn respond(
        &self,
        req: &Request<'_>,
        now: &Now,
        local: &mut dyn Any,
        notes: &mut Notes,
    ) -> Reply {
        let reply = self.answer(req, now, local, notes);
        if let Some(Local { cache: Some(c), .. }) = local.downcast_mut::<Local>() {
            c.drop_expired();
        }
        reply
    }

    /// The worker's root and its caches: bytes within `cache_size /
    /// workers`, and open files within `open_file_cache` and half of
    /// `fd_budget`; none at all when `cache_size` is 0 (then every request
    /// opens its file: a change is served at once).
    fn local(&self, stats: &Arc<WorkerCounters>, fd_budget: usize) -> Box<dyn Any> {
        let (cache, files) = match self.settings.cache_budget {
            0 => (None, None),
            budget => (
                Some(Cache::new(self.owner, budget, stats.clone())),
                FdCache::of(&self.settings, fd_budget, stats),
            ),
        };
        Box::new(Local::new(self.owner, &self.roots, cache, files))
    }

    /// Descriptors ran short: the open-file cache closes what it holds.
    fn shed(&self, local: &mut dyn Any) {
        if let Some(l) = local.downcast_mut::<Local>()
            && let Some(f) = &mut l.files
        {
            f.shed();
        }
    }
}

impl Site<'_> {
    /// Answer a GET or HEAD for `req.target` from this root.
    fn respond(
        &self,
        req: &Request<'_>,
        now: &Now,
        mut cache: Option<&mut Cache>,
        mut files: Option<&mut FdCache>,
        notes: &mut Notes,
    ) -> Reply {
        // The caches are keyed by the normal form of the path, so every
        // spelling of it shares one entry; most targets are already in it.
        let normal = path::normal_form(req.target);
        if let Some(key) = normal
            && let Some(r) = self.cached(req, now, &mut cache, &mut files, key)
        {
            return r;
        }
        let p = match path::resolve(req.target, self.settings.serve_dotfiles) {
            Ok(p) => p,
            Err(PathError::Bad) => return self.error_page(Status::BAD_REQUEST),
            Err(PathError::NotFound) => return self.not_found(),
        };
        if normal.is_none()
            && let Some(r) = self.cached(req, now, &mut cache, &mut files, &p.normal())
        {
            return r;
        }
        self.lookup(req, now, &p, cache, files, notes)
    }
}

impl Site<'_> {
    /// The response for a resolved path, with the rules' fields.
    fn lookup(
        &self,
        req: &Request<'_>,
        now: &Now,
        p: &ReqPath,
        cache: Option<&mut Cache>,
        files: Option<&mut FdCache>,
        notes: &mut Notes,
    ) -> Reply {
        match self.root.open_beneath(&p.rel) {
            Ok(Opened::File(_)) if p.trailing_slash && !p.rel.is_empty() => {
                // "/file.html/" names a directory that is not there.
                self.not_found()
            }
            Ok(Opened::File(f)) => self.file(req, now, f, &p.rel, p, cache, files, notes),
            Ok(Opened::Dir) if !p.trailing_slash => {
                let mut r = Reply::status(Status::MOVED_PERMANENTLY)
                    .with_header("Location", p.slash_redirect());
                apply_rules(&mut r, &self.rule_headers(p, None));
                r
            }
            Ok(Opened::Dir) => {
                for name in &self.settings.index {
                    let mut idx = p.rel.clone();
                    if !idx.is_empty() {
                        idx.push("/");
                    }
                    idx.push(name);
                    match self.root.open_beneath(&idx) {
                        Ok(Opened::File(f)) => {
                            return self.file(req, now, f, &idx, p, cache, files, notes);
                        }
                        Ok(_) => {}
                        Err(e) if is_missing(&e) => {}
                        Err(e) => return self.io_error(e, notes),
                    }
                }
                if self.settings.autoindex {
                    let mut r = self.listing(p, req, now, notes);
                    apply_rules(&mut r, &self.rule_headers(p, None));
                    return r;
                }
                self.not_found()
            }
            Ok(Opened::Other) => self.not_found(),
            Err(e) if is_missing(&e) => self.missing(req, now, p, notes),
            Err(e) => self.io_error(e, notes),
        }
    }

    /// A path that names nothing: the SPA fallback for a path without an
    /// extension, when one is set; else 404.
    fn missing(&self, req: &Request<'_>, now: &Now, p: &ReqPath, notes: &mut Notes) -> Reply {
        let fb = OsStr::new(&self.settings.fallback);
        let rel = p.rel.as_bytes();
        let last = rel.rsplit(|&b| b == b'/').next().unwrap_or(b"");
        // Not under /.well-known/ either: a missing ACME token or
        // security.txt must be a 404, not the app's HTML.
        if fb.is_empty() || last.contains(&b'.') || rel.starts_with(b".well-known/") {
            return self.not_found();
        }
        match self.root.open_beneath(fb) {
            Ok(Opened::File(f)) => self.file(req, now, f, fb, p, None, None, notes),
            Ok(_) => self.not_found(),
            Err(e) if is_missing(&e) => self.not_found(),
            Err(e) => self.io_error(e, notes),
        }
    }

    /// A found file's response for the request path `p`, typed by its name
    /// `rel`, with the rules' fields. Given this worker's `cache` (the file
    /// is what `p` names, not the fallback) and small enough, it is read
    /// (with its variants) into the cache and answered from there; else
    /// from disk.
    // The request, its time and its log lines travel together through the
    // responder; a struct for them is a change of every step, not this one.
    #[allow(clippy::too_many_arguments)]
    fn file(
        &self,
        req: &Request<'_>,
        now: &Now,
        f: Found,
        rel: &OsStr,
        p: &ReqPath,
        cache: Option<&mut Cache>,
        files: Option<&mut FdCache>,
        notes: &mut Notes,
    ) -> Reply {
        let mut rules = self.rule_headers(p, Some(rel));
        // A rule's Content-Type is the representation's type: it goes where
        // the file's goes, so a multipart answer names it in each part.
        // Else typed by its extension, which a name that is not UTF-8 keeps.
        let ctype = match rules
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            Some(i) => Text::from(rules.remove(i).1),
            None => self.types.header_value(&rel.to_string_lossy()),
        };
        let sibs = self.siblings(rel, &f, now.instant(), notes);
        // The caches' key, made once for both.
        let key = p.normal();
        if let Some(cache) = cache
            && self.held_as_bytes(f.len, &ctype, !sibs.is_empty(), files.is_some())
        {
            // Looked up again after cache_revalidate and found unchanged
            // (the same source and siblings): the entry is served on as it
            // was, its bytes and what was compressed for it, nothing read.
            if let Some(old) = cache.take_expired(&key)
                && unchanged(&old, &f, &sibs)
                && old.rules == rules
            {
                let e = cache.put(&key, self.renewed(&old, now));
                return self.serve_cached(req, now, cache, &key, e);
            }
            // Taken in only when the cache admits it (`Cache::admits`);
            // else answered from disk, nothing read into memory.
            let size = sibs.iter().map(|(_, s)| s.len).sum::<u64>() + f.len;
            if cache.admits(&key, size as usize + HEAD_ESTIMATE)
                && let Some(entry) = self.load(now, rel, &f, &sibs, ctype.clone(), &rules)
            {
                let e = cache.put(&key, entry);
                return self.serve_cached(req, now, cache, &key, e);
            }
        }
        // Not held as bytes: its descriptor kept open, when it has no
        // sibling (its answer is the file itself).
        if let Some(files) = files
            && sibs.is_empty()
        {
            let e = Rc::new(self.open_entry(now, rel, f, ctype, rules));
            files.put(&key, e.clone(), now.instant());
            return self.answer_cached(req, now, &e);
        }
        let mut reply = self.entity(req, now, f, sibs, rel, ctype);
        apply_rules(&mut reply, &rules);
        reply
    }

    /// Whether a file of `len` bytes typed `ctype` is held in the small-file
    /// cache as bytes (when the cache admits it). Up to `copy_max` it is;
    /// past it (up to `cache_max_file`) only when its entry serves more than
    /// the file as it is: precompressed `siblings`, or codings made on the
    /// fly from its bytes. Else, with descriptors held (`fd_held`: the
    /// open-file cache), its body goes out by sendfile from the page cache,
    /// as from disk.
    fn held_as_bytes(&self, len: u64, ctype: &str, siblings: bool, fd_held: bool) -> bool {
        len <= self.settings.cache_max_file
            && (len <= self.settings.copy_max
                || siblings
                || !fd_held
                || self.settings.compression.applies(ctype, len))
    }

    /// Read `src` and its fresh siblings into a cache entry. None when one
    /// of them is too large or changed while it was read.
    fn load(
        &self,
        now: &Now,
        rel: &OsStr,
        src: &Found,
        sibs: &[(Encoding, Found)],
        ctype: Text,
        rules: &[(String, String)],
    ) -> Option<Entry> {
        let max = self.settings.cache_max_file;
        let mut reps = vec![Rep::new(
            Source::Bytes(read_whole(src)?),
            src.len,
            src.mtime,
            None,
            rel,
            now.wall,
        )];
        for (enc, f) in sibs {
            if f.len > max {
                return None;
            }
            reps.push(Rep::new(
                Source::Bytes(read_whole(f)?),
                f.len,
                f.mtime,
                Some(*enc),
                rel,
                now.wall,
            ));
        }
        // Compressed on the fly: a listed type, within the bounds, with
        // the codings it has no sibling for (made when first asked for).
        let have: Vec<Encoding> = reps.iter().filter_map(|r| r.coding).collect();
        let fly = self
            .settings
            .compression
            .codings_for(&ctype, src.len, &have);
        let vary = reps.len() > 1 || !fly.is_empty();
        for rep in &mut reps {
            self.render_head(rep, vary, &ctype, rules, now);
        }
        Some(Entry {
            reps,
            fly,
            made: Vec::new(),
            vary,
            ctype,
            rules: rules.to_vec(),
            until: crate::http::later(now.instant(), self.settings.cache_revalidate),
            rel: rel.to_os_string(),
            files: std::iter::once(src)
                .chain(sibs.iter().map(|(_, f)| f))
                .map(|f| f.stamp)
                .collect(),
        })
    }

    /// An entry found unchanged on disk (`unchanged`), served on for
    /// another `cache_revalidate`; a head not rendered before (an mtime
    /// then ahead of the clock) is rendered now if it can be.
    fn renewed(&self, old: &Entry, now: &Now) -> Entry {
        let mut e = old.clone();
        e.until = crate::http::later(now.instant(), self.settings.cache_revalidate);
        let (vary, ctype, rules) = (e.vary, e.ctype.clone(), e.rules.clone());
        for rep in e.reps.iter_mut().chain(&mut e.made) {
            if rep.head.is_none() {
                self.render_head(rep, vary, &ctype, &rules, now);
            }
        }
        e
    }

    /// A cached representation's plain 200 head, rendered once (its
    /// Last-Modified is stable, even for an mtime ahead of the clock:
    /// `entity::last_modified`; unless the clock stepped back past it).
    fn render_head(
        &self,
        rep: &mut Rep,
        vary: bool,
        ctype: &Text,
        rules: &[(String, String)],
        now: &Now,
    ) {
        let lm = rep.last_modified;
        if lm.is_none_or(|lm| lm <= now.wall) {
            let lm = lm.map(httpdate::fmt_http_date);
            let mut h = self.ok_fields(rep, vary, ctype.clone(), lm);
            set_rule_fields(&mut h, rules);
            rep.head = Some(h.render());
        }
    }

    /// A cached answer, compressing the entry's file first when the client
    /// asks for a coding not made yet (`entity::choose`).
    fn serve_cached(
        &self,
        req: &Request<'_>,
        now: &Now,
        cache: &mut Cache,
        key: &str,
        e: Rc<Entry>,
    ) -> Reply {
        let e = match entity::choose(req, &e.reps, &e.made, &e.fly, true) {
            Choice::Make(c) => self.make(now, cache, key, e, c),
            Choice::Rep(_) => e,
        };
        self.answer_cached(req, now, &e)
    }

    /// Compress the entry's file with `coding`, once: the new entry (kept
    /// for `key`, counted against the budget) holds the bytes, or, when
    /// they are no smaller, no longer offers the coding. Over this loop
    /// turn's budget nothing is made: the entry is answered as it is (the
    /// identity or a sibling) and a later request makes it.
    fn make(
        &self,
        now: &Now,
        cache: &mut Cache,
        key: &str,
        e: Rc<Entry>,
        c: Encoding,
    ) -> Rc<Entry> {
        let src = &e.reps[0];
        let Source::Bytes(bytes) = &src.source else {
            return e;
        };
        // Kept, or not made: bytes made for one answer would be made again
        // for the next (the compressed bytes are smaller than the source's,
        // their head well under 1 KiB).
        if !cache.keeps(key, &e, bytes.len() + 1024)
            || !cache.may_compress(now.instant(), bytes.len())
        {
            return e;
        }
        let level = self.settings.compression.level(c);
        let out = compress::compress(c, level, bytes);
        cache.compressed(c);
        let mut next = Entry::clone(&e);
        if out.len() < bytes.len() {
            let mut rep = Rep {
                len: out.len() as u64,
                source: Source::Bytes(Bytes::from(out)),
                mtime: src.mtime,
                coding: Some(c),
                etag: entity::made_etag(&src.etag, c, level),
                last_modified: src.last_modified,
                head: None,
            };
            self.render_head(&mut rep, true, &e.ctype, &e.rules, now);
            next.made.push(rep);
        } else {
            next.fly.retain(|&x| x != c);
        }
        drop(e);
        cache.put(key, next)
    }

    /// A cached answer: the variant the client accepts, then the rules.
    fn answer_cached(&self, req: &Request<'_>, now: &Now, e: &Entry) -> Reply {
        let rep = match entity::choose(req, &e.reps, &e.made, &e.fly, false) {
            Choice::Rep(r) => r,
            Choice::Make(_) => unreachable!("nothing to make was offered"),
        };
        // The common case, a plain GET or HEAD: the head as rendered when
        // the entry was made, and the shared bytes. Nothing is built.
        if let Some(head) = &rep.head
            && !has_preconditions_or_range(req)
        {
            return Reply::rendered(Status::OK, head.clone(), rep.body(0, rep.len));
        }
        let mut reply = self.answer(req, now, rep, e.vary, e.ctype.clone());
        apply_rules(&mut reply, &e.rules);
        reply
    }

    /// The header fields of every rule that matches the request path or the
    /// file served for it, in order: a later rule's field replaces an
    /// earlier one's (and, when set on a reply, the reply's own), except
    /// `Vary`, whose members add up (`set_rule_fields`).
    fn rule_headers(&self, p: &ReqPath, served: Option<&OsStr>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        if self.settings.rules.is_empty() {
            return out;
        }
        let mut path = OsString::with_capacity(p.rel.len() + 2);
        path.push("/");
        path.push(&p.rel);
        if p.trailing_slash && !p.rel.is_empty() {
            path.push("/");
        }
        let file = served.map(|s| {
            let mut f = OsString::from("/");
            f.push(s);
            f
        });
        for (glob, headers) in &self.settings.rules {
            if glob.is_match(&path) || file.as_ref().is_some_and(|f| glob.is_match(f)) {
                for (name, value) in headers {
                    match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                        Some(slot) if is_vary(name) => slot.1 = merge_list(&slot.1, value),
                        Some(slot) => slot.1 = value.clone(),
                        None => out.push((name.clone(), value.clone())),
                    }
                }
            }
        }
        out
    }
}

/// Set the rules' fields on a reply that is a success or a redirect (like
/// nginx's add_header, they are not added to errors).
fn apply_rules(reply: &mut Reply, rules: &[(String, String)]) {
    if (200..400).contains(&reply.status.0) {
        set_rule_fields(&mut reply.headers, rules);
    }
}

/// The one way the rules' fields go into a header list, cached or not: each
/// replaces the field of its name, except `Vary`, which is merged with the
/// server's (`Vary: Accept-Encoding, Origin`): a rule may add a reason the
/// answer varies, never take the server's away. The config refuses the
/// fields the server owns (`config::RULE_FORBIDDEN_HEADERS`).
fn set_rule_fields(h: &mut Headers, rules: &[(String, String)]) {
    for (name, value) in rules {
        if is_vary(name) {
            h.merge(name.clone(), value);
        } else {
            h.set(name.clone(), value.clone());
        }
    }
}

fn is_vary(name: &str) -> bool {
    name.eq_ignore_ascii_case("vary")
}

/// FNV-1a, 64 bits: a stable hash for tags and boundaries made from the
/// operator's files (not a client's input, so nothing is gained by a keyed
/// hash), the same from either engine and every replica.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Bytes an entry holds besides its bodies, about (its heads, tags and
/// fixed cost), for the admission of a file before it is read.
const HEAD_ESTIMATE: usize = 512;

/// Whether `e` was read from these files in these versions: the source
/// `f` and the siblings `sibs`, each the same file (inode), unchanged since
/// (ctime: `os::Stamp`), of the same size and mtime (its entity tag) and
/// coding. Size and mtime alone miss a new version given the old mtime
/// (`cp -p`, `rsync -t`, tar), whose old bytes would be served on for good.
fn unchanged(e: &Entry, f: &Found, sibs: &[(Encoding, Found)]) -> bool {
    let on_disk = std::iter::once((None, f)).chain(sibs.iter().map(|(c, s)| (Some(*c), s)));
    e.reps.len() == sibs.len() + 1
        && e.files.len() == e.reps.len()
        && e.reps
            .iter()
            .zip(&e.files)
            .zip(on_disk)
            .all(|((r, stamp), (c, s))| {
                r.coding == c && *stamp == s.stamp && r.etag == entity::etag(s.len, s.mtime, c)
            })
}

/// Whether the request carries a field that can make its answer other
/// than the plain 200 (a precondition, or a range).
fn has_preconditions_or_range(req: &Request<'_>) -> bool {
    req.headers.iter().any(|h| {
        let n = h.name.as_bytes();
        n.len() >= 5 && (n[..3].eq_ignore_ascii_case(b"if-") || n.eq_ignore_ascii_case(b"range"))
    })
}

/// A whole file's bytes, if it still has the size and mtime it was opened
/// with once they are read (else it changed under us: not cached).
fn read_whole(f: &Found) -> Option<Bytes> {
    let mut buf = vec![0u8; f.len as usize];
    let mut at = 0;
    while at < buf.len() {
        match f.file.read_at(&mut buf[at..], at as u64) {
            Ok(0) => return None,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let meta = f.file.metadata().ok()?;
    let mtime = meta.modified().ok()?;
    (meta.len() == f.len && mtime == f.mtime).then(|| Bytes::from(buf))
}

/// Errors that mean "nothing there" (or nothing we may show): 404.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
    ) || e.raw_os_error() == Some(libc::ENAMETOOLONG)
}
