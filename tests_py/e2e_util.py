"""Wire helpers shared by the tests: raw HTTP chunks and strict SSE framing."""

from __future__ import annotations

import json

import requests

MODEL = "llama3-8b"
HOST = "127.0.0.1"
TIMEOUT = 30


def post_stream(url: str, body: dict, headers: dict | None = None) -> tuple[requests.Response, list[bytes]]:
    """POSTs and returns the response with its body as the list of HTTP chunks received (chunked encoding),
    or one element for a Content-Length body."""
    r = requests.post(url, json=body, headers=headers or {}, stream=True, timeout=TIMEOUT)
    chunks: list[bytes] = []
    if r.raw.chunked:
        for c in r.raw.read_chunked(decode_content=False):
            if c:
                chunks.append(bytes(c))
    else:
        chunks.append(r.raw.read(decode_content=False))
    r.close()
    return r, chunks


def sse_frames(raw: bytes, prefix: bytes = b"data: ") -> list[bytes]:
    """Splits an SSE body into frame payloads; every frame must be exactly `<prefix><payload>\\n\\n`."""
    assert raw, "empty stream"
    assert raw.endswith(b"\n\n"), f"stream does not end with a blank line: {raw[-80:]!r}"
    frames = raw.split(b"\n\n")[:-1]
    out = []
    for f in frames:
        assert f.startswith(prefix), f"frame does not start with {prefix!r}: {f[:80]!r}"
        payload = f[len(prefix):]
        assert b"\n" not in payload, f"multi-line frame: {f[:120]!r}"
        out.append(payload)
    return out


def whole_frames(chunks: list[bytes]):
    """Each HTTP chunk carries whole SSE frames (none is split across chunks)."""
    for c in chunks:
        assert c.endswith(b"\n\n"), f"chunk splits an SSE frame: {c[-80:]!r}"


def json_frames(raw: bytes, prefix: bytes = b"data: ") -> list[dict]:
    return [json.loads(p) for p in sse_frames(raw, prefix)]


def openai_frames(raw: bytes) -> list[dict]:
    """OpenAI SSE: `data: <json>\\n\\n` frames closed by exactly one `data: [DONE]\\n\\n`."""
    payloads = sse_frames(raw)
    assert payloads[-1] == b"[DONE]", f"last frame is not [DONE]: {payloads[-1][:80]!r}"
    assert payloads.count(b"[DONE]") == 1
    return [json.loads(p) for p in payloads[:-1]]


def sim_tokens(text: str) -> list[int]:
    """The simulator's tokenizer (docs/wire/simulator.md §6.1): greedy chunks of whole characters of at most 4 UTF-8
    bytes; a chunk's id is FNV-1a-32(chunk) mod 151936."""
    ids, chunk = [], b""

    def fnv(b: bytes) -> int:
        h = 0x811C9DC5
        for x in b:
            h = ((h ^ x) * 0x01000193) & 0xFFFFFFFF
        return h % 151936

    for ch in text:
        e = ch.encode("utf-8")
        if chunk and len(chunk) + len(e) > 4:
            ids.append(fnv(chunk))
            chunk = b""
        chunk += e
    if chunk:
        ids.append(fnv(chunk))
    return ids


def ascii_token_count(text: str) -> int:
    """Token count of `text` for the simulator (4 ASCII bytes per token)."""
    return len(sim_tokens(text))


def chat_body(content: str, max_tokens: int, **kw) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **kw}
