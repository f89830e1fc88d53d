"""openai-python against the simulator (compat and mindie wire) and through the Coordinator."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from e2e_util import MODEL, TIMEOUT, ascii_token_count, chat_body, openai_frames, post_stream, whole_frames

PROMPT = "Tell me about the Ascend NPU."


def client(t) -> openai.OpenAI:
    return openai.OpenAI(base_url=t.url + "/v1", api_key="sk-local-test", max_retries=0, timeout=TIMEOUT)


def expected_prompt_tokens(content: str) -> int:
    # chat template (docs/wire/simulator.md §6.1): "<|user|>\n" + content + "\n" + "<|assistant|>\n", 4-byte chunks
    return ascii_token_count("<|user|>\n" + content + "\n<|assistant|>\n")


# --------------------------------------------------------------------------- chat


def test_chat_non_stream(any_target):
    c = client(any_target)
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=5)
    assert r.object == "chat.completion"
    assert r.model == MODEL
    assert len(r.choices) == 1
    ch = r.choices[0]
    assert ch.index == 0 and ch.finish_reason == "length"
    assert ch.message.role == "assistant"
    assert isinstance(ch.message.content, str) and ch.message.content.strip()
    assert r.usage.completion_tokens == 5
    assert r.usage.prompt_tokens == expected_prompt_tokens(PROMPT)
    assert r.usage.total_tokens == r.usage.prompt_tokens + 5
    if any_target.via_coordinator:
        # the Coordinator adds `req-id: <decimal id>`; the server uses it as the completion id
        assert r.id.isdigit(), r.id
    else:
        assert r.id.startswith("endpoint_common_")


def test_chat_stream_include_usage(any_target):
    c = client(any_target)
    msgs = [{"role": "user", "content": PROMPT}]
    whole = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6).choices[0].message.content
    chunks = list(c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, stream=True,
                                            stream_options={"include_usage": True}))
    assert all(k.object == "chat.completion.chunk" and k.model == MODEL for k in chunks)
    assert len({k.id for k in chunks}) == 1
    with_choice = [k for k in chunks if k.choices]
    # the role chunk, then one chunk per token
    assert with_choice[0].choices[0].delta.role == "assistant"
    assert with_choice[0].choices[0].delta.content == ""
    deltas = [k.choices[0].delta.content for k in with_choice[1:]]
    assert len(deltas) == 6
    assert "".join(deltas) == whole  # same prompt, same deterministic output
    finishes = [k.choices[0].finish_reason for k in with_choice]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    usages = [k.usage for k in chunks if k.usage is not None]
    assert len(usages) == 1
    u = usages[0]
    assert u.completion_tokens == 6 and u.prompt_tokens == expected_prompt_tokens(PROMPT)
    assert u.total_tokens == u.prompt_tokens + 6
    if any_target.wire == "compat":
        # OpenAI's own form: a final `choices: []` chunk carries usage
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
    else:
        # MindIE reference (Q): usage rides on the last token chunk
        assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "length" and chunks[-1].usage is not None


def test_chat_stream_without_usage(any_target):
    c = client(any_target)
    chunks = list(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}],
                                            max_tokens=3, stream=True))
    assert len([k for k in chunks if k.choices]) == 1 + 3
    usages = [k.usage for k in chunks if k.usage is not None]
    if any_target.wire == "compat":
        assert usages == []  # only when asked
    else:
        assert len(usages) == 1  # reference quirk: always sent


def test_chat_stream_raw_framing(any_target):
    r, chunks = post_stream(any_target.url + "/v1/chat/completions",
                            chat_body(PROMPT, 4, stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers.get("transfer-encoding") == "chunked"
    whole_frames(chunks)
    frames = openai_frames(b"".join(chunks))
    token_frames = [f for f in frames if f["choices"]]
    assert len(token_frames) == 1 + 4
    assert token_frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for f in token_frames[1:]:
        assert f["choices"][0]["delta"]["role"] == "assistant"
        assert isinstance(f["choices"][0]["delta"]["content"], str) and f["choices"][0]["delta"]["content"]
    assert sum("usage" in f for f in frames) == 1


def test_chat_multi_turn_and_content_parts(target):
    c = client(target)
    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again?"},
    ]
    r = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=2, temperature=0.5, top_p=0.9, seed=7)
    assert r.usage.completion_tokens == 2
    text = "<|system|>\nYou are terse.\n<|user|>\nHi there\n<|assistant|>\nHello.\n<|user|>\nAgain?\n<|assistant|>\n"
    assert r.usage.prompt_tokens == ascii_token_count(text)
    # a seed fixes the output whatever the prompt
    r2 = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2, seed=7)
    assert r2.choices[0].message.content == r.choices[0].message.content


def test_chat_wrong_model_is_422(any_target):
    c = client(any_target)
    with pytest.raises(openai.UnprocessableEntityError) as ei:
        c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert ei.value.status_code == 422
    assert ei.value.response.json() == {"error": "Model not found", "error_type": "Input Validation Error"}


def test_chat_bad_temperature_is_422(target):
    c = client(target)
    with pytest.raises(openai.UnprocessableEntityError) as ei:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2, temperature=3)
    body = ei.value.response.json()
    assert body["error_type"] == "Input Validation Error" and "temperature" in body["error"]


def test_chat_unicode_round_trip(any_target):
    c = client(any_target)
    content = "请用中文回答：昇腾是什么？ — café ☕"
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=3)
    assert r.usage.prompt_tokens == expected_prompt_tokens(content)
    assert r.usage.completion_tokens == 3


# --------------------------------------------------------------------------- completions


def test_completions_non_stream(any_target):
    c = client(any_target)
    r = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=7)
    assert r.object == "text_completion" and r.model == MODEL
    assert r.choices[0].finish_reason == "length" and r.choices[0].index == 0
    assert r.choices[0].text.strip()
    assert r.usage.completion_tokens == 7
    assert r.usage.prompt_tokens == ascii_token_count("Once upon a time")
    assert r.usage.total_tokens == r.usage.prompt_tokens + 7


def test_completions_stream_include_usage(any_target):
    c = client(any_target)
    whole = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=7).choices[0].text
    chunks = list(c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=7, stream=True,
                                       stream_options={"include_usage": True}))
    texts = [k.choices[0].text for k in chunks if k.choices]
    assert len(texts) == 7  # no role chunk for completions
    assert "".join(texts) == whole
    assert [k.choices[0].finish_reason for k in chunks if k.choices][-1] == "length"
    usages = [k.usage for k in chunks if k.usage is not None]
    assert len(usages) == 1 and usages[0].completion_tokens == 7
    assert usages[0].prompt_tokens == ascii_token_count("Once upon a time")


def test_completions_stream_raw_framing(any_target):
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 3, "stream": True}
    r, chunks = post_stream(any_target.url + "/v1/completions", body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    whole_frames(chunks)
    frames = openai_frames(b"".join(chunks))
    assert [f["object"] for f in frames] == ["text_completion"] * 3
    assert frames[-1]["choices"][0]["finish_reason"] == "length"


def test_completions_non_stream_raw(target):
    r = requests.post(target.url + "/v1/completions", json={"model": MODEL, "prompt": "abc", "max_tokens": 2},
                      timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    j = r.json()
    assert set(j) == {"id", "object", "created", "model", "choices", "usage"}
    assert j["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}  # one token: no full block to reuse


def test_models_list_on_simulator(sim_compat, sim_mindie):
    for s in (sim_compat, sim_mindie):
        c = openai.OpenAI(base_url=s.instances[0].url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
        ids = [m.id for m in c.models.list()]
        assert ids == [MODEL]
        m = c.models.retrieve(MODEL)
        assert m.id == MODEL and m.owned_by == "MindIE Server"


def test_usage_strict_mode_over_sdk(tmp_path):
    """--openai-usage strict on the mindie wire: usage only when asked, in a `choices: []` chunk."""
    from conftest import start_sim

    sim = start_sim(tmp_path, "mindie", extra=("--openai-usage", "strict"))
    try:
        c = openai.OpenAI(base_url=sim.instances[0].url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
        msgs = [{"role": "user", "content": "hi"}]
        plain = list(c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=2, stream=True))
        assert all(k.usage is None for k in plain)
        asked = list(c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=2, stream=True,
                                               stream_options={"include_usage": True}))
        assert asked[-1].choices == [] and asked[-1].usage.completion_tokens == 2
    finally:
        sim.proc.stop()


# --------------------------------------------------------------------------- EOS and broken streams


def test_eos_finish_reason_is_stop(any_target):
    """X-Sim-Output-Tokens: k makes the simulator hit EOS after k tokens: OpenAI says `stop`."""
    c = client(any_target)
    hdr = {"X-Sim-Output-Tokens": "2"}
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "eos"}], max_tokens=10,
                                  extra_headers=hdr)
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 2
    chunks = list(c.completions.create(model=MODEL, prompt="eos", max_tokens=10, stream=True, extra_headers=hdr,
                                       stream_options={"include_usage": True}))
    with_choice = [k for k in chunks if k.choices]
    assert len(with_choice) == 2 and with_choice[-1].choices[0].finish_reason == "stop"
    assert [k.usage.completion_tokens for k in chunks if k.usage] == [2]


def test_stream_cut_by_server_is_an_error_for_the_sdk(sim_compat):
    """A stream the server cuts (no [DONE]) must not look like a clean end to the openai SDK."""
    c = openai.OpenAI(base_url=sim_compat.instances[0].url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for k in c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "cut"}], max_tokens=10,
                                           stream=True, extra_headers={"X-Sim-Fault": "die_mid_stream;after_tokens=3"}):
            seen.append(k)
    assert len(seen) == 1 + 3  # role chunk and 3 tokens, then the connection breaks
