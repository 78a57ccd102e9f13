#!/usr/bin/env python3
"""tandem's wrk benchmark: tandem (epoll, io_uring), nginx and the ceiling loops
(benches/ceiling_*.rs) measured side by side on 127.0.0.1 in one run.

Run it through benches/wrk.sh. Python 3 standard library only.

Setup (issue #9): each server pinned to its own core(s) (`taskset`), wrk
`-t1 -c100` on another core, keep-alive. Server CPU time per request is the
utime+stime (/proc/PID/stat) of the processes this script started (for nginx:
the workers that are children of the master it started) over the requests wrk
completed. Servers are alternated round by round; every figure is the median
over rounds. The idle case starts each server afresh (no warm-up: what the
first connections make a server touch is part of their cost, as a user of a
just-started server sees it), opens keep-alive connections in bursts (one
request each) and reports the server's RSS growth per connection, and its RSS
once they have closed.

Writes target/bench/<timestamp>/{results.md,results.csv,rounds.csv,chart.svg}
and prints the Markdown. The check of issue #9's targets is printed, never
fails the script. Everything started is stopped on exit (also on SIGINT/TERM;
children get PR_SET_PDEATHSIG as a last resort).
"""

import csv
import ctypes
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

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


def size_label(n):
    for unit, div in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


QUICK = env("QUICK", "0") == "1"
DURATION = int(env("DURATION", "2" if QUICK else "3"))
# Five rounds: on a shared machine a burst of noise can slow one 3 s run
# by 15% (seen: 1 KiB on epoll 7.1 and 8.1 µs in one run, 6.8 in the next);
# the median of five shrugs off two such runs, of three only one.
ROUNDS = int(env("ROUNDS", "1" if QUICK else "5"))
SIZES = [parse_size(s) for s in env("SIZES", "1k 1m" if QUICK else "1k 16k 256k 1m 100m").split()]
# The access-log-on and workers=2 cases cover these sizes (those also in SIZES).
LOG_SIZES = [parse_size(s) for s in env("LOG_SIZES", "1k" if QUICK else "1k 16k").split()]
W2_SIZES = [parse_size(s) for s in env("W2_SIZES", "1k 1m").split()]
WORKERS = [int(w) for w in env("WORKERS", "1 2").split()]
CONNS = int(env("CONNS", "100"))
# For 100 MiB and up: with 100 connections each wrk run would end with about
# as many transfers unfinished as finished, and their CPU would be charged to
# the finished ones.
CONNS_HUGE = int(env("CONNS_HUGE", "10"))
# Runs for 100 MiB and up last this long: in 3 s wrk finishes only about 15
# transfers of 100 MiB, too few for a req/s or CPU figure to mean much.
DURATION_HUGE = int(env("DURATION_HUGE", str(DURATION) if QUICK else str(max(DURATION, 10))))
THREADS = int(env("THREADS", "1"))
TARGETS = env("TARGETS", "epoll io_uring nginx").split()
CEILING = env("CEILING", "1") == "1" and env("IDLE_ONLY", "0") != "1"
IDLE_CONNS = int(env("IDLE_CONNS", "5000"))
# The idle case opens this many connections at once, sends each its request,
# then reads every response (issue 18: 5,000 in bursts of 500).
IDLE_BURST = int(env("IDLE_BURST", "500"))
# IDLE_ONLY=1: the idle case alone (no wrk runs, no ceilings).
IDLE_ONLY = env("IDLE_ONLY", "0") == "1"
NOISE = float(env("NOISE", "0.05"))
# Other processes using more than this % of a CPU during a run get the
# results flagged as not quiet.
NOISY_PCT = float(env("NOISY_PCT", "10"))
# Such a run is taken again up to QUIET_RETRIES times, as long as retries
# have used less than RETRY_BUDGET seconds in all; the quietest attempt counts.
QUIET_RETRIES = int(env("QUIET_RETRIES", "2"))
RETRY_BUDGET = float(env("RETRY_BUDGET", "30" if QUICK else "60"))
PIN = env("PIN", "1") == "1"
BASE_BIN = os.environ.get("BASE_BIN")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CEILINGS = {"epoll": "ceiling-epoll", "io_uring": "ceiling-io_uring"}
# The CPUs this run may use, taken before this script pins itself.
CPUS = sorted(os.sched_getaffinity(0))

procs = []  # every Popen this script started, stopped on exit
WORK = None
MACHINE = None


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


def need(cmd, package):
    if have(cmd):
        return have(cmd)
    print(f"installing {package} ...", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    e = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(sudo + ["apt-get", "update", "-qq"], env=e, timeout=600)
    run(sudo + ["apt-get", "install", "-y", "-qq", package], env=e, timeout=600, stdout=subprocess.DEVNULL)
    if not have(cmd):
        sys.exit(f"{cmd} still missing after installing {package}")
    return have(cmd)


def build():
    """Builds tandem and the ceiling loops; returns (tandem, {engine: ceiling binary})."""
    run(["cargo", "build", "--release", "-q"], cwd=REPO, timeout=1800)
    ceilings = {}
    if CEILING:
        out = subprocess.run(
            ["cargo", "build", "--release", "-q", "--bench", "ceiling_epoll", "--bench", "ceiling_uring",
             "--message-format=json-render-diagnostics"],
            cwd=REPO, check=True, timeout=1800, stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            msg = json.loads(line)
            if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
                name = msg["target"]["name"]
                if name == "ceiling_epoll":
                    ceilings["epoll"] = msg["executable"]
                elif name == "ceiling_uring":
                    ceilings["io_uring"] = msg["executable"]
    return os.path.join(REPO, "target/release/tandem"), ceilings


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
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, name, kind, proc, port, workers):
        self.name, self.kind, self.proc, self.port, self.workers = name, kind, proc, port, workers

    def pids(self):
        # tandem and the ceilings are one process (tandem's workers are
        # threads, which /proc/PID/stat sums); nginx is measured by the
        # workers of the master this script started.
        return children(self.proc.pid) if self.kind == "nginx" else [self.proc.pid]

    def cpu_ticks(self):
        return sum(stat_ticks(p) for p in self.pids())

    def rss_kib(self):
        return sum(rss_kib(p) for p in self.pids())


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
    log = os.path.join(WORK, f"{what}.out")
    tail = open(log, errors="replace").read()[-2000:] if os.path.exists(log) else ""
    raise RuntimeError(f"{what} did not start on port {srv.port}:\n{tail}")


def start(target, workers, log_on, bins, root):
    tandem_bin, ceilings = bins
    port = free_port()
    tag = f"{target}-w{workers}-{'log' if log_on else 'nolog'}".replace("@", "_")
    out = os.path.join(WORK, f"{tag}.out")
    access = os.path.join(WORK, f"{tag}.access.log")
    cpus = cpus_for(workers)[0]
    if target.startswith("ceiling-"):
        engine = target[len("ceiling-"):]
        p = spawn(pinned(cpus, [ceilings[engine], f"127.0.0.1:{port}"]), out)
        return wait_up(Server(target, "ceiling", p, port, 1), tag)
    if target == "nginx":
        conf = os.path.join(WORK, f"{tag}.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes {workers};
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[0]};
daemon off;
pid {WORK}/{tag}.pid;
error_log {WORK}/{tag}.err;
events {{ worker_connections {IDLE_CONNS + 1024}; }}
http {{
  access_log {f"{access} combined buffer=32k flush=1s" if log_on else "off"};
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 75s;
  open_file_cache max=1000 inactive=60s;
  default_type application/octet-stream;
  client_body_temp_path {WORK}/{tag}.body;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
        p = spawn(pinned(cpus, [NGINX, "-c", conf, "-e", f"{WORK}/{tag}.err"]), out)
        return wait_up(Server(target, "nginx", p, port, workers), tag)
    name = target
    binary = tandem_bin
    if name.endswith("@base"):
        name = name[: -len("@base")]
        if not BASE_BIN:
            sys.exit(f"set BASE_BIN to run {target}")
        binary = BASE_BIN
    engine, rp = (name[:-3], "1") if name.endswith("_rp") else (name, "0")
    conf = os.path.join(WORK, f"{tag}.toml")
    with open(conf, "w") as f:
        f.write(f"""listen = ["127.0.0.1:{port}"]
root = "{root}"
engine = "{engine}"
workers = {workers}
max_connections = {IDLE_CONNS + 1024}
access_log = "{access if log_on else "off"}"
error_log = "{WORK}/{tag}.err"
""")
    p = spawn(pinned(cpus, [binary, "-c", conf]), out, env=dict(os.environ, TANDEM_BENCH_REUSEPORT=rp))
    return wait_up(Server(target, "tandem", p, port, workers), tag)


# --- one wrk run -------------------------------------------------------------

UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
UNIT_MB = {"B": 1 / MiB, "KB": 1 / KiB, "MB": 1.0, "GB": 1024.0}


def machine_busy_ticks():
    """user+nice+system of all CPUs (/proc/stat), in clock ticks."""
    with open("/proc/stat") as f:
        v = f.readline().split()
    return int(v[1]) + int(v[2]) + int(v[3])


def own_cpu_s():
    """CPU seconds of this script and its reaped children (wrk)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def duration(size):
    return DURATION_HUGE if size >= 100 * MiB else DURATION


def wrk(srv, size, workers):
    huge = size >= 100 * MiB
    conns = CONNS_HUGE if huge else CONNS
    dur = duration(size)
    url = f"http://127.0.0.1:{srv.port}/f{size}.bin"
    cmd = pinned(cpus_for(workers)[1], ["wrk", f"-t{THREADS}", f"-c{conns}", f"-d{dur}s", f"--timeout={max(10, dur)}s", "--latency", url])
    busy0, own0, t0 = machine_busy_ticks(), own_cpu_s(), time.monotonic()
    before = srv.cpu_ticks()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=child_setup)
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
        per = float(m.group(4)) * {"B": 1, "KB": KiB, "MB": MiB, "GB": 1024 * MiB, "TB": MiB * MiB}[m.group(5)] / size
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
    while left > 0:  # count, don't keep: the warm-up reads the largest file too
        n = len(s.recv(1 << 20))
        if not n:
            raise OSError("connection closed mid-body")
        left -= n


def get_once(port, path):
    """One keep-alive request on a new connection; returns the open socket
    once the whole response has arrived."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    request(s, path)
    read_response(s)
    return s


def idle_case(srv, n):
    # No warm-up: the server was just started, and its RSS now is the
    # baseline. Whatever the connections make it touch (io_uring's buffer
    # ring, pools, slab growth, malloc's arenas) is their cost, as it is on
    # a server that has just started; a warm-up before the baseline would
    # hide exactly that.
    before = srv.rss_kib()
    socks = []
    try:
        deadline = time.monotonic() + 120
        while len(socks) < n:
            burst = [socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                     for _ in range(min(IDLE_BURST, n - len(socks)))]
            socks += burst
            for s in burst:
                request(s, f"/f{KiB}.bin")
            for s in burst:
                read_response(s)
            if time.monotonic() > deadline:
                raise RuntimeError("idle case: opening connections took over 120 s")
        time.sleep(1.0)
        after = srv.rss_kib()
        alive = srv.proc.poll() is None
    finally:
        for s in socks:
            s.close()
    if not alive:
        raise RuntimeError(f"{srv.name} died holding {n} idle connections")
    # What is left once they have gone: sampled until it stops falling for
    # 1.5 s (a server may give memory back a timer tick or two later).
    closed, since, end = srv.rss_kib(), time.monotonic(), time.monotonic() + 10
    while time.monotonic() - since < 1.5 and time.monotonic() < end:
        time.sleep(0.25)
        now = srv.rss_kib()
        if now < closed:
            closed, since = now, time.monotonic()
    return {"conns": len(socks), "rss_before_kib": before, "rss_after_kib": after,
            "rss_closed_kib": closed, "bytes_per_conn": (after - before) * 1024 / len(socks)}


# --- formatting ----------------------------------------------------------------

def fnum(v, kind):
    if v is None:
        return "-"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "x":
        return f"{v:.2f}x"
    if kind == "ms":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"
    if kind == "us":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"
    return f"{v:.1f}"


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    return a / b if a is not None and b else None


def ceiling_of(target):
    base = target.split("@")[0]
    base = base[:-3] if base.endswith("_rp") else base
    return CEILINGS.get(base)


def svg_chart(cells, servers, path, title):
    """Small multiples: one panel per file size, bars per server; CPU µs per
    request on top, requests/s below, each panel on its own linear scale."""
    sizes = sorted({c["size"] for c in cells})
    palette = ["#4e79a7", "#f28e2b", "#59a14f", "#9c9c9c", "#76b7b2", "#b07aa1", "#e15759", "#edc948"]
    color = {s: palette[i % len(palette)] for i, s in enumerate(servers)}
    pw, ph, gap, left, top = 190, 190, 24, 20, 80
    legend_w = sum(30 + 7 * len(s) for s in servers)
    width = max(left * 2 + len(sizes) * pw + (len(sizes) - 1) * gap, left * 2 + legend_w, 8 * len(title) + 2 * left)
    height = top + 2 * (ph + 70) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">{title}</text>']
    x = left
    for s in servers:
        out.append(f'<rect x="{x}" y="36" width="12" height="12" fill="{color[s]}"/>'
                   f'<text x="{x + 16}" y="46">{s}</text>')
        x += 30 + 7 * len(s)
    rows = [("cpu_us", "server CPU µs per request (lower is better)", "us"),
            ("req_s", "requests/s (higher is better)", "int")]
    for ri, (key, label, kind) in enumerate(rows):
        y0 = top + ri * (ph + 70)
        out.append(f'<text x="{left}" y="{y0 + 4}" font-size="13">{label}</text>')
        for si, size in enumerate(sizes):
            px = left + si * (pw + gap)
            bars = [(c["server"], c[key]) for s in servers for c in cells
                    if c["size"] == size and c["server"] == s and c[key] is not None]
            top_v = max([v for _, v in bars] or [1]) * 1.18
            base_y = y0 + 20 + ph
            out.append(f'<line x1="{px}" y1="{base_y}" x2="{px + pw}" y2="{base_y}" stroke="#333"/>')
            out.append(f'<text x="{px + pw / 2}" y="{base_y + 16}" text-anchor="middle" '
                       f'font-weight="bold">{size_label(size)}</text>')
            if not bars:
                continue
            bw = min(36, (pw - 10) / len(bars) - 4)
            for bi, (srv, v) in enumerate(bars):
                bx = px + 5 + bi * (bw + 4)
                h = v / top_v * ph
                v_txt = fnum(v / 1000, "ms") + "k" if kind == "int" and v >= 10000 else fnum(v, kind)
                out.append(f'<rect x="{bx:.1f}" y="{base_y - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                           f'fill="{color[srv]}"><title>{srv} {size_label(size)}: {v_txt}</title></rect>')
                out.append(f'<text x="{bx + bw / 2:.1f}" y="{base_y - h - 3:.1f}" text-anchor="middle" '
                           f'font-size="9">{v_txt}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# --- verdict and targets -----------------------------------------------------------

def verdict(cell, idle, has):
    lines = []
    w1 = lambda srv, size, log=False: cell.get((1, log, size, srv))  # noqa: E731
    sizes = sorted({k[2] for k in cell if k[0] == 1 and not k[1]})
    picks = []
    for size in sizes:
        e, u = w1("epoll", size), w1("io_uring", size)
        if not e or not u or not e["req_s"] or not u["req_s"]:
            continue
        r = u["req_s"] / e["req_s"]
        c = ratio(u["cpu_us"], e["cpu_us"])
        if r > 1 + NOISE:
            win, why = "io_uring", f"{(r - 1) * 100:.0f}% more req/s"
        elif r < 1 - NOISE:
            win, why = "epoll", f"{(1 / r - 1) * 100:.0f}% more req/s"
        elif c is not None and c < 1 - NOISE:
            win, why = "io_uring", f"same req/s, {(1 - c) * 100:.0f}% less CPU per request"
        elif c is not None and c > 1 + NOISE:
            win, why = "epoll", f"same req/s, {(1 - 1 / c) * 100:.0f}% less CPU per request"
        else:
            win, why = "either", f"within {NOISE * 100:.0f}% on req/s and CPU"
        picks.append((size, win, why))
    if picks:
        lines.append("Which engine, by file size (1 worker, access log off):")
        for size, win, why in picks:
            lines.append(f"- {size_label(size)}: **{win}** ({why})")
    if has("nginx"):
        groups = {"less": [], "level": [], "more": []}
        for size in sizes:
            n = w1("nginx", size)
            best = [c for c in (w1("epoll", size), w1("io_uring", size)) if c and c["cpu_us"]]
            if not n or not n["cpu_us"] or not best:
                continue
            b = min(best, key=lambda c: c["cpu_us"])
            x = b["cpu_us"] / n["cpu_us"]
            g = "less" if x < 1 - NOISE else "more" if x > 1 + NOISE else "level"
            groups[g].append(f"{size_label(size)} ({b['server']} {x:.2f}x)")
        for g, words in (("less", "uses less CPU per request than nginx"),
                         ("level", f"is level with nginx (within {NOISE:.0%}) on CPU per request"),
                         ("more", "uses more CPU per request than nginx")):
            if groups[g]:
                lines.append(f"- tandem's better engine {words} at {', '.join(groups[g])}.")
    for base in sorted({k[3] for k in cell if k[3].endswith("@base")}):
        new = base[: -len("@base")]
        parts = []
        for size in sizes:
            a, b = w1(new, size), w1(base, size)
            if a and b and a["cpu_us"] and b["cpu_us"] and b["req_s"]:
                parts.append(f"{size_label(size)}: CPU/request {a['cpu_us'] / b['cpu_us']:.2f}x, req/s {a['req_s'] / b['req_s']:.2f}x")
        if parts:
            lines.append(f"- {new} against {base} (this build / BASE_BIN): {'; '.join(parts)}.")
    for size in sorted({k[2] for k in cell if k[1]}):
        parts = []
        for srv in ("epoll", "io_uring", "nginx"):
            on, off = cell.get((1, True, size, srv)), w1(srv, size)
            if on and off and on["cpu_us"] and off["cpu_us"]:
                parts.append(f"{srv} {on['cpu_us'] - off['cpu_us']:+.1f} µs ({on['cpu_us'] / off['cpu_us'] - 1:+.0%})")
        if parts:
            lines.append(f"- Access log on, {size_label(size)}: CPU per request {', '.join(parts)}.")
    for w in sorted({k[0] for k in cell if k[0] != 1}):
        for size in sorted({k[2] for k in cell if k[0] == w}):
            rs = [(srv, c["req_s"]) for (ww, lg, sz, srv), c in cell.items()
                  if ww == w and sz == size and not lg and c["req_s"]]
            if rs:
                best = max(rs, key=lambda x: x[1])
                lines.append(f"- {w} workers, {size_label(size)}: most req/s from {best[0]} "
                             f"({', '.join(f'{s} {v:,.0f}' for s, v in rs)}).")
    if idle:
        lines.append("- Idle keep-alive connections cost "
                     + ", ".join(f"{s} {v['bytes_per_conn']:,.0f} B" for s, v in idle.items())
                     + " of RSS each.")
    wins = [w for _, w, _ in picks]
    if wins:
        u, e = wins.count("io_uring"), wins.count("epoll")
        epoll_sizes = [size_label(s) for s, w, _ in picks if w == "epoll"]
        if e == 0:
            rec = ('keep `engine = "auto"` (io_uring): it is as good as or better than epoll at every size measured.')
        elif u == 0:
            rec = ('set `engine = "epoll"`: io_uring is no better at any size measured here, and worse at '
                   + ", ".join(epoll_sizes) + ".")
        else:
            rec = ('pick by workload: io_uring (`engine = "auto"`) where it wins above, `engine = "epoll"` '
                   f'if most of your traffic is {", ".join(epoll_sizes)} files.')
        lines.append(f"\n**On this machine:** {rec}")
    return lines


def targets_check(cell, has):
    rows = []

    def get(srv, size=KiB, log=False):
        return cell.get((1, log, size, srv))

    def check(name, value, limit, op, note=""):
        if value is None:
            rows.append((name, "not measured", "n/a"))
            return
        ok = value <= limit if op == "<=" else value >= limit
        rows.append((name, f"{value:.2f}x {note}".strip(), "PASS" if ok else "FAIL"))

    for eng in ("epoll", "io_uring"):
        e, n, c = get(eng), get("nginx"), get(CEILINGS[eng])
        check(f"1 KiB CPU/request, {eng} <= 0.70x nginx", ratio(e and e["cpu_us"], n and n["cpu_us"]), 0.70, "<=")
        check(f"1 KiB CPU/request, {eng} <= 1.15x {CEILINGS[eng]}", ratio(e and e["cpu_us"], c and c["cpu_us"]), 1.15, "<=")
    for eng in ("epoll", "io_uring"):
        e, n = get(eng, log=True), get("nginx", log=True)
        check(f"1 KiB CPU/request, access log on, {eng} <= 0.80x nginx (log on)",
              ratio(e and e["cpu_us"], n and n["cpu_us"]), 0.80, "<=")
    for eng in ("epoll", "io_uring"):
        e, n = get(eng, MiB), get("nginx", MiB)
        check(f"1 MiB req/s, {eng} >= nginx", ratio(e and e["req_s"], n and n["req_s"]), 1.0, ">=")
    for size in sorted({k[2] for k in cell if k[0] == 1 and not k[1]}):
        e, u = get("epoll", size), get("io_uring", size)
        if not e or not u:
            continue
        r, c = ratio(u["req_s"], e["req_s"]), ratio(u["cpu_us"], e["cpu_us"])
        name = f"{size_label(size)}: io_uring no worse than epoll (req/s >= {1 - NOISE:.2f}x, CPU/request <= {1 + NOISE:.2f}x)"
        if r is None or c is None:
            rows.append((name, "not measured", "n/a"))
        else:
            ok = r >= 1 - NOISE and c <= 1 + NOISE
            rows.append((name, f"req/s {r:.2f}x, CPU {c:.2f}x", "PASS" if ok else "FAIL"))
    return rows


# --- main ----------------------------------------------------------------------------

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
    ngx = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip().replace("nginx version: ", "") if NGINX else "-"
    w = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].split(" Copyright")[0]
    return (f"{model}, {os.cpu_count()} CPUs, {mem:.1f} GiB RAM, Linux {os.uname().release}; "
            f"{ngx}; {w}; tandem {rev or '?'}{' (uncommitted changes)' if dirty else ''}")


def strangers():
    """Other wrk/nginx/tandem processes on the machine (they add noise)."""
    ours = {p.pid for p in procs}
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ("wrk", "nginx", "tandem") and int(pid) not in ours:
            found.append(f"{comm}[{pid}]")
    return found


def main():
    global WORK, NGINX, MACHINE
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    need("wrk", "wrk")
    need("taskset", "util-linux")
    NGINX = need("nginx", "nginx-light") if "nginx" in TARGETS else None

    # Descriptors for the idle case: this script's clients, and the servers
    # (which inherit the limit).
    global IDLE_CONNS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_CONNS + 4096
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < want:
            IDLE_CONNS = max(0, hard - 4096)
            print(f"RLIMIT_NOFILE hard limit {hard}: idle case lowered to {IDLE_CONNS} connections", file=sys.stderr)

    bins = build()
    # Now, not when the report is written: tandem was just built from the
    # tree as it is, and edits made while the run goes on are not in it.
    MACHINE = machine()
    others = strangers()
    if others:
        print(f"warning: other processes that may add noise: {' '.join(others)}", file=sys.stderr)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(REPO, "target", "bench", stamp)
    os.makedirs(outdir, exist_ok=True)
    WORK = tempfile.mkdtemp(prefix="tandem-bench.")
    root = os.path.join(WORK, "root")
    os.makedirs(root)
    all_sizes = sorted(set(SIZES))
    for size in sorted(set(all_sizes) | {KiB}):  # the idle case asks for 1 KiB
        with open(os.path.join(root, f"f{size}.bin"), "wb") as f:
            left = size
            while left:
                n = min(left, 4 * MiB)
                f.write(os.urandom(n))
                left -= n
    # nginx workers drop to an unprivileged user: let them read the files.
    for d, _, files in os.walk(WORK):
        os.chmod(d, 0o755)
        for fn in files:
            os.chmod(os.path.join(d, fn), 0o644)

    # The cases: (workers, access log on, sizes).
    cases = [(1, False, all_sizes)]
    if 1 in WORKERS:
        logs = [s for s in all_sizes if s in LOG_SIZES]
        if logs:
            cases.append((1, True, logs))
    else:
        cases = []
    for w in WORKERS:
        if w != 1:
            ws = [s for s in all_sizes if s in W2_SIZES]
            if ws:
                cases.append((w, False, ws))
    if IDLE_ONLY:
        cases = []
    elif not cases:
        sys.exit("nothing to run: WORKERS must include 1, or W2_SIZES overlap SIZES")

    # This script (wrk's parent, and the idle-case client) stays off the
    # servers' core.
    if PIN:
        os.sched_setaffinity(0, {int(cpus_for(1)[1])})

    runs = []  # raw, one per round
    retry_spent = [0.0]  # seconds spent on retries of noisy runs
    t_start = time.monotonic()
    if cases:
        print(f"{len(cases)} case(s), {ROUNDS} round(s) of {DURATION} s; results in {outdir}", file=sys.stderr)
    for workers, log_on, sizes in cases:
        targets = list(TARGETS)
        if CEILING and workers == 1 and not log_on:
            targets += [CEILINGS[e] for e in ("epoll", "io_uring") if e in bins[1]]
        servers = [start(t, workers, log_on, bins, root) for t in targets]
        try:
            for size in sizes:
                here = [s for s in servers if s.kind != "ceiling" or size == KiB]
                for s in here:  # warm: open the file, fault in the path
                    get_once(s.port, f"/f{size}.bin").close()
                for rnd in range(ROUNDS):
                    k = rnd % len(here)
                    for s in here[k:] + here[:k]:  # a different one goes first each round
                        r = wrk(s, size, workers)
                        # A run next to a busy neighbour is taken again (a
                        # bounded number of times, within a time budget), and
                        # the quietest attempt is kept.
                        tries = 0
                        while (r["other_pct"] > NOISY_PCT and tries < QUIET_RETRIES
                               and retry_spent[0] + duration(size) + 1 <= RETRY_BUDGET):
                            t_retry = time.monotonic()
                            time.sleep(1)
                            again = wrk(s, size, workers)
                            tries += 1
                            retry_spent[0] += time.monotonic() - t_retry
                            if again["other_pct"] < r["other_pct"]:
                                r = again
                        r["retries"] = tries
                        r.update(workers=workers, log=log_on, size=size, server=s.name, round=rnd + 1)
                        runs.append(r)
                        print(f"  w{workers} log={'on' if log_on else 'off'} {size_label(size):>8} "
                              f"{s.name:<18} round {rnd + 1}: {r['req_s']:>10,.0f} req/s "
                              f"{fnum(r['cpu_us'], 'us'):>8} µs/req"
                              + (f"  (retried {tries}x, other load {r['other_pct']:.0f}%)" if tries else ""), file=sys.stderr)
                        if log_on:  # keep the disk from filling over a long run
                            for fn in os.listdir(WORK):
                                if fn.endswith(".access.log"):
                                    os.truncate(os.path.join(WORK, fn), 0)
        finally:
            for s in servers:
                stop(s.proc)

    idle = {}
    if IDLE_CONNS > 0:
        for t in TARGETS:
            srv = start(t, 1, False, bins, root)
            try:
                idle[t] = idle_case(srv, IDLE_CONNS)
                print(f"  idle {t:<18} {idle[t]['bytes_per_conn']:,.0f} B/connection", file=sys.stderr)
            finally:
                stop(srv.proc)
    elapsed = time.monotonic() - t_start

    # Medians per cell.
    cell = {}
    for r in runs:
        cell.setdefault((r["workers"], r["log"], r["size"], r["server"]), []).append(r)
    cell = {k: {"workers": k[0], "log": k[1], "size": k[2], "server": k[3],
                "rounds": len(v), "conns": v[0]["conns"],
                "req_s": med(v, "req_s"), "mb_s": med(v, "mb_s"), "p50_ms": med(v, "p50_ms"),
                "p99_ms": med(v, "p99_ms"), "cpu_us": med(v, "cpu_us"),
                "other_pct": med(v, "other_pct"),
                "errors": sum(x["errors"] for x in v)} for k, v in cell.items()}
    for (w, lg, size, srv), c in cell.items():
        n = cell.get((w, lg, size, "nginx"))
        c["req_x_nginx"] = ratio(c["req_s"], n and n["req_s"]) if srv != "nginx" else None
        c["cpu_x_nginx"] = ratio(c["cpu_us"], n and n["cpu_us"]) if srv != "nginx" else None
        ce = ceiling_of(srv)
        cc = cell.get((1, False, KiB, ce)) if ce and w == 1 and size == KiB else None
        c["cpu_x_ceiling"] = ratio(c["cpu_us"], cc and cc["cpu_us"])
    order = {t: i for i, t in enumerate(TARGETS + list(CEILINGS.values()))}
    keys = sorted(cell, key=lambda k: (k[0], k[1], k[2], order.get(k[3], 99)))
    has = lambda srv: any(k[3] == srv for k in cell)  # noqa: E731

    # Markdown.
    pins = ", ".join(f"{w} worker(s) on CPU {cpus_for(w)[0]} with wrk on CPU {cpus_for(w)[1]}"
                     for w in sorted({c[0] for c in cases})) if PIN else "not pinned (PIN=0)"
    md = [f"# tandem benchmark {stamp}", "",
          f"**Machine:** {MACHINE}", "",
          f"**Setup:** 127.0.0.1, keep-alive, `wrk -t{THREADS} -c{CONNS}` (`-c{CONNS_HUGE}` for 100 MiB and up), "
          f"{DURATION} s per run ({DURATION_HUGE} s for 100 MiB and up), median of {ROUNDS} round(s), servers alternated each round; {pins}. "
          f"CPU µs/req = utime+stime (/proc/PID/stat) of the server's own processes (nginx: the workers of "
          f"the master this run started) over the requests wrk completed (from 1 MiB up: over the bytes wrk read, in files' worth). "
          f"A run during which other processes used over {NOISY_PCT:.0f}% of a CPU was retried (up to {QUIET_RETRIES}x, "
          f"{RETRY_BUDGET:.0f} s in all; {sum(r['retries'] for r in runs)} retries, {retry_spent[0]:.0f} s) and the quietest attempt kept. "
          f"Ceilings: fixed 1 KiB reply, no parsing, no files (benches/ceiling_*.rs). Run took {elapsed:.0f} s.", ""]
    busy = [c for c in cell.values() if c["other_pct"] is not None and c["other_pct"] > NOISY_PCT]
    if busy:
        worst = max(busy, key=lambda c: c["other_pct"])
        md += [f"**Warning: the machine was not quiet.** Other processes used more than {NOISY_PCT:.0f}% of a CPU "
               f"during {len(busy)} of {len(cell)} measurements (up to {worst['other_pct']:.0f}%, "
               f"{worst['server']} at {size_label(worst['size'])}, access log {'on' if worst['log'] else 'off'}, {worst['workers']} worker(s); column `other_cpu_pct` in results.csv). "
               f"Rerun on a quiet machine before quoting these figures.", ""]
    if QUICK:
        md += ["*QUICK=1: one short round, smoke test only; do not quote these figures.*", ""]
    md += ["| size | workers | access log | server | req/s | vs nginx | MB/s | p50 ms | p99 ms | CPU µs/req | vs nginx | vs ceiling | errors |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in keys:
        c = cell[k]
        md.append(f"| {size_label(c['size'])} | {c['workers']} | {'on' if c['log'] else 'off'} | {c['server']} | "
                  f"{fnum(c['req_s'], 'int')} | {fnum(c['req_x_nginx'], 'x')} | {fnum(c['mb_s'], 'f')} | "
                  f"{fnum(c['p50_ms'], 'ms')} | {fnum(c['p99_ms'], 'ms')} | {fnum(c['cpu_us'], 'us')} | "
                  f"{fnum(c['cpu_x_nginx'], 'x')} | {fnum(c['cpu_x_ceiling'], 'x')} | {c['errors'] or ''} |")
    if idle:
        n_idle = idle.get("nginx")
        md += ["", f"**Idle keep-alive connections** (each after one 1 KiB request, opened in bursts of {IDLE_BURST} "
               f"on a freshly started server with no warm-up; 1 worker; RSS growth over the connections, and RSS once they closed):", "",
               "| server | connections | RSS before (MiB) | RSS after (MiB) | bytes/connection | vs nginx | RSS after close (MiB) |",
               "|---|---:|---:|---:|---:|---:|---:|"]
        for t, v in idle.items():
            md.append(f"| {t} | {v['conns']:,} | {v['rss_before_kib'] / 1024:.1f} | {v['rss_after_kib'] / 1024:.1f} | "
                      f"{v['bytes_per_conn']:,.0f} | "
                      f"{fnum(ratio(v['bytes_per_conn'], n_idle and n_idle['bytes_per_conn']), 'x') if t != 'nginx' else '-'} | "
                      f"{v['rss_closed_kib'] / 1024:.1f} |")
    if cell:  # not with IDLE_ONLY=1
        checks = targets_check(cell, has)
        md += ["", "**Targets (issue #9):**", "", "| target | measured | result |", "|---|---|---|"]
        md += [f"| {a} | {b} | {r} |" for a, b, r in checks]
    md += ["", "**Verdict:**", ""]
    if busy:
        md += ["*(The machine was busy during this run, see the warning above: check before acting on this.)*", ""]
    md += verdict(cell, idle, has)
    md += ["", f"Files: `results.md`, `results.csv` (medians), `rounds.csv` (every run), `chart.svg`."]
    text = "\n".join(md) + "\n"
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(text)

    cols = ["case", "workers", "access_log", "size_bytes", "size", "server", "rounds", "connections", "req_s",
            "req_s_vs_nginx", "mb_s", "p50_ms", "p99_ms", "cpu_us_per_req", "cpu_vs_nginx", "cpu_vs_ceiling",
            "errors", "other_cpu_pct", "rss_before_kib", "rss_after_kib", "bytes_per_conn", "rss_closed_kib"]
    with open(os.path.join(outdir, "results.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(cols)
        rnd = lambda v, d=3: "" if v is None else round(v, d)  # noqa: E731
        for k in keys:
            c = cell[k]
            wr.writerow(["throughput", c["workers"], "on" if c["log"] else "off", c["size"], size_label(c["size"]),
                         c["server"], c["rounds"], c["conns"], rnd(c["req_s"], 1), rnd(c["req_x_nginx"]),
                         rnd(c["mb_s"], 2), rnd(c["p50_ms"]), rnd(c["p99_ms"]), rnd(c["cpu_us"]),
                         rnd(c["cpu_x_nginx"]), rnd(c["cpu_x_ceiling"]), c["errors"], rnd(c["other_pct"], 1), "", "", "", ""])
        for t, v in idle.items():
            wr.writerow(["idle", 1, "off", KiB, size_label(KiB), t, 1, v["conns"]] + [""] * 10
                        + [v["rss_before_kib"], v["rss_after_kib"], round(v["bytes_per_conn"]), v["rss_closed_kib"]])
    with open(os.path.join(outdir, "rounds.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        fields = ["workers", "log", "size", "server", "round", "conns", "req_s", "mb_s", "p50_ms", "p99_ms", "cpu_us", "errors", "other_pct", "retries"]
        wr.writerow(fields)
        for r in runs:
            wr.writerow([r[x] for x in fields])
    servers = [t for t in TARGETS + list(CEILINGS.values()) if any(k[3] == t for k in cell)]
    if cell:
        svg_chart([c for k, c in cell.items() if k[0] == 1 and not k[1]], servers, os.path.join(outdir, "chart.svg"),
                  f"tandem vs nginx, 1 worker, access log off ({stamp}, median of {ROUNDS})")
    print(text)
    print(f"written to {outdir}/", file=sys.stderr)


if __name__ == "__main__":
    NGINX = None
    try:
        main()
    finally:
        cleanup()
