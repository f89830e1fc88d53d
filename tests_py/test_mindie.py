"""MindIE's own dialect with plain requests: /infer, /infer_token, /v1/tokenizer."""

from __future__ import annotations

import pytest
import requests

from e2e_util import TIMEOUT, ascii_token_count, sim_tokens, json_frames, post_stream, whole_frames

PROMPT = "MindIE is an inference engine for Ascend."


def test_infer_non_stream(any_target):
    r = requests.post(any_target.url + "/infer",
                      json={"inputs": PROMPT, "stream": False, "parameters": {"max_new_tokens": 5, "details": True}},
                      timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    j = r.json()
    assert j["generated_text"].strip()
    d = j["details"]
    assert d["finish_reason"] == "length" and d["generated_tokens"] == 5
    assert len(d["generated_token_ids"]) == 5 and all(isinstance(i, int) for i in d["generated_token_ids"])
    plain = requests.post(any_target.url + "/infer", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 5}},
                          timeout=TIMEOUT).json()
    assert plain == {"generated_text": j["generated_text"]}


def test_infer_stream(any_target):
    r, chunks = post_stream(any_target.url + "/infer",
                            {"inputs": PROMPT, "stream": True, "parameters": {"max_new_tokens": 5, "details": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    whole_frames(chunks)
    raw = b"".join(chunks)
    assert b"[DONE]" not in raw
    frames = json_frames(raw)
    assert len(frames) == 5
    first, middle, last = frames[0], frames[1:-1], frames[-1]
    assert isinstance(first["prefill_time"], int) and first["decode_time"] is None
    assert all(f["prefill_time"] is None and isinstance(f["decode_time"], int) for f in middle + [last])
    assert all(len(f["token"]["id"]) == 1 and isinstance(f["token"]["text"], str) for f in frames[:-1])
    assert last["token"]["text"] is None and len(last["token"]["id"]) == 1
    assert last["generated_text"].startswith("".join(f["token"]["text"] for f in frames[:-1]))
    assert last["details"]["generated_tokens"] == 5 and last["details"]["finish_reason"] == "length"
    whole = requests.post(any_target.url + "/infer", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 5}},
                          timeout=TIMEOUT).json()["generated_text"]
    assert last["generated_text"] == whole


def test_infer_token(any_target):
    ids = [9, 8, 7, 6, 5, 4]
    r = requests.post(any_target.url + "/infer_token",
                      json={"input_id": ids, "parameters": {"max_new_tokens": 4, "details": True}}, timeout=TIMEOUT)
    assert r.status_code == 200
    j = r.json()
    assert j["details"]["generated_tokens"] == 4 and len(j["details"]["generated_token_ids"]) == 4
    r, chunks = post_stream(any_target.url + "/infer_token", {"input_id": ids, "stream": True,
                                                              "parameters": {"max_new_tokens": 4}})
    assert r.status_code == 200
    frames = json_frames(b"".join(chunks))
    assert [f["token"]["id"][0] for f in frames] == j["details"]["generated_token_ids"]
    assert frames[-1]["generated_text"] == j["generated_text"] and frames[-1]["details"] is None


def test_infer_input_conflict(any_target):
    r = requests.post(any_target.url + "/infer", json={"inputs": "a", "input_id": [1]}, timeout=TIMEOUT)
    if any_target.via_coordinator:
        assert r.status_code == 400  # refused by the Coordinator's parser (docs/wire/coordinator.md §2.1)
    else:
        assert r.status_code == 422
        assert r.json() == {"error": "Input conflict.", "error_type": "Input Validation Error"}


def test_infer_prompt_too_long_is_424(any_target):
    # 8b profile: maxInputTokenLen 2048 tokens; 4 ASCII bytes per token
    r = requests.post(any_target.url + "/infer", json={"inputs": "abcd" * 2100, "parameters": {"max_new_tokens": 2}},
                      timeout=TIMEOUT)
    assert r.status_code == 424
    j = r.json()
    assert j["error_type"] == "Generation Error" and j["error"].startswith("Failed to enqueue inferRequest.")


@pytest.mark.parametrize("text", ["hello world, this is a tokenizer test", "x", "四个汉字"])
def test_tokenizer(any_target, text):
    r = requests.post(any_target.url + "/v1/tokenizer", json={"inputs": text}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    j = r.json()
    assert j["token_number"] == len(j["tokens"])
    assert all(isinstance(t, int) and 0 <= t < 151936 for t in j["tokens"])
    assert j["tokens"] == sim_tokens(text)
    if not text.isascii():
        assert j["token_number"] == len(text)  # CJK: one token per character
    # deterministic and prefix-stable: the same text gives the same ids
    assert requests.post(any_target.url + "/v1/tokenizer", json={"inputs": text}, timeout=TIMEOUT).json() == j


def test_tokenizer_bad_body(target):
    r = requests.post(target.url + "/v1/tokenizer", data=b"not json", timeout=TIMEOUT,
                      headers={"content-type": "application/json"})
    assert r.status_code in (400, 422)
    if not target.via_coordinator:
        assert r.json() == {"error": "Failed to parse request context to json", "error_type": "Input Validation Error"}
