//! HPACK (RFC 7541) glue. Decoding is `loona-hpack`'s (a maintained fork of
//! hpack-rs, tested against RFC 7541 Appendix C; Huffman and the dynamic
//! table are the hard parts, and they are its): we keep the decoded fields
//! only up to the header-list limit, so a block that expands (an HPACK
//! bomb: one big table entry referenced again and again) costs the time to
//! walk it and no memory past the limit.
//!
//! Encoding is ours and trivial: every response field is a literal
//! "without indexing" (RFC 7541 §6.2.2), its name indexed from the static
//! table where it is there. No dynamic table on our side: an HTTP/2
//! connection's encoder state is zero bytes, and the peer's decoder table
//! receives nothing from us. A response head costs some 40 more bytes than
//! with a table; that buys an idle connection that holds nothing.

use bytes::{BufMut, BytesMut};
use loona_hpack::Decoder;

/// A field's overhead in the header-list size (RFC 9113 §6.5.2).
pub const FIELD_OVERHEAD: usize = 32;

/// The fields of one header block, in order: names and values in one
/// buffer.
#[derive(Debug, Default)]
pub struct Fields {
    buf: Vec<u8>,
    list: Vec<(usize, usize, usize)>,
    /// The header-list size (name + value + 32 per field) of the whole block.
    pub size: usize,
    /// Fields were dropped: the list passed the limit.
    pub over: bool,
}

impl Fields {
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.list
            .iter()
            .map(|&(s, n, e)| (&self.buf[s..n], &self.buf[n..e]))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }
}

/// Decode `block` (a whole header block), keeping fields while the list
/// stays within `max` bytes. Err: the block is not valid HPACK (a
/// connection error, COMPRESSION_ERROR).
pub fn decode(dec: &mut Decoder<'_>, block: &[u8], max: usize) -> Result<Fields, ()> {
    let mut f = Fields::default();
    let r = dec.decode_with_cb(block, |n, v| {
        f.size += n.len() + v.len() + FIELD_OVERHEAD;
        if f.size > max {
            f.over = true;
            return;
        }
        let s = f.buf.len();
        f.buf.extend_from_slice(&n);
        let m = f.buf.len();
        f.buf.extend_from_slice(&v);
        f.list.push((s, m, f.buf.len()));
    });
    r.map(|()| f).map_err(|_| ())
}

/// The static table's index of a response field name (RFC 7541 Appendix A).
fn static_name(name: &str) -> Option<u8> {
    Some(match name {
        "accept-ranges" => 18,
        "age" => 21,
        "allow" => 22,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "date" => 33,
        "etag" => 34,
        "expires" => 36,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "vary" => 59,
        _ => return None,
    })
}

/// An integer with an `n`-bit prefix, the first byte's high bits `high`.
fn integer(out: &mut BytesMut, v: usize, n: u8, high: u8) {
    let max = (1usize << n) - 1;
    if v < max {
        out.put_u8(high | v as u8);
        return;
    }
    out.put_u8(high | max as u8);
    let mut v = v - max;
    while v >= 128 {
        out.put_u8((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.put_u8(v as u8);
}

fn string(out: &mut BytesMut, s: &[u8]) {
    integer(out, s.len(), 7, 0);
    out.put_slice(s);
}

/// `:status`, as an indexed field when the static table has it.
pub fn status(out: &mut BytesMut, code: u16) {
    let idx = match code {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => {
            // Literal without indexing, name ":status" (index 8).
            integer(out, 8, 4, 0);
            let mut d = [0u8; 3];
            d[0] = b'0' + (code / 100 % 10) as u8;
            d[1] = b'0' + (code / 10 % 10) as u8;
            d[2] = b'0' + (code % 10) as u8;
            return string(out, &d);
        }
    };
    out.put_u8(0x80 | idx);
}

/// A field (`name` in lower case) as a literal without indexing.
pub fn field(out: &mut BytesMut, name: &str, value: &[u8]) {
    match static_name(name) {
        Some(i) => integer(out, usize::from(i), 4, 0),
        None => {
            out.put_u8(0);
            string(out, name.as_bytes());
        }
    }
    string(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What we encode, loona-hpack decodes back (long values take the
    /// multi-byte length form).
    #[test]
    fn encoded_fields_decode() {
        let mut out = BytesMut::new();
        status(&mut out, 200);
        status(&mut out, 416);
        field(&mut out, "content-type", b"text/html");
        field(&mut out, "x-long", &[b'a'; 300]);
        let mut dec = Decoder::new();
        let f = decode(&mut dec, &out, 1 << 20).unwrap();
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            f.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        assert_eq!(got[0], (b":status".to_vec(), b"200".to_vec()));
        assert_eq!(got[1], (b":status".to_vec(), b"416".to_vec()));
        assert_eq!(got[2], (b"content-type".to_vec(), b"text/html".to_vec()));
        assert_eq!(got[3].1.len(), 300);
    }

    /// RFC 7541 C.3.1 (a request without Huffman) decodes.
    #[test]
    fn rfc7541_c31() {
        let block = [
            0x82, 0x86, 0x84, 0x41, 0x0f, 0x77, 0x77, 0x77, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70,
            0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d,
        ];
        let mut dec = Decoder::new();
        let f = decode(&mut dec, &block, 8192).unwrap();
        let names: Vec<&[u8]> = f.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [&b":method"[..], b":scheme", b":path", b":authority"]
        );
        assert_eq!(f.size, 42 + 43 + 38 + 57);
    }

    /// A bomb: one 4 KiB entry in the table, then referenced thousands of
    /// times by one byte each. The list is cut at the limit and marked.
    #[test]
    fn an_hpack_bomb_is_cut_at_the_limit() {
        let mut block = BytesMut::new();
        block.put_u8(0x40);
        string(&mut block, b"x-bomb");
        string(&mut block, &[b'b'; 4000]);
        for _ in 0..5000 {
            block.put_u8(0x80 | 62);
        }
        let mut dec = Decoder::new();
        let f = decode(&mut dec, &block, 8192).unwrap();
        assert!(f.over);
        assert!(f.len() <= 2);
        assert!(f.size > 5000 * 4000);
    }
}
