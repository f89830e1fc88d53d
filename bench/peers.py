#!/usr/bin/env python3
"""The Coordinator side by side with the routers users would pick instead, in one run on this machine.

Two mindie_sim instances (compat wire, fast engine) on 127.0.0.2/127.0.0.3; in front of them, each in turn:
nothing (direct, the floor), ms_coordinator (single_node round_robin), nginx (round robin, keep-alive upstreams,
no buffering), sglang-router and vllm-router (round_robin, warn logs). wrk drives small non-stream chats and SSE
streams; each router's CPU comes from /proc/PID/stat (its own process tree), its peak RSS from VmHWM.
A peer that cannot be installed is reported as such, never skipped silently.

    python3 bench/peers.py [--seconds 8] [--conns 16,64]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except urllib.error.HTTPError:
            return True
        except Exception:
            time.sleep(0.1)
    return False


def tree_ticks(pid):
    """utime+stime of pid and its descendants (clock ticks)."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        pids += [int(x) for x in out.split()]
    except Exception:
        pass
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except Exception:
            pass
    return total


def peak_rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    except Exception:
        return 0
    return 0


def wrk(url, script, conns, seconds):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", script, url],
                         capture_output=True, text=True).stdout
    res = {"rps": 0.0, "n": 0, "p50": "-", "p99": "-", "errors": ""}
    for line in out.splitlines():
        w = line.split()
        if line.startswith("Requests/sec"):
            res["rps"] = float(w[1])
        elif "requests in" in line:
            res["n"] = int(w[0])
        elif w and w[0] == "50%":
            res["p50"] = w[1]
        elif w and w[0] == "99%":
            res["p99"] = w[1]
        elif "Non-2xx" in line or "Socket errors" in line:
            res["errors"] += line.strip() + " "
    return res


def ttfb(url, n=40):
    """Time to the first SSE event of a streamed chat, n sequential requests: (p50, p99) in ms."""
    import http.client
    host, port = url.split("//")[1].split(":")
    body = json.dumps({"model": "llama3-8b", "messages": [{"role": "user", "content": "hello there"}],
                       "max_tokens": 16, "stream": True})
    samples = []
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read1(1)
        samples.append((time.perf_counter() - t0) * 1000)
        r.read()
    conn.close()
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]


class Bench:
    def __init__(self, seconds, conns):
        self.seconds = seconds
        self.conns = conns
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="mindie-peers-")
        self.bin = os.environ.get("MINDIE_MS_BIN") or os.path.join(ROOT, "out", "bin")
        self.rows = []
        self.notes = []
        self.ttfb = {}

    def spawn(self, args, **kw):
        log = open(os.path.join(self.tmp, os.path.basename(args[0]) + f"-{len(self.procs)}.log"), "w")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def cleanup(self):
        for p in self.procs:
            self.stop(p)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_sims(self):
        self.sim_port = free_port()
        self.workers = []
        for k, ip in enumerate(["127.0.0.2", "127.0.0.3"]):
            # management routes (GET /health, which the Rust routers probe) share the data port
            self.spawn([os.path.join(self.bin, "mindie_sim"), "--ip", ip, "--management-ip", ip, "--port", str(self.sim_port),
                        "--management-port", str(self.sim_port), "--metrics-port", str(free_port()),
                        "--inter-comm-port", str(free_port()), "--profile", "tiny", "--speedup", "1000",
                        "--wire", "compat", "--fix", "connection-close", "--seed", str(k + 1)])
            self.workers.append(f"http://{ip}:{self.sim_port}")
        for w in self.workers:
            if not wait_http(w + "/health"):
                raise SystemExit(f"simulator {w} did not start")

    def scripts(self):
        chat = os.path.join(self.tmp, "chat.lua")
        open(chat, "w").write('wrk.method = "POST"\nwrk.body = \'{"model":"llama3-8b","messages":[{"role":"user",'
                              '"content":"hello there"}],"max_tokens":4}\'\nwrk.headers["Content-Type"] = "application/json"\n')
        stream = os.path.join(self.tmp, "stream.lua")
        open(stream, "w").write('wrk.method = "POST"\nwrk.body = \'{"model":"llama3-8b","messages":[{"role":"user",'
                                '"content":"hello there"}],"max_tokens":16,"stream":true}\'\n'
                                'wrk.headers["Content-Type"] = "application/json"\n')
        return [("non-stream chat", chat, 1), ("SSE chat, 16 tokens", stream, 18)]

    def measure(self, system, url, pid):
        try:
            self.ttfb[system] = ttfb(url)
        except Exception as e:
            self.notes.append(f"{system}: time to first byte not measured — {e}")
        for workload, script, events in self.scripts():
            for c in self.conns:
                t0 = tree_ticks(pid) if pid else 0
                r = wrk(url + "/v1/chat/completions", script, c, self.seconds)
                t1 = tree_ticks(pid) if pid else 0
                cpu = (t1 - t0) * 1e6 / HZ / r["n"] if pid and r["n"] else None
                self.rows.append({"system": system, "workload": workload, "conns": c, "rps": r["rps"], "p50": r["p50"],
                                  "p99": r["p99"], "cpu_req": cpu, "cpu_event": cpu / events if cpu else None,
                                  "errors": r["errors"].strip()})
                print(f"{system:15} {workload:20} c={c:<3} {r['rps']:10.1f} req/s p50 {r['p50']:>8} p99 {r['p99']:>8}"
                      f" cpu {'-' if cpu is None else f'{cpu:.1f} µs/req'} {r['errors']}", flush=True)
        return peak_rss_kb(pid) if pid else 0

    # ------------------------------------------------------------------ systems
    def coordinator(self):
        ports = {k: free_port() for k in ("predict", "manage", "status", "external")}
        c = json.load(open(os.path.join(ROOT, "conf", "ms_coordinator.json")))
        c["http_config"].update(predict_port=str(ports["predict"]), manage_port=str(ports["manage"]),
                                status_port=str(ports["status"]), external_port=str(ports["external"]), server_thread_num=2)
        c["digs_scheduler_config"].update(deploy_mode="single_node", scheduler_type="default_scheduler",
                                          algorithm_type="round_robin")
        path = os.path.join(self.tmp, "coord.json")
        json.dump(c, open(path, "w"))
        os.chmod(path, 0o640)
        p = self.spawn([os.path.join(self.bin, "ms_coordinator"), "--config", path, "--threads", "2"],
                       env=dict(os.environ, MINDIE_LOG_LEVEL="warning"))
        wait_http(f"http://127.0.0.1:{ports['status']}/v1/health")
        inst = []
        for k, w in enumerate(self.workers):
            ip = w.split("//")[1].split(":")[0]
            inst.append({"id": k, "ip": ip, "port": str(self.sim_port), "metric_port": str(self.sim_port),
                         "inter_comm_port": "", "model_name": "llama3-8b",
                         "static_info": {"group_id": 0, "max_seq_len": 4096, "max_output_len": 1024, "total_slots_num": 5000,
                                         "total_block_num": 100000, "block_size": 128, "label": 2, "role": 85,
                                         "p_percentage": 0, "virtual_id": k},
                         "dynamic_info": {"avail_slots_num": 5000, "avail_block_num": 100000, "peers": []}})
        req = urllib.request.Request(f"http://127.0.0.1:{ports['manage']}/v1/instances/refresh",
                                     data=json.dumps({"ids": [0, 1], "instances": inst}).encode(), method="POST")
        urllib.request.urlopen(req, timeout=5)
        return f"http://127.0.0.1:{ports['predict']}", p

    def nginx(self):
        if not shutil.which("nginx"):
            subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], capture_output=True)
        if not shutil.which("nginx"):
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], capture_output=True)
        if not shutil.which("nginx"):
            raise RuntimeError("nginx could not be installed (apt-get install nginx-light failed)")
        port = free_port()
        conf = os.path.join(self.tmp, "nginx.conf")
        ups = "\n".join(f"    server {w.split('//')[1]};" for w in self.workers)
        open(conf, "w").write(f"""
worker_processes 2;
daemon off;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream sims {{
{ups}
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://sims;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
        p = self.spawn(["nginx", "-c", conf, "-p", self.tmp])
        wait_http(f"http://127.0.0.1:{port}/health")
        return f"http://127.0.0.1:{port}", p

    def venv(self):
        v = os.path.join(ROOT, ".venv-bench")
        py = os.path.join(v, "bin", "python")
        if not os.path.exists(py):
            subprocess.run([sys.executable, "-m", "venv", v], check=True)
        r = subprocess.run([py, "-m", "pip", "install", "-q", "sglang-router", "vllm-router"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pip install sglang-router vllm-router failed: {r.stderr.strip()[-300:]}")
        return v

    def sglang(self, venv):
        port = free_port()
        exe = os.path.join(venv, "bin", "python")
        p = self.spawn([exe, "-m", "sglang_router.launch_router", "--host", "127.0.0.1", "--port", str(port),
                        "--worker-urls", *self.workers, "--policy", "round_robin", "--log-level", "warn",
                        "--prometheus-port", str(free_port())])
        if not wait_http(f"http://127.0.0.1:{port}/health", 60):
            raise RuntimeError("sglang-router did not start")
        return f"http://127.0.0.1:{port}", p

    def vllm(self, venv):
        port = free_port()
        exe = os.path.join(venv, "bin", "vllm-router")
        p = self.spawn([exe, "--host", "127.0.0.1", "--port", str(port), "--worker-urls", *self.workers,
                        "--policy", "round_robin", "--log-level", "warning", "--prometheus-port", str(free_port())])
        if not wait_http(f"http://127.0.0.1:{port}/health", 60):
            raise RuntimeError("vllm-router did not start")
        return f"http://127.0.0.1:{port}", p

    def run(self):
        self.start_sims()
        systems = [("direct", lambda: (self.workers[0], None)), ("ms_coordinator", self.coordinator), ("nginx", self.nginx)]
        venv = None
        try:
            venv = self.venv()
        except Exception as e:
            self.notes.append(f"sglang-router and vllm-router: not measured — {e}")
        if venv:
            systems += [("sglang-router", lambda: self.sglang(venv)), ("vllm-router", lambda: self.vllm(venv))]
        rss = {}
        for name, start in systems:
            try:
                url, p = start()
            except Exception as e:
                self.notes.append(f"{name}: not measured — {e}")
                print(f"{name}: NOT MEASURED — {e}", flush=True)
                continue
            rss[name] = self.measure(name, url, p.pid if p else None)
            if p:
                self.stop(p)
        self.report(rss)

    def report(self, rss):
        direct = {(r["workload"], r["conns"]): r["rps"] for r in self.rows if r["system"] == "direct"}
        coord = {(r["workload"], r["conns"]): r for r in self.rows if r["system"] == "ms_coordinator"}
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        path = os.path.join(ROOT, "bench", "results", time.strftime("%Y-%m-%d-peers.md", time.gmtime()))
        lines = [f"# ms_coordinator beside other routers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
                 f"Machine: {os.cpu_count()} cores, {os.uname().release}. Backend: two mindie_sim (tiny profile, speedup "
                 "1000, compat wire). Every router round robin over both, 2 worker threads/processes where configurable, "
                 f"warn-level logs; 'direct' is one of the two instances, so routers spreading over both can exceed it. Load: wrk -t1 -d{self.seconds}s. CPU: the router's process tree utime+stime per "
                 "request (per event: /18 SSE events). Ratios: throughput against direct and against ms_coordinator, same run.",
                 f"Command: python3 bench/peers.py --seconds {self.seconds} --conns {','.join(map(str, self.conns))}", "",
                 "| system | workload | conns | req/s | ×direct | ×coordinator | p50 | p99 | CPU µs/req | µs/event | errors |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            key = (r["workload"], r["conns"])
            xd = r["rps"] / direct[key] if direct.get(key) else 0
            xc = r["rps"] / coord[key]["rps"] if key in coord and coord[key]["rps"] else 0
            cpu = "–" if r["cpu_req"] is None else f"{r['cpu_req']:.1f}"
            cpe = "–" if r["cpu_event"] is None else f"{r['cpu_event']:.1f}"
            lines.append(f"| {r['system']} | {r['workload']} | {r['conns']} | {r['rps']:.0f} | {xd:.2f} | {xc:.2f} | "
                         f"{r['p50']} | {r['p99']} | {cpu} | {cpe} | {r['errors'] or 0} |")
        lines += ["", "Time to first SSE event, 40 sequential streamed chats (p50 / p99 ms): " +
                  ", ".join(f"{k} {v[0]:.2f} / {v[1]:.2f}" for k, v in self.ttfb.items())]
        lines += ["", "Peak RSS (kB): " + ", ".join(f"{k} {v}" for k, v in rss.items() if v)]
        lines += [""] + [f"- {n}" for n in self.notes]
        open(path, "w").write("\n".join(lines) + "\n")
        print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--conns", default="16,64")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True)
    b = Bench(a.seconds, [int(x) for x in a.conns.split(",")])
    # a SIGTERM or Ctrl-C still stops every process the bench started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        b.run()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
