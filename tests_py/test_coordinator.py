"""ms_coordinator (single_node, default_scheduler, round_robin) in front of two compat simulators:
registration, probes, /metrics, management info, scheduling and relaying seen by real clients."""

from __future__ import annotations

import json
import re
import threading

import openai
import pytest
import requests
import text_generation

from e2e_util import MODEL, TIMEOUT, chat_body, openai_frames, post_stream

NOT_READY = {"error": {"message": "MindIE-MS Coordinator is not ready", "type": "server_error", "code": 503}}


def sample(text: str, name: str) -> float:
    """The value of the first sample of `name` (any labels) in a Prometheus text body."""
    m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    assert m, f"no sample {name}"
    return float(m.group(1))


def received(inst) -> float:
    return sample(requests.get(inst.metrics_url + "/metrics", timeout=TIMEOUT).text, "request_received_total")


# --------------------------------------------------------------------------- registration and probes


def test_not_ready_before_registration(coordinator):
    b = coordinator.before_refresh
    assert b["readiness"] == 503
    status, body = b["chat"]
    assert status == 503
    assert json.loads(body) == NOT_READY
    assert b["refresh_status"] == 200


def test_config_file_mode_is_0640(coordinator):
    assert coordinator.config_path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("path", ["/v1/startup", "/v1/health", "/v1/readiness", "/v2/health/live", "/v2/health/ready",
                                  f"/v2/models/{MODEL}/ready"])
def test_status_probes_ok(coordinator, path):
    r = requests.get(coordinator.status_url + path, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == b""


def test_status_probe_unknown_model(coordinator):
    assert requests.get(coordinator.status_url + "/v2/models/other/ready", timeout=TIMEOUT).status_code == 503


def test_openai_sdk_sees_not_ready_as_503(tmp_path):
    """A Coordinator with no instance: the openai SDK gets a 503 with the Coordinator's message."""
    import conftest

    ports = dict(zip(("predict_port", "manage_port", "alarm_port", "external_port", "status_port"),
                     conftest.free_ports(5)))
    cfg = conftest.coordinator_config(tmp_path, ports)
    p = conftest.Proc("ms_coordinator[empty]", [str(conftest.bin_dir() / "ms_coordinator"), "--config", str(cfg)],
                      tmp_path / "ms_coordinator.log")
    try:
        url = f"http://127.0.0.1:{ports['predict_port']}"

        def answers():
            return requests.post(url + "/v1/chat/completions", json=chat_body("x", 1), timeout=2).status_code == 503

        conftest.wait_until(answers, "empty coordinator answering 503", proc=p)
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
        with pytest.raises(openai.InternalServerError) as ei:
            c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert ei.value.status_code == 503
        assert ei.value.body == NOT_READY["error"]  # the SDK unwraps {"error": {...}}
        assert requests.get(f"http://127.0.0.1:{ports['status_port']}/v1/readiness", timeout=TIMEOUT).status_code == 503
        assert requests.get(f"http://127.0.0.1:{ports['status_port']}/v1/health", timeout=TIMEOUT).status_code == 200
    finally:
        p.stop()


# --------------------------------------------------------------------------- /metrics, management


def test_metrics_on_external_port(coordinator):
    # some traffic first, so counters are non-zero
    for _ in range(2):
        assert requests.post(coordinator.url + "/v1/completions", json={"model": MODEL, "prompt": "m", "max_tokens": 2},
                             timeout=TIMEOUT).status_code == 200
    r = requests.get(coordinator.external_url + "/metrics", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert text.endswith("\n")
    for fam in ("request_received_total", "request_success_total", "generation_tokens_total",
                "time_to_first_token_seconds", "request_prompt_tokens"):
        assert f"# TYPE {fam} " in text, fam
    assert re.search(r'^mindie_coordinator_instance_up\{instance="0"\} 1$', text, re.M)
    assert re.search(r'^mindie_coordinator_instance_up\{instance="1"\} 1$', text, re.M)
    assert sample(text, "request_received_total") >= 2
    # every sample line is `name{labels} value` or `name value`
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? \S+', line), line
    assert requests.get(coordinator.external_url + "/other", timeout=TIMEOUT).status_code == 404


def test_coordinator_info_and_tasks(coordinator):
    r = requests.get(coordinator.manage_url + "/v1/coordinator_info", timeout=TIMEOUT)
    assert r.status_code == 200
    j = r.json()
    assert sorted(i["id"] for i in j["schedule_info"]) == [0, 1]
    assert j["request_num"] >= 1
    assert set(j["request_length_info"]) == {"input_len", "output_len"}
    r = requests.get(coordinator.manage_url + "/v1/instances/tasks?id=0&id=1&id=9", timeout=TIMEOUT)
    assert r.status_code == 200 and r.json() == {"tasks": [0, 0, -1]}


# --------------------------------------------------------------------------- scheduling and relaying


def test_round_robin_spreads_over_both_instances(coordinator):
    insts = coordinator.backends.instances
    before = [received(i) for i in insts]
    c = openai.OpenAI(base_url=coordinator.url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
    for k in range(6):
        c.completions.create(model=MODEL, prompt=f"round robin {k}", max_tokens=2)
    after = [received(i) for i in insts]
    assert [a - b for a, b in zip(after, before)] == [3, 3]


def test_concurrent_streams_are_not_mixed(coordinator):
    c = openai.OpenAI(base_url=coordinator.url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
    prompts = [f"concurrent prompt number {k}" for k in range(8)]
    expected = {p: c.completions.create(model=MODEL, prompt=p, max_tokens=12).choices[0].text for p in prompts}
    got, errors = {}, []

    def run(p):
        try:
            chunks = list(c.completions.create(model=MODEL, prompt=p, max_tokens=12, stream=True))
            got[p] = "".join(k.choices[0].text for k in chunks if k.choices)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors
    assert got == expected


def test_data_port_error_replies_speak_the_dialect(coordinator):
    r = requests.post(coordinator.url + "/v1/chat/completions", data=b"{not json", timeout=TIMEOUT,
                      headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"error": {"message": "Request format is invalid", "type": "invalid_request_error", "code": 400}}
    r = requests.post(coordinator.url + "/v1/chat/completions", json={"model": MODEL}, timeout=TIMEOUT)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Invalid request format: Missing both 'prompt' or 'messages'"
    # DECISIONS 1: unknown path 404, wrong method 405 (the reference: 400 and close)
    r = requests.post(coordinator.url + "/no/such/path", json={}, timeout=TIMEOUT)
    assert r.status_code == 404
    r = requests.get(coordinator.url + "/v1/chat/completions", timeout=TIMEOUT)
    assert r.status_code == 405 and r.headers.get("allow") == "POST"


def test_openai_sdk_400_from_coordinator(coordinator):
    c = openai.OpenAI(base_url=coordinator.url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
    with pytest.raises(openai.BadRequestError) as ei:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2,
                                  extra_body={"stream": "yes"})
    assert ei.value.status_code == 400
    assert ei.value.body == {"message": "Request format is invalid", "type": "invalid_request_error", "code": 400}


def test_broken_stream_ends_with_error_event_openai(coordinator):
    """DECISIONS 9: an upstream stream cut after 3 tokens ends with an OpenAI error event (no [DONE]);
    the openai SDK raises it."""
    hdr = {"X-Sim-Fault": "die_mid_stream;after_tokens=3;how=close"}
    r, chunks = post_stream(coordinator.url + "/v1/chat/completions", chat_body("cut me", 10, stream=True), headers=hdr)
    assert r.status_code == 200
    raw = b"".join(chunks)
    assert b"[DONE]" not in raw
    frames = raw.split(b"\n\n")[:-1]
    last = json.loads(frames[-1].removeprefix(b"data: "))
    assert last == {"error": {"message": "Read messages from instance failed", "type": "server_error", "code": 500}}
    assert len(frames) == 1 + 3 + 1  # role chunk, 3 tokens, the error
    c = openai.OpenAI(base_url=coordinator.url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
    seen = []
    with pytest.raises(openai.APIError) as ei:
        for k in c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "cut me"}],
                                           max_tokens=10, stream=True, extra_headers=hdr):
            seen.append(k)
    assert "Read messages from instance failed" in str(ei.value)
    assert len(seen) == 1 + 3


def test_broken_stream_ends_with_error_event_tgi(coordinator):
    c = text_generation.Client(coordinator.url, timeout=TIMEOUT, headers={"X-Sim-Fault": "die_mid_stream;after_tokens=2"})
    seen = []
    with pytest.raises(text_generation.errors.GenerationError) as ei:
        for f in c.generate_stream("cut me", max_new_tokens=10):
            seen.append(f)
    assert len(seen) == 2
    assert "Read messages from instance failed" in str(ei.value)


def test_client_headers_reach_the_instance(coordinator):
    """The Coordinator forwards client headers: the simulator's X-Sim-Output-Tokens ends generation early (EOS)."""
    c = openai.OpenAI(base_url=coordinator.url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "eos"}], max_tokens=10,
                                  extra_headers={"X-Sim-Output-Tokens": "3"})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 3


def test_keep_alive_survives_the_instances_connection_close(coordinator):
    """The simulators close after every non-stream reply (Connection: close, as MindIE Server does); that header
    stays on the Coordinator's upstream hop (RFC 9110 §7.6.1): the client's connection is kept, and pipelined
    requests are all answered."""
    import http.client
    import socket

    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    host, port = coordinator.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    socks = []
    for _ in range(3):
        conn.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["object"] == "chat.completion"
        assert (r.getheader("connection") or "").lower() != "close" and not r.will_close
        socks.append(conn.sock)
    assert socks[0] is socks[1] is socks[2]
    conn.close()

    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
        s.sendall(req * 3)
        data = b""
        while data.count(b'"chat.completion"') < 3:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {data.count(b'HTTP/1.1 200')} replies: {data[-300:]!r}"
            data += chunk
    assert data.count(b"HTTP/1.1 200") == 3 and b"connection: close" not in data.lower()


# --------------------------------------------------------------------------- limits and headers


def test_headers_over_8k_get_431(coordinator):
    r = requests.post(coordinator.url + "/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1},
                      headers={"x-big": "a" * 10000}, timeout=TIMEOUT)
    assert r.status_code == 431
    assert "8192" in r.json()["error"]


def test_body_over_limit_is_413_for_the_sdk(coordinator):
    """body_limit 1 MiB (conf default): the openai SDK gets a 413 (DECISIONS 1), not a closed connection."""
    c = openai.OpenAI(base_url=coordinator.url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
    with pytest.raises(openai.APIStatusError) as ei:
        c.completions.create(model=MODEL, prompt="a" * (2 << 20), max_tokens=2)
    assert ei.value.status_code == 413


def test_body_over_limit_error_speaks_openai(coordinator):
    r = requests.post(coordinator.url + "/v1/completions", json={"model": MODEL, "prompt": "a" * (2 << 20),
                                                                 "max_tokens": 2}, timeout=TIMEOUT)
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == 413 and err["type"] == "invalid_request_error" and "1 MiB" in err["message"]


def test_coordinator_replies_carry_server_name(coordinator):
    r = requests.post(coordinator.url + "/v1/chat/completions", data=b"{bad", timeout=TIMEOUT,
                      headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.headers.get("server") == "MindIE-MS"


# --------------------------------------------------------------------------- membership (a private cluster)


def test_refresh_membership_changes_routing(tmp_path):
    """The Controller's refresh is the full desired state: dropping an id stops routing to it at once, an
    empty set makes the cluster unavailable (503 to clients, readiness 503), re-adding restores service."""
    import conftest

    with conftest.coordinator_cluster(tmp_path) as c:
        full = conftest.refresh_payload(c.backends)
        only1 = {"ids": [1], "instances": [full["instances"][1]]}
        assert requests.post(c.manage_url + "/v1/instances/refresh", json=only1, timeout=TIMEOUT).status_code == 200
        insts = c.backends.instances
        before = [received(i) for i in insts]
        sdk = openai.OpenAI(base_url=c.url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
        for k in range(4):
            assert sdk.completions.create(model=MODEL, prompt=f"only one {k}", max_tokens=2).usage.completion_tokens == 2
        assert [received(i) - b for i, b in zip(insts, before)] == [0, 4]
        info = requests.get(c.manage_url + "/v1/coordinator_info", timeout=TIMEOUT).json()
        assert [i["id"] for i in info["schedule_info"]] == [1]

        empty = {"ids": [], "instances": []}
        assert requests.post(c.manage_url + "/v1/instances/refresh", json=empty, timeout=TIMEOUT).status_code == 200
        assert requests.get(c.status_url + "/v1/readiness", timeout=TIMEOUT).status_code == 503
        with pytest.raises(openai.InternalServerError) as ei:
            sdk.completions.create(model=MODEL, prompt="nobody home", max_tokens=2)
        assert ei.value.status_code == 503 and ei.value.body == NOT_READY["error"]

        assert requests.post(c.manage_url + "/v1/instances/refresh", json=full, timeout=TIMEOUT).status_code == 200
        assert requests.get(c.status_url + "/v1/readiness", timeout=TIMEOUT).status_code == 200
        assert sdk.completions.create(model=MODEL, prompt="back", max_tokens=2).usage.completion_tokens == 2


def test_refresh_rejects_bad_bodies(coordinator):
    url = coordinator.manage_url + "/v1/instances/refresh"
    assert requests.post(url, data=b"not json", timeout=TIMEOUT).status_code == 400
    assert requests.post(url, json={"instances": []}, timeout=TIMEOUT).status_code == 400
    assert requests.get(url, timeout=TIMEOUT).status_code == 405
    # still serving with the registered pair
    assert requests.get(coordinator.status_url + "/v1/readiness", timeout=TIMEOUT).status_code == 200
