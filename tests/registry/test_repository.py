"""Repository functions on SQLite and PostgreSQL: models, versions, aliases and gates, runs and stages,
metrics, tokens, lineage, Pareto front, and the session scope's commit/rollback."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

import registry.repository as repo
from registry.errors import AlreadyExists, GateFailed, InvalidState, NotFound
from registry.models import Artifact, Model, ModelVersion
from registry.repository.tokens import TokenGrant, last_used_due, lookup_token, stamp_token_used
from registry.session import session_scope


def test_models_crud_and_errors(session):
    repo.create_model(session, name="mnist-mlp", description="MLP on MNIST")
    repo.create_model(session, name="other")
    with pytest.raises(AlreadyExists, match="mnist-mlp"):
        repo.create_model(session, name="mnist-mlp")
    with pytest.raises(InvalidState, match="invalid"):
        repo.create_model(session, name="../x")
    with pytest.raises(NotFound, match="nope"):
        repo.get_model(session, name="nope")
    repo.update_model(session, name="mnist-mlp", description="new")
    assert repo.get_model(session, name="mnist-mlp").description == "new"
    repo.archive_model(session, name="other")
    rows, total = repo.list_models(session)
    assert [m.name for m in rows] == ["mnist-mlp"] and total == 1
    rows, total = repo.list_models(session, include_archived=True, limit=1, offset=1)
    assert [m.name for m in rows] == ["other"] and total == 2
    with pytest.raises(InvalidState, match="limit"):
        repo.list_models(session, limit=0)


def test_session_scope_rolls_back_on_error(url):
    with pytest.raises(RuntimeError), session_scope(url) as s:
        repo.create_model(s, name="ghost")
        raise RuntimeError("boom")
    with session_scope(url) as s:
        assert s.query(Model).count() == 0
        repo.create_model(s, name="kept")
    with session_scope(url) as s:
        assert repo.get_model(s, name="kept").name == "kept"


def _artifact(session, store, make_file, data: bytes, kind="checkpoint", parents=(), stage_run_id=None):
    return repo.register_artifact(session, store, kind=kind, path=make_file(data), format="pt",
                                  parents=parents, stage_run_id=stage_run_id)


def test_versions_numbering_listing_and_aliases(session, store, make_file):
    repo.create_model(session, name="m")
    arts = [_artifact(session, store, make_file, bytes([i]) * 10) for i in range(3)]
    versions = [repo.create_version(session, model_name="m", artifact_id=a.id) for a in arts]
    assert [v.version for v in versions] == [1, 2, 3]
    rows, total = repo.list_versions(session, model_name="m", limit=2)
    assert [v.version for v in rows] == [3, 2] and total == 3
    assert repo.get_latest_version(session, model_name="m").version == 3
    with pytest.raises(NotFound, match="no version 9"):
        repo.get_version(session, model_name="m", version=9)
    with pytest.raises(NotFound):
        repo.create_version(session, model_name="m", artifact_id=10**6)
    repo.set_alias(session, model_name="m", version=1, alias="production")
    repo.set_alias(session, model_name="m", version=2, alias="staging")
    repo.set_alias(session, model_name="m", version=3, alias="production")  # moves
    assert repo.get_version_by_alias(session, model_name="m", alias="production").version == 3
    assert repo.list_aliases(session, model_name="m") == {"production": 3, "staging": 2}
    assert repo.get_version(session, model_name="m", version=3).aliases == ["production"]
    with pytest.raises(InvalidState, match="aliases"):
        repo.update_version(session, model_name="m", version=3, status="archived")
    repo.remove_alias(session, model_name="m", alias="staging")
    with pytest.raises(NotFound, match="staging"):
        repo.get_version_by_alias(session, model_name="m", alias="staging")
    with pytest.raises(InvalidState, match="alias"):
        repo.set_alias(session, model_name="m", version=1, alias="Bad Alias")


def test_lean_version_reads_match_the_orm(session, store, make_file):
    """`list_version_dicts` / `list_version_metric_dicts` (prebuilt Core statements, used by the API) return
    exactly what the ORM reads give, page by page, with aliases and only the asked model's rows."""
    for name in ("m", "other"):
        repo.create_model(session, name=name)
    for i in range(7):
        art = _artifact(session, store, make_file, bytes([i]) * 10)
        v = repo.create_version(session, model_name="m" if i != 3 else "other", artifact_id=art.id,
                                description=f"v{i}" if i % 2 else None)
        if i % 3:
            repo.log_metrics(session, metrics={"accuracy": i / 10, "bytes": 100 * i}, version_id=v.id)
    repo.set_alias(session, model_name="m", version=2, alias="staging")
    repo.set_alias(session, model_name="m", version=2, alias="production")
    repo.set_alias(session, model_name="other", version=1, alias="production")
    fields = ("id", "version", "status", "artifact_id", "run_id", "description", "created_at", "model_name",
              "aliases")
    for limit, offset in ((100, 0), (2, 0), (2, 2), (4, 4), (1, 5), (3, 6)):
        orm_rows, orm_total = repo.list_versions(session, model_name="m", limit=limit, offset=offset)
        rows, total = repo.list_version_dicts(session, model_name="m", limit=limit, offset=offset)
        assert total == orm_total == 6
        assert rows == [{f: getattr(r, f) for f in fields} for r in orm_rows]
    assert repo.list_version_dicts(session, model_name="m")[0][4]["aliases"] == ["production", "staging"]
    assert repo.list_version_dicts(session, model_name="m", offset=6) == ([], 6)
    with pytest.raises(NotFound, match="'nope'"):
        repo.list_version_dicts(session, model_name="nope")
    metric_fields = ("id", "name", "value", "step", "stage", "run_id", "stage_run_id", "artifact_id",
                     "version_id", "created_at")
    for number in range(1, 7):
        version = repo.get_version(session, model_name="m", version=number)
        expected = [{f: getattr(r, f) for f in metric_fields} for r in repo.list_metrics(session,
                                                                                          version_id=version.id)]
        assert repo.list_version_metric_dicts(session, model_name="m", version=number) == expected
    assert repo.list_version_metric_dicts(session, model_name="m", version=1) == []  # a version without metrics
    with pytest.raises(NotFound, match="no version 9"):
        repo.list_version_metric_dicts(session, model_name="m", version=9)
    with pytest.raises(NotFound, match="'nope'"):
        repo.list_version_metric_dicts(session, model_name="nope", version=1)
    # versions are never deleted; one deleted by hand leaves a hole, and a page that spans it is read exactly
    session.execute(delete(ModelVersion).where(ModelVersion.id == repo.get_version_id(session, model_name="m",
                                                                                      version=3)))
    session.expire_all()
    for limit, offset in ((100, 0), (2, 2), (3, 1)):
        orm_rows, orm_total = repo.list_versions(session, model_name="m", limit=limit, offset=offset)
        rows, total = repo.list_version_dicts(session, model_name="m", limit=limit, offset=offset)
        assert total == orm_total == 5 and rows == [{f: getattr(r, f) for f in fields} for r in orm_rows]


def test_gated_promotion_names_the_failed_gate(session, store, make_file):
    repo.create_model(session, name="m")
    teacher = _artifact(session, store, make_file, b"teacher", kind="teacher")
    student = _artifact(session, store, make_file, b"student", parents=[teacher])
    export = _artifact(session, store, make_file, b"export", kind="export", parents=[student])
    repo.log_metrics(session, metrics={"accuracy": 0.980}, artifact_id=teacher.id)
    v = repo.create_version(session, model_name="m", artifact_id=export.id)
    repo.log_metrics(session, metrics={"accuracy": 0.962, "bytes": 1000}, version_id=v.id)
    gates = [repo.Gate.max_drop("accuracy", 0.01), repo.Gate(metric="bytes", op="<=", value=2000)]
    with pytest.raises(GateFailed) as info:
        repo.set_alias(session, model_name="m", version=1, alias="production", gates=gates)
    assert len(info.value.failures) == 1
    assert "accuracy change vs parent >= -0.01 failed" in info.value.failures[0]
    assert f"parent artifact {teacher.id}" in info.value.failures[0]
    missing = repo.evaluate_gates(session, version=v, gates=[{"metric": "latency", "op": "<", "value": 1}])
    assert missing and "no 'latency' metric" in missing[0]
    repo.log_metrics(session, metrics={"accuracy": 0.975}, version_id=v.id)  # the latest value counts
    repo.set_alias(session, model_name="m", version=1, alias="production", gates=gates)
    assert repo.get_version_by_alias(session, model_name="m", alias="production").id == v.id
    with pytest.raises(ValueError):
        repo.Gate(metric="accuracy", op="==", value=1)


def test_runs_stages_resume_and_metrics(session):
    run = repo.create_run(session, recipe={"b": [1, 2], "a": {"y": 1, "x": 2}}, flow_run_id="fr-1",
                          git_commit="abc123", library_versions={"torch": "2.13"})
    same = repo.create_run(session, recipe={"a": {"x": 2, "y": 1}, "b": [1, 2]})
    assert run.recipe_hash == same.recipe_hash and len(run.recipe_hash) == 64
    assert repo.get_run_by_flow_run_id(session, flow_run_id="fr-1").id == run.id
    repo.set_run_status(session, run_id=run.id, status="running")
    stage = repo.start_stage(session, run_id=run.id, name="prune", params_hash="p1", cache_key="ck-1")
    assert repo.find_completed_stage(session, cache_key="ck-1") is None
    repo.log_metrics(session, metrics={"loss": 0.5}, run_id=run.id, stage_run_id=stage.id, stage="prune", step=1)
    repo.log_metrics(session, metrics={"loss": 0.3, "sparsity": 0.5}, run_id=run.id, stage="prune", step=2)
    repo.finish_stage(session, stage_id=stage.id, status="completed", outputs={"checkpoint": 7})
    with pytest.raises(InvalidState, match="already"):
        repo.finish_stage(session, stage_id=stage.id, status="failed")
    found = repo.find_completed_stage(session, cache_key="ck-1")
    assert found.id == stage.id and found.outputs == {"checkpoint": 7}
    repo.set_run_status(session, run_id=run.id, status="completed")
    with pytest.raises(InvalidState, match="cannot become"):
        repo.set_run_status(session, run_id=run.id, status="running")
    with pytest.raises(InvalidState, match="start a new run"):
        repo.start_stage(session, run_id=run.id, name="late")
    r = repo.get_run(session, run_id=run.id)
    assert r.started_at is not None and r.finished_at is not None and r.finished_at >= r.started_at
    assert [(m.name, m.value, m.step) for m in repo.list_metrics(session, run_id=run.id)] == [
        ("loss", 0.5, 1), ("loss", 0.3, 2), ("sparsity", 0.5, 2)]
    rows, total = repo.list_runs(session, status="completed")
    assert [x.id for x in rows] == [run.id] and total == 1
    with pytest.raises(InvalidState, match="finite"):
        repo.log_metrics(session, metrics={"loss": float("nan")}, run_id=run.id)
    with pytest.raises(InvalidState, match="at least one"):
        repo.log_metrics(session, metrics={"loss": 1.0})
    with pytest.raises(NotFound):
        repo.get_run(session, run_id=10**6)


def test_lineage_back_to_teacher_and_data(session, store, make_file):
    run = repo.create_run(session, recipe={})
    data = _artifact(session, store, make_file, b"mnist", kind="dataset")
    teacher = _artifact(session, store, make_file, b"teacher", kind="teacher", parents=[data])
    labels = _artifact(session, store, make_file, b"labels", kind="soft-labels", parents=[teacher, data])
    st = repo.start_stage(session, run_id=run.id, name="distill")
    student = _artifact(session, store, make_file, b"student", parents=[labels, data], stage_run_id=st.id)
    _artifact(session, store, make_file, b"unrelated")
    repo.create_model(session, name="m")
    repo.create_version(session, model_name="m", artifact_id=student.id, run_id=run.id)
    lin = repo.version_lineage(session, model_name="m", version=1)
    assert lin["version"].version == 1 and lin["run"].id == run.id
    assert {n.kind for n in lin["nodes"]} == {"dataset", "teacher", "soft-labels", "checkpoint"}
    assert lin["nodes"][0].id == student.id
    assert {(e.parent_id, e.child_id) for e in lin["edges"]} == {
        (labels.id, student.id), (data.id, student.id), (teacher.id, labels.id), (data.id, labels.id),
        (data.id, teacher.id)}
    assert {e.stage for e in lin["edges"] if e.child_id == student.id} == {"distill"}
    with pytest.raises(InvalidState, match="cycle"):
        repo.add_edge(session, parent_id=student.id, child_id=data.id)
    with pytest.raises(NotFound, match="register parents"):
        _artifact(session, store, make_file, b"orphan", parents=[10**6])
    rows, total = repo.list_artifacts(session, run_id=run.id)
    assert [a.id for a in rows] == [student.id] and total == 1


def test_same_bytes_twice_one_blob_two_rows(session, store, make_file, tmp_path):
    a = _artifact(session, store, make_file, b"same")
    b = _artifact(session, store, make_file, b"same")
    assert a.id != b.id and a.sha256 == b.sha256 and a.uri == b.uri
    assert len(list(store.iter_blobs())) == 1
    export = tmp_path / "hf"
    export.mkdir()
    (export / "config.json").write_text("{}")
    (export / "model.safetensors").write_bytes(b"\x01" * 64)
    d = repo.register_artifact(session, store, kind="export", path=export, format="hf")
    assert d.is_dir and d.bytes == 66
    assert repo.check_store(session, store) == {"missing": [], "orphans": []}


def test_pareto_front(session, store, make_file):
    repo.create_model(session, name="m")
    # (bytes, accuracy): v1 big+best, v2 dominated by v3, v3 small+good, v4 smallest+worst, v5 no accuracy
    points = [(4000, 0.99), (3000, 0.95), (2000, 0.97), (1000, 0.90), (500, None)]
    for i, (size, acc) in enumerate(points):
        art = _artifact(session, store, make_file, bytes([i]) * size)
        v = repo.create_version(session, model_name="m", artifact_id=art.id)
        if acc is not None:
            repo.log_metrics(session, metrics={"accuracy": acc, "file_bytes": size}, version_id=v.id)
    front = repo.pareto_front(session, model_name="m", x_metric="artifact_bytes", y_metric="accuracy")
    assert [(p.version.version, p.x, p.y) for p in front] == [(4, 1000, 0.90), (3, 2000, 0.97), (1, 4000, 0.99)]
    same = repo.pareto_front(session, model_name="m", x_metric="file_bytes", y_metric="accuracy")
    assert [p.version.version for p in same] == [4, 3, 1]
    flipped = repo.pareto_front(session, model_name="m", x_metric="file_bytes", y_metric="accuracy",
                                minimize_x=False, maximize_y=False)
    assert [p.version.version for p in flipped] == [1, 2, 4]


def test_pareto_on_a_timing_metric_compares_one_host_context(session, store, make_file):
    """Latencies measured on different hosts never share a front: v2 (fastest, but on host b) would
    dominate v1 if mixed; the default host is the newest version's, and another host can be asked for."""
    repo.create_model(session, name="m")
    a, b = "a" * 16, "b" * 16
    ids = []
    for i, (host, latency, acc) in enumerate([(a, 5.0, 0.99), (b, 1.0, 0.99), (a, 2.0, 0.95), (None, 0.5, 1.0)]):
        art = repo.register_artifact(session, store, kind="export", path=make_file(bytes([i]) * 10), format="pt",
                                     metadata={"measured_on": {"fingerprint": host}} if host else None)
        v = repo.create_version(session, model_name="m", artifact_id=art.id)
        repo.log_metrics(session, metrics={"latency_p50_ms": latency, "accuracy": acc}, version_id=v.id)
        ids.append(v.id)
    assert repo.timing_metric("latency_p50_ms") and repo.timing_metric("tokens_per_s")
    assert repo.timing_metric("decode_ms_per_token") and not repo.timing_metric("accuracy")
    front = repo.pareto_front(session, model_name="m", x_metric="latency_p50_ms", y_metric="accuracy")
    assert [p.version.version for p in front] == [3, 1]  # host a (v3 is the newest with a host): v2, v4 left out
    assert [p.version.version for p in repo.pareto_front(session, model_name="m", x_metric="latency_p50_ms",
                                                          y_metric="accuracy", host=b)] == [2]
    model_id = repo.get_model(session, name="m").id
    v1, v2, v3, v4 = ids
    like = repo.like_for_like(session, model_id, set(ids), ("latency_p50_ms", "accuracy"))
    assert like.host == a and like.kept == {v1, v3} and like.excluded == {v2, v4} and "2 versions left" in like.note
    everything = repo.like_for_like(session, model_id, set(ids), ("artifact_bytes", "accuracy"))
    assert everything.host is None and everything.kept == set(ids) and everything.note is None
    unknown = repo.like_for_like(session, model_id, {v4}, ("latency_p50_ms", "accuracy"))
    assert unknown.kept == {v4} and "no host context recorded" in unknown.note


def test_tokens_store_only_a_hash(session):
    row, plaintext = repo.create_token(session, name="ci", scopes=["read", "write", "read"])
    assert row.scopes == ["read", "write"] and plaintext.startswith("sw_")
    assert plaintext not in row.token_hash and row.token_hash == repo.hash_token(plaintext)
    assert repo.verify_token(session, token=plaintext).id == row.id
    assert row.last_used_at is not None
    assert repo.verify_token(session, token=plaintext + "x") is None
    assert repo.verify_token(session, token="") is None
    repo.revoke_token(session, token_id=row.id)
    assert repo.verify_token(session, token=plaintext) is None
    assert repo.list_tokens(session) == ([], 0)


def test_token_grant_lookup_and_stamp(session):
    """`lookup_token` (what the API checks per request) agrees with `verify_token` without writing; the
    `last_used_at` stamp is written only by `stamp_token_used`, and `last_used_due` says when."""
    row, plaintext = repo.create_token(session, name="reader", scopes=["read"])
    grant = lookup_token(session, token=plaintext)
    assert grant == TokenGrant(row.id, "reader", ("read",), None) and last_used_due(grant)
    assert lookup_token(session, token=plaintext + "x") is None and lookup_token(session, token="") is None
    stamp_token_used(session, token_id=row.id)
    grant = lookup_token(session, token=plaintext)
    assert grant.last_used_at is not None and not last_used_due(grant)
    repo.revoke_token(session, token_id=row.id)
    assert lookup_token(session, token=plaintext) is None


def test_rows_stay_readable_after_scope(url, store, make_file):
    with session_scope(url) as s:
        repo.create_model(s, name="m")
        art = _artifact(s, store, make_file, b"x")
        repo.create_version(s, model_name="m", artifact_id=art.id)
        repo.set_alias(s, model_name="m", version=1, alias="production")
    with session_scope(url) as s:
        v = repo.get_version(s, model_name="m", version=1)
        rows, _ = repo.list_versions(s, model_name="m")
    assert v.model_name == "m" and v.aliases == ["production"] and rows[0].model_name == "m"
    with session_scope(url) as s:
        assert s.get(Artifact, art.id).meta is None


def test_timestamps_are_aware_utc_and_readonly_scope_keeps_nothing(url):
    with session_scope(url) as s:
        created = repo.create_model(s, name="m").created_at
    with session_scope(url, readonly=True) as s:
        got = repo.get_model(s, name="m").created_at
        repo.create_model(s, name="dropped")
    assert got.utcoffset().total_seconds() == 0 and abs((got - created).total_seconds()) < 1e-3
    with session_scope(url, readonly=True) as s:
        assert [m.name for m in repo.list_models(s)[0]] == ["m"]
