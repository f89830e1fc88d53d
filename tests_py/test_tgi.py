"""TGI dialect: huggingface_hub InferenceClient (POST /), text-generation's Client, and raw /generate[_stream]."""

from __future__ import annotations

import json

import pytest
import requests
import text_generation
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

from e2e_util import MODEL, TIMEOUT, ascii_token_count, json_frames, post_stream, whole_frames

PROMPT = "What is deep learning?"


def hf(t) -> InferenceClient:
    # a URL, never a model id: nothing is looked up on a hub
    return InferenceClient(model=t.url, timeout=TIMEOUT)


# --------------------------------------------------------------------------- huggingface_hub


def test_hf_text_generation(any_target):
    c = hf(any_target)
    text = c.text_generation(PROMPT, max_new_tokens=8)
    assert isinstance(text, str) and text.strip()
    out = c.text_generation(PROMPT, max_new_tokens=8, details=True)
    assert out.generated_text == text
    assert out.details.finish_reason == "length"
    assert out.details.generated_tokens == 8
    assert len(out.details.tokens) == 8
    if any_target.wire == "compat":
        assert "".join(t.text for t in out.details.tokens) == text
        assert all(t.special is False for t in out.details.tokens)


def test_hf_text_generation_stream(any_target):
    c = hf(any_target)
    whole = c.text_generation(PROMPT, max_new_tokens=8)
    pieces = list(c.text_generation(PROMPT, max_new_tokens=8, stream=True))
    assert len(pieces) == 8
    assert "".join(pieces) == whole
    frames = list(c.text_generation(PROMPT, max_new_tokens=8, stream=True, details=True))
    assert len(frames) == 8
    assert all(f.generated_text is None and f.details is None for f in frames[:-1])
    last = frames[-1]
    assert last.generated_text == whole
    assert last.details.finish_reason == "length" and last.details.generated_tokens == 8
    if any_target.wire == "compat":
        assert all(isinstance(f.token.id, int) for f in frames)
    else:
        assert all(f.token.id == [f.token.id[0]] for f in frames)  # the reference's `id: [i]`


def test_hf_text_generation_seed(target):
    c = hf(target)
    a = c.text_generation("first prompt", max_new_tokens=4, seed=42, details=True)
    b = c.text_generation("another prompt", max_new_tokens=4, seed=42, details=True)
    assert a.generated_text == b.generated_text
    assert a.details.seed == 42


def test_hf_chat_completion(any_target):
    c = InferenceClient(base_url=any_target.url, timeout=TIMEOUT)
    r = c.chat_completion(messages=[{"role": "user", "content": PROMPT}], model=MODEL, max_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content.strip()
    assert r.usage.completion_tokens == 5
    chunks = list(c.chat_completion(messages=[{"role": "user", "content": PROMPT}], model=MODEL, max_tokens=5,
                                    stream=True))
    content = "".join(k.choices[0].delta.content or "" for k in chunks if k.choices)
    assert content == r.choices[0].message.content


def test_hf_error_is_raised(any_target):
    c = hf(any_target)
    with pytest.raises(TextGenerationError) as ei:
        c.text_generation(PROMPT, max_new_tokens=4, temperature=5.0)
    assert str(ei.value) == "Parameter temperature must be in [0, 2], got 5.0."
    cause = ei.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response.status_code == 422


# --------------------------------------------------------------------------- text-generation (strict pydantic)


def test_text_generation_client_generate(target):
    c = text_generation.Client(target.url, timeout=TIMEOUT)
    r = c.generate(PROMPT, max_new_tokens=9)
    assert isinstance(r, text_generation.types.Response)
    assert r.generated_text.strip()
    d = r.details
    assert d.finish_reason == text_generation.types.FinishReason.Length
    assert d.generated_tokens == 9 and len(d.tokens) == 9
    assert "".join(t.text for t in d.tokens) == r.generated_text
    assert d.prefill == []


def test_text_generation_client_stream(target):
    c = text_generation.Client(target.url, timeout=TIMEOUT)
    whole = c.generate(PROMPT, max_new_tokens=9).generated_text
    frames = list(c.generate_stream(PROMPT, max_new_tokens=9))
    assert len(frames) == 9
    assert all(isinstance(f, text_generation.types.StreamResponse) for f in frames)
    assert "".join(f.token.text for f in frames) == whole
    assert all(f.token.special is False for f in frames)
    assert all(f.details is None and f.generated_text is None for f in frames[:-1])
    assert frames[-1].generated_text == whole
    assert frames[-1].details.generated_tokens == 9
    assert frames[-1].details.finish_reason == text_generation.types.FinishReason.Length


def test_text_generation_client_error(target):
    c = text_generation.Client(target.url, timeout=TIMEOUT)
    with pytest.raises(text_generation.errors.ValidationError):
        c.generate(PROMPT, max_new_tokens=4, top_p=1.5)  # the client itself refuses top_p >= 1
    with pytest.raises(text_generation.errors.UnknownError) as ei:  # a 422 from the server
        c.generate(PROMPT, max_new_tokens=4, repetition_penalty=3.0)
    assert "repetition_penalty" in str(ei.value)


# --------------------------------------------------------------------------- raw TGI routes


@pytest.mark.parametrize("path", ["/generate_stream", "/"])
def test_tgi_stream_raw_framing(any_target, path):
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 5, "details": True}}
    if path == "/":
        body["stream"] = True
    r, chunks = post_stream(any_target.url + path, body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    whole_frames(chunks)
    raw = b"".join(chunks)
    assert b"[DONE]" not in raw  # TGI streams have no end marker
    frames = json_frames(raw)
    assert len(frames) == 5
    for f in frames[:-1]:
        assert f["generated_text"] is None and f["details"] is None
    last = frames[-1]
    assert last["generated_text"] == "".join(f["token"]["text"] for f in frames)
    assert last["details"] == {"prompt_tokens": ascii_token_count(PROMPT), "finish_reason": "length",
                               "generated_tokens": 5, "seed": None}


def test_tgi_generate_non_stream_raw(any_target):
    r = requests.post(any_target.url + "/generate",
                      json={"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "details": True, "seed": 5}},
                      timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    j = r.json()
    assert isinstance(j, dict)  # /generate: an object, `/`: a one-element array
    assert j["details"]["generated_tokens"] == 3 and j["details"]["seed"] == 5
    assert j["details"]["prompt_tokens"] == ascii_token_count(PROMPT)
    r2 = requests.post(any_target.url + "/", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "seed": 5}},
                       timeout=TIMEOUT)
    assert r2.status_code == 200
    assert r2.json() == [{"generated_text": j["generated_text"]}]


def test_tgi_stream_must_be_boolean(any_target):
    r = requests.post(any_target.url + "/", json={"inputs": "x", "stream": "yes"}, timeout=TIMEOUT)
    if any_target.via_coordinator:
        # the Coordinator refuses it before scheduling (docs/wire/coordinator.md §2.1)
        assert r.status_code == 400
    else:
        assert r.status_code == 422
        assert r.json() == {"error": "Stream must be boolean type.", "error_type": "Input Validation Error"}


def test_vllm_generate(any_target):
    r = requests.post(any_target.url + "/generate", json={"prompt": "abc", "max_tokens": 3}, timeout=TIMEOUT)
    assert r.status_code == 200
    text = r.json()["text"]
    assert len(text) == 1 and text[0].startswith("abc ")
    r, chunks = post_stream(any_target.url + "/generate", {"prompt": "abc", "max_tokens": 3, "stream": True})
    assert r.status_code == 200
    raw = b"".join(chunks)
    assert raw.endswith(b"\0")
    parts = [json.loads(p) for p in raw.split(b"\0")[:-1]]
    assert len(parts) == 3
    assert "abc " + "".join(p["text"][0] for p in parts) == text[0]


def test_eos_finish_reason_tgi(any_target):
    hdr = {"X-Sim-Output-Tokens": "3"}
    if any_target.wire == "compat":
        c = text_generation.Client(any_target.url, timeout=TIMEOUT, headers=hdr)
        r = c.generate(PROMPT, max_new_tokens=10)
        assert r.details.finish_reason == text_generation.types.FinishReason.EndOfSequenceToken
        assert r.details.generated_tokens == 3
        frames = list(c.generate_stream(PROMPT, max_new_tokens=10))
        assert len(frames) == 3
        assert frames[-1].details.finish_reason == text_generation.types.FinishReason.EndOfSequenceToken
    out = InferenceClient(model=any_target.url, timeout=TIMEOUT, headers=hdr).text_generation(
        PROMPT, max_new_tokens=10, details=True)
    assert out.details.finish_reason == "eos_token" and out.details.generated_tokens == 3
