#!/usr/bin/env python3
"""Soak: a local PD cluster (scripts/local_cluster.py) under steady mixed traffic for a long time, with periodic
instance kills, to find what only shows after minutes or hours (hangs, leaks, drifting counters).

    python3 bench/soak.py                      # 30 minutes, 2P2D, 8 clients, a kill every 3 minutes
    python3 bench/soak.py --minutes 5 --kill-every 60 --clients 16

Every 30 s it records RSS, open fds and CPU seconds of every process of the cluster. Every request is classified:
  ok         the whole answer arrived (a stream ended with its end marker, a JSON body parsed)
  refused    an HTTP error status with a body (a clean, visible refusal: 5xx while an instance is dead, 429, ...)
  stream_err a stream that ended with an in-stream error event (visible to the client)
  hung       no answer within --request-timeout seconds
  truncated  a 200 whose stream ended without its end marker or error event, or whose JSON body did not parse
  conn_err   the connection failed or closed before a status line
At the end it checks that the Coordinator counts nothing in flight, prints a summary (also written as JSON and CSV
to bench/results/raw/) and exits 1 if anything hung or was silently truncated. Not part of CI's default run.
"""
import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from local_cluster import LocalCluster  # noqa: E402

MODEL = "llama3-8b"


def proc_sample(pid):
    """(rss_kb, fds, cpu_seconds) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return rss, fds, cpu
    except (OSError, StopIteration, ValueError):
        return None


class Counters:
    KINDS = ("ok", "refused", "stream_err", "hung", "truncated", "conn_err")

    def __init__(self):
        self.lock = threading.Lock()
        self.n = {k: 0 for k in self.KINDS}
        self.examples = {}

    def add(self, kind, detail=""):
        with self.lock:
            self.n[kind] += 1
            if kind in ("hung", "truncated") and len(self.examples.get(kind, [])) < 5:
                self.examples.setdefault(kind, []).append(detail)


REQUESTS = [
    # (path, body builder, streamed, end marker in the stream)
    ("/v1/chat/completions", lambda k, n: {"model": MODEL, "stream": True, "max_tokens": n,
                                          "messages": [{"role": "user", "content": f"soak {k} tell me a story"}]}, True, b"data: [DONE]"),
    ("/v1/chat/completions", lambda k, n: {"model": MODEL, "max_tokens": n,
                                          "messages": [{"role": "user", "content": f"soak {k} a question"}]}, False, None),
    ("/v1/completions", lambda k, n: {"model": MODEL, "prompt": f"soak {k} once upon a time", "max_tokens": n,
                                      "stream": True}, True, b"data: [DONE]"),
    ("/generate_stream", lambda k, n: {"inputs": f"soak {k} hello", "parameters": {"max_new_tokens": n}}, True, b'"generated_text":"'),
    ("/generate", lambda k, n: {"inputs": f"soak {k} hello", "parameters": {"max_new_tokens": n}}, False, None),
]


def one_request(host, port, k, timeout, counters):
    path, body, streamed, marker = random.choice(REQUESTS)
    payload = json.dumps(body(k, random.randint(4, 48))).encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request("POST", path, payload, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = b""
        while True:
            chunk = resp.read1(65536) if streamed else resp.read()
            if not chunk:
                break
            data += chunk
            if time.monotonic() - started > timeout:
                raise TimeoutError
            if not streamed:
                break
        if resp.status != 200:
            counters.add("refused")
        elif streamed:
            if marker in data:
                counters.add("ok")
            elif b"error" in data.split(b"\n\n")[-2 if data.endswith(b"\n\n") else -1] or b'"error"' in data[-400:]:
                counters.add("stream_err")
            else:
                counters.add("truncated", f"{path}: ...{data[-200:]!r}")
        else:
            try:
                json.loads(data)
                counters.add("ok")
            except ValueError:
                counters.add("truncated", f"{path}: {data[:200]!r}")
    except (TimeoutError, OSError) as e:
        if isinstance(e, TimeoutError) or "timed out" in str(e):
            counters.add("hung", f"{path} after {time.monotonic() - started:.1f}s")
        else:
            counters.add("conn_err")
    except http.client.HTTPException:
        counters.add("conn_err")
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--kill-every", type=float, default=180, help="seconds between instance kills (0: none)")
    ap.add_argument("--down-for", type=float, default=20, help="seconds a killed instance stays down")
    ap.add_argument("--sample-every", type=float, default=30)
    ap.add_argument("--request-timeout", type=float, default=120)
    ap.add_argument("--speedup", type=float, default=10)
    ap.add_argument("--net", type=int, help="loopback network 127.0.N.0/24 (default: a free one, as --run picks)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "raw"))
    args = ap.parse_args()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = os.path.join("/tmp", f"mindie-soak-{stamp}")
    # no pinned address by default: the launcher reserves a free network, so the soak coexists with tests and --run
    cluster = LocalCluster(mode="pd", p=2, d=2, speedup=args.speedup, net=args.net, workdir=workdir)
    stop = threading.Event()
    counters = Counters()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    cluster.start(timeout=120)
    port = cluster.coord_ports["predict"]
    print(f"[soak] cluster up (logs {cluster.logs}); {args.minutes} min, {args.clients} clients", flush=True)

    def client(w):
        k = w * 1_000_000
        while not stop.is_set():
            k += 1
            one_request(cluster.host, port, k, args.request_timeout, counters)

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(args.clients)]
    for t in threads:
        t.start()

    samples = []
    kills = []
    end = time.monotonic() + args.minutes * 60
    next_sample = time.monotonic()
    next_kill = time.monotonic() + args.kill_every if args.kill_every > 0 else float("inf")
    down = {}  # instance index -> time to restart
    while not stop.is_set() and time.monotonic() < end:
        now = time.monotonic()
        if now >= next_sample:
            row = {"t": round(now - (end - args.minutes * 60)), **{k: v for k, v in counters.n.items()}}
            for name, p in sorted(cluster.procs.items()):
                s = proc_sample(p.pid) if p.poll() is None else None
                row[name] = None if s is None else {"rss_kb": s[0], "fds": s[1], "cpu_s": round(s[2], 2)}
            samples.append(row)
            c = row.get("ms_coordinator") or {}
            print(f"[soak] t={row['t']}s " + " ".join(f"{k}={counters.n[k]}" for k in Counters.KINDS)
                  + f" coordinator rss={c.get('rss_kb')}kB fds={c.get('fds')} cpu={c.get('cpu_s')}s", flush=True)
            next_sample += args.sample_every
        if now >= next_kill:
            k = random.randrange(cluster.count)
            if k not in down:
                cluster.kill_process(f"sim{k}")
                down[k] = now + args.down_for
                kills.append({"t": round(now - (end - args.minutes * 60)), "instance": k})
                print(f"[soak] killed sim{k}", flush=True)
            next_kill += args.kill_every
        for k, at in list(down.items()):
            if now >= at:
                cluster.start_instance(k)
                del down[k]
                print(f"[soak] restarted sim{k}", flush=True)
        time.sleep(0.5)

    stop.set()
    for t in threads:
        t.join(args.request_timeout + 5)
    for k in list(down):
        cluster.start_instance(k)
    # nothing may stay counted in flight once the clients are done
    time.sleep(2)
    try:
        with urllib.request.urlopen(f"http://{cluster.host}:{cluster.coord_ports['manage']}/v1/coordinator_info", timeout=5) as r:
            info = json.load(r)
    except Exception as e:  # noqa: BLE001
        info = {"error": str(e)}
    cluster.stop()

    os.makedirs(args.out, exist_ok=True)
    result = {"minutes": args.minutes, "clients": args.clients, "counts": counters.n, "examples": counters.examples,
              "kills": kills, "samples": samples, "coordinator_info_after": info}
    path = os.path.join(args.out, f"soak-{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    first, last = samples[0], samples[-1]
    print("\n[soak] summary")
    print("  requests: " + ", ".join(f"{k} {v}" for k, v in counters.n.items()))
    for name in sorted(cluster.procs):
        a, b = first.get(name), last.get(name)
        if a and b:
            cpu_rate = (b["cpu_s"] - a["cpu_s"]) / max(1, last["t"] - first["t"])
            print(f"  {name:16s} rss {a['rss_kb'] / 1024:.1f} -> {b['rss_kb'] / 1024:.1f} MB, fds {a['fds']} -> {b['fds']}, "
                  f"cpu {cpu_rate:.2f} s/s")
    print(f"  coordinator_info after: {json.dumps(info)[:400]}")
    print(f"  written to {path}")
    bad = counters.n["hung"] + counters.n["truncated"]
    if bad:
        print(f"[soak] FAILED: {counters.n['hung']} hung, {counters.n['truncated']} silently truncated: {counters.examples}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
