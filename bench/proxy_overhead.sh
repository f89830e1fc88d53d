#!/usr/bin/env bash
# CH2O proxy overhead: a small JSON request direct to an upstream vs through the CH2O proxy, in one run.
# Prints throughput, latency, and the proxy's CPU-µs per request (utime+stime from /proc/PID/stat).
#   bash bench/proxy_overhead.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
CONNS=${2:-32}
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }; }
export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product ch2o_bench >/dev/null
BIN=$(swift build -c release --show-bin-path)/ch2o_bench
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
UP=18901; PX=18900
"$BIN" upstream --port $UP --threads 1 2>/dev/null & pids+=($!)
"$BIN" proxy --port $PX --threads 1 --upstreams $UP 2>/dev/null & pids+=($!); PXPID=$!
for p in $UP $PX; do for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.05; done; done
BODY=bench/small_chat.lua
cat > "$BODY" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
wrk.headers["Content-Type"] = "application/json"
LUA
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
run() { wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$BODY" "$1" ; }
echo "== direct to upstream"
D=$(run "http://127.0.0.1:$UP/v1/chat/completions")
echo "$D" | grep -E "Requests/sec|Latency |50%|99%"
echo "== through the CH2O proxy (1 loop thread)"
t0=$(ticks $PXPID)
P=$(run "http://127.0.0.1:$PX/v1/chat/completions")
t1=$(ticks $PXPID)
echo "$P" | grep -E "Requests/sec|Latency |50%|99%"
rd=$(echo "$D" | awk '/Requests\/sec/{print $2}')
rp=$(echo "$P" | awk '/Requests\/sec/{print $2}')
np=$(echo "$P" | awk '/requests in/{print $1}')
errs=$(echo "$P" | grep -cE "Non-2xx|Socket errors" || true)
cpu_us=$(awk -v t=$((t1-t0)) -v hz="$HZ" -v n="$np" 'BEGIN{printf "%.1f", t*1e6/hz/n}')
rss=$(awk '/VmHWM/{print $2}' /proc/$PXPID/status)
ratio=$(awk -v a="$rp" -v b="$rd" 'BEGIN{printf "%.2f", a/b}')
echo
echo "summary: direct ${rd} req/s; proxied ${rp} req/s (ratio ${ratio}); proxy CPU ${cpu_us} µs/request; proxy peak RSS ${rss} kB; error lines ${errs}"
rm -f "$BODY"
