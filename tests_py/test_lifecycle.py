"""Process lifecycle and connection handling as an operator or a client sees them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
import requests

import conftest
from e2e_util import HOST, MODEL, TIMEOUT


def _exits_within(proc: conftest.Proc, sig: int, seconds: float) -> int | None:
    proc.popen.send_signal(sig)
    try:
        return proc.popen.wait(seconds)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_mindie_sim_stops_on_signal(tmp_path, sig):
    sim = conftest.start_sim(tmp_path, "compat")
    try:
        rc = _exits_within(sim.proc, sig, 5)
        assert rc == 0, f"mindie_sim still running 5 s after {signal.Signals(sig).name}"
    finally:
        sim.proc.stop(grace=0.5)


def test_mindie_sim_stop_service_force(tmp_path):
    """GET /stopService?mode=Force: 200 with an empty body, then the process exits (docs/wire/simulator.md §4)."""
    sim = conftest.start_sim(tmp_path, "compat")
    try:
        r = requests.get(sim.instances[0].mgmt_url + "/stopService?mode=Force", timeout=TIMEOUT)
        assert r.status_code == 200 and r.content == b""
        assert sim.proc.popen.wait(5) == 0
    finally:
        sim.proc.stop(grace=0.5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_coordinator_stops_on_signal(tmp_path, sig):
    ports = dict(zip(("predict_port", "manage_port", "alarm_port", "external_port", "status_port"),
                     conftest.free_ports(5)))
    cfg = conftest.coordinator_config(tmp_path, ports)
    p = conftest.Proc("ms_coordinator", [str(conftest.bin_dir() / "ms_coordinator"), "--config", str(cfg)],
                      tmp_path / "ms_coordinator.log")
    try:
        conftest.wait_until(
            lambda: requests.get(f"http://{HOST}:{ports['status_port']}/v1/health", timeout=2).status_code == 200,
            "coordinator /v1/health", proc=p)
        assert _exits_within(p, sig, 5) == 0
    finally:
        p.stop(grace=0.5)


def test_coordinator_refuses_world_readable_config(tmp_path):
    """The config must be at most 0640 (DECISIONS 4): 0644 makes the Coordinator exit before listening."""
    ports = dict(zip(("predict_port", "manage_port", "alarm_port", "external_port", "status_port"),
                     conftest.free_ports(5)))
    cfg = conftest.coordinator_config(tmp_path, ports)
    os.chmod(cfg, 0o644)
    env = dict(os.environ)
    env.pop("MINDIE_CHECK_INPUTFILES_PERMISSION", None)
    r = subprocess.run([str(conftest.bin_dir() / "ms_coordinator"), "--config", str(cfg)], capture_output=True,
                       timeout=20, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert str(cfg).encode() in r.stderr
    with pytest.raises(OSError):
        socket.create_connection((HOST, ports["predict_port"]), timeout=1).close()


def _raw_exchange(port: int, request: bytes, deadline: float = 5.0) -> tuple[bytes, bool]:
    """Sends one HTTP/1.1 request (keep-alive) and reads until the peer closes or the deadline passes.
    Returns the bytes read and whether the server closed the connection."""
    s = socket.create_connection((HOST, port), timeout=deadline)
    try:
        s.sendall(request)
        data = b""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            s.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return data, False
            if not chunk:
                return data, True
            data += chunk
        return data, False
    finally:
        s.close()


def test_simulator_non_stream_reply_closes_connection(sim_mindie):
    body = b'{"model":"%s","prompt":"abc","max_tokens":2}' % MODEL.encode()
    req = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Connection: keep-alive\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    data, closed = _raw_exchange(sim_mindie.instances[0].port, req, deadline=3)
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 200")
    assert "\r\nconnection: close" in head
    assert closed


def test_simulator_stream_keeps_chunked_keep_alive(sim_mindie):
    """Streams are chunked text/event-stream; the connection may be reused afterwards."""
    s = requests.Session()
    for _ in range(2):
        r = s.post(sim_mindie.instances[0].url + "/v1/completions",
                   json={"model": MODEL, "prompt": "abc", "max_tokens": 2, "stream": True}, timeout=TIMEOUT)
        assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
        assert r.content.endswith(b"data: [DONE]\n\n")
    s.close()


def test_simulator_body_over_40mb_is_413_json(sim_compat):
    r = requests.post(sim_compat.instances[0].url + "/v1/completions", data=b"x" * ((40 << 20) + 1000), timeout=60,
                      headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"message": "Request body too large. Maximum allowed size is 40MB."}


def test_simulator_body_over_41mb_is_413_json(sim_compat):
    r = requests.post(sim_compat.instances[0].url + "/v1/completions", data=b"x" * (42 << 20), timeout=60,
                      headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"message": "Request body too large. Maximum allowed size is 40MB."}
