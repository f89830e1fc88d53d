#!/usr/bin/env python3
"""Failover times of the HA launcher (scripts/local_cluster.py --ha: a real etcd, 2 Controllers, 2 Coordinators).

    python3 bench/ha_failover.py                   # 5 tries each, 5 s lease, 2P2D
    python3 bench/ha_failover.py --tries 10 --ttl 20

Two drills, each repeated --tries times on one cluster:
  coordinator  kill -9 the master Coordinator; time until the standby answers /v1/readiness 200 AND serves a
               chat completion (what a client behind a Service sees); the killed one is restarted as standby.
  controller   kill -9 the leading Controller; time until the other one answers /v1/readiness 200 as leader;
               the killed one is restarted as standby.
Each try waits for the restarted process to stand by (etcd names the other one, its health answers) before the
next kill. Prints one line per try and the median and max per drill; exits 1 if a drill did not fail over
within 3 leases.
"""
import argparse
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from local_cluster import LocalCluster, http_status  # noqa: E402

MODEL = "llama3-8b"


def wait_until(cond, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit(f"not within {seconds} s: {what}")


def serves(host, port):
    body = json.dumps({"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"http://{host}:{port}/v1/chat/completions", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def name_of(kind, hosts, identity):
    i = hosts.index(identity.split(":")[0]) + 1
    return kind if i == 1 else f"{kind}{i}"


def coordinator_try(c):
    master = wait_until(c.master, 30, "a master")
    mhost = master.split(":")[0]
    other = next(h for h in c.coordinator_hosts if h != mhost)
    name = name_of("ms_coordinator", c.coordinator_hosts, master)
    t0 = time.time()
    c.kill_process(name)
    wait_until(lambda: http_status(c.status_url("/v1/readiness", other), timeout=1) == 200
               and serves(other, c.coord_ports["predict"]), c.ha_ttl * 3, "the standby Coordinator serves")
    took = time.time() - t0
    c.start_coordinator(1 if name == "ms_coordinator" else 2)
    wait_until(lambda: http_status(c.status_url("/v1/health", mhost), timeout=1) == 200
               and (c.master() or "").split(":")[0] == other, 30, "the restarted Coordinator stands by")
    return took


def controller_try(c):
    leader = wait_until(c.leader, 30, "a leader")
    lhost = leader.split(":")[0]
    other = next(h for h in c.controller_hosts if h != lhost)
    name = name_of("ms_controller", c.controller_hosts, leader)
    t0 = time.time()
    c.kill_process(name)
    wait_until(lambda: http_status(f"http://{other}:{c.controller_port}/v1/readiness", timeout=1) == 200,
               c.ha_ttl * 3 + c.sync_seconds, "the standby Controller leads")
    took = time.time() - t0
    c.start_controller(1 if name == "ms_controller" else 2)
    wait_until(lambda: http_status(f"http://{lhost}:{c.controller_port}/v1/health", timeout=1) == 200
               and (c.leader() or "").split(":")[0] == other, 30, "the restarted Controller stands by")
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--ttl", type=int, default=5, help="etcd lease TTL in seconds (default 5; the code's default is 20)")
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--d", type=int, default=2)
    ap.add_argument("--drills", default="coordinator,controller")
    args = ap.parse_args()
    c = LocalCluster(mode="pd", p=args.p, d=args.d, speedup=20, ha=True, ha_ttl=args.ttl, sync_seconds=1)
    results = {}
    try:
        c.start(timeout=120)
        print(f"cluster up: {args.p}P{args.d}D, lease {args.ttl} s, sync 1 s, logs in {c.logs}", flush=True)
        for drill in args.drills.split(","):
            fn = {"coordinator": coordinator_try, "controller": controller_try}[drill]
            times = []
            for i in range(args.tries):
                times.append(fn(c))
                print(f"  {drill} kill -9 try {i + 1}: {times[-1]:.2f} s", flush=True)
            results[drill] = times
    finally:
        c.stop()
    print(f"\nFailover after kill -9 (lease {args.ttl} s, {args.tries} tries each):")
    for drill, times in results.items():
        what = "standby serving" if drill == "coordinator" else "new leader Ready"
        print(f"  {drill:<12} ({what}): median {statistics.median(times):.2f} s, max {max(times):.2f} s, "
              f"min {min(times):.2f} s")


if __name__ == "__main__":
    main()
