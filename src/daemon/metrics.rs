//! The metrics and health listener (`metrics_listen`): `GET /metrics` (the
//! Prometheus text format) and `GET /healthz` (200 `ok` while serving, 503
//! while starting or once a graceful stop began).
//!
//! Not the hot path: one thread polls the listeners and a stop pipe; each
//! connection gets a short-lived thread with blocking std I/O, one request,
//! then close. Bounded everywhere: at most `MAX_CLIENTS` at once, a request
//! head of at most `MAX_REQUEST` bytes, and `CLIENT_TIMEOUT` for the whole
//! exchange, so a client that never sends costs a thread for that long and
//! no more. When every place is taken, the client that has been sending its
//! head the longest is dropped to make room for the new one (only when all
//! are past their head is the new one closed): otherwise a few silent
//! connections, renewed every `CLIENT_TIMEOUT`, would fail every health
//! probe. The worker threads never see any of it: a scrape sums their
//! counters (`metrics::Registry`).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::Listener;
use crate::metrics::Registry;
use crate::syscall;

/// Clients served at once; more are closed at once.
const MAX_CLIENTS: usize = 16;
/// Largest request head read.
const MAX_REQUEST: usize = 4096;
/// The whole exchange with one client: reading its request and writing the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The running metrics listener; `stop` ends it.
pub struct Server {
    thread: JoinHandle<()>,
    stop: UnixStream,
}

impl Server {
    /// Serve `listeners` (bound by the daemon, non-blocking) from a new thread.
    pub fn start(listeners: Vec<Listener>, registry: Arc<Registry>) -> io::Result<Server> {
        let (stop_rd, stop) = UnixStream::pair()?;
        let listeners: Vec<TcpListener> = listeners
            .into_iter()
            .map(|l| TcpListener::from(l.fd))
            .collect();
        let thread = std::thread::Builder::new()
            .name("tandem-metrics".into())
            .spawn(move || accept_loop(&listeners, &stop_rd, &registry))?;
        Ok(Server { thread, stop })
    }

    /// Stop accepting and wait for the accept thread (clients still being
    /// answered finish within `CLIENT_TIMEOUT`, or end with the process).
    pub fn stop(self) {
        // The other end is polled: a byte, or the close below, wakes it.
        let _ = (&self.stop).write(&[1]);
        drop(self.stop);
        if self.thread.join().is_err() {
            crate::error!("metrics listener thread panicked");
        }
    }
}

/// The clients being answered, in the order they came.
#[derive(Default)]
struct Clients {
    next: u64,
    all: Vec<Client>,
}

struct Client {
    id: u64,
    /// Still sending its request head (the only ones that may be dropped).
    reading: bool,
    /// The same socket as the serving thread's, to shut it down.
    stream: TcpStream,
}

impl Clients {
    /// Make room for one more client: None when every place is taken by a
    /// client past its head; else its id. The oldest client still sending
    /// its head is shut down if need be (its thread's read then ends).
    fn admit(&mut self, stream: &TcpStream) -> Option<u64> {
        if self.all.len() >= MAX_CLIENTS {
            let oldest = self.all.iter().position(|c| c.reading)?;
            let old = self.all.remove(oldest);
            let _ = old.stream.shutdown(std::net::Shutdown::Both);
        }
        let stream = stream.try_clone().ok()?;
        let id = self.next;
        self.next += 1;
        self.all.push(Client {
            id,
            reading: true,
            stream,
        });
        Some(id)
    }

    /// Client `id` has sent its whole head: it keeps its place.
    fn has_read(&mut self, id: u64) {
        if let Some(c) = self.all.iter_mut().find(|c| c.id == id) {
            c.reading = false;
        }
    }

    /// Client `id` is done (or was dropped already).
    fn gone(&mut self, id: u64) {
        self.all.retain(|c| c.id != id);
    }
}

fn lock(clients: &Mutex<Clients>) -> std::sync::MutexGuard<'_, Clients> {
    clients.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(listeners: &[TcpListener], stop: &UnixStream, registry: &Arc<Registry>) {
    let clients = Arc::new(Mutex::new(Clients::default()));
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| l.as_raw_fd())
        .chain([stop.as_raw_fd()])
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `fds` is a live array of `fds.len()` pollfds.
        match syscall!(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) }) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::error!("metrics listener: poll: {e}");
                return;
            }
        }
        if fds.last().is_some_and(|p| p.revents != 0) {
            return;
        }
        for (i, l) in listeners.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            loop {
                let (stream, peer) = match l.accept() {
                    Ok(x) => x,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and the like: the level-triggered poll
                        // would report the same connection again at once,
                        // so pause a little instead of spinning.
                        crate::warn!("metrics listener: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                };
                let Some(id) = lock(&clients).admit(&stream) else {
                    crate::debug!("metrics listener: {peer}: too many clients, closed");
                    continue;
                };
                let (reg, cl) = (registry.clone(), clients.clone());
                let spawned = std::thread::Builder::new()
                    .name("tandem-metrics-client".into())
                    .spawn(move || {
                        if let Err(e) = serve(stream, &reg, || lock(&cl).has_read(id)) {
                            crate::debug!("metrics listener: {peer}: {e}");
                        }
                        lock(&cl).gone(id);
                    });
                if let Err(e) = spawned {
                    lock(&clients).gone(id);
                    crate::warn!("metrics listener: cannot start a client thread: {e}");
                }
            }
        }
    }
}

/// Answer one request on `s`, then close; `has_read` is called once the
/// whole head is in.
fn serve(mut s: TcpStream, registry: &Registry, has_read: impl FnOnce()) -> io::Result<()> {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    s.set_nonblocking(false)?;
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let head_end = loop {
        if let Some(p) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(p);
        }
        if len == buf.len() {
            break None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[len..]) {
            Ok(0) => return Ok(()),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    has_read();
    let (status, ctype, body): (&str, &str, String) = match head_end {
        None => (
            "431 Request Header Fields Too Large",
            TEXT,
            "request too large\n".into(),
        ),
        Some(end) => route(&buf[..end], registry),
    };
    let head_only = buf.starts_with(b"HEAD ");
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: tandem\r\nContent-Type: {ctype}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    s.set_write_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ))?;
    s.write_all(out.as_bytes())?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

const TEXT: &str = "text/plain; charset=utf-8";
/// The Prometheus text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to a request head (without its final CRLF CRLF).
fn route(head: &[u8], registry: &Registry) -> (&'static str, &'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    if !matches!(parts.next(), Some(v) if v.starts_with(b"HTTP/1.")) {
        return ("400 Bad Request", TEXT, "bad request\n".into());
    }
    if method != b"GET" && method != b"HEAD" {
        return ("405 Method Not Allowed", TEXT, "GET or HEAD\n".into());
    }
    match path {
        b"/metrics" => ("200 OK", EXPOSITION, registry.render()),
        b"/healthz" => match registry.health() {
            crate::metrics::Health::Serving => ("200 OK", TEXT, "ok\n".into()),
            crate::metrics::Health::Starting => {
                ("503 Service Unavailable", TEXT, "starting\n".into())
            }
            crate::metrics::Health::Stopping => {
                ("503 Service Unavailable", TEXT, "stopping\n".into())
            }
        },
        _ => (
            "404 Not Found",
            TEXT,
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = Registry::new("epoll");
        assert_eq!(
            route(b"GET /healthz HTTP/1.1", &r).0,
            "503 Service Unavailable"
        );
        r.set_serving();
        let (st, ct, body) = route(b"GET /healthz?x=1 HTTP/1.1\r\nHost: a", &r);
        assert_eq!((st, ct, body.as_str()), ("200 OK", TEXT, "ok\n"));
        let (st, ct, body) = route(b"HEAD /metrics HTTP/1.0", &r);
        assert_eq!((st, ct), ("200 OK", EXPOSITION));
        assert!(body.contains("# TYPE tandem_requests_total counter"));
        assert_eq!(
            route(b"POST /metrics HTTP/1.1", &r).0,
            "405 Method Not Allowed"
        );
        assert_eq!(route(b"GET / HTTP/1.1", &r).0, "404 Not Found");
        assert_eq!(route(b"GET /metrics", &r).0, "400 Bad Request");
        r.set_stopping();
        let (st, _, body) = route(b"GET /healthz HTTP/1.1", &r);
        assert_eq!(
            (st, body.as_str()),
            ("503 Service Unavailable", "stopping\n")
        );
    }
}
