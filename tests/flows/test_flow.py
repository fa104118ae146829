"""The whole mnist recipe (tiny budget) through Prefect + a PostgreSQL registry: stages, versions,
gates, exports, Prefect artifacts; resume after an injected failure; bad recipes refused before work."""

from __future__ import annotations

from pathlib import Path

import pytest
from flows_testing import tiny_mnist

from flows.flow import compress_model
from flows.recipe import Recipe
from registry import repository as repo
from registry.session import session_scope

pytestmark = [pytest.mark.postgres]
VARIANTS = ("sparse-fp32", "int8", "nf4")


def stages_of(run_id: int) -> dict[str, str]:
    with session_scope() as s:
        return {st.name: st.status for st in repo.list_stages(s, run_id=run_id)}


def latest_run() -> tuple[int, str, str | None]:
    with session_scope() as s:
        runs, _ = repo.list_runs(s, limit=1)
        return runs[0].id, runs[0].status, runs[0].error


def test_end_to_end_registers_versions_exports_and_artifacts(first_run):
    from compress.export import load_export

    run_id = first_run["run_id"]
    statuses = stages_of(run_id)
    expected = {"dataset", "teacher", "teacher_data", "distill", "prune", "register",
                *(f"{stage}[{v}]" for stage in ("quantize", "evaluate", "export") for v in VARIANTS)}
    assert statuses == dict.fromkeys(expected, "completed")
    with session_scope() as s:
        run = repo.get_run(s, run_id=run_id)
        assert run.status == "completed" and run.flow_run_id and run.library_versions["torch"]
        versions, total = repo.list_versions(s, model_name="mnist-test")
        assert total == 3
        by_variant = {v.description.split()[1]: v for v in versions}
        metrics = {name: repo.latest_values(s, version_id=v.id) for name, v in by_variant.items()}
        aliases = repo.list_aliases(s, model_name="mnist-test")
        lineage = repo.version_lineage(s, model_name="mnist-test", version=by_variant["nf4"].version)
    kinds = {n.kind for n in lineage["nodes"]}
    assert {"dataset", "teacher", "soft-labels", "checkpoint", "export"} <= kinds
    # quantization really shrinks the stored weights; quality stays close to the unquantized model
    assert metrics["nf4"]["file_bytes"] < metrics["int8"]["file_bytes"] < metrics["sparse-fp32"]["file_bytes"]
    assert metrics["sparse-fp32"]["accuracy"] > 0.8
    assert abs(metrics["nf4"]["accuracy"] - metrics["sparse-fp32"]["accuracy"]) < 0.05
    # the smallest variant passing the gates is promoted (prefer: min file_bytes)
    assert aliases == {"staging": by_variant["nf4"].version}
    for name, v in first_run["variants"].items():
        model = load_export(Path(v["export"]))  # verifies the manifest
        assert model is not None, name


def test_prefect_markdown_summary_artifact(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["mnist-test-summary"])))
    assert found, "no summary artifact"
    md = found[0].data
    for name in VARIANTS:
        assert f"| {name} |" in md
    assert "staging" in md


def test_rerun_reuses_every_stage(first_run):
    again = compress_model(Recipe.model_validate(tiny_mnist()))
    assert set(stages_of(again["run_id"]).values()) == {"cached"}
    assert again["registered"]["versions"] == first_run["registered"]["versions"]  # no new versions


def test_changed_parameter_and_failed_branch_then_resume(first_run, monkeypatch):
    changed = Recipe.model_validate(tiny_mnist(prune={"rounds": 2}))
    monkeypatch.setenv("SHRINKWRAP_FAULT", "quantize[nf4]:raise")
    with pytest.raises(Exception, match="injected fault"):
        compress_model(changed)
    run_id, status, error = latest_run()
    assert status == "failed" and "injected fault" in (error or "")
    failed = stages_of(run_id)
    # upstream of the changed prune parameter is reused, prune reruns; a failed branch fails the run
    assert [failed[s] for s in ("dataset", "teacher", "teacher_data", "distill")] == ["cached"] * 4
    assert failed["prune"] == "completed" and failed["quantize[nf4]"] == "failed"
    assert failed["quantize[int8]"] == "completed" and "register" not in failed

    monkeypatch.delenv("SHRINKWRAP_FAULT")
    resumed = compress_model(changed)
    statuses = stages_of(resumed["run_id"])
    computed = {name for name, st in statuses.items() if st == "completed"}
    # only the failed branch (and what depends on it) is computed again
    assert computed == {"quantize[nf4]", "evaluate[nf4]", "export[nf4]", "register"}, statuses


def test_bad_recipe_refused_before_any_work(first_run):
    with session_scope() as s:
        _, before = repo.list_runs(s)
    with pytest.raises(Exception, match="p=1.0, q=0.5"):
        compress_model(recipe={**tiny_mnist(), "prune": {"p": 1.0, "q": 0.5}})
    with session_scope() as s:
        _, after = repo.list_runs(s)
    assert after == before


def test_npz_recipe_with_a_trained_teacher(first_run, tmp_path):
    import importlib.util

    import yaml
    from flows_testing import ROOT

    spec = importlib.util.spec_from_file_location("make_sample_npz", ROOT / "recipes" / "make_sample_npz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_sample_npz(tmp_path / "data" / "sample.npz", n_train=600, n_test=200)
    data = yaml.safe_load((ROOT / "recipes" / "npz_example.yaml").read_text())
    data["teacher"]["train"]["epochs"] = 2
    data["distill"]["epochs"] = 2
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    summary = compress_model(Recipe.from_yaml(tmp_path / "recipe.yaml"))  # data/sample.npz next to the recipe
    assert set(summary["variants"]) == {"fp32", "int8"}
    assert summary["variants"]["fp32"]["metrics"]["accuracy"] > 0.5  # 4 classes: well above chance
    assert statuses_all_completed(summary["run_id"])


def statuses_all_completed(run_id: int) -> bool:
    return set(stages_of(run_id).values()) == {"completed"}
