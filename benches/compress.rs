//! Ratio and speed of each on-the-fly coding at several levels, on a 64 KiB
//! text (the HTML, CSS and JS of `html/` and the README, repeated up to
//! 64 KiB with a counter so it is not one block copied): the measurement
//! behind the default `compression_level`s (README "Compression").
//! `cargo bench --bench compress`; prints a Markdown table.

use std::time::Instant;

use tandem::config::Encoding;
use tandem::files::compress::{compress, decompress};

fn corpus() -> Vec<u8> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut seed = Vec::new();
    for f in [
        "html/index.html",
        "html/404.html",
        "README.md",
        "conf/tandem.toml",
    ] {
        seed.extend(std::fs::read(format!("{root}/{f}")).unwrap_or_default());
    }
    for dir in ["html/css", "html/js"] {
        if let Ok(rd) = std::fs::read_dir(format!("{root}/{dir}")) {
            for e in rd.flatten() {
                seed.extend(std::fs::read(e.path()).unwrap_or_default());
            }
        }
    }
    let mut out = Vec::with_capacity(64 << 10);
    let mut i = 0;
    while out.len() < 64 << 10 {
        out.extend(format!("<!-- part {i} -->\n").bytes());
        out.extend(&seed);
        i += 1;
    }
    out.truncate(64 << 10);
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let text = corpus();
    println!("| coding | level | ratio | median ms | worst ms | MB/s |");
    println!("|---|---|---|---|---|---|");
    let cases: [(Encoding, &[u32]); 3] = [
        (Encoding::Br, &[1, 4, 5, 6, 9, 11]),
        (Encoding::Zstd, &[1, 3, 6, 9, 19]),
        (Encoding::Gzip, &[1, 6, 9]),
    ];
    for (c, levels) in cases {
        for &l in levels {
            let out = compress(c, l, &text);
            assert_eq!(decompress(c, &out), text);
            let mut times: Vec<f64> = (0..if l >= 9 { 5 } else { 30 })
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(compress(c, l, std::hint::black_box(&text)));
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let med = times[times.len() / 2];
            let worst = times[times.len() - 1];
            println!(
                "| {} | {l} | {:.2} | {med:.2} | {worst:.2} | {:.0} |",
                c.token(),
                text.len() as f64 / out.len() as f64,
                text.len() as f64 / 1e6 / (med / 1e3),
            );
        }
    }
}
