#!/usr/bin/env bash
# The benchmark: tandem (epoll, io_uring) against nginx, h2o, lighttpd and
# the fixed-reply loops (benches/ceiling_*.rs), serving the same files on
# 127.0.0.1, side by side in one run. The work is done by benches/bench.py
# (Python 3 standard library; server configs in peers.py, the report in
# report.py); see docs/benchmarks.md.
#
#   benches/wrk.sh                   # full run, under 15 minutes: CASES="hot log many tls h2 memory"
#   QUICK=1 benches/wrk.sh           # under a minute: 1 KiB and 1 MiB (one 2 s round), memory at 1,000 conns
#   CASES=memory benches/wrk.sh      # one case alone (hot, log, many, tls, h2, memory)
#   BASE_BIN=/tmp/base/target/release/tandem TARGETS="epoll epoll@base" CASES=hot benches/wrk.sh
#
# The compressed case: python3 benches/compressed.py (ROUNDS, DURATION).
#
# Knobs: CASES DURATION DURATION_HUGE ROUNDS SIZES LOG_SIZES W2_SIZES CONNS CONNS_HUGE
# THREADS TARGETS UNCACHED_TARGETS TLS_TARGETS TLS_ITEMS H2_TARGETS H2_ITEMS H2_STREAMS H2_DURATION
# H2_IDLE_COUNT TLS_IDLE_COUNT CEILING IDLE_COUNTS IDLE_BURST
# NONREAD_CLIENTS NONREAD_PIPELINE NONREAD_SIZE MANY_FILES ZIPF_S STIME_CLIENTS
# NOISE NOISY_PCT QUIET_RETRIES RETRY_BUDGET HOST_DRIFT_PCT PIN BASE_BIN QUICK IDLE_ONLY.
# Every run (QUICK too) begins and ends with the fixed-reply epoll loop at
# 1 KiB (one 2 s round, fresh process) and compares it with the one in
# benches/results/latest.csv: the report warns when the host's speed moved
# by more than HOST_DRIFT_PCT % (15).
# Only 127.0.0.1 is ever targeted; every client run is bounded; everything the
# run starts is stopped when it ends.
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" "$@"
