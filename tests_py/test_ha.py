"""HA on a real etcd (issue 15): Controller active/standby with fencing by term, Coordinator master/standby in PD
mode, several active Coordinators in single_node mode. The clusters come from scripts/local_cluster.py with --ha
(what `one_key_build.sh --run --ha` starts) and a 5 s lease so the drills stay short; the code's default is the
reference's 20 s. Failover times are printed (pytest -s) for the README."""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
import time

import pytest
import requests

from conftest import REPO
from e2e_util import MODEL

sys.path.insert(0, str(REPO / "scripts"))
import local_cluster  # noqa: E402

TTL = 5
SYNC = 1
TIMEOUT = 30


@pytest.fixture(autouse=True)
def _etcd_installed():
    # one_key_build.sh installs Debian's etcd-server: a missing etcd is a broken setup, never a skipped test
    if not os.path.exists("/usr/bin/etcd"):
        pytest.fail("/usr/bin/etcd is missing: install Debian's etcd-server (one_key_build.sh does)")


def wait_until(cond, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def get(url, timeout=2):
    try:
        return requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None


@pytest.fixture
def cluster(request, tmp_path):
    mode, p, d, instances, speedup = (tuple(getattr(request, "param", ("pd", 1, 1, 2))) + (20,))[:5]
    c = local_cluster.LocalCluster(mode=mode, p=p, d=d, instances=instances, speedup=speedup,
                                   binaries=os.environ.get("MINDIE_MS_BIN"), workdir=str(tmp_path / "cluster"),
                                   sync_seconds=SYNC, ha=True, ha_ttl=TTL)
    c.reserve()
    try:
        c.start(timeout=90)
        yield c
    finally:
        for p_ in c.procs.values():  # resume anything a test froze so that it can stop
            try:
                os.kill(p_.pid, signal.SIGCONT)
            except OSError:
                pass
        c.stop()


def controller_name(c, identity):
    host = identity.split(":")[0]
    i = c.controller_hosts.index(host) + 1
    return "ms_controller" if i == 1 else f"ms_controller{i}"


def coordinator_name(c, identity):
    host = identity.split(":")[0]
    i = c.coordinator_hosts.index(host) + 1
    return "ms_coordinator" if i == 1 else f"ms_coordinator{i}"


def sim_state(c, k):
    return requests.get(f"http://{c.instance_ip(k)}:{local_cluster.SIM_CONTROL_PORT}/sim/state", timeout=5).json()


def role_posts(c):
    return {k: sim_state(c, k)["rolePosts"] for k in range(c.count)}


def controller_ready(c, host):
    r = get(f"http://{host}:{c.controller_port}/v1/readiness")
    return r is not None and r.status_code == 200


def coordinator_info_ids(c, host):
    return sorted(c.instances_in_coordinator(host))


def chat(host, port, max_tokens=8, stream=True, timeout=TIMEOUT):
    return requests.post(f"http://{host}:{port}/v1/chat/completions", timeout=timeout, stream=stream,
                         json={"model": MODEL, "stream": stream, "max_tokens": max_tokens,
                               "messages": [{"role": "user", "content": "Hello!"}]})


def log_text(c, name):
    with open(os.path.join(c.logs, f"{name}.log"), errors="replace") as f:
        return f.read()


def test_controller_failover_keeps_ids_and_roles_and_still_acts(cluster):
    c = cluster
    times = []
    ids = coordinator_info_ids(c, c.host)
    assert len(ids) == c.count
    posts_before = role_posts(c)
    assert all(len(v) == 1 for v in posts_before.values()), posts_before  # one role post each at start
    for attempt in range(5):
        leader = wait_until(c.leader, 10, "a leader")
        name = controller_name(c, leader)
        other = [h for h in c.controller_hosts if h != leader.split(":")[0]][0]
        t0 = time.time()
        c.kill_process(name)
        new = wait_until(lambda: (c.leader() or leader) != leader and controller_ready(c, other) and c.leader(),
                         TTL + SYNC + 5, "the standby leads and is ready")
        times.append(time.time() - t0)
        assert new.split(":")[0] == other
        # the takeover recovered the state: same ids everywhere, no role re-posted
        time.sleep(SYNC * 2)
        assert role_posts(c) == posts_before
        for h in c.coordinator_hosts:
            assert coordinator_info_ids(c, h) == ids
        c.start_controller(1 if name == "ms_controller" else 2)  # back as standby
        wait_until(lambda: get(f"http://{leader.split(':')[0]}:{c.controller_port}/v1/health") is not None, 20,
                   "the restarted controller answers")
        r = get(f"http://{leader.split(':')[0]}:{c.controller_port}/v1/readiness")
        assert r is not None and r.status_code == 503 and "standby" in r.json()["message"]
    print(f"\nController failover (kill -9 leader, lease {TTL} s, sync {SYNC} s): "
          f"median {statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)}")
    assert max(times) <= TTL + SYNC + 3
    # an instance killed after the failovers is still detected and removed by the new leader
    c.kill_process(f"sim{c.count - 1}")
    wait_until(lambda: len(coordinator_info_ids(c, c.host)) < c.count, 30, "the dead instance leaves the Coordinator")


def test_frozen_leader_resumes_and_acts_in_nothing(cluster):
    c = cluster
    leader = wait_until(c.leader, 10, "a leader")
    name = controller_name(c, leader)
    old_host = leader.split(":")[0]
    posts_before = role_posts(c)
    os.kill(c.procs[name].pid, signal.SIGSTOP)
    new = wait_until(lambda: c.leader() not in (None, leader) and c.leader(), TTL + SYNC + 5, "the standby leads")
    assert new.split(":")[0] != old_host
    time.sleep(SYNC * 2)  # the new leader refreshes with its newer term
    log_len = len(log_text(c, name))
    os.kill(c.procs[name].pid, signal.SIGCONT)
    time.sleep(TTL)
    after = log_text(c, name)[log_len:]
    # it noticed by its own clock that it may not act, and sent nothing: no role post, no refresh was even refused
    assert "leadership lost" in after, after
    assert "role posted" not in after
    assert role_posts(c) == posts_before
    for h in c.coordinator_hosts:
        assert "deposed Controller" not in log_text(c, coordinator_name(c, f"{h}:0"))
    assert c.leader() == new
    assert not controller_ready(c, old_host)
    assert coordinator_info_ids(c, c.host) == sorted(coordinator_info_ids(c, c.coordinator_hosts[1]))


def test_stale_term_refresh_is_refused_by_the_coordinator(cluster):
    c = cluster
    url = f"http://{c.host}:{c.coord_ports['manage']}/v1/instances/refresh"
    body = {"ids": [], "instances": []}
    # the live leader's term is at least 1; term 0 is older than anything a leader has
    r = requests.post(url, json=body, headers={"x-ms-term": "0"}, timeout=5)
    assert r.status_code == 409 and "stale controller term" in r.json()["message"]
    assert len(coordinator_info_ids(c, c.host)) == c.count  # nothing applied


def test_etcd_outage_no_controller_acts_and_the_cluster_keeps_serving(cluster):
    c = cluster
    leader = wait_until(c.leader, 10, "a leader")
    posts_before = role_posts(c)
    lens = {n: len(log_text(c, n)) for n in ("ms_controller", "ms_controller2")}
    c.kill_process("etcd")
    t0 = time.time()
    served = failed = 0
    while time.time() - t0 < 30:
        ready = c.ready_coordinators()
        host = ready[0] if ready else c.host
        try:
            r = chat(host, c.coord_ports["predict"], stream=False, timeout=10)
            served += r.status_code == 200
            failed += r.status_code != 200
        except requests.RequestException:
            failed += 1
        time.sleep(0.5)
    # neither controller is leader without a lease
    for h in c.controller_hosts:
        assert not controller_ready(c, h)
    c.start_etcd()
    new = wait_until(c.leader, TTL * 3 + 10, "leadership settles after etcd returns")
    wait_until(lambda: any(controller_ready(c, h) for h in c.controller_hosts), 30, "a ready leader")
    for n, n0 in lens.items():
        assert "leadership lost" in log_text(c, n)[n0:] or controller_name(c, leader) != n
    assert role_posts(c) == posts_before
    print(f"\netcd outage 30 s: {served} requests served, {failed} failed; leader before {leader}, after {new}")
    assert served > 0 and failed == 0


class Streams:
    """Long PD streams at one Coordinator, each in its own thread. A stream's outcome: "done" (ended with [DONE]),
    "error" (an in-stream error, a broken or refused connection: the client sees it fail) or "hang" (no byte for
    READ_TIMEOUT: what must never happen)."""

    READ_TIMEOUT = 20

    def __init__(self, host, port, n, max_tokens=500):
        self.outcomes = [None] * n
        self.started = [threading.Event() for _ in range(n)]
        self.threads = [threading.Thread(target=self._run, args=(i, host, port, max_tokens), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i, host, port, max_tokens):
        try:
            r = requests.post(f"http://{host}:{port}/v1/chat/completions", stream=True, timeout=(5, self.READ_TIMEOUT),
                              json={"model": MODEL, "stream": True, "max_tokens": max_tokens,
                                    "messages": [{"role": "user", "content": "Tell me a long story."}]})
            if r.status_code != 200:
                self.outcomes[i] = "error"
                return
            body = b""
            for chunk in r.iter_content(None):
                body += chunk
                if b"data: {" in body:
                    self.started[i].set()
            self.outcomes[i] = "done" if body.endswith(b"data: [DONE]\n\n") and b'"error"' not in body else "error"
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectTimeout):
            self.outcomes[i] = "hang"
        except requests.RequestException:
            self.outcomes[i] = "error"
        finally:
            self.started[i].set()

    def wait_started(self, seconds=30):
        for e in self.started:
            assert e.wait(seconds), "a stream did not start"
        assert all(o is None for o in self.outcomes), f"a stream ended before the drill: {self.outcomes}"

    def unfinished(self):
        return sum(o is None for o in self.outcomes)

    def join(self):
        for t in self.threads:
            t.join(self.READ_TIMEOUT + 30)
        assert not any(t.is_alive() for t in self.threads), "a stream neither ended nor timed out"
        return self.outcomes


def standby_serves(c, host):
    r = get(f"http://{host}:{c.coord_ports['status']}/v1/readiness")
    if r is None or r.status_code != 200:
        return False
    try:
        return chat(host, c.coord_ports["predict"], stream=False, timeout=10).status_code == 200
    except requests.RequestException:
        return False


# speedup 1: a 500-token stream lasts about 7 s, so the drills happen while every stream is in flight
@pytest.mark.parametrize("cluster", [("pd", 2, 2, 4, 1)], indirect=True)
def test_master_coordinator_killed_under_streamed_load(cluster):
    c = cluster
    master = wait_until(c.master, 10, "a master")
    mhost = master.split(":")[0]
    standby = [h for h in c.coordinator_hosts if h != mhost][0]
    assert c.ready_coordinators() == [mhost]
    r = get(f"http://{standby}:{c.coord_ports['manage']}/recvs_info")
    assert r is not None and r.json()["is_master"] is False
    streams = Streams(mhost, c.coord_ports["predict"], 8)
    streams.wait_started()
    t0 = time.time()
    c.kill_process(coordinator_name(c, master))
    wait_until(lambda: standby_serves(c, standby), TTL + 10, "the standby is ready and serves")
    took = time.time() - t0
    outcomes = streams.join()
    lost = outcomes.count("error")
    print(f"\nCoordinator failover (kill -9 master under 8 streams, 2P2D): standby serving after {took:.2f} s; "
          f"{lost} of {len(outcomes)} in-flight streams lost (ended with an error), {outcomes.count('hang')} hung")
    # a dead master's streams break with it: every client sees an error at once, none waits for bytes that never come
    assert outcomes.count("hang") == 0, outcomes
    assert lost == len(outcomes), outcomes
    assert c.master().split(":")[0] == standby
    assert took <= TTL + 3


@pytest.mark.parametrize("cluster", [("pd", 2, 2, 4, 1)], indirect=True)
def test_master_coordinator_graceful_stop_finishes_in_flight_streams(cluster):
    c = cluster
    master = wait_until(c.master, 10, "a master")
    mhost = master.split(":")[0]
    standby = [h for h in c.coordinator_hosts if h != mhost][0]
    name = coordinator_name(c, master)
    streams = Streams(mhost, c.coord_ports["predict"], 8)
    streams.wait_started()
    proc = c.procs[name]
    proc.send_signal(signal.SIGTERM)  # what kubelet sends the old pod in a rollout
    # readiness goes 503 at once (the Service stops sending), new requests are refused with a reply ...
    wait_until(lambda: getattr(get(f"http://{mhost}:{c.coord_ports['status']}/v1/readiness"), "status_code", None) == 503,
               5, "the stopping master's readiness is 503")
    r = chat(mhost, c.coord_ports["predict"], stream=False, timeout=10)
    assert r.status_code == 503, r.text
    # ... while the lock stays with it as long as its streams run: the standby must not take the /dresult links
    in_flight = streams.unfinished()
    holder = c.master()
    assert in_flight > 0, "the streams ended before the check (too fast a machine for this drill?)"
    assert holder == master, f"lock moved to {holder} with {in_flight} streams in flight"
    assert not standby_serves(c, standby)
    outcomes = streams.join()
    assert outcomes == ["done"] * len(outcomes), outcomes
    proc.wait(30)
    exited = time.time()
    assert proc.returncode == 0
    # the lease was given back on the way out, not left to expire: the lock no longer names the old master
    assert c.master() != master
    wait_until(lambda: standby_serves(c, standby), TTL + 10, "the standby serves after the drain")
    took = time.time() - exited
    assert c.master().split(":")[0] == standby
    log = log_text(c, name)
    assert "draining before stop" in log and "drained" in log
    print(f"\nGraceful master stop under 8 streams: all {len(outcomes)} ended with [DONE]; "
          f"standby serving {took:.2f} s after the old master exited (lease {TTL} s)")


@pytest.mark.parametrize("cluster", [("single", 0, 0, 2)], indirect=True)
def test_two_single_node_coordinators_both_refreshed_and_both_serve(cluster):
    c = cluster
    assert sorted(c.ready_coordinators()) == sorted(c.coordinator_hosts)
    for h in c.coordinator_hosts:
        assert len(coordinator_info_ids(c, h)) == c.count
        r = chat(h, c.coord_ports["predict"], stream=False)
        assert r.status_code == 200
    assert c.master() is None  # no etcd lock in single_node


def test_two_clusters_on_one_etcd_each_elect_their_own(tmp_path):
    """Two HA clusters named alpha and beta (MINDIE_MS_CLUSTER_NAME, as the manifests set it) on one etcd: each
    has its own Controller leader and Coordinator master under its own keys, serves, and fails over alone."""
    def make(name, etcd=None):
        return local_cluster.LocalCluster(mode="pd", p=1, d=1, speedup=20, binaries=os.environ.get("MINDIE_MS_BIN"),
                                          workdir=str(tmp_path / name), sync_seconds=SYNC, ha=True, ha_ttl=TTL,
                                          ha_name=name, etcd=etcd)
    a = make("alpha")
    b = None
    try:
        a.reserve()
        a.start(timeout=90)
        b = make("beta", etcd=f"{a.etcd_host}:{a.etcd_port}")
        b.reserve()
        b.start(timeout=90)
        for c in (a, b):
            leader = wait_until(c.leader, 10, f"{c.ha_name}: a leader")
            master = wait_until(c.master, 10, f"{c.ha_name}: a master")
            assert leader.split(":")[0] in c.controller_hosts
            assert master.split(":")[0] in c.coordinator_hosts
            assert c.ready_coordinators() == [master.split(":")[0]]
            assert sum(controller_ready(c, h) for h in c.controller_hosts) == 1
            assert chat(c.ready_coordinators()[0], c.coord_ports["predict"], stream=False).status_code == 200
            assert a.etcd_get(f"/{c.ha_name}/controller/node-data") is not None
        # the reference's unprefixed keys are not used by named clusters
        assert a.etcd_get("/cluster/leader-lock") is None and a.etcd_get("/coordinator/leader-lock") is None
        # alpha's leader dies: alpha fails over, beta's leader and master stay as they were
        b_leader, b_master = b.leader(), b.master()
        old = a.leader()
        a.kill_process(controller_name(a, old))
        other = next(h for h in a.controller_hosts if h != old.split(":")[0])
        wait_until(lambda: controller_ready(a, other), TTL + SYNC + 10, "alpha's standby leads")
        assert (b.leader(), b.master()) == (b_leader, b_master)
        assert controller_ready(b, b_leader.split(":")[0])
    finally:
        if b is not None:
            b.stop()
        a.stop()
