"""The run's Prefect artifacts and the registry <-> flow run links, without the engine: the variant table
as records and markdown, plots inlined as images, the "registry" artifact, and the repository function
that records the flow run on the registry run (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64

import pytest

from flows.links import link_flow_run, publish_registry_link, registry_markdown
from flows.summary import plots_markdown, variant_records, variant_table
from registry import repository as repo
from registry.errors import InvalidState
from registry.session import init_db, session_scope

SUMMARY = {"run_id": 7, "variants": {
    "int8": {"technique": "int8", "metrics": {"accuracy": 0.9712, "file_bytes": 20480}, "export": "/x/int8"},
    "nf4": {"technique": "nf4", "metrics": {"accuracy": 0.9650}, "export": None}},
    "registered": {"model": "mnist-mlp", "versions": {"int8": 3, "nf4": 4},
                   "promoted": {"alias": "staging", "variant": "nf4", "version": 4}}}
# a 1x1 PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def test_variant_records_match_the_markdown_table():
    records = variant_records(SUMMARY)
    assert records == [
        {"variant": "int8", "technique": "int8", "version": "3", "accuracy %": "97.12", "file KiB": "20.0"},
        {"variant": "nf4", "technique": "nf4", "version": "4 (staging)", "accuracy %": "96.50", "file KiB": "-"}]
    table = variant_table(SUMMARY).splitlines()
    assert table[0] == "| variant | technique | version | accuracy % | file KiB |"
    assert table[3] == "| nf4 | nf4 | 4 (staging) | 96.50 | - |"


def test_plots_are_inlined_up_to_the_limit(tmp_path):
    small, big = tmp_path / "prune.png", tmp_path / "big.png"
    small.write_bytes(PNG)
    big.write_bytes(PNG * 10)
    text = plots_markdown([small, big], inline_bytes=len(PNG))
    assert f"![prune.png](data:image/png;base64,{base64.b64encode(PNG).decode()})" in text
    assert f"- `{big}`" in text and "big.png](data:" not in text


def test_registry_artifact_names_the_run_and_its_versions():
    text = registry_markdown(7, SUMMARY["registered"])
    assert text.startswith("# Registry run 7")
    assert "| nf4 | `mnist-mlp:4` | staging |" in text and "| int8 | `mnist-mlp:3` |  |" in text
    assert "No versions were registered" in registry_markdown(8, None)


def test_links_are_no_ops_outside_a_flow_run():
    assert link_flow_run(7) is None
    assert publish_registry_link(7, SUMMARY["registered"]) is None


def test_repository_records_the_flow_run_on_the_run(db_url):
    init_db(db_url)
    with session_scope(db_url) as s:
        run_id = repo.create_run(s, recipe={"name": "m"}).id
    with session_scope(db_url) as s:
        repo.link_flow_run(s, run_id=run_id, flow_run_id="f-1", name="omega-fangorn",
                           url="http://127.0.0.1:4200/runs/flow-run/f-1")
    with session_scope(db_url) as s:
        run = repo.get_run(s, run_id=run_id)
        assert (run.flow_run_id, run.flow_run_name, run.flow_run_url) == (
            "f-1", "omega-fangorn", "http://127.0.0.1:4200/runs/flow-run/f-1")
        assert repo.get_run_by_flow_run_id(s, flow_run_id="f-1").id == run_id
    with session_scope(db_url) as s, pytest.raises(InvalidState, match="belongs to flow run f-1"):
        repo.link_flow_run(s, run_id=run_id, flow_run_id="f-2")
