"""A long-lived server arms timers with ever-new durations ("deadline - now" on every request). The loop's timer
structure must take any number of distinct durations: a D of `--run` used to stop answering after 10-12 minutes
(512 distinct durations filled a table that was never emptied) and ignore SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time

import requests

from conftest import MODEL, Proc, bin_dir, wait_until


def _local(ip: str, k: int) -> dict:
    return {"server_ip": ip, "id": k, "host_ip": ip, "device": []}


def test_decode_instance_polled_5000_times_still_answers(tmp_path):
    # P at 127.0.0.1, D at 127.0.0.2 (one process, --distinct-ips), roles as the Controller posts them
    argv = [str(bin_dir() / "mindie_sim"), "--instances", "2", "--distinct-ips", "--ip", "127.0.0.1",
            "--management-ip", "127.0.0.1", "--port", "0", "--management-port", "0", "--metrics-port", "0",
            "--inter-comm-port", "0", "--print-ports", "--infer-mode", "dmi", "--model-name", MODEL]
    p = Proc("mindie_sim[pd]", argv, tmp_path / "sim.log")
    try:
        ports = p.json_lines(2)
        pi, di = ports
        lp, ld = _local(pi["host"], 0), _local(di["host"], 1)
        d_mgmt = f"http://{di['host']}:{di['managementPort']}"
        p_mgmt = f"http://{pi['host']}:{pi['managementPort']}"
        wait_until(lambda: requests.post(p_mgmt + "/v1/role/prefill", json={"local": lp, "peers": [ld]},
                                         timeout=2).status_code == 200, "P role accepted", proc=p)
        wait_until(lambda: requests.post(d_mgmt + "/v1/role/decode", json={"local": ld, "peers": [lp]},
                                         timeout=2).status_code == 200, "D role accepted", proc=p)
        # a Coordinator's /dresult link keeps the D's heartbeat timer armed
        link = socket.create_connection((di["host"], di["port"]), timeout=5)
        link.sendall(f"GET /dresult HTTP/1.1\r\nHost: {di['host']}\r\n\r\n".encode())
        # D holds the head until its first message, the heartbeat after 5 s idle (checked every second): a 5 s
        # timeout raced it, and lost with debug binaries
        link.settimeout(15)
        assert link.recv(64).startswith(b"HTTP/1.1 200")
        s = requests.Session()
        for k in range(5000):
            r = s.get(d_mgmt + "/v1/status", timeout=5)
            assert r.status_code == 200, f"poll {k}: {r.status_code}"
            if k % 1000 == 0:
                json.loads(r.text)
        # still serving timers: the link's keep-alive heartbeat keeps coming, and the D still answers
        assert s.get(d_mgmt + "/v1/status", timeout=5).status_code == 200
        link.close()
        # and it still obeys SIGTERM
        p.popen.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        while p.popen.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        assert p.popen.poll() is not None, "mindie_sim ignored SIGTERM"
    finally:
        p.stop()
