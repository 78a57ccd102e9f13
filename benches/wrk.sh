#!/usr/bin/env bash
# wrk comparison: tandem (epoll), tandem (io_uring) and nginx serving the same
# files on 127.0.0.1, measured side by side in one run. Installs wrk and
# nginx-light from Debian's packages when they are missing.
#
#   benches/wrk.sh                      # defaults below
#   DURATION=10 CONNS=64 THREADS=2 WORKERS=1 benches/wrk.sh
#
# Only loopback is ever targeted; every wrk run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-1}
SIZES=${SIZES:-"1k 16k 256k 4m"}
# Targets: epoll, io_uring, nginx; ENGINE_rp = that engine with one
# SO_REUSEPORT listener per worker instead of the shared listener;
# ENGINE@base = that engine run by the binary $BASE_BIN (say, a build of an
# older commit), for a before/after comparison in one run:
#   BASE_BIN=/tmp/old/target/release/tandem TARGETS="epoll epoll@base" benches/wrk.sh
TARGETS=${TARGETS:-"epoll io_uring nginx"}

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "/usr/sbin/$1" ] && return 0
  echo "installing $2 ..." >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}
need wrk wrk
case " $TARGETS " in *" nginx "*) need nginx nginx-light ;; esac
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q
BIN=target/release/tandem

WORK=$(mktemp -d /tmp/tandem-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ROOT="$WORK/root"
mkdir -p "$ROOT"
for s in $SIZES; do
  head -c "$(numfmt --from=iec "${s^^}")" /dev/urandom >"$ROOT/f$s.bin"
done
# nginx workers run as an unprivileged user: let them read the files.
chmod -R a+rX "$WORK"

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "port $1 never opened" >&2; return 1
}

declare -A PORT
start_tandem() { # target: ENGINE, ENGINE_rp (SO_REUSEPORT per worker), ENGINE@base ($BASE_BIN)
  local port; port=$(free_port)
  local name=${1%@base} bin=$BIN
  [ "$name" != "$1" ] && bin=${BASE_BIN:?"set BASE_BIN to run $1"}
  local engine=${name%_rp} rp=0
  [ "$engine" != "$name" ] && rp=1
  cat >"$WORK/$1.toml" <<CFG
listen = ["127.0.0.1:$port"]
root = "$ROOT"
engine = "$engine"
workers = $WORKERS
access_log = "off"
error_log = "$WORK/$1.err"
CFG
  TANDEM_BENCH_REUSEPORT=$rp "$bin" -c "$WORK/$1.toml" &
  PIDS+=($!)
  PORT[$1]=$port
  wait_port "$port"
}

start_nginx() {
  local port; port=$(free_port)
  cat >"$WORK/nginx.conf" <<CFG
worker_processes $WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  open_file_cache max=1000 inactive=60s;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$port; root $ROOT; }
}
CFG
  "$NGINX" -c "$WORK/nginx.conf" -e "$WORK/nginx.err"
  PORT[nginx]=$port
  wait_port "$port"
}

for t in $TARGETS; do
  case $t in nginx) start_nginx ;; *) start_tandem "$t" ;; esac
done

# CPU time (user+sys, clock ticks) consumed by a server's processes.
cpu_ticks() {
  local t=$1 pids
  if [ "$t" = nginx ]; then pids=$(pgrep -f "nginx: worker" || true); else pids=$(pgrep -f "tandem -c $WORK/$t.toml" || true); fi
  local sum=0
  for p in $pids; do
    read -r -a st <"/proc/$p/stat" || continue
    sum=$((sum + st[13] + st[14]))
  done
  echo $sum
}

printf '\nwrk -t%s -c%s -d%ss, %s worker(s), %s round(s), loopback\n' "$THREADS" "$CONNS" "$DURATION" "$WORKERS" "$ROUNDS"
printf '%-7s %-9s %12s %10s %10s %14s\n' size server req/s MB/s p99 cpu-us/req
for s in $SIZES; do
  for r in $(seq 1 "$ROUNDS"); do
    for t in $TARGETS; do
      before=$(cpu_ticks "$t")
      out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT[$t]}/f$s.bin" 2>&1)
      after=$(cpu_ticks "$t")
      rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
      mbs=$(awk '/^Transfer\/sec/ {v=$2; if (v ~ /GB/) {sub("GB","",v); v*=1024} else if (v ~ /KB/) {sub("KB","",v); v/=1024} else {sub("MB","",v)}; printf "%.1f", v}' <<<"$out")
      p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr -s ' ' || true)
      tck=$(getconf CLK_TCK)
      cpu=$(awk -v a="$after" -v b="$before" -v r="$rps" -v d="$DURATION" -v t="$tck" 'BEGIN { if (r>0) printf "%.1f", (a-b)/t*1e6/(r*d); else print "-" }')
      printf '%-7s %-9s %12s %10s %10s %14s %s\n' "$s" "$t" "$rps" "$mbs" "$p99" "$cpu" "$errs"
    done
  done
done
