"""Triton: tritonclient.http (health, metadata, JSON /infer) and plain requests for /generate[_stream]."""

from __future__ import annotations

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from e2e_util import MODEL, TIMEOUT, json_frames, post_stream, whole_frames

PROMPT = "Summarise the Triton protocol."


def triton(url: str) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=url.removeprefix("http://"), connection_timeout=TIMEOUT,
                                            network_timeout=TIMEOUT)


def infer_inputs(ids: list[int]):
    inp = httpclient.InferInput("input0", [1, len(ids)], "UINT32")
    inp.set_data_from_numpy(np.array([ids], dtype=np.uint32), binary_data=False)
    return [inp], [httpclient.InferRequestedOutput("output0", binary_data=False)]


# --------------------------------------------------------------------------- tritonclient.http


def test_tritonclient_health(target):
    """Live/ready probes: the simulator's management port, or the Coordinator's status port."""
    c = triton(target.probe_url)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready(MODEL)
    if target.via_coordinator:
        assert not c.is_model_ready("no-such-model")  # 503 for an unregistered model


def test_tritonclient_metadata(sim_compat, sim_mindie):
    for s in (sim_compat, sim_mindie):
        c = triton(s.instances[0].url)
        meta = c.get_server_metadata()
        assert meta["name"] == "MindIE Server" and meta["version"] == "1.0.0"
        m = c.get_model_metadata(MODEL)
        assert m["name"] == MODEL and m["platform"] == "MindIE Server"
        assert m["inputs"] == [{"name": "input0", "datatype": "UINT32", "shape": [-1]}]
        assert m["outputs"] == [{"name": "output0", "datatype": "UINT32", "shape": [-1]}]
        cfg = c.get_model_config(MODEL)
        assert cfg["max_batch_size"] == 200
        with pytest.raises(InferenceServerException) as ei:
            c.get_model_metadata("no-such-model")
        assert ei.value.status() == "404"


def test_tritonclient_infer(target):
    c = triton(target.url)
    ids = [101, 2023, 2003, 1037, 3231]
    inputs, outputs = infer_inputs(ids)
    res = c.infer(MODEL, inputs, outputs=outputs, request_id="req-7", parameters={"max_new_tokens": 6})
    out = res.as_numpy("output0")
    assert out.dtype == np.uint32 and out.shape == (1, 6)
    body = res.get_response()
    assert body["outputs"][0]["name"] == "output0" and body["outputs"][0]["datatype"] == "UINT32"
    assert body["outputs"][0]["shape"] == [1, 6]
    # deterministic: the same prompt ids give the same output ids; the default length is 20
    again = c.infer(MODEL, inputs, outputs=outputs).as_numpy("output0")
    assert again.shape == (1, 20) and list(again[0][:6]) == list(out[0])


def test_tritonclient_infer_errors(target):
    c = triton(target.url)
    inputs, outputs = infer_inputs([1, 2, 3])
    with pytest.raises(InferenceServerException) as ei:
        c.infer("no-such-model", inputs, outputs=outputs)
    assert ei.value.status() == "404"
    bad = httpclient.InferInput("input0", [1, 3], "INT64")
    bad.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.int64), binary_data=False)
    with pytest.raises(InferenceServerException) as ei:
        c.infer(MODEL, [bad], outputs=outputs)
    if target.via_coordinator:
        assert ei.value.status() == "400"  # the Coordinator wants UINT32 data to schedule (docs/wire/coordinator.md §2.1)
    else:
        assert ei.value.status() == "422"
        assert "Unsupported datatype, got INT64." in str(ei.value)


# --------------------------------------------------------------------------- Triton text generate (requests)


def test_triton_generate(any_target):
    body = {"id": "my-req-1", "text_input": PROMPT, "parameters": {"max_new_tokens": 6, "details": True}}
    r = requests.post(f"{any_target.url}/v2/models/{MODEL}/generate", json=body, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    j = r.json()
    assert j["id"] == "my-req-1" and j["model_name"] == MODEL and j["model_version"] is None
    assert j["text_output"].strip()
    assert j["details"]["finish_reason"] == "length" and j["details"]["generated_tokens"] == 6


def test_triton_generate_stream(any_target):
    url = f"{any_target.url}/v2/models/{MODEL}"
    body = {"text_input": PROMPT, "parameters": {"max_new_tokens": 6}}
    whole = requests.post(url + "/generate", json=body, timeout=TIMEOUT).json()["text_output"]
    r, chunks = post_stream(url + "/generate_stream", {**body, "id": "s-1"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    whole_frames(chunks)
    # the reference writes `data:` without a space (docs/wire/simulator.md §2.3); compat adds it
    prefix = b"data: " if any_target.wire == "compat" else b"data:"
    frames = json_frames(b"".join(chunks), prefix=prefix)
    assert len(frames) == 6
    assert all(f["id"] == "s-1" and f["model_name"] == MODEL for f in frames)
    assert "".join(f["text_output"] for f in frames) == whole


def test_triton_unknown_model_and_versions(any_target):
    r = requests.post(f"{any_target.url}/v2/models/other/generate", json={"text_input": "x"}, timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.json() == {"error": "Model other not found.", "error_type": "NotFoundError"}
    # the server does not route /versions/{v}/ (docs/wire/simulator.md §2.2 ⚠): 404, relayed by the Coordinator
    r = requests.post(f"{any_target.url}/v2/models/{MODEL}/versions/1/generate", json={"text_input": "x"},
                      timeout=TIMEOUT)
    assert r.status_code == 404


def test_tritonclient_single_url_with_shared_port(tmp_path):
    """With the data and management ports equal, one listener serves both (docs/wire/simulator.md §1), so a single
    tritonclient URL does health, metadata and inference, as against a real Triton server."""
    import conftest

    (port,) = conftest.free_ports(1)
    sim = conftest.start_sim(tmp_path, "compat", data_port=port, management_port=port)
    try:
        i = sim.instances[0]
        assert i.port == i.management_port == port
        c = triton(i.url)
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(MODEL)
        assert c.get_model_metadata(MODEL)["name"] == MODEL
        inputs, outputs = infer_inputs([5, 6, 7])
        assert c.infer(MODEL, inputs, outputs=outputs, parameters={"max_new_tokens": 3}).as_numpy("output0").shape == (1, 3)
        assert requests.get(i.url + "/v1/status", timeout=TIMEOUT).json()["service"]["roleStatus"] == "RoleReady"
    finally:
        sim.proc.stop()
