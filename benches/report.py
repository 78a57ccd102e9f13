"""The benchmark's report: medians, targets and verdict, Markdown, CSV and the
SVG chart, from the raw runs bench.py collected. Pure: reads nothing but its
arguments, writes only into the output directory."""

import csv
import os
import re
import statistics
import time

KiB, MiB = 1024, 1024 * 1024
PEERS = ("nginx", "h2o", "lighttpd")
ENGINES = ("epoll", "io_uring")
NAMES = {"epoll": "tandem epoll", "io_uring": "tandem io_uring", "nginx": "nginx", "h2o": "h2o",
         "lighttpd": "lighttpd", "ceiling-epoll": "fixed-reply loop (epoll)",
         "ceiling-io_uring": "fixed-reply loop (io_uring)"}
COLORS = {"epoll": "#4e79a7", "io_uring": "#f28e2b", "nginx": "#59a14f", "h2o": "#b07aa1",
          "lighttpd": "#e15759", "ceiling-epoll": "#9c9c9c", "ceiling-io_uring": "#c7c7c7"}
ORDER = ["epoll", "io_uring", "nginx", "h2o", "lighttpd", "ceiling-epoll", "ceiling-io_uring"]
CASE_ORDER = ["hot", "log", "2 workers", "many files", "many, no cache", "https", "h2"]
# An idle HTTP/2 connection after one request may cost this much more than
# an idle HTTP/1.1 one (HPACK tables included).
H2_IDLE_EXTRA_B = 4096
# The most a client that pipelines and never reads may make tandem hold:
# its input is capped at max_header_size (8 KiB by default) + 16 KiB, and
# responses waiting for it hold references, not copies (docs/architecture.md).
NONREAD_BOUND_KIB = 24


def display(target):
    if target in NAMES:
        return NAMES[target]
    base = target.split("@")[0]
    suffix = " (BASE_BIN)" if target.endswith("@base") else ""
    if base.endswith("_rp"):
        base, suffix = base[:-3], suffix + " (SO_REUSEPORT)"
    return NAMES.get(base, base) + suffix


def size_label(n):
    for unit, div in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def item_label(case, item):
    if case == "h2":
        proto, size = item.split("-")
        return f"{'TLS (h2)' if proto == 'tls' else 'cleartext (h2c)'}, {size[:-1]} {size[-1].upper()}iB"
    if case == "https":
        return {"1k": "1 KiB", "1m": "1 MiB", "new": "new conn, full handshake",
                "resumed": "new conn, resumed"}[item]
    if isinstance(item, int):
        return size_label(item)
    return {"uniform": "uniform", "zipf": "Zipf-like"}.get(item, str(item))


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


def ratio(a, b):
    return a / b if a is not None and b else None


def order_key(server):
    base = server.split("@")[0]
    return (ORDER.index(base) if base in ORDER else 50, server)


def medians(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["case"], r["item"], r["server"]), []).append(r)
    cells = {}
    for k, v in groups.items():
        def med(key, v=v):
            vals = [x[key] for x in v if x.get(key) is not None]
            return statistics.median(vals) if vals else None
        cells[k] = {"case": k[0], "item": k[1], "server": k[2], "rounds": len(v), "conns": v[0]["conns"],
                    "req_s": med("req_s"), "mb_s": med("mb_s"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
                    "cpu_us": med("cpu_us"), "other_pct": med("other_pct"),
                    "errors": sum(x["errors"] for x in v),
                    "by_round": {x.get("round"): x for x in v}}
    for (case, item, srv), c in cells.items():
        n = cells.get((case, item, "nginx"))
        c["cpu_x_nginx"] = ratio(c["cpu_us"], n and n["cpu_us"]) if srv != "nginx" else None
        c["req_x_nginx"] = ratio(c["req_s"], n and n["req_s"]) if srv != "nginx" else None
        best = best_peer(cells, case, item, "cpu_us", min, exclude=srv)
        c["cpu_x_best"] = ratio(c["cpu_us"], best and best["cpu_us"]) if srv not in PEERS or best else None
        ce = {"epoll": "ceiling-epoll", "io_uring": "ceiling-io_uring"}.get(srv.split("@")[0])
        cc = cells.get((case, item, ce)) if ce else None
        c["cpu_x_loop"] = ratio(c["cpu_us"], cc and cc["cpu_us"])
    return cells


def best_peer(cells, case, item, key, pick, exclude=None):
    cand = [cells[(case, item, p)] for p in PEERS
            if (case, item, p) in cells and p != exclude and cells[(case, item, p)][key] is not None]
    return pick(cand, key=lambda c: c[key]) if cand else None


# --- targets and verdict ------------------------------------------------------

def targets(cells, mem, nonread, h2mem=None):
    """[(PASS|FAIL|not measured, sentence, row)], one per target, both
    engines in each; row: {"what": the target, engine: [its figures]}, the
    verdict table's line (`target_table`)."""
    out = []

    def sentence(what, ref, entries, limit, op):
        """entries: [(label, ratio)], [(label, ratio, shown)] or [(label,
        ratio, shown, by_round)], each label beginning with its engine's
        name; `shown` (if not None) replaces the ratio in the text (for
        absolute bounds); `by_round`: the ratio in each round, said after
        the margin, so that a miss within the rounds' spread reads as one."""
        got = [(e[0], e[1], e[2] if len(e) > 2 and e[2] else f"{e[1]:.2f}x", e[3] if len(e) > 3 else None)
               for e in entries if e[1] is not None]
        row = {"what": what}
        for lab, _, shown, _ in got:
            eng = next((e for e in ENGINES if lab == display(e) or lab.startswith(display(e) + " ")
                        or lab.startswith(display(e) + ",")), None)
            if eng:
                # What the figure is of, when an engine has several: the
                # label less the engine's name and any parenthesis.
                what_of = re.sub(r"\s*\([^()]*\)", "", lab[len(display(eng)):]).strip(" ,")
                what_of = re.sub(r"^(at|against its loop)\b\s*", "", what_of)
                row.setdefault(eng, []).append(f"{shown} ({what_of})" if what_of else shown)
        if not got:
            out.append(("not measured", f"{what}: not measured in this run.", row))
            return
        parts, ok_all = [], True
        for lab, r, shown, by_round in got:
            ok = r <= limit if op == "<=" else r >= limit
            ok_all &= ok
            margin = (limit - r) / limit if op == "<=" else (r - limit) / limit
            if r == float("inf"):  # failed outright: no margin to give
                parts.append(f"{lab} {shown} (fails)")
                continue
            spread = (f"; by round {', '.join(f'{x:.2f}x' for x in by_round)}"
                      if by_round and len(by_round) > 1 else "")
            parts.append(f"{lab} {shown} ({'passes with' if ok else 'misses by'} {abs(margin):.0%}"
                         f"{' to spare' if ok else ''}{spread})")
        status = "PASS" if ok_all and len(got) == len(entries) else "FAIL" if not ok_all else "PARTLY MEASURED"
        out.append((status, f"{what} ({ref}): {'; '.join(parts)}.", row))

    def cell(case, item, srv):
        return cells.get((case, item, srv))

    def by_round(c, ref_cell, key):
        """c's figure over ref_cell's, round by round (the two ran side by
        side in each), for the rounds both have."""
        if not c or not ref_cell:
            return None
        mine, theirs = c["by_round"], ref_cell["by_round"]
        got = [ratio(mine[k].get(key), theirs[k].get(key)) for k in sorted(mine, key=str) if k in theirs]
        return [r for r in got if r is not None] or None

    def vs(case, item, ref_cell, key="cpu_us"):
        return [(display(e), ratio(cell(case, item, e)[key], ref_cell and ref_cell[key]), None,
                 by_round(cell(case, item, e), ref_cell, key))
                for e in ENGINES if cell(case, item, e)]

    def peer_ref(case, item, key, pick, unit):
        b = best_peer(cells, case, item, key, pick)
        return b, (f"best peer {display(b['server'])}, {fnum(b[key], unit)}" if b else "no peer measured")

    for size, lim in ((KiB, 0.85), (16 * KiB, 0.85)):
        b, ref = peer_ref("hot", size, "cpu_us", min, "us")
        sentence(f"{size_label(size)} CPU per request at most {lim}x the best peer's", ref + " µs",
                 vs("hot", size, b), lim, "<=")
        if size == KiB:
            entries = []
            for e in ENGINES:
                c, lp = cell("hot", KiB, e), cell("hot", KiB, f"ceiling-{e}")
                if c:
                    entries.append((f"{display(e)} against its loop ({fnum(lp and lp['cpu_us'], 'us')} µs)",
                                    ratio(c["cpu_us"], lp and lp["cpu_us"]), None, by_round(c, lp, "cpu_us")))
            sentence("1 KiB CPU per request at most 1.10x the fixed-reply loop of the same engine",
                     "a loop that answers without parsing", entries, 1.10, "<=")
    n = cell("hot", MiB, "nginx")
    sentence("1 MiB CPU per request at most 0.9x nginx's",
             f"nginx {fnum(n and n['cpu_us'], 'us')} µs", vs("hot", MiB, n), 0.9, "<=")
    b, ref = peer_ref("hot", MiB, "req_s", max, "int")
    sentence("1 MiB requests/s at least the best peer's", ref + " req/s", vs("hot", MiB, b, "req_s"), 1.0, ">=")
    for case, what in (("many files", "Many files, each server's file cache on"),
                       ("many, no cache", "Many files, no file cache (tandem cache_size = 0, nginx without open_file_cache)")):
        entries = []
        for item in ("uniform", "zipf"):
            n = cell(case, item, "nginx")
            entries += [(f"{lab}, {item_label(case, item)} ({fnum(n and n['cpu_us'], 'us')} µs for nginx)", *rest)
                        for lab, *rest in vs(case, item, n)]
        sentence(f"{what}: CPU per request at most 0.8x nginx's", "uniform and Zipf-like paths", entries, 0.8, "<=")
    entries = []
    for e in ENGINES:
        for count, v in sorted((mem.get(e) or {}).get("counts", {}).items()):
            code = v.get("code_kib", 0)
            also = f" ({v['rss_bytes_per_conn']:,.0f} B of RSS with {code:,} KiB of code)" if code else ""
            entries.append((f"{display(e)} at {count:,} connections", v["bytes_per_conn"] / 200,
                            f"{v['bytes_per_conn']:,.0f} B{also}"))
    sentence("An idle keep-alive connection on a fresh server costs at most 200 B of memory",
             "h2o's level; RSS growth less the server's code paged in on first use, a one-off", entries, 1.0, "<=")
    entries = []
    for e in ENGINES:
        v = nonread.get(e)
        if v:
            if v["probe_ms"] is not None:
                entries.append((f"{display(e)} (answered another client in {v['probe_ms']:.0f} ms)",
                                v["kib_per_client"] / NONREAD_BOUND_KIB, f"{v['kib_per_client']:.1f} KiB per client"))
            else:
                entries.append((display(e), float("inf"),
                                f"{v['kib_per_client']:.1f} KiB per client, another client not answered"))
    c = "400" if not nonread else next(iter(nonread.values()))["clients"]
    sentence(f"{c} clients that pipeline and never read hold at most max_header_size + 16 KiB (24 KiB) each",
             "the input cap; responses hold references", entries, 1.0, "<=")
    entries = []
    for size in sorted({k[1] for k in cells if k[0] == "hot" and k[1] < 100 * MiB}):
        b = best_peer(cells, "hot", size, "p99_ms", min)
        entries += [(f"{lab} at {size_label(size)} ({fnum(b and b['p99_ms'], 'ms')} ms for {display(b['server']) if b else '-'})", *rest)
                    for lab, *rest in vs("hot", size, b, "p99_ms")]
    sentence("p99 latency at 100 connections no worse than the best peer's", "per file size", entries, 1.0, "<=")
    n = cell("https", "1k", "nginx")
    sentence("HTTPS, 1 KiB: CPU per request at most 0.8x nginx's",
             f"nginx {fnum(n and n['cpu_us'], 'us')} µs", vs("https", "1k", n), 0.8, "<=")
    n = cell("https", "1m", "nginx")
    sentence("HTTPS, 1 MiB: requests/s at least nginx's",
             f"nginx {fnum(n and n['req_s'], 'int')} req/s", vs("https", "1m", n, "req_s"), 1.0, ">=")
    n = cell("https", "new", "nginx")
    sentence("HTTPS, a new connection with a full handshake per request: connections/s at least nginx's",
             f"nginx {fnum(n and n['req_s'], 'int')}/s", vs("https", "new", n, "req_s"), 1.0, ">=")
    for item, how in (("tls-1k", "over TLS"), ("h2c-1k", "cleartext (h2c)")):
        if not any(k[0] == "h2" and k[1] == item for k in cells):
            continue
        for peer, lim in (("nginx", 0.8), ("h2o", 0.9)):
            n = cell("h2", item, peer)
            sentence(f"HTTP/2 {how}, 1 KiB: CPU per request at most {lim}x {peer}'s",
                     f"{peer} {fnum(n and n['cpu_us'], 'us')} µs", vs("h2", item, n), lim, "<=")
    if any(k[0] == "h2" and k[1] == "tls-1m" for k in cells):
        n = cell("h2", "tls-1m", "nginx")
        sentence("HTTP/2 over TLS, 1 MiB: requests/s at least nginx's",
                 f"nginx {fnum(n and n['req_s'], 'int')} req/s", vs("h2", "tls-1m", n, "req_s"), 1.0, ">=")
    if h2mem:
        entries = []
        for t, v in h2mem.items():
            n = next(iter(v["h2"]["counts"]))
            extra = v["h2"]["counts"][n]["bytes_per_conn"] - v["h1"]["counts"][n]["bytes_per_conn"]
            entries.append((f"{display(t)} at {n:,} connections", extra / H2_IDLE_EXTRA_B, f"{extra:+,.0f} B"))
        sentence(f"An idle HTTP/2 connection after one request costs at most {H2_IDLE_EXTRA_B:,} B of memory more "
                 f"than an idle HTTP/1.1 one", "each on a fresh server, h2c against HTTP/1.1; as in the idle case",
                 entries, 1.0, "<=")
    return out


# --- host speed ----------------------------------------------------------------

def host_speed(host):
    """The host-speed lines of the report: the fixed-reply epoll loop's CPU
    per 1 KiB request at the start and at the end of the run against the
    committed run's, and a warning when any two of them are more than
    HOST_DRIFT_PCT % apart."""
    s, e, ref, pct = host["start"]["cpu_us"], host["end"]["cpu_us"], host.get("reference"), host["drift_pct"]
    if not s or not e:
        return [f"**Host speed:** not measured: the fixed-reply epoll loop answered nothing at the "
                f"{'end' if s else 'start'} of this run.", ""]
    off = lambda a, b: abs(a / b - 1) > pct / 100  # noqa: E731
    way = lambda a, b: "slower" if a > b else "faster"  # noqa: E731
    text = (f"**Host speed:** the fixed-reply epoll loop took {fnum(s, 'us')} µs per 1 KiB request at the "
            f"start of this run and {fnum(e, 'us')} at the end")
    warn = []
    if off(e, s):
        warn.append(f"The host got {way(e, s)} during the run: the loop took {e / s:.2f}x the start's CPU "
                    f"per request at the end.")
    if ref and ref.get("cpu") and ref["cpu"] != host.get("cpu"):
        text += (f"; the committed run (benches/results/latest.csv{', run ' + ref['stamp'] if ref.get('stamp') else ''}"
                 f") was on another machine ({ref['cpu']}), so this one is not compared with it.")
    elif ref:
        r = ref["cpu_us"]
        out = [(when, v) for when, v in (("start", s), ("end", e)) if off(v, r)]
        text += (f", on average {(s + e) / 2 / r:.2f}x the committed run's {fnum(r, 'us')} µs "
                 f"(benches/results/latest.csv{', run ' + ref['stamp'] if ref.get('stamp') else ''}; "
                 + (f"more than {pct:g}% off at the {' and the '.join(w for w, _ in out)}" if out
                    else f"within {pct:g}% at both ends") + ").")
        if out:
            ways = sorted({way(v, r) for _, v in out})
            mixed = len(ways) > 1
            parts = [f"{v / r:.2f}x{'' if i else ' its CPU per request'} at the {when}"
                     + (f" ({way(v, r)})" if mixed else "") for i, (when, v) in enumerate(out)]
            lead = "Against the committed run" if mixed else f"The host was {ways[0]} than for the committed run"
            warn.append(f"{lead}: the loop took {' and '.join(parts)}.")
    else:
        text += "; no reference (no 1 KiB fixed-reply loop (epoll) row in benches/results/latest.csv)."
    text += (f" Each is one {host['duration']} s round on a freshly started loop, before the first case and "
             f"after the last, counted in no other figure.")
    busy = [f"{host[w]['other_pct']:.0f}% of a CPU during the {w}'s round" for w in ("start", "end")
            if host[w]["other_pct"] > host["noisy_pct"]]
    if busy:
        text += f" Other processes used {' and '.join(busy)}: a change may come from them, not from the host."
    lines = [text, ""]
    if warn:
        lines += [f"**Warning: the host's speed moved by more than {pct:g}% (HOST_DRIFT_PCT); ratios between "
                  f"servers in this run may be off.** " + " ".join(warn), ""]
    return lines


# --- Markdown ------------------------------------------------------------------

def write(data, outdir):
    cells = medians(data["runs"])
    mem, nonread, st, mach = data["memory"], data["nonread"], data["settings"], data["machine"]
    h2mem = data.get("h2mem") or {}
    checks = targets(cells, mem, nonread, h2mem)
    md = [f"# tandem against nginx, h2o and lighttpd ({data['stamp']})", ""]
    md += ["**Machine:** " + f"{mach['cpu']}, {mach['cpus']} CPUs, {mach['mem_gib']:.1f} GiB RAM, "
           f"Linux {mach['kernel']}.", ""]
    md += host_speed(data["host"]) if data.get("host") else []
    md += [           "**Versions:** " + "; ".join(f"{k} {v}" for k, v in mach["versions"].items()) + ".", ""]
    pin = (f"each server on CPU {st['cpus'][0]} with 1 worker (process or thread), wrk on CPU {st['cpus'][1]}"
           if st["pin"] else "nothing pinned (PIN=0)")
    md += [f"**How:** 127.0.0.1, {pin}; keep-alive; `wrk -t{st['threads']} -c{st['conns']}` "
           f"(`-c{st['conns_huge']}` for 100 MiB and up), {st['duration']} s per run, median of {st['rounds']} "
           f"round(s), servers taking turns to go first, each run on a server started for it (no warm-up: its "
           f"caches fill during the run). CPU per request is the user + system time "
           f"(/proc/PID/stat) of the server's own processes (nginx: the workers of the master this run started) "
           f"over the requests wrk completed (from 1 MiB up: over the bytes wrk read, in files' worth). "
           f"A run during which other processes used over {st['noisy_pct']:.0f}% of a CPU was taken again "
           f"(up to {st['quiet_retries']}x, {st['retry_budget']:.0f} s in all; this run: {data['retries']} "
           f"retries, {data['retry_s']:.0f} s) and the quietest attempt kept. The fixed-reply loops answer every "
           f"request with one fixed 1 KiB reply and parse nothing (benches/ceiling_*.rs): the least CPU a "
           f"request costs with each engine. The harness raised its RLIMIT_NOFILE (and so the servers') to "
           f"{data['nofile']:,}. The servers' configs are at the end. Cases run: "
           f"{', '.join(data['cases'])}; they took {data['elapsed_s']:.0f} s, the whole run with the build "
           f"{time.monotonic() - data['t_all']:.0f} s.", ""]
    busy = [c for c in cells.values() if c["other_pct"] is not None and c["other_pct"] > st["noisy_pct"]]
    if busy:
        worst = max(busy, key=lambda c: c["other_pct"])
        md += [f"**The machine was not quiet.** Other processes used more than {st['noisy_pct']:.0f}% of a CPU "
               f"during {len(busy)} of {len(cells)} measurements, even after retries (up to "
               f"{worst['other_pct']:.0f}%: {display(worst['server'])}, {worst['case']}, "
               f"{item_label(worst['case'], worst['item'])}; column `other_cpu_pct` in results.csv). "
               f"Ratios from one run hold up better than absolute figures; rerun on a quiet machine before "
               f"quoting them.", ""]
    if data["quick"]:
        md += ["*QUICK=1: one short round, a smoke test; do not quote these figures.*", ""]
    md += ["## Verdict", "", "Each target at a glance, both engines, then one sentence per target; each ratio is from "
           "this run.", ""]
    passed = sum(1 for s, _, _ in checks if s == "PASS")
    measured = sum(1 for s, _, _ in checks if s != "not measured")
    md += [f"{passed} of the {measured} targets measured in this run passed"
           + (f" ({len(checks) - measured} of {len(checks)} not measured)." if measured < len(checks) else "."), ""]
    md += target_table(checks)
    md += [f"- **{s}**: {text}" for s, text, _ in checks]
    md += [""]
    md += summary(cells, mem)
    md += case_tables(cells)
    md += memory_tables(mem, nonread, st)
    md += h2_memory_table(h2mem)
    md += tls_memory_table(data.get("tlsmem") or {}, mem)
    if data["tls_agreed"]:
        md += ["## HTTPS handshake", "",
               f"Same ECDSA P-256 certificate everywhere; the client (wrk, OpenSSL) is pinned to TLS 1.3, "
               f"{st['suite']} and X25519 through `OPENSSL_CONF`, nginx to the same suite; what each "
               f"server agreed to (`openssl s_client` with the client's config):", ""]
        md += [f"- {display(s)}: {v}" for s, v in data["tls_agreed"].items()]
        md += [""]
    md += ["## Server configs", "",
           "Exactly as run (`$WORK` is the run's temporary directory, `$PORT` its port).", ""]
    for (srv, variant), text in sorted(data["configs"].items(), key=lambda kv: (order_key_name(kv[0][0]), kv[0][1])):
        md += [f"<details><summary>{srv}, {variant}</summary>", "", "```", text.rstrip(), "```", "", "</details>", ""]
    md += ["Files: `results.md`, `results.csv` (medians), `memory.csv`, `rounds.csv` (every run), `chart.svg`."]
    text = "\n".join(md) + "\n"
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(text)
    write_csv(cells, data, outdir)
    chart(cells, mem, nonread, data, os.path.join(outdir, "chart.svg"))
    print(text)


def target_table(checks):
    """The verdict at a glance: one line per target, each engine's figure
    against it (a ratio to the reference the target names, or the
    absolute figure for a bound in bytes), and whether it passed."""
    md = ["| target | " + " | ".join(display(e) for e in ENGINES) + " | result |",
          "|---|" + "---:|" * len(ENGINES) + "---|"]
    for status, _, row in checks:
        if status != "not measured":
            figs = [" / ".join(row.get(e, [])) or "-" for e in ENGINES]
            md.append(f"| {row['what']} | " + " | ".join(figs) + f" | {status} |")
    unmeasured = sum(1 for s, _, _ in checks if s == "not measured")
    if unmeasured:
        md += ["", f"{unmeasured} target(s) not measured: their cases were not in this run (listed below)."]
    return md + [""]


def order_key_name(name):
    inv = {v: k for k, v in NAMES.items()}
    return order_key(inv.get(name, name))


def summary(cells, mem):
    """The table the README copies: 1 worker, access log off."""
    servers = sorted({k[2] for k in cells} | set(mem), key=order_key)
    cols = [("hot", KiB, "cpu_us", "1 KiB µs/req", "us"), ("hot", 16 * KiB, "cpu_us", "16 KiB µs/req", "us"),
            ("hot", MiB, "cpu_us", "1 MiB µs/req", "us"), ("hot", MiB, "req_s", "1 MiB req/s", "int"),
            ("many files", "uniform", "cpu_us", "many files µs/req", "us"),
            ("many, no cache", "uniform", "cpu_us", "many files, no cache, µs/req", "us"),
            ("https", "1k", "cpu_us", "HTTPS 1 KiB µs/req", "us"),
            ("https", "new", "req_s", "HTTPS new conns/s", "int")]
    cols = [c for c in cols if any((c[0], c[1], s) in cells for s in servers)]
    idle_n = max((n for v in mem.values() for n in v["counts"]), default=None)
    head = [c[3] for c in cols] + ([f"idle B/conn at {idle_n:,}"] if idle_n else [])
    md = ["## Summary", "", "1 worker, access log off; lower is better except req/s and conns/s. "
          "Many files: uniform paths over 10,000 files of 1-64 KiB.", "",
          "| server | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for s in servers:
        row = [fnum(cells[(c[0], c[1], s)][c[2]], c[4]) if (c[0], c[1], s) in cells else "" for c in cols]
        if idle_n:
            v = mem.get(s, {}).get("counts", {}).get(idle_n)
            row.append(fnum(v and v["bytes_per_conn"], "int") if v else "")
        md.append(f"| {display(s)} | " + " | ".join(row) + " |")
    return md + [""]


def case_tables(cells):
    md = []
    titles = {"hot": "One URL per file size", "log": "One URL, access log on (combined format)",
              "2 workers": "One URL, 2 workers", "many files": "Many files, each server's file cache on",
              "many, no cache": "Many files, no file cache", "https": "HTTPS (TLS 1.3, AES-128-GCM)",
              "h2": "HTTP/2 (h2load -t1 -c100 -m10)"}
    for case in CASE_ORDER:
        keys = sorted((k for k in cells if k[0] == case), key=lambda k: (str(type(k[1])), k[1], order_key(k[2])))
        if not keys:
            continue
        md += [f"## {titles[case]}", "",
               "| workload | server | req/s | vs nginx | MB/s | p50 ms | p99 ms | CPU µs/req | vs nginx | vs best peer "
               "| vs fixed-reply loop | errors |",
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k in keys:
            c = cells[k]
            md.append(f"| {item_label(case, c['item'])} | {display(c['server'])} | {fnum(c['req_s'], 'int')} | "
                      f"{fnum(c['req_x_nginx'], 'x')} | {fnum(c['mb_s'], 'f')} | {fnum(c['p50_ms'], 'ms')} | "
                      f"{fnum(c['p99_ms'], 'ms')} | {fnum(c['cpu_us'], 'us')} | {fnum(c['cpu_x_nginx'], 'x')} | "
                      f"{fnum(c['cpu_x_best'], 'x')} | {fnum(c['cpu_x_loop'], 'x')} | {c['errors'] or ''} |")
        if case == "h2":
            md += ["", "h2load on the client's core, 100 connections of 10 streams each, for `H2_DURATION` s a run (2 by default; "
                   "`H2_DURATION_LARGE`, 5, from 1 MiB, where 1,000 streams of a MiB are a GB in flight) "
                   "(connection setup and the stop included); over TLS it offers only TLS_AES_128_GCM_SHA256 "
                   "(`--tls13-ciphers`) and h2 by ALPN, over cleartext it speaks h2c with prior knowledge. "
                   "From 1 MiB, CPU is per file's worth of DATA received. h2load reports no latency percentiles."]
        if case == "https":
            md += ["", "\"new conn, full handshake\": `openssl s_time -new` clients (8 at once on the client's core), "
                   "each opening a connection, making a full handshake (never resuming a session) and asking for "
                   "the 1 KiB file with HTTP/1.0; req/s are connections/s, CPU is per connection. \"new conn, "
                   "resumed\": wrk with `Connection: close`, which resumes the session of its previous connection "
                   "(a TLS 1.3 ticket, as a returning browser does)."]
        md += [""]
    return md


def memory_tables(mem, nonread, st):
    md = []
    if mem:
        md += ["## Memory: idle keep-alive connections", "",
               f"Each server freshly started, no warm-up; keep-alive connections opened in bursts of "
               f"{st['idle_burst']}, one 1 KiB request each; RSS growth over the connections (the server's own "
               f"processes; nginx: its worker), and RSS once every client has left. B/conn is that growth less "
               f"the server's own code the connections made it page in from its binary and libraries (RssFile), "
               f"given apart: a one-off whatever their number, which moves by 64 KiB from start to start (a "
               f"page fault maps the cached pages around the one it needs, in 64 KiB windows whose place ASLR "
               f"moves).", "",
               "| server | RSS fresh (MiB) | "
               + " | ".join(f"at {n:,}: MiB | code paged in (KiB) | B/conn" for n in st["idle_counts"])
               + " | after all left (MiB) |",
               "|---|---:|" + "---:|---:|---:|" * len(st["idle_counts"]) + "---:|"]
        for t, v in sorted(mem.items(), key=lambda kv: order_key(kv[0])):
            cols = []
            for n in st["idle_counts"]:
                c = v["counts"].get(n)
                cols += ([f"{c['rss_kib'] / 1024:.1f}", f"{c.get('code_kib', 0):,}", f"{c['bytes_per_conn']:,.0f}"]
                         if c else ["", "", ""])
            md.append(f"| {display(t)} | {v['rss_before_kib'] / 1024:.1f} | " + " | ".join(cols)
                      + f" | {v['rss_left_kib'] / 1024:.1f} |")
        md += [""]
    if nonread:
        c, p, s = st["nonread"]
        md += ["## Memory: clients that never read", "",
               f"Each server freshly started; {c} clients each send {p} "
               f"pipelined requests for a {size_label(s)} file and never read. RSS once the server stops "
               f"making progress, whether a new client is still answered meanwhile (within 5 s to connect and "
               f"5 s to answer), and RSS once they left and the server closed its side of every connection. "
               f"The responses queued for the clients sit in the kernel's send buffers, not in the server's "
               f"RSS: the kernel's TCP memory at the probe (the whole machine's, against tcp_mem's pressure "
               f"threshold) and the machine's TIME_WAIT sockets left by the cases before are given beside it.", "",
               "| server | RSS before (MiB) | RSS held (MiB) | KiB per client | new client answered in "
               "| kernel TCP memory (MiB) | TIME_WAIT sockets | after they left (MiB) |",
               "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for t, v in sorted(nonread.items(), key=lambda kv: order_key(kv[0])):
            probe = (f"{v['probe_ms']:.0f} ms" if v["probe_ms"] is not None
                     else f"not answered ({v.get('probe_error') or '?'})")
            kmem = (f"{v['tcp_mem_mib']:,.0f} of {v['tcp_pressure_mib']:,.0f}"
                    + (", under pressure" if v.get("memory_pressures") else "") if "tcp_mem_mib" in v else "")
            tw = f"{v['time_wait']:,}" if "time_wait" in v else ""
            md.append(f"| {display(t)} | {v['rss_before_kib'] / 1024:.1f} | {v['rss_held_kib'] / 1024:.1f} | "
                      f"{v['kib_per_client']:.1f} | {probe} | {kmem} | {tw} | {v['rss_left_kib'] / 1024:.1f} |")
        md += [""]
    return md


def h2_memory_table(h2mem):
    if not h2mem:
        return []
    md = ["## Memory: an idle HTTP/2 connection against an idle HTTP/1.1 one", "",
          "tandem with `http2_cleartext = true`, freshly started for each column, no warm-up; connections "
          "opened in bursts as in the idle case, one 1 KiB request each, then left open: HTTP/1.1 requests, "
          "or the h2c preface, SETTINGS (and the ACK of the server's) and one GET on stream 1 (HPACK literals). "
          "B/conn as in the idle case (RSS growth less the code paged in).",
          "", "| server | connections | HTTP/1.1 B/conn | HTTP/2 B/conn | HTTP/2 extra B/conn |",
          "|---|---:|---:|---:|---:|"]
    for t, v in sorted(h2mem.items(), key=lambda kv: order_key(kv[0])):
        n = next(iter(v["h2"]["counts"]))
        a, b = v["h1"]["counts"][n]["bytes_per_conn"], v["h2"]["counts"][n]["bytes_per_conn"]
        md.append(f"| {display(t)} | {n:,} | {a:,.0f} | {b:,.0f} | {b - a:+,.0f} |")
    return md + [""]


def tls_memory_table(tlsmem, mem):
    """An idle HTTPS keep-alive connection, beside a plain one from the idle
    case at the same count (when that ran)."""
    if not tlsmem:
        return []
    md = ["## Memory: an idle HTTPS connection", "",
          "Each server freshly started with its TLS listener, no warm-up; connections opened in bursts as in "
          "the idle case by Python's ssl client (TLS 1.3, ALPN http/1.1, OpenSSL's default suites, the "
          "harness's ECDSA P-256 certificate), each with its full handshake and one 1 KiB request, then left "
          "open: RSS growth per connection, less the code paged in (as in the idle case). The plain column is "
          "the idle case's figure at the same count.", "",
          "| server | connections | HTTPS B/conn | plain HTTP/1.1 B/conn | agreed |", "|---|---:|---:|---:|---|"]
    for t, v in sorted(tlsmem.items(), key=lambda kv: order_key(kv[0])):
        n, c = next(iter(v["counts"].items()))
        plain = ((mem.get(t) or {}).get("counts") or {}).get(n)
        md.append(f"| {display(t)} | {n:,} | {c['bytes_per_conn']:,.0f} | "
                  f"{plain['bytes_per_conn']:,.0f} | " if plain else
                  f"| {display(t)} | {n:,} | {c['bytes_per_conn']:,.0f} |  | ")
        md[-1] += f"{v.get('suite', '')} |"
    return md + [""]


def write_csv(cells, data, outdir):
    rnd = lambda v, d=3: "" if v is None else round(v, d)  # noqa: E731
    with open(os.path.join(outdir, "results.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["case", "workload", "server", "rounds", "connections", "req_s", "req_s_vs_nginx", "mb_s",
                     "p50_ms", "p99_ms", "cpu_us_per_req", "cpu_vs_nginx", "cpu_vs_best_peer",
                     "cpu_vs_fixed_reply_loop", "errors", "other_cpu_pct"])
        for k in sorted(cells, key=lambda k: (CASE_ORDER.index(k[0]) if k[0] in CASE_ORDER else 99,
                                              str(type(k[1])), k[1], order_key(k[2]))):
            c = cells[k]
            wr.writerow([c["case"], item_label(c["case"], c["item"]), display(c["server"]), c["rounds"], c["conns"],
                         rnd(c["req_s"], 1), rnd(c["req_x_nginx"]), rnd(c["mb_s"], 2), rnd(c["p50_ms"]),
                         rnd(c["p99_ms"]), rnd(c["cpu_us"]), rnd(c["cpu_x_nginx"]), rnd(c["cpu_x_best"]),
                         rnd(c["cpu_x_loop"]), c["errors"], rnd(c["other_pct"], 1)])
        # The host-speed runs (bench.py's host_speed), apart from the cases.
        for when, r in ((w, (data.get("host") or {}).get(w)) for w in ("start", "end")):
            if r:
                wr.writerow(["host speed", f"1 KiB, at the {when}", display("ceiling-epoll"), 1, r["conns"],
                             rnd(r["req_s"], 1), "", rnd(r["mb_s"], 2), rnd(r["p50_ms"]), rnd(r["p99_ms"]),
                             rnd(r["cpu_us"]), "", "", "", r["errors"], rnd(r["other_pct"], 1)])
    with open(os.path.join(outdir, "memory.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["case", "server", "clients", "rss_before_kib", "rss_kib", "bytes_per_client", "rss_left_kib",
                     "new_client_answered_ms", "probe_error", "kernel_tcp_mem_mib", "time_wait", "code_kib"])
        for t, v in data["memory"].items():
            for n, c in v["counts"].items():
                wr.writerow(["idle keep-alive", display(t), n, v["rss_before_kib"], c["rss_kib"],
                             round(c["bytes_per_conn"]), v["rss_left_kib"], "", "", "", "", c.get("code_kib", "")])
        for t, v in (data.get("h2mem") or {}).items():
            for proto, label in (("h1", "idle HTTP/1.1, h2c on"), ("h2", "idle HTTP/2 (h2c)")):
                for n, c in v[proto]["counts"].items():
                    wr.writerow([label, display(t), n, v[proto]["rss_before_kib"], c["rss_kib"],
                                 round(c["bytes_per_conn"]), v[proto]["rss_left_kib"], "", "", "", "",
                                 c.get("code_kib", "")])
        for t, v in (data.get("tlsmem") or {}).items():
            for n, c in v["counts"].items():
                wr.writerow(["idle HTTPS", display(t), n, v["rss_before_kib"], c["rss_kib"],
                             round(c["bytes_per_conn"]), v["rss_left_kib"], "", "", "", "", c.get("code_kib", "")])
        for t, v in data["nonread"].items():
            wr.writerow(["never reads", display(t), v["clients"], v["rss_before_kib"], v["rss_held_kib"],
                         round(v["kib_per_client"] * 1024), v["rss_left_kib"], rnd(v["probe_ms"], 1),
                         v.get("probe_error") or "", rnd(v.get("tcp_mem_mib"), 0), v.get("time_wait", ""), ""])
    with open(os.path.join(outdir, "rounds.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        fields = ["case", "item", "server", "round", "conns", "req_s", "mb_s", "p50_ms", "p99_ms", "cpu_us",
                  "errors", "other_pct", "retries"]
        wr.writerow(fields)
        for r in data["runs"]:
            wr.writerow([item_label(r["case"], r["item"]) if f == "item" else display(r[f]) if f == "server"
                         else r.get(f) for f in fields])


# --- chart ------------------------------------------------------------------------

def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(cells, mem, nonread, data, path):
    """Small multiples, one horizontal bar chart per panel: the panel's title
    names the workload, the unit and which way is better; every bar is
    labelled with its server and its value, so nothing relies on colour."""
    panels = []

    def add(workload, metric, unit, better, rows, kind):
        rows = [(s, v) for s, v in sorted(rows, key=lambda sv: order_key(sv[0])) if v is not None]
        if rows:
            panels.append((workload, f"{metric}, {unit}, {better} is better", rows, kind))

    def col(case, item, key):
        return [(k[2], c[key]) for k, c in cells.items() if k[0] == case and k[1] == item]

    cpu, rps = ("CPU per request", "µs", "lower"), ("requests per second", "req/s", "higher")
    hot = sorted({k[1] for k in cells if k[0] == "hot"})
    for size in hot:
        add(f"{size_label(size)}, one URL", *cpu, col("hot", size, "cpu_us"), "us")
    for size in hot:
        add(f"{size_label(size)}, one URL", *rps, col("hot", size, "req_s"), "int")
    for case, what in (("many files", "file cache on"), ("many, no cache", "no file cache")):
        for item in ("uniform", "zipf"):
            add(f"Many files, {item_label(case, item)}, {what}", *cpu, col(case, item, "cpu_us"), "us")
    if mem:
        n = max(n for v in mem.values() for n in v["counts"])
        add(f"{n:,} idle connections, fresh server", "RSS per connection", "bytes", "lower",
            [(t, v["counts"].get(n, {}).get("bytes_per_conn")) for t, v in mem.items()], "int")
    if nonread:
        c = data["settings"]["nonread"][0]
        add(f"{c} clients that never read", "RSS per client", "KiB", "lower",
            [(t, v["kib_per_client"]) for t, v in nonread.items()], "f")
    add("HTTPS, 1 KiB", *cpu, col("https", "1k", "cpu_us"), "us")
    add("HTTPS, 1 MiB", *rps, col("https", "1m", "req_s"), "int")
    add("HTTPS, full handshake per request", "connections per second", "conns/s", "higher",
        col("https", "new", "req_s"), "int")
    add("HTTP/2 over TLS, 1 KiB", *cpu, col("h2", "tls-1k", "cpu_us"), "us")
    add("HTTP/2 cleartext (h2c), 1 KiB", *cpu, col("h2", "h2c-1k", "cpu_us"), "us")
    add("HTTP/2 over TLS, 1 MiB", *rps, col("h2", "tls-1m", "req_s"), "int")

    cols, label_w, bar_w, value_w, row_h, pad = 4, 168, 120, 56, 17, 22
    pw = label_w + bar_w + value_w
    mach = data["machine"]
    title = "tandem against nginx, h2o and lighttpd: 1 worker on one core, wrk on the other, 127.0.0.1"
    sub = (f"{mach['cpu']}, {mach['cpus']} CPUs, Linux {mach['kernel']}; run {data['stamp']}, "
           f"median of {data['settings']['rounds']} round{'s' if data['settings']['rounds'] != 1 else ''}; "
           f"tandem {mach['versions'].get('tandem', '?')}")
    width = max(cols * pw + (cols + 1) * pad, int(8.6 * len(title)) + 2 * pad, int(6.4 * len(sub)) + 2 * pad)
    y = 70
    body = []
    for i in range(0, len(panels), cols):
        group = panels[i:i + cols]
        h = 46 + row_h * max(len(p[2]) for p in group)
        for j, (ptitle, punit, rows, kind) in enumerate(group):
            x = pad + j * (pw + pad)
            body.append(f'<text x="{x}" y="{y + 12}" font-size="12" font-weight="bold">{esc(ptitle)}</text>')
            body.append(f'<text x="{x}" y="{y + 28}" font-size="11" fill="#555">{esc(punit)}</text>')
            top = max(v for _, v in rows) or 1
            for r, (srv, v) in enumerate(rows):
                ry = y + 38 + r * row_h
                bw = max(1.0, v / top * bar_w)
                txt = fnum(v, kind)
                body.append(f'<text x="{x + label_w - 6}" y="{ry + 11}" text-anchor="end" font-size="11">'
                            f'{esc(display(srv))}</text>')
                body.append(f'<rect x="{x + label_w}" y="{ry}" width="{bw:.1f}" height="{row_h - 4}" '
                            f'fill="{COLORS.get(srv.split("@")[0], "#999")}"/>')
                body.append(f'<text x="{x + label_w + bw + 4:.1f}" y="{ry + 11}" font-size="11">{txt}</text>')
        y += h + 18
    height = y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{pad}" y="26" font-size="16" font-weight="bold">{esc(title)}</text>',
           f'<text x="{pad}" y="46" font-size="11" fill="#555">{esc(sub)}</text>'] + body + ["</svg>"]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
