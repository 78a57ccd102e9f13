//! Test harness for the `tandem` integration tests.
//!
//! * [`Server`] starts the real binary on an ephemeral port with a generated
//!   config, waits for its `listening on ADDR` line, and kills it on drop.
//! * [`Conn`] is a raw TCP client with a one-response-at-a-time HTTP/1.1
//!   reader (so pipelining and connection closes can be checked exactly).
//! * [`Site`] builds the standard test site in a temporary directory.
//! * [`engine_tests!`] writes each test once and runs it on both engines.
//!
//! Nothing here sleeps for a fixed time to "let something happen": every
//! wait is on a condition (a stderr line, a byte on a socket, a line in a
//! file, a process exit) with a deadline.

#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod frame;
pub mod h2;
pub mod load;
pub mod tls;

use frame::Framing;

/// How long the server gets to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for reading one response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for "the server closes the connection".
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Written to `secret.txt` OUTSIDE the served root. Must never be served.
pub const SECRET_MARKER: &str = "TANDEM-TOP-SECRET-OUTSIDE-ROOT-7f3a9c";
/// Written to dotfiles inside the root. Must not be served by default.
pub const DOTFILE_MARKER: &str = "TANDEM-DOTFILE-CONTENT-51be02";
/// Size of `big.bin`.
pub const BIG_SIZE: usize = 3 * 1024 * 1024 + 12345;

/// Runs each test once per engine.
///
/// ```ignore
/// engine_tests! {
///     fn get_index(e) { let site = Site::new(); let Some(srv) = Server::start(e, "", &site.root) else { return }; ... }
/// }
/// ```
/// expands to a plain `fn get_index(e: &str)` plus `mod epoll { #[test] fn get_index() }`
/// and `mod io_uring { #[test] fn get_index() }` calling it with the engine name.
/// Attributes written before `fn` (e.g. `#[ignore]`) go on both `#[test]`s.
#[allow(unused_macros)]
macro_rules! engine_tests {
    ($( $(#[$meta:meta])* fn $name:ident($e:ident) $body:block )*) => {
        $( fn $name($e: &str) $body )*

        mod epoll {
            $( $(#[$meta])* #[test] fn $name() { super::$name("epoll") } )*
        }

        mod io_uring {
            $( $(#[$meta])* #[test] fn $name() { super::$name("io_uring") } )*
        }
    };
}

/// Like [`engine_tests!`], and each test also runs over TLS on both
/// engines (`mod epoll_tls`, `mod io_uring_tls`): its engine name is then
/// `epoll+tls` or `io_uring+tls`, which makes `Server::start` add a TLS
/// listener (a certificate made at test time) and `srv.addr()` name it,
/// and [`Conn`] (so `request`, `get`, `srv.connect()`...) speak TLS to it.
#[allow(unused_macros)]
macro_rules! engine_and_tls_tests {
    ($( $(#[$meta:meta])* fn $name:ident($e:ident) $body:block )*) => {
        engine_tests! { $( $(#[$meta])* fn $name($e) $body )* }

        mod epoll_tls {
            $( $(#[$meta])* #[test] fn $name() { super::$name("epoll+tls") } )*
        }

        mod io_uring_tls {
            $( $(#[$meta])* #[test] fn $name() { super::$name("io_uring+tls") } )*
        }
    };
}

/// Starts a server for `$engine` with a TLS listener (`$extra` config and
/// the certificate `$pairs`) serving `$site`, and returns it with its TLS
/// address; returns from the test (skip) when the engine is unavailable.
#[allow(unused_macros)]
macro_rules! start_tls_or_skip {
    ($engine:expr, $extra:expr, $site:expr, $pairs:expr) => {{
        let cfg = $crate::common::tls::tls_config($extra, $pairs);
        let srv = start_or_skip!($engine, &cfg, &$site.root);
        let addr = $crate::common::tls::tls_addr(&srv);
        (srv, addr)
    }};
}

/// Starts a server for `$engine` or returns from the test (skip) when that
/// engine is unavailable on this machine.
#[allow(unused_macros)]
macro_rules! start_or_skip {
    ($engine:expr, $extra:expr, $root:expr) => {
        match $crate::common::Server::start($engine, $extra, $root) {
            Some(s) => s,
            None => return,
        }
    };
}

pub fn tandem_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

/// Is `TANDEM_REQUIRE_IO_URING` set (to anything but "" or "0")? Then no
/// test may skip because io_uring is unavailable: CI must not go green with
/// an engine untested.
pub fn require_io_uring() -> bool {
    std::env::var_os("TANDEM_REQUIRE_IO_URING").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Does a skip reason say io_uring is unavailable?
fn is_io_uring_unavailable(reason: &str) -> bool {
    reason.contains("io_uring") && reason.contains("unavailable")
}

/// Print `SKIP <test>: <reason>` straight to stderr (not through the test
/// harness's output capture, so it shows up in a normal `cargo test` run).
///
/// Panics instead when the reason is that io_uring is unavailable and
/// [`require_io_uring`] says that must not be skipped.
pub fn skip(reason: &str) {
    if is_io_uring_unavailable(reason) && require_io_uring() {
        panic!(
            "{}: {reason} (TANDEM_REQUIRE_IO_URING is set: an engine may not be skipped)",
            test_name()
        );
    }
    let line = format!("SKIP {}: {reason}\n", test_name());
    let _ = io::stderr().write_all(line.as_bytes());
}

pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// True when the tests run as root (where mode 000 files are still readable).
pub fn running_as_root() -> bool {
    uid_of_pid("self") == Some(0)
}

/// Real UID of a process, from `/proc/PID/status`.
pub fn uid_of_pid(pid: &str) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// UID of a user from /etc/passwd.
pub fn uid_of_user(name: &str) -> Option<u32> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? == name {
            f.next()?;
            f.next()?.parse().ok()
        } else {
            None
        }
    })
}

/// Quote a string as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// stderr capture
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Captured {
    text: String,
    eof: bool,
}

type Shared = Arc<(Mutex<Captured>, Condvar)>;

fn spawn_drain<R: Read + Send + 'static>(r: R, shared: Shared) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let (m, cv) = &*shared;
                    m.lock()
                        .unwrap()
                        .text
                        .push_str(&String::from_utf8_lossy(&line));
                    cv.notify_all();
                }
            }
        }
        let (m, cv) = &*shared;
        m.lock().unwrap().eof = true;
        cv.notify_all();
    });
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A running `tandem` child process.
pub struct Server {
    child: Child,
    exited: Option<ExitStatus>,
    addr: SocketAddr,
    engine: String,
    stderr: Shared,
    tmp: tempfile::TempDir,
    config_path: PathBuf,
    access_log: PathBuf,
    /// `ENGINE+tls`: `addr` is the TLS listener, registered for `Conn`.
    tls: Option<tls::Pair>,
}

impl Server {
    /// Start `tandem --engine ENGINE -c CFG` where CFG listens on 127.0.0.1:0,
    /// serves `root`, writes the access log to a temp file and the error log
    /// to stderr, plus the `cfg_extra` lines. A key set in `cfg_extra` replaces
    /// the harness's default for that key.
    ///
    /// Returns `None` (after printing a SKIP line) only when the engine is
    /// io_uring and the server reports it unavailable (exit 2, stderr naming
    /// "io_uring" and "unavailable"). Every other start failure panics.
    /// Set `TANDEM_REQUIRE_IO_URING=1` to make that skip a failure too
    /// (a panic with the reason, see [`skip`]).
    pub fn start(engine: &str, cfg_extra: &str, root: &Path) -> Option<Server> {
        Self::launch(engine, cfg_extra, root, Launch::default())
    }

    /// The address to ask: the TLS listener's for `ENGINE+tls`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The certificate of an `ENGINE+tls` server.
    pub fn tls_pair(&self) -> Option<&tls::Pair> {
        self.tls.as_ref()
    }
    pub fn engine(&self) -> &str {
        &self.engine
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
    pub fn access_log_path(&self) -> &Path {
        &self.access_log
    }
    pub fn stderr_text(&self) -> String {
        self.stderr.0.lock().unwrap().text.clone()
    }

    /// Wait until the server's stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_stderr_until(timeout, |t| t.contains(needle))
    }

    /// Wait until the server's stderr text satisfies `pred`.
    pub fn wait_stderr_until<F: Fn(&str) -> bool>(&self, timeout: Duration, pred: F) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.stderr;
        let mut g = m.lock().unwrap();
        loop {
            if pred(&g.text) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || g.eof {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// A new raw connection to the server.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// Send SIGTERM and wait (up to `timeout`) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.exited {
            return st;
        }
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM {} failed", self.pid());
        match self.wait_exit(timeout) {
            Some(st) => st,
            None => panic!(
                "tandem did not exit within {timeout:?} of SIGTERM\n--- stderr ---\n{}",
                self.stderr_text()
            ),
        }
    }

    /// Wait for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(st);
                return Some(st);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // Pace the polling on stderr activity (exit closes the pipe).
            let (m, cv) = &*self.stderr;
            let g = m.lock().unwrap();
            let _ = cv
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(20)))
                .unwrap();
        }
    }

    /// Current access log contents ("" when the file does not exist yet).
    pub fn access_log(&self) -> String {
        fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// The metrics listener's address (config `metrics_listen`), from its
    /// `metrics and health on ADDR` line.
    pub fn metrics_addr(&self) -> SocketAddr {
        const TAG: &str = "metrics and health on ";
        assert!(
            self.wait_stderr(TAG, START_TIMEOUT),
            "no `{TAG}` line\n{}",
            self.stderr_text()
        );
        let text = self.stderr_text();
        let line = text.lines().find(|l| l.contains(TAG)).unwrap();
        let at = line.find(TAG).unwrap() + TAG.len();
        let addr = line[at..].split_whitespace().next().unwrap_or("");
        addr.parse().unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// The value of an unlabelled sample in a `/metrics` scrape.
    pub fn metric(&self, name: &str) -> u64 {
        let r = get(self.metrics_addr(), "/metrics");
        assert_eq!(r.status, 200, "GET /metrics\n{}", r.describe());
        let body = r.body_str();
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {name} in\n{body}"))
    }

    /// Poll the access log until a line satisfies `pred`; returns that line.
    pub fn wait_access_log<F: Fn(&str) -> bool>(
        &self,
        timeout: Duration,
        pred: F,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.access_log();
            if let Some(l) = text.lines().find(|l| pred(l)) {
                return Some(l.to_string());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20)); // poll interval, not a wait for an event
        }
    }

    /// The access log once it holds at least `n` lines (each worker
    /// writes its own lines, so the last request's line can come before
    /// another worker's earlier ones), or as it is at `timeout`.
    pub fn wait_access_lines(&self, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.access_log();
            if text.lines().count() >= n || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20)); // poll interval, not a wait for an event
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.tls.is_some() {
            tls::unregister(self.addr);
        }
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- tandem stderr (engine {}, {}) ---\n{}--- end of tandem stderr ---",
                self.engine,
                self.addr,
                self.stderr_text()
            );
        }
    }
}

fn find_listening(text: &str) -> Option<SocketAddr> {
    listening_addrs(text).into_iter().next()
}

/// Every address announced by a `listening on ADDR` line in `text`.
pub fn listening_addrs(text: &str) -> Vec<SocketAddr> {
    text.lines().filter_map(parse_listening_line).collect()
}

fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let pos = line.find("listening on ")?;
    let tok = line[pos + "listening on ".len()..]
        .split_whitespace()
        .next()?;
    tok.parse().ok().or_else(|| {
        tok.trim_end_matches([',', ';', '.', ')', '"', '\''])
            .parse()
            .ok()
    })
}

// ---------------------------------------------------------------------------
// Raw HTTP client
// ---------------------------------------------------------------------------

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status line and header lines as received.
    pub head: String,
}

impl Response {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// All values of a header.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Does the `Connection` header list this token?
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers_all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
    /// Short description for assertion messages (head + start of body).
    pub fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        format!("{}\n[body {} bytes] {:?}", self.head, self.body.len(), body)
    }
}

/// A raw TCP connection with a read buffer (bytes past one response stay
/// buffered for the next one).
pub struct Conn {
    /// The socket (under `tls`, when the server is an `ENGINE+tls` one:
    /// read and write through `read_some` and `send` then).
    pub stream: TcpStream,
    buf: Vec<u8>,
    tls: Option<Box<rustls::ClientConnection>>,
}

/// Printable form of request bytes for messages.
pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(400)]).into_owned();
    let s = format!("{s:?}");
    if b.len() > 400 {
        format!("{s}... ({} bytes)", b.len())
    } else {
        s
    }
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).ok();
        Conn::from_stream(stream)
    }

    pub fn send(&mut self, data: &[u8]) {
        self.stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        self.write_all(data)
            .unwrap_or_else(|e| panic!("write {}: {e}", show(data)));
    }

    /// Write, tolerating the server having already closed / reset.
    pub fn try_send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.set_write_timeout(Some(IO_TIMEOUT))?;
        self.write_all(data)
    }

    /// `data` to the socket, or as TLS records (one write, one or more records).
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            None => self.stream.write_all(data),
            Some(t) => {
                let mut s = rustls::Stream::new(t, &mut self.stream);
                s.write_all(data)?;
                s.flush()
            }
        }
    }

    /// One read: bytes from the socket, or the plaintext of TLS records. A
    /// TLS connection closed without close_notify reads as an EOF, as a
    /// plaintext one would.
    pub fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => self.stream.read(buf),
            Some(t) => match rustls::Stream::new(t, &mut self.stream).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }

    /// Half-close: over TLS, close_notify first (the end of the client's data).
    pub fn shutdown_write(&mut self) {
        if let Some(t) = self.tls.as_deref_mut() {
            t.send_close_notify();
            while t.wants_write() {
                if t.write_tls(&mut self.stream).is_err() {
                    break;
                }
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Bytes received but not consumed by a response yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Read more bytes into the buffer. Ok(0) = EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        let left = (deadline - now).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left))?;
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.read_some(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Read one response to a request made with `method` (HEAD => no body).
    pub fn try_read_response(&mut self, method: &str) -> Result<Response, String> {
        self.try_read_response_within(method, IO_TIMEOUT)
    }

    pub fn try_read_response_within(
        &mut self,
        method: &str,
        timeout: Duration,
    ) -> Result<Response, String> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        let head_end = loop {
            if let Some(p) = frame::head_end(&self.buf, &mut scanned) {
                break p;
            }
            if self.buf.len() > 256 * 1024 {
                return Err(format!(
                    "no end of response head in {} bytes",
                    self.buf.len()
                ));
            }
            match self.fill(deadline) {
                Ok(0) => {
                    return Err(if self.buf.is_empty() {
                        "connection closed before any response byte".to_string()
                    } else {
                        format!(
                            "connection closed inside a response head: {}",
                            show(&self.buf)
                        )
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(format!(
                        "reading response head: {e}; received so far: {}",
                        show(&self.buf)
                    ));
                }
            }
        };
        let head_bytes: Vec<u8> = self.buf.drain(..head_end + 4).collect();
        let head = String::from_utf8(head_bytes[..head_end].to_vec())
            .map_err(|_| format!("response head is not UTF-8: {}", show(&head_bytes)))?;
        let mut resp = parse_response_head(&head)?;
        match frame::framing(&resp, method)? {
            Framing::Empty => {}
            Framing::Length(n) => {
                while self.buf.len() < n {
                    match self.fill(deadline) {
                        Ok(0) => {
                            return Err(format!(
                                "connection closed after {} of {n} body bytes; head:\n{head}",
                                self.buf.len()
                            ));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            return Err(format!(
                                "reading body ({} of {n} bytes): {e}; head:\n{head}",
                                self.buf.len()
                            ));
                        }
                    }
                }
                resp.body = self.buf.drain(..n).collect();
            }
            Framing::ToClose => {
                // Close-delimited (should not happen with tandem; tests check
                // Content-Length separately).
                loop {
                    match self.fill(deadline) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                        Err(e) => return Err(format!("reading close-delimited body: {e}")),
                    }
                }
                resp.body = std::mem::take(&mut self.buf);
            }
        }
        Ok(resp)
    }

    /// Read one response (panics with context on failure).
    pub fn read_response(&mut self, method: &str) -> Response {
        self.try_read_response(method)
            .unwrap_or_else(|e| panic!("reading response to {method}: {e}"))
    }

    /// Send `req` and read one response.
    pub fn roundtrip(&mut self, req: &[u8]) -> Response {
        self.send(req);
        let method = request_method(req);
        self.try_read_response(&method)
            .unwrap_or_else(|e| panic!("request {}: {e}", show(req)))
    }

    /// Read everything until the server closes (EOF or reset). Panics if the
    /// connection is still open at the deadline. Returns the bytes received
    /// (including any still buffered).
    pub fn read_to_close(&mut self, timeout: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) => {
                    if self.buf.len() > 64 * 1024 * 1024 {
                        return Err(std::mem::take(&mut self.buf));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(std::mem::take(&mut self.buf));
                }
                // Reset / aborted / broken pipe all mean "closed".
                Err(_) => return Ok(std::mem::take(&mut self.buf)),
            }
        }
    }

    /// Assert that the server closes the connection within `timeout`
    /// without sending anything more. `ctx` describes the request for the
    /// failure message.
    pub fn expect_closed(&mut self, ctx: &str) {
        match self.read_to_close(CLOSE_TIMEOUT) {
            Ok(rest) => assert!(
                rest.is_empty(),
                "{ctx}: expected the server to close the connection, but it sent more bytes first: {}",
                show(&rest)
            ),
            Err(rest) => panic!(
                "{ctx}: server did not close the connection within {CLOSE_TIMEOUT:?} (received meanwhile: {})",
                show(&rest)
            ),
        }
    }

    /// Assert the connection is still open and idle right now: nothing to
    /// read and no EOF, checked with a short read timeout.
    pub fn expect_open(&mut self, ctx: &str) {
        assert!(
            self.buf.is_empty(),
            "{ctx}: unexpected extra bytes {}",
            show(&self.buf)
        );
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 1];
        match self.read_some(&mut b) {
            Ok(0) => panic!("{ctx}: server closed a connection that should stay open"),
            Ok(_) => panic!("{ctx}: unexpected extra byte {:?}", b[0] as char),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{ctx}: connection error on a connection that should stay open: {e}"),
        }
    }
}

/// A response head (status line and header lines, without the final
/// CRLFCRLF) as a [`Response`] with no body yet.
pub fn parse_response_head(head: &str) -> Result<Response, String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let code = parts.next().unwrap_or("");
    let reason = parts.next().unwrap_or("").to_string();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..1000).contains(c) && code.len() == 3)
        .ok_or_else(|| format!("bad status code in {status_line:?}"))?;
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| format!("bad header line {l:?} in\n{head}"))?;
        if k.is_empty() || k.contains(|c: char| c.is_whitespace()) {
            return Err(format!("bad header name {k:?} in\n{head}"));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
        head: head.to_string(),
    })
}

/// The method token of a raw request.
pub fn request_method(req: &[u8]) -> String {
    let end = req.iter().position(|&b| b == b' ').unwrap_or(0);
    String::from_utf8_lossy(&req[..end]).into_owned()
}

/// Send one raw request on a fresh connection and read one response.
pub fn request(addr: SocketAddr, req: &[u8]) -> Response {
    Conn::connect(addr).roundtrip(req)
}

/// `GET path HTTP/1.1` with Host and `Connection: close` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: tandem.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// `HEAD path HTTP/1.1` on a fresh connection.
pub fn head(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        format!("HEAD {path} HTTP/1.1\r\nHost: tandem.test\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// Checks that hold for every response: HTTP/1.1 status line, `Server:
/// tandem`, a valid `Date` near now, exactly one `Content-Length` (except
/// 1xx/204, where one must be 0 if present), and for HEAD-less responses a
/// body of that length (already enforced by the reader).
pub fn check_common(r: &Response, ctx: &str) {
    assert_eq!(
        r.version,
        "HTTP/1.1",
        "{ctx}: status line version\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("server"),
        Some("tandem"),
        "{ctx}: Server header\n{}",
        r.describe()
    );
    let date = r
        .header("date")
        .unwrap_or_else(|| panic!("{ctx}: no Date header\n{}", r.describe()));
    let t = parse_imf_fixdate(date)
        .unwrap_or_else(|| panic!("{ctx}: Date {date:?} is not an IMF-fixdate"));
    let now = now_secs();
    assert!(
        t + 120 >= now && t <= now + 120,
        "{ctx}: Date {date:?} is far from now"
    );
    let cls = r.headers_all("content-length");
    if (100..200).contains(&r.status) || r.status == 204 {
        assert!(
            cls.iter().all(|v| *v == "0"),
            "{ctx}: {} response with non-zero Content-Length\n{}",
            r.status,
            r.describe()
        );
    } else {
        assert_eq!(
            cls.len(),
            1,
            "{ctx}: expected exactly one Content-Length\n{}",
            r.describe()
        );
        assert!(
            cls[0].parse::<u64>().is_ok(),
            "{ctx}: Content-Length {:?} is not a number",
            cls[0]
        );
    }
    assert!(
        r.header("transfer-encoding").is_none(),
        "{ctx}: Transfer-Encoding in a response\n{}",
        r.describe()
    );
}

/// Assert a status, with the request shown on failure.
#[track_caller]
pub fn assert_status(r: &Response, want: u16, req: &str) {
    assert_eq!(
        r.status,
        want,
        "request {req:?}: expected {want}, got:\n{}",
        r.describe()
    );
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // day 0 = 1970-01-01 = Thu

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub fn imf_fixdate(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days.rem_euclid(7)) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Strict IMF-fixdate parser; returns seconds since the epoch.
pub fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 29 || &s[3..5] != ", " || !s.ends_with(" GMT") {
        return None;
    }
    let day: u32 = s.get(5..7)?.parse().ok()?;
    let mon_name = s.get(8..11)?;
    let mon = MONTHS.iter().position(|m| *m == mon_name)? as u32 + 1;
    let year: i64 = s.get(12..16)?.parse().ok()?;
    if &s[7..8] != " "
        || &s[11..12] != " "
        || &s[16..17] != " "
        || &s[19..20] != ":"
        || &s[22..23] != ":"
    {
        return None;
    }
    let hh: u64 = s.get(17..19)?.parse().ok()?;
    let mm: u64 = s.get(20..22)?.parse().ok()?;
    let ss: u64 = s.get(23..25)?.parse().ok()?;
    if !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(year, mon, day);
    if days < 0 {
        return None;
    }
    let secs = days as u64 * 86400 + hh * 3600 + mm * 60 + ss;
    // The weekday must match the date.
    if imf_fixdate(secs)[..3] != s[..3] {
        return None;
    }
    Some(secs)
}

/// Parse the `[22/Nov/2026:19:21:37 +0000]` access-log timestamp (without brackets).
pub fn parse_clf_time(s: &str) -> Option<u64> {
    // 22/Nov/2026:19:21:37 +0000
    if s.len() != 26 || &s[2..3] != "/" || &s[6..7] != "/" || &s[11..12] != ":" || &s[20..21] != " "
    {
        return None;
    }
    let day: u32 = s[0..2].parse().ok()?;
    let mon = MONTHS.iter().position(|m| *m == &s[3..6])? as u32 + 1;
    let year: i64 = s[7..11].parse().ok()?;
    let hh: u64 = s[12..14].parse().ok()?;
    let mm: u64 = s[15..17].parse().ok()?;
    let ss: u64 = s[18..20].parse().ok()?;
    let tz = &s[21..];
    let sign: i64 = match &tz[0..1] {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let tzh: i64 = tz[1..3].parse().ok()?;
    let tzm: i64 = tz[3..5].parse().ok()?;
    let days = days_from_civil(year, mon, day);
    let local = days * 86400 + (hh * 3600 + mm * 60 + ss) as i64;
    Some((local - sign * (tzh * 3600 + tzm * 60)) as u64)
}

pub fn mtime_secs(p: &Path) -> u64 {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .expect("mtime")
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------
// Test site
// ---------------------------------------------------------------------------

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub const INDEX_HTML: &str = "<!doctype html><title>tandem test</title><p>ROOT-INDEX-PAGE</p>\n";
pub const SUB_INDEX_HTML: &str = "<!doctype html><p>SUB-INDEX-PAGE</p>\n";
pub const NOT_FOUND_HTML: &str = "<!doctype html><p>CUSTOM-404-PAGE</p>\n";
pub const STYLE_CSS: &str = "body { color: #123456; } /* STYLE-CSS */\n";
pub const APP_JS: &str = "console.log('APP-JS');\n";

/// The standard test site.
///
/// ```text
/// BASE/                         (tempdir, mode 755)
///   secret.txt                  SECRET_MARKER, outside the root
///   secretdir/secret.txt        SECRET_MARKER
///   www/                        = root
///     index.html  style.css  app.js  logo.png  404.html
///     data.xyz                  unknown extension
///     big.bin                   BIG_SIZE pseudo-random bytes
///     hello world.txt           "HELLO-SPACE"
///     a%20b.txt                 "LITERAL-PERCENT"  (decoding happens once)
///     sub/index.html  sub/page.html
///     noindex/file.txt          directory without an index
///     .secret                   DOTFILE_MARKER
///     dir/.git/config           DOTFILE_MARKER
///     dir/visible.txt           "VISIBLE"
///     link-to-secret     -> BASE/secret.txt     (absolute symlink out of root)
///     rel-link-to-secret -> ../secret.txt       (relative symlink out of root)
///     link-dir-out       -> BASE/secretdir      (directory symlink out of root)
///     link-inside.css    -> style.css           (symlink inside root)
/// ```
pub struct Site {
    dir: tempfile::TempDir,
    pub base: PathBuf,
    pub root: PathBuf,
}

impl Site {
    /// A root directory with nothing in it.
    pub fn empty() -> Site {
        let dir = tempfile::Builder::new()
            .prefix("tandem-site-")
            .tempdir()
            .expect("tempdir");
        set_mode(dir.path(), 0o755);
        let base = dir.path().to_path_buf();
        let root = base.join("www");
        fs::create_dir(&root).unwrap();
        set_mode(&root, 0o755);
        Site { dir, base, root }
    }

    /// The standard site described above.
    pub fn new() -> Site {
        let s = Site::empty();
        fs::write(s.base.join("secret.txt"), SECRET_MARKER).unwrap();
        fs::create_dir(s.base.join("secretdir")).unwrap();
        fs::write(s.base.join("secretdir/secret.txt"), SECRET_MARKER).unwrap();

        s.write("index.html", INDEX_HTML.as_bytes());
        s.write("style.css", STYLE_CSS.as_bytes());
        s.write("app.js", APP_JS.as_bytes());
        s.write("logo.png", &png_bytes());
        s.write("404.html", NOT_FOUND_HTML.as_bytes());
        s.write("data.xyz", b"UNKNOWN-EXTENSION-DATA\x00\x01\x02");
        s.write("big.bin", &big_bytes());
        s.write("hello world.txt", b"HELLO-SPACE");
        s.write("a%20b.txt", b"LITERAL-PERCENT");
        s.write("sub/index.html", SUB_INDEX_HTML.as_bytes());
        s.write("sub/page.html", b"<p>SUB-PAGE</p>");
        s.write("noindex/file.txt", b"NOINDEX-FILE");
        s.write(".secret", DOTFILE_MARKER.as_bytes());
        s.write("dir/.git/config", DOTFILE_MARKER.as_bytes());
        s.write("dir/visible.txt", b"VISIBLE");

        use std::os::unix::fs::symlink;
        symlink(s.base.join("secret.txt"), s.root.join("link-to-secret")).unwrap();
        symlink("../secret.txt", s.root.join("rel-link-to-secret")).unwrap();
        symlink(s.base.join("secretdir"), s.root.join("link-dir-out")).unwrap();
        symlink("style.css", s.root.join("link-inside.css")).unwrap();
        s
    }

    /// Write a file under the root (creating parent directories).
    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, data).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.root.join(rel)).unwrap()
    }

    pub fn tempdir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Make everything removable again (tests chmod things to 000).
        fn walk(p: &Path) {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = fs::symlink_metadata(p) {
                if m.is_dir() {
                    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
                    if let Ok(rd) = fs::read_dir(p) {
                        for e in rd.flatten() {
                            walk(&e.path());
                        }
                    }
                } else if m.is_file() {
                    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o644));
                }
            }
        }
        walk(&self.base);
    }
}

/// A small valid PNG (1x1).
pub fn png_bytes() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8,
        0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
}

pub fn big_bytes() -> Vec<u8> {
    pseudo_random(BIG_SIZE, 0x7a6e_6465_6d00_0001)
}

/// Compare two byte strings; on mismatch report the first differing offset
/// instead of dumping megabytes.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], ctx: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{ctx}: body differs: got {} bytes, want {} bytes, first difference at offset {first}",
        got.len(),
        want.len()
    );
}

// ---------------------------------------------------------------------------
// Daemon life: signals, config rewrites, reloads, fds, custom launches
// (appended for tests/daemon.rs, tests/badclients.rs, tests/differential.rs)
// ---------------------------------------------------------------------------

/// Send signal `sig` (e.g. `libc::SIGHUP`) to `pid`; panics if kill(2) fails.
/// A child process killed (and reaped) when dropped, so that a failed
/// assertion leaves no server running (nor holding the test's stdout).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill takes plain integers.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert!(r == 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
}

/// Does `pid` name a live process (present and not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Wait until `pid` is gone (or a zombie); false on timeout.
pub fn wait_pid_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pid_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10)); // poll interval
    }
}

/// Number of open file descriptors of `pid` (entries of /proc/PID/fd).
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count()
}

/// The targets of `pid`'s open descriptors, for leak reports.
pub fn fd_listing(pid: u32) -> String {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let t = fs::read_link(e.path())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    format!("{} -> {t}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.join("\n")
}

/// Wait until `pid` has at most `max` descriptors. `Err(last count)` on timeout.
pub fn wait_fd_count_at_most(pid: u32, max: usize, timeout: Duration) -> Result<usize, usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = fd_count(pid);
        if n <= max {
            return Ok(n);
        }
        if Instant::now() >= deadline {
            return Err(n);
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

/// Wait until `pid` has at least `min` descriptors. `Err(last count)` on timeout.
pub fn wait_fd_count_at_least(pid: u32, min: usize, timeout: Duration) -> Result<usize, usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = fd_count(pid);
        if n >= min {
            return Ok(n);
        }
        if Instant::now() >= deadline {
            return Err(n);
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to :0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Poll `path` until it exists and its text satisfies `pred`; returns the text.
pub fn wait_file<F: Fn(&str) -> bool>(path: &Path, timeout: Duration, pred: F) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(b) = fs::read(path) {
            let t = String::from_utf8_lossy(&b).into_owned();
            if pred(&t) {
                return Some(t);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

/// Non-overlapping occurrences of `needle` in `hay`.
pub fn count_occurrences(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// The config `Server::start` writes for `cfg_extra`/`root`/`access_log`:
/// the harness defaults for every key `cfg_extra` does not set, then `cfg_extra`.
pub fn compose_config(cfg_extra: &str, root: &Path, access_log: &Path) -> String {
    let extra_keys: Vec<String> = cfg_extra
        .lines()
        .filter_map(|l| {
            let (k, _) = l.trim().split_once('=')?;
            Some(k.trim().to_string())
        })
        .collect();
    let mut cfg = String::new();
    let defaults = [
        ("listen", "[\"127.0.0.1:0\"]".to_string()),
        ("root", toml_str(&root.display().to_string())),
        ("access_log", toml_str(&access_log.display().to_string())),
        ("error_log", toml_str("stderr")),
    ];
    for (k, v) in defaults {
        if !extra_keys.iter().any(|e| e == k) {
            cfg.push_str(&format!("{k} = {v}\n"));
        }
    }
    cfg.push_str(cfg_extra);
    cfg.push('\n');
    cfg
}

/// Options for [`Server::launch`], a more flexible [`Server::start`].
#[derive(Default, Clone)]
pub struct Launch {
    /// Put `engine = "E"` in the config instead of passing `--engine E`
    /// (the command-line flag also wins on reload, so a test that switches
    /// engines by reloading needs this).
    pub engine_in_config: bool,
    /// Extra environment variables for the child.
    pub env: Vec<(String, String)>,
    /// Hand this listening socket to the child as fd 3, with `LISTEN_FDS=1`
    /// and `LISTEN_PID` set to the child's own pid (systemd socket activation).
    pub listen_fd: Option<std::os::fd::RawFd>,
    /// Also capture the lines of this file (an `error_log` path) as if they
    /// were stderr (follows renames like `tail -F`).
    pub tail: Option<PathBuf>,
    /// Start the child with this RLIMIT_NOFILE (soft and hard), like
    /// `ulimit -n` before it.
    pub nofile: Option<u64>,
}

/// Follow `path` like `tail -F`, appending its lines to `shared`, until the
/// Server owning `shared` is gone.
fn spawn_tail(path: PathBuf, shared: std::sync::Weak<(Mutex<Captured>, Condvar)>) {
    use std::os::unix::fs::MetadataExt;
    std::thread::spawn(move || {
        let mut cur: Option<(fs::File, u64)> = None;
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let Some(sh) = shared.upgrade() else { return };
            if cur.is_none()
                && let Ok(f) = fs::File::open(&path)
            {
                let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
                cur = Some((f, ino));
            }
            let mut got = Vec::new();
            if let Some((f, ino)) = cur.as_mut() {
                let _ = f.read_to_end(&mut got);
                // Renamed away and a new file in its place: switch once the old one is drained.
                if got.is_empty()
                    && let Ok(m) = fs::metadata(&path)
                    && m.ino() != *ino
                {
                    cur = None;
                }
            }
            if !got.is_empty() {
                partial.extend_from_slice(&got);
                if let Some(last_nl) = partial.iter().rposition(|&b| b == b'\n') {
                    let lines: Vec<u8> = partial.drain(..=last_nl).collect();
                    let (m, cv) = &*sh;
                    m.lock()
                        .unwrap()
                        .text
                        .push_str(&String::from_utf8_lossy(&lines));
                    cv.notify_all();
                }
            }
            drop(sh);
            std::thread::sleep(Duration::from_millis(15)); // poll interval
        }
    });
}

impl Server {
    /// Like [`Server::start`], with the options of [`Launch`].
    #[allow(clippy::zombie_processes)] // every exit path waits or reaps via try_wait
    pub fn launch(engine: &str, cfg_extra: &str, root: &Path, opts: Launch) -> Option<Server> {
        use std::os::unix::process::CommandExt;
        let tmp = tempfile::Builder::new()
            .prefix("tandem-srv-")
            .tempdir()
            .expect("tempdir");
        set_mode(tmp.path(), 0o755);
        let access_log = tmp.path().join("access.log");
        let config_path = tmp.path().join("tandem.toml");
        let (engine, tls_pair, mut extra) = match engine.strip_suffix("+tls") {
            Some(e) => {
                let (lines, pair) = tls::tls_server_lines(tmp.path(), cfg_extra);
                (e, Some(pair), lines)
            }
            None => (engine, None, cfg_extra.to_string()),
        };
        if opts.engine_in_config && !extra.lines().any(|l| l.trim_start().starts_with("engine")) {
            extra = format!("engine = {}\n{extra}", toml_str(engine));
        }
        let cfg = compose_config(&extra, root, &access_log);
        fs::write(&config_path, &cfg).expect("write config");

        let mut cmd;
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if !opts.engine_in_config {
            args.push("--engine".into());
            args.push(engine.into());
        }
        args.push("-c".into());
        args.push(config_path.clone().into());
        if let Some(fd) = opts.listen_fd {
            // sh sets LISTEN_PID to its own pid, which `exec` hands to tandem.
            cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(
                    "LISTEN_PID=$$; LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec \"$0\" \"$@\"",
                )
                .arg(tandem_bin())
                .args(&args);
            // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if fd == 3 {
                        if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, 3) != 3 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        } else {
            cmd = Command::new(tandem_bin());
            cmd.args(&args);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(n) = opts.nofile {
            let rl = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: only setrlimit (async-signal-safe) between fork and
            // exec, reading a copy of `rl` the closure owns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tandem");
        let shared: Shared = Arc::new((Mutex::new(Captured::default()), Condvar::new()));
        spawn_drain(child.stderr.take().unwrap(), shared.clone());
        if let Some(p) = &opts.tail {
            spawn_tail(p.clone(), Arc::downgrade(&shared));
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let mut exited = None;
        let addr = loop {
            let (m, cv) = &*shared;
            let mut g = m.lock().unwrap();
            if let Some(a) = find_listening(&g.text) {
                break a;
            }
            if exited.is_none() {
                exited = child.try_wait().expect("try_wait");
            }
            if let Some(st) = exited {
                let d2 = Instant::now() + Duration::from_secs(2);
                while !g.eof && Instant::now() < d2 {
                    g = cv.wait_timeout(g, Duration::from_millis(50)).unwrap().0;
                }
                drop(g);
                if let Some(p) = &opts.tail {
                    // Give the tail thread a moment to pick up the last lines.
                    let _ = wait_file(p, Duration::from_millis(300), |t| t.contains("unavailable"));
                }
                let mut text = m.lock().unwrap().text.clone();
                if let Some(p) = &opts.tail {
                    text.push_str(&fs::read_to_string(p).unwrap_or_default());
                }
                let unavailable = st.code() == Some(2)
                    && text.contains("io_uring")
                    && text.contains("unavailable");
                if unavailable && engine == "io_uring" {
                    let line = text
                        .lines()
                        .find(|l| l.contains("unavailable"))
                        .unwrap_or("");
                    // Panics when TANDEM_REQUIRE_IO_URING is set.
                    skip(&format!("io_uring unavailable: {}", line.trim()));
                    return None;
                }
                panic!(
                    "tandem (engine {engine}) exited with {st} before listening.\n\
                     --- config ---\n{cfg}--- stderr/error log ---\n{text}"
                );
            }
            if Instant::now() >= deadline {
                let text = g.text.clone();
                drop(g);
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tandem (engine {engine}) printed no `listening on` line within {START_TIMEOUT:?}.\n\
                     --- config ---\n{cfg}--- stderr/error log ---\n{text}"
                );
            }
            let _ = cv.wait_timeout(g, Duration::from_millis(50)).unwrap();
        };

        let mut srv = Server {
            child,
            exited: None,
            addr,
            engine: engine.to_string(),
            stderr: shared,
            tmp,
            config_path,
            access_log,
            tls: None,
        };
        if let Some(pair) = tls_pair {
            srv.addr = tls::tls_addr(&srv);
            tls::register(srv.addr, &pair);
            srv.tls = Some(pair);
        }
        Some(srv)
    }

    /// Send a signal (e.g. `libc::SIGHUP`) to the server process.
    pub fn signal(&self, sig: i32) {
        send_signal(self.pid(), sig);
    }

    /// The server's temporary directory (config, access log).
    pub fn tmp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Has the process not exited yet?
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait().expect("try_wait") {
            Some(st) => {
                self.exited = Some(st);
                false
            }
            None => true,
        }
    }

    /// Panic unless the server still runs and has not printed "panicked".
    #[track_caller]
    pub fn assert_healthy(&mut self, ctx: &str) {
        let running = self.is_running();
        assert!(
            running,
            "{ctx}: tandem exited ({:?})\n--- stderr ---\n{}",
            self.exited,
            self.stderr_text()
        );
        let text = self.stderr_text();
        assert!(
            !text.contains("panicked"),
            "{ctx}: tandem printed a panic\n--- stderr ---\n{text}"
        );
    }

    /// Open descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        fd_count(self.pid())
    }

    /// Rewrite the config file as `start` composes it (same access log path).
    pub fn write_config(&self, cfg_extra: &str, root: &Path) {
        let cfg = compose_config(cfg_extra, root, &self.access_log);
        fs::write(&self.config_path, cfg).expect("rewrite config");
    }

    /// SIGHUP, then wait for a new `reloaded:` line (`Ok(line)`) or a new
    /// `reload failed` line (`Err(line)`). Panics if neither appears in time.
    pub fn reload(&self, timeout: Duration) -> Result<String, String> {
        const OK: &str = "reloaded: ";
        const BAD: &str = "reload failed";
        let before = self.stderr_text();
        let (n_ok, n_bad) = (
            count_occurrences(&before, OK),
            count_occurrences(&before, BAD),
        );
        self.signal(libc::SIGHUP);
        let done = self.wait_stderr_until(timeout, |t| {
            count_occurrences(t, OK) > n_ok || count_occurrences(t, BAD) > n_bad
        });
        let text = self.stderr_text();
        assert!(
            done,
            "no `{OK}` or `{BAD}` line within {timeout:?} of SIGHUP\n--- stderr ---\n{text}"
        );
        let nth_line = |needle: &str, n: usize| {
            text.lines()
                .filter(|l| l.contains(needle))
                .nth(n)
                .unwrap_or("")
                .to_string()
        };
        if count_occurrences(&text, OK) > n_ok {
            Ok(nth_line(OK, n_ok))
        } else {
            Err(nth_line(BAD, n_bad))
        }
    }
}

/// How reading a response ended, telling "nothing at all came back" apart
/// (the case RFC 9112 §9.3.1 lets a client retry on a reused connection).
#[derive(Debug)]
pub enum ReadOutcome {
    Ok(Response),
    /// EOF or reset before any byte of a response.
    Nothing(String),
    /// Anything else: timeout, bad bytes, closed mid-response.
    Failed(String),
}

impl Conn {
    pub fn read_response_classified(&mut self, method: &str, timeout: Duration) -> ReadOutcome {
        match self.try_read_response_within(method, timeout) {
            Ok(r) => ReadOutcome::Ok(r),
            Err(e) => {
                let timed_out = e.contains("timed out") || e.contains("deadline passed");
                // Head errors leave the received bytes in the buffer.
                let in_head = e.starts_with("connection closed before any response byte")
                    || e.starts_with("reading response head");
                if in_head && self.buf.is_empty() && !timed_out {
                    ReadOutcome::Nothing(e)
                } else {
                    ReadOutcome::Failed(e)
                }
            }
        }
    }
}

/// One parsed combined-log-format line.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub client: String,
    pub time: u64,
    pub request: String,
    pub status: u16,
    pub bytes: u64,
    pub referer: String,
    pub user_agent: String,
}

/// Parse `IP - - [time] "request" status bytes "referer" "user-agent"`.
pub fn parse_combined(line: &str) -> Option<LogLine> {
    fn quoted(s: &str) -> Option<(String, &str)> {
        let s = s.strip_prefix('"')?;
        let mut out = String::new();
        let mut it = s.char_indices();
        while let Some((i, c)) = it.next() {
            match c {
                '\\' => out.push(it.next()?.1),
                '"' => return Some((out, &s[i + 1..])),
                c => out.push(c),
            }
        }
        None
    }
    let (client, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix("- - [")?;
    let (time, rest) = rest.split_once("] ")?;
    let time = parse_clf_time(time)?;
    let (request, rest) = quoted(rest)?;
    let rest = rest.strip_prefix(' ')?;
    let (status, rest) = rest.split_once(' ')?;
    let (bytes, rest) = rest.split_once(' ')?;
    let (referer, rest) = quoted(rest)?;
    let rest = rest.strip_prefix(' ')?;
    let (user_agent, rest) = quoted(rest)?;
    if !rest.is_empty() || status.len() != 3 {
        return None;
    }
    Some(LogLine {
        client: client.to_string(),
        time,
        request,
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        referer,
        user_agent,
    })
}

/// Is the io_uring engine usable here? Starts `tandem --engine io_uring`
/// once (per test binary) and sees whether it serves. When it does not and
/// [`require_io_uring`] is set, panics with the probe's stderr instead of
/// answering false (every caller would skip something on false).
pub fn io_uring_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<(bool, String)> = std::sync::OnceLock::new();
    let (ok, text) = AVAILABLE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("tandem-probe-")
            .tempdir()
            .expect("tempdir");
        let cfg = dir.path().join("probe.toml");
        fs::write(
            &cfg,
            format!(
                "listen = [\"127.0.0.1:0\"]\nroot = {}\naccess_log = \"off\"\nworkers = 1\n",
                toml_str(&dir.path().display().to_string())
            ),
        )
        .unwrap();
        let mut child = Command::new(tandem_bin())
            .args(["--engine", "io_uring", "-c"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tandem");
        let shared: Shared = Arc::new((Mutex::new(Captured::default()), Condvar::new()));
        spawn_drain(child.stderr.take().unwrap(), shared.clone());
        let deadline = Instant::now() + START_TIMEOUT;
        let ok = loop {
            if let Some(a) = find_listening(&shared.0.lock().unwrap().text) {
                break Conn::connect(a)
                    .try_send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .is_ok();
            }
            if child.try_wait().expect("try_wait").is_some() || Instant::now() >= deadline {
                break false;
            }
            let g = shared.0.lock().unwrap();
            let _ = shared.1.wait_timeout(g, Duration::from_millis(50)).unwrap();
        };
        let _ = child.kill();
        let _ = child.wait();
        let text = shared.0.lock().unwrap().text.clone();
        (ok, text)
    });
    if !ok && require_io_uring() {
        panic!(
            "{}: io_uring unavailable (TANDEM_REQUIRE_IO_URING is set: an engine may not be skipped); \
             probe stderr:\n{text}",
            test_name()
        );
    }
    *ok
}

/// Print `NOTE <test>: <msg>` straight to stderr (shown in a normal run,
/// like [`skip`]), for numbers a test reports without failing.
pub fn note(msg: &str) {
    let line = format!("NOTE {}: {msg}\n", test_name());
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Output of [`run_with_timeout`].
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run a command to completion with stdin closed and stdout/stderr captured
/// through files (so a daemonized grandchild holding them cannot block us).
/// Panics if it does not exit within `timeout` (after killing it).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> RunOutput {
    let dir = tempfile::Builder::new()
        .prefix("tandem-run-")
        .tempdir()
        .expect("tempdir");
    let out_p = dir.path().join("stdout");
    let err_p = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_p).unwrap())
        .stderr(fs::File::create(&err_p).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not exit within {timeout:?}; stderr so far:\n{}",
                fs::read_to_string(&err_p).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10)); // poll interval
    };
    RunOutput {
        status,
        stdout: fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: fs::read_to_string(&err_p).unwrap_or_default(),
    }
}

/// Is `tool` a command on PATH? (For tools such as `wrk` that have no
/// option that exits 0.)
pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Reset the connection on close (SO_LINGER with a zero timeout).
pub fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_sockopt(s, libc::SOL_SOCKET, libc::SO_LINGER, &l);
}

/// setsockopt(2) on a test socket with `value` as the option's bytes.
pub fn set_sockopt<T>(s: &TcpStream, level: i32, name: i32, value: &T) {
    use std::os::fd::AsRawFd;
    // SAFETY: passes a pointer to a live T and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt({level}, {name}): {}",
        io::Error::last_os_error()
    );
}

/// A read or write that ran into its timeout (or would block).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer reset the connection (or it broke under a write).
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// A numeric field of /proc/PID/status (`Threads:`, `VmRSS:` ...), if present.
pub fn proc_status_field(pid: u32, field: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Number of threads of `pid` that are the server's own (main, workers,
/// helpers), from /proc/PID/task. The kernel's io_uring threads in the same
/// thread group (`iou-wrk-*`, the io-wq pool a ring grows when an op must
/// block, and `iou-sqp-*`) are left out: how many the kernel keeps, and for
/// how long, is its own affair, and they go with their ring, so an old
/// worker that did not exit still shows as its own thread.
pub fn thread_count(pid: u32) -> usize {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| !comm.starts_with("iou-"))
        .count()
}

/// A server process after a load has ended: its descriptors, threads and
/// memory against a baseline taken before the load.
pub struct Settled {
    /// `Ok(count)` once at most `fd_base + 4` (within 15 s), else `Err(count)`.
    pub fds: Result<usize, usize>,
    /// The threads came back to the baseline's count (within 10 s).
    pub threads_ok: bool,
    pub rss_kib: u64,
}

impl Settled {
    /// Wait (bounded) for `pid` to come back to `fd_base` descriptors (4
    /// more allowed) and `threads_base` threads, then read its RSS.
    pub fn wait(pid: u32, fd_base: usize, threads_base: usize) -> Settled {
        let fds = wait_fd_count_at_most(pid, fd_base + 4, Duration::from_secs(15));
        let deadline = Instant::now() + Duration::from_secs(10);
        while thread_count(pid) > threads_base && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20)); // poll interval
        }
        Settled {
            fds,
            threads_ok: thread_count(pid) <= threads_base,
            rss_kib: rss_kib(pid),
        }
    }

    /// What is wrong against the baseline, RSS growth allowed up to `mib`.
    pub fn problems(
        &self,
        pid: u32,
        fd_base: usize,
        threads_base: usize,
        rss_base: u64,
        mib: u64,
    ) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(n) = self.fds {
            p.push(format!(
                "{n} descriptors 15 s after the load, baseline {fd_base} (+4 allowed):\n{}",
                fd_listing(pid)
            ));
        }
        if !self.threads_ok {
            p.push(format!(
                "{} threads 10 s after the load, {threads_base} at the baseline: old workers did not exit",
                thread_count(pid)
            ));
        }
        if self.rss_kib > rss_base + mib * 1024 {
            p.push(format!(
                "RSS {} KiB after the load, {rss_base} KiB warm: grew by more than {mib} MiB",
                self.rss_kib
            ));
        }
        p
    }
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_field(pid, "VmRSS:").unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// `data` gzip-compressed (flate2, default level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A file of `mib` MiB where every 1 MiB block is the same pseudo-random
/// block stamped with its index in the first 8 bytes (cheap to build, and a
/// shifted, repeated or reordered block shows up in a comparison).
pub fn stamped_blocks(mib: usize) -> Vec<u8> {
    let block = pseudo_random(1 << 20, 0x5eed_b10c);
    let mut out = Vec::with_capacity(mib << 20);
    for i in 0..mib {
        out.extend_from_slice(&(i as u64).to_le_bytes());
        out.extend_from_slice(&block[8..]);
    }
    out
}

impl Conn {
    /// Wrap a stream the test opened itself (and finish a TLS handshake
    /// on it when it goes to an `ENGINE+tls` server).
    pub fn from_stream(mut stream: TcpStream) -> Conn {
        let tls = (stream.peer_addr().ok())
            .and_then(tls::client_for)
            .map(|cfg| tls::handshake(cfg, &mut stream));
        Conn {
            stream,
            buf: Vec::new(),
            tls,
        }
    }
}

/// RLIMIT_NOFILE of this process raised to at least `n` (soft, up to the
/// hard limit); false when the hard limit is lower.
pub fn ensure_nofile(n: u64) -> bool {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    if rl.rlim_cur >= n {
        return true;
    }
    if rl.rlim_max < n {
        return false;
    }
    rl.rlim_cur = n;
    // SAFETY: setrlimit reads the rlimit we own.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) == 0 }
}

/// Bytes a socket has received and not read yet (FIONREAD).
pub fn unread_bytes(s: &std::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, to the live `n`.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// A connection whose receive buffer is set small before connecting, so the
/// window it advertises is small from the start. (Shrinking it after the
/// handshake instead stalls loopback TCP on the client's side for tens of
/// seconds, whatever the server does.)
pub fn connect_with_rcvbuf(addr: std::net::SocketAddr, bytes: libc::c_int) -> Conn {
    connect_with_options(addr, &[(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)])
}

/// A connection to `addr` whose socket options `(level, option, value)`
/// are set before it connects (so a receive buffer or an MSS applies from
/// the handshake on).
pub fn connect_with_options(
    addr: std::net::SocketAddr,
    opts: &[(libc::c_int, libc::c_int, libc::c_int)],
) -> Conn {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("{addr}: the harness listens on IPv4")
    };
    // SAFETY: plain socket calls on a descriptor this function owns until
    // it is handed to TcpStream; setsockopt reads one live c_int.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        for &(level, opt, value) in opts {
            let rc = libc::setsockopt(fd, level, opt, (&raw const value).cast(), size);
            assert_eq!(
                rc,
                0,
                "setsockopt({level}, {opt}): {}",
                std::io::Error::last_os_error()
            );
        }
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::connect(fd, (&raw const sin).cast(), len);
        assert_eq!(rc, 0, "connect {addr}: {}", std::io::Error::last_os_error());
        stream.set_nodelay(true).ok();
        Conn::from_stream(stream)
    }
}
