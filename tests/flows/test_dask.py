"""The variant fan-out on an external Dask cluster: a `dask scheduler` and two `dask worker` processes on
loopback, joined through SHRINKWRAP_DASK_ADDRESS. The tiny mnist recipe's quantize/evaluate/export stages
run on the workers (the scheduler's task stream says which), and their metrics equal the thread runner's."""

from __future__ import annotations

import pytest
from flows_testing import tiny_mnist
from scale_testing import dask_cluster, worker_env

from flows.flow import compress_model, with_task_runner
from flows.recipe import Recipe
from registry import repository as repo
from registry.session import session_scope

TECHNIQUES = ("none", "int8", "nf4")


def recipe(prefix: str) -> Recipe:
    """Variant names are part of the per-variant cache keys: a new prefix makes the fan-out run again
    (the shared dataset/distill/prune stages are reused from the cache)."""
    variants = [{"name": f"{prefix}-{t}", "technique": t} for t in TECHNIQUES]
    return Recipe.model_validate(tiny_mnist(name=f"mnist-{prefix}", quantize={"variants": variants}))


def metrics_by_technique(summary: dict) -> dict[str, dict[str, float]]:
    return {v["technique"]: v["metrics"] for v in summary["variants"].values()}


@pytest.mark.postgres
@pytest.mark.slow
def test_fan_out_runs_on_an_external_dask_cluster(prefect, registry_env, tmp_path, monkeypatch):
    from distributed import Client, get_task_stream

    threads = compress_model(recipe("threads"))
    with dask_cluster(2, worker_env(), tmp_path / "dask") as address:
        monkeypatch.delenv("SHRINKWRAP_TASK_RUNNER", raising=False)
        monkeypatch.setenv("SHRINKWRAP_DASK_ADDRESS", address)
        with Client(address) as client:
            with get_task_stream(client) as stream:  # its records arrive when the block ends
                on_dask = with_task_runner()(recipe("dask"))
            names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
            ran = sorted((names[r["worker"]], r["key"].split("-")[0].removesuffix("_stage")) for r in stream.data)
    # the scheduler's task records: quantize, evaluate and export of every variant ran on the cluster, and
    # each of the two workers quantized at least one variant
    assert sorted(stage for _, stage in ran) == sorted(["quantize", "evaluate", "export"] * len(TECHNIQUES)), ran
    assert {worker for worker, stage in ran if stage == "quantize"} == {"w0", "w1"}, ran
    with session_scope() as s:
        run = repo.get_run(s, run_id=on_dask["run_id"])
        stages = {st.name: st.status for st in repo.list_stages(s, run_id=run.id)}
    assert run.status == "completed"
    assert {stages[f"{stage}[dask-{t}]"] for stage in ("quantize", "evaluate", "export") for t in TECHNIQUES} \
        == {"completed"}  # really computed on the workers, not reused from the thread run's cache
    want, got = metrics_by_technique(threads), metrics_by_technique(on_dask)
    for technique in TECHNIQUES:
        assert got[technique]["accuracy"] == pytest.approx(want[technique]["accuracy"], abs=0.005), technique
        # the same weights; the export's metadata holds the (different) model and variant names
        assert got[technique]["file_bytes"] == pytest.approx(want[technique]["file_bytes"], abs=200), technique
    assert on_dask["registered"]["promoted"]["variant"] == "dask-nf4"


def test_address_implies_dask_and_conflicts_with_threads(monkeypatch):
    monkeypatch.delenv("SHRINKWRAP_TASK_RUNNER", raising=False)
    monkeypatch.delenv("SHRINKWRAP_DASK_ADDRESS", raising=False)
    assert with_task_runner() is compress_model
    runner = with_task_runner(dask_address="tcp://127.0.0.1:8786").task_runner
    assert type(runner).__name__ == "DaskTaskRunner" and runner.address == "tcp://127.0.0.1:8786"
    monkeypatch.setenv("SHRINKWRAP_TASK_RUNNER", "threads")
    with pytest.raises(ValueError, match="SHRINKWRAP_TASK_RUNNER=threads"):
        with_task_runner(dask_address="tcp://127.0.0.1:8786")
    monkeypatch.setenv("SHRINKWRAP_TASK_RUNNER", "ray")
    with pytest.raises(ValueError, match="'ray'"):
        with_task_runner()


def test_recipes_and_variants_pickle_by_reference():
    """Dask ships stage parameters pickled: the generated recipe and variant models must be importable
    (a by-value pickle of a pydantic model class fails to load on the scheduler: KeyError 'type')."""
    import pickle

    r = recipe("pickle")
    again = pickle.loads(pickle.dumps(r))  # plain pickle: by reference only
    assert again == r and type(again) is type(r)
    assert [type(v).__name__ for v in again.quantize.active()] == ["NoneVariant", "Int8Variant", "Nf4Variant"]
