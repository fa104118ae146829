"""Helpers shared by the API tests (a uniquely named module: tests/ folders are not packages)."""

from __future__ import annotations

from dataclasses import dataclass, field

import registry.repository as repo
from registry.session import make_engine, session_scope
from registry.store import ArtifactStore


@dataclass
class Seed:
    model: str = "mnist-mlp"
    run_id: int = 0
    artifact_ids: dict[str, int] = field(default_factory=dict)
    file_bytes: bytes = b""
    dir_files: dict[str, bytes] = field(default_factory=dict)


def seed_registry(url: str, store_root, tmp_path) -> Seed:
    """teacher -> checkpoint -> export (file) and export_dir (directory); versions 1 (teacher-like, big) and
    2, 3 (smaller); a run with two stages and metrics."""
    seed = Seed(file_bytes=bytes(range(256)) * 40 + b"tail")  # 10244 bytes: ranges cross no chunk edge
    seed.dir_files = {"config.json": b'{"a": 1}', "weights/model.safetensors": b"\x00\x01" * 100}
    src = tmp_path / "seed-src"
    (src / "export_dir" / "weights").mkdir(parents=True)
    for rel, data in seed.dir_files.items():
        (src / "export_dir" / rel).write_bytes(data)
    (src / "teacher.bin").write_bytes(b"teacher" * 300)
    (src / "student.bin").write_bytes(b"student" * 100)
    (src / "export.bin").write_bytes(seed.file_bytes)
    store = ArtifactStore(store_root)
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            run = repo.create_run(s, recipe={"name": "seed"}, flow_run_id=None)
            repo.set_run_status(s, run_id=run.id, status="running")
            st1 = repo.start_stage(s, run_id=run.id, name="distill", params_hash="p1", cache_key="k1")
            teacher = repo.register_artifact(s, store, kind="teacher", path=src / "teacher.bin", format="pt")
            student = repo.register_artifact(s, store, kind="checkpoint", path=src / "student.bin", format="pt",
                                             stage_run_id=st1.id, parents=[teacher])
            repo.finish_stage(s, stage_id=st1.id, status="completed", outputs={"checkpoint": student.id})
            st2 = repo.start_stage(s, run_id=run.id, name="export", params_hash="p2", cache_key="k2")
            export = repo.register_artifact(s, store, kind="export", path=src / "export.bin", format="bin",
                                            stage_run_id=st2.id, parents=[student])
            export_dir = repo.register_artifact(s, store, kind="export", path=src / "export_dir", format="hf",
                                                stage_run_id=st2.id, parents=[student])
            repo.finish_stage(s, stage_id=st2.id, status="completed")
            repo.log_metrics(s, metrics={"accuracy": 0.99}, artifact_id=teacher.id)
            repo.log_metrics(s, metrics={"loss": 0.5, "accuracy": 0.9}, run_id=run.id, stage_run_id=st1.id,
                             stage="distill", step=1)
            repo.log_metrics(s, metrics={"loss": 0.3, "accuracy": 0.95}, run_id=run.id, stage_run_id=st1.id,
                             stage="distill", step=2)
            repo.create_model(s, name=seed.model, description="seeded")
            for art, acc in ((teacher, 0.99), (export, 0.97), (export_dir, 0.90)):
                v = repo.create_version(s, model_name=seed.model, artifact_id=art.id, run_id=run.id)
                repo.log_metrics(s, metrics={"accuracy": acc}, version_id=v.id)
            seed.run_id = run.id
            seed.artifact_ids = {"teacher": teacher.id, "student": student.id, "export": export.id,
                                 "export_dir": export_dir.id}
    finally:
        engine.dispose()
    return seed


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The one error shape: {"error": {"code", "message"}} and nothing that looks like a traceback."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), body
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
