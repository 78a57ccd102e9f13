#!/usr/bin/env python3
"""The compressed case of the wrk benchmark, beside
benches/bench.py and built on its helpers (processes, pinning, CPU
accounting): tandem (epoll, io_uring) with on-the-fly compression at its
defaults, and nginx with `gzip on` (its defaults: level 1, and gzip_types
set to the same text types), each asked with and without
`Accept-Encoding: gzip, deflate, br, zstd` (a browser's), on

- a 20 KiB HTML file, and
- the many-files set: 200 HTML/CSS/JS/JSON files of 2 to 40 KiB, asked in
  turn by a wrk Lua script.

For each: requests/s, server CPU per request (utime+stime of the server's
processes over the requests wrk completed), and bytes per response on the
wire (wrk's bytes read over its requests: head and body). Every run is on
a server started for it, never asked anything before (no warm-up: tandem
compresses a file the first times it is asked in a coding, during the run,
as on a server just started); nginx compresses on every request anyway.
Median over ROUNDS rounds, servers alternated.

    python3 benches/compressed.py          # ROUNDS=3 DURATION=3 by default
Prints a Markdown table; writes nothing else. Only 127.0.0.1; everything
started is stopped on exit.
"""

import os
import random
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROUNDS = int(bench.env("ROUNDS", "3"))
DURATION = int(bench.env("DURATION", "3"))
AE = "gzip, deflate, br, zstd"
TYPES = "text/css application/javascript application/json image/svg+xml"


def text(n, seed):
    rnd = random.Random(seed)
    words = ["div", "span", "class", "item", "header", "main", "function", "return",
             "const", "value", "color", "margin", "padding", "display", "flex", "grid"]
    out = []
    size = 0
    i = 0
    while size < n:
        line = f'<li class="{rnd.choice(words)}-{i % 17}">{" ".join(rnd.choice(words) for _ in range(8))} {i}</li>\n'
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()[:n]


def make_site(root):
    with open(os.path.join(root, "page.html"), "wb") as f:
        f.write(text(20 * 1024, 1))
    os.mkdir(os.path.join(root, "m"))
    rnd = random.Random(7)
    paths = []
    for i in range(200):
        ext = ["html", "css", "js", "json"][i % 4]
        name = f"m/f{i}.{ext}"
        with open(os.path.join(root, name), "wb") as f:
            f.write(text(rnd.randint(2, 40) * 1024, 100 + i))
        paths.append("/" + name)
    return paths


def lua(paths, ae, path):
    with open(path, "w") as f:
        f.write("local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n")
        f.write("local i = 0\n")
        if ae:
            f.write(f'wrk.headers["Accept-Encoding"] = "{ae}"\n')
        f.write("request = function()\n  i = i % #paths + 1\n"
                "  return wrk.format(\"GET\", paths[i])\nend\n")


def start_nginx(root):
    port = bench.free_port()
    tag = "nginx-gzip"
    conf = os.path.join(bench.WORK, f"{tag}.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {bench.WORK}/{tag}.pid;
error_log {bench.WORK}/{tag}.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  include /etc/nginx/mime.types;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 75s;
  open_file_cache max=1000 inactive=60s;
  gzip on; gzip_types {TYPES};
  client_body_temp_path {bench.WORK}/{tag}.body;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    cpus = bench.cpus_for(1)[0]
    p = bench.spawn(bench.pinned(cpus, [bench.BINS["nginx"], "-c", conf, "-e", f"{bench.WORK}/{tag}.err"]),
                    os.path.join(bench.WORK, f"{tag}.out"))
    return bench.wait_up(bench.Server("nginx", "nginx", p, port, 1), tag)


def run_wrk(srv, script):
    cmd = bench.pinned(bench.cpus_for(1)[1], ["wrk", "-t1", "-c100", f"-d{DURATION}s", "-s", script,
                                               f"http://127.0.0.1:{srv.port}/"])
    before = srv.cpu_ticks()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=DURATION + 30).stdout
    after = srv.cpu_ticks()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB) read", out)
    if not m:
        raise RuntimeError(f"wrk: {out}")
    reqs = int(m.group(1))
    secs = float(m.group(2)) * bench.UNIT_S[m.group(3)]
    read = float(m.group(4)) * {"B": 1, "KB": 1024, "MB": 1 << 20, "GB": 1 << 30}[m.group(5)]
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"wrk saw errors: {out}")
    return {"req_s": reqs / secs, "cpu_us": (after - before) / bench.CLK_TCK * 1e6 / reqs,
            "bytes": read / reqs}


def main():
    bench.WORK = tempfile.mkdtemp(prefix="tandem-compressed-")
    bench.BINS["nginx"] = bench.need("nginx", "nginx-light")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=bench.REPO, check=True, timeout=1800)
    bench.BINS["tandem"] = os.path.join(bench.REPO, "target/release/tandem")
    root = os.path.join(bench.WORK, "www")
    os.mkdir(root)
    os.chmod(bench.WORK, 0o755)
    os.chmod(root, 0o755)
    paths = make_site(root)
    for dirpath, _, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    scripts = {}
    for case, ps in [("20 KiB HTML", ["/page.html"]), ("many files", paths)]:
        for ae in [None, AE]:
            sp = os.path.join(bench.WORK, f"{len(scripts)}.lua")
            lua(ps, ae, sp)
            scripts[(case, ae)] = sp
    servers = {
        "tandem epoll": lambda: bench.start("epoll", root=root),
        "tandem io_uring": lambda: bench.start("io_uring", root=root),
        "nginx gzip on": lambda: start_nginx(root),
    }
    results = {}
    for r in range(ROUNDS):
        for (case, ae), sp in scripts.items():
            for name, started in servers.items():
                srv = started()  # fresh for each run: no warm-up
                try:
                    results.setdefault((case, ae, name), []).append(run_wrk(srv, sp))
                finally:
                    bench.stop(srv.proc)
        print(f"round {r + 1}/{ROUNDS} done", file=sys.stderr)
    print(f"| case | server | Accept-Encoding | req/s | CPU µs/req | vs identity | bytes/resp |")
    print("|---|---|---|---|---|---|---|")
    for case in ["20 KiB HTML", "many files"]:
        for name in servers:
            ident = statistics.median(x["cpu_us"] for x in results[(case, None, name)])
            for ae in [None, AE]:
                rows = results[(case, ae, name)]
                med = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
                print(f"| {case} | {name} | {ae or '(none)'} | {med['req_s']:.0f} | {med['cpu_us']:.1f} | "
                      f"{med['cpu_us'] / ident:.2f}x | {med['bytes']:.0f} |")


if __name__ == "__main__":
    try:
        main()
    finally:
        bench.cleanup()
