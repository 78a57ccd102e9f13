//! Content negotiation over `Accept-Encoding` (RFC 9110 §12.5.3): pure.

use super::parse::Request;

/// Quality values in thousandths: 1000 is `q=1`, 0 is "not acceptable".
pub type Q = u16;

/// The request's `Accept-Encoding`, all of its lines, read where asked
/// (no list is built: a query walks the field again, which costs less than
/// an allocation for the handful of members real clients send).
#[derive(Debug, Clone, Copy)]
pub struct AcceptEncoding<'r, 'a> {
    req: &'r Request<'a>,
    /// The field is present at all.
    present: bool,
}

/// What a listed identity gets when nothing names it: acceptable, but
/// below every coding the client listed with a q above 0.
const IMPLICIT_IDENTITY: Q = 1;

impl<'r, 'a> AcceptEncoding<'r, 'a> {
    pub fn parse(req: &'r Request<'a>) -> AcceptEncoding<'r, 'a> {
        let present = req.headers_all("accept-encoding").next().is_some();
        AcceptEncoding { req, present }
    }

    /// Every (coding, q) member, in order.
    fn members(&self) -> impl Iterator<Item = (&'a [u8], Q)> + '_ {
        self.req
            .headers_all("accept-encoding")
            .flat_map(|value| value.split(|&b| b == b','))
            .filter_map(|member| {
                let mut params = member.split(|&b| b == b';');
                let coding = params.next().unwrap_or_default().trim_ascii();
                if coding.is_empty() {
                    return None;
                }
                let mut q = 1000;
                for p in params {
                    let p = p.trim_ascii();
                    if let Some(v) = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")) {
                        // An unreadable q: refuse the member, the safe reading.
                        q = qvalue(v.trim_ascii()).unwrap_or(0);
                    }
                }
                Some((coding, q))
            })
    }

    /// How acceptable a content coding (`br`, `zstd`, `gzip`) is. Without
    /// the field, none is: a client that says nothing gets the file as it
    /// is (the RFC allows any coding then, but curl, wrk and scripts that
    /// say nothing do not decode one).
    pub fn coding(&self, token: &str) -> Q {
        self.find(|c| is_coding(c, token)).unwrap_or(0)
    }

    /// How acceptable the identity (no coding) is: as listed, else as `*`
    /// says, else acceptable at the lowest preference.
    pub fn identity(&self) -> Q {
        if !self.present {
            return 1000;
        }
        self.find(|c| c.eq_ignore_ascii_case(b"identity"))
            .unwrap_or(IMPLICIT_IDENTITY)
    }

    /// The field is present at all (without it, no coding is acceptable).
    pub fn present(&self) -> bool {
        self.present
    }

    /// `coding` for each of `tokens` into `out` (as many as both hold), and
    /// `identity`, in one walk of the field instead of one per question.
    pub fn weigh(&self, tokens: &[&str], out: &mut [Q]) -> Q {
        let n = tokens.len().min(out.len()).min(32);
        out[..n].fill(0);
        if !self.present {
            return 1000;
        }
        let mut found = 0u32;
        let (mut ident, mut star) = (None, None);
        for (c, q) in self.members() {
            for (i, t) in tokens[..n].iter().enumerate() {
                if found & (1 << i) == 0 && is_coding(c, t) {
                    out[i] = q;
                    found |= 1 << i;
                }
            }
            if ident.is_none() && c.eq_ignore_ascii_case(b"identity") {
                ident = Some(q);
            }
            if star.is_none() && c == b"*" {
                star = Some(q);
            }
        }
        if let Some(s) = star {
            for (i, q) in out[..n].iter_mut().enumerate() {
                if found & (1 << i) == 0 {
                    *q = s;
                }
            }
        }
        ident.or(star).unwrap_or(IMPLICIT_IDENTITY)
    }

    /// The q of the first member whose coding satisfies `is`, else of the
    /// first `*`: an explicit member wins over `*`. One walk of the field.
    fn find(&self, is: impl Fn(&[u8]) -> bool) -> Option<Q> {
        let mut star = None;
        for (c, q) in self.members() {
            if is(c) {
                return Some(q);
            }
            if c == b"*" && star.is_none() {
                star = Some(q);
            }
        }
        star
    }
}

/// A member's coding names `token` (`x-gzip` is `gzip`, RFC 9110 §8.4.1.3).
fn is_coding(c: &[u8], token: &str) -> bool {
    c.eq_ignore_ascii_case(token.as_bytes())
        || (token == "gzip" && c.eq_ignore_ascii_case(b"x-gzip"))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn qvalue(v: &[u8]) -> Option<Q> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: Q = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| Q::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<R>(fields: &str, f: impl FnOnce(&AcceptEncoding<'_, '_>) -> R) -> R {
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        crate::http::parse::with_request(&raw, |req| f(&AcceptEncoding::parse(req)))
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.001"), Some(1));
        assert_eq!(qvalue(b"0"), Some(0));
        for bad in [&b"1.5"[..], b"2", b"0.0001", b"", b".5", b"0.x"] {
            assert_eq!(qvalue(bad), None, "{bad:?}");
        }
    }

    /// One walk gives what the questions one by one give.
    #[test]
    fn weigh_agrees_with_each_question() {
        let fields = [
            "",
            "Accept-Encoding: gzip, br;q=0.8\r\n",
            "Accept-Encoding: GZIP;Q=0.5\r\nAccept-Encoding: zstd\r\n",
            "Accept-Encoding: x-gzip\r\n",
            "Accept-Encoding: x-gzip;q=0.2, gzip\r\n",
            "Accept-Encoding: *;q=0.3, br;q=0\r\n",
            "Accept-Encoding: br, identity;q=0\r\n",
            "Accept-Encoding: br;q=0.5, br;q=1, *;q=0.9, *;q=0.1\r\n",
            "Accept-Encoding: identity;q=0.4, *, identity\r\n",
            "Accept-Encoding: *;q=0\r\n",
            "Accept-Encoding: br;q=bogus, zstd;q=0.001\r\n",
            "Accept-Encoding: \r\n",
            "Accept-Encoding: ,,, ;q=1, br\r\n",
        ];
        let tokens = ["br", "zstd", "gzip"];
        for f in fields {
            with(f, |a| {
                for n in 0..=tokens.len() {
                    let mut out = [7; 3];
                    let id = a.weigh(&tokens[..n], &mut out);
                    assert_eq!(id, a.identity(), "identity, {f:?}");
                    for i in 0..n {
                        assert_eq!(out[i], a.coding(tokens[i]), "{}, {f:?}", tokens[i]);
                    }
                }
            });
        }
    }

    #[test]
    fn codings() {
        with("", |a| {
            assert_eq!(a.coding("br"), 0);
            assert_eq!(a.identity(), 1000);
        });
        with("Accept-Encoding: gzip, br;q=0.8\r\n", |a| {
            assert_eq!(a.coding("gzip"), 1000);
            assert_eq!(a.coding("br"), 800);
            assert_eq!(a.coding("zstd"), 0);
            assert_eq!(a.identity(), IMPLICIT_IDENTITY);
        });
        with(
            "Accept-Encoding: GZIP;Q=0.5\r\nAccept-Encoding: zstd\r\n",
            |a| {
                assert_eq!(a.coding("gzip"), 500);
                assert_eq!(a.coding("zstd"), 1000);
            },
        );
        with("Accept-Encoding: x-gzip\r\n", |a| {
            assert_eq!(a.coding("gzip"), 1000)
        });
        with("Accept-Encoding: *;q=0.3, br;q=0\r\n", |a| {
            assert_eq!(a.coding("br"), 0);
            assert_eq!(a.coding("gzip"), 300);
            assert_eq!(a.identity(), 300);
        });
        with("Accept-Encoding: br, identity;q=0\r\n", |a| {
            assert_eq!(a.identity(), 0)
        });
        with("Accept-Encoding: br;q=bogus\r\n", |a| {
            assert_eq!(a.coding("br"), 0)
        });
        // An empty field: no coding wanted; identity still fine.
        with("Accept-Encoding: \r\n", |a| {
            assert_eq!(a.coding("gzip"), 0);
            assert_eq!(a.identity(), IMPLICIT_IDENTITY);
        });
    }
}
