//! The metrics and health listener (`metrics_listen`): `GET /metrics` (the
//! Prometheus text format) and `GET /healthz` (200 `ok` while serving, 503
//! while starting or once a graceful stop began).
//!
//! There is one HTTP implementation: these requests are parsed and answered
//! by the same `http::Conn` as the site's, driven by a worker of its own (the
//! epoll engine) that serves the small [`Endpoints`] responder. Whatever the
//! `listen` sockets accept or refuse (bare LFs, pipelining, keep-alive, the
//! 400/431/501/505 answers), and their limits and timeouts (`header_timeout`,
//! `max_header_size`, ...), hold here too; a reload hands the listeners to
//! a new worker with the new limits and the new `metrics_listen`, like a
//! generation of workers, and lets the addresses it drops go as the site's
//! are (no connection reset).
//!
//! What differs is policy, not protocol: the table is small
//! (`MAX_CLIENTS`), and when it is full the client closest to its deadline
//! among those with nothing to send (waiting for or sending a head, idle, or
//! lingering) is closed for the new one (`engine::WhenFull::Evict`), so a
//! flood of silent connections cannot fail a health probe; requests here
//! are not written to the access log nor counted in the site's metrics.
//!
//! Always epoll, whatever `engine` says: the listener lives across reloads,
//! which may switch engines; eviction wants a synchronous last read of the
//! client it closes; and the control plane then stays apart from the
//! io_uring engine's own resources (rings, buffer pools).

use std::any::Any;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::holdoff::HoldOff;
use crate::engine::{self, Control, Listener, WhenFull, WorkerSpec};
use crate::http::{Body, Limits, Notes, Now, Reply, Request, Respond, Status};
use crate::metrics::{Health, Registry, WorkerCounters};

/// The connection table: clients served at once. A place is taken from the
/// client that has waited longest for its request when a new one comes.
/// Large enough that a probe, which sends its request as it connects, is
/// read long before a flood could push it out: at 11,000 silent
/// connections a second, 256 places give a new client about 20 ms (64 gave
/// 5 ms, and a probe whose process was descheduled that long under load
/// was closed unanswered). Finding the place to free scans the table:
/// 256 entries a connection, on the metrics worker's own thread.
pub const MAX_CLIENTS: usize = 256;
/// How long a reload waits for the new worker to take the listener over.
const HANDOVER: Duration = Duration::from_secs(5);
/// A dead worker is replaced no sooner than this after it started.
const RESPAWN_AFTER: Duration = Duration::from_secs(1);

const TEXT: &str = "text/plain; charset=utf-8";
/// The Prometheus text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The two endpoints, behind the `Respond` trait like the file responder.
pub struct Endpoints {
    registry: Arc<Registry>,
    /// Test hook (`TANDEM_TEST_PANIC_TARGET`, debug builds only), as the
    /// file responder's: a request for exactly this target panics the
    /// worker, so tests can prove a dead metrics worker is replaced.
    #[cfg(debug_assertions)]
    panic_target: Option<String>,
}

impl Endpoints {
    pub fn new(registry: Arc<Registry>) -> Endpoints {
        Endpoints {
            registry,
            #[cfg(debug_assertions)]
            panic_target: std::env::var("TANDEM_TEST_PANIC_TARGET")
                .ok()
                .filter(|t| !t.is_empty()),
        }
    }
}

impl Respond for Endpoints {
    fn respond(&self, req: &Request<'_>, _: &Now, _: &mut dyn Any, _: &mut Notes) -> Reply {
        #[cfg(debug_assertions)]
        if self.panic_target.as_deref() == Some(req.target) {
            panic!("test hook: TANDEM_TEST_PANIC_TARGET requested");
        }
        let path = req.target.split('?').next().unwrap_or("");
        let (status, ctype, body): (Status, &str, Bytes) = match path {
            "/metrics" => (Status::OK, EXPOSITION, self.registry.render().into()),
            "/healthz" => match self.registry.health() {
                Health::Serving => (Status::OK, TEXT, Bytes::from_static(b"ok\n")),
                Health::Starting => (
                    Status::SERVICE_UNAVAILABLE,
                    TEXT,
                    Bytes::from_static(b"starting\n"),
                ),
                Health::Stopping => (
                    Status::SERVICE_UNAVAILABLE,
                    TEXT,
                    Bytes::from_static(b"stopping\n"),
                ),
            },
            _ => (
                Status::NOT_FOUND,
                TEXT,
                Bytes::from_static(b"not found: try /metrics or /healthz\n"),
            ),
        };
        Reply::new(status, Body::Bytes(body))
            .with_header("Content-Type", ctype)
            .with_header("Cache-Control", "no-store")
    }
}

/// One metrics worker thread.
struct Worker {
    control: Arc<Control>,
    thread: JoinHandle<io::Result<()>>,
    started: Instant,
}

impl Worker {
    /// Wait until it reports `accepting == on` (or has ended), at most
    /// `HANDOVER`.
    fn wait_accepting(&self, on: bool) {
        let deadline = Instant::now() + HANDOVER;
        while self.control.is_accepting() != on && !self.thread.is_finished() {
            if Instant::now() >= deadline {
                let what = if on { "start" } else { "stop" };
                crate::warn!(
                    "metrics listener: a worker did not {what} accepting within {HANDOVER:?}"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn join(self) {
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => crate::error!("metrics listener failed: {e}"),
            // The panic hook logged the panic, with its place.
            Err(_) => crate::error!("metrics listener worker panicked"),
        }
    }
}

/// The metrics listener: `reload` it (a start is the first reload) and
/// `stop` it.
pub struct Server {
    /// The sockets it serves (bound by the daemon, by configured address).
    listeners: Vec<Arc<Listener>>,
    responder: Arc<Endpoints>,
    /// What the current worker runs with (a replacement gets the same).
    limits: Limits,
    shutdown_timeout: Duration,
    /// None while `metrics_listen` is empty.
    current: Option<Worker>,
    /// Workers a reload replaced, finishing what they had.
    retiring: Vec<Worker>,
}

impl Server {
    /// A server with nothing to serve yet: `reload` gives it its listeners.
    pub fn new(registry: Arc<Registry>, limits: Limits, shutdown_timeout: Duration) -> Server {
        Server {
            listeners: Vec::new(),
            responder: Arc::new(Endpoints::new(registry)),
            limits,
            shutdown_timeout,
            current: None,
            retiring: Vec::new(),
        }
    }

    /// Serve `listeners` (bound by the daemon) with these limits and
    /// timeouts (the `listen` sockets'), as a reload does for the site's
    /// workers: a new worker takes them and accepts before the old one
    /// stops; listeners the new set drops are let go (`HoldOff::let_go`)
    /// as the old worker stops accepting, and it finishes what it has. An
    /// `Err` (no thread, no eventfd) leaves everything as it was.
    pub(super) fn reload(
        &mut self,
        listeners: Vec<Arc<Listener>>,
        limits: Limits,
        shutdown_timeout: Duration,
        holdoff: &HoldOff,
    ) -> io::Result<()> {
        self.join_retired();
        let new = match listeners.is_empty() {
            true => None,
            false => Some(spawn(
                &listeners,
                &self.responder,
                limits.clone(),
                shutdown_timeout,
            )?),
        };
        if let Some(w) = &new {
            w.wait_accepting(true);
        }
        let dropped: Vec<Arc<Listener>> = (self.listeners.iter())
            .filter(|l| !listeners.iter().any(|n| Arc::ptr_eq(l, n)))
            .cloned()
            .collect();
        let old = std::mem::replace(&mut self.current, new);
        holdoff.let_go(&dropped, || {
            if let Some(old) = old {
                old.control.set(engine::Command::Retire);
                old.wait_accepting(false);
                self.retiring.push(old);
            }
        });
        for l in &dropped {
            crate::info!("metrics: stopped listening on {}", l.addr);
        }
        (self.listeners, self.limits, self.shutdown_timeout) =
            (listeners, limits, shutdown_timeout);
        Ok(())
    }

    fn join_retired(&mut self) {
        let (done, busy): (Vec<Worker>, Vec<Worker>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|w| w.thread.is_finished());
        done.into_iter().for_each(Worker::join);
        self.retiring = busy;
    }

    /// Called from the daemon's loop: a metrics worker that died (a bug; its
    /// panic is in the error log) is replaced, like a site worker, at most
    /// once per `RESPAWN_AFTER` so one that cannot run does not spin.
    pub fn replace_if_dead(&mut self) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        if !cur.thread.is_finished() || cur.started.elapsed() < RESPAWN_AFTER {
            return;
        }
        let new = match spawn(
            &self.listeners,
            &self.responder,
            self.limits.clone(),
            self.shutdown_timeout,
        ) {
            Ok(w) => w,
            Err(e) => {
                crate::error!("metrics listener: cannot start a replacement: {e}");
                cur.started = Instant::now();
                return;
            }
        };
        std::mem::replace(cur, new).join();
        crate::info!("metrics listener: replacement started");
    }

    /// Close everything now: the daemon is done (the site's workers have
    /// drained, and `/healthz` said 503 all along).
    pub fn stop(&mut self) {
        let all: Vec<Worker> = (self.current.take().into_iter())
            .chain(self.retiring.drain(..))
            .collect();
        for w in &all {
            w.control.set(engine::Command::Abort);
        }
        all.into_iter().for_each(Worker::join);
    }
}

fn spawn(
    listeners: &[Arc<Listener>],
    responder: &Arc<Endpoints>,
    limits: Limits,
    shutdown_timeout: Duration,
) -> io::Result<Worker> {
    let control = Control::new()?;
    let spec = WorkerSpec {
        tls: None,
        redirect: None,
        id: 0,
        listeners: listeners.to_vec(),
        responder: responder.clone(),
        limits,
        access: None,
        control: control.clone(),
        max_connections: MAX_CLIENTS,
        // Its few clients ask for no files.
        fd_budget: usize::MAX,
        when_full: WhenFull::Evict,
        // Not registered: the site's metrics count the site's requests.
        counters: Arc::new(WorkerCounters::default()),
        shutdown_timeout,
    };
    let thread = std::thread::Builder::new()
        .name("tandem-metrics".into())
        .spawn(move || engine::epoll::run(spec))?;
    Ok(Worker {
        control,
        thread,
        started: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::with_request;
    use std::time::SystemTime;

    fn ask(e: &Endpoints, target: &str) -> (u16, String, String) {
        let now = Now::new(Instant::now(), SystemTime::now());
        let mut notes = Notes::new(crate::log::Level::Error);
        let r = with_request(
            &format!("GET {target} HTTP/1.1\r\nHost: m\r\n\r\n"),
            |req| e.respond(req, &now, &mut (), &mut notes),
        );
        let Body::Bytes(b) = r.body else {
            panic!("not a bytes body")
        };
        assert_eq!(r.headers.get("cache-control"), Some("no-store"));
        (
            r.status.0,
            r.headers.get("content-type").unwrap_or("").to_string(),
            String::from_utf8(b.to_vec()).unwrap(),
        )
    }

    #[test]
    fn routes() {
        let r = Registry::new("epoll");
        let e = Endpoints::new(r.clone());
        assert_eq!(ask(&e, "/healthz"), (503, TEXT.into(), "starting\n".into()));
        r.set_serving();
        assert_eq!(ask(&e, "/healthz?x=1"), (200, TEXT.into(), "ok\n".into()));
        let (st, ct, body) = ask(&e, "/metrics");
        assert_eq!((st, ct.as_str()), (200, EXPOSITION));
        assert!(body.contains("# TYPE tandem_requests_total counter"));
        assert_eq!(ask(&e, "/").0, 404);
        assert_eq!(ask(&e, "/metrics/").0, 404);
        r.set_stopping();
        assert_eq!(ask(&e, "/healthz"), (503, TEXT.into(), "stopping\n".into()));
    }
}
