"""What users' tools expect from the Coordinator's data port (issue 16): the model list, /health, TGI's /info,
/metrics, and the vLLM routes the Coordinator passes through (/v1/embeddings, /v1/responses, /tokenize,
/detokenize) — with the real openai client, and promtool on the real /metrics text."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
import requests

from conftest import HOST, Proc, bin_dir, coordinator_config, free_ports, wait_until
from e2e_util import MODEL, TIMEOUT

# The reference's (MindIE Server's) own families that promtool's lint refuses ("abbreviated units": `_s`); the
# Coordinator keeps their names as the reference aggregates them.
REFERENCE_LINT_EXCEPTIONS = {"avg_prompt_throughput_toks_per_s", "avg_generation_throughput_toks_per_s"}


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-local-test", max_retries=0, timeout=TIMEOUT)


# --------------------------------------------------------------------------- against the simulators


def test_models_list_with_openai_client(coordinator):
    c = client(coordinator.url)
    models = c.models.list()
    assert [m.id for m in models.data] == [MODEL]  # two instances, one model
    m = models.data[0]
    assert m.object == "model" and m.owned_by == "mindie-ms" and m.created > 1_700_000_000
    assert c.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as ei:
        c.models.retrieve("no-such-model")
    assert ei.value.response.json()["error"]["type"] == "invalid_request_error"


def test_health_and_info(coordinator):
    r = requests.get(coordinator.url + "/health", timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == b""
    info = requests.get(coordinator.url + "/info", timeout=TIMEOUT).json()
    assert info["model_id"] == MODEL and info["models"] == [MODEL]
    assert info["max_concurrent_requests"] > 0
    r = requests.post(coordinator.url + "/health", timeout=TIMEOUT)
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_passthrough_reaches_the_simulator(coordinator):
    # mindie_sim serves no /v1/embeddings: its own bare 404 comes back, not the Coordinator's JSON 404
    r = requests.post(coordinator.url + "/v1/embeddings", json={"model": MODEL, "input": "x"}, timeout=TIMEOUT)
    assert r.status_code == 404 and r.content == b""
    own = requests.post(coordinator.url + "/v1/not-a-route", json={}, timeout=TIMEOUT)
    assert own.status_code == 404 and "unknown path" in own.json()["error"]["message"]


def test_metrics_on_data_port_pass_promtool(coordinator):
    # traffic first, so every family has samples
    assert requests.post(coordinator.url + "/v1/completions", json={"model": MODEL, "prompt": "m", "max_tokens": 2},
                         timeout=TIMEOUT).status_code == 200
    data = requests.get(coordinator.url + "/metrics", timeout=TIMEOUT)
    assert data.status_code == 200 and data.headers["content-type"].startswith("text/plain")
    assert "# TYPE request_received_total counter" in data.text
    assert re.search(r'^mindie_coordinator_instance_up\{instance="1"\} 1$', data.text, re.M)
    promtool_clean(data.text)
    promtool_clean(requests.get(coordinator.external_url + "/metrics", timeout=TIMEOUT).text)


def promtool_clean(text: str, foreign=lambda name: name in REFERENCE_LINT_EXCEPTIONS):
    """`promtool check metrics` finds nothing but the engines' own names (`foreign`: the reference's by default), and
    exits 0 once those are left out."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (one_key_build.sh does)"
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    problems = [line for line in (p.stdout + p.stderr).decode().splitlines() if line.strip()]
    assert all(foreign(line.split()[0]) for line in problems), problems
    # every family of our own has help text and a promtool-clean name
    ours = [line for line in text.splitlines() if line.startswith("# TYPE mindie_coordinator_")]
    assert len(ours) >= 9
    for line in ours:
        assert f"# HELP {line.split()[2]} " in text, line
    def family(line: str) -> str:
        return re.match(r"(?:# (?:HELP|TYPE) )?([^ {]+)", line).group(1)
    kept = "\n".join(line for line in text.splitlines() if line and not foreign(family(line))) + "\n"
    p = subprocess.run([promtool, "check", "metrics"], input=kept.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()


# --------------------------------------------------------------------------- against vLLM-like engines


class FakeEngine:
    """A vLLM-like engine on a free port: the pass-through routes answer in vLLM's formats and record what
    reached them; /metrics is prometheus_client's text (process start time, *_created, *_info)."""

    def __init__(self, index: int):
        self.index = index
        self.seen: list[tuple[str, dict]] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status: int, body: bytes, ctype: str = "application/json"):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/metrics":
                    return self.reply(200, engine.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
                self.reply(404, b'{"detail":"Not Found"}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                engine.seen.append((self.path, {"req-id": self.headers.get("req-id"), "traceparent": self.headers.get("traceparent")}))
                if self.path == "/v1/embeddings":
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    out = {"object": "list", "model": body["model"],
                           "data": [{"object": "embedding", "index": i, "embedding": [float(len(s)), 0.5, -1.0]}
                                    for i, s in enumerate(inputs)],
                           "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}
                elif self.path == "/tokenize":
                    out = {"tokens": [ord(ch) for ch in body["prompt"]], "count": len(body["prompt"]), "max_model_len": 4096}
                elif self.path == "/detokenize":
                    out = {"prompt": "".join(chr(t) for t in body["tokens"])}
                elif self.path == "/v1/responses":
                    out = {"id": "resp_1", "object": "response", "status": "completed", "model": body["model"],
                           "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                                       "content": [{"type": "output_text", "text": f"engine {engine.index}", "annotations": []}]}]}
                else:
                    return self.reply(404, b'{"detail":"Not Found"}')
                self.reply(200, json.dumps(out).encode())

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def metrics(self) -> str:
        start = 1795000000.0 + self.index * 1000
        return (
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
            "# TYPE process_start_time_seconds gauge\n"
            f"process_start_time_seconds {start}\n"
            "# HELP python_info Python platform information\n# TYPE python_info gauge\n"
            'python_info{implementation="CPython",major="3",minor="12",patchlevel="3",version="3.12.3"} 1.0\n'
            "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{MODEL}"}} {self.index + 1}.0\n'
            "# HELP vllm:request_success_total Count of successfully processed requests.\n"
            "# TYPE vllm:request_success_total counter\n"
            f'vllm:request_success_total{{finished_reason="stop",model_name="{MODEL}"}} 2.0\n'
            "# HELP vllm:request_success_created Count of successfully processed requests.\n"
            "# TYPE vllm:request_success_created gauge\n"
            f'vllm:request_success_created{{finished_reason="stop",model_name="{MODEL}"}} {start + 5}\n'
        )

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def vllm_cluster(tmp, engines: int = 2):
    fakes = [FakeEngine(k) for k in range(engines)]
    proc = None
    try:
        names = ("predict_port", "manage_port", "alarm_port", "external_port", "status_port")
        ports = dict(zip(names, free_ports(len(names))))
        cfg = coordinator_config(tmp, ports)
        env = {k: v for k, v in os.environ.items() if k != "MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH"}
        proc = Proc("ms_coordinator[vllm]", [str(bin_dir() / "ms_coordinator"), "--config", str(cfg)],
                    tmp / "ms_coordinator-vllm.log", env=env)
        status = f"http://{HOST}:{ports['status_port']}"
        wait_until(lambda: requests.get(status + "/v1/startup", timeout=2).status_code == 200, "coordinator startup", proc=proc)
        instances = [{
            "id": k, "ip": HOST, "port": str(f.port), "metric_port": str(f.port), "inter_comm_port": str(f.port),
            "model_name": MODEL,
            "static_info": {"group_id": 0, "max_seq_len": 4096, "max_output_len": 1024, "total_slots_num": 64,
                            "total_block_num": 1024, "block_size": 16, "label": 2, "role": 85, "p_percentage": 0,
                            "virtual_id": k},
            "dynamic_info": {"avail_slots_num": 64, "avail_block_num": 1024, "peers": [], "prefix_hash": []},
        } for k, f in enumerate(fakes)]
        r = requests.post(f"http://{HOST}:{ports['manage_port']}/v1/instances/refresh",
                          json={"ids": list(range(engines)), "instances": instances}, timeout=TIMEOUT)
        assert r.status_code == 200
        url = f"http://{HOST}:{ports['predict_port']}"
        wait_until(lambda: requests.get(url + "/health", timeout=2).status_code == 200, "coordinator /health", proc=proc)
        yield url, fakes
    finally:
        if proc:
            proc.stop()
        for f in fakes:
            f.stop()


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    with vllm_cluster(tmp_path_factory.mktemp("vllm")) as c:
        yield c


def test_embeddings_with_openai_client(vllm):
    url, fakes = vllm
    c = client(url)
    r = c.embeddings.create(model=MODEL, input=["hello", "hi"])
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == [5.0, 0.5, -1.0] and r.data[1].embedding == [2.0, 0.5, -1.0]
    assert r.usage.prompt_tokens == 2
    seen = [s for f in fakes for s in f.seen if s[0] == "/v1/embeddings"]
    assert len(seen) == 1 and seen[0][1]["req-id"].isdigit()
    # W3C trace context: generated (the client sent none), its parent span is the Coordinator's request id
    tp = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", seen[0][1]["traceparent"] or "")
    assert tp and int(tp.group(2), 16) == int(seen[0][1]["req-id"]), seen[0][1]


def test_responses_with_openai_client(vllm):
    url, fakes = vllm
    r = client(url).responses.create(model=MODEL, input="hello")
    assert r.status == "completed" and r.output_text.startswith("engine ")


def test_tokenize_round_trip(vllm):
    url, _ = vllm
    t = requests.post(url + "/tokenize", json={"model": MODEL, "prompt": "héllo"}, timeout=TIMEOUT)
    assert t.status_code == 200 and t.json()["count"] == 5
    d = requests.post(url + "/detokenize", json={"model": MODEL, "tokens": t.json()["tokens"]}, timeout=TIMEOUT)
    assert d.status_code == 200 and d.json() == {"prompt": "héllo"}


def test_vllm_metrics_not_summed(vllm):
    url, _ = vllm
    text = requests.get(url + "/metrics", timeout=TIMEOUT).text
    # one start time per engine, never their sum (3.59e9)
    assert re.search(r'^process_start_time_seconds\{instance="0"\} 1795000000$', text, re.M), text
    assert re.search(r'^process_start_time_seconds\{instance="1"\} 1795001000$', text, re.M), text
    assert re.search(r'^vllm:request_success_created\{instance="1",finished_reason="stop",model_name="[^"]+"\} 1795001005$', text, re.M)
    assert re.search(r'^python_info\{instance="0",implementation="CPython"', text, re.M)
    # work is summed as before
    assert re.search(r'^vllm:num_requests_running\{model_name="[^"]+"\} 3$', text, re.M)
    # vLLM's own names (`vllm:…`) are the engine's business; everything else passes promtool
    promtool_clean(text, foreign=lambda name: name.startswith("vllm:"))
