"""The Coordinator's access log (issue 16) seen from outside: real clients' requests, one JSON line each."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import openai
import requests

from conftest import REPO, wait_until
from e2e_util import MODEL, TIMEOUT


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def test_one_line_per_request(coordinator):
    log = coordinator.config_path.parent / "access.log"
    before = len(lines(log))
    c = openai.OpenAI(base_url=coordinator.url + "/v1", api_key="sk-local-test", max_retries=0, timeout=TIMEOUT)
    reply = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=4)
    assert reply.choices
    chunks = list(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                            stream=True))
    assert chunks
    refused = requests.post(coordinator.url + "/v1/chat/completions", json={"model": MODEL}, timeout=TIMEOUT)
    assert refused.status_code == 400
    # the Coordinator's own GET answers are not logged
    assert requests.get(coordinator.url + "/health", timeout=TIMEOUT).status_code == 200

    wait_until(lambda: len(lines(log)) >= before + 3, "three access log lines", deadline=10)
    time.sleep(0.2)  # a fourth line would be a duplicate; give it the chance to show
    new = lines(log)[before:]
    assert len(new) == 3, new
    plain, stream, bad = new
    for line in (plain, stream):
        assert line["route"] == "/v1/chat/completions" and line["dialect"] == "openai" and line["status"] == 200
        assert line["request_id"] and line["instance"]["address"] and line["bytes_out"] > 0
        assert line["ttft_ms"] is not None and line["duration_ms"] >= line["ttft_ms"]
        assert len(line["trace_id"]) == 32 and not line["client_disconnect"]
    assert not plain["stream"] and stream["stream"]
    assert bad["status"] == 400 and bad["request_id"] is None and "messages" in bad["error"]


class _AccessLoggedCluster:
    """scripts/local_cluster.py's PD cluster (simulators, ms_controller, ms_coordinator) with the access log on."""

    @staticmethod
    def make(workdir: Path):
        sys.path.insert(0, str(REPO / "scripts"))
        import local_cluster  # noqa: E402

        class Cluster(local_cluster.LocalCluster):
            def write_configs(self):
                super().write_configs()
                conf = json.loads(Path(self.coordinator_conf).read_text())
                conf["log_info"]["access_log"] = {"enable": True, "path": str(Path(self.logs) / "access.log")}
                self._write("ms_coordinator.json", conf)

        # round robin: each P/D pair is known from its peers, so the line can be checked against the cluster
        return Cluster(mode="pd", p=1, d=1, policy="round_robin", speedup=5, workdir=str(workdir),
                       binaries=os.environ.get("MINDIE_MS_BIN") or str(REPO / "out" / "bin"))


def test_pd_line_names_the_prefill_decode_pair(tmp_path):
    c = _AccessLoggedCluster.make(tmp_path / "cluster")
    try:
        c.start()
        log = Path(c.logs) / "access.log"
        url = f"http://{c.host}:{c.coord_ports['predict']}"
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-local-test", max_retries=0, timeout=TIMEOUT)
        reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert reply.choices[0].message.content
        chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                     max_tokens=4, stream=True))
        assert chunks

        wait_until(lambda: len(lines(log)) >= 2, "two PD access log lines", deadline=10)
        status = json.loads((Path(c.logs) / "cluster_status_output.json").read_text())
        # each simulator has an address of its own (same ports, one loopback IP each)
        role_of = {s["ip"]: s["static_info"]["role"] for s in status["server"]}
        plain, stream = lines(log)[:2]
        for line in (plain, stream):
            assert line["status"] == 200 and line["route"] == "/v1/chat/completions", line
            # a PD request is served by a pair: the line names both, and no single instance
            assert line["instance"] is None, line
            p, d = line["prefill"], line["decode"]
            assert p and d and p["id"] != d["id"], line
            ip = lambda e: e["address"].rsplit(":", 1)[0]
            assert role_of.get(ip(p)) == 80 and role_of.get(ip(d)) == 68, (line, role_of)
            assert line["ttft_ms"] is not None and line["bytes_out"] > 0
        assert not plain["stream"] and stream["stream"]
        # a PD stream's tokens are counted from P's first output and D's messages
        assert stream["tokens_out"] and stream["tokens_out"] >= 4
    finally:
        c.stop()
