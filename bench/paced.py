#!/usr/bin/env python3
"""The cost per relayed event, on paced streams: routers side by side in front of an upstream that writes each SSE
event as its own segment, one inter-token delay apart (bench/paced_upstream.c), as engines do when they decode.

Two paced upstreams on 127.0.0.2/127.0.0.3; in front of them, each in turn: nothing (direct, one of the two),
ms_coordinator (single_node round_robin), nginx (1 worker, keep-alive upstreams, proxy_buffering off),
vllm-router and sglang-router (round_robin, warn logs). Every router is started once; the measurements then go
round-robin over them --reps times (so that the other work on this machine spreads over all of them alike). For each:
wrk -t1 -c<conns> of streamed chats while a probe measures the time to the first event of sequential streams on
its own connection (same load), then wrk of non-streamed chats. CPU is utime+stime of the router's process tree
from /proc per request (per event: / events+1, the [DONE] included). A peer that can't be installed is reported
as not measured, never skipped silently.

    python3 bench/paced.py [--seconds 6] [--reps 3] [--conns 16] [--events 16] [--delay-ms 5] [--coord-threads 2]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import HZ, ROOT, Bench, free_port, tree_ticks, wait_http, wrk, peak_rss_kb  # noqa: E402


def ttfe_probe(url, stop, samples, body):
    """Sequential streamed chats on one keep-alive connection until stop is set: ms to the first body byte (the
    first event: the upstream sends its head at once and the first event one delay later)."""
    host, port = url.split("//")[1].split(":")
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            t0 = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read1(1)
            samples.append((time.perf_counter() - t0) * 1000)
            r.read()
        except Exception:
            conn = None
            time.sleep(0.01)


SYSCALLS = ["read", "recvfrom", "readv", "write", "writev", "sendto", "sendmsg", "epoll_wait", "epoll_pwait", "epoll_ctl",
            "getrandom", "futex", "poll", "accept4", "close", "setsockopt", "getsockopt", "clock_gettime", "sched_yield"]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")


class Paced(Bench):
    def __init__(self, a):
        super().__init__(a.seconds, [a.conns])
        self.a = a
        self.results = {}  # system -> {"stream": [cpu µs/stream...], "chat": [...], "ttfe": [samples], "rps": [...]}

    def start_sims(self):
        exe = os.path.join(self.tmp, "paced_upstream")
        r = subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(ROOT, "bench", "paced_upstream.c")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"gcc bench/paced_upstream.c failed: {r.stderr}")
        self.sim_port = free_port()
        self.workers = []
        self.upstream_pids = []
        for ip in ["127.0.0.2", "127.0.0.3"]:
            p = self.spawn([exe, "--host", ip, "--port", str(self.sim_port), "--events", str(self.a.events),
                            "--delay-ms", str(self.a.delay_ms)])
            self.upstream_pids.append(p.pid)
            self.workers.append(f"http://{ip}:{self.sim_port}")
        for w in self.workers:
            if not wait_http(w + "/health"):
                raise SystemExit(f"paced upstream {w} did not start")

    def coordinator(self, exe=None, threads=None):
        ports = {k: free_port() for k in ("predict", "manage", "status", "external")}
        c = json.load(open(os.path.join(ROOT, "conf", "ms_coordinator.json")))
        t = threads or self.a.coord_threads
        c["http_config"].update(predict_port=str(ports["predict"]), manage_port=str(ports["manage"]),
                                status_port=str(ports["status"]), external_port=str(ports["external"]), server_thread_num=t)
        c["digs_scheduler_config"].update(deploy_mode="single_node", scheduler_type="default_scheduler",
                                          algorithm_type="round_robin")
        c["log_info"]["log_level"] = "WARN"
        path = os.path.join(self.tmp, "coord.json")
        json.dump(c, open(path, "w"))
        os.chmod(path, 0o640)
        p = self.spawn([exe or os.path.join(self.bin, "ms_coordinator"), "--config", path, "--threads", str(t)],
                       env=dict(os.environ, MINDIE_LOG_LEVEL="warning"))
        if not wait_http(f"http://127.0.0.1:{ports['status']}/v1/health"):
            raise RuntimeError("ms_coordinator did not start")
        inst = []
        for k, w in enumerate(self.workers):
            ip = w.split("//")[1].split(":")[0]
            inst.append({"id": k, "ip": ip, "port": str(self.sim_port), "metric_port": str(self.sim_port),
                         "inter_comm_port": "", "model_name": "llama3-8b",
                         "static_info": {"group_id": 0, "max_seq_len": 4096, "max_output_len": 1024, "total_slots_num": 5000,
                                         "total_block_num": 100000, "block_size": 128, "label": 2, "role": 85,
                                         "p_percentage": 0, "virtual_id": k},
                         "dynamic_info": {"avail_slots_num": 5000, "avail_block_num": 100000, "peers": []}})
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{ports['manage']}/v1/instances/refresh",
                                     data=json.dumps({"ids": [0, 1], "instances": inst}).encode(), method="POST")
        urllib.request.urlopen(req, timeout=5)
        url = f"http://127.0.0.1:{ports['predict']}"
        deadline = time.time() + 10
        while time.time() < deadline:  # ready once a chat goes through
            try:
                c = http.client.HTTPConnection("127.0.0.1", ports["predict"], timeout=5)
                c.request("POST", "/v1/chat/completions", '{"model":"llama3-8b","messages":[]}', {"Content-Type": "application/json"})
                if c.getresponse().status == 200:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        return url, p

    def nginx(self):
        if not shutil.which("nginx"):
            subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], capture_output=True)
        if not shutil.which("nginx"):
            raise RuntimeError("nginx could not be installed (apt-get install nginx-light failed)")
        port = free_port()
        conf = os.path.join(self.tmp, "nginx.conf")
        ups = "\n".join(f"    server {w.split('//')[1]};" for w in self.workers)
        open(conf, "w").write(f"""
worker_processes {self.a.nginx_workers};
daemon off;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream ups {{
{ups}
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://ups;
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

    def scripts(self):
        chat = os.path.join(self.tmp, "chat.lua")
        open(chat, "w").write('wrk.method = "POST"\nwrk.body = \'{"model":"llama3-8b","messages":[{"role":"user",'
                              '"content":"hello there"}],"max_tokens":4}\'\nwrk.headers["Content-Type"] = "application/json"\n')
        stream = os.path.join(self.tmp, "stream.lua")
        self.stream_body = ('{"model":"llama3-8b","messages":[{"role":"user","content":"hello there"}],'
                            f'"max_tokens":{self.a.events},"stream":true}}')
        open(stream, "w").write(f"wrk.method = \"POST\"\nwrk.body = '{self.stream_body}'\n"
                                'wrk.headers["Content-Type"] = "application/json"\n')
        return chat, stream

    def one(self, name, url, pid, chat, stream):
        res = self.results.setdefault(name, {"stream": [], "chat": [], "ttfe": [], "rps": [], "chat_rps": [], "errors": ""})
        stop, samples = threading.Event(), []
        probe = threading.Thread(target=ttfe_probe, args=(url, stop, samples, self.stream_body))
        t0 = tree_ticks(pid) if pid else 0
        probe.start()
        r = wrk(url + "/v1/chat/completions", stream, self.a.conns, self.seconds)
        stop.set()
        probe.join()
        t1 = tree_ticks(pid) if pid else 0
        n = r["n"] + len(samples)
        if pid and n:
            res["stream"].append((t1 - t0) * 1e6 / HZ / n)
        res["ttfe"] += samples
        res["rps"].append(r["rps"])
        res["errors"] += r["errors"]
        t0 = tree_ticks(pid) if pid else 0
        rc = wrk(url + "/v1/chat/completions", chat, self.a.conns, max(2, self.seconds // 2))
        t1 = tree_ticks(pid) if pid else 0
        if pid and rc["n"]:
            res["chat"].append((t1 - t0) * 1e6 / HZ / rc["n"])
        res["chat_rps"].append(rc["rps"])
        res["errors"] += rc["errors"]
        cpu = f"{res['stream'][-1]:.0f} µs/stream" if pid and res["stream"] else "-"
        print(f"{name:15} {r['rps']:8.1f} streams/s cpu {cpu}  ttfe p50 {pct(samples, .5):.2f} ms ({len(samples)})  "
              f"chat {rc['rps']:.0f} req/s cpu {res['chat'][-1] if pid and res['chat'] else 0:.1f} µs {r['errors']}{rc['errors']}",
              flush=True)

    def profile(self, running, chat, stream):
        """Where the time goes: per-thread CPU, syscalls per stream (strace -c -f) and a call graph (perf record -g,
        software cpu-clock: no hardware counters in VMs) of each router under the same paced load."""
        d = self.a.profile
        os.makedirs(d, exist_ok=True)
        if self.a.profile_chats:
            stream = chat  # the non-streamed path: what a request costs apart from its events
        for name, url, p in running:
            if p is None:
                continue
            pid = p.pid
            kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
            pids = [str(pid)] + kids  # nginx's worker, the routers' children

            def tasks():
                return [(x, t) for x in pids for t in os.listdir(f"/proc/{x}/task")]

            def threads():
                out = {}
                for x, tid in tasks():
                    try:
                        st = open(f"/proc/{x}/task/{tid}/stat").read()
                        comm = st[st.index("(") + 1:st.rindex(")")]
                        f = st.rsplit(")", 1)[1].split()
                        out[tid] = (comm, int(f[11]) + int(f[12]))
                    except OSError:
                        pass
                return out
            t0 = threads()
            sw0 = {tid: open(f"/proc/{x}/task/{tid}/status").read() for x, tid in tasks()}
            owner = {tid: x for x, tid in tasks()}
            r = wrk(url + "/v1/chat/completions", stream, self.a.conns, self.seconds)
            t1 = threads()
            lines = [f"{name}: {r['n']} streams in {self.seconds}s; per-thread CPU µs per stream, voluntary context switches per stream"]
            for tid, (comm, ticks) in sorted(t1.items()):
                before = t0.get(tid, (comm, 0))[1]
                def vcs(text):
                    for ln in text.splitlines():
                        if ln.startswith("voluntary_ctxt_switches"):
                            return int(ln.split()[1])
                    return 0
                try:
                    now_status = open(f"/proc/{owner.get(tid, pid)}/task/{tid}/status").read()
                except OSError:
                    now_status = ""
                cs = vcs(now_status) - vcs(sw0.get(tid, ""))
                lines.append(f"  {tid:>8} {comm:20} {(ticks - before) * 1e6 / HZ / max(1, r['n']):8.1f} µs  {cs / max(1, r['n']):6.2f} cs")
            # syscalls counted in the kernel (perf stat on tracepoints): strace would slow the router enough to change
            # how many events each read finds
            evs = ["raw_syscalls:sys_enter", "context-switches"] + [f"syscalls:sys_enter_{c}" for c in SYSCALLS]
            st = subprocess.Popen(["perf", "stat", "-x,", "-e", ",".join(evs), "-p", ",".join(pids), "-o",
                                   f"{d}/{name}-syscalls.csv"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            rs = wrk(url + "/v1/chat/completions", stream, self.a.conns, self.seconds)
            st.send_signal(signal.SIGINT)
            st.wait()
            lines.append(f"  syscalls per stream ({rs['n']} streams):")
            for ln in open(f"{d}/{name}-syscalls.csv"):
                f = ln.strip().split(",")
                if len(f) > 2 and f[0].replace(".", "").isdigit() and float(f[0]) > 0:
                    lines.append(f"    {f[2].replace('syscalls:sys_enter_', ''):28} {float(f[0]) / max(1, rs['n']):7.2f}")
            pr = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2999", "--call-graph", self.a.call_graph, "-p", ",".join(pids), "-o",
                                   f"{d}/{name}-perf.data"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            rp = wrk(url + "/v1/chat/completions", stream, self.a.conns, self.seconds)
            pr.send_signal(signal.SIGINT)
            pr.wait()
            lines.append(f"  perf: {rp['n']} streams recorded in {d}/{name}-perf.data")
            open(f"{d}/{name}-threads.txt", "w").write("\n".join(lines) + "\n")
            print("\n".join(lines), flush=True)

    def run(self):
        self.start_sims()
        chat, stream = self.scripts()
        starters = [("direct", lambda: (self.workers[0], None)), ("ms_coordinator", self.coordinator)]
        for spec in self.a.coordinator:  # NAME=BINARY[:THREADS], e.g. a build from before a change, same run
            name, rest = spec.split("=", 1)
            exe, _, t = rest.partition(":")
            starters.append((name, lambda exe=exe, t=t: self.coordinator(exe, int(t) if t else None)))
        starters.append(("nginx", self.nginx))
        venv = None
        if not self.a.no_peers and (not self.a.only or "router" in self.a.only):
            try:
                venv = self.venv()
            except Exception as e:
                self.notes.append(f"sglang-router and vllm-router: not measured — {e}")
        if venv:
            starters += [("vllm-router", lambda: self.vllm(venv)), ("sglang-router", lambda: self.sglang(venv))]
        if self.a.only:
            starters = [s for s in starters if s[0] in self.a.only.split(",")]
        running = []
        for name, start in starters:
            try:
                url, p = start()
                running.append((name, url, p))
            except Exception as e:
                self.notes.append(f"{name}: not measured — {e}")
                print(f"{name}: NOT MEASURED — {e}", flush=True)
        if self.a.profile:
            self.profile(running, chat, stream)
            return
        for rep in range(self.a.reps):
            print(f"-- round {rep + 1}/{self.a.reps}", flush=True)
            for name, url, p in running:
                self.one(name, url, p.pid if p else None, chat, stream)
        rss = {name: peak_rss_kb(p.pid) for name, _, p in running if p}
        self.report(rss)

    def report(self, rss):
        ev = self.a.events + 1
        R = self.results
        med = {k: statistics.median(v["stream"]) for k, v in R.items() if v["stream"]}
        medc = {k: statistics.median(v["chat"]) for k, v in R.items() if v["chat"]}
        d50 = pct(R["direct"]["ttfe"], .5) if "direct" in R else float("nan")
        d99 = pct(R["direct"]["ttfe"], .99) if "direct" in R else float("nan")
        peers = [k for k in ("vllm-router", "sglang-router") if k in med]
        best = min(peers, key=lambda k: med[k]) if peers else None
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        lines = [f"# Paced streams: CPU per relayed event, {stamp}", "",
                 f"Machine: {os.cpu_count()} cores, {os.uname().release}, shared with other work (load average "
                 f"{os.getloadavg()[0]:.1f} at the end). Backend: two bench/paced_upstream.c ({self.a.events} events + [DONE], "
                 f"{self.a.delay_ms} ms apart, each its own write on a TCP_NODELAY socket). ms_coordinator: single_node "
                 f"round_robin, {self.a.coord_threads} loop thread(s), warn logs; nginx {self.a.nginx_workers} worker, keep-alive "
                 "upstreams, proxy_buffering off; vllm-router and sglang-router round_robin, warn logs. Load: wrk -t1 "
                 f"-c{self.a.conns} -d{self.seconds}s of streamed chats plus one sequential probe stream (time to first event), "
                 f"then wrk -c{self.a.conns} of non-streamed chats; {self.a.reps} rounds over all systems. CPU: the router's process "
                 f"tree utime+stime per request; per event = per stream / {ev}. Cells: median (min–max) over the rounds.",
                 f"Command: python3 bench/paced.py --seconds {self.seconds} --reps {self.a.reps} --conns {self.a.conns} "
                 f"--events {self.a.events} --delay-ms {self.a.delay_ms} --coord-threads {self.a.coord_threads}", "",
                 "| system | streams/s | CPU µs/stream | µs/event | × nginx | × best peer | non-stream µs/req | TTFE p50 / p99 ms | "
                 "Δ TTFE vs direct p50 / p99 ms | errors |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for k, v in R.items():
            rps = statistics.median(v["rps"])
            if v["stream"]:
                s = v["stream"]
                cs = f"{med[k]:.0f} ({min(s):.0f}–{max(s):.0f})"
                ce = f"{med[k] / ev:.1f} ({min(s) / ev:.1f}–{max(s) / ev:.1f})"
                xn = f"{med[k] / med['nginx']:.2f}" if "nginx" in med else "–"
                xb = f"{med[k] / med[best]:.2f}" if best else "–"
                c = v["chat"]
                cc = f"{medc[k]:.1f} ({min(c):.1f}–{max(c):.1f})" if c else "–"
            else:
                cs = ce = xn = xb = cc = "–"
            t50, t99 = pct(v["ttfe"], .5), pct(v["ttfe"], .99)
            dd = "–" if k == "direct" else f"{t50 - d50:+.2f} / {t99 - d99:+.2f}"
            lines.append(f"| {k} | {rps:.0f} | {cs} | {ce} | {xn} | {xb} | {cc} | {t50:.2f} / {t99:.2f} | {dd} | "
                         f"{v['errors'].strip() or 0} |")
        lines += ["", f"Best router peer: {best or 'none measured'}. TTFE samples per system: " +
                  ", ".join(f"{k} {len(v['ttfe'])}" for k, v in R.items()),
                  "", "Peak RSS (kB): " + ", ".join(f"{k} {v}" for k, v in rss.items() if v)]
        lines += [""] + [f"- {n}" for n in self.notes]
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        path = self.a.out or os.path.join(ROOT, "bench", "results", time.strftime("%Y-%m-%d-paced.md", time.gmtime()))
        open(path, "w").write("\n".join(lines) + "\n")
        print("\n".join(lines))
        print(f"\nwritten: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--events", type=int, default=16)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--coord-threads", type=int, default=2)
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--no-peers", action="store_true", help="direct, ms_coordinator and nginx only")
    ap.add_argument("--coordinator", action="append", default=[], metavar="NAME=BINARY[:THREADS]",
                    help="another ms_coordinator measured beside the others (a build from before a change, another thread count)")
    ap.add_argument("--only", help="comma-separated systems to start (e.g. ms_coordinator,nginx)")
    ap.add_argument("--profile", metavar="DIR", help="instead of the table: per-thread CPU, strace -c -f and perf record -g "
                    "of each router under the same load, into DIR")
    ap.add_argument("--call-graph", default="fp", help="with --profile: perf's call-graph mode (fp, or dwarf where frame "
                    "pointers are missing: Swift's runtime and inlined code)")
    ap.add_argument("--profile-chats", action="store_true", help="with --profile: non-streamed chats instead of paced streams")
    ap.add_argument("--out", help="result file (default bench/results/<date>-paced.md)")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True)
    b = Paced(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        b.run()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
