//! Micro-benchmarks of the sans-IO core: request parsing and a whole
//! request -> response-head cycle through `Conn`, no sockets.
//! `cargo bench --bench parse` prints ns per operation; compare ratios from
//! one run, not absolute numbers across machines.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tandem::files::{Responder, Settings};
use tandem::http::parse::{ParseLimits, Parsed, header_slots, parse_head};
use tandem::http::{Conn, Ctx, Limits, Notes, Now, Respond, Transmit};
use tandem::log::Level;
use tandem::metrics::WorkerCounters;

const REQ: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n\r\n";

fn bench(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("{name:<40} {ns:>10.1} ns/op");
}

fn main() {
    let lim = ParseLimits {
        max_header_size: 8192,
        max_target_size: 4096,
    };
    bench("parse_head (7 headers)", 500_000, || {
        let mut headers = header_slots();
        match parse_head(black_box(REQ), &mut headers, &lim) {
            Ok(Parsed::Complete(h, n)) => {
                black_box((h.target, n));
            }
            other => panic!("{other:?}"),
        }
    });

    // One site with a plain file, one where it has a .br and a .gz sibling
    // (a request that accepts both gets the .br).
    let dir = std::env::temp_dir().join(format!("tandem-bench-{}", std::process::id()));
    let responder = |sub: &str, siblings: bool| {
        let root = dir.join(sub);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), vec![b'x'; 4096]).unwrap();
        if siblings {
            std::fs::write(root.join("index.html.br"), vec![b'b'; 1024]).unwrap();
            std::fs::write(root.join("index.html.gz"), vec![b'g'; 1200]).unwrap();
        }
        let settings = Settings::from_config(&tandem::config::Config::default());
        Responder::new(&root, settings).unwrap()
    };
    let sites = [
        (
            "Conn request->response (cache hit)",
            responder("plain", false),
        ),
        (
            "Conn request->response (.br + .gz)",
            responder("variants", true),
        ),
    ];
    // The config file's defaults (8192 / 4096, as `lim` above).
    let limits = Limits::default();
    let now = Now::new(Instant::now(), std::time::SystemTime::now());
    let mut conn = Conn::new("127.0.0.1:1".parse().unwrap(), now.instant(), &limits);
    let mut log = Vec::new();
    let mut notes = Notes::new(Level::Info);
    let stats = std::sync::Arc::new(WorkerCounters::default());
    let mut pool = tandem::http::BufferPool::default();
    let fds = tandem::http::FdBudget::unlimited();
    for (name, files) in &sites {
        // The worker's own state for this site's responder: its cache.
        let mut local = files.local(&stats, usize::MAX);
        bench(name, 200_000, || {
            let mut ctx = Ctx {
                now: &now,
                responder: files,
                local: &mut *local,
                limits: &limits,
                log: Some(&mut log),
                notes: &mut notes,
                stats: &stats,
                pool: &mut pool,
                fds: &fds,
                drain_grace: Duration::ZERO,
            };
            conn.handle_input(&mut ctx, black_box(REQ));
            while let Transmit::Send(segs) = conn.poll_transmit() {
                let n = segs.iter().map(|s| s.len() as usize).sum();
                conn.handle_sent(&mut ctx, n);
            }
            log.clear();
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}
