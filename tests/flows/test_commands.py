"""`shrinkwrap run | runs | models | show`: a bad recipe is refused before any work (no database, no
Prefect server), and the listing commands read what a run registered."""

from __future__ import annotations

import json

import pytest

from flows.commands import parse_ref
from shrinkwrap.cli import main


def test_run_refuses_a_bad_recipe_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHRINKWRAP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SHRINKWRAP_DATABASE_URL", raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: m\nprune: {p: 1.0, q: 0.5}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "prune" in err and "p=1.0, q=0.5" in err
    assert not (tmp_path / "home" / "registry.db").exists()  # nothing was started or written


def test_parse_ref():
    assert parse_ref("m") == ("m", None, None)
    assert parse_ref("m:3") == ("m", 3, None)
    assert parse_ref("m@production") == ("m", None, "production")
    with pytest.raises(ValueError, match="must be a number"):
        parse_ref("m:x")


@pytest.mark.postgres
def test_listing_commands_read_the_registry(first_run, capsys):
    assert main(["runs"]) == 0
    assert "mnist-test" in capsys.readouterr().out
    assert main(["models"]) == 0
    assert "staging->v" in capsys.readouterr().out
    assert main(["show", "mnist-test@staging"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["aliases"] == ["staging"] and shown["metrics"]["accuracy"] > 0.5
    assert any("teacher" in line for line in shown["lineage"])
    assert main(["show", "mnist-test:999"]) == 1
    assert "no version 999" in capsys.readouterr().err
