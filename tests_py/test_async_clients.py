"""The async clients (httpx for openai, aiohttp for huggingface_hub and text-generation): other HTTP stacks,
other chunk parsers."""

from __future__ import annotations

import asyncio

import openai
import text_generation
from huggingface_hub import AsyncInferenceClient

from e2e_util import MODEL, TIMEOUT

PROMPT = "Async clients read the same streams."


def test_async_openai_concurrent_streams(any_target):
    async def main():
        c = openai.AsyncOpenAI(base_url=any_target.url + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT)

        async def one(k):
            msgs = [{"role": "user", "content": f"{PROMPT} {k}"}]
            whole = (await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8)).choices[0].message.content
            stream = await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8, stream=True,
                                                     stream_options={"include_usage": True})
            parts, usage = [], None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                usage = chunk.usage or usage
            return whole, "".join(parts), len(parts), usage.completion_tokens

        try:
            return await asyncio.gather(*(one(k) for k in range(4)))
        finally:
            await c.close()

    for whole, streamed, n, completion_tokens in asyncio.run(main()):
        assert streamed == whole and n == 8 and completion_tokens == 8


def test_async_hf_text_generation(any_target):
    async def main():
        c = AsyncInferenceClient(model=any_target.url, timeout=TIMEOUT)
        whole = await c.text_generation(PROMPT, max_new_tokens=6)
        pieces = [t async for t in await c.text_generation(PROMPT, max_new_tokens=6, stream=True)]
        details = await c.text_generation(PROMPT, max_new_tokens=6, details=True)
        return whole, pieces, details

    whole, pieces, details = asyncio.run(main())
    assert len(pieces) == 6 and "".join(pieces) == whole
    assert details.generated_text == whole and details.details.generated_tokens == 6


def test_async_text_generation_client(target):
    async def main():
        c = text_generation.AsyncClient(target.url, timeout=TIMEOUT)
        r = await c.generate(PROMPT, max_new_tokens=6)
        frames = [f async for f in c.generate_stream(PROMPT, max_new_tokens=6)]
        return r, frames

    r, frames = asyncio.run(main())
    assert r.details.generated_tokens == 6
    assert len(frames) == 6 and frames[-1].generated_text == r.generated_text
    assert "".join(f.token.text for f in frames) == r.generated_text
