//! Real HTTP/2 clients against both engines (issue 21, point 1): curl
//! (`--http2` over TLS, `--http2-prior-knowledge` over cleartext), nghttp
//! (several streams on one connection), h2load, Python's `h2` library and
//! the raw client in common/h2.rs. Each gets pages, HEAD, single and
//! multipart ranges, 304 and 412, the br and gzip siblings, a listing, a
//! 404 with the error page and big files byte-exact; every answer is the
//! HTTP/1.1 answer to the same request (status, representation fields,
//! body), with lower-case names and no connection-specific field.
//!
//! curl, nghttp and h2load come from Debian (`curl`, `nghttp2-client`);
//! Python's `h2` from PyPI in target/pyvenv (.ci/run installs all three).
//! A test whose tool is missing skips with the reason, except the Python
//! one under `CI` (set by CI), where a missing `h2` fails.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::h2::*;
use common::*;

const CSS_BR: &[u8] = b"BROTLI-SIBLING-OF-V-CSS";
const CSS_GZ: &[u8] = b"GZIP-SIBLING-OF-V-CSS";

struct Fixture {
    site: Site,
    _certs: tempfile::TempDir,
    cert: TlsCert,
    _srv: Server,
    plain: SocketAddr,
    tls: SocketAddr,
}

fn fixture(e: &str, extra: &str) -> Option<Fixture> {
    let site = Site::new();
    site.write("v.css", &b"p { margin: 0 } /* V-CSS */\n".repeat(80));
    // Siblings written after their source: not stale.
    site.write("v.css.br", CSS_BR);
    site.write("v.css.gz", CSS_GZ);
    let certs = tempfile::tempdir().unwrap();
    let cert = TlsCert::new(certs.path());
    let cfg = format!("{H2C}\nautoindex = true\n{extra}\n{}", cert.config());
    let srv = Server::start(e, &cfg, &site.root)?;
    let tls = tls_addr(&srv);
    let plain = srv.addr();
    Some(Fixture {
        site,
        _certs: certs,
        cert,
        _srv: srv,
        plain,
        tls,
    })
}

macro_rules! fixture_or_skip {
    ($e:expr) => {
        fixture_or_skip!($e, "")
    };
    ($e:expr, $extra:expr) => {
        match fixture($e, $extra) {
            Some(f) => f,
            None => return,
        }
    };
}

/// One request of the corpus each client runs.
struct Case {
    method: &'static str,
    path: &'static str,
    fields: Vec<(String, String)>,
    /// What the answer must show beyond matching HTTP/1.1's.
    check: fn(&Answer) -> Result<(), String>,
}

fn case(
    method: &'static str,
    path: &'static str,
    fields: &[(&str, &str)],
    check: fn(&Answer) -> Result<(), String>,
) -> Case {
    Case {
        method,
        path,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        check,
    }
}

fn want(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

fn cases(etag: &str) -> Vec<Case> {
    let etag: &'static str = Box::leak(etag.to_string().into_boxed_str());
    vec![
        case("GET", "/", &[], |a| {
            want(
                a.status == 200 && a.body == INDEX_HTML.as_bytes(),
                "GET / is the index page",
            )
        }),
        case("HEAD", "/big.bin", &[], |a| {
            want(
                a.status == 200
                    && a.body.is_empty()
                    && a.field("content-length")
                        .is_none_or(|l| l == BIG_SIZE.to_string()),
                "HEAD: 200, no body",
            )
        }),
        case("GET", "/big.bin", &[("range", "bytes=100-199")], |a| {
            want(
                a.status == 206
                    && a.body == big_bytes()[100..200]
                    && a.field("content-range") == Some(&format!("bytes 100-199/{BIG_SIZE}")),
                "a single range",
            )
        }),
        case(
            "GET",
            "/big.bin",
            &[("range", "bytes=0-9,5000-5009")],
            |a| {
                let ct = a.field("content-type").unwrap_or("");
                let body = &a.body;
                let has = |part: &[u8]| body.windows(part.len()).any(|w| w == part);
                want(
                    a.status == 206
                        && ct.starts_with("multipart/byteranges")
                        && has(&big_bytes()[0..10])
                        && has(&big_bytes()[5000..5010]),
                    "multipart ranges",
                )
            },
        ),
        case("GET", "/style.css", &[("if-none-match", etag)], |a| {
            want(a.status == 304 && a.body.is_empty(), "304")
        }),
        case("GET", "/style.css", &[("if-match", "\"nope\"")], |a| {
            want(a.status == 412, "412")
        }),
        case("GET", "/v.css", &[("accept-encoding", "br")], |a| {
            want(
                a.status == 200 && a.field("content-encoding") == Some("br") && a.body == CSS_BR,
                "the br sibling",
            )
        }),
        case("GET", "/v.css", &[("accept-encoding", "gzip")], |a| {
            want(
                a.status == 200 && a.field("content-encoding") == Some("gzip") && a.body == CSS_GZ,
                "the gzip sibling",
            )
        }),
        case("GET", "/noindex/", &[], |a| {
            want(
                a.status == 200 && String::from_utf8_lossy(&a.body).contains("file.txt"),
                "a listing",
            )
        }),
        case("GET", "/missing", &[], |a| {
            want(
                a.status == 404 && a.body == NOT_FOUND_HTML.as_bytes(),
                "404 with the error page",
            )
        }),
        case("GET", "/big.bin", &[], |a| {
            want(
                a.status == 200 && a.body == big_bytes(),
                "big.bin byte-exact",
            )
        }),
    ]
}

/// The HTTP/1.1 answer to a case, from the plain listener.
fn http1(addr: SocketAddr, c: &Case) -> Answer {
    let mut req = format!("{} {} HTTP/1.1\r\nHost: h2.test\r\n", c.method, c.path);
    for (k, v) in &c.fields {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    Answer::from(&request(addr, req.as_bytes()))
}

fn etag_of(addr: SocketAddr) -> String {
    get(addr, "/style.css")
        .header("etag")
        .expect("an ETag")
        .to_string()
}

/// Check every answer a client got: its own check, HTTP/1.1's answer,
/// lower-case names.
#[track_caller]
fn check_all(who: &str, f: &Fixture, cases: &[Case], got: &[Answer]) {
    assert_eq!(got.len(), cases.len(), "{who}: answers");
    let mut bad = Vec::new();
    for (c, a) in cases.iter().zip(got) {
        let what = format!("{who}: {} {} {:?}", c.method, c.path, c.fields);
        if let Err(e) = (c.check)(a) {
            bad.push(format!("{what}: {e}\n{}", a.describe()));
            continue;
        }
        if let Err(e) = same_answer(&http1(f.plain, c), a) {
            bad.push(format!("{what}: not HTTP/1.1's answer: {e}"));
        }
        if let Some((k, _)) = a
            .fields
            .iter()
            .find(|(k, _)| k.bytes().any(|b| b.is_ascii_uppercase()))
        {
            bad.push(format!("{what}: field name {k:?} not lower-case"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} wrong:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n\n")
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A 100 MiB file under the root; returns its bytes.
fn huge(site: &Site) -> Vec<u8> {
    let b = stamped_blocks(100);
    site.write("huge.bin", &b);
    b
}

// ---------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------

/// One curl request over HTTP/2 (`tls`: https with --http2, else
/// --http2-prior-knowledge); the body goes to `out`.
fn curl(f: &Fixture, tls: bool, c: &Case, out: &Path) -> Answer {
    let hdrs = out.with_extension("headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-o"])
        .arg(out)
        .arg("-D")
        .arg(&hdrs);
    cmd.args(["-w", "%{http_version}"]);
    if c.method == "HEAD" {
        cmd.arg("-I");
    }
    for (k, v) in &c.fields {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    let url = if tls {
        let port = f.tls.port();
        cmd.args(["--http2", "--cacert"]).arg(&f.cert.cert);
        cmd.args(["--resolve", &format!("{TLS_NAME}:{port}:127.0.0.1")]);
        format!("https://{TLS_NAME}:{port}{}", c.path)
    } else {
        cmd.arg("--http2-prior-knowledge");
        format!("http://{}{}", f.plain, c.path)
    };
    let o = cmd.arg(&url).output().unwrap();
    assert!(
        o.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "2",
        "curl {url}: not HTTP/2"
    );
    let head = std::fs::read_to_string(&hdrs).unwrap();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    assert!(
        status_line.starts_with("HTTP/2 "),
        "curl {url}: {status_line}"
    );
    let status = status_line[7..].trim().parse().unwrap();
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    // -I writes the head where the body would go: HEAD's "no body" is
    // checked by the other clients.
    let body = if c.method == "HEAD" {
        Vec::new()
    } else {
        std::fs::read(out).unwrap_or_default()
    };
    let _ = std::fs::remove_file(out);
    Answer {
        status,
        fields,
        body,
    }
}

// ---------------------------------------------------------------------------
// Python's h2
// ---------------------------------------------------------------------------

/// All cases on one connection, as concurrent streams, with the `h2`
/// library (sans-IO) over a socket; bodies written to files.
const PY_H2: &str = r#"
import sys, json, socket, ssl
import h2.connection, h2.config, h2.events, h2.settings
host, port, tls, cafile, name, spec = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tls", sys.argv[4], sys.argv[5], sys.argv[6]
cases = json.load(open(spec))
sock = socket.create_connection((host, port), timeout=60)
if tls:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(sock, server_hostname=name)
    assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding=None))
conn.initiate_connection()
conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
conn.increment_flow_control_window(1 << 30)
sock.sendall(conn.data_to_send())
res, ids = {}, []
for c in cases:
    sid = conn.get_next_available_stream_id()
    hdrs = [(":method", c["method"]), (":scheme", "https" if tls else "http"), (":authority", name), (":path", c["path"])]
    hdrs += [(k, v) for k, v in c["fields"]]
    conn.send_headers(sid, hdrs, end_stream=True)
    ids.append(sid)
    res[sid] = {"status": 0, "fields": [], "out": open(c["out"], "wb")}
sock.sendall(conn.data_to_send())
pending = set(ids)
while pending:
    data = sock.recv(1 << 20)
    if not data:
        sys.exit(f"closed with streams {sorted(pending)} open")
    for ev in conn.receive_data(data):
        if isinstance(ev, h2.events.ResponseReceived):
            for k, v in ev.headers:
                k, v = k.decode("latin-1"), v.decode("latin-1")
                if k == ":status":
                    res[ev.stream_id]["status"] = int(v)
                else:
                    res[ev.stream_id]["fields"].append([k, v])
        elif isinstance(ev, h2.events.DataReceived):
            res[ev.stream_id]["out"].write(ev.data)
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            pending.discard(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            sys.exit(f"stream {ev.stream_id} reset: {ev.error_code}")
        elif isinstance(ev, h2.events.ConnectionTerminated):
            sys.exit(f"GOAWAY {ev.error_code} last {ev.last_stream_id}")
    sock.sendall(conn.data_to_send())
conn.close_connection()
sock.sendall(conn.data_to_send())
out = []
for sid in ids:
    r = res[sid]
    r["out"].close()
    out.append({"status": r["status"], "fields": r["fields"]})
print(json.dumps(out))
"#;

/// Method, path, request fields.
type PyCase = (String, String, Vec<(String, String)>);

fn python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import h2"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set and target/pyvenv has no h2 (.ci/run installs it)"
    );
    skip("no target/pyvenv with h2 (`target/pyvenv/bin/python -m pip install h2`)");
    None
}

/// Run `cases` with Python's h2 on one connection; `extra_out`: where each
/// body goes.
fn py_h2(py: &Path, f: &Fixture, tls: bool, cases: &[PyCase], dir: &Path) -> Vec<Answer> {
    let spec: Vec<serde_json::Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (m, p, fl))| {
            serde_json::json!({"method": m, "path": p, "fields": fl, "out": dir.join(format!("body{i}")).display().to_string()})
        })
        .collect();
    let spec_path = dir.join("cases.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let addr = if tls { f.tls } else { f.plain };
    let mut cmd = Command::new(py);
    cmd.args([
        "-c",
        PY_H2,
        "127.0.0.1",
        &addr.port().to_string(),
        if tls { "tls" } else { "plain" },
    ])
    .arg(&f.cert.cert)
    .arg(TLS_NAME)
    .arg(&spec_path);
    let o = run_with_timeout(cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "python h2 ({}): {}",
        if tls { "TLS" } else { "h2c" },
        o.stderr
    );
    let list: Vec<serde_json::Value> = serde_json::from_str(&o.stdout).unwrap();
    list.iter()
        .enumerate()
        .map(|(i, v)| Answer {
            status: v["status"].as_u64().unwrap() as u16,
            fields: v["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| {
                    (
                        kv[0].as_str().unwrap().to_string(),
                        kv[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            body: std::fs::read(dir.join(format!("body{i}"))).unwrap(),
        })
        .collect()
}

fn as_tuples(cases: &[Case]) -> Vec<PyCase> {
    cases
        .iter()
        .map(|c| (c.method.to_string(), c.path.to_string(), c.fields.clone()))
        .collect()
}

engine_tests! {
    /// The raw client over TLS (ALPN h2) and h2c: every case, all as
    /// concurrent streams on one connection; a client offering only
    /// http/1.1 by ALPN gets HTTP/1.1.
    fn raw_client_over_tls_and_h2c(e) {
        let f = fixture_or_skip!(e);
        let cases = cases(&etag_of(f.plain));
        for tls in [false, true] {
            let mut c = if tls {
                H2::connect_tls(f.tls, f.cert.client(&[b"h2", b"http/1.1"]))
            } else {
                H2::connect(f.plain)
            };
            c.authority = TLS_NAME.to_string();
            let ids: Vec<u32> = cases
                .iter()
                .map(|k| {
                    let extra: Vec<(&str, &str)> = k.fields.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                    c.send_request(k.method, k.path, &extra)
                })
                .collect();
            let got: Vec<Answer> = ids
                .iter()
                .map(|id| {
                    let r = c.read_response(*id);
                    check_h2_fields(&r, &format!("stream {id}"));
                    Answer::from(&r)
                })
                .collect();
            check_all(if tls { "raw client, TLS" } else { "raw client, h2c" }, &f, &cases, &got);
        }
        // ALPN http/1.1 only: HTTP/1.1 on the same port.
        let cfg = f.cert.client(&[b"http/1.1"]);
        let tcp = std::net::TcpStream::connect(f.tls).unwrap();
        let conn = rustls::ClientConnection::new(cfg, TLS_NAME.try_into().unwrap()).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        use std::io::{Read, Write};
        s.write_all(b"GET / HTTP/1.1\r\nHost: h2.test\r\nConnection: close\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert!(got.starts_with(b"HTTP/1.1 200"), "{}", show(&got));
    }

    /// `http2 = false`: ALPN offers no h2, a client offering h2 and
    /// http/1.1 gets HTTP/1.1.
    fn http2_false_offers_no_h2(e) {
        let f = fixture_or_skip!(e, "http2 = false");
        let cfg = f.cert.client(&[b"h2", b"http/1.1"]);
        let tcp = std::net::TcpStream::connect(f.tls).unwrap();
        let conn = rustls::ClientConnection::new(cfg, TLS_NAME.try_into().unwrap()).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        use std::io::{Read, Write};
        s.write_all(b"GET / HTTP/1.1\r\nHost: h2.test\r\nConnection: close\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert_ne!(s.conn.alpn_protocol(), Some(&b"h2"[..]));
        assert!(got.starts_with(b"HTTP/1.1 200"), "{}", show(&got));
    }

    /// curl --http2 over TLS and --http2-prior-knowledge over cleartext:
    /// every case, and a 100 MiB file byte-exact.
    fn curl_over_tls_and_prior_knowledge(e) {
        if !have("curl") {
            return skip("curl not installed");
        }
        let f = fixture_or_skip!(e);
        let cases = cases(&etag_of(f.plain));
        let dir = tempfile::tempdir().unwrap();
        for tls in [false, true] {
            let got: Vec<Answer> = cases.iter().enumerate().map(|(i, c)| curl(&f, tls, c, &dir.path().join(format!("b{i}")))).collect();
            check_all(if tls { "curl --http2 (TLS)" } else { "curl --http2-prior-knowledge" }, &f, &cases, &got);
        }
        let huge_bytes = huge(&f.site);
        let big = case("GET", "/huge.bin", &[], |a| want(a.status == 200, "200"));
        for tls in [false, true] {
            let a = curl(&f, tls, &big, &dir.path().join("huge"));
            assert_eq!(a.status, 200);
            assert_bytes_eq(&a.body, &huge_bytes, &format!("curl, 100 MiB, tls {tls}"));
        }
    }

    /// nghttp -nv: several streams on one connection, each 200 and
    /// complete, no RST_STREAM and no GOAWAY but the client's own; bodies
    /// (to stdout without -n) byte-exact, the 100 MiB file too.
    fn nghttp_several_streams_on_one_connection(e) {
        if !have("nghttp") {
            return skip("nghttp not installed (Debian: nghttp2-client)");
        }
        let f = fixture_or_skip!(e);
        let paths = ["/", "/style.css", "/app.js", "/sub/page.html", "/big.bin", "/v.css", "/noindex/"];
        for base in [format!("http://{}", f.plain), format!("https://127.0.0.1:{}", f.tls.port())] {
            let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
            let mut cmd = Command::new("nghttp");
            cmd.args(["-nv", "-t", "30"]).args(&urls);
            let o = run_with_timeout(cmd, Duration::from_secs(60));
            assert!(o.status.success(), "nghttp {base}: {}\n{}", o.stderr, o.stdout);
            let out = o.stdout;
            assert_eq!(count_occurrences(&out, "] Connected"), 1, "{out}");
            let settings = out.lines().filter(|l| l.contains("recv SETTINGS frame") && l.contains("flags=0x00")).count();
            assert_eq!(settings, 1, "one connection, one server SETTINGS:\n{out}");
            let streams: Vec<&str> = out.lines().filter(|l| l.contains("recv (stream_id=") && l.contains(":status: 200")).collect();
            assert_eq!(streams.len(), paths.len(), "{base}: {} streams answered 200:\n{out}", streams.len());
            assert!(!out.contains("recv RST_STREAM"), "{base}:\n{out}");
            assert!(!out.contains("recv GOAWAY"), "{base}:\n{out}");
            for l in out.lines().filter(|l| l.contains("recv (stream_id=")) {
                let field = l.split("recv (stream_id=").nth(1).and_then(|r| r.split_once(") ")).map_or("", |x| x.1);
                let name = match field.strip_prefix(':') {
                    Some(pseudo) => pseudo.split(':').next().unwrap_or(""),
                    None => field.split(':').next().unwrap_or(""),
                };
                assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{l}");
                for c in CONNECTION_FIELDS {
                    assert!(!name.starts_with(&format!("{c}:")), "{l}");
                }
            }
        }
        let want = huge(&f.site);
        let o = Command::new("nghttp").args(["-t", "60", &format!("http://{}/huge.bin", f.plain)]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_bytes_eq(&o.stdout, &want, "nghttp, 100 MiB");
    }

    /// h2load -n 4000 -c4 -m10 over h2c and TLS: every request succeeds.
    fn h2load_no_failures(e) {
        if !have("h2load") {
            return skip("h2load not installed (Debian: nghttp2-client)");
        }
        let f = fixture_or_skip!(e);
        for url in [format!("http://{}/style.css", f.plain), format!("https://127.0.0.1:{}/v.css", f.tls.port())] {
            let mut cmd = Command::new("h2load");
            cmd.args(["-n", "4000", "-c", "4", "-m", "10", &url]);
            let o = run_with_timeout(cmd, Duration::from_secs(120));
            let out = o.stdout;
            assert!(o.status.success(), "h2load {url}: {}\n{out}", o.stderr);
            assert!(out.contains("Application protocol: h2"), "{url}: not h2:\n{out}");
            assert!(
                out.contains("requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored, 0 timeout"),
                "{url}:\n{out}"
            );
            assert!(out.contains("status codes: 4000 2xx"), "{url}:\n{out}");
        }
    }

    /// Python's h2 library: every case as concurrent streams on one
    /// connection, over h2c and TLS, and the 100 MiB file byte-exact.
    fn python_h2_library(e) {
        let Some(py) = python() else { return };
        let f = fixture_or_skip!(e);
        let cases = cases(&etag_of(f.plain));
        let dir = tempfile::tempdir().unwrap();
        for tls in [false, true] {
            let got = py_h2(&py, &f, tls, &as_tuples(&cases), dir.path());
            check_all(if tls { "python h2, TLS" } else { "python h2, h2c" }, &f, &cases, &got);
        }
        let want = huge(&f.site);
        let got = py_h2(&py, &f, false, &[("GET".into(), "/huge.bin".into(), vec![])], dir.path());
        assert_eq!(got[0].status, 200);
        assert_bytes_eq(&got[0].body, &want, "python h2, 100 MiB");
    }
}
