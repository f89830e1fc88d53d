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
