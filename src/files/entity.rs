//! A found file -> its response: the variant the client accepts, the
//! validators (ETag, Last-Modified), the preconditions (304/412) and the
//! ranges (206/416). The HTTP rules themselves are pure functions in
//! `http::{accept, cond, range}`; this file feeds them what it found.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::Encoding;
use crate::http::accept::{AcceptEncoding, Q};
use crate::http::cond::{self, Precondition, Validators};
use crate::http::range::{self, ByteRange, Ranges};
use crate::http::reply::Text;
use crate::http::{Body, Headers, Method, Notes, Now, Reply, Request, Segment, Status};
use crate::log::Level;

use super::Site;
use super::os::{Found, Opened};

/// Where a representation's bytes are: an open file (sent the zero-copy
/// way), or bytes held by the cache.
#[derive(Debug, Clone)]
pub enum Source {
    File(Arc<File>),
    Bytes(Bytes),
}

/// One representation of a path: the file itself, or a precompressed
/// variant of it, with its entity tag.
#[derive(Debug, Clone)]
pub struct Rep {
    pub source: Source,
    pub len: u64,
    pub mtime: SystemTime,
    pub coding: Option<Encoding>,
    pub etag: String,
    /// Its Last-Modified (`last_modified`): None before 1970.
    pub last_modified: Option<SystemTime>,
    /// The header fields of its plain 200 answer, rendered ahead of time
    /// (cached representations only).
    pub head: Option<Bytes>,
}

impl Rep {
    /// A representation of the file `rel` (for a variant: of its source),
    /// found at `now`.
    pub fn new(
        source: Source,
        len: u64,
        mtime: SystemTime,
        coding: Option<Encoding>,
        rel: &OsStr,
        now: SystemTime,
    ) -> Rep {
        Rep {
            source,
            len,
            mtime,
            coding,
            etag: etag(len, mtime, coding),
            last_modified: last_modified(rel, coding, len, mtime, now),
            head: None,
        }
    }

    fn file(f: Found, coding: Option<Encoding>, rel: &OsStr, now: SystemTime) -> Rep {
        let source = Source::File(Arc::new(f.file));
        Rep::new(source, f.len, f.mtime, coding, rel, now)
    }

    /// `len` bytes from `offset`, as a body.
    pub fn body(&self, offset: u64, len: u64) -> Body {
        match &self.source {
            Source::File(f) => Body::range(f.clone(), offset, len),
            Source::Bytes(_) if len == 0 => Body::Empty,
            Source::Bytes(b) => Body::Bytes(b.slice(offset as usize..(offset + len) as usize)),
        }
    }

    /// A range as one segment of a multipart body.
    fn segment(&self, r: ByteRange) -> Segment {
        match &self.source {
            Source::File(f) => range::file_part(f)(r),
            Source::Bytes(b) => {
                Segment::Bytes(b.slice(r.start as usize..(r.start + r.len) as usize))
            }
        }
    }
}

/// The representation to send: the identity (`reps[0]`), or the variant
/// the client accepts best (highest q; the order of `reps`, the configured
/// one, breaks ties), unless the client prefers the identity over it.
pub fn pick<'r>(req: &Request<'_>, reps: &'r [Rep]) -> &'r Rep {
    match choose(req, reps, &[], &[], false) {
        Choice::Rep(r) => r,
        Choice::Make(_) => unreachable!("nothing to make was offered"),
    }
}

/// What `choose` chose: a representation there is, or a coding to make
/// on the fly (then `choose` again, with it made or refused).
#[derive(Debug)]
pub enum Choice<'r> {
    Rep(&'r Rep),
    Make(Encoding),
}

/// The one negotiation of a path's variants (RFC 9110 §12.5.3): the
/// identity (`reps[0]`), its precompressed siblings (`reps[1..]`) and the
/// codings it may be compressed with on the fly (`fly`, none of them a
/// sibling's; those already made are in `made`). The variant with the
/// highest q wins, unless the client prefers the identity; on equal q the
/// siblings first, in the configured order, then `fly` in its order: a
/// fresh sibling wins over compressing. A `fly` coding not made yet is
/// offered only when `make` (else it is not a candidate at all).
pub fn choose<'r>(
    req: &Request<'_>,
    reps: &'r [Rep],
    made: &'r [Rep],
    fly: &[Encoding],
    make: bool,
) -> Choice<'r> {
    if reps.len() == 1 && fly.is_empty() {
        return Choice::Rep(&reps[0]);
    }
    let ae = AcceptEncoding::parse(req);
    if !ae.present() {
        return Choice::Rep(&reps[0]);
    }
    // Every candidate's q and the identity's in one walk of the field.
    // The candidates are of distinct codings (config refuses a repeat, and
    // `fly` leaves out the siblings'), so there are at most three.
    const N: usize = 3;
    let mut cands: [Option<Choice<'r>>; N] = [None, None, None];
    let mut tokens = [""; N];
    let mut n = 0;
    let offers = reps[1..]
        .iter()
        .map(|r| r.coding.map(|c| (c, Choice::Rep(r))));
    let flying = fly
        .iter()
        .map(|&c| match made.iter().find(|r| r.coding == Some(c)) {
            Some(r) => Some((c, Choice::Rep(r))),
            None if make => Some((c, Choice::Make(c))),
            None => None,
        });
    for (c, choice) in offers.chain(flying).flatten() {
        if n < N {
            tokens[n] = c.token();
            cands[n] = Some(choice);
            n += 1;
        }
    }
    let mut qs: [Q; N] = [0; N];
    let identity = ae.weigh(&tokens[..n], &mut qs);
    let mut best: Option<(usize, Q)> = None;
    for (i, &q) in qs[..n].iter().enumerate() {
        if q > 0 && best.is_none_or(|b| q > b.1) {
            best = Some((i, q));
        }
    }
    match best {
        Some((i, q)) if q >= identity => cands[i].take().expect("a candidate"),
        _ => Choice::Rep(&reps[0]),
    }
}

/// The strong entity tag of a representation: size and modification time
/// to the nanosecond, and the content coding of a variant. No inode, so
/// identical deploys on several machines give identical tags.
pub fn etag(len: u64, mtime: SystemTime, coding: Option<Encoding>) -> String {
    let (sign, d) = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => ("", d),
        Err(before) => ("m", before.duration()),
    };
    let mut tag = format!("\"{:x}-{sign}{:x}.{:x}", len, d.as_secs(), d.subsec_nanos());
    if let Some(c) = coding {
        tag.push('-');
        tag.push_str(c.token());
    }
    tag.push('"');
    tag
}

/// The strong entity tag of `src` (a tag from `etag`) compressed on the fly
/// with `coding` at `level`: the source's tag, the coding and the level, so
/// it names the same bytes on every worker, restart and replica (same
/// input, level and crate version), and never equals the source's, a
/// sibling's (`-br` alone) or another level's.
pub fn made_etag(src: &str, coding: Encoding, level: u32) -> String {
    let base = src.strip_suffix('"').unwrap_or(src);
    format!("{base}-{}-{level}\"", coding.token())
}

/// The Last-Modified of a representation: its mtime in whole seconds
/// (None before 1970, which an HTTP-date cannot say). An mtime ahead of
/// the clock (a build host's skewed clock, `touch -d tomorrow`) is
/// replaced by when this version of the file was first seen: never later
/// than the Date (RFC 9110 §8.8.2.1), and the same on every request, from
/// the cache or from disk, on every worker and across reloads, so
/// `If-Modified-Since` with it gives 304 (the RFC's "the message
/// origination date" would change every second, and no cache could
/// revalidate). A new version (another size or mtime) is seen anew, so
/// its date is never earlier than the last one's. The ETag is the mtime's,
/// unchanged.
pub fn last_modified(
    rel: &OsStr,
    coding: Option<Encoding>,
    len: u64,
    mtime: SystemTime,
    now: SystemTime,
) -> Option<SystemTime> {
    let lm = cond::http_date(mtime)?;
    if lm <= now {
        return Some(lm);
    }
    let key = (rel.to_owned(), coding.map(Encoding::token), len, mtime);
    Some(FUTURE.first_seen(key, cond::whole_seconds(now)))
}

/// When each version of a file with an mtime ahead of the clock was first
/// seen: (name, coding, size, mtime) -> time. One map for the process
/// (every worker, every generation), touched only for such files, so an
/// ordinary file never takes its lock. Bounded: when full, the versions
/// whose mtime the clock has reached are dropped (their date is their
/// mtime now); if it is still full, all are, and each is seen anew, later:
/// a date that moves forward costs a client one 200, never a wrong 304.
struct FirstSeen(Mutex<HashMap<FutureKey, SystemTime>>);

type FutureKey = (OsString, Option<&'static str>, u64, SystemTime);

static FUTURE: LazyLock<FirstSeen> = LazyLock::new(|| FirstSeen(Mutex::new(HashMap::new())));

impl FirstSeen {
    const MAX: usize = 4096;

    fn first_seen(&self, key: FutureKey, now: SystemTime) -> SystemTime {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&t) = seen.get(&key) {
            return t;
        }
        if seen.len() >= Self::MAX {
            seen.retain(|k, _| k.3 > now);
            if seen.len() >= Self::MAX {
                seen.clear();
            }
        }
        seen.insert(key, now);
        now
    }
}

/// The stale siblings already logged, so each is logged once, not per
/// request: by its path and the two mtimes that made it stale (a sibling
/// that goes stale again after a new deploy is logged again). Shared by
/// the workers; touched only when a sibling is stale. Bounded: past
/// `MAX` siblings, further ones are not logged.
#[derive(Debug, Default)]
pub struct StaleLog(Mutex<HashSet<(OsString, SystemTime, SystemTime)>>);

impl StaleLog {
    const MAX: usize = 4096;

    /// Whether this stale sibling is seen for the first time (then it is
    /// remembered).
    fn first(&self, rel: &OsStr, mtime: SystemTime, src_mtime: SystemTime) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.len() < Self::MAX && seen.insert((rel.to_owned(), mtime, src_mtime))
    }
}

/// `src` and its fresh precompressed siblings `sibs` (`Site::siblings`),
/// in the configured order (`[0]` is `src`).
fn variants(rel: &OsStr, src: Found, sibs: Vec<(Encoding, Found)>, now: SystemTime) -> Vec<Rep> {
    let mut reps = Vec::with_capacity(sibs.len() + 1);
    reps.push(Rep::file(src, None, rel, now));
    for (enc, f) in sibs {
        reps.push(Rep::file(f, Some(enc), rel, now));
    }
    reps
}

/// The multipart boundary of a representation: a hash of its entity tag,
/// so the same file gets the same bytes from either engine and every
/// replica (FNV-1a; the file is the operator's, not a client's, so nothing
/// is gained by making it unpredictable).
fn boundary(etag: &str) -> String {
    format!("{:016x}", super::fnv1a(etag.as_bytes()))
}

impl Site<'_> {
    /// Answer a GET or HEAD for the file `rel` (found as `src`), whose
    /// Content-Type is `ctype`, from disk.
    pub(super) fn entity(
        &self,
        req: &Request<'_>,
        now: &Now,
        src: Found,
        sibs: Vec<(Encoding, Found)>,
        rel: &OsStr,
        ctype: Text,
    ) -> Reply {
        let reps = variants(rel, src, sibs, now.wall);
        let vary = reps.len() > 1;
        self.answer(req, now, pick(req, &reps), vary, ctype)
    }

    /// The reply for one representation: validators, preconditions, ranges.
    /// `vary`: the path has variants, so every answer says it depends on
    /// Accept-Encoding.
    pub(super) fn answer(
        &self,
        req: &Request<'_>,
        now: &Now,
        rep: &Rep,
        vary: bool,
        ctype: Text,
    ) -> Reply {
        let tag = &rep.etag;
        // Never later than Date (RFC 9110 §8.8.2.1), even were the clock
        // to step back past when a file was first seen (`last_modified`).
        let v = Validators {
            etag: tag,
            last_modified: rep.last_modified.map(|lm| lm.min(now.wall)),
        };
        let last_modified = v.last_modified.map(httpdate::fmt_http_date);
        let with_validators = |mut r: Reply| {
            r.headers.push("ETag", tag.clone());
            if let Some(lm) = &last_modified {
                r.headers.push("Last-Modified", lm.clone());
            }
            if vary {
                r.headers.push("Vary", "Accept-Encoding");
            }
            r
        };
        match cond::evaluate(req, &v, true) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                return with_validators(Reply::new(Status::NOT_MODIFIED, Body::Empty));
            }
            Precondition::Failed => {
                let mut r = self.error_page(Status::PRECONDITION_FAILED);
                if vary {
                    r.headers.push("Vary", "Accept-Encoding");
                }
                return r;
            }
        }
        let ranges = match range::field(req) {
            Some(value) if req.method == Method::Get && cond::if_range_holds(req, &v, now.wall) => {
                range::evaluate(value, rep.len, self.settings.max_ranges)
            }
            _ => Ranges::Whole,
        };
        let mut reply = match range::of_coded(ranges, rep.coding.is_some()) {
            Ranges::Whole => {
                let mut r = Reply::new(Status::OK, rep.body(0, rep.len));
                r.headers = self.ok_fields(rep, vary, ctype, last_modified);
                return r;
            }
            Ranges::Partial(rs) if rs.len() == 1 => {
                Reply::new(Status::PARTIAL_CONTENT, rep.body(rs[0].start, rs[0].len))
                    .with_header("Content-Type", ctype.clone())
                    .with_header("Content-Range", rs[0].content_range(rep.len))
            }
            Ranges::Partial(rs) => {
                let boundary = boundary(tag);
                let (body, mtype) =
                    range::multipart(&rs, rep.len, &ctype, &boundary, |r| rep.segment(r));
                Reply::new(Status::PARTIAL_CONTENT, body).with_header("Content-Type", mtype)
            }
            Ranges::Unsatisfiable => {
                let mut r = self
                    .error_page(Status::RANGE_NOT_SATISFIABLE)
                    .with_header("Content-Range", format!("bytes */{}", rep.len));
                if vary {
                    r.headers.push("Vary", "Accept-Encoding");
                }
                return r;
            }
        };
        if let Some(c) = rep.coding {
            reply.headers.push("Content-Encoding", c.token());
        }
        if self.settings.max_ranges > 0 {
            reply.headers.push("Accept-Ranges", "bytes");
        }
        with_validators(reply)
    }

    /// The header fields of a whole representation's 200, in order: what a
    /// cache entry renders once. No Last-Modified when there is none.
    pub(super) fn ok_fields(
        &self,
        rep: &Rep,
        vary: bool,
        ctype: Text,
        last_modified: Option<String>,
    ) -> Headers {
        let mut h = Headers::new();
        h.push("Content-Type", ctype);
        if let Some(c) = rep.coding {
            h.push("Content-Encoding", c.token());
        }
        if self.settings.max_ranges > 0 {
            h.push("Accept-Ranges", "bytes");
        }
        h.push("ETag", rep.etag.clone());
        if let Some(lm) = last_modified {
            h.push("Last-Modified", lm);
        }
        if vary {
            h.push("Vary", "Accept-Encoding");
        }
        h
    }

    /// The fresh siblings of `rel` (opened), in the configured order. A
    /// sibling from an earlier second than its source is stale, from an
    /// earlier deploy, and treated as absent (logged once at info, with
    /// both paths). Compared in whole seconds: the ordinary tools copy a
    /// source's mtime to a sibling at their own precision (Debian's
    /// `brotli -k` to the second, `gzip -k` and `zstd` to the nanosecond),
    /// so a sibling in the same second as its source is its own.
    pub(super) fn siblings(
        &self,
        rel: &OsStr,
        src: &Found,
        now: Instant,
        notes: &mut Notes,
    ) -> Vec<(Encoding, Found)> {
        let encs = &self.settings.precompressed;
        let mut out = Vec::new();
        let name = rel.as_bytes();
        if encs.is_empty() || encs.iter().any(|e| name.ends_with(e.suffix().as_bytes())) {
            return out;
        }
        // Not looked for in a directory known to hold none.
        let dir = name
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(&b""[..], |i| &name[..i]);
        let every = self.settings.cache_revalidate;
        if let Some(d) = self.dirs
            && !d.may_hold(self.root, dir, encs, now, every)
        {
            return out;
        }
        let mut name = OsString::with_capacity(rel.len() + 4);
        for &enc in encs {
            name.clear();
            name.push(rel);
            name.push(enc.suffix());
            let Ok(Opened::File(f)) = self.root.open_beneath(&name) else {
                continue;
            };
            if cond::unix_seconds(f.mtime) >= cond::unix_seconds(src.mtime) {
                out.push((enc, f));
            } else if notes.wants(Level::Info) && self.stale.first(&name, f.mtime, src.mtime) {
                crate::note!(
                    notes,
                    Level::Info,
                    "precompressed {} not served: stale, its mtime ({}) is in an earlier second \
                     than {}'s ({}); recompress it, or touch -r the source",
                    self.root.path_of(&name),
                    crate::log::rfc3339(f.mtime),
                    self.root.path_of(rel),
                    crate::log::rfc3339(src.mtime),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::files::{Responder, Settings};
    use crate::http::parse::with_request;
    use crate::http::{Notes, Respond, Segment};
    use crate::log::Level;
    use std::time::{Duration, Instant};

    fn respond(r: &Responder, raw: &str) -> Reply {
        let now = Now::new(Instant::now(), SystemTime::now());
        with_request(raw, |req| {
            r.respond(req, &now, &mut (), &mut Notes::new(Level::Info))
        })
    }

    /// Range bodies are described as file ranges, never read into a buffer:
    /// each engine then sends them its zero-copy way (sendfile; splice).
    #[test]
    fn range_bodies_are_file_segments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), vec![7u8; 1 << 20]).unwrap();
        let r = Responder::new(dir.path(), Settings::from_config(&Config::default())).unwrap();
        let one = respond(
            &r,
            "GET /a.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-200999\r\n\r\n",
        );
        assert_eq!(one.status, Status::PARTIAL_CONTENT);
        assert!(
            matches!(&one.body, Body::File(f) if f.offset == 1000 && f.len == 200_000),
            "{:?}",
            one.body
        );
        let two = respond(
            &r,
            "GET /a.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-99999, -100000\r\n\r\n",
        );
        let Body::Parts(parts) = &two.body else {
            panic!("{:?}", two.body)
        };
        let files: Vec<(u64, u64)> = parts
            .iter()
            .filter_map(|s| match s {
                Segment::File(f) => Some((f.offset, f.len)),
                Segment::Bytes(b) => {
                    assert!(b.len() < 200, "a part head of {} bytes", b.len());
                    None
                }
            })
            .collect();
        assert_eq!(files, [(0, 100_000), ((1 << 20) - 100_000, 100_000)]);
    }

    /// A future mtime's date is when it was first seen, kept while the
    /// version is the same; a past one is the mtime itself.
    #[test]
    fn future_mtimes_are_dated_when_first_seen() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let later = now + Duration::from_secs(5);
        let future = now + Duration::new(86_400, 7);
        let name = OsStr::new("entity-test/future.txt");
        assert_eq!(last_modified(name, None, 3, future, now), Some(now));
        assert_eq!(last_modified(name, None, 3, future, later), Some(now));
        // Another version, a variant, another name: seen anew.
        assert_eq!(last_modified(name, None, 4, future, later), Some(later));
        let gz = Some(Encoding::Gzip);
        assert_eq!(last_modified(name, gz, 3, future, later), Some(later));
        let other = OsStr::new("entity-test/other.txt");
        assert_eq!(last_modified(other, None, 3, future, later), Some(later));
        // Once the clock has reached it, the mtime (whole seconds).
        let past = now - Duration::new(10, 5);
        let secs = now - Duration::from_secs(11);
        assert_eq!(last_modified(name, None, 3, past, now), Some(secs));
        assert_eq!(
            last_modified(name, None, 3, UNIX_EPOCH - Duration::from_secs(1), now),
            None
        );
    }

    #[test]
    fn etags_depend_on_size_time_and_coding_only() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(etag(590, t, None), "\"24e-6553f100.75bcd15\"");
        assert_eq!(
            etag(590, t, Some(Encoding::Br)),
            "\"24e-6553f100.75bcd15-br\""
        );
        // A nanosecond apart is another version.
        assert_ne!(
            etag(590, t, None),
            etag(590, t + Duration::from_nanos(1), None)
        );
        assert_ne!(etag(590, t, None), etag(591, t, None));
        // Before 1970: still to the nanosecond, and never equal to a time after.
        let old = UNIX_EPOCH - Duration::new(315_619_200, 5);
        assert_eq!(etag(9, old, None), "\"9-m12cff780.5\"");
        assert_ne!(
            etag(9, old, None),
            etag(9, UNIX_EPOCH + Duration::new(315_619_200, 5), None)
        );
    }
}
