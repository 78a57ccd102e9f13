//! HPACK (RFC 7541): our decoder and encoder.
//!
//! Decoding: integers, strings (Huffman four bits a step, by a table made
//! once from the code tree), the static and dynamic tables, size
//! updates. We first used `loona-hpack` (the fork of hpack-rs the issue names): its Huffman
//! decoder builds two levels of `HashMap` from the 257-entry code table
//! for every string, then looks each bit up in them, and a profile of
//! h2load against the debug build showed SipHash as the top cost of a
//! request. The decoder here is small, and keeps the decoded fields only
//! up to the header-list limit, so a block that expands (an HPACK bomb:
//! one big table entry referenced again and again) costs the time to walk
//! it and no memory past the limit. It is checked against RFC 7541
//! Appendix C (C.3, C.4, C.5, C.6) in the tests below.
//!
//! Encoding is trivial: every response field is a literal "without
//! indexing" (RFC 7541 §6.2.2), its name indexed from the static table
//! where it is there. No dynamic table on our side: an HTTP/2
//! connection's encoder state is zero bytes, and the peer's decoder table
//! receives nothing from us. A response head costs some 40 more bytes than
//! with a table; that buys an idle connection that holds nothing of it.

use std::collections::VecDeque;
use std::sync::OnceLock;

use bytes::{BufMut, BytesMut};

use super::table::{HUFFMAN, STATIC};

/// A field's overhead in the header-list size (RFC 9113 §6.5.2), and in
/// the dynamic table's size (RFC 7541 §4.1).
pub const FIELD_OVERHEAD: usize = 32;
/// The dynamic table size we allow (SETTINGS_HEADER_TABLE_SIZE: the
/// default, which we never change).
pub const TABLE_SIZE: usize = 4096;

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

    /// Give back the room decoding left over: a request that waits for a
    /// slot (`H2Conn::waiting`) holds no more than its fields.
    pub fn shrink(&mut self) {
        self.buf.shrink_to_fit();
        self.list.shrink_to_fit();
    }

    /// The heap bytes it holds.
    pub fn heap(&self) -> usize {
        self.buf.capacity() + self.list.capacity() * std::mem::size_of::<(usize, usize, usize)>()
    }

    /// Count a field of `len` bytes (name and value) in the list's size:
    /// whether the list is still within `max` (if not, it is marked over).
    fn count(&mut self, len: usize, max: usize) -> bool {
        self.size += len + FIELD_OVERHEAD;
        let within = self.size <= max;
        self.over |= !within;
        within
    }

    /// A table entry's field: counted before it is copied, so a reference
    /// past the limit (an HPACK bomb's) costs no copy.
    fn add(&mut self, name: &[u8], value: &[u8], max: usize) {
        if !self.count(name.len() + value.len(), max) {
            return;
        }
        let s = self.buf.len();
        self.buf.extend_from_slice(name);
        let m = self.buf.len();
        self.buf.extend_from_slice(value);
        self.list.push((s, m, self.buf.len()));
    }

    /// The field whose name is `buf[s..m]` and value `buf[m..]`, written
    /// there by the decoder, is one of the list; past `max`, it is dropped.
    fn commit(&mut self, s: usize, m: usize, max: usize) {
        if self.count(self.buf.len() - s, max) {
            self.list.push((s, m, self.buf.len()));
        } else {
            self.buf.truncate(s);
        }
    }
}

/// Not valid HPACK: a connection error (COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// The decoder's state: the dynamic table, newest entry first (one buffer
/// per entry: name then value).
#[derive(Debug)]
pub struct Decoder {
    entries: VecDeque<(Box<[u8]>, usize)>,
    size: usize,
    max: usize,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            max: TABLE_SIZE,
        }
    }

    /// Entry `i` (1-based, static then dynamic): name, value.
    fn get(&self, i: usize) -> Result<(&[u8], &[u8]), Invalid> {
        if i == 0 {
            return Err(Invalid);
        }
        if let Some((n, v)) = STATIC.get(i - 1) {
            return Ok((n.as_bytes(), v.as_bytes()));
        }
        let (b, n) = self.entries.get(i - 1 - STATIC.len()).ok_or(Invalid)?;
        Ok((&b[..*n], &b[*n..]))
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + FIELD_OVERHEAD;
        self.evict(self.max.saturating_sub(size));
        if size <= self.max {
            let mut b = Vec::with_capacity(name.len() + value.len());
            b.extend_from_slice(name);
            b.extend_from_slice(value);
            self.entries.push_front((b.into_boxed_slice(), name.len()));
            self.size += size;
        }
    }

    /// Drop the oldest entries until the table holds at most `to` bytes.
    fn evict(&mut self, to: usize) {
        while self.size > to {
            match self.entries.pop_back() {
                Some((b, _)) => self.size -= b.len() + FIELD_OVERHEAD,
                None => break,
            }
        }
    }

    /// Decode `block` (a whole header block), keeping fields while the
    /// list stays within `max` bytes.
    #[cfg(test)]
    pub fn decode(&mut self, block: &[u8], max: usize) -> Result<Fields, Invalid> {
        let mut f = Fields::default();
        self.decode_into(block, max, &mut f)?;
        Ok(f)
    }

    /// `decode` into `f`, reusing its room (its fields are replaced).
    pub fn decode_into(&mut self, block: &[u8], max: usize, f: &mut Fields) -> Result<(), Invalid> {
        f.buf.clear();
        f.list.clear();
        f.size = 0;
        f.over = false;
        // Room for a block's fields as they usually expand (Huffman, and
        // table references: a byte each for fields of tens of bytes),
        // without growing as they come.
        f.buf.reserve((block.len() * 4).max(512).min(max));
        f.list.reserve(16);
        let mut rd = Reader { b: block, pos: 0 };
        let mut fields_seen = false;
        while let Some(&first) = rd.b.get(rd.pos) {
            if first & 0x80 != 0 {
                let i = rd.integer(7)?;
                let (n, v) = self.get(i)?;
                f.add(n, v, max);
            } else if first & 0xe0 == 0x20 {
                // A size update comes before the block's first field.
                let size = rd.integer(5)?;
                if fields_seen || size > TABLE_SIZE {
                    return Err(Invalid);
                }
                self.max = size;
                self.evict(size);
                continue;
            } else {
                let (prefix, index) = if first & 0x40 != 0 {
                    (6, true)
                } else {
                    (4, false)
                };
                let i = rd.integer(prefix)?;
                // Name and value are decoded straight into the list's buffer.
                let s = f.buf.len();
                if i == 0 {
                    rd.string(&mut f.buf)?;
                } else {
                    f.buf.extend_from_slice(self.get(i)?.0);
                }
                let m = f.buf.len();
                rd.string(&mut f.buf)?;
                if index {
                    self.insert(&f.buf[s..m], &f.buf[m..]);
                }
                f.commit(s, m, max);
            }
            fields_seen = true;
        }
        // A literal past the limit grew the buffer before it was dropped:
        // that room is not kept for the next block (`H2Conn` reuses `f`
        // while the connection is busy). A no-op unless the list is over.
        f.buf.shrink_to(max);
        Ok(())
    }
}

struct Reader<'b> {
    b: &'b [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Invalid> {
        let b = *self.b.get(self.pos).ok_or(Invalid)?;
        self.pos += 1;
        Ok(b)
    }

    /// An integer with an `n`-bit prefix (RFC 7541 §5.1), at most 2^28.
    fn integer(&mut self, n: u8) -> Result<usize, Invalid> {
        let max = (1usize << n) - 1;
        let mut v = usize::from(self.byte()?) & max;
        if v < max {
            return Ok(v);
        }
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            v += usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 21 {
                return Err(Invalid);
            }
        }
    }

    /// A string literal (§5.2), appended to `out`.
    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), Invalid> {
        let huffman = self.b.get(self.pos).ok_or(Invalid)? & 0x80 != 0;
        let len = self.integer(7)?;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.b.len());
        let raw = &self.b[self.pos..end.ok_or(Invalid)?];
        self.pos += len;
        if huffman {
            huffman_decode(raw, out)
        } else {
            out.extend_from_slice(raw);
            Ok(())
        }
    }
}

/// The Huffman code as a binary tree: node `i`'s children are
/// `tree[i][bit]`; a value >= 0x8000 is a leaf, the symbol `v - 0x8000`.
fn tree() -> &'static Vec<[u16; 2]> {
    static TREE: OnceLock<Vec<[u16; 2]>> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut t = vec![[0u16; 2]];
        for (sym, &(code, bits)) in HUFFMAN.iter().enumerate() {
            let mut node = 0;
            for k in (0..bits).rev() {
                let bit = ((code >> k) & 1) as usize;
                if k == 0 {
                    t[node][bit] = 0x8000 | sym as u16;
                } else {
                    if t[node][bit] == 0 {
                        t.push([0, 0]);
                        t[node][bit] = (t.len() - 1) as u16;
                    }
                    node = usize::from(t[node][bit]);
                }
            }
        }
        t
    })
}

/// One step of the table-driven decoder: from a tree node, four bits
/// lead to `next` and emit at most one symbol (every code is 5 bits or
/// more), or reach EOS or a hole (an error).
#[derive(Clone, Copy)]
struct Step {
    next: u16,
    emit: u16,
}

const NONE: u16 = 0x100;
const FAIL: u16 = 0x200;

/// The tree walked four bits at a time: `steps[node][nibble]`, and for
/// each node whether input may end there (the padding: at most 7 bits,
/// all ones, so a node on the all-ones path from the root, 7 deep at most).
struct Nibbles {
    steps: Vec<[Step; 16]>,
    end_ok: Vec<bool>,
}

fn nibbles() -> &'static Nibbles {
    static NIBBLES: OnceLock<Nibbles> = OnceLock::new();
    NIBBLES.get_or_init(|| {
        let t = tree();
        let steps = (0..t.len())
            .map(|node| {
                std::array::from_fn(|nib| {
                    let (mut n, mut emit) = (node, NONE);
                    for k in (0..4).rev() {
                        let next = t[n][(nib >> k) & 1];
                        if next & 0x8000 != 0 {
                            let sym = next & 0x7fff;
                            if sym > 255 {
                                return Step {
                                    next: 0,
                                    emit: FAIL,
                                };
                            }
                            (n, emit) = (0, sym);
                        } else if next == 0 {
                            return Step {
                                next: 0,
                                emit: FAIL,
                            };
                        } else {
                            n = usize::from(next);
                        }
                    }
                    Step {
                        next: n as u16,
                        emit,
                    }
                })
            })
            .collect();
        let mut end_ok = vec![false; t.len()];
        let mut n = 0;
        end_ok[0] = true;
        for _ in 0..7 {
            n = usize::from(t[n][1]);
            end_ok[n] = true;
        }
        Nibbles { steps, end_ok }
    })
}

/// Huffman-decode `raw` onto `out` (§5.2): the padding is at most 7 bits,
/// all ones (a prefix of EOS); EOS itself is an error.
fn huffman_decode(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
    let nb = nibbles();
    let mut node = 0usize;
    out.reserve(raw.len() * 8 / 5);
    for &byte in raw {
        for nib in [byte >> 4, byte & 0xf] {
            let s = nb.steps[node][usize::from(nib)];
            if s.emit < NONE {
                out.push(s.emit as u8);
            } else if s.emit == FAIL {
                return Err(Invalid);
            }
            node = usize::from(s.next);
        }
    }
    if nb.end_ok[node] {
        Ok(())
    } else {
        Err(Invalid)
    }
}

/// The static table's index of a response field name (RFC 7541 Appendix A).
fn static_name(name: &[u8]) -> Option<u8> {
    Some(match name {
        b"accept-ranges" => 18,
        b"age" => 21,
        b"allow" => 22,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"date" => 33,
        b"etag" => 34,
        b"expires" => 36,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"vary" => 59,
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
pub fn field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    match static_name(name) {
        Some(i) => field_at(out, i, value),
        None => {
            out.put_u8(0);
            string(out, name);
            string(out, value);
        }
    }
}

/// The static table's indexes of the names every reply has (`field_at`).
pub mod name {
    pub const CONTENT_LENGTH: u8 = 28;
    pub const DATE: u8 = 33;
    pub const SERVER: u8 = 54;
}

/// A field whose name is the static table's entry `index`, as a literal
/// without indexing: `field` without looking the name up.
pub fn field_at(out: &mut BytesMut, index: u8, value: &[u8]) {
    integer(out, usize::from(index), 4, 0);
    string(out, value);
}

#[cfg(test)]
mod tests;
