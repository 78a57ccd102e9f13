//! Fuzz `tandem::http::parse::parse_head` with arbitrary bytes and small limits.
//!
//! Input layout: `[mode][h][t][c0][c1] request-bytes...`
//! - `mode & 0x80 == 0`: limits a config could have (max_header_size 256..=2296,
//!   16 <= max_target_size <= max_header_size, as `Config::validate` allows).
//! - `mode & 0x80 != 0`: raw limits, anything in 0..=2040 / 0..=1020; only the
//!   no-panic and bounds checks apply there.
//! - `c0 c1`: a little-endian u16 that picks a cut point for the prefix check.
//!
//! Always checked: no panic; `Complete(head, n)` has `0 < n <= len`, ends in
//! `\n`, a target within `max_target_size`, and parsing exactly `buf[..n]`
//! gives the same head (header fields included); its header fields all lie
//! inside `buf[..n]`, and `header(name)` / `header_str(name)` find the first
//! field of that name, trimmed; a rejection has one of the statuses
//! parse_head uses.
//!
//! Split check (config-valid limits; on unless `TANDEM_FUZZ_SPLIT_CHECK=0`):
//! the verdict does not depend on how the bytes arrive. A prefix of the input
//! (at the fuzzer's cut, and one byte short of the head or the input) is
//! either `Partial` or gets the same verdict as the whole: never a rejection
//! for a head that completes, never a different status.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tandem::http::ParseLimits;
use tandem::http::parse::{MAX_HEADERS, Parsed, Reject, Request, header_slots, parse_head};

fn split_check() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TANDEM_FUZZ_SPLIT_CHECK").map_or(true, |v| v != "0"))
}

/// The verdict without the borrowed head: Partial, Complete(len) or the status.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Partial,
    Complete(usize),
    Reject(u16),
}

fn verdict(r: &Result<Parsed<'_>, Reject>) -> Verdict {
    match r {
        Ok(Parsed::Partial) => Verdict::Partial,
        Ok(Parsed::Complete(_, n)) => Verdict::Complete(*n),
        Err(r) => Verdict::Reject(r.status.0),
    }
}

/// `parse_head` with a fresh header slice, as `Conn` calls it.
fn parse_with<R>(
    buf: &[u8],
    lim: &ParseLimits,
    f: impl FnOnce(&Result<Parsed<'_>, Reject>) -> R,
) -> R {
    let mut headers = header_slots();
    f(&parse_head(buf, &mut headers, lim))
}

/// Without leading and trailing spaces and tabs (optional whitespace).
fn trim_sp_tab(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// What the field accessors must say about a parsed head of `buf[..n]`.
fn check_headers(head: &Request<'_>, buf: &[u8], n: usize) {
    let inside = |s: &[u8]| {
        let (lo, hi) = (buf.as_ptr() as usize, buf.as_ptr() as usize + n);
        let p = s.as_ptr() as usize;
        s.is_empty() || (p >= lo && p + s.len() <= hi)
    };
    assert!(head.headers.len() <= MAX_HEADERS);
    assert!(inside(head.target.as_bytes()), "target outside the head");
    for h in head.headers {
        assert!(
            inside(h.name.as_bytes()) && inside(h.value),
            "header {:?} outside the head",
            h.name
        );
        let first = head
            .headers
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(h.name))
            .unwrap();
        let want = trim_sp_tab(first.value);
        let got = head.header(&h.name.to_ascii_uppercase());
        assert_eq!(got, Some(want), "header({:?})", h.name);
        assert_eq!(
            head.header_str(h.name),
            std::str::from_utf8(want).ok(),
            "header_str({:?})",
            h.name
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let (mode, h, t) = (data[0], data[1] as usize, data[2] as usize);
    let cut = u16::from_le_bytes([data[3], data[4]]) as usize;
    let buf = &data[5..];
    let raw = mode & 0x80 != 0;
    let lim = if raw {
        ParseLimits {
            max_header_size: h * 8,
            max_target_size: t * 4,
        }
    } else {
        let max_header_size = 256 + h * 8;
        ParseLimits {
            max_header_size,
            max_target_size: (16 + t * 8).min(max_header_size),
        }
    };

    let mut headers = header_slots();
    let res = parse_head(buf, &mut headers, &lim);
    let whole = verdict(&res);
    let summary = format!("{res:?}");
    let mut decided_at = buf.len();
    match res {
        Ok(Parsed::Complete(head, n)) => {
            assert!(
                n > 0 && n <= buf.len(),
                "Complete({n}) of {} bytes",
                buf.len()
            );
            assert_eq!(buf[n - 1], b'\n', "a head ends with a newline");
            assert!(
                head.target.len() <= lim.max_target_size,
                "target of {} bytes accepted with max_target_size {}",
                head.target.len(),
                lim.max_target_size
            );
            check_headers(&head, buf, n);
            // The head does not depend on the bytes that follow it.
            let again = parse_with(&buf[..n], &lim, |r| format!("{r:?}"));
            assert_eq!(again, summary, "buf[..n] parses differently");
            decided_at = n;
        }
        Ok(Parsed::Partial) => {}
        Err(r) => {
            assert!(
                matches!(r.status.0, 400 | 413 | 414 | 431 | 501 | 505),
                "unexpected reject status {}",
                r.status.0
            );
        }
    }

    if raw || !split_check() || decided_at == 0 {
        return;
    }
    for i in [cut % decided_at, decided_at - 1] {
        let p = parse_with(&buf[..i], &lim, verdict);
        let ok = match (&whole, &p) {
            (_, Verdict::Partial) => true,
            (Verdict::Reject(a), Verdict::Reject(b)) => a == b,
            _ => false,
        };
        assert!(
            ok,
            "verdict depends on arrival: the first {i} of {} bytes give {p:?}, all of them {whole:?}\ninput: \"{}\"",
            buf.len(),
            buf.escape_ascii()
        );
    }
});
