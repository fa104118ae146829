"""Cache keys come from what each task and technique declares (issue 13): an edit to a causal-LM module
invalidates the causal-LM stages that run it and no classification stage, and an edit to a technique
module invalidates the variants of that technique only."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.tasks import STAGES, get_task
from compress.techniques import quantizer
from flows.cache import ROOT, code_version, source_files


def _versions(task_name: str) -> dict[str, str]:
    task = get_task(task_name)
    return {stage: code_version(tuple(sorted(task.sources[stage]))) for stage in STAGES}


@pytest.fixture
def edited(monkeypatch):
    """edited(path): every later read of that source file sees one more comment line."""
    real = Path.read_bytes

    def edit(rel: str) -> None:
        target = (ROOT / rel).resolve()
        monkeypatch.setattr(Path, "read_bytes",
                            lambda self: real(self) + (b"\n# edited\n" if self.resolve() == target else b""))
        code_version.cache_clear()

    yield edit
    code_version.cache_clear()


def test_every_declared_source_resolves():
    for name in ("classification", "causal_lm"):
        for stage in STAGES:
            assert source_files(get_task(name).sources[stage]), (name, stage)


@pytest.mark.parametrize("module,changed", [
    ("compress/llm/distill.py", {"distill"}),
    ("compress/evaluate/lm.py", set(STAGES)),   # every causal-LM stage measures or exports through it
    ("compress/tasks/causal_lm.py", set(STAGES)),
])
def test_llm_edit_invalidates_llm_stages_and_no_classification_stage(edited, module, changed):
    before = {name: _versions(name) for name in ("classification", "causal_lm")}
    edited(module)
    after = {name: _versions(name) for name in ("classification", "causal_lm")}
    assert after["classification"] == before["classification"]
    assert {s for s in STAGES if after["causal_lm"][s] != before["causal_lm"][s]} == changed


def test_classification_edit_leaves_llm_stages_alone(edited):
    before = {name: _versions(name) for name in ("classification", "causal_lm")}
    edited("compress/distill/api.py")
    after = {name: _versions(name) for name in ("classification", "causal_lm")}
    assert after["causal_lm"] == before["causal_lm"]
    assert after["classification"]["distill"] != before["classification"]["distill"]
    assert after["classification"]["dataset"] == before["classification"]["dataset"]


def test_technique_module_is_part_of_its_variant_stages(edited):
    def key(technique: str) -> str:
        return code_version(tuple(sorted((*get_task("classification").sources["quantize"],
                                          *quantizer(technique).code_sources()))))

    before = {t: key(t) for t in ("none", "int8")}
    edited("compress/quantize/none.py")
    assert key("none") != before["none"]
    assert key("int8") == before["int8"]
