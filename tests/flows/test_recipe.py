"""Recipes: shipped files validate; typos, unknown techniques and bad parameters are refused before any
work, with the offending field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.recipe import Recipe, RecipeError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "npz_example", "smollm2"])
def test_shipped_recipes_validate(name):
    path = RECIPES / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} not shipped")
    recipe = Recipe.from_yaml(path)
    assert recipe.name
    assert Recipe.model_validate(recipe.model_dump(mode="json")) == recipe  # round-trips (the API body)


def _write(tmp_path, data) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _error(tmp_path, data) -> str:
    with pytest.raises(RecipeError) as info:
        Recipe.from_yaml(_write(tmp_path, data))
    return str(info.value)


def test_typo_names_the_field(tmp_path):
    msg = _error(tmp_path, {"name": "m", "distill": {"temprature": 3.0}})
    assert "distill.temprature" in msg and "unknown field" in msg


def test_unknown_top_level_section(tmp_path):
    assert "prunning" in _error(tmp_path, {"name": "m", "prunning": {"p": 0.5}})


def test_unknown_technique(tmp_path):
    msg = _error(tmp_path, {"name": "m", "quantize": {"variants": [{"name": "q", "technique": "int3"}]}})
    assert "quantize.variants.0.technique" in msg and "int3" in msg
    msg = _error(tmp_path, {"name": "m", "prune": {"technique": "random"}})
    assert "prune.technique" in msg


def test_p_not_below_q_refused_by_the_compress_config(tmp_path):
    msg = _error(tmp_path, {"name": "m", "prune": {"p": 1.0, "q": 1.0}})
    assert msg.count("prune") >= 1 and "p=1.0, q=1.0" in msg  # PQIPruneConfig's own message
    # a switched-off stage is not validated: its parameters do not matter
    Recipe.from_yaml(_write(tmp_path, {"name": "m", "prune": {"enabled": False, "p": 1.0, "q": 1.0}}))


def test_compress_config_errors_surface(tmp_path):
    assert "temperature" in _error(tmp_path, {"name": "m", "distill": {"temperature": 0}})
    assert "threshold" in _error(tmp_path, {"name": "m", "quantize": {"variants": [
        {"name": "q", "technique": "int8", "options": {"threshold": -1}}]}})
    assert "quantize.variants.0" in _error(tmp_path, {"name": "m", "quantize": {"variants": [
        {"name": "q", "technique": "nf4", "options": {"no_such_option": 1}}]}})


def test_cross_section_rules(tmp_path):
    assert "teacher_data" in _error(tmp_path, {"name": "m", "teacher_data": {"enabled": False}})
    assert "n_transfer" in _error(tmp_path, {"name": "m", "dataset": {"n_train": 100},
                                             "teacher_data": {"n_transfer": 50}})
    assert "dataset.path" in _error(tmp_path, {"name": "m", "dataset": {"name": "npz"}})
    assert "names must be unique" in _error(tmp_path, {"name": "m", "quantize": {"variants": [
        {"name": "a", "technique": "int8"}, {"name": "a", "technique": "nf4"}]}})


def test_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        Recipe.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.from_yaml(bad)
    bad.write_text("- a list")
    with pytest.raises(RecipeError, match="mapping"):
        Recipe.from_yaml(bad)


def test_relative_dataset_path_resolves_against_the_recipe_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.npz").write_bytes(b"")
    recipe = Recipe.from_yaml(_write(tmp_path, {"name": "m", "dataset": {"name": "npz", "path": "data/d.npz"},
                                                "teacher": {"source": "train"}}))
    assert recipe.dataset.path == str((tmp_path / "data" / "d.npz").resolve())


def test_recipe_hash_changes_with_any_parameter():
    a = Recipe.model_validate({"name": "m"})
    b = Recipe.model_validate({"name": "m", "prune": {"rounds": 3}})
    assert a.recipe_hash() == Recipe.model_validate({"name": "m"}).recipe_hash() != b.recipe_hash()
