"""The local cluster as `one_key_build.sh --run` starts it (scripts/local_cluster.py): simulators, ms_controller and
ms_coordinator wired by a generated rank table. Real clients against it, Ctrl-C leaving nothing behind, and the
failure drills: an instance killed mid-traffic, brought back, and the Coordinator killed and restarted."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import openai
import pytest
import requests

from conftest import REPO
from e2e_util import MODEL

sys.path.insert(0, str(REPO / "scripts"))
import local_cluster  # noqa: E402

TIMEOUT = 30


def bin_dir() -> str:
    return os.environ.get("MINDIE_MS_BIN") or str(REPO / "out" / "bin")


def wait_until(cond, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def port_open(host, port):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_launcher_prints_how_to_call_it_and_ctrl_c_leaves_nothing(tmp_path):
    args = [sys.executable, str(REPO / "scripts" / "local_cluster.py"), "--mode", "single", "--instances", "2",
            "--speedup", "20", "--base-port", "22025", "--first-ip", "40", "--workdir", str(tmp_path / "cluster")]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, MINDIE_MS_BIN=bin_dir()))
    out = []
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            out.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(out)
        assert "local cluster is ready" in text, text
        assert "curl -sN http://127.0.0.1:22025/v1/chat/completions" in text
        assert "http://127.0.0.1:22028/metrics" in text and "http://127.0.0.1:22029/v1/health" in text
        # the status page the banner links answers a browser
        assert "Status page: http://127.0.0.1:22029/" in text
        page = requests.get("http://127.0.0.1:22029/", headers={"accept": "text/html"}, timeout=TIMEOUT)
        assert page.status_code == 200 and "<title>MindIE-MS cluster</title>" in page.text
        assert str(tmp_path / "cluster" / "logs") in text
        # the printed curl works: a streamed chat with SSE framing
        r = requests.post("http://127.0.0.1:22025/v1/chat/completions", timeout=TIMEOUT, stream=True,
                          json={"model": MODEL, "stream": True, "max_tokens": 8,
                                "messages": [{"role": "user", "content": "Hello!"}]})
        body = r.content.decode()
        assert r.status_code == 200 and body.startswith("data: {") and body.endswith("data: [DONE]\n\n")
        assert requests.get("http://127.0.0.1:22029/v1/health", timeout=TIMEOUT).status_code == 200
        assert "request_received_total" in requests.get("http://127.0.0.1:22028/metrics", timeout=TIMEOUT).text
    finally:
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=60)
    assert p.returncode == 0, rest
    assert "every port is free" in rest
    ports = [("127.0.0.1", x) for x in (22025, 22026, 22028, 22029, 22030, 22027)]
    ports += [(f"127.0.0.{40 + k}", x) for k in range(2) for x in (1025, 1026, 1027, 1121)]
    assert [hp for hp in ports if port_open(*hp)] == []
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "cluster")], capture_output=True, text=True).stdout.split()
    left += subprocess.run(["pgrep", "-f", "--ip 127.0.0.4[01] "], capture_output=True, text=True).stdout.split()
    assert left == []


def read_banner(p, seconds=90):
    """Lines the launcher prints until its banner's last line (or its exit)."""
    out = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        out.append(line)
        if "Press Ctrl-C" in line:
            break
    return "".join(out)


def test_tls_quick_start_serves_a_real_tls_client(tmp_path):
    # what `bash one_key_build.sh --run --tls` runs after the build (README's quick start)
    args = [sys.executable, str(REPO / "scripts" / "local_cluster.py"), "--tls", "--speedup", "20",
            "--base-port", "25025", "--first-ip", "70", "--workdir", str(tmp_path / "cluster")]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, MINDIE_MS_BIN=bin_dir()))
    try:
        text = read_banner(p)
        assert "local cluster is ready" in text, text
        pki = tmp_path / "cluster" / "pki"
        # the test PKI follows the one mode rule for TLS files
        for f in ("ca.pem", "server.pem", "server.key.pem", "client.pem", "client.key.pem", "crl.pem", "key_pwd.txt"):
            assert (pki / f).stat().st_mode & 0o777 == 0o400, f
        # the curl command the banner prints works as printed: a streamed chat over mutual TLS
        m = re.search(r"^\s*(curl -sN .*?)\s*$\n\s*(-H .*?)\s*\\$\n\s*(-d .*)$", text, re.M)
        assert m and "https://127.0.0.1:25025/" in m.group(1), text
        cmd = " ".join(part.rstrip(" \\") for part in m.groups())
        r = subprocess.run(cmd + " --max-time 30", shell=True, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("data: {") and r.stdout.endswith("data: [DONE]\n\n"), r.stdout[-200:]
        # a real TLS client (the OpenAI SDK over httpx) with the client certificate streams through it
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key.pem"))
        client = openai.OpenAI(base_url="https://127.0.0.1:25025/v1", api_key="x", max_retries=0, timeout=TIMEOUT,
                               http_client=openai.DefaultHttpxClient(verify=ctx))
        chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                     max_tokens=8, stream=True))
        assert len("".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices).split()) == 8
        # without a client certificate the data port refuses (mutual TLS)
        with pytest.raises(requests.exceptions.RequestException):
            requests.post("https://127.0.0.1:25025/v1/chat/completions", verify=str(pki / "ca.pem"), timeout=TIMEOUT,
                          json={"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
    finally:
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=60)
    assert p.returncode == 0, rest
    assert "every port is free" in rest


def checkout_state():
    """What a launcher could change in the checkout: git's view (ignored files included) and the ctime of every
    file under conf/ (a chmod changes it even when the mode stays)."""
    git = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    ctimes = {str(f): f.stat().st_ctime_ns for f in (REPO / "conf").rglob("*") if f.is_file()}
    return git, ctimes


def test_two_default_launchers_coexist_and_keep_run_files_out_of_the_checkout(tmp_path):
    before = checkout_state()
    env = dict(os.environ, MINDIE_MS_BIN=bin_dir(), XDG_STATE_HOME=str(tmp_path / "state"))
    # no --net, --base-port, --first-ip or --workdir: both at the same time, with the defaults
    procs = [subprocess.Popen([sys.executable, str(REPO / "scripts" / "local_cluster.py")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO) for _ in range(2)]
    rests = []
    try:
        texts = [read_banner(p) for p in procs]
        for text in texts:
            assert "local cluster is ready" in text, texts
        urls = [re.search(r"Inference \(.*\):\s+(http://\S+)", t).group(1) for t in texts]
        assert len(set(urls)) == 2, urls
        for url, text in zip(urls, texts):
            r = requests.post(f"{url}/v1/chat/completions", timeout=TIMEOUT,
                              json={"model": MODEL, "stream": True, "max_tokens": 4,
                                    "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n"), (url, r.text[-200:])
            # run files (configs, logs) live under the state folder, not in the checkout
            for what in ("Logs", "Configs"):
                path = re.search(rf"{what}:\s+(\S+)", text).group(1)
                assert path.startswith(str(tmp_path / "state" / "mindie-ms" / "clusters")), path
                assert not path.startswith(str(REPO)), path
                assert os.path.isdir(path)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            rests.append(p.communicate(timeout=60)[0])
    assert [p.returncode for p in procs] == [0, 0], rests
    assert all("every port is free" in r for r in rests), rests
    assert checkout_state() == before


def test_pinned_addresses_in_use_get_the_hint_that_helps(tmp_path):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.90", 1026))  # an instance's management port
    holder.listen()
    try:
        r = subprocess.run([sys.executable, str(REPO / "scripts" / "local_cluster.py"), "--base-port", "26025",
                            "--first-ip", "90", "--workdir", str(tmp_path / "cluster")],
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, MINDIE_MS_BIN=bin_dir()))
    finally:
        holder.close()
    assert r.returncode == 1
    assert "port 127.0.0.90:1026 (instance) is in use" in r.stderr and "--first-ip or --net" in r.stderr, r.stderr
    assert "--base-port" not in r.stderr.split("in use")[1].split("or leave")[0], r.stderr


@pytest.fixture
def single_cluster(tmp_path):
    c = local_cluster.LocalCluster(mode="single", instances=2, speedup=2, base_port=23025, first_ip=50,
                                   workdir=str(tmp_path / "cluster"), binaries=bin_dir())
    try:
        c.start()
        yield c
    finally:
        c.stop()


def chat(c, stream=False, max_tokens=8, timeout=TIMEOUT):
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{c.coord_ports['predict']}/v1", api_key="x", max_retries=0,
                           timeout=timeout)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=max_tokens, stream=stream)


def test_drill_instance_killed_mid_traffic_then_restarted(single_cluster):
    c = single_cluster
    assert sorted(c.instances_in_coordinator()) == [0, 1]
    # long streams in flight on both instances
    results = []
    # a stream whose instance dies before its first byte is retried elsewhere (DECISIONS 10) and ends ok, so
    # the kill waits until every stream has relayed a token: from then on the loss is the client's to see
    streaming = [threading.Event() for _ in range(4)]

    def stream_one(started):
        try:
            text = ""
            for ch in chat(c, stream=True, max_tokens=1000):
                if ch.choices:
                    text += ch.choices[0].delta.content or ""
                    if text:
                        started.set()
            results.append(("ok", text))
        except Exception as e:  # an in-stream error surfaces as an exception in the SDK
            results.append(("error", repr(e)))

    threads = [threading.Thread(target=stream_one, args=(e,)) for e in streaming]
    for t in threads:
        t.start()
    wait_until(lambda: all(e.is_set() for e in streaming), 20, "4 streams relaying tokens")
    assert json.loads(requests.get(
        f"http://127.0.0.1:{c.coord_ports['manage']}/v1/instances/tasks?id=0&id=1", timeout=5).text)["tasks"] == [2, 2]
    c.kill_process("sim0")
    for t in threads:
        t.join(60)
    assert sorted(r[0] for r in results) == ["error", "error", "ok", "ok"], results
    # new requests succeed while it is down, and the Controller takes it out of the published set
    for _ in range(4):
        assert chat(c).choices[0].message.content
    wait_until(lambda: c.instances_in_coordinator() == [1], 30, "the Controller unpublishes the dead instance")
    # brought back: the Controller republishes it under the same id
    c.start_instance(0)
    wait_until(lambda: sorted(c.instances_in_coordinator()) == [0, 1], 60, "the instance comes back")
    for _ in range(4):
        assert chat(c).choices[0].message.content


def test_drill_coordinator_killed_and_restarted(single_cluster):
    c = single_cluster
    c.kill_process("ms_coordinator")
    c.start_coordinator()
    # no manual step: the Controller re-pushes the instance set to the new Coordinator
    wait_until(lambda: sorted(c.instances_in_coordinator()) == [0, 1], 60, "the Controller re-pushes the instances")
    assert chat(c).choices[0].message.content


@pytest.fixture
def pd_cluster(tmp_path):
    c = local_cluster.LocalCluster(mode="pd", p=2, d=2, speedup=2, base_port=24025, first_ip=60,
                                   workdir=str(tmp_path / "cluster"), binaries=bin_dir())
    try:
        c.start()
        yield c
    finally:
        c.stop()


def tasks(c, ids):
    q = "&".join(f"id={i}" for i in ids)
    return json.loads(requests.get(f"http://127.0.0.1:{c.coord_ports['manage']}/v1/instances/tasks?{q}", timeout=5).text)["tasks"]


def test_pd_cluster_serves_real_clients(pd_cluster):
    c = pd_cluster
    assert sorted(c.instances_in_coordinator()) == [0, 1, 2, 3]
    # the Controller decided 2P2D at rates 1:1 (P first in rank-table order) and linked them
    status = json.load(open(os.path.join(c.logs, "cluster_status_output.json")))
    roles = sorted(s["static_info"]["role"] for s in status["server"])
    assert roles == [68, 68, 80, 80]  # 'D', 'D', 'P', 'P'
    # in table order, whichever simulator answered its first probe first
    by_ip = {s["ip"]: s["static_info"]["role"] for s in status["server"]}
    assert [by_ip[c.instance_ip(k)] for k in range(4)] == [80, 80, 68, 68]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{c.coord_ports['predict']}/v1", api_key="x", max_retries=0,
                           timeout=TIMEOUT)
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    assert r.choices[0].message.content and r.usage.completion_tokens == 8
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=8, stream=True, stream_options={"include_usage": True}))
    text = "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
    assert len(text.split()) == 8
    comp = client.completions.create(model=MODEL, prompt="hello", max_tokens=4)
    assert comp.choices[0].text
    raw = requests.post(f"http://127.0.0.1:{c.coord_ports['predict']}/v1/chat/completions", timeout=TIMEOUT,
                        json={"model": MODEL, "stream": True, "max_tokens": 4,
                              "messages": [{"role": "user", "content": "hi"}]})
    body = raw.content.decode()
    assert all(f.startswith("data: ") for f in body.split("\n\n") if f) and body.endswith("data: [DONE]\n\n")


def test_pd_drill_decode_killed_mid_traffic_then_restarted(pd_cluster):
    c = pd_cluster
    results = []

    def stream_one():
        try:
            text = "".join((ch.choices[0].delta.content or "") for ch in chat(c, stream=True, max_tokens=1000) if ch.choices)
            results.append(("ok", text))
        except Exception as e:
            results.append(("error", repr(e)))

    threads = [threading.Thread(target=stream_one) for _ in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: all(n > 0 for n in tasks(c, [2, 3])), 20, "streams in flight on both D instances")
    c.kill_process("sim2")  # instance 2 is a D
    for t in threads:
        t.join(90)
    kinds = [r[0] for r in results]
    assert len(kinds) == 6 and "error" in kinds and "ok" in kinds, results
    # new requests succeed on the other D; the Controller republishes without the dead one
    for _ in range(4):
        assert chat(c).choices[0].message.content
    wait_until(lambda: 2 not in c.instances_in_coordinator(), 30, "the dead D leaves the published set")
    # brought back, it is a D again and serves
    c.start_instance(2)
    wait_until(lambda: sorted(c.instances_in_coordinator()) == [0, 1, 2, 3], 60, "the D comes back")
    wait_until(lambda: sorted(s["static_info"]["role"] for s in json.load(open(os.path.join(c.logs, "cluster_status_output.json")))["server"]) == [68, 68, 80, 80], 30, "2P2D again")
    for _ in range(6):
        assert chat(c).choices[0].message.content
