//! RFC 9110 semantics under load: ranges, multipart/byteranges, variants,
//! 304s and 412s with dozens of connections busy (keep-alive, pipelined,
//! slow readers), every answer checked byte for byte, on both engines.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::load::*;
use common::*;
use mailparse::MailHeaderMap;

// ---------------------------------------------------------------------------
// Under load: the same answers with dozens of connections busy
// ---------------------------------------------------------------------------

/// 206 with exactly `want` as the body and `Content-Range` for it.
fn range_target(path: &str, fields: &str, start: usize, want: Vec<u8>, total: usize) -> Target {
    let cr = format!("bytes {start}-{}/{total}", start + want.len() - 1);
    Target::custom(path, false, move |r| {
        if r.status != 206 {
            return Err(format!("status {} (want 206)", r.status));
        }
        if r.header("content-range") != Some(cr.as_str()) {
            return Err(format!(
                "Content-Range {:?} (want {cr})",
                r.header("content-range")
            ));
        }
        if r.content_length != want.len() || !want.starts_with(r.body) {
            return Err(format!(
                "body of {} bytes is not the range",
                r.content_length
            ));
        }
        Ok(())
    })
    .with_fields(fields)
}

/// A multipart/byteranges answer whose parts are exactly `parts` (start, bytes).
fn multipart_target(
    path: &str,
    fields: &str,
    parts: Vec<(usize, Vec<u8>)>,
    total: usize,
) -> Target {
    Target::custom(path, false, move |r| {
        if r.status != 206 {
            return Err(format!("status {} (want 206)", r.status));
        }
        if !r.complete {
            return Ok(());
        }
        let ct = r.header("content-type").unwrap_or_default();
        let mut raw = format!("Content-Type: {ct}\r\n\r\n").into_bytes();
        raw.extend_from_slice(r.body);
        let mail = mailparse::parse_mail(&raw).map_err(|e| format!("MIME: {e}"))?;
        if mail.subparts.len() != parts.len() {
            return Err(format!(
                "{} parts (want {})",
                mail.subparts.len(),
                parts.len()
            ));
        }
        for (p, (start, bytes)) in mail.subparts.iter().zip(&parts) {
            let cr = format!("bytes {start}-{}/{total}", start + bytes.len() - 1);
            if p.headers.get_first_value("Content-Range").as_deref() != Some(cr.as_str()) {
                return Err(format!("part Content-Range (want {cr})"));
            }
            if p.get_body_raw().map_err(|e| e.to_string())? != *bytes {
                return Err(format!("part {cr}: wrong bytes"));
            }
        }
        Ok(())
    })
    .with_fields(fields)
}

/// Exactly this status, no body.
fn bodiless_target(path: &str, fields: &str, status: u16) -> Target {
    Target::custom(path, false, move |r| {
        if r.status != status || r.content_length != 0 {
            return Err(format!(
                "status {} with {} bytes (want {status}, none)",
                r.status, r.content_length
            ));
        }
        Ok(())
    })
    .with_fields(fields)
}

engine_tests! {
    /// 48 connections at once, keep-alive, pipelined and slow readers, over
    /// single and multipart ranges of a 4 MiB file, a gzip variant (whole and
    /// ranged), 304s and 412s: every answer checked byte for byte.
    fn rfc9110_14_ranges_variants_and_304s_under_load(e) {
        let site = Site::new();
        site.write("r.bin", &pseudo_random(1000, 0x10ad_0003));
        let big = pseudo_random(4 << 20, 0x10ad_0001);
        site.write("big.bin", &big);
        let css = b"body { color: black } /* load */".repeat(40);
        site.write("v.css", &css);
        let gz = pseudo_random(700, 0x10ad_0002);
        site.write("v.css.gz", &gz);
        let srv = start_or_skip!(e, "workers = 2\naccess_log = \"off\"", &site.root);
        let tag = get(srv.addr(), "/big.bin").header("etag").expect("ETag").to_string();
        let n = big.len();
        let mid = 1_500_000;
        let slice = |a: usize, len: usize| big[a..a + len].to_vec();
        let targets = vec![
            range_target("/big.bin", "Range: bytes=1500000-1699999\r\n", mid, slice(mid, 200_000), n),
            range_target("/big.bin", "Range: bytes=-100\r\n", n - 100, slice(n - 100, 100), n),
            range_target(
                "/big.bin",
                &format!("Range: bytes=7-70006\r\nIf-Range: {tag}\r\n"),
                7,
                slice(7, 70_000),
                n,
            ),
            multipart_target(
                "/big.bin",
                "Range: bytes=0-99, 3000000-3065535, -10\r\n",
                vec![(0, slice(0, 100)), (3_000_000, slice(3_000_000, 65_536)), (n - 10, slice(n - 10, 10))],
                n,
            ),
            bodiless_target("/big.bin", &format!("If-None-Match: \"x\", {tag}\r\n"), 304),
            Target::exact("/v.css", Arc::new(gz.clone())).with_fields("Accept-Encoding: gzip, br;q=0\r\n"),
            Target::exact("/v.css", Arc::new(css.clone())),
            range_target("/v.css", "Accept-Encoding: gzip\r\nRange: bytes=100-199\r\n", 100, gz[100..200].to_vec(), gz.len()),
            Target::custom("/r.bin", false, |r| match r.status {
                412 => Ok(()),
                s => Err(format!("status {s} (want 412)")),
            })
            .with_fields("If-Match: \"nope\"\r\n"),
        ];
        let slow = Mode::SlowReader { chunk: 8 * 1024, pause: Duration::from_millis(1), rcvbuf: 16 * 1024 };
        let mut cfg = LoadConfig::new(
            srv.addr(),
            vec![
                Group::new("keepalive", 32, Mode::KeepAlive, targets.clone()),
                Group::new("pipelined", 12, Mode::Pipeline(6), targets.clone()),
                Group::new("slow", 4, slow, targets[..4].to_vec()),
            ],
        );
        cfg.duration = Duration::from_secs(4);
        cfg.max_requests = 60_000;
        let s = Load::start(cfg).join(Duration::from_secs(30));
        note(&format!("engine {e}: {}", s.line()));
        assert!(s.complete >= 2_000, "the load did not run: {}", s.line());
        assert_eq!(s.failed(), 0, "{}", s.failures_line());
    }
}
