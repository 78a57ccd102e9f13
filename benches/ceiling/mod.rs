//! What the two ceiling loops share (and nothing of tandem's): the fixed
//! reply, the address argument, and counting request ends.

/// The one response: a 1 KiB body after a minimal head.
pub fn response() -> Vec<u8> {
    const HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: application/octet-stream\r\n\r\n";
    let mut resp = HEAD.to_vec();
    resp.resize(HEAD.len() + 1024, b'x');
    resp
}

/// The address to listen on, or None after printing the usage (as under
/// `cargo bench`, which passes only flags).
pub fn address(name: &str) -> Option<String> {
    let addr = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if addr.is_none() {
        eprintln!("usage: {name} ADDR (for example 127.0.0.1:8080); run by benches/wrk.sh");
    }
    addr
}

/// Counts request ends (`\r\n\r\n`), carrying a match split across reads.
#[derive(Default)]
pub struct Ends {
    /// How much of "\r\n\r\n" the last bytes read matched (0..=3).
    matched: u8,
}

impl Ends {
    /// The request ends in `buf`.
    pub fn scan(&mut self, buf: &[u8]) -> u64 {
        let mut ends = 0;
        for &b in buf {
            let want = b"\r\n"[usize::from(self.matched & 1)];
            if b == want {
                self.matched += 1;
                if self.matched == 4 {
                    self.matched = 0;
                    ends += 1;
                }
            } else {
                self.matched = u8::from(b == b'\r');
            }
        }
        ends
    }
}
