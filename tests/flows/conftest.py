"""Flow fixtures: a PostgreSQL registry (migrated), a private artifact store and export folder, all
wired through the SHRINKWRAP_* variables the flow reads, and a tiny-budget version of recipes/mnist.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def root_conftest(config):
    """The lead's tests/conftest.py module (create_pg_database / drop_pg_database live there)."""
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == str(ROOT / "tests" / "conftest.py"):
            return plugin
    raise RuntimeError("tests/conftest.py is not loaded")


@pytest.fixture(scope="session")
def registry_env(request, tmp_path_factory):
    """SHRINKWRAP_DATABASE_URL -> a fresh migrated PostgreSQL database; artifacts/exports in a temp dir."""
    from registry.session import dispose_engines, init_db

    lead = root_conftest(request.config)
    create_pg_database, drop_pg_database = lead.create_pg_database, lead.drop_pg_database
    url = create_pg_database("sw_flows")
    init_db(url)
    root = tmp_path_factory.mktemp("flows")
    mp = pytest.MonkeyPatch()
    mp.setenv("SHRINKWRAP_DATABASE_URL", url)
    mp.setenv("SHRINKWRAP_ARTIFACT_ROOT", str(root / "artifacts"))
    mp.setenv("SHRINKWRAP_EXPORT_DIR", str(root / "exports"))
    yield url
    mp.undo()
    dispose_engines()
    drop_pg_database(url)


@pytest.fixture(scope="session")
def first_run(prefect, registry_env):
    """One run of the tiny mnist recipe, shared by the flow and deployment tests."""
    from flows_testing import tiny_mnist

    from flows.flow import compress_model
    from flows.recipe import Recipe

    return compress_model(Recipe.model_validate(tiny_mnist()))
