#!/usr/bin/env bash
# mindie-ms benchmarks. Every number is measured in this run, against a baseline measured in the same run.
#   bash bench/run.sh overhead [seconds]   direct, ms_coordinator, nginx, sglang-router, vllm-router in front of the same
#                                          simulators (bench/peers.py): throughput, p50/p99, time to first event, each
#                                          router's CPU-µs per request and per SSE event, peak RSS, ratios
#   bash bench/run.sh paced [seconds] [paced.py options]
#                                          the cost per relayed event: an upstream that writes each SSE event as its own
#                                          segment, one inter-token delay apart (bench/paced_upstream.c), behind direct,
#                                          ms_coordinator, nginx (1 worker), vllm-router, sglang-router; CPU per stream and
#                                          per event, non-stream CPU, time to first event vs direct, ratios to nginx and
#                                          to the best router peer, 3 rounds (bench/paced.py --help)
#   bash bench/run.sh coordinator [seconds] direct-to-simulator vs through ms_coordinator only, at two concurrencies
#                                          (ACCESS_LOG=1: with log_info.access_log on, written under the run's temp dir)
#   bash bench/run.sh proxy [seconds]      the bare CH2O proxy vs direct (bench/proxy_overhead.sh)
#   bash bench/run.sh routing|scale|pd     routing quality per policy (ours and the peers' cache_aware), 1,000 and 5,000
#                                          concurrent streams, 1P1D vs 2 mixed (bench/quality.py, TTFT/ITL per request)
# Results: a dated Markdown table under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-overhead}
SECS=${2:-8}
export PATH=/opt/swift/usr/bin:$PATH

need() { command -v "$1" >/dev/null || { apt-get install -y -qq "$2" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2"; }; }; }
need wrk wrk

case "$MODE" in
  proxy) exec bash bench/proxy_overhead.sh "$SECS" 32 ;;
  overhead) exec python3 bench/peers.py --seconds "$SECS" ;;
  paced) need nginx nginx-light; need gcc gcc; exec python3 bench/paced.py --seconds "${2:-6}" "${@:3}" ;;
  routing|scale|pd) exec python3 bench/quality.py "$MODE" ;;
  coordinator) ;;
  *) echo "bench/run.sh: unknown mode '$MODE' (overhead | paced | coordinator | proxy | routing | scale | pd)" >&2; exit 2 ;;
esac

BIN=${MINDIE_MS_BIN:-$ROOT/out/bin}
if [ ! -x "$BIN/ms_coordinator" ] || [ ! -x "$BIN/mindie_sim" ]; then
  swift build -c release >/dev/null
  BIN=$(swift build -c release --show-bin-path)
fi
WORK=$(mktemp -d /tmp/mindie-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "not up: $1" >&2; exit 1; }

# one simulator instance, fast engine (the Coordinator's cost is what is measured)
SP=$(free_port); SM=$(free_port); SX=$(free_port); SI=$(free_port)
"$BIN/mindie_sim" --port "$SP" --management-port "$SM" --metrics-port "$SX" --inter-comm-port "$SI" \
  --profile tiny --speedup 1000 --wire compat --fix connection-close >"$WORK/sim.log" 2>&1 & pids+=($!); SIMPID=$!
wait_http "http://127.0.0.1:$SM/v1/status"

CP=$(free_port); CM=$(free_port); CS=$(free_port); CE=$(free_port)
python3 - "$ROOT/conf/ms_coordinator.json" "$WORK/coord.json" "$CP" "$CM" "$CS" "$CE" "${ACCESS_LOG:-0}" "$WORK/access.log" <<'PY'
import json, sys
src, dst, cp, cm, cs, ce, access_log, access_path = sys.argv[1:]
c = json.load(open(src))
c["http_config"].update(predict_port=cp, manage_port=cm, status_port=cs, external_port=ce, server_thread_num=1)
c["digs_scheduler_config"].update(deploy_mode="single_node", scheduler_type="default_scheduler", algorithm_type="round_robin")
c["log_info"]["log_level"] = "WARN"
if access_log == "1":
    c["log_info"]["access_log"] = {"enable": True, "path": access_path}
json.dump(c, open(dst, "w"), indent=2)
PY
chmod 0640 "$WORK/coord.json"
MINDIE_LOG_LEVEL=warning "$BIN/ms_coordinator" --config "$WORK/coord.json" --threads 1 >"$WORK/coord.log" 2>&1 & pids+=($!); CPID=$!
wait_http "http://127.0.0.1:$CS/v1/health"
curl -s -X POST "http://127.0.0.1:$CM/v1/instances/refresh" -d "{\"ids\":[0],\"instances\":[{\"id\":0,\"ip\":\"127.0.0.1\",\"port\":\"$SP\",\"metric_port\":\"$SX\",\"inter_comm_port\":\"$SI\",\"model_name\":\"llama3-8b\",\"static_info\":{\"group_id\":0,\"max_seq_len\":4096,\"max_output_len\":1024,\"total_slots_num\":1000,\"total_block_num\":100000,\"block_size\":128,\"label\":2,\"role\":85,\"p_percentage\":0,\"virtual_id\":0},\"dynamic_info\":{\"avail_slots_num\":1000,\"avail_block_num\":100000,\"peers\":[]}}]}" >/dev/null
for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CS/v1/readiness")" = 200 ] && break; sleep 0.05; done

cat > "$WORK/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"llama3-8b","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}'
wrk.headers["Content-Type"] = "application/json"
LUA
EVENTS=16
cat > "$WORK/stream.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"llama3-8b","messages":[{"role":"user","content":"hello there"}],"max_tokens":$EVENTS,"stream":true}'
wrk.headers["Content-Type"] = "application/json"
LUA

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# the access log's writer thread (named access-log): its CPU is off the loop, reported apart from the total
writer_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = access-log ]; then awk '{print $14+$15}' "$t/stat"; fi
  done | awk '{s+=$1} END{print s+0}'
}
HZ=$(getconf CLK_TCK)
rows=()
measure() { # name url script conns events_per_request
  local name=$1 url=$2 script=$3 conns=$4 events=$5 t0 t1 w0 w1 out rps p50 p99 n errs cpu_req cpu_ev cpu_w
  t0=$(ticks "$CPID"); w0=$(writer_ticks "$CPID")
  out=$(wrk -t1 -c"$conns" -d"${SECS}s" --latency -s "$script" "$url")
  t1=$(ticks "$CPID"); w1=$(writer_ticks "$CPID")
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  n=$(echo "$out" | awk '/requests in/{print $1}')
  errs=$(echo "$out" | awk '/Non-2xx/{print $4} /Socket errors/{print $0}' | tr '\n' ' ')
  if [[ "$url" == *":$CP/"* ]]; then
    cpu_req=$(awk -v t=$((t1-t0)) -v hz="$HZ" -v n="$n" 'BEGIN{printf "%.1f", t*1e6/hz/n}')
    cpu_ev=$(awk -v t=$((t1-t0)) -v hz="$HZ" -v n="$n" -v e="$events" 'BEGIN{printf "%.1f", t*1e6/hz/n/e}')
    cpu_w=$(awk -v t=$((w1-w0)) -v hz="$HZ" -v n="$n" 'BEGIN{printf "%.1f", t*1e6/hz/n}')
  else
    cpu_req="–"; cpu_ev="–"; cpu_w="–"
  fi
  rows+=("| $name | $conns | $rps | $p50 | $p99 | $cpu_req | $cpu_ev | $cpu_w | ${errs:-0} |")
  echo "$name c=$conns: $rps req/s p50 $p50 p99 $p99 coordinator CPU ${cpu_req} µs/req ${cpu_ev} µs/event ${errs}"
}
for c in 16 64; do
  measure "non-stream chat, direct" "http://127.0.0.1:$SP/v1/chat/completions" "$WORK/chat.lua" $c 1
  measure "non-stream chat, via Coordinator" "http://127.0.0.1:$CP/v1/chat/completions" "$WORK/chat.lua" $c 1
  measure "SSE chat ($EVENTS tokens), direct" "http://127.0.0.1:$SP/v1/chat/completions" "$WORK/stream.lua" $c $((EVENTS + 2))
  measure "SSE chat ($EVENTS tokens), via Coordinator" "http://127.0.0.1:$CP/v1/chat/completions" "$WORK/stream.lua" $c $((EVENTS + 2))
done
RSS=$(awk '/VmHWM/{print $2}' "/proc/$CPID/status")

mkdir -p bench/results
OUT="bench/results/$(date -u +%Y-%m-%d)-coordinator.md"
{
  echo "# Coordinator overhead, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r). mindie-ms $("$BIN/ms_coordinator" --version)."
  echo "Backend: one mindie_sim (tiny profile, --speedup 1000, compat wire). Coordinator: single_node round_robin, 1 loop thread, WARN logs."
  echo "Load: wrk -t1 -d${SECS}s; every process on the same cores. CPU is the Coordinator's utime+stime / requests (per event: / $((EVENTS + 2)) SSE events)."
  echo "Command: ${ACCESS_LOG:+ACCESS_LOG=$ACCESS_LOG }bash bench/run.sh coordinator $SECS"
  echo "Access log: $([ "${ACCESS_LOG:-0}" = 1 ] && echo "on ($(wc -l <"$WORK/access.log") lines written)" || echo off)."
  echo
  echo "| run | conns | req/s | p50 | p99 | Coordinator CPU µs/req | µs/event | of which access-log thread µs/req | errors |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Coordinator peak RSS: ${RSS} kB."
} > "$OUT"
echo
cat "$OUT"
