"""Abuse of the HTTP server layer (issue 12): request smuggling and header floods, a second process or an equal
port, a connection flood under a low descriptor limit, HTTP/2 rapid reset. Each case checks the reply and that
the process still serves afterwards."""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest
import requests

from conftest import (HOST, MODEL, Proc, bin_dir, coordinator_config, free_ports, refresh_payload, start_sim,
                      wait_until)


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Sends `data` on a fresh connection and reads until the server closes it; b'<timeout>' marks a server
    that neither answered nor closed in time."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # refused mid-send: the reply is still there to read
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                return out + b"<timeout>"
            except ConnectionResetError:
                return out + b"<reset>"
            if not b:
                return out
            out += b
    finally:
        s.close()


def status_lines(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def start_coordinator(tmp, fd_limit: int | None = None, ports: dict | None = None, name: str = "ms_coordinator"):
    names = ("predict_port", "manage_port", "alarm_port", "external_port", "status_port")
    ports = ports or dict(zip(names, free_ports(len(names))))
    cfg = coordinator_config(tmp, ports)
    env = dict(os.environ)
    env.pop("MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH", None)
    argv = [str(bin_dir() / "ms_coordinator"), "--config", str(cfg)]
    if fd_limit is not None:
        argv = ["bash", "-c", f"ulimit -n {fd_limit} && exec \"$0\" \"$@\"", *argv]
    p = Proc(name, argv, tmp / f"{name}.log", env=env)
    return p, ports, cfg


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abuse")
    backends = start_sim(tmp, "compat", instances=1)
    p, ports, cfg = start_coordinator(tmp, fd_limit=256)
    status = f"http://{HOST}:{ports['status_port']}"
    wait_until(lambda: requests.get(status + "/v1/startup", timeout=2).status_code == 200, "coordinator startup", proc=p)
    r = requests.post(f"http://{HOST}:{ports['manage_port']}/v1/instances/refresh", json=refresh_payload(backends), timeout=10)
    assert r.status_code == 200, r.text
    wait_until(lambda: requests.get(status + "/v1/readiness", timeout=2).status_code == 200, "readiness", proc=p)
    yield {"proc": p, "ports": ports, "cfg": cfg, "tmp": tmp, "backends": backends}
    p.stop()
    backends.proc.stop()


def still_serves(c) -> None:
    r = requests.post(f"http://{HOST}:{c['ports']['predict_port']}/v1/chat/completions", timeout=30,
                      json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert c["proc"].popen.poll() is None


# ------------------------------------------------------------------ item 5: framing and header limits


def test_content_length_with_transfer_encoding_is_400_and_closes(cluster):
    body = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = exchange(cluster["ports"]["predict_port"],
                   b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" % len(body) + body)
    assert status_lines(raw) == [b"HTTP/1.1 400 Bad Request"], raw
    assert b"both Content-Length and Transfer-Encoding" in raw
    assert not raw.endswith(b"<timeout>")
    still_serves(cluster)


def test_two_different_content_lengths_are_400(cluster):
    raw = exchange(cluster["ports"]["predict_port"],
                   b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\n{}{}")
    assert status_lines(raw) == [b"HTTP/1.1 400 Bad Request"], raw
    assert b"conflicting Content-Length" in raw
    still_serves(cluster)


@pytest.mark.parametrize("head", [
    b"".join(b"x-h%d: v\r\n" % i for i in range(1000)),
    b"x-big: " + b"a" * (1 << 20) + b"\r\n",
], ids=["1000-headers", "1MiB-header"])
def test_header_floods_are_431(cluster, head):
    for port in (cluster["ports"]["predict_port"], cluster["ports"]["manage_port"]):
        raw = exchange(port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
        assert status_lines(raw) == [b"HTTP/1.1 431 Request Header Fields Too Large"], raw[:300]
    still_serves(cluster)


def test_chunk_of_2_pow_64_minus_1_is_refused_at_once(cluster):
    raw = exchange(cluster["ports"]["predict_port"],
                   b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"ffffffffffffffff\r\n{\"model\"", timeout=5)
    assert status_lines(raw) == [b"HTTP/1.1 413 Payload Too Large"], raw
    still_serves(cluster)


# ------------------------------------------------------------------ item 9: ports


def test_a_second_coordinator_with_the_same_config_fails_to_start(cluster, tmp_path):
    env = dict(os.environ)
    env.pop("MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH", None)
    p = Proc("ms_coordinator-2", [str(bin_dir() / "ms_coordinator"), "--config", str(cluster["cfg"])],
             tmp_path / "second.log", env=env)
    try:
        rc = p.popen.wait(timeout=30)
    finally:
        p.stop()
    assert rc != 0
    log = (tmp_path / "second.log").read_text() + "\n".join(p.lines)
    assert "Address already in use" in log, log[-2000:]
    still_serves(cluster)


def test_equal_ports_in_one_config_are_a_config_error(tmp_path):
    port = free_ports(1)[0]
    names = ("predict_port", "manage_port", "alarm_port", "external_port", "status_port")
    ports = dict(zip(names, free_ports(len(names))))
    ports["manage_port"] = ports["predict_port"] = port
    p, _, _ = start_coordinator(tmp_path, ports=ports, name="ms_coordinator-equal")
    try:
        rc = p.popen.wait(timeout=30)
    finally:
        p.stop()
    assert rc == 2
    log = (tmp_path / "ms_coordinator-equal.log").read_text()
    assert "manage_port" in log and "predict_port" in log, log[-2000:]


# ------------------------------------------------------------------ item 2: descriptor exhaustion


def test_connection_flood_under_a_low_fd_limit_leaves_probes_and_management_answering(cluster):
    ports = cluster["ports"]
    flood = []
    try:
        for _ in range(400):
            try:
                flood.append(socket.create_connection((HOST, ports["predict_port"]), timeout=5))
            except OSError:
                break
        assert len(flood) >= 300, "the kernel backlog took the flood"
        # probes and the management port still answer
        r = requests.get(f"http://{HOST}:{ports['status_port']}/v1/health", timeout=10)
        assert r.status_code == 200, r.text
        r = requests.post(f"http://{HOST}:{ports['manage_port']}/v1/instances/refresh",
                          json=refresh_payload(cluster["backends"]), timeout=10)
        assert r.status_code == 200, r.text
        # data connections over the cap get a reply, not a hang
        raw = exchange(ports["predict_port"], b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10)
        assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    finally:
        for s in flood:
            s.close()
    # once the flood left, new data connections are served
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    wait_until(lambda: requests.post(f"http://{HOST}:{ports['predict_port']}/v1/chat/completions", json=chat,
                                     timeout=5).status_code == 200, "data port after the flood", deadline=20)
    still_serves(cluster)


# ------------------------------------------------------------------ item 4: HTTP/2 rapid reset


def h2_frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def read_frames(sock: socket.socket, deadline: float):
    buf = b""
    while time.monotonic() < deadline:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return
        if not b:
            return
        buf += b
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            yield buf[3], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + length]
            buf = buf[9 + length:]


def test_rapid_reset_gets_goaway_enhance_your_calm(cluster):
    ports = cluster["ports"]
    s = socket.create_connection((HOST, ports["predict_port"]), timeout=1)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
    # HPACK: :method GET (0x82), :scheme http (0x86), :path / (0x84), :authority "x" (literal, indexed name 1)
    headers = b"\x82\x86\x84\x41\x01x"
    sent = 0
    try:
        for i in range(5000):
            sid = 1 + 2 * i
            s.sendall(h2_frame(1, 0x5, sid, headers) + h2_frame(3, 0, sid, struct.pack(">I", 8)))
            sent += 1
    except OSError:
        pass  # the server closed the connection
    goaway = None
    for ftype, _, payload in read_frames(s, time.monotonic() + 10):
        if ftype == 7:
            goaway = payload
            break
    s.close()
    assert goaway is not None, f"no GOAWAY after {sent} resets"
    last_stream, code = struct.unpack(">II", goaway[:8])
    assert code == 0xB, f"GOAWAY code {code}"  # ENHANCE_YOUR_CALM
    assert b"too many stream resets" in goaway[8:]
    assert (last_stream & 0x7FFFFFFF) <= 2 * 400, f"the server processed up to stream {last_stream}"
    still_serves(cluster)
