#!/usr/bin/env bash
# wrk comparison: tandem (epoll, io_uring), nginx and the ceiling loops
# (benches/ceiling_*.rs) serving the same files on 127.0.0.1, side by side in
# one run. The work is done by benches/bench.py (Python 3 standard library);
# see its docstring and docs/benchmarks.md.
#
#   benches/wrk.sh                     # full run: 1 KiB..100 MiB, log off/on, 1 and 2 workers, idle case
#   QUICK=1 benches/wrk.sh             # smoke test: 1 round of 2 s, 1 KiB and 1 MiB
#   IDLE_ONLY=1 benches/wrk.sh         # the idle case alone: 5,000 connections in bursts of 500, fresh servers
#   BASE_BIN=/tmp/base/target/release/tandem TARGETS="epoll epoll@base" benches/wrk.sh
#
# The compressed case (issue 23): python3 benches/compressed.py (ROUNDS, DURATION).
#
# Knobs: DURATION DURATION_HUGE ROUNDS SIZES LOG_SIZES W2_SIZES WORKERS CONNS CONNS_HUGE
# THREADS TARGETS CEILING IDLE_CONNS IDLE_BURST IDLE_ONLY NOISE PIN BASE_BIN QUICK.
# Only 127.0.0.1 is ever targeted; every wrk run is bounded; everything the
# run starts is stopped when it ends.
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" "$@"
