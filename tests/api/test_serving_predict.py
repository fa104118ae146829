"""The model server on classifiers: a real uvicorn server on loopback over a real registry and real exports.
Concurrency mapping, malformed inputs next to good ones, reload under load, alias following, auth,
metrics, text classification."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import torch
from serving_testing import Registry, bert_export, metric, mlp_export, running_server, wait_for

from compress.export import load_export


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path)


def _expected(export_dir, inputs) -> list[list[float]]:
    model = load_export(export_dir)
    with torch.no_grad():
        return torch.softmax(model(torch.tensor(inputs, dtype=torch.float32)), -1).tolist()


async def _post_all(base: str, bodies: list, path: str = "/v1/predict", headers=None) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        return await asyncio.gather(*(client.post(path, content=body, headers={"content-type": "application/json"})
                                      if isinstance(body, bytes) else client.post(path, json=body)
                                      for body in bodies))


def test_results_map_to_their_own_request_under_concurrency(reg, tmp_path):
    export = mlp_export(tmp_path / "mlp", seed=1)
    reg.publish(export, "mlp", alias="production")
    gen = torch.Generator().manual_seed(0)
    requests = [torch.rand(1 + i % 3, 12, generator=gen).tolist() for i in range(40)]
    with running_server(reg.settings("mlp@production", max_batch=8, max_wait_ms=20)) as base:
        responses = asyncio.run(_post_all(base, [{"inputs": r} for r in requests]))
        batches = metric(base, "shrinkwrap_serving_batch_size_count")
    for inputs, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["version"] == 1 and body["model"] == "mlp"
        got = [p["probabilities"] for p in body["predictions"]]
        assert torch.allclose(torch.tensor(got), torch.tensor(_expected(export, inputs)), atol=1e-5)
        assert [p["label_id"] for p in body["predictions"]] == torch.tensor(got).argmax(-1).tolist()
    assert batches < len(requests)  # requests really shared forward passes


def test_malformed_inputs_are_refused_while_the_rest_of_the_batch_succeeds(reg, tmp_path):
    export = mlp_export(tmp_path / "mlp", seed=2)
    reg.publish(export, "mlp", alias="production")
    good = [{"inputs": [[0.1 * i] * 12]} for i in range(8)]
    bad = [{"inputs": [[0.5] * 11]}, {"inputs": [["a"] * 12]}, b'{"inputs": [[NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}',
           {"inputs": []}, {"inputs": [[[0.1] * 12, [0.2]]]}, {"wrong": 1}]
    with running_server(reg.settings("mlp@production", max_batch=16, max_wait_ms=50)) as base:
        bodies = good[:4] + bad + good[4:]
        responses = asyncio.run(_post_all(base, bodies))
        not_json = httpx.post(f"{base}/v1/predict", content=b"{", headers={"content-type": "application/json"})
    statuses = [r.status_code for r in responses]
    assert statuses[:4] == [200] * 4 and statuses[-4:] == [200] * 4
    assert all(400 <= s < 500 for s in statuses[4:-4]), statuses
    assert responses[4].json()["error"]["code"] == "invalid_input" and "11 values" in responses[4].json()["error"]["message"]
    assert "NaN" in responses[6].json()["error"]["message"] and not_json.status_code == 422
    for body, response in zip(good, responses[:4] + responses[-4:], strict=True):
        expected = _expected(export, body["inputs"])
        assert torch.allclose(torch.tensor(response.json()["predictions"][0]["probabilities"]),
                              torch.tensor(expected[0]), atol=1e-5)


def test_reload_during_load_fails_no_request_and_the_alias_is_followed(reg, tmp_path):
    v1_dir, v2_dir, v3_dir = (mlp_export(tmp_path / f"v{i}", seed=10 + i) for i in (1, 2, 3))
    reg.publish(v1_dir, "mlp", alias="production")
    v2 = reg.publish(v2_dir, "mlp")
    v3 = reg.publish(v3_dir, "mlp")
    x = [[0.3] * 12]
    expected = {1: _expected(v1_dir, x), v2: _expected(v2_dir, x), v3: _expected(v3_dir, x)}
    admin = reg.token("admin")

    async def load(base: str, stop: asyncio.Event) -> list[httpx.Response]:
        out = []
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            async def one_client():
                while not stop.is_set():
                    out.append(await client.post("/v1/predict", json={"inputs": x}))
            await asyncio.gather(*(one_client() for _ in range(8)))
        return out

    async def scenario(base: str):
        stop = asyncio.Event()
        task = asyncio.create_task(load(base, stop))
        await asyncio.sleep(0.3)
        reg.set_alias("mlp", v2, "production")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            forced = await client.post("/admin/reload", headers=admin)
            await asyncio.sleep(0.3)
            reg.set_alias("mlp", v3, "production")  # no reload call: the poller must find it
            for _ in range(300):
                if (await client.get("/ready")).json()["version"] == v3:
                    break
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        stop.set()
        return forced, await task

    with running_server(reg.settings("mlp@production", max_batch=8, max_wait_ms=2, poll_s=0.2)) as base:
        forced, responses = asyncio.run(scenario(base))
        reloads = metric(base, "shrinkwrap_serving_reloads_total")
    assert forced.status_code == 200 and forced.json()["version"] == v2
    assert len(responses) > 20 and all(r.status_code == 200 for r in responses)
    seen = [r.json()["version"] for r in responses]
    assert {1, v2, v3} <= set(seen) and seen[-1] == v3 and reloads == 2
    for r in responses:  # each answer comes from the version it names
        got = r.json()["predictions"][0]["probabilities"]
        assert torch.allclose(torch.tensor(got), torch.tensor(expected[r.json()["version"]][0]), atol=1e-5)


def test_auth_follows_the_admin_api_rules_and_metrics_are_prometheus(reg, tmp_path):
    reg.publish(mlp_export(tmp_path / "mlp", seed=3), "mlp")
    reader, admin = reg.token("read"), reg.token("admin")
    body = {"inputs": [[0.2] * 12]}
    with running_server(reg.settings("mlp:1", open_reads=False)) as base:
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.post(f"{base}/v1/predict", json=body).status_code == 401
        assert httpx.post(f"{base}/v1/predict", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.post(f"{base}/v1/predict", json=body, headers=reader).status_code == 200
        assert httpx.post(f"{base}/admin/reload", headers=reader).status_code == 403
        reload = httpx.post(f"{base}/admin/reload", headers=admin)
        assert reload.status_code == 200 and reload.json() == {"reloaded": False, "model": "mlp", "version": 1}
        assert httpx.post(f"{base}/v1/completions", json={"prompt": "hi"}, headers=reader).status_code == 404
        assert httpx.get(f"{base}/metrics").status_code == 401
        text = httpx.get(f"{base}/metrics", headers=reader).text
    assert 'shrinkwrap_serving_batch_size_bucket{le="+Inf"} 1' in text
    assert 'shrinkwrap_serving_requests_total{route="/v1/predict",status="200"} 1' in text
    assert "shrinkwrap_serving_queue_depth 0" in text and 'shrinkwrap_serving_model_version{model="mlp"} 1' in text


def test_text_classifier_takes_texts_and_names_its_labels(reg, tmp_path):
    reg.publish(bert_export(tmp_path / "bert"), "sentiment", alias="production")
    with running_server(reg.settings("sentiment@production", max_wait_ms=20)) as base:
        responses = asyncio.run(_post_all(base, [{"inputs": ["very good movie", "not good"]}, {"inputs": ["bad"]},
                                                 {"inputs": [[0.1, 0.2]]}]))
    assert [r.status_code for r in responses] == [200, 200, 422]
    predictions = responses[0].json()["predictions"] + responses[1].json()["predictions"]
    assert len(predictions) == 3 and {p["label"] for p in predictions} <= {"negative", "positive"}
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in predictions)


def test_not_ready_until_a_version_exists(reg, tmp_path):
    with running_server(reg.settings("ghost@production", poll_s=0.1), ready=False) as base:
        ready = httpx.get(f"{base}/ready")
        predict = httpx.post(f"{base}/v1/predict", json={"inputs": [[0.0] * 12]})
        reg.publish(mlp_export(tmp_path / "mlp", seed=4), "ghost", alias="production")
        wait_for(lambda: httpx.get(f"{base}/ready").status_code == 200, what="the first version")
    assert ready.status_code == 503 and "ghost" in ready.json()["error"]["message"]
    assert predict.status_code == 503 and predict.headers["retry-after"]


def test_serve_model_command_line(capsys):
    from shrinkwrap.cli import build_parser

    args = build_parser().parse_args(["serve-model", "mnist@production", "--max-batch", "4", "--max-wait-ms", "2",
                                      "--workers", "2", "--compile"])
    assert (args.model, args.max_batch, args.max_wait_ms, args.workers, args.compile) == (
        "mnist@production", 4, 2.0, 2, True)
    assert build_parser().parse_args(["serve-model", "mnist"]).func(
        build_parser().parse_args(["serve-model", "mnist"])) == 2
    assert "NAME@ALIAS or NAME:VERSION" in capsys.readouterr().err
