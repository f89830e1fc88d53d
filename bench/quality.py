#!/usr/bin/env python3
"""Routing quality, scale and PD benchmarks, with a load generator that measures TTFT and inter-token latency of
every streamed request (asyncio over raw HTTP/1.1, no client library in the way).

    python3 bench/quality.py routing   4 simulators (prefix cache on), a shared-prefix multi-turn chat workload;
                                       per policy: simulator cache hit rate, TTFT p50/p99, ITL p50, throughput.
                                       Coordinator: round_robin, least_load, cache_affinity, prefix_affinity;
                                       peers: sglang-router and vllm-router cache_aware.
    python3 bench/quality.py scale     1,000 and 5,000 concurrent slow streams through the Coordinator:
                                       RSS per stream and CPU per relayed event.
    python3 bench/quality.py pd        1P1D against 2 mixed instances (same simulated hardware), the same load.
Results: a dated Markdown table under bench/results/.
"""
import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import peers  # noqa: E402
from peers import ROOT, HZ, free_port, wait_http, tree_ticks  # noqa: E402


# ---------------------------------------------------------------------------- the load generator

async def stream_chat(host, port, messages, max_tokens, stats):
    """One streamed chat: records TTFT (first SSE data event) and the gaps between events."""
    body = json.dumps({"model": "llama3-8b", "messages": messages, "max_tokens": max_tokens, "stream": True}).encode()
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.1 200")
    last = None
    text = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        now = time.perf_counter()
        text += chunk
        n = chunk.count(b"data: ")
        if n and last is None:
            stats["ttft"].append((now - t0) * 1000)
        elif n and last is not None:
            stats["itl"].append((now - last) * 1000 / n)
        if n:
            last = now
    writer.close()
    stats["ok" if ok and b"data: [DONE]" in text else "failed"] += 1
    stats["events"] += text.count(b"data: ")
    return text


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def new_stats():
    return {"ttft": [], "itl": [], "ok": 0, "failed": 0, "events": 0}


# ---------------------------------------------------------------------------- cluster pieces

class Procs(peers.Bench):
    """Process management and the Coordinator/peer starters of peers.py, on simulators chosen here."""

    def __init__(self):
        super().__init__(seconds=0, conns=[])

    def sims(self, n, extra=(), dmi=False):
        self.sim_port = free_port()
        self.workers, self.metric_ports = [], []
        for k in range(n):
            ip = f"127.0.0.{2 + k}"
            mp = free_port()
            args = [os.path.join(self.bin, "mindie_sim"), "--ip", ip, "--management-ip", ip, "--port", str(self.sim_port),
                    "--management-port", str(self.sim_port), "--metrics-port", str(mp), "--inter-comm-port", str(free_port()),
                    "--wire", "compat", "--fix", "connection-close", "--seed", str(k + 1), *extra]
            if dmi:
                args += ["--infer-mode", "dmi"]
            self.spawn(args)
            self.workers.append(f"http://{ip}:{self.sim_port}")
            self.metric_ports.append((ip, mp))
        for w in self.workers:
            if not wait_http(w + "/health"):
                raise SystemExit(f"simulator {w} did not start")

    def coordinator_with(self, algorithm, health=None):
        ports = {k: free_port() for k in ("predict", "manage", "status", "external")}
        c = json.load(open(os.path.join(ROOT, "conf", "ms_coordinator.json")))
        c["http_config"].update(predict_port=str(ports["predict"]), manage_port=str(ports["manage"]),
                                status_port=str(ports["status"]), external_port=str(ports["external"]))
        c["digs_scheduler_config"].update(deploy_mode="single_node", scheduler_type="default_scheduler",
                                          algorithm_type=algorithm, prefix_block_size="64")
        c["request_limit"]["max_requests"] = 20000
        if health:
            c.setdefault("instance_health_config", {}).update(health)
        path = os.path.join(self.tmp, f"coord-{algorithm}.json")
        json.dump(c, open(path, "w"))
        os.chmod(path, 0o640)
        p = self.spawn([os.path.join(self.bin, "ms_coordinator"), "--config", path, "--threads", "2"],
                       env=dict(os.environ, MINDIE_LOG_LEVEL="warning"))
        wait_http(f"http://127.0.0.1:{ports['status']}/v1/health")
        inst = []
        for k, w in enumerate(self.workers):
            ip = w.split("//")[1].split(":")[0]
            inst.append({"id": k, "ip": ip, "port": str(self.sim_port), "metric_port": str(self.metric_ports[k][1]),
                         "inter_comm_port": "", "model_name": "llama3-8b",
                         "static_info": {"group_id": 0, "max_seq_len": 8192, "max_output_len": 2048, "total_slots_num": 5000,
                                         "total_block_num": 100000, "block_size": 128, "label": 2, "role": 85,
                                         "p_percentage": 0, "virtual_id": k},
                         "dynamic_info": {"avail_slots_num": 5000, "avail_block_num": 100000, "peers": []}})
        req = urllib.request.Request(f"http://127.0.0.1:{ports['manage']}/v1/instances/refresh",
                                     data=json.dumps({"ids": list(range(len(inst))), "instances": inst}).encode(), method="POST")
        urllib.request.urlopen(req, timeout=5)
        return ports["predict"], p

    def hit_rate(self):
        hits = lookups = 0.0
        for ip, mp in self.metric_ports:
            text = urllib.request.urlopen(f"http://{ip}:{mp}/metrics", timeout=5).read().decode()
            for line in text.splitlines():
                if line.startswith("npu_radix_match_hit_num"):
                    hits += float(line.split()[-1])
                elif line.startswith("all_radix_match_num"):
                    lookups += float(line.split()[-1])
        return hits / lookups if lookups else 0.0

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)
        self.procs = []


# ---------------------------------------------------------------------------- modes

def conversations(n_conv, turns, facts=150):
    """Multi-turn chats, each with its own long system document (the cacheable prefix)."""
    convs = []
    for c in range(n_conv):
        doc = " ".join(f"document {c} fact {i} is {c * 1000 + i}." for i in range(facts))
        convs.append({"system": doc, "turns": [f"question {t} of conversation {c}" for t in range(turns)]})
    return convs


async def run_conversations(port, convs, turns, concurrency, stats, max_tokens=16):
    sem = asyncio.Semaphore(concurrency)

    async def one(conv):
        history = [{"role": "system", "content": conv["system"]}]
        for t in range(turns):
            history.append({"role": "user", "content": conv["turns"][t]})
            async with sem:
                text = await stream_chat("127.0.0.1", port, history, max_tokens, stats)
            answer = " ".join(json.loads(l[6:])["choices"][0]["delta"].get("content", "")
                              for l in text.decode(errors="replace").split("\n")
                              if l.startswith("data: {") and '"choices":[{' in l).strip()
            history.append({"role": "assistant", "content": answer or "ok"})

    await asyncio.gather(*(one(c) for c in convs))


def routing(args, out):
    rows, notes = [], []
    systems = [("ms_coordinator", a) for a in ("round_robin", "least_load", "cache_affinity", "prefix_affinity")]
    venv = None
    try:
        probe = Procs()
        venv = probe.venv()
        probe.cleanup()
        systems += [("sglang-router", "cache_aware"), ("vllm-router", "cache_aware")]
    except Exception as e:
        notes.append(f"sglang-router and vllm-router: not measured — {e}")
    convs = conversations(args.conversations, args.turns)
    for system, policy in systems:
        b = Procs()
        try:
            b.sims(4, extra=["--profile", "8b", "--speedup", str(args.speedup)])
            if system == "ms_coordinator":
                port, _ = b.coordinator_with(policy)
            else:
                port = free_port()
                exe = ([os.path.join(venv, "bin", "python"), "-m", "sglang_router.launch_router", "--log-level", "warn",
                        "--prometheus-port", str(free_port())] if system == "sglang-router"
                       else [os.path.join(venv, "bin", "vllm-router"), "--log-level", "warning",
                             "--prometheus-port", str(free_port())])
                b.spawn(exe + ["--host", "127.0.0.1", "--port", str(port), "--worker-urls", *b.workers, "--policy", policy])
                if not wait_http(f"http://127.0.0.1:{port}/health", 60):
                    raise RuntimeError(f"{system} did not start")
            stats = new_stats()
            t0 = time.perf_counter()
            asyncio.run(run_conversations(port, convs, args.turns, args.concurrency, stats))
            elapsed = time.perf_counter() - t0
            rows.append((system, policy, b.hit_rate(), pct(stats["ttft"], 0.5), pct(stats["ttft"], 0.99),
                         pct(stats["itl"], 0.5), stats["ok"] / elapsed, stats["failed"]))
            print(f"{system} {policy}: hit {rows[-1][2]:.2f} TTFT p50 {rows[-1][3]:.1f} ms p99 {rows[-1][4]:.1f} ms "
                  f"ITL p50 {rows[-1][5]:.2f} ms {rows[-1][6]:.1f} req/s failed {stats['failed']}", flush=True)
        except Exception as e:
            notes.append(f"{system} {policy}: not measured — {e}")
        finally:
            b.stop_all()
            b.cleanup()
    lines = ["| router | policy | cache hit rate | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | req/s | failed |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.2f} | {r[6]:.1f} | {r[7]} |" for r in rows]
    out(f"Routing quality: {args.conversations} conversations × {args.turns} turns, each with its own ~5,000-character "
        f"document, {args.concurrency} in flight, 16 tokens per answer; 4 mindie_sim (8b profile, speedup {args.speedup}).",
        lines, notes)


def scale(args, out):
    rows = []
    # the Coordinator holds two sockets per stream (client and engine): 10,000 streams need more than a 20,000 hard limit;
    # raising the hard limit needs CAP_SYS_RESOURCE, else the hard limit is what there is
    notes = []
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = max(hard, 3 * max(args.streams) + 1024)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        notes.append(f"descriptor hard limit {hard} (no CAP_SYS_RESOURCE to raise it): the Coordinator takes at most about "
                     f"{hard // 2 - 20} streams (two sockets each), more are refused with 503")
    for n in args.streams:
        b = Procs()
        try:
            # slow engines: every stream stays open for the whole measurement
            # KV room for 5,000 running requests per engine (the 8b profile's 1,024 blocks queue all past 2,048)
            b.sims(2, extra=["--profile", "8b", "--speedup", "0.25", "--set", "maxBatchSize=5000", "--set", "totalBlocks=6000"])
            # thousands of prompts queue for prefill in two slow engines: the last first bytes come after the default
            # 10 s first-byte deadline, which would count the engines' queue as Coordinator failures
            port, p = b.coordinator_with("round_robin", health={"first_byte_timeout_ms": 120000})
            rss0 = peers.peak_rss_kb(p.pid)
            rss_now = lambda: int([l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1])
            base = rss_now()
            stats = new_stats()
            t0 = tree_ticks(p.pid)

            async def many():
                tasks = [asyncio.create_task(stream_chat("127.0.0.1", port, [{"role": "user", "content": "hi"}], 24, stats))
                         for _ in range(n)]
                await asyncio.sleep(args.hold)
                # sampled once every stream is relaying (had its first event) or has ended, so that all are open at once
                # and none still waits in an engine's queue
                while len(stats["ttft"]) + stats["failed"] < n and not all(t.done() for t in tasks):
                    await asyncio.sleep(0.2)
                held = rss_now()
                open_at_sample[0] = n - stats["ok"] - stats["failed"]
                await asyncio.gather(*tasks, return_exceptions=True)
                return held

            open_at_sample = [0]
            held = asyncio.run(many())
            t1 = tree_ticks(p.pid)
            events = stats["ok"] * 26
            rows.append((n, (held - base) / n, (t1 - t0) * 1e6 / HZ / max(events, 1), stats["ok"], stats["failed"]))
            print(f"{n} streams: {rows[-1][1]:.1f} kB RSS per stream, {rows[-1][2]:.2f} µs CPU per event, ok {stats['ok']} "
                  f"failed {stats['failed']}, open when sampled {open_at_sample[0]}", flush=True)
        finally:
            b.stop_all()
            b.cleanup()
    lines = ["| concurrent streams | RSS per stream (kB) | CPU per relayed event (µs) | completed | failed |", "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]:.1f} | {r[2]:.2f} | {r[3]} | {r[4]} |" for r in rows]
    out("Scale: N concurrent streamed chats (24 tokens each, slow engines so all are open at once) through ms_coordinator "
        "(single_node, round_robin, 2 loop threads) over 2 mindie_sim; RSS growth sampled while every stream is open.",
        lines, notes)


def pd(args, out):
    import local_cluster
    rows = []
    for mode in ("single", "pd"):
        c = local_cluster.LocalCluster(mode=mode, p=1, d=1, instances=2, speedup=args.speedup, base_port=25025,
                                       first_ip=80, workdir=os.path.join(peers.tempfile.mkdtemp(prefix="mindie-pd-")),
                                       binaries=os.environ.get("MINDIE_MS_BIN") or os.path.join(ROOT, "out", "bin"),
                                       policy="round_robin")
        try:
            c.start()
            stats = new_stats()
            convs = conversations(args.conversations, 1)
            t0 = time.perf_counter()
            coordinator = c.procs["ms_coordinator"].pid
            ticks0 = tree_ticks(coordinator)

            async def load():
                sem = asyncio.Semaphore(args.concurrency)

                async def one(conv):
                    async with sem:
                        await stream_chat("127.0.0.1", c.coord_ports["predict"],
                                          [{"role": "system", "content": conv["system"]}, {"role": "user", "content": "go"}],
                                          64, stats)
                await asyncio.gather(*(one(cv) for cv in convs * 4))

            asyncio.run(load())
            elapsed = time.perf_counter() - t0
            # the Coordinator's CPU per SSE event it delivered: relayed whole (single) or demultiplexed from P's reply
            # and D's /dresult link (PD)
            per_event = (tree_ticks(coordinator) - ticks0) * 1e6 / HZ / max(stats["events"], 1)
            rows.append(("1P1D (pd_separate)" if mode == "pd" else "2 mixed (single_node)", pct(stats["ttft"], 0.5),
                         pct(stats["ttft"], 0.99), pct(stats["itl"], 0.5), pct(stats["itl"], 0.99), stats["ok"] / elapsed,
                         stats["failed"], per_event))
            print(rows[-1], flush=True)
        finally:
            c.stop()
    lines = ["| deployment | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | req/s | failed | Coordinator CPU µs/event |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.1f} | {r[6]} | {r[7]:.1f} |" for r in rows]
    out(f"PD: two simulated accelerators either as 1P1D or as 2 mixed instances (8b profile, speedup {args.speedup}), "
        f"{args.conversations * 4} streamed chats of 64 tokens on ~5,000-character prompts, {args.concurrency} in flight, "
        "through the full stack (Controller, Coordinator, round_robin).", lines, [])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["routing", "scale", "pd"])
    ap.add_argument("--conversations", type=int, default=12)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--speedup", type=float, default=1.0)
    ap.add_argument("--streams", default="1000,5000")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds to let the scale streams open before sampling RSS")
    a = ap.parse_args()
    a.streams = [int(x) for x in a.streams.split(",")]

    def out(title, lines, notes):
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        path = os.path.join(ROOT, "bench", "results", time.strftime(f"%Y-%m-%d-{a.mode}.md", time.gmtime()))
        text = [f"# {a.mode}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
                f"Machine: {os.cpu_count()} cores, {os.uname().release}. {title}",
                f"Command: python3 bench/quality.py {' '.join(sys.argv[1:])}", ""] + lines + [""] + [f"- {n}" for n in notes]
        open(path, "w").write("\n".join(text) + "\n")
        print("\n".join(text))

    {"routing": routing, "scale": scale, "pd": pd}[a.mode](a, out)


if __name__ == "__main__":
    main()
