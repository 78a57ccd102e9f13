//! The access-log line of a request: begun when the request is parsed,
//! finished when its response is over. Each piece is escaped as it is copied.

use std::fmt::Write as _;

use super::*;

impl Conn {
    /// Begin the access-log line of this request: everything but the status,
    /// byte count and duration, which come when the response is over. Each
    /// piece of the request is escaped as it is copied.
    pub(super) fn start_log(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: LogRequest<'_>,
        referer: Option<&[u8]>,
        ua: Option<&[u8]>,
    ) {
        if ctx.log.is_none() {
            return;
        }
        self.log_start = ctx.now.instant;
        let peer = self.peer;
        let b = &mut **self.bufs.get_or_insert_with(|| ctx.pool.take());
        b.log_pre.clear();
        b.log_post.clear();
        match ctx.limits.log_format {
            LogFormat::Combined => {
                let _ = write!(b.log_pre, "{} - - [{}] \"", peer.ip(), ctx.now.log_time);
                match request {
                    LogRequest::Parsed {
                        method,
                        target,
                        protocol,
                    } => {
                        escape_into(&mut b.log_pre, method);
                        b.log_pre.push(' ');
                        escape_into(&mut b.log_pre, target);
                        b.log_pre.push(' ');
                        b.log_pre.push_str(protocol);
                    }
                    LogRequest::Raw(line) => escape_into(&mut b.log_pre, line),
                }
                b.log_pre.push_str("\" ");
                b.log_post.push_str(" \"");
                escape_into(&mut b.log_post, referer.unwrap_or(b"-"));
                b.log_post.push_str("\" \"");
                escape_into(&mut b.log_post, ua.unwrap_or(b"-"));
                b.log_post.push_str("\"\n");
            }
            LogFormat::Json => {
                let (method, target, protocol) = request.split();
                let _ = write!(
                    b.log_pre,
                    "{{\"time\":\"{}\",\"remote\":\"{}\",\"method\":\"",
                    ctx.now.log_time_rfc3339,
                    peer.ip()
                );
                json_escape_into(&mut b.log_pre, method);
                b.log_pre.push_str("\",\"target\":\"");
                json_escape_into(&mut b.log_pre, target);
                b.log_pre.push_str("\",\"protocol\":\"");
                json_escape_into(&mut b.log_pre, protocol);
                b.log_pre.push_str("\",\"status\":");
                b.log_post.push_str("\"referer\":");
                json_opt_into(&mut b.log_post, referer);
                b.log_post.push_str(",\"user_agent\":");
                json_opt_into(&mut b.log_post, ua);
                b.log_post.push_str("}\n");
            }
        }
    }

    /// A response is over (whole, or cut short with `body_sent` body bytes
    /// out): count it, and finish its access-log line. An interim (1xx)
    /// response is not the request's answer: neither counted nor logged.
    pub(super) fn log_response(&mut self, ctx: &mut Ctx<'_>, out: &Out, body_sent: u64) {
        if out.status < 200 {
            return;
        }
        ctx.stats
            .response(out.status, out.sent.min(out.head_len + out.body_len));
        if let Some(log) = ctx.log.as_deref_mut() {
            let (pre, post) = match self.bufs.as_deref() {
                Some(b) => (b.log_pre.as_bytes(), b.log_post.as_bytes()),
                None => (&b""[..], &b""[..]),
            };
            log.extend_from_slice(pre);
            match ctx.limits.log_format {
                LogFormat::Combined => {
                    let _ = write!(Writer(log), "{} {}", out.status, body_sent);
                }
                LogFormat::Json => {
                    let d = ctx.now.instant.saturating_duration_since(self.log_start);
                    let _ = write!(
                        Writer(log),
                        "{},\"bytes\":{},\"duration\":{}.{:06},",
                        out.status,
                        body_sent,
                        d.as_secs(),
                        d.subsec_micros()
                    );
                }
            }
            log.extend_from_slice(post);
        }
    }
}

/// The request as the access log shows it.
#[derive(Debug, Clone, Copy)]
pub(super) enum LogRequest<'a> {
    /// A parsed request line.
    Parsed {
        method: &'a [u8],
        target: &'a [u8],
        protocol: &'static str,
    },
    /// The first line of input that could not be parsed, as it came.
    Raw(&'a [u8]),
}

impl<'a> LogRequest<'a> {
    pub(super) fn of(req: &Request<'a>) -> LogRequest<'a> {
        LogRequest::Parsed {
            method: req.method_str.as_bytes(),
            target: req.target.as_bytes(),
            protocol: if req.minor == 0 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
        }
    }

    /// Method, target and protocol; a raw line is split at its first two
    /// spaces (missing pieces are empty).
    fn split(self) -> (&'a [u8], &'a [u8], &'a [u8]) {
        match self {
            LogRequest::Parsed {
                method,
                target,
                protocol,
            } => (method, target, protocol.as_bytes()),
            LogRequest::Raw(line) => {
                let mut it = line.splitn(3, |&b| b == b' ');
                (
                    it.next().unwrap_or(b""),
                    it.next().unwrap_or(b""),
                    it.next().unwrap_or(b""),
                )
            }
        }
    }
}

/// Log-safe copy: quotes, backslashes and non-printables as `\xHH` (as nginx does).
fn escape_into(s: &mut String, b: &[u8]) {
    for &c in b {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            s.push_str("\\x");
            push_hex(s, c);
        } else {
            s.push(c as char);
        }
    }
}

/// `c` as two upper-case hex digits.
fn push_hex(s: &mut String, c: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    s.push(HEX[(c >> 4) as usize] as char);
    s.push(HEX[(c & 15) as usize] as char);
}

/// The inside of a JSON string for bytes that may be anything. Valid UTF-8
/// is kept as text: `"` becomes `\"`, control characters (and DEL)
/// `\u00XX`. Each byte that is not part of valid UTF-8, and the backslash
/// itself, becomes the four characters `\xHH` (written `\\xHH` in the
/// JSON), as in the combined log: so the decoded string maps back to the
/// exact bytes (every `\` in it starts an `\xHH`), and the line is always
/// valid JSON.
pub(super) fn json_escape_into(s: &mut String, b: &[u8]) {
    for chunk in b.utf8_chunks() {
        let valid = chunk.valid();
        let mut run = 0;
        for (i, c) in valid.bytes().enumerate() {
            if c >= 0x20 && c != b'"' && c != b'\\' && c != 0x7f {
                continue;
            }
            s.push_str(&valid[run..i]);
            run = i + 1;
            match c {
                b'"' => s.push_str("\\\""),
                b'\\' => s.push_str("\\\\x5C"),
                _ => {
                    s.push_str("\\u00");
                    push_hex(s, c);
                }
            }
        }
        s.push_str(&valid[run..]);
        for &c in chunk.invalid() {
            s.push_str("\\\\x");
            push_hex(s, c);
        }
    }
}

/// A JSON string for a header that may be absent (`null`).
fn json_opt_into(s: &mut String, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            s.push('"');
            json_escape_into(s, v);
            s.push('"');
        }
        None => s.push_str("null"),
    }
}

/// `fmt::Write` into a byte vector.
struct Writer<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
