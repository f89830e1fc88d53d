"""The rendered PD sample run the way kubelet would (scripts/kube_local.py), with no ms_deployer: the Controller
finds its pods through the (minimal) pod API with the RBAC the manifests grant, the P and D pods pass their own
probes once it gave them roles, real clients are served through the Coordinator Service, and a P pod and a D pod
killed and replaced (new name, new IP) are taken over by the cluster.

Needs the binaries to accept kubelet's `..data` ConfigMap layout and `msctl render` to render complete configs
(issue 14, items 1 and 2); with binaries that refuse symlinked config files the pods never start and the test fails
at the first readiness wait, naming the pod and the end of its log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import kube_local  # noqa: E402

BIN = os.environ.get("MINDIE_MS_BIN") or str(REPO / "out" / "bin")
SAMPLE = REPO / "conf" / "infer_server_pd_cluster.json"
DEADLINE = 120.0


def render(spec: Path, namespace: str) -> str:
    env = dict(os.environ, HOME=os.environ.get("HOME", "/tmp"))
    r = subprocess.run([os.path.join(BIN, "msctl"), "render", "infer_server", "-f", str(spec), "--namespace", namespace],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def free_net() -> int:
    # one /24 per run, away from the local_cluster launcher's 0-63
    import socket
    for net in range(100 + os.getpid() % 50, 250):
        s = socket.socket()
        try:
            s.bind((f"127.0.{net}.1", 0))
            s.close()
            probe = socket.socket()
            if probe.connect_ex((f"127.0.{net}.2", 1025)) != 0:  # no Service of another run there
                return net
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free loopback network")


def log_tail(k: kube_local.KubeLocal, pod) -> str:
    try:
        return Path(pod.log_path).read_text()[-1500:]
    except OSError:
        return "<no log>"


def wait_ready(k: kube_local.KubeLocal, deployments: dict[str, int], exclude=()):
    deadline = time.time() + DEADLINE
    while time.time() < deadline:
        ok = all(len([p for p in k.pods_of(d) if p.ready and p.name not in exclude]) == n for d, n in deployments.items())
        if ok:
            return
        time.sleep(0.5)
    lines = []
    for p in k.live_pods():
        lines.append(f"{p.name} ip={p.ip} started={p.started} ready={p.ready} restarts={p.restarts}\n{log_tail(k, p)}")
    pytest.fail("pods not ready in time:\n" + "\n".join(lines))


def client(k: kube_local.KubeLocal, svc: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{k.service_ip(svc)}:1025/v1", api_key="x", max_retries=0, timeout=30)


def chat_both_ways(c: openai.OpenAI):
    # the model is the one the rendered server config names; a user finds it the way UIs do
    models = [m.id for m in c.models.list().data]
    assert len(models) == 1, models
    r = c.chat.completions.create(model=models[0], messages=[{"role": "user", "content": "hello there"}], max_tokens=8)
    assert r.choices[0].message.content
    chunks = list(c.chat.completions.create(model=models[0], messages=[{"role": "user", "content": "stream please"}],
                                            max_tokens=8, stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text and any(ch.choices and ch.choices[0].finish_reason for ch in chunks)


def serve_until_ok(c: openai.OpenAI, seconds: float = 60.0):
    """After a replacement, the Controller's next passes publish the new pod; requests succeed again by then."""
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            chat_both_ways(c)
            return
        except Exception as e:  # noqa: BLE001 - reported if it never recovers
            last = e
            time.sleep(0.5)
    pytest.fail(f"the cluster did not serve again: {last!r}")


@pytest.fixture
def pd_cluster(tmp_path):
    text = render(SAMPLE, "mindie")
    spec = json.loads(SAMPLE.read_text())
    name = spec["server_name"]
    k = kube_local.KubeLocal(text, net=free_net(), binaries=BIN, workdir=str(tmp_path / "kube"), speedup=20).start()
    yield k, name, spec
    k.stop()


def test_rendered_pd_sample_runs_without_a_deployer(pd_cluster):
    k, name, spec = pd_cluster
    p, d = spec["pd_cluster"]["prefill_replicas"], spec["pd_cluster"]["decode_replicas"]
    deployments = {f"{name}-coordinator": 1, f"{name}-controller": 1, f"{name}-prefill": p, f"{name}-decode": d}
    wait_ready(k, deployments)
    c = client(k, f"{name}-infer")
    chat_both_ways(c)
    # nobody wrote a rank table: the Controller found the pods itself
    table = k.object("ConfigMap", "mindie", f"{name}-global-ranktable")["data"]["global_ranktable.json"]
    assert "initializing" in table

    for role in ("prefill", "decode"):
        victim = k.pods_of(f"{name}-{role}")[0]
        old_ip = victim.ip
        k.kill_pod(victim.name)
        # the ReplicaSet replaces it: a new name and a new IP; the replacement passes its own probes only once the
        # Controller has given it a role
        wait_ready(k, deployments, exclude={victim.name})
        new = [q for q in k.pods_of(f"{name}-{role}") if q.name != victim.name]
        assert all(q.ip != old_ip for q in new)
        serve_until_ok(c)
        for _ in range(3):
            chat_both_ways(c)


# --------------------------------------------------------------------------- the tool's own emulation


def test_configmap_volume_has_kubelets_layout(tmp_path):
    kube_local.atomic_write(str(tmp_path / "v"), {"config.json": "{}", "b.txt": "x"}, 0o640)
    link = tmp_path / "v" / "config.json"
    assert os.readlink(link) == "..data/config.json"
    data = os.readlink(tmp_path / "v" / "..data")
    assert data.startswith("..") and (tmp_path / "v" / data / "config.json").read_text() == "{}"
    assert (os.stat(link).st_mode & 0o777) == 0o640
    assert sorted(os.listdir(tmp_path / "v")) == sorted(["..data", data, "b.txt", "config.json"])


def test_env_expansion_and_selectors():
    env = {"POD_IP": "127.0.9.3"}
    assert kube_local.expand("$(POD_IP):$(NOPE) $$(POD_IP)", env) == "127.0.9.3:$(NOPE) $(POD_IP)"
    labels = {"app": "x", "mindie-ms/role": "prefill"}
    assert kube_local.label_selector_matches("app=x", labels)
    assert kube_local.label_selector_matches("app==x,mindie-ms/role!=decode,!other", labels)
    assert not kube_local.label_selector_matches("app=y", labels)
    assert not kube_local.label_selector_matches("missing", labels)


def test_pod_api_enforces_the_rendered_rbac(tmp_path):
    """The pod API answers the Controller's ServiceAccount (its Role allows list pods) and refuses others."""
    text = render(SAMPLE, "mindie")
    k = kube_local.KubeLocal(text, net=free_net(), binaries=BIN, workdir=str(tmp_path / "kube"))
    try:
        name = json.loads(SAMPLE.read_text())["server_name"]
        controller_sa = k.object("Deployment", "mindie", f"{name}-controller")["spec"]["template"]["spec"]["serviceAccountName"]
        good = k.api.issue_token("mindie", controller_sa)
        other = k.api.issue_token("mindie", "default")
        assert k.api.handle(f"/api/v1/namespaces/mindie/pods?labelSelector=app%3D{name}", f"Bearer {good}")[0] == 200
        code, body = k.api.handle("/api/v1/namespaces/mindie/pods", f"Bearer {other}")
        assert code == 403 and "cannot list" in body["message"]
        assert k.api.handle("/api/v1/namespaces/kube-system/pods", f"Bearer {good}")[0] == 403
        assert k.api.handle("/api/v1/namespaces/mindie/pods", "Bearer nope")[0] == 401
        # the Role grants nothing beyond pods
        role = k.object("Role", "mindie", controller_sa)
        assert [r["resources"] for r in role["rules"]] == [["pods"]]
    finally:
        k.stop()


def test_manifests_without_their_namespace_are_refused(tmp_path):
    text = render(SAMPLE, "mindie")
    without = "".join("---\n" + d for d in text.split("---\n") if d and "kind: Namespace" not in d)
    with pytest.raises(SystemExit, match="namespace mindie is not created"):
        kube_local.KubeLocal(without, net=free_net(), binaries=BIN, workdir=str(tmp_path / "kube"))


# --------------------------------------------------------------------------- HA on an existing etcd (issue 15)

HA_TTL = 4


def free_port(host: str) -> int:
    import socket
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Etcd:
    """A real etcd (Debian etcd-server) on a loopback address: the "existing etcd by address" of pd_cluster.ha."""

    def __init__(self, host: str, workdir: Path):
        self.host, self.port, peer = host, free_port(host), free_port(host)
        u = f"http://{host}"
        self.log = open(workdir / "etcd.log", "wb")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "kube-local", "--data-dir", str(workdir / "etcd"),
             "--listen-client-urls", f"{u}:{self.port}", "--advertise-client-urls", f"{u}:{self.port}",
             "--listen-peer-urls", f"{u}:{peer}", "--initial-advertise-peer-urls", f"{u}:{peer}",
             "--initial-cluster", f"kube-local={u}:{peer}"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, f"etcd exited with {self.proc.returncode}; see {workdir / 'etcd.log'}"
            try:
                self.get("/probe")
                return
            except OSError:
                time.sleep(0.2)
        pytest.fail("etcd did not serve within 30 s")

    def get(self, key: str):
        """The value of a key through etcd's v3 JSON gateway, or None."""
        import base64
        import urllib.request
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
        req = urllib.request.Request(f"http://{self.host}:{self.port}/v3/kv/range", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=3) as r:
            kvs = json.load(r).get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def wait_for(cond, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"not within {seconds} s: {what}")


def ready_pods(k: kube_local.KubeLocal, deployment: str):
    return [p for p in k.pods_of(deployment) if p.ready]


@pytest.fixture
def pd_ha_cluster(tmp_path):
    if not os.path.exists("/usr/bin/etcd"):
        pytest.fail("needs Debian etcd-server (/usr/bin/etcd): one_key_build.sh installs it")
    net = free_net()
    etcd = Etcd(f"127.0.{net}.1", tmp_path)
    spec = json.loads(SAMPLE.read_text())
    spec["pd_cluster"]["ha"] = {"etcd_address": f"{etcd.host}:{etcd.port}", "lease_ttl_seconds": HA_TTL}
    spec_file = tmp_path / "pd_ha.json"
    spec_file.write_text(json.dumps(spec))
    spec_file.chmod(0o640)
    text = render(spec_file, "mindie")
    # speedup 2: a 500-token stream lasts a few seconds, long enough to be in flight across a graceful stop
    k = kube_local.KubeLocal(text, net=net, binaries=BIN, workdir=str(tmp_path / "kube"), speedup=2).start()
    try:
        yield k, spec["server_name"], spec, etcd
    finally:
        k.stop()
        etcd.stop()


def test_rendered_pd_sample_with_ha_fails_over(pd_ha_cluster):
    """pd_cluster.ha: 2 Controllers and 2 Coordinators on a real etcd. One of each leads and only it is Ready (the
    Service sends the standby nothing, liveness leaves it alone); killing the ready Coordinator or the leading
    Controller hands over to another pod within the lease TTL plus a margin, a graceful stop hands over too, and the
    cluster keeps serving through the Service."""
    k, name, spec, etcd = pd_ha_cluster
    p, d = spec["pd_cluster"]["prefill_replicas"], spec["pd_cluster"]["decode_replicas"]
    coordinator, controller = f"{name}-coordinator", f"{name}-controller"
    wait_ready(k, {coordinator: 1, controller: 1, f"{name}-prefill": p, f"{name}-decode": d})
    assert len(k.pods_of(coordinator)) == 2 and len(k.pods_of(controller)) == 2
    c = client(k, f"{name}-infer")
    chat_both_ways(c)

    # exactly one of each leads, the one etcd names (keys under the namespace and the server's name), and only it
    # is Ready
    def holder(key, pod):
        v = etcd.get(key)
        return v is not None and pod.ip in v

    [lead_ctl] = ready_pods(k, controller)
    [master] = ready_pods(k, coordinator)
    assert holder(f"/mindie/{name}/cluster/leader-lock", lead_ctl), etcd.get(f"/mindie/{name}/cluster/leader-lock")
    assert holder(f"/mindie/{name}/coordinator/leader-lock", master), etcd.get(f"/mindie/{name}/coordinator/leader-lock")
    standbys = [q for q in k.pods_of(coordinator) + k.pods_of(controller) if q not in (lead_ctl, master)]
    assert all(q.started and not q.ready for q in standbys)

    # the master Coordinator's node dies: its lease runs out, another Coordinator takes the lock (the standby, or
    # the replacement pod if it campaigns first), opens the links, is refreshed and turns Ready; the Service sends
    # new requests to it
    coordinators_before = {q.name for q in k.pods_of(coordinator)}
    t0 = time.time()
    k.kill_pod(master.name)
    wait_for(lambda: len(ready_pods(k, coordinator)) == 1, HA_TTL + 12, "another Coordinator Ready after the master's death")
    serve_until_ok(c, seconds=max(1.0, HA_TTL + 12 - (time.time() - t0)))
    coordinator_failover = time.time() - t0
    [new_master] = ready_pods(k, coordinator)
    assert holder(f"/mindie/{name}/coordinator/leader-lock", new_master)
    # the other one stands by: one Ready Coordinator, never two
    wait_for(lambda: len(k.pods_of(coordinator)) == 2 and all(q.started for q in k.pods_of(coordinator)), 30,
             "the replacement Coordinator started")
    assert ready_pods(k, coordinator) == [new_master]

    # the leading Controller's node dies: another Controller leads (the standby, or the replacement if it campaigns
    # first), recovering the state from etcd, and turns Ready
    controllers_before = {q.name for q in k.pods_of(controller)}
    t0 = time.time()
    k.kill_pod(lead_ctl.name)

    def new_leader():
        ready = ready_pods(k, controller)
        return len(ready) == 1 and holder(f"/mindie/{name}/cluster/leader-lock", ready[0]) and ready[0]

    new_ctl = wait_for(new_leader, HA_TTL + 12, "another Controller leads")
    controller_failover = time.time() - t0
    took_over = {"Coordinator": "standby" if new_master.name in coordinators_before else "replacement",
                 "Controller": "standby" if new_ctl.name in controllers_before else "replacement"}
    for _ in range(3):
        chat_both_ways(c)

    # a graceful stop (kubectl delete pod, a drain, a rollout step) with streams in flight through the Service: the
    # master drains them (it keeps the lock and the links until they end), then gives the lease back on its way out,
    # and another Coordinator takes over without waiting for the lease to run out
    model = c.models.list().data[0].id
    outcomes, started = [None] * 4, [threading.Event() for _ in range(4)]

    def stream(i):
        try:
            finish = None
            for ch in c.chat.completions.create(model=model, messages=[{"role": "user", "content": "a long story"}],
                                                max_tokens=500, stream=True):
                started[i].set()
                if ch.choices and ch.choices[0].finish_reason:
                    finish = ch.choices[0].finish_reason
            outcomes[i] = "done" if finish else "truncated"
        except Exception as e:  # noqa: BLE001 - the outcome is asserted below
            outcomes[i] = f"error: {e!r}"
        finally:
            started[i].set()

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for e in started:
        assert e.wait(30)
    assert outcomes == [None] * 4, outcomes
    k.delete_pod(new_master.name)  # returns when the pod's process exited (SIGTERM, then its grace period)
    t0 = time.time()  # the takeover is timed from the old master's exit (the drain before it is the streams' time)
    for t in threads:
        t.join(60)
    assert outcomes == ["done"] * 4, outcomes
    assert etcd.get(f"/mindie/{name}/coordinator/leader-lock") is None or not holder(f"/mindie/{name}/coordinator/leader-lock", new_master)
    wait_for(lambda: len(ready_pods(k, coordinator)) == 1, HA_TTL + 12, "another Coordinator Ready after a graceful stop")
    serve_until_ok(c, seconds=max(1.0, HA_TTL + 12 - (time.time() - t0)))
    graceful_failover = time.time() - t0
    # standing by never cost a restart
    assert all(q.restarts == 0 for q in k.pods_of(coordinator) + k.pods_of(controller))
    print(f"\nfailover through the Service after kill -9: Coordinator {coordinator_failover:.1f} s, Controller "
          f"{controller_failover:.1f} s (lease TTL {HA_TTL} s; taken over by: {took_over}); after a graceful stop of the "
          f"master: {graceful_failover:.1f} s")
