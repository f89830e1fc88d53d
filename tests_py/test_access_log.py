"""The Coordinator's access log (issue 16) seen from outside: real clients' requests, one JSON line each."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import requests

from conftest import wait_until
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
