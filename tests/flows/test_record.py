"""The resume protocol of flows/record.py without Prefect (plain calls, as `task.fn` would make them):
cache keys, reuse of completed stages only, failed and interrupted stages rerun, missing blobs rerun."""

from __future__ import annotations

import pytest

from flows import record
from flows.cache import cache_key, code_version
from registry import repository as repo
from registry.session import dispose_engines, init_db, session_scope


@pytest.fixture
def registry(db_url, tmp_path, monkeypatch):
    init_db(db_url)
    monkeypatch.setenv("SHRINKWRAP_DATABASE_URL", db_url)
    monkeypatch.setenv("SHRINKWRAP_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.delenv("SHRINKWRAP_FAULT", raising=False)
    yield tmp_path
    dispose_engines()


def new_run() -> int:
    with session_scope() as s:
        run = repo.create_run(s, recipe={"name": "t"})
        repo.set_run_status(s, run_id=run.id, status="running")
        return run.id


def writer(tmp_path, content: bytes, calls: list):
    def body(ctx):
        calls.append(ctx.name)
        path = ctx.workdir / "out.bin"
        path.write_bytes(content)
        ctx.register("out", kind="checkpoint", path=path, format="bin", metrics={"score": 1.0})
        return {"note": "made"}
    return body


def statuses(run_id: int) -> list[tuple[str, str]]:
    with session_scope() as s:
        return [(st.name, st.status) for st in repo.list_stages(s, run_id=run_id)]


def test_cache_key_depends_on_everything_it_should():
    base = cache_key("prune", params={"p": 0.5}, inputs={"checkpoint": "a" * 64}, code="v1")
    assert base == cache_key("prune", params={"p": 0.5}, inputs={"checkpoint": "a" * 64}, code="v1")
    assert base != cache_key("prune", params={"p": 0.6}, inputs={"checkpoint": "a" * 64}, code="v1")
    assert base != cache_key("prune", params={"p": 0.5}, inputs={"checkpoint": "b" * 64}, code="v1")
    assert base != cache_key("prune", params={"p": 0.5}, inputs={"teacher": "a" * 64}, code="v1")
    assert base != cache_key("prune", params={"p": 0.5}, inputs={"checkpoint": "a" * 64}, code="v2")
    assert code_version(("compress.prune",)) != code_version(("compress.distill",))  # different sources
    with pytest.raises(ValueError, match="names no module"):
        code_version(("compress/nope.py",))
    with pytest.raises(ValueError, match="not an importable module"):
        code_version(("compress.nope",))


def test_completed_stage_is_reused_by_a_later_run(registry):
    calls: list = []
    first = record.run_stage("dataset", run_id=new_run(), params={"x": 1}, inputs={}, body=writer(registry, b"1", calls))
    run2 = new_run()
    second = record.run_stage("dataset", run_id=run2, params={"x": 1}, inputs={}, body=writer(registry, b"1", calls))
    assert calls == ["dataset"] and second == first and second["note"] == "made"
    assert statuses(run2) == [("dataset", "cached")]
    record.run_stage("dataset", run_id=run2, params={"x": 2}, inputs={}, body=writer(registry, b"2", calls))
    assert calls == ["dataset", "dataset"]  # a changed parameter recomputes


def test_failed_and_interrupted_stages_rerun(registry):
    calls: list = []

    def boom(ctx):
        raise RuntimeError("disk full")

    run1 = new_run()
    with pytest.raises(RuntimeError, match="disk full"):
        record.run_stage("dataset", run_id=run1, params={}, inputs={}, body=boom)
    with session_scope() as s:  # a kill -9 leaves a row `running`: never reused either
        repo.start_stage(s, run_id=run1, name="dataset", cache_key=cache_key("dataset", params={"name": "dataset"}, inputs={},
                                                                           code=code_version(())))
    assert statuses(run1) == [("dataset", "failed"), ("dataset", "running")]
    record.run_stage("dataset", run_id=new_run(), params={}, inputs={}, body=writer(registry, b"x", calls))
    assert calls == ["dataset"]


def test_missing_blob_makes_a_cached_stage_rerun(registry):
    calls: list = []
    out = record.run_stage("dataset", run_id=new_run(), params={}, inputs={}, body=writer(registry, b"gone", calls))
    record.artifact_path(out["artifacts"]["out"]).unlink()  # someone cleaned the store
    record.run_stage("dataset", run_id=new_run(), params={}, inputs={}, body=writer(registry, b"gone", calls))
    assert calls == ["dataset", "dataset"]


def test_injected_fault_marks_the_stage_failed(registry, monkeypatch):
    monkeypatch.setenv("SHRINKWRAP_FAULT", "prune:raise")
    run_id = new_run()
    with pytest.raises(record.InjectedFault, match="prune"):
        record.run_stage("prune", run_id=run_id, params={}, inputs={}, body=lambda ctx: {})
    record.run_stage("distill", run_id=run_id, params={}, inputs={}, body=lambda ctx: {})  # other stages run
    assert statuses(run_id) == [("prune", "failed"), ("distill", "completed")]
