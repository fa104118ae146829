"""The shape the code must keep (issue 13): layers import downwards only, no module imports another in
a cycle, nothing outside the task and technique tables dispatches on a task or technique name, and
each shared concept has one definition."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compress", "flows", "registry", "api")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module `name` imports, at module level or inside functions."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = _imports(name, path, modules)
        # a package importing its own submodules (re-exports) is not a dependency between modules
        graph[name] = {e for e in edges if not e.startswith(name + ".")}
    return graph


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_cycle_detector_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer,forbidden", [
    ("compress", ("flows", "registry", "api", "prefect", "sqlalchemy", "fastapi")),
    ("registry", ("flows", "api", "compress", "prefect")),
    ("flows", ("api",)),
])
def test_layers_import_downwards_only(layer, forbidden):
    bad = []
    for path in (ROOT / layer).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in forbidden]
        if "importlib.import_module(" in path.read_text() and layer != "compress":
            bad.append(f"{path.relative_to(ROOT)}: reaches a module through importlib")
    assert bad == []


DISPATCH = re.compile(r"""\b(task|technique)\b\s*(==|!=)\s*["']|\b(task|technique)\b\s+(not\s+)?in\s+[(\[{]\s*["']""")


def test_no_dispatch_on_task_or_technique_names_outside_the_tables():
    """`if recipe.task == "causal_lm"` and `technique == "none"` belong inside a task or technique
    module; the flows, the API, the registry, export and evaluation ask the tables instead."""
    allowed = {ROOT / "compress" / "techniques.py"}
    offenders = []
    for pkg in ("flows", "api", "registry", "compress/export", "compress/evaluate", "compress/quantize/api.py"):
        paths = [ROOT / pkg] if pkg.endswith(".py") else (ROOT / pkg).rglob("*.py")
        for path in paths:
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if DISPATCH.search(line) and path not in allowed:
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []


def test_dispatch_pattern_catches_the_old_shapes():
    for line in ('if recipe.task == "causal_lm":', "sparse = variant.technique == 'none'",
                 'if technique in ("int8", "nf4"):'):
        assert DISPATCH.search(line), line
    assert not DISPATCH.search("task = get_task(recipe.task)")


def test_one_definition_of_each_shared_concept():
    from api import schemas
    from compress.export import library_versions
    from flows import flow, recipe
    from registry import config
    from registry.repository.gates import Gate

    assert recipe.PromoteParams.model_fields["gates"].annotation == list[Gate]
    assert schemas.GateCreate is Gate
    assert flow.library_versions is library_versions and "torch" in library_versions()
    assert not hasattr(flow, "RUN_TAG_PREFIX") and config.run_id_from_tags([config.run_tag(7)]) == 7
    for path in ("api/settings.py", "api/prefect_runs.py", "flows/deploy.py", "flows/flow.py"):
        text = (ROOT / path).read_text()
        assert '"compress-model/default"' not in text and '"shrinkwrap-run' not in text, path


def test_one_recipe_hash(tmp_path):
    """The flow's recipe hash and the registry run's hash are one function of one serialisation."""
    from flows.recipe import Recipe
    from registry.repository.runs import recipe_hash

    recipe = Recipe.from_yaml(ROOT / "recipes" / "mnist.yaml")
    assert recipe.recipe_hash() == recipe_hash(recipe.model_dump(mode="json"))
    assert recipe.recipe_hash() == recipe_hash(Recipe.model_validate(recipe.model_dump(mode="json")).model_dump(mode="json"))
