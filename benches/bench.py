#!/usr/bin/env python3
"""tandem's benchmark: tandem (epoll, io_uring) against nginx, h2o, lighttpd
and the fixed-reply loops (benches/ceiling_*.rs), side by side on 127.0.0.1
in one run.

Run it through benches/wrk.sh. Python 3 standard library only; the servers'
configs are in peers.py, the report (tables, verdict, chart) in report.py.

Setup: each server pinned to its own core (`taskset`) with 1 worker, `wrk -t1
-c100` on the other core. Server CPU time per request is the utime+stime
(/proc/PID/stat) of the processes this script started (for nginx: the
workers that are children of the master it started) over the requests wrk
completed. Servers are alternated round by round; every figure is the
median over rounds. The cases (CASES):

Every run is on a server started for it (no warm-up: caches fill during
the run, as on a server just started).

- hot: one URL per file size, keep-alive, and the fixed-reply loops at 1 KiB;
- log: the same with the access log on;
- many: 10,000 distinct files of 1-64 KiB, paths chosen by a wrk Lua script
  uniformly and with a Zipf-like skew, with each server's file cache on, and
  again with it off (tandem `cache_size = 0`, which turns its open-file
  cache off too, nginx without open_file_cache);
- tls: over https (ECDSA P-256, TLS 1.3, AES-128-GCM on both sides), 1 KiB
  and 1 MiB keep-alive and a new connection (full handshake) per request;
- memory: per server a freshly started one, no warm-up: RSS per keep-alive
  connection at 1,000 and 10,000 (opened in bursts of 500, one request each),
  RSS once they left, and 400 clients that pipeline and never read.

Host speed: before the first case and after the last, the fixed-reply epoll
loop (ceiling-epoll) is run once more at 1 KiB, each time freshly started,
one 2 s round, no retry, and its CPU per request compared with the same
loop's in the committed benches/results/latest.csv. On a shared VM the
whole host is at times 1.2-1.4x slower, which moves every server's figures
and their ratios; when start and end differ from each other, or either
from the reference, by more than HOST_DRIFT_PCT % (15), the report warns
at the top. These two runs count in no other figure.

Writes target/bench/<timestamp>/{results.md,results.csv,rounds.csv,chart.svg}
and prints the Markdown. The targets are checked in the verdict, which never
fails the script. Everything started is stopped on exit (also on SIGINT/TERM;
children get PR_SET_PDEATHSIG as a last resort).
"""

import ctypes
import datetime
import os
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
import report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KiB, MiB = 1024, 1024 * 1024


def env(name, default):
    v = os.environ.get(name)
    return default if v is None or v == "" else v


def parse_size(s):
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", s.strip())
    if not m:
        sys.exit(f"bad size {s!r}: use forms like 1k, 256k, 1m, 100m")
    return int(m.group(1)) * {"": 1, "k": KiB, "m": MiB, "g": 1024 * MiB}[m.group(2).lower()]


size_label = report.size_label

QUICK = env("QUICK", "0") == "1"
IDLE_ONLY = env("IDLE_ONLY", "0") == "1"
# QUICK=1: 1 KiB and 1 MiB on one URL (one 2 s round each, no retries), and
# the idle memory case at 1,000 connections: a smoke test under a minute.
# QUICK leaves the HTTP/2 case out (CASES="hot memory h2" QUICK=1 adds it: ~45 s).
CASES = env("CASES", "memory" if IDLE_ONLY else "hot memory" if QUICK else "hot log many tls h2 memory").split()
DURATION = int(env("DURATION", "2" if QUICK else "3"))
# Three rounds, servers alternated: on a shared machine a burst of noise can
# slow one run by 15%; the median of three shrugs off one such run, and the
# noise check below retakes the runs a busy neighbour spoiled.
ROUNDS = int(env("ROUNDS", "1" if QUICK else "3"))
SIZES = [parse_size(s) for s in env("SIZES", "1k 1m" if QUICK else "1k 16k 1m").split()]
# The access-log-on case covers these sizes; the 2-worker case (off unless
# W2_SIZES is set) those.
LOG_SIZES = [parse_size(s) for s in env("LOG_SIZES", "1k").split()]
W2_SIZES = [parse_size(s) for s in env("W2_SIZES", "").split()]
CONNS = int(env("CONNS", "100"))
# For 100 MiB and up: with 100 connections each wrk run would end with about
# as many transfers unfinished as finished, and their CPU would be charged to
# the finished ones.
CONNS_HUGE = int(env("CONNS_HUGE", "10"))
DURATION_HUGE = int(env("DURATION_HUGE", str(DURATION) if QUICK else str(max(DURATION, 10))))
THREADS = int(env("THREADS", "1"))
TARGETS = env("TARGETS", "epoll io_uring nginx h2o lighttpd").split()
# The uncached many-files case and the TLS case: tandem against nginx.
UNCACHED_TARGETS = env("UNCACHED_TARGETS", "epoll io_uring nginx").split()
TLS_TARGETS = env("TLS_TARGETS", "epoll io_uring nginx").split()
# The TLS case's items: 1k and 1m keep-alive, new (full handshake per
# connection, openssl s_time), resumed (wrk with Connection: close).
TLS_ITEMS = env("TLS_ITEMS", "1k 1m new resumed").split()
CEILING = env("CEILING", "1") == "1"
# The HTTP/2 case (CASES=h2): these servers, h2load with this many streams
# per connection, these items (1 KiB over TLS and h2c, 1 MiB over TLS); and
# the idle memory of H2_IDLE_COUNT h2c connections against as many HTTP/1.1
# ones on tandem, each on a fresh server.
H2_TARGETS = env("H2_TARGETS", "epoll io_uring nginx h2o").split()
H2_STREAMS = int(env("H2_STREAMS", "10"))
# 2 s runs: the case adds about 2 minutes to the full run, which stays
# under 15 minutes.
H2_DURATION = int(env("H2_DURATION", "2"))
# From 1 MiB: 1,000 streams of a MiB are ~1 GB in flight, so a 2 s run is
# mostly its start and its stop; a longer run weighs them less.
H2_DURATION_LARGE = int(env("H2_DURATION_LARGE", "5"))
H2_ITEMS = env("H2_ITEMS", "tls-1k h2c-1k tls-1m").split()
H2_IDLE_COUNT = int(env("H2_IDLE_COUNT", "1000"))
# The TLS case also measures what an idle HTTPS keep-alive connection costs
# (TLS_IDLE_COUNT of them, each after its handshake and one request), on
# TLS_TARGETS, each on a fresh server.
TLS_IDLE_COUNT = int(env("TLS_IDLE_COUNT", "1000"))
IDLE_COUNTS = [int(n) for n in env("IDLE_COUNTS", "1000" if QUICK else "1000 10000").split()]
IDLE_BURST = int(env("IDLE_BURST", "500"))
# The non-reading case: clients that each pipeline this many requests for a
# cached file of NONREAD_SIZE and never read a byte.
NONREAD_CLIENTS = int(env("NONREAD_CLIENTS", "0" if QUICK else "400"))
NONREAD_PIPELINE = int(env("NONREAD_PIPELINE", "60"))
NONREAD_SIZE = parse_size(env("NONREAD_SIZE", "60k"))
MANY_FILES = int(env("MANY_FILES", "10000"))
# The Zipf-like skew: the file of popularity rank k is asked with weight 1/k^s.
ZIPF_S = float(env("ZIPF_S", "1.0"))
NOISE = float(env("NOISE", "0.05"))
# The host-speed check (see the docstring): the fixed-reply epoll loop at
# the start and at the end of the run, against the committed run's.
HOST_DRIFT_PCT = float(env("HOST_DRIFT_PCT", "15"))
HOST_DURATION = 2
REFERENCE = os.path.join(REPO, "benches", "results", "latest")
# Other processes using more than this % of a CPU during a run get the
# results flagged as not quiet.
NOISY_PCT = float(env("NOISY_PCT", "10"))
# Such a run is taken again up to QUIET_RETRIES times, as long as retries
# have used less than RETRY_BUDGET seconds in all; the quietest attempt counts.
QUIET_RETRIES = int(env("QUIET_RETRIES", "0" if QUICK else "2"))
RETRY_BUDGET = float(env("RETRY_BUDGET", "60"))
PIN = env("PIN", "1") == "1"
BASE_BIN = os.environ.get("BASE_BIN")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CEILINGS = {"epoll": "ceiling-epoll", "io_uring": "ceiling-io_uring"}
PEERS = ("nginx", "h2o", "lighttpd")
# Where a server that is missing comes from (Debian package names).
PACKAGES = {"wrk": "wrk", "taskset": "util-linux", "nginx": "nginx-light", "h2o": "h2o",
            "lighttpd": "lighttpd", "openssl": "openssl"}
# The CPUs this run may use, taken before this script pins itself.
CPUS = sorted(os.sched_getaffinity(0))

procs = []  # every Popen this script started, stopped on exit
WORK = None
BINS = {}  # "nginx"/"h2o"/"lighttpd"/"tandem"/ceilings -> path
CONFIGS = {}  # (server, variant) -> the config text it ran with
TLS_FILES = {}  # cert, key, client OPENSSL_CONF
retry_spent = [0.0]


# --- processes ---------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def child_setup():
    # PR_SET_PDEATHSIG = 1: if this script dies without cleaning up, the
    # server gets SIGTERM instead of living on.
    _libc.prctl(1, signal.SIGTERM, 0, 0, 0)


def spawn(cmd, log, **kw):
    f = open(log, "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, preexec_fn=child_setup, **kw)
    f.close()
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        except ProcessLookupError:
            pass
    if p in procs:
        procs.remove(p)


def cleanup():
    for p in list(procs):
        try:
            stop(p)
        except Exception:
            pass
    if WORK and os.path.isdir(WORK):
        shutil.rmtree(WORK, ignore_errors=True)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def have(cmd):
    return shutil.which(cmd) or (os.access(f"/usr/sbin/{cmd}", os.X_OK) and f"/usr/sbin/{cmd}")


def need(cmd, package=None, install=True):
    """The path of `cmd`. Missing: installed with apt-get when `install`
    (root or sudo), else None after saying how to install it."""
    package = package or PACKAGES.get(cmd, cmd)
    if have(cmd):
        return have(cmd)
    if not install:
        print(f"{cmd} not found: left out of this run (install it with `sudo apt-get install {package}`)",
              file=sys.stderr)
        return None
    print(f"{cmd} not found: installing the Debian package {package} ...", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    e = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run(sudo + ["apt-get", "update", "-qq"], env=e, timeout=600)
        run(sudo + ["apt-get", "install", "-y", "-qq", package], env=e, timeout=600, stdout=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, OSError) as err:
        sys.exit(f"{cmd} is missing and `apt-get install {package}` failed ({err}): install it and run again")
    if not have(cmd):
        sys.exit(f"{cmd} still missing after installing {package}")
    return have(cmd)


def build():
    """Builds tandem and the ceiling loops into BINS (the host-speed check
    runs the epoll one even with CEILING=0)."""
    import json
    run(["cargo", "build", "--release", "-q"], cwd=REPO, timeout=1800)
    BINS["tandem"] = os.path.join(REPO, "target/release/tandem")
    out = subprocess.run(
        ["cargo", "build", "--release", "-q", "--bench", "ceiling_epoll", "--bench", "ceiling_uring",
         "--message-format=json-render-diagnostics"],
        cwd=REPO, check=True, timeout=1800, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            name = msg["target"]["name"]
            if name == "ceiling_epoll":
                BINS["ceiling-epoll"] = msg["executable"]
            elif name == "ceiling_uring":
                BINS["ceiling-io_uring"] = msg["executable"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    return kids


def stat_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def status_kib(pid, field):
    """A KiB figure of /proc/PID/status (VmRSS, RssFile, ...); 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def rss_kib(pid):
    return status_kib(pid, "VmRSS")


class Server:
    def __init__(self, name, kind, proc, port, workers, tls=False):
        self.name, self.kind, self.proc, self.port, self.workers, self.tls = name, kind, proc, port, workers, tls

    def pids(self):
        # tandem, h2o, lighttpd and the ceilings are one process each (their
        # threads are summed in /proc/PID/stat); nginx is measured by the
        # workers of the master this script started.
        return children(self.proc.pid) if self.kind == "nginx" else [self.proc.pid]

    def cpu_ticks(self):
        return sum(stat_ticks(p) for p in self.pids())

    def rss_kib(self):
        return sum(rss_kib(p) for p in self.pids())

    def code_kib(self):
        """The file-backed part of the RSS: the server's binary and
        libraries paged in (a page fault maps up to 16 pages of them around
        the one it needed, so where code lands in those windows, which
        changes with ASLR from start to start, moves this by 64 KiB)."""
        return sum(status_kib(p, "RssFile") for p in self.pids())


def cpus_for(workers):
    """(server CPUs, client CPU) for taskset: the server on the first
    `workers` CPUs, wrk on the next one, or on the last if there is none."""
    server = CPUS[:workers]
    client = CPUS[workers] if len(CPUS) > workers else CPUS[-1]
    return ",".join(map(str, server)), str(client)


def pinned(cpus, cmd):
    return (["taskset", "-c", cpus] + cmd) if PIN else cmd


def wait_up(srv, what):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=0.2).close()
            if srv.kind != "nginx" or len(children(srv.proc.pid)) >= srv.workers:
                return srv
        except OSError:
            pass
        time.sleep(0.05)
    tail = ""
    for ext in ("out", "err"):
        log = os.path.join(WORK, f"{what}.{ext}")
        if os.path.exists(log):
            tail += open(log, errors="replace").read()[-2000:]
    raise RuntimeError(f"{what} did not start on port {srv.port}:\n{tail}")


def display(target):
    return report.display(target)


def start(target, workers=1, log=False, cache=True, tls=False, root=None, h2=False):
    """Starts `target` (epoll, io_uring, ENGINE@base, ENGINE_rp, nginx, h2o,
    lighttpd, ceiling-ENGINE) on a free port; returns its Server once it
    accepts connections."""
    root = root or os.path.join(WORK, "root")
    port = free_port()
    variant = "-".join(["log" if log else "nolog"] + ([] if cache else ["nocache"]) + (["tls"] if tls else [])
                       + (["h2"] if h2 else []))
    tag = f"{target}-w{workers}-{variant}".replace("@", "_")
    out = os.path.join(WORK, f"{tag}.out")
    cpus = cpus_for(workers)[0]
    o = {"port": port, "root": root, "work": WORK, "tag": tag, "workers": workers, "log": log,
         "cache": cache, "tls": tls, "h2": h2, "cert": TLS_FILES.get("cert"), "key": TLS_FILES.get("key"),
         "conns": max(IDLE_COUNTS + [0]) + 1024, "plain_port": free_port(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}

    def record(text):
        key = (display(target), f"{workers} worker(s), {variant}")
        CONFIGS.setdefault(key, text.replace(WORK, "$WORK").replace(str(port), "$PORT"))

    def write(ext, text):
        path = os.path.join(WORK, f"{tag}.{ext}")
        with open(path, "w") as f:
            f.write(text)
        record(text)
        return path

    if target.startswith("ceiling-"):
        p = spawn(pinned(cpus, [BINS[target], f"127.0.0.1:{port}"]), out)
        return wait_up(Server(target, "ceiling", p, port, 1), tag)
    if target == "nginx":
        conf = write("conf", peers.nginx(o))
        p = spawn(pinned(cpus, [BINS["nginx"], "-c", conf, "-e", f"{WORK}/{tag}.err"]), out)
        return wait_up(Server(target, "nginx", p, port, workers, tls), tag)
    if target == "h2o":
        conf = write("yaml", peers.h2o(o))
        p = spawn(pinned(cpus, [BINS["h2o"], "-c", conf]), out)
        return wait_up(Server(target, "h2o", p, port, workers, tls), tag)
    if target == "lighttpd":
        conf = write("lighttpd.conf", peers.lighttpd(o))
        p = spawn(pinned(cpus, [BINS["lighttpd"], "-D", "-f", conf]), out)
        return wait_up(Server(target, "lighttpd", p, port, workers, tls), tag)
    name, binary = target, BINS["tandem"]
    if name.endswith("@base"):
        name = name[: -len("@base")]
        if not BASE_BIN:
            sys.exit(f"set BASE_BIN to run {target}")
        binary = BASE_BIN
    engine, rp = (name[:-3], "1") if name.endswith("_rp") else (name, "0")
    o["engine"] = engine
    conf = write("toml", peers.tandem(o))
    p = spawn(pinned(cpus, [binary, "-c", conf]), out, env=dict(os.environ, TANDEM_BENCH_REUSEPORT=rp))
    return wait_up(Server(target, "tandem", p, port, workers, tls), tag)


# --- one wrk run -------------------------------------------------------------

UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
UNIT_MB = {"B": 1 / MiB, "KB": 1 / KiB, "MB": 1.0, "GB": 1024.0}
UNIT_B = {"B": 1, "KB": KiB, "MB": MiB, "GB": 1024 * MiB, "TB": MiB * MiB}


def machine_busy_ticks():
    """user+nice+system of all CPUs (/proc/stat), in clock ticks."""
    with open("/proc/stat") as f:
        v = f.readline().split()
    return int(v[1]) + int(v[2]) + int(v[3])


def own_cpu_s():
    """CPU seconds of this script and its reaped children (wrk)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def wrk(srv, path, size=0, workers=1, conns=None, dur=None, script=None, close=False):
    """One bounded wrk run against `srv`; `size` (the body size, 0 when it
    varies) decides whether CPU is charged per request or per file's worth
    of bytes read. Returns the figures of the run."""
    huge = size >= 100 * MiB
    conns = conns or (CONNS_HUGE if huge else CONNS)
    dur = dur or (DURATION_HUGE if huge else DURATION)
    url = f"{'https' if srv.tls else 'http'}://127.0.0.1:{srv.port}{path}"
    args = ["wrk", f"-t{THREADS}", f"-c{conns}", f"-d{dur}s", f"--timeout={max(10, dur)}s", "--latency"]
    if script:
        args += ["-s", script]
    if close:
        args += ["-H", "Connection: close"]
    cmd = pinned(cpus_for(workers)[1], args + [url])
    e = dict(os.environ, OPENSSL_CONF=TLS_FILES["client_cnf"]) if srv.tls else None
    busy0, own0, t0 = machine_busy_ticks(), own_cpu_s(), time.monotonic()
    before = srv.cpu_ticks()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=child_setup, env=e)
    procs.append(p)
    try:
        out = p.communicate(timeout=dur + 30)[0]
    finally:
        stop(p)
    after = srv.cpu_ticks()
    # What the rest of the machine used meanwhile, in % of one CPU: a run
    # next to a busy neighbour says so instead of passing as a result.
    other = (machine_busy_ticks() - busy0 - (after - before)) / CLK_TCK - (own_cpu_s() - own0)
    other_pct = max(0.0, other) / (time.monotonic() - t0) * 100
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB|TB) read", out)
    reqs = int(m.group(1)) if m else 0
    secs = float(m.group(2)) * UNIT_S[m.group(3)] if m else dur
    # CPU is charged per request completed, except from 1 MiB up, where the
    # transfers still under way when wrk stops are a sizeable share of the
    # work done: there it is charged per file's worth of bytes read (wrk
    # counts partial responses; headers are noise at that size).
    per = reqs
    if m and size >= MiB:
        per = float(m.group(4)) * UNIT_B[m.group(5)] / size
    lat = {pct: float(v) * UNIT_S[u] * 1e3 for pct, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    mt = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs += int(bad.group(1)) if bad else 0
    if not reqs:
        print(f"  wrk got nothing from {srv.name}:\n{out}", file=sys.stderr)
    return {
        "req_s": reqs / secs if secs else 0.0,
        "mb_s": float(mt.group(1)) * UNIT_MB[mt.group(2)] if mt else 0.0,
        "p50_ms": lat.get("50"),
        "p99_ms": lat.get("99"),
        "cpu_us": (after - before) / CLK_TCK * 1e6 / per if reqs and per else None,
        "errors": errs,
        "conns": conns,
        "other_pct": other_pct,
    }


# How many `openssl s_time -new` clients run side by side on the client's
# core: each makes one full handshake at a time, and waits for the server
# in between.
STIME_CLIENTS = int(env("STIME_CLIENTS", "8"))


def stime(srv, path, dur=None):
    """New TLS connections, each with a full handshake (`openssl s_time
    -new`: no session is ever resumed; wrk and h2load resume theirs), one
    HTTP/1.0 request each, STIME_CLIENTS at once. req_s is connections/s."""
    dur = dur or DURATION
    cmd = pinned(cpus_for(1)[1], [BINS["openssl"], "s_time", "-connect", f"127.0.0.1:{srv.port}", "-new",
                                  "-time", str(dur), "-www", path])
    e = dict(os.environ, OPENSSL_CONF=TLS_FILES["client_cnf"])
    busy0, own0, t0 = machine_busy_ticks(), own_cpu_s(), time.monotonic()
    before = srv.cpu_ticks()
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           preexec_fn=child_setup, env=e) for _ in range(STIME_CLIENTS)]
    procs.extend(ps)
    outs = []
    try:
        for p in ps:
            outs.append(p.communicate(timeout=dur + 30)[0])
    finally:
        for p in ps:
            stop(p)
    after = srv.cpu_ticks()
    wall = time.monotonic() - t0
    other = (machine_busy_ticks() - busy0 - (after - before)) / CLK_TCK - (own_cpu_s() - own0)
    conns, errs = 0, 0
    for out in outs:
        m = re.search(r"(\d+) connections in [\d.]+ real seconds, (\d+) bytes read per connection", out)
        if m:
            conns += int(m.group(1))
            errs += int(m.group(1)) if int(m.group(2)) < KiB else 0
        else:
            errs += 1
            print(f"  s_time got nothing from {srv.name}:\n{out[-500:]}", file=sys.stderr)
    # s_time stops starting connections after `dur`; the last ones end
    # within the wall time measured here.
    return {"req_s": conns / wall, "mb_s": None, "p50_ms": None, "p99_ms": None,
            "cpu_us": (after - before) / CLK_TCK * 1e6 / conns if conns else None,
            "errors": errs, "conns": STIME_CLIENTS, "other_pct": max(0.0, other) / wall * 100}


def h2load(srv, path, size, dur=None):
    """One bounded `h2load -t1 -c{CONNS} -m{H2_STREAMS} -D dur` run against
    `srv` (h2 by ALPN over TLS, pinned to TLS_AES_128_GCM_SHA256; h2c with
    prior knowledge over cleartext). CPU is charged per request h2load
    completed (from 1 MiB up: per file's worth of DATA bytes received); the
    connections' setup (and handshakes) fall inside the measured time."""
    dur = dur or DURATION
    url = f"{'https' if srv.tls else 'http'}://127.0.0.1:{srv.port}{path}"
    args = [BINS["h2load"], "-t1", f"-c{CONNS}", f"-m{H2_STREAMS}", f"-D{dur}"]
    if srv.tls:
        args += [f"--tls13-ciphers={peers.SUITE}"]
    cmd = pinned(cpus_for(1)[1], args + [url])
    busy0, own0, t0 = machine_busy_ticks(), own_cpu_s(), time.monotonic()
    before = srv.cpu_ticks()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=child_setup)
    procs.append(p)
    try:
        out = p.communicate(timeout=dur + 30)[0]
    finally:
        stop(p)
    after = srv.cpu_ticks()
    other = (machine_busy_ticks() - busy0 - (after - before)) / CLK_TCK - (own_cpu_s() - own0)
    other_pct = max(0.0, other) / (time.monotonic() - t0) * 100
    m = re.search(r"finished in ([\d.]+)(us|ms|s|m), ([\d.]+) req/s, ([\d.]+)(B|KB|MB|GB)/s", out)
    r = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                  r"(\d+) timeout", out)
    d = re.search(r"traffic: .*?, [\d.]+\w*B \((\d+)\) data", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    done = int(r.group(2)) if r else 0
    per = done
    if d and size >= MiB:
        per = int(d.group(1)) / size
    if not done:
        print(f"  h2load got nothing from {srv.name}:\n{out[-1500:]}", file=sys.stderr)
    errs = (int(r.group(3)) + int(r.group(4)) + int(r.group(5))) if r else 1
    errs += (int(codes.group(3)) + int(codes.group(4))) if codes else 0
    # From 1 MiB up, req/s too are files' worth of DATA over the run's time
    # (with 1,000 streams in flight, completions come in lumps).
    secs = float(m.group(1)) * UNIT_S[m.group(2)] if m else dur
    req_s = (per / secs if size >= MiB else float(m.group(3))) if m else 0.0
    return {"req_s": req_s, "mb_s": float(m.group(4)) * UNIT_MB[m.group(5)] if m else 0.0,
            "p50_ms": None, "p99_ms": None,
            "cpu_us": (after - before) / CLK_TCK * 1e6 / per if done and per else None,
            "errors": errs, "conns": CONNS, "other_pct": other_pct}


def quiet(job, dur):
    """Runs `job()`; a run next to a busy neighbour is taken again (a bounded
    number of times, within a time budget), and the quietest attempt kept."""
    r = job()
    tries = 0
    while r["other_pct"] > NOISY_PCT and tries < QUIET_RETRIES and retry_spent[0] + dur + 1 <= RETRY_BUDGET:
        t = time.monotonic()
        time.sleep(1)
        again = job()
        tries += 1
        retry_spent[0] += time.monotonic() - t
        if again["other_pct"] < r["other_pct"]:
            r = again
    r["retries"] = tries
    return r


def fresh(target, job, item, **kw):
    """job(srv, item) against `target` freshly started for it (with start's
    `kw`), stopped after: nothing has asked it anything before, as a user's
    server just started (no warm-up: its caches fill during the run)."""
    s = start(target, **kw)
    try:
        return job(s, item)
    finally:
        stop(s.proc)


def rounds(case, items, targets, job, dur_of, **kw):
    """ROUNDS rounds over `items` x `targets` (a different server first each
    round), each run (and each retry) on a freshly started server (`fresh`);
    job(srv, item) -> one run. Returns the runs."""
    runs = []
    for item in items:
        here = [t for t in targets if not t.startswith("ceiling-") or item == KiB]
        for rnd in range(ROUNDS):
            k = rnd % len(here)
            for t in here[k:] + here[:k]:
                r = quiet(lambda: fresh(t, job, item, **kw), dur_of(item))
                r.update(case=case, item=item, server=t, round=rnd + 1)
                runs.append(r)
                tries = r["retries"]
                print(f"  {case:<14} {report.item_label(case, item):>24} {display(t):<28} round {rnd + 1}: "
                      f"{r['req_s']:>10,.0f} req/s {report.fnum(r['cpu_us'], 'us'):>8} µs/req"
                      + (f"  (retried {tries}x, other load {r['other_pct']:.0f}%)" if tries else ""), file=sys.stderr)
                if case == "log":  # keep the disk from filling over a long run
                    mine = os.path.join(WORK, f"{t}-w1-log.access.log".replace("@", "_"))
                    if os.path.exists(mine) and os.path.getsize(mine) == 0 and not t.startswith("ceiling-"):
                        print(f"  warning: {display(t)} wrote no access log lines to {mine}", file=sys.stderr)
                    for fn in os.listdir(WORK):
                        if fn.endswith(".access.log"):
                            os.truncate(os.path.join(WORK, fn), 0)
    return runs


def host_reference():
    """The committed run's fixed-reply epoll loop at 1 KiB (benches/results/
    latest.csv, row hot / 1 KiB / fixed-reply loop (epoll)): {"cpu_us",
    "conns", "stamp"}, or None when there is no such row."""
    import csv
    want = ("hot", report.item_label("hot", KiB), display("ceiling-epoll"))
    try:
        with open(REFERENCE + ".csv", newline="") as f:
            row = next((r for r in csv.DictReader(f) if (r["case"], r["workload"], r["server"]) == want), None)
        with open(REFERENCE + ".md") as f:
            text = f.read()
    except OSError:
        return None
    if not row or not row.get("cpu_us_per_req"):
        return None
    m = re.search(r"\((\d{8}-\d{6})\)", text.split("\n", 1)[0])
    cpu = re.search(r"^\*\*Machine:\*\* (.*?), \d+ CPUs", text, re.M)
    return {"cpu_us": float(row["cpu_us_per_req"]), "conns": int(row["connections"] or CONNS),
            "stamp": m and m.group(1), "cpu": cpu and cpu.group(1)}


def host_speed(when, ref):
    """One run of the fixed-reply epoll loop at 1 KiB on a freshly started
    process (HOST_DURATION s, the reference's connections, no retry): how
    fast the host is now, apart from the cases' figures."""
    r = fresh("ceiling-epoll", lambda s, _: wrk(s, f"/f{KiB}.bin", KiB, conns=ref and ref["conns"],
                                                 dur=HOST_DURATION), None)
    print(f"  host speed, {when}: fixed-reply loop (epoll), 1 KiB: {report.fnum(r['cpu_us'], 'us')} µs/req"
          f" (other load {r['other_pct']:.0f}%)", file=sys.stderr)
    return r


# --- plain HTTP client (memory case) ---------------------------------------------

def request(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())


def read_response(s):
    """Read one whole response from `s` (counted, not kept)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("connection closed before the response head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    left = (int(m.group(1)) if m else 0) - len(body)
    while left > 0:  # count, don't keep: a body may be large
        n = len(s.recv(1 << 20))
        if not n:
            raise OSError("connection closed mid-body")
        left -= n
    return head


def get_once(port, path):
    """One keep-alive request on a new connection; returns the open socket
    once the whole response has arrived."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    request(s, path)
    read_response(s)
    return s


TCP_STATES = {"01": "established", "08": "close-wait", "09": "last-ack", "0B": "closing", "04": "fin-wait-1",
              "05": "fin-wait-2", "03": "syn-recv"}


def server_side(port):
    """{state: count} of the sockets on 127.0.0.1:`port` (the server's
    side: local port `port`), less the listener and TIME_WAIT."""
    found = {}
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            v = line.split()
            if v[1] == want and v[3] in TCP_STATES:
                found[TCP_STATES[v[3]]] = found.get(TCP_STATES[v[3]], 0) + 1
    return found


def closed_by_server(srv, limit_s=30.0):
    """After the clients closed: waits until the server has closed its
    side of every connection (none left on its port but TIME_WAIT), so the
    next measurement starts with nothing of this one's left in the kernel.
    Returns the seconds it took; warns if the server still holds some
    after `limit_s`."""
    t0 = time.monotonic()
    while True:
        left = server_side(srv.port)
        if not left:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit_s:
            print(f"  warning: {display(srv.name)} still holds {left} {limit_s:.0f} s after its clients closed",
                  file=sys.stderr)
            return None
        time.sleep(0.05)


def kernel_tcp():
    """The kernel's TCP state the whole machine shares: memory in pages
    against tcp_mem's pressure threshold, TIME_WAIT sockets, and the
    counters of memory pressure and listen-queue overflows since boot."""
    with open("/proc/net/sockstat") as f:
        tcp = next(line for line in f if line.startswith("TCP:")).split()
    st = dict(zip(tcp[1::2], map(int, tcp[2::2])))
    with open("/proc/sys/net/ipv4/tcp_mem") as f:
        pressure = int(f.read().split()[1])
    counters = {}
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], map(int, values.split()[1:])))
    return {"mem_pages": st.get("mem", 0), "pressure_pages": pressure, "time_wait": st.get("tw", 0),
            "pressures": counters.get("TCPMemoryPressures", 0), "listen_overflows": counters.get("ListenOverflows", 0)}


def settle(srv, start_kib=None, quiet_s=1.0, limit_s=10.0):
    """The server's RSS once it stops changing for `quiet_s` (a server may
    give memory back, or finish work, a timer tick or two later)."""
    last = srv.rss_kib() if start_kib is None else start_kib
    since, end = time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - since < quiet_s and time.monotonic() < end:
        time.sleep(0.25)
        now = srv.rss_kib()
        if now != last:
            last, since = now, time.monotonic()
    return last


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_literal(name, value):
    """An HPACK literal field without indexing, new name (RFC 7541 6.2.2),
    no Huffman; names and values under 127 bytes."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def h2_request(s, path):
    """The connection preface, an empty SETTINGS and one GET on stream 1
    (HEADERS with END_STREAM | END_HEADERS, literal fields only)."""
    block = b"".join(h2_literal(n, v) for n, v in ((b":method", b"GET"), (b":scheme", b"http"),
                                                      (b":authority", b"127.0.0.1"), (b":path", path.encode())))
    s.sendall(H2_PREFACE + h2_frame(4, 0, 0) + h2_frame(1, 0x5, 1, block))


def h2_read_response(s):
    """Reads frames until stream 1 ends (END_STREAM on its HEADERS or DATA);
    acknowledges the server's SETTINGS, as a client must. The socket stays
    open; its SETTINGS ACK may still be on its way to the server."""
    buf = b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("h2: connection closed before the response ended")
            buf += chunk
        n = int.from_bytes(buf[:3], "big")
        kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        buf = buf[9 + n:]
        if kind == 4 and not flags & 1:
            s.sendall(h2_frame(4, 1, 0))
        elif kind == 7:
            raise OSError("h2: GOAWAY from the server")
        elif kind == 3 and stream == 1:
            raise OSError("h2: RST_STREAM on the request")
        elif kind in (0, 1) and stream == 1 and flags & 1:
            return


def tls_client():
    """A TLS 1.3 client context trusting the harness's certificate, ALPN
    http/1.1 (Python's ssl, OpenSSL's default suites)."""
    ctx = ssl.create_default_context(cafile=TLS_FILES["cert"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def idle_case(target, counts=None, h2=False, tls=False):
    """A fresh server, no warm-up: its RSS once it has finished starting
    (unchanged for 0.5 s, no client yet) is the baseline; a server's port
    accepts (into the backlog) before its workers have set up, and what
    they set up is the fresh server's, not the connections'. Whatever
    the connections make it touch (io_uring's buffer ring, pools, slab
    growth, malloc's arenas) is their cost, as on a just-started server;
    the server's code they make it page in is not (a one-off, which moves
    by 64 KiB with where ASLR put the code): it is kept apart (code_kib),
    and the RSS growth with it (rss_bytes_per_conn).
    h2: the server takes h2c by prior knowledge (http2_cleartext), and the
    connections speak it (one GET each) or, h2 == "h1", HTTP/1.1 to it.
    tls: the connections are HTTPS (a full handshake each, then one GET)."""
    counts = counts or IDLE_COUNTS
    srv = start(target, h2=bool(h2), tls=tls)
    ask, answer = (h2_request, h2_read_response) if h2 is True else (request, read_response)
    ctx = tls_client() if tls else None

    def connect():
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        return ctx.wrap_socket(s, server_hostname="localhost") if ctx else s
    socks = []
    res = {"counts": {}}
    try:
        before = settle(srv, quiet_s=0.5)
        code_before = srv.code_kib()
        res["rss_before_kib"] = before
        deadline = time.monotonic() + 180
        for n in sorted(counts):
            while len(socks) < n:
                burst = [connect() for _ in range(min(IDLE_BURST, n - len(socks)))]
                socks += burst
                for s in burst:
                    ask(s, f"/f{KiB}.bin")
                for s in burst:
                    answer(s)
                if time.monotonic() > deadline:
                    raise RuntimeError("memory case: opening connections took over 180 s")
            after = settle(srv)
            if srv.proc.poll() is not None:
                raise RuntimeError(f"{target} died holding {n} idle connections")
            # What the connections cost: the RSS growth less the code they
            # made the server page in (once, whatever their number).
            code = max(0, srv.code_kib() - code_before)
            res["counts"][n] = {"rss_kib": after, "code_kib": code,
                                "rss_bytes_per_conn": (after - before) * 1024 / n,
                                "bytes_per_conn": (after - before - code) * 1024 / n}
        if ctx and socks:
            res["suite"] = f"{socks[0].version()}, {socks[0].cipher()[0]}"
        for s in socks:
            s.close()
        socks = []
        res["closed_s"] = closed_by_server(srv)
        res["rss_left_kib"] = settle(srv, quiet_s=1.5)
    finally:
        for s in socks:
            s.close()
        stop(srv.proc)
    return res


def nonread_case(target):
    """A fresh server; NONREAD_CLIENTS clients each send NONREAD_PIPELINE
    pipelined requests for one file (cached by the first of them) and never
    read. Reports the RSS
    growth per client once the server has stopped making progress, whether
    another client is still answered meanwhile, and the RSS once they left."""
    srv = start(target)
    socks = []
    k0 = kernel_tcp()
    try:
        path = f"/f{NONREAD_SIZE}.bin"
        before = settle(srv, quiet_s=0.5)
        req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() * NONREAD_PIPELINE
        for _ in range(NONREAD_CLIENTS):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            try:
                s.send(req)
            except BlockingIOError:
                pass
            socks.append(s)
        held = settle(srv, quiet_s=1.0)
        # The kernel holds the responses queued for these clients (their
        # send buffers: about 3.6 MiB each at the defaults, over a GiB in
        # all, near tcp_mem's pressure threshold on a 24 GiB machine): the
        # report gives that and the machine's TIME_WAIT count beside the
        # probe, which a machine short of TCP memory could fail.
        k1 = kernel_tcp()
        t = time.monotonic()
        probe_err = None
        try:
            probe = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            connected_ms = (time.monotonic() - t) * 1000
            try:
                request(probe, f"/f{KiB}.bin")
                read_response(probe)
                answered_ms = (time.monotonic() - t) * 1000
            except OSError as err:
                answered_ms, probe_err = None, f"connected in {connected_ms:.0f} ms, no response: {err}"
            probe.close()
        except OSError as err:
            answered_ms, probe_err = None, f"could not connect: {err}"
        if probe_err:
            print(f"  {display(target)}: the probe failed ({probe_err}); kernel TCP now {kernel_tcp()}",
                  file=sys.stderr)
        for s in socks:
            s.close()
        socks = []
        closed_s = closed_by_server(srv)
        left = settle(srv, quiet_s=1.5)
        k2 = kernel_tcp()
    finally:
        for s in socks:
            s.close()
        stop(srv.proc)
    return {"clients": NONREAD_CLIENTS, "rss_before_kib": before, "rss_held_kib": held,
            "kib_per_client": (held - before) / NONREAD_CLIENTS, "probe_ms": answered_ms, "probe_error": probe_err,
            "rss_left_kib": left, "closed_s": closed_s, "tcp_mem_mib": k1["mem_pages"] * PAGE / MiB,
            "tcp_pressure_mib": k1["pressure_pages"] * PAGE / MiB, "time_wait": k1["time_wait"],
            "memory_pressures": k2["pressures"] - k0["pressures"],
            "listen_overflows": k2["listen_overflows"] - k0["listen_overflows"]}


# --- files ------------------------------------------------------------------------

def make_files(root, sizes):
    for size in sorted(set(sizes)):
        with open(os.path.join(root, f"f{size}.bin"), "wb") as f:
            left = size
            while left:
                n = min(left, 4 * MiB)
                f.write(os.urandom(n))
                left -= n


def make_many(root):
    """MANY_FILES files of 1-64 KiB under root/m/<dir>/, 100 per directory;
    and the two path sequences the Lua script walks: uniform, and Zipf-like
    (rank k asked with weight 1/k^ZIPF_S, ranks shuffled over the files so
    popularity is unrelated to size or name). Returns {kind: script}."""
    rnd = random.Random(22)
    blob = os.urandom(64 * KiB)
    paths, total = [], 0
    for i in range(MANY_FILES):
        d = os.path.join(root, "m", str(i // 100))
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        size = rnd.randint(KiB, 64 * KiB)
        total += size
        with open(os.path.join(d, f"{i}.bin"), "wb") as f:
            f.write(blob[:size])
        paths.append(f"/m/{i // 100}/{i}.bin")
    n = 200_000
    ranked = paths[:]
    rnd.shuffle(ranked)
    cum, acc = [], 0.0
    for k in range(1, len(ranked) + 1):
        acc += 1.0 / k ** ZIPF_S
        cum.append(acc)
    seqs = {"uniform": [rnd.choice(paths) for _ in range(n)],
            "zipf": rnd.choices(ranked, cum_weights=cum, k=n)}
    scripts = {}
    for kind, seq in seqs.items():
        lst = os.path.join(WORK, f"many-{kind}.txt")
        with open(lst, "w") as f:
            f.write("\n".join(seq) + "\n")
        script = os.path.join(WORK, f"many-{kind}.lua")
        with open(script, "w") as f:
            f.write(f"""local paths = {{}}
for line in io.lines("{lst}") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end
""")
        scripts[kind] = script
    top = len(set(seqs["zipf"]))
    print(f"many files: {MANY_FILES:,} files, {total / MiB:.0f} MiB; the Zipf sequence touches {top:,} of them",
          file=sys.stderr)
    return scripts, total


def make_tls():
    """An ECDSA P-256 certificate for localhost/127.0.0.1, and the client's
    OpenSSL config that pins TLS 1.3, AES-128-GCM, X25519."""
    cert, key = os.path.join(WORK, "cert.pem"), os.path.join(WORK, "key.pem")
    run([BINS["openssl"], "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    os.chmod(key, 0o644)  # the peers' workers drop privileges and read it at start
    cnf = os.path.join(WORK, "client-openssl.cnf")
    with open(cnf, "w") as f:
        f.write(peers.CLIENT_OPENSSL_CNF)
    TLS_FILES.update(cert=cert, key=key, client_cnf=cnf)


def negotiated(srv):
    """What the pinned client and `srv` agree on: protocol, suite, group."""
    p = subprocess.run([BINS["openssl"], "s_client", "-connect", f"127.0.0.1:{srv.port}", "-servername",
                        "localhost"], input="", capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, OPENSSL_CONF=TLS_FILES["client_cnf"]))
    out = p.stdout + p.stderr
    m = re.search(r"New, (TLSv[\d.]+), Cipher is (\S+)", out)
    g = re.search(r"(?:Server Temp Key|Negotiated TLS1.3 group): (\w+)", out)
    s = re.search(r"Peer signature type: (\S+)", out)
    if not m:
        return "handshake failed"
    return ", ".join(x for x in (m.group(1), m.group(2), g and g.group(1), s and s.group(1)) if x)


# --- machine --------------------------------------------------------------------------

def version(cmd, args, pattern):
    if not cmd:
        return None
    p = subprocess.run([cmd] + args, capture_output=True, text=True)
    m = re.search(pattern, p.stdout + p.stderr)
    return m.group(1) if m else "?"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    versions = {
        "tandem": f"{rev or '?'}{' (uncommitted changes)' if dirty else ''}",
        "nginx": version(BINS.get("nginx"), ["-v"], r"nginx/(\S+)"),
        "h2o": version(BINS.get("h2o"), ["--version"], r"h2o version (\S+)"),
        "lighttpd": version(BINS.get("lighttpd"), ["-v"], r"lighttpd/(\S+)"),
        "wrk": version("wrk", ["-v"], r"wrk (\S+)"),
        "OpenSSL (wrk's, the client)": version(BINS.get("openssl"), ["version"], r"OpenSSL (\S+)"),
    }
    return {"cpu": model, "cpus": os.cpu_count(), "mem_gib": mem, "kernel": os.uname().release,
            "versions": {k: v for k, v in versions.items() if v}}


def strangers():
    """Other wrk/server processes on the machine (they add noise)."""
    ours = {p.pid for p in procs}
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ("wrk", "nginx", "tandem", "h2o", "lighttpd", "h2load") and int(pid) not in ours:
            found.append(f"{comm}[{pid}]")
    return found


# --- main ----------------------------------------------------------------------------

def raise_nofile():
    """Descriptors for the memory case: this script's clients and the
    servers (which inherit the limit). Returns the soft limit now in force."""
    global IDLE_COUNTS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(IDLE_COUNTS + [0]) + NONREAD_CLIENTS + 4096
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < want:
            IDLE_COUNTS = [n for n in IDLE_COUNTS if n + 4096 <= hard] or [max(0, hard - 4096)]
            print(f"RLIMIT_NOFILE hard limit {hard}: the memory case goes up to {max(IDLE_COUNTS)} connections",
                  file=sys.stderr)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main():
    global WORK, TARGETS, UNCACHED_TARGETS, TLS_TARGETS, H2_TARGETS
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    t_all = time.monotonic()
    need("wrk")
    need("taskset")
    if "tls" in CASES or "h2" in CASES:
        BINS["openssl"] = need("openssl")
    if "h2" in CASES:
        BINS["h2load"] = need("h2load", "nghttp2-client")
    # nginx is the reference every target is checked against: installed if
    # missing, as wrk is. h2o and lighttpd are left out (with how to install
    # them) when missing.
    for peer in PEERS:
        if peer in TARGETS + UNCACHED_TARGETS + TLS_TARGETS + (H2_TARGETS if "h2" in CASES else []):
            BINS[peer] = need(peer, install=peer == "nginx")
    TARGETS = [t for t in TARGETS if t not in PEERS or BINS.get(t)]
    UNCACHED_TARGETS = [t for t in UNCACHED_TARGETS if t not in PEERS or BINS.get(t)]
    TLS_TARGETS = [t for t in TLS_TARGETS if t not in PEERS or BINS.get(t)]
    H2_TARGETS = [t for t in H2_TARGETS if t not in PEERS or BINS.get(t)]
    nofile = raise_nofile()

    build()
    # Now, not when the report is written: tandem was just built from the
    # tree as it is, and edits made while the run goes on are not in it.
    mach = machine()
    others = strangers()
    if others:
        print(f"warning: other processes that may add noise: {' '.join(others)}", file=sys.stderr)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(REPO, "target", "bench", stamp)
    os.makedirs(outdir, exist_ok=True)
    WORK = tempfile.mkdtemp(prefix="tandem-bench.")
    root = os.path.join(WORK, "root")
    os.makedirs(root)
    sizes = sorted(set(SIZES))
    make_files(root, set(sizes) | set(LOG_SIZES) | set(W2_SIZES) | {KiB, MiB, NONREAD_SIZE})
    scripts, many_bytes = make_many(root) if "many" in CASES else ({}, 0)
    if "tls" in CASES or "h2" in CASES:
        make_tls()
    # Servers drop to an unprivileged user: let them read the files.
    for d, _, files in os.walk(WORK):
        os.chmod(d, 0o755)
        for fn in files:
            os.chmod(os.path.join(d, fn), 0o644)

    # This script (wrk's parent, and the memory case's client) stays off the
    # servers' core.
    if PIN:
        os.sched_setaffinity(0, {int(cpus_for(1)[1])})
    print(f"cases: {' '.join(CASES)}; {ROUNDS} round(s) of {DURATION} s; results in {outdir}", file=sys.stderr)
    ref = host_reference()
    host = {"start": host_speed("start", ref)}
    t_start = time.monotonic()

    runs, mem, nonread, tls_agreed, tlsmem = [], {}, {}, {}, {}
    hot = lambda s, size: wrk(s, f"/f{size}.bin", size)  # noqa: E731
    dur_of = lambda size: DURATION_HUGE if isinstance(size, int) and size >= 100 * MiB else DURATION  # noqa: E731
    if "hot" in CASES:
        targets = TARGETS + ([CEILINGS[e] for e in ("epoll", "io_uring")] if CEILING and KiB in sizes else [])
        runs += rounds("hot", sizes, targets, hot, dur_of)
    if "log" in CASES and LOG_SIZES:
        runs += rounds("log", sorted(set(LOG_SIZES)), TARGETS, hot, dur_of, log=True)
    if W2_SIZES:
        runs += rounds("2 workers", sorted(set(W2_SIZES)), TARGETS,
                       lambda s, size: wrk(s, f"/f{size}.bin", size, workers=2), dur_of, workers=2)
    if "many" in CASES:
        # Each run on a fresh server: its caches fill (or churn) during the run.
        many = lambda s, kind: wrk(s, "/", script=scripts[kind])  # noqa: E731
        for case, targets, cache in (("many files", TARGETS, True), ("many, no cache", UNCACHED_TARGETS, False)):
            runs += rounds(case, ["uniform", "zipf"], targets, many, dur_of, cache=cache)
    if "tls" in CASES:
        for t in TLS_TARGETS:
            tls_agreed[t] = fresh(t, lambda s, _: negotiated(s), None, tls=True)
        jobs = {"1k": lambda s: wrk(s, f"/f{KiB}.bin", KiB),
                "1m": lambda s: wrk(s, f"/f{MiB}.bin", MiB),
                "new": lambda s: stime(s, f"/f{KiB}.bin"),
                "resumed": lambda s: wrk(s, f"/f{KiB}.bin", KiB, close=True)}
        items = [i for i in jobs if i in TLS_ITEMS]
        runs += rounds("https", items, TLS_TARGETS, lambda s, item: jobs[item](s), dur_of, tls=True)
        if TLS_IDLE_COUNT:
            for t in TLS_TARGETS:
                tlsmem[t] = idle_case(t, [TLS_IDLE_COUNT], tls=True)
                print(f"  TLS memory {display(t):<18} {TLS_IDLE_COUNT:,} idle HTTPS conns: "
                      f"{tlsmem[t]['counts'][TLS_IDLE_COUNT]['bytes_per_conn']:,.0f} B/conn", file=sys.stderr)
    h2mem = {}
    if "h2" in CASES:
        for tls in (True, False):
            items = [i for i in H2_ITEMS if i.startswith("tls-" if tls else "h2c-")]
            if not items:
                continue
            if tls:
                for t in H2_TARGETS:
                    tls_agreed[f"{display(t)} (HTTP/2 listener)"] = fresh(t, lambda s, _: negotiated(s), None,
                                                                          tls=True, h2=True)
            size_of = lambda item: parse_size(item.split("-")[1])  # noqa: E731
            dur_of = lambda item: H2_DURATION_LARGE if size_of(item) >= MiB else H2_DURATION  # noqa: E731
            runs += rounds("h2", items, H2_TARGETS,
                           lambda s, item: h2load(s, f"/f{size_of(item)}.bin", size_of(item), dur=dur_of(item)),
                           dur_of, tls=tls, h2=True)
        for t in [t for t in H2_TARGETS if t not in PEERS]:
            h2mem[t] = {"h1": idle_case(t, [H2_IDLE_COUNT], h2="h1"), "h2": idle_case(t, [H2_IDLE_COUNT], h2=True)}
            b = {k: v["counts"][H2_IDLE_COUNT]["bytes_per_conn"] for k, v in h2mem[t].items()}
            print(f"  h2 memory {display(t):<18} {H2_IDLE_COUNT:,} conns: HTTP/1.1 {b['h1']:,.0f} B/conn, "
                  f"h2c {b['h2']:,.0f} B/conn", file=sys.stderr)
    if "memory" in CASES:
        for t in TARGETS:
            mem[t] = idle_case(t)
            print(f"  memory {display(t):<18} " + ", ".join(
                f"{n:,} conns {v['bytes_per_conn']:,.0f} B/conn" for n, v in mem[t]["counts"].items())
                + f"; after they left {mem[t]['rss_left_kib'] / 1024:.1f} MiB", file=sys.stderr)
        if NONREAD_CLIENTS:
            for t in TARGETS:
                nonread[t] = nonread_case(t)
                print(f"  non-reading {display(t):<18} {nonread[t]['kib_per_client']:,.1f} KiB/client", file=sys.stderr)
    elapsed = time.monotonic() - t_start
    host["end"] = host_speed("end", ref)
    host.update(reference=ref, drift_pct=HOST_DRIFT_PCT, duration=HOST_DURATION, noisy_pct=NOISY_PCT, cpu=mach["cpu"])
    for line in report.host_speed(host):
        print(line.replace("**", ""), file=sys.stderr)

    data = {
        "stamp": stamp, "machine": mach, "runs": runs, "memory": mem, "nonread": nonread, "h2mem": h2mem,
        "tlsmem": tlsmem,
        "tls_agreed": tls_agreed, "configs": CONFIGS, "cases": CASES, "quick": QUICK, "host": host,
        "elapsed_s": elapsed, "total_s": None, "t_all": t_all, "nofile": nofile,
        "retries": sum(r.get("retries", 0) for r in runs), "retry_s": retry_spent[0],
        "settings": {"rounds": ROUNDS, "duration": DURATION, "duration_huge": DURATION_HUGE, "conns": CONNS,
                     "conns_huge": CONNS_HUGE, "threads": THREADS, "noisy_pct": NOISY_PCT,
                     "quiet_retries": QUIET_RETRIES, "retry_budget": RETRY_BUDGET, "noise": NOISE,
                     "pin": PIN, "cpus": cpus_for(1), "idle_counts": IDLE_COUNTS, "idle_burst": IDLE_BURST,
                     "nonread": (NONREAD_CLIENTS, NONREAD_PIPELINE, NONREAD_SIZE), "many_files": MANY_FILES,
                     "many_mib": many_bytes / MiB, "zipf_s": ZIPF_S, "targets": TARGETS,
                     "uncached_targets": UNCACHED_TARGETS, "tls_targets": TLS_TARGETS, "suite": peers.SUITE,
                     "h2_targets": H2_TARGETS, "h2_streams": H2_STREAMS, "h2_duration": H2_DURATION, "h2_duration_large": H2_DURATION_LARGE, "h2_idle_count": H2_IDLE_COUNT,
                     "tls_idle_count": TLS_IDLE_COUNT},
    }
    report.write(data, outdir)
    print(f"written to {outdir}/ in {time.monotonic() - t_all:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
