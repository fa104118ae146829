"""The model server on a causal LM (a tiny random Llama with the SmolLM2 tokenizer, exported and registered
for real): batched greedy generation equals one-at-a-time generation, per-request max_tokens and stop,
chat, timeouts, a disconnected client's work dropped, and 503 backpressure with Retry-After."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import torch
from serving_testing import Registry, llama_export, metric, running_server, wait_for

from compress.export import load_export


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    reg = Registry(root)
    export = llama_export(root / "llama")
    reg.publish(export, "tiny-lm", alias="production")
    return reg, export


def _greedy(export, tokenizer, prompt: str, max_tokens: int) -> str:
    model = load_export(export)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_batched_generation_matches_one_at_a_time_and_honours_each_requests_limits(lm):
    reg, export = lm
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(export)
    prompts = ["Hello there", "The quick brown fox jumps", "A", "Once upon a time in a land far away"]
    lengths = [3, 9, 5, 7]
    bodies = [{"prompt": p, "max_tokens": n, "temperature": 0} for p, n in zip(prompts, lengths, strict=True)]
    with running_server(reg.settings("tiny-lm@production", max_batch=8, max_wait_ms=100)) as base:
        async def post_all():
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                return await asyncio.gather(*(client.post("/v1/completions", json=b) for b in bodies))
        responses = asyncio.run(post_all())
        batches = metric(base, "shrinkwrap_serving_batch_size_count")
        expected_first = _greedy(export, tokenizer, prompts[1], 9)
        stop = expected_first[len(expected_first) // 2:][:3]
        stopped = httpx.post(f"{base}/v1/completions", timeout=60, json={
            "prompt": prompts[1], "max_tokens": 9, "temperature": 0, "stop": [stop]}).json()
        chat = httpx.post(f"{base}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0.7, "seed": 1})
    assert batches < len(bodies)  # the four prompts shared forward passes
    for prompt, n, response in zip(prompts, lengths, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        choice = body["choices"][0]
        assert body["object"] == "text_completion" and body["model"] == "tiny-lm:1"
        assert choice["text"] == _greedy(export, tokenizer, prompt, n)
        assert choice["finish_reason"] == "length" and body["usage"]["completion_tokens"] == n
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["text"] == expected_first[:expected_first.find(stop)]
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["role"] == "assistant"


def test_openai_requests_it_cannot_honour_are_refused_before_queueing(lm):
    reg, _ = lm
    bad = [{"prompt": "x", "stream": True}, {"prompt": "x", "n": 2}, {"prompt": "x", "max_tokens": 0},
           {"prompt": "x", "max_tokens": 5000}, {"prompt": ""}, {"prompt": "x", "stop": ["a"] * 5},
           {"prompt": "x", "model": "other-model"}, {"messages": []},
           {"prompt": ["x"] * 33}]
    with running_server(reg.settings("tiny-lm:1")) as base:
        statuses = [httpx.post(f"{base}/v1/{'chat/' if 'messages' in b else ''}completions", json=b).status_code
                    for b in bad]
        batches = metric(base, "shrinkwrap_serving_batch_size_count")
    assert all(400 <= s < 500 for s in statuses), statuses
    assert batches == 0


def _long(max_tokens: int = 900) -> dict:
    return {"prompt": "Tell me everything", "max_tokens": max_tokens, "temperature": 0}


def test_timeout_and_disconnect_drop_the_work(lm):
    reg, _ = lm
    with running_server(reg.settings("tiny-lm:1", max_batch=1, timeout_s=0.3)) as base:
        timed_out = httpx.post(f"{base}/v1/completions", json=_long(), timeout=30)
        wait_for(lambda: metric(base, "shrinkwrap_serving_batch_running") == 0, what="the cancelled generation")
        quick = httpx.post(f"{base}/v1/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=30)
    assert timed_out.status_code == 504 and timed_out.json()["error"]["code"] == "timeout"
    assert quick.status_code == 200

    with running_server(reg.settings("tiny-lm:1", max_batch=1, timeout_s=60)) as base:
        async def scenario():
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                busy = asyncio.create_task(client.post("/v1/completions", json=_long(400)))
                while metric(base, "shrinkwrap_serving_batch_running") != 1:
                    await asyncio.sleep(0.01)
                with pytest.raises(httpx.TimeoutException):  # this client gives up while queued
                    await client.post("/v1/completions", json=_long(), timeout=0.2)
                return await busy
        busy = asyncio.run(scenario())
        wait_for(lambda: metric(base, "shrinkwrap_serving_batch_running") == 0, what="the first generation")
        wait_for(lambda: metric(base, "shrinkwrap_serving_dropped_total") == 1, what="the dropped request")
        assert metric(base, "shrinkwrap_serving_batch_size_count") == 1  # the dropped one never ran
    assert busy.status_code == 200


def test_a_full_queue_answers_503_with_retry_after(lm):
    reg, _ = lm
    with running_server(reg.settings("tiny-lm:1", max_batch=1, max_queue=1)) as base:
        async def scenario():
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                first = asyncio.create_task(client.post("/v1/completions", json=_long(300)))
                while metric(base, "shrinkwrap_serving_batch_running") != 1:
                    await asyncio.sleep(0.01)
                second = asyncio.create_task(client.post("/v1/completions", json=_long(5)))
                while metric(base, "shrinkwrap_serving_queue_depth") != 1:
                    await asyncio.sleep(0.01)
                third = await client.post("/v1/completions", json=_long(5))
                return await first, await second, third
        first, second, third = asyncio.run(scenario())
        rejected = metric(base, "shrinkwrap_serving_rejected_total")
    assert first.status_code == 200 and second.status_code == 200
    assert third.status_code == 503 and int(third.headers["retry-after"]) >= 1
    assert third.json()["error"]["code"] == "queue_full" and rejected == 1
