//! Drive a plaintext connection as an engine holds one (`tandem::tls::Session`:
//! an HTTP/1.1 `Conn`, or with `http2_cleartext` the preface sniffing and an
//! HTTP/2 `H2Conn`) with an arbitrary script of engine events.
//!
//! Input layout: `[n] control[n] request-bytes...`
//! - `n` (one byte) is the length of the control section; the rest of the
//!   input after it is the request bytes the "client" sends. A seed that is
//!   `\x00` followed by a plain HTTP request is a request with default limits
//!   and an empty script.
//! - control: a limits selector (0 = the unit tests' limits, otherwise
//!   config-valid limits and timeouts drawn from the next bytes), a responder
//!   selector, a mode (0: HTTP/1.1; 1: `http2_cleartext` on, the request bytes
//!   as they are; 2: HTTP/2, the client's frames made from the request bytes
//!   by `h2::client_stream`, what the server wrote checked by
//!   `h2::check_output`), then script ops until the control bytes run out
//!   (see `Op`).
//!
//! The responder is the file responder, except that a target with `?parts`
//! in it gets its body cut into several segments (`Body::Parts`: bytes, file
//! ranges, an empty segment), so responses of more than two segments go
//! through the Conn too.
//!
//! Part 1, the script: events as an engine would deliver them (input chunks
//! while `wants_input`, writes of any prefix of the offered segments reported
//! with `handle_sent(n)`, n never above the offer, EOF, errors, time passing
//! and timeouts, graceful shutdown, `handle_shutdown` when asked, unsent
//! bytes at the idle deadline), then an epilogue that sends the rest of the
//! input, acknowledges everything, delivers EOF and fires deadlines. A write
//! may be asynchronous (`Write`): the engine clones the segments it covers,
//! other events go on (input, EOF, timeouts, drain, errors), and the bytes
//! are reported later, in one or several `handle_sent`, from the clones.
//! Invariants after every step:
//! - no panic; `poll_transmit` is pure (twice gives the same answer);
//! - `is_closed()` iff `poll_transmit` is `Close`, and once closed it stays so;
//! - an open connection always has a deadline (`poll_timeout` is `Some`);
//! - `Send` lists at least one segment and never an empty one; file ranges
//!   lie inside their file;
//! - after `handle_sent(n)` with n short of the offer, the next offer is the
//!   rest of the same one: the same segments, the first n bytes dropped, the
//!   bytes left unchanged (bytes acknowledged never exceed bytes offered);
//! - while a write is in flight, the offer stays the segments the engine
//!   cloned (advanced by what was reported) until the Conn closes; the clones'
//!   bytes do not change under the engine whatever the Conn is told meanwhile;
//! - nothing outside the served root is ever offered (a symlink points out);
//! - after EOF with everything acknowledged the connection ends up closed.
//!
//! Part 2, whole versus split (on unless `TANDEM_FUZZ_SPLIT_CHECK=0`): the
//! request bytes fed in one `handle_input` versus in the chunks the script's
//! `Feed` ops cut, at a fixed time, acknowledging everything after each chunk,
//! then EOF, must give byte-identical output (all bytes of all segments, with
//! markers where `Shutdown` and `Close` came), the same access log (except
//! the request field of rejected requests, see `normalize_log`) and the same
//! error-log notes. A third run feeds each chunk while the response before it
//! is still being written (the engine holds clones of its segments and
//! reports them after the input): the same output again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::http::{Limits, Segment, Transmit};
use tandem::tls::Session;

mod common;

use common::*;

struct Case {
    limits: Limits,
    responder: &'static Fuzz,
    ops: Vec<Op>,
    req: Vec<u8>,
    /// An HTTP/2 case: the largest frame its client allows.
    h2: Option<u32>,
}

fn decode(data: &[u8]) -> Option<Case> {
    let Input {
        mut u,
        req,
        mut limits,
        responder,
    } = input(data)?;
    // 0: HTTP/1.1; 1: http2_cleartext on, the bytes as they are (HTTP/1.1
    // through the preface sniffing); 2: HTTP/2, the client's frames made
    // from the bytes (`h2::client_stream`).
    let mode = u.arbitrary::<u8>().unwrap_or(0) % 3;
    limits.h2.cleartext = mode > 0;
    let (req, h2) = match mode {
        2 => {
            let (stream, max_frame) = h2::client_stream(req);
            (stream, Some(max_frame))
        }
        _ => (req.to_vec(), None),
    };
    Some(Case {
        limits,
        responder,
        ops: ops(&mut u),
        req,
        h2,
    })
}

/// The script, then for HTTP/2 the check of what the server wrote.
fn run_case(case: &Case) {
    let mut env = Env::new(case.responder, case.limits.clone());
    let c = env.conn();
    let mut peer = Plain {
        req: &case.req,
        pos: 0,
    };
    let wire = run_script(&mut env, c, &case.ops, &mut peer);
    if let Some(max_frame) = case.h2 {
        h2::check_output(&wire, max_frame);
    }
}

// ---- whole versus split ----

#[derive(Debug, PartialEq, Eq)]
enum Rec {
    Data(Vec<u8>),
    Shutdown,
    Close,
    /// The access log the connection wrote (after the output).
    Log(Vec<u8>),
    /// The error-log notes (last).
    Notes(Vec<String>),
}

fn push_data(out: &mut Vec<Rec>, b: &[u8]) {
    if let Some(Rec::Data(d)) = out.last_mut() {
        d.extend_from_slice(b);
    } else {
        out.push(Rec::Data(b.to_vec()));
    }
}

/// Record Shutdown (answering it) until something else is offered, and
/// return that.
fn answer_shutdown(c: &mut Session, out: &mut Vec<Rec>) -> Offer {
    loop {
        match c.poll_transmit() {
            Transmit::Shutdown => {
                out.push(Rec::Shutdown);
                c.handle_shutdown();
            }
            t => return Offer::of(&t),
        }
    }
}

/// Acknowledge everything, recording what went out.
fn drain_record(env: &mut Env, c: &mut Session, out: &mut Vec<Rec>) {
    for _ in 0..100_000 {
        match answer_shutdown(c, out) {
            Offer::Idle => return,
            Offer::Close => {
                if out.last() != Some(&Rec::Close) {
                    out.push(Rec::Close);
                }
                return;
            }
            _ => {
                let Transmit::Send(segs) = c.poll_transmit() else {
                    unreachable!()
                };
                let mut segs = segs.to_vec();
                let n: u64 = segs.iter().map(Segment::len).sum();
                let mut b = Vec::new();
                take_bytes(&mut segs, n, &mut b);
                push_data(out, &b);
                c.handle_sent(&mut env.ctx(), n as usize);
            }
        }
    }
    panic!("drain does not end");
}

/// The output for the request cut into `chunks`. With `overlap`, each chunk
/// arrives while the response offered before it is being written: the
/// segments are cloned, the chunk is fed, then the clones are sent and
/// reported.
fn record(case: &Case, chunks: &[&[u8]], overlap: bool) -> Vec<Rec> {
    let mut env = Env::new(case.responder, case.limits.clone());
    let mut c = env.conn();
    let mut out = Vec::new();
    for chunk in chunks {
        let held = match answer_shutdown(&mut c, &mut out) {
            Offer::Send(_) if overlap => match c.poll_transmit() {
                Transmit::Send(segs) => Some(segs.to_vec()),
                _ => unreachable!(),
            },
            _ => None,
        };
        c.handle_input(&mut env.ctx(), chunk);
        match held {
            Some(mut segs) => {
                let n: u64 = segs.iter().map(Segment::len).sum();
                let mut b = Vec::new();
                take_bytes(&mut segs, n, &mut b);
                push_data(&mut out, &b);
                c.handle_sent(&mut env.ctx(), n as usize);
            }
            None if !overlap => drain_record(&mut env, &mut c, &mut out),
            None => {}
        }
    }
    drain_record(&mut env, &mut c, &mut out);
    c.handle_eof(&mut env.ctx());
    drain_record(&mut env, &mut c, &mut out);
    out.push(Rec::Log(normalize_log(&env.log)));
    let notes = env.notes.take().map(|(l, s)| format!("{l:?}: {s}"));
    out.push(Rec::Notes(notes.collect()));
    out
}

/// The access log with the request field of rejected requests (400, 414,
/// 431, 505) blanked: a request rejected on its first bytes is logged with the
/// bytes that had arrived by then, which does depend on the split (a known,
/// cosmetic difference, not checked).
fn normalize_log(log: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(log.len());
    for line in log.split_inclusive(|&b| b == b'\n') {
        let open = line.windows(3).position(|w| w == b"] \"").map(|i| i + 3);
        let close = open.and_then(|o| {
            line[o..]
                .windows(2)
                .position(|w| w == b"\" ")
                .map(|i| o + i)
        });
        match (open, close) {
            (Some(o), Some(c))
                if [&b"400 "[..], b"414 ", b"431 ", b"505 "]
                    .iter()
                    .any(|st| line[c + 2..].starts_with(st)) =>
            {
                out.extend_from_slice(&line[..o]);
                out.extend_from_slice(b"(rejected)");
                out.extend_from_slice(&line[c..]);
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}

fn show(recs: &[Rec]) -> String {
    let mut s = String::new();
    for r in recs {
        match r {
            Rec::Data(d) => s.push_str(&d.escape_ascii().to_string()),
            Rec::Shutdown => s.push_str("<SHUTDOWN>"),
            Rec::Close => s.push_str("<CLOSE>"),
            Rec::Log(l) => {
                s.push_str("\n<ACCESS LOG>\n");
                s.push_str(&l.escape_ascii().to_string());
            }
            Rec::Notes(n) => {
                s.push_str("\n<NOTES>\n");
                s.push_str(&n.join("\n"));
            }
        }
    }
    s
}

fn whole_vs_split(case: &Case) {
    // HTTP/2 answers may be framed differently for different cuts (frames
    // of two streams interleave as their requests came); its checks are
    // the script's and `h2::check_output`.
    if case.h2.is_some() || case.req.starts_with(h2::PREFACE) {
        return;
    }
    // The chunks the script's Feed ops cut, the rest as the last one.
    let mut chunks = Vec::new();
    let mut pos = 0;
    for op in &case.ops {
        if let Op::Feed(len) = *op {
            let end = (pos + len as usize).min(case.req.len());
            if end > pos {
                chunks.push(&case.req[pos..end]);
            }
            pos = end;
        }
    }
    if pos < case.req.len() {
        chunks.push(&case.req[pos..]);
    }
    if chunks.len() < 2 {
        return;
    }
    let whole = record(case, &[&case.req], false);
    let cuts = || -> Vec<usize> {
        let mut v: Vec<usize> = chunks
            .iter()
            .scan(0, |p, c| {
                *p += c.len();
                Some(*p)
            })
            .collect();
        v.pop();
        v
    };
    for overlap in [false, true] {
        let split = record(case, &chunks, overlap);
        if whole != split {
            panic!(
                "whole vs split{} differ\ninput: \"{}\"\nsplit after bytes {:?}\nwhole: \"{}\"\nsplit: \"{}\"",
                if overlap {
                    " (each chunk fed while a write is in flight)"
                } else {
                    ""
                },
                case.req.escape_ascii(),
                cuts(),
                show(&whole),
                show(&split)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(case) = decode(data) else { return };
    CHECKED.with_borrow_mut(Vec::clear);
    if debug() {
        eprintln!(
            "limits: {:?}\nops: {:?}\nrequest: \"{}\"\nwhole output: \"{}\"",
            case.limits,
            case.ops,
            case.req.escape_ascii(),
            show(&record(&case, &[&case.req], false))
        );
    }
    run_case(&case);
    if split_check() {
        whole_vs_split(&case);
    }
});
