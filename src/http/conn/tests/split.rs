//! The property test: whole, split and byte-at-a-time input, valid and
//! invalid, gives the same answer.

use super::*;

/// Feed `input` split at `splits` through a fresh Conn of `env`, sending in
/// `chunk`-byte writes; then EOF.
fn run_in(env: &mut Env, input: &[u8], splits: &[usize], chunk: usize) -> Out {
    let mut c = env.conn();
    let mut out = Out::default();
    let mut start = 0;
    for &s in splits.iter().chain(std::iter::once(&input.len())) {
        c.handle_input(&mut env.ctx(), &input[start..s]);
        drain(env, &mut c, chunk, &mut out);
        start = s;
    }
    c.handle_eof(&mut env.ctx());
    drain(env, &mut c, chunk, &mut out);
    out
}

/// splitmix64: a small deterministic generator, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid and invalid request heads around the limits of `Env` (head 1024,
/// target 256, so a request line may be 288 bytes before its line feed).
fn corpus() -> Vec<Vec<u8>> {
    let mut c: Vec<Vec<u8>> = [
        GET_A,
        "HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "BREW /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GET /sub HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET http://x/a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\nHost: x\n\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.2\r\nHost: x\r\n\r\n",
        "GET / FOO/1.1\r\nHost: x\r\n\r\n",
        "GET /sp ace.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a b HTTP/2.0\r\nHost: x\r\n\r\n",
        "GET /\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 3\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=\"v\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n",
        "POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /../a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET //evil/../sub HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /parts HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /file.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        "HEAD /file.bin HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Around the limits: long methods, targets and headers, many headers.
    for n in [200, 250, 256, 257, 280, 287, 288, 289, 300, 600, 1100, 3000] {
        c.push(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(n)).into_bytes());
        c.push(format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(n)).into_bytes());
        c.push(format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "b".repeat(n)).into_bytes());
        c.push(format!("G(T /{} HTTP/1.1\r\n\r\n", "a".repeat(n)).into_bytes());
    }
    let many: String = (0..100).map(|i| format!("X{i}: y\r\n")).collect();
    c.push(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes());
    c
}

/// Whole, split and byte-at-a-time: the same bytes in, the same bytes out.
fn assert_split_invariant(env: &mut Env, input: &[u8], rng: &mut Rng, what: &str) {
    let whole = run_in(env, input, &[], usize::MAX);
    for round in 0..3 {
        let k = 1 + rng.below(4);
        let mut splits: Vec<usize> = (0..k).map(|_| rng.below(input.len() + 1)).collect();
        splits.sort_unstable();
        let chunk = [usize::MAX, 1, 7, 100][rng.below(4)];
        let got = run_in(env, input, &splits, chunk);
        assert!(
            got == whole,
            "{what}, round {round}: split at {splits:?} (send chunk {chunk}) answered differently\ninput {:?}\nwhole {:?}\nsplit {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&whole.bytes),
            String::from_utf8_lossy(&got.bytes),
        );
    }
    if input.len() <= 4096 {
        let each: Vec<usize> = (1..input.len()).collect();
        let got = run_in(env, input, &each, usize::MAX);
        assert!(
            got == whole,
            "{what}: byte at a time answered differently\ninput {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// A property test: every corpus entry, pairs of them pipelined, and random
/// mutations (flips, insertions, deletions, duplicated runs, cuts) give the
/// same answer whole and split at random points.
#[test]
fn answers_do_not_depend_on_how_bytes_arrive() {
    let mut env = Env::new();
    let corpus = corpus();
    let mut rng = Rng(0x7a4d_e11e);
    for (i, req) in corpus.iter().enumerate() {
        assert_split_invariant(&mut env, req, &mut rng, &format!("corpus {i}"));
    }
    let seeds = match std::env::var("TANDEM_PROP_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("TANDEM_PROP_CASES={v:?} is not a number of cases")),
        Err(_) => 1500usize,
    };
    for case in 0..seeds {
        let mut input = corpus[rng.below(corpus.len())].clone();
        if rng.below(3) == 0 {
            input.extend_from_slice(&corpus[rng.below(corpus.len())]);
        }
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len() + 1);
            match rng.below(6) {
                0 if at < input.len() => input[at] ^= 1 << rng.below(8),
                1 => input.insert(at, b" \r\n\t:/%aZ\0\x7f\xff"[rng.below(12)]),
                2 if at < input.len() => {
                    input.remove(at);
                }
                3 => {
                    let end = (at + rng.below(40)).min(input.len());
                    let run = input[at..end].to_vec();
                    let times = 1 + rng.below(30);
                    for _ in 0..times {
                        input.splice(at..at, run.iter().copied());
                    }
                }
                4 => input.truncate(at),
                _ => {}
            }
        }
        assert_split_invariant(&mut env, &input, &mut rng, &format!("mutation case {case}"));
    }
}

/// RFC 9110 §2.5: a head of HTTP/1.2 to 1.9 is answered as the same head
/// of HTTP/1.1 is, byte for byte, whatever follows it (bodies, chunked
/// ones, pipelined requests, heads around the limits), whole and split.
#[test]
fn later_minor_versions_are_answered_as_http_1_1() {
    let mut env = Env::new();
    let mut rng = Rng(0x1_2_9);
    let mut cases = corpus();
    let pairs: Vec<Vec<u8>> = cases
        .iter()
        .zip(cases.iter().skip(1))
        .map(|(a, b)| [&a[..], &b[..]].concat())
        .collect();
    cases.extend(pairs);
    let mut tried = 0;
    for (i, req) in cases.iter().enumerate() {
        let line_end = req.iter().position(|&b| b == b'\n').unwrap_or(req.len());
        let Some(at) = req[..line_end].windows(9).position(|w| w == b" HTTP/1.1") else {
            continue;
        };
        let want = run_in(&mut env, req, &[], usize::MAX);
        for minor in b'2'..=b'9' {
            let mut later = req.clone();
            later[at + 8] = minor;
            let splits = [rng.below(later.len() + 1)];
            for (s, chunk) in [(&[][..], usize::MAX), (&splits[..], 7)] {
                let got = run_in(&mut env, &later, s, chunk);
                assert!(
                    got == want,
                    "case {i}, HTTP/1.{}: split at {s:?}\ninput {:?}\n1.1 {:?}\ngot {:?}",
                    minor as char,
                    String::from_utf8_lossy(&later),
                    String::from_utf8_lossy(&want.bytes),
                    String::from_utf8_lossy(&got.bytes),
                );
            }
        }
        tried += 1;
    }
    assert!(tried > 50, "only {tried} heads of HTTP/1.1");
}
