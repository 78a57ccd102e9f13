//! The documents cannot drift from what runs: the install steps of
//! docs/operator.md (binary install, config, systemd service, socket
//! activation, log rotation) run top to bottom as written, in a temporary
//! root instead of `/`; the README's first config passes `tandem -t`; every
//! relative link in README.md and docs/ leads to a file (and heading) that
//! exists; every flag `tandem --help` lists is in docs/operator.md's
//! "Command line", and every flag that section names is in `--help`; every
//! metric the docs name is served on `/metrics`, and every metric served is
//! named in docs/operator.md.
//!
//! The install steps are the ```sh blocks between `<!-- install-steps:begin
//! -->` and `<!-- install-steps:end -->`, joined into one `bash -euo
//! pipefail` script run from the repository, with these changes, and no
//! others:
//! - `/usr/local`, `/etc`, `/var` and `/run` at the start of a path become
//!   the temporary root's (heredocs included, so the config points there);
//! - `cargo build --release` is not run and `target/release/tandem` is the
//!   binary this test run built;
//! - `systemctl` needs systemd as PID 1 and would touch the real system: its
//!   lines are skipped, each named in a SKIP line;
//! - before `systemd-analyze verify`, the copied unit's `ExecStart=` and
//!   `ExecReload=` name the binary installed in the temporary root (verify
//!   checks that it exists).
//!
//! Then what the skipped `systemctl enable --now tandem` would do is done by
//! hand, once per engine: the installed binary runs the installed config
//! (on 127.0.0.1 with an ephemeral port instead of port 80), serves a
//! request, and the installed logrotate config is forced through
//! `logrotate -f`, whose postrotate (`tandem -s reopen`) must make tandem
//! write to the new file.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BEGIN: &str = "<!-- install-steps:begin -->";
const END: &str = "<!-- install-steps:end -->";
/// The install sections, in order; each must hold at least one block.
const SECTIONS: [&str; 5] = [
    "Binary install",
    "Config",
    "systemd service",
    "Socket activation",
    "Log rotation",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The ```sh blocks of the marked install region, each with the `###`
/// heading it is under.
fn install_blocks(doc: &str) -> Vec<(String, String)> {
    let start = doc
        .find(BEGIN)
        .expect("docs/operator.md: no install-steps:begin marker");
    let end = doc
        .find(END)
        .expect("docs/operator.md: no install-steps:end marker");
    assert!(start < end, "install-steps markers out of order");
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut block: Option<String> = None;
    for line in doc[start..end].lines() {
        match &mut block {
            Some(b) if line.trim_end() == "```" => {
                blocks.push((heading.clone(), std::mem::take(b)));
                block = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None if line.trim_end() == "```sh" => block = Some(String::new()),
            None => {
                if let Some(h) = line.strip_prefix("### ") {
                    heading = h.trim().to_string();
                }
            }
        }
    }
    assert!(
        block.is_none(),
        "an unclosed ```sh block in the install steps"
    );
    blocks
}

/// Moves absolute paths under `/usr/local`, `/etc`, `/var` and `/run` below
/// `root`, wherever a path starts (after a space, a quote, `=`, `(`, or at
/// the start of a line).
fn rebase(text: &str, root: &str) -> String {
    const TOPS: [&str; 4] = ["/usr/local", "/etc", "/var", "/run"];
    let mut out = String::with_capacity(text.len() + 64);
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let at_path_start = matches!(
            prev,
            None | Some(' ' | '\t' | '\n' | '"' | '\'' | '=' | '(')
        );
        let top = TOPS.iter().find(|t| {
            rest.starts_with(**t) && matches!(rest[t.len()..].chars().next(), Some('/') | None)
        });
        if let (true, Some(top)) = (at_path_start, top) {
            out.push_str(root);
            out.push_str(top);
            i += top.len();
            prev = top.chars().last();
            continue;
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

/// The install blocks as one script for the temporary `root`, and the
/// commands it skips.
fn install_script(blocks: &[(String, String)], root: &str) -> (String, Vec<String>) {
    let mut script = String::new();
    let mut skipped = Vec::new();
    for (heading, block) in blocks {
        script.push_str(&format!("echo '== {heading}' >&2\n"));
        let mut in_heredoc: Option<String> = None;
        for line in block.lines() {
            if let Some(tag) = &in_heredoc {
                if line.trim() == tag {
                    in_heredoc = None;
                }
                script.push_str(&rebase(line, root));
                script.push('\n');
                continue;
            }
            if let Some(pos) = line.find("<<'") {
                let tag = line[pos + 3..].split('\'').next().unwrap_or("");
                in_heredoc = Some(tag.to_string());
            }
            let trimmed = line.trim();
            if trimmed.starts_with("systemctl ") {
                skipped.push(trimmed.to_string());
                continue;
            }
            if trimmed == "cargo build --release" {
                continue;
            }
            let mut line = rebase(line, root).replace("target/release/tandem", tandem_bin());
            if trimmed.starts_with("systemd-analyze verify") {
                line = format!(
                    "sed -i 's|^\\(Exec[A-Za-z]*=\\)/usr/local/|\\1{root}/usr/local/|' \x20\
                     {root}/etc/systemd/system/tandem.service\n{line}"
                );
            }
            script.push_str(&line);
            script.push('\n');
        }
        assert!(in_heredoc.is_none(), "{heading}: an unclosed heredoc");
    }
    (script, skipped)
}

fn run_script(script: &str, root: &Path) -> (bool, String) {
    let path = root.join("install.sh");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg(&path)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn install_sections_hold_steps_in_order() {
    let doc = read("docs/operator.md");
    let blocks = install_blocks(&doc);
    let headings: Vec<&str> = blocks.iter().map(|(h, _)| h.as_str()).collect();
    let mut at = 0;
    for want in SECTIONS {
        let found = headings[at..].iter().position(|h| *h == want);
        let found = found.unwrap_or_else(|| {
            panic!("install steps: no ```sh block under `### {want}` (in this order: {SECTIONS:?}); found {headings:?}")
        });
        at += found;
    }
    // Socket activation: port 80 is the service's until it stops.
    let socket: String = blocks
        .iter()
        .filter(|(h, _)| h == "Socket activation")
        .map(|(_, b)| b.as_str())
        .collect();
    let stop = socket.find("systemctl stop tandem\n");
    let enable = socket.find("systemctl enable --now tandem.socket");
    assert!(
        matches!((stop, enable), (Some(s), Some(e)) if s < e),
        "Socket activation: `systemctl stop tandem` must come before \
         `systemctl enable --now tandem.socket` (both want port 80):\n{socket}"
    );
}

#[test]
fn install_steps_run_as_written() {
    if !running_as_root() {
        skip("the install steps run as root (install -d /etc/..., logrotate's create www-data)");
        return;
    }
    for (tool, why) in [
        ("systemd-analyze", "Debian package `systemd`"),
        ("logrotate", "Debian package `logrotate`"),
    ] {
        let found = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists());
        if !found {
            skip(&format!("{tool} not installed ({why})"));
            return;
        }
    }
    let doc = read("docs/operator.md");
    let blocks = install_blocks(&doc);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    // What any Debian or Ubuntu host has before the steps begin.
    for d in [
        "usr/local/bin",
        "etc/systemd/system",
        "etc/logrotate.d",
        "var/log",
        "run",
    ] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let (script, skipped) = install_script(&blocks, &root);
    let (ok, out) = run_script(&script, dir.path());
    assert!(
        ok,
        "the install steps failed:\n{out}\n--- the script ---\n{script}"
    );
    if !skipped.is_empty() {
        skip(&format!(
            "needs systemd as PID 1, not run: {}",
            skipped.join("; ")
        ));
    }

    let bin = dir.path().join("usr/local/bin/tandem");
    let conf = dir.path().join("etc/tandem/tandem.toml");
    let rotate = dir.path().join("etc/logrotate.d/tandem");
    for p in [&bin, &conf, &rotate] {
        assert!(p.exists(), "the install steps did not make {}", p.display());
    }
    for engine in ["epoll", "io_uring"] {
        serve_and_rotate(dir.path(), &bin, &conf, &rotate, engine);
    }
}

/// What `systemctl start tandem` would run, by hand: the installed binary
/// on the installed config (on an ephemeral loopback port), then the
/// installed logrotate config forced, whose postrotate must reopen the log.
fn serve_and_rotate(root: &Path, bin: &Path, conf: &Path, rotate: &Path, engine: &str) {
    let logs = root.join("var/log/tandem");
    let access = logs.join("access.log");
    let error = logs.join("error.log");
    for p in [&access, &error] {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(p.with_extension("log.1"));
    }
    let stderr = root.join(format!("stderr.{engine}"));
    let mut child = KillOnDrop(
        Command::new(bin)
            .arg("-c")
            .arg(conf)
            .args(["--listen", "127.0.0.1:0", "--engine", engine])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start the installed tandem"),
    );
    let mut addr = None;
    for _ in 0..200 {
        let text = std::fs::read_to_string(&error).unwrap_or_default();
        if let Some(&a) = listening_addrs(&text).first() {
            addr = Some(a);
            break;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            let why = std::fs::read_to_string(&stderr).unwrap_or_default();
            if why.contains("unavailable") {
                skip(&format!("{engine}: {why}"));
                return;
            }
            panic!("{engine}: the installed tandem exited {status}: {why}");
        }
        std::thread::sleep(Duration::from_millis(50)); // polling for the `listening on` line
    }
    let Some(addr) = addr else {
        panic!("{engine}: no `listening on` line in {}", error.display());
    };
    assert_status(&get(addr, "/"), 200, "GET / from the installed site");
    wait_file(&access, Duration::from_secs(10), |t| t.contains("\"GET / "))
        .unwrap_or_else(|| panic!("{engine}: GET / not in {}", access.display()));

    let state = root.join("logrotate.state");
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(&state)
        .arg(rotate)
        .output()
        .expect("logrotate");
    assert!(
        out.status.success(),
        "{engine}: logrotate -f {}: {}\n{}",
        rotate.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A rotation that worked says nothing: cron mails, and the timer
    // journals, whatever a postrotate prints, every day.
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{engine}: a rotation that worked printed something (the postrotate's \
         `>/dev/null` should silence a success):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = logs.join("access.log.1");
    let old = std::fs::read_to_string(&rotated)
        .unwrap_or_else(|e| panic!("{engine}: {}: {e}", rotated.display()));
    assert!(
        old.contains("\"GET / "),
        "{engine}: the rotated log lost its line"
    );
    assert_status(
        &get(addr, "/index.html"),
        200,
        "GET /index.html after the rotation",
    );
    wait_file(&access, Duration::from_secs(10), |t| {
        t.contains("\"GET /index.html ")
    })
    .unwrap_or_else(|| {
        panic!(
            "{engine}: after the postrotate reopen, GET /index.html is not in the new {}",
            access.display()
        )
    });

    let stop = Command::new(bin)
        .arg("-s")
        .arg("stop")
        .arg("-c")
        .arg(conf)
        .output()
        .expect("tandem -s stop");
    assert!(
        stop.status.success(),
        "{engine}: tandem -s stop: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{engine}: tandem exited {status}");
}

#[test]
fn readme_first_config_passes_check() {
    let readme = read("README.md");
    let start = readme
        .find("```toml\n")
        .expect("README: no ```toml block (the first config)");
    let body = &readme[start + 8..];
    let toml = &body[..body.find("```").expect("README: unclosed ```toml block")];
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("site.toml");
    std::fs::write(&conf, toml).unwrap();
    // The README runs it from the clone: `root` and `access_log` are
    // relative to the working directory, so run it from the repository.
    let out = Command::new(tandem_bin())
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README's first config fails tandem -t:\n{toml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_`
/// kept, spaces to `-`, the rest dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(doc: &str) -> BTreeSet<String> {
    let mut fence = false;
    doc.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fence = !fence;
            }
            !fence
        })
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| slug(l.trim_start_matches('#').replace('`', "").as_str()))
        .collect()
}

/// `](target)` links of a Markdown text, outside code.
fn links(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
        }
    }
    out
}

#[test]
fn relative_links_resolve() {
    let mut files = vec![PathBuf::from("README.md")];
    for e in std::fs::read_dir(repo().join("docs")).expect("docs/") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p.strip_prefix(repo()).unwrap().to_path_buf());
        }
    }
    for want in [
        "operator.md",
        "configuration.md",
        "http.md",
        "benchmarks.md",
        "architecture.md",
    ] {
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(Path::new("docs").join(want))),
            "docs/{want} is missing"
        );
    }
    let mut bad = Vec::new();
    for file in &files {
        let text = read(file.to_str().unwrap());
        let dir = file.parent().unwrap();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let full = repo().join(&target);
            if !full.exists() {
                bad.push(format!("{}: {link}: no such file", file.display()));
                continue;
            }
            if let Some(a) = anchor {
                let doc = std::fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&doc).contains(a) {
                    bad.push(format!("{}: {link}: no such heading", file.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

/// The layout section of docs/architecture.md names every source file
/// under src/ (test files aside), each with its directory.
#[test]
fn layout_names_every_source_file() {
    let doc = read("docs/architecture.md");
    let start = doc
        .find("\n## Layout")
        .expect("docs/architecture.md: no ## Layout");
    let rest = &doc[start + 1..];
    let layout = &rest[..rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3)];
    let mut missing = Vec::new();
    let mut dirs = vec![repo().join("src")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if p.is_dir() {
                if name != "tests" {
                    dirs.push(p);
                }
                continue;
            }
            if !name.ends_with(".rs") || name == "tests.rs" {
                continue;
            }
            let rel = p.strip_prefix(repo()).unwrap();
            let parent = rel.parent().unwrap().to_str().unwrap();
            if !(layout.contains(&name) && layout.contains(parent)) {
                missing.push(rel.display().to_string());
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "docs/architecture.md, Layout: not described: {}",
        missing.join(", ")
    );
}

/// The flags (`-c`, `--config`, ...) named in `text`.
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    for (i, _) in text.match_indices('-') {
        let prev = i.checked_sub(1).map(|j| b[j]);
        // A flag begins a word: after a space, `[`, a backquote, `(` or `|`.
        if !matches!(prev, None | Some(b' ' | b'[' | b'`' | b'(' | b'|' | b'\n')) {
            continue;
        }
        let rest = &text[i..];
        let (dashes, body) = match rest.strip_prefix("--") {
            Some(r) => ("--", r),
            None => ("-", &rest[1..]),
        };
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let ok = match dashes {
            "-" => name.len() == 1 && name.chars().all(|c| c.is_ascii_alphabetic()),
            _ => name.len() > 1 && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
        };
        if ok {
            out.insert(format!("{dashes}{name}"));
        }
    }
    out
}

/// The text of the section under `## {heading}`, up to the next `## `.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no `## {heading}` section"));
    let body = &doc[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |e| e + 3);
    &body[..end]
}

#[test]
fn help_flags_and_operator_md_agree() {
    let out = Command::new(tandem_bin()).arg("--help").output().unwrap();
    assert!(out.status.success(), "tandem --help: {}", out.status);
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    // The options list only: `  -c, --config <FILE>  Config file ...`.
    let listed: BTreeSet<String> = help
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .flat_map(|l| {
            let opts = l.trim_start().split("  ").next().unwrap_or("");
            flags_in(&format!(" {opts}"))
        })
        .collect();
    assert!(
        listed.contains("--listen") && listed.contains("-t"),
        "no options in --help:\n{help}"
    );
    let doc = read("docs/operator.md");
    let documented = flags_in(section(&doc, "Command line"));
    let undocumented: Vec<&String> = listed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "tandem --help lists {undocumented:?}, which docs/operator.md's \"Command line\" does not name"
    );
    let unknown: Vec<&String> = documented.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        "docs/operator.md's \"Command line\" names {unknown:?}, which tandem --help does not list:\n{help}"
    );
}

/// The metric names (`tandem_...`) a document names.
fn metric_names(doc: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in doc.match_indices("tandem_") {
        if i > 0 && (doc.as_bytes()[i - 1].is_ascii_alphanumeric() || doc.as_bytes()[i - 1] == b'_')
        {
            continue;
        }
        let name: String = doc[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        out.insert(name.trim_end_matches('_').to_string());
    }
    out
}

engine_tests! {
    // Every metric the docs name is served, and every metric served is in
    // docs/operator.md's list.
    fn documented_metrics_are_served(e) {
        let site = Site::new();
        let srv = start_or_skip!(e, "metrics_listen = [\"127.0.0.1:0\"]", &site.root);
        let r = get(srv.metrics_addr(), "/metrics");
        assert_status(&r, 200, "GET /metrics");
        let body = r.body_str();
        let served: BTreeSet<String> = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect();
        assert!(served.contains("tandem_requests_total"), "{body}");
        let operator = metric_names(&read("docs/operator.md"));
        for doc in ["README.md", "docs/operator.md", "docs/http.md", "docs/configuration.md", "docs/architecture.md"] {
            let named = metric_names(&read(doc));
            let missing: Vec<&String> = named.difference(&served).collect();
            assert!(missing.is_empty(), "engine {e}: {doc} names {missing:?}, which /metrics does not serve:\n{body}");
        }
        let undocumented: Vec<&String> = served.difference(&operator).collect();
        assert!(undocumented.is_empty(), "engine {e}: /metrics serves {undocumented:?}, which docs/operator.md does not name");
    }
}
