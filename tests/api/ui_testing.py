"""Registry content for the UI tests: the API tests' seed (teacher -> checkpoint -> exports, 3 versions,
a run with stages) plus what the UI shows on top: a hostile model description, a directory export with a
model card (README.md, with a script in it), a dataset at the root of the lineage, a cached stage, a
Prefect flow run id and the metrics of the versions table (accuracy, latency, technique)."""

from __future__ import annotations

from dataclasses import dataclass

from api_testing import seed_registry

import registry.repository as repo
from registry.session import make_engine, session_scope
from registry.store import ArtifactStore

HOSTILE = '<script>window.__pwned = 1; document.title = "pwned"</script><img src=x onerror="window.__pwned=2">'
CARD = ("# Model card of mnist-mlp v4\n\nDistilled, pruned and quantized.\n\n| metric | value |\n|---|---|\n"
        "| accuracy | 0.93 |\n\n<script>window.__pwned = 3</script>\n\n[bad link](javascript:alert(1))\n")
FLOW_RUN_ID = "0b0e6a5c-1111-4222-8333-444455556666"


@dataclass
class UiSeed:
    model: str
    run_id: int
    versions: int
    card_version: int
    lineage_nodes: int  # nodes drawn for card_version: its artifacts and the version itself
    readme_artifact: int


def seed_ui(url: str, store_root, tmp_path) -> UiSeed:
    seed = seed_registry(url, store_root, tmp_path)
    src = tmp_path / "ui-src"
    (src / "export_card").mkdir(parents=True)
    (src / "export_card" / "README.md").write_text(CARD)
    (src / "export_card" / "model.safetensors").write_bytes(b"\x00" * 64)
    (src / "data.npz").write_bytes(b"data" * 50)
    store = ArtifactStore(store_root)
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            repo.update_model(s, name=seed.model, description=HOSTILE)
            run = repo.get_run(s, run_id=seed.run_id)
            run.flow_run_id = FLOW_RUN_ID
            dataset = repo.register_artifact(s, store, kind="dataset", path=src / "data.npz", format="npz")
            repo.add_edge(s, parent_id=dataset.id, child_id=seed.artifact_ids["teacher"], stage="teacher")
            cached = repo.start_stage(s, run_id=seed.run_id, name="evaluate[nf4]", cache_key="k3")
            repo.finish_stage(s, stage_id=cached.id, status="cached")
            card = repo.register_artifact(s, store, kind="export", path=src / "export_card", format="hf",
                                          parents=[seed.artifact_ids["student"]], stage="export",
                                          metadata={"technique": "nf4", "variant": "nf4"})
            v = repo.create_version(s, model_name=seed.model, artifact_id=card.id, run_id=seed.run_id)
            repo.log_metrics(s, metrics={"accuracy": 0.93, "latency_p50_ms": 1.5}, version_id=v.id)
            repo.set_run_status(s, run_id=seed.run_id, status="completed")
            # card export <- student <- teacher <- dataset, plus the version node
            return UiSeed(model=seed.model, run_id=seed.run_id, versions=v.version, card_version=v.version,
                          lineage_nodes=5, readme_artifact=card.id)
    finally:
        engine.dispose()


def make_token(url: str, scopes: list[str]) -> str:
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            return repo.create_token(s, name="ui-" + "+".join(scopes), scopes=scopes)[1]
    finally:
        engine.dispose()


def alias_target(url: str, model: str, alias: str) -> int | None:
    engine = make_engine(url)
    try:
        with session_scope(engine, readonly=True) as s:
            return repo.list_aliases(s, model_name=model).get(alias)
    finally:
        engine.dispose()
