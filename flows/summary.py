"""The run summary: a markdown table of variants (size, quality, latency), printed by `shrinkwrap run`
and published on the flow run page of the Prefect dashboard (Artifacts tab) as:

- `<model>-summary`: markdown, the variant table, gate failures and each export path;
- `<model>-variants`: a table artifact, one row per variant (sortable in the UI);
- `<model>-plots`: markdown with each PNG plot inlined (a data: URI, since a browser will not load file://
  from an http page), falling back to its path above PLOT_INLINE_BYTES;
- one link artifact per export (`file://` path; the export folder is on the machine that ran the flow).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from flows.recipe import Recipe

PLOT_INLINE_BYTES = 512 * 1024  # larger PNGs are listed by path (artifacts live in Prefect's database)

COLUMNS = (  # (metric, header, format)
    ("accuracy", "accuracy %", lambda v: f"{100 * v:.2f}"),
    ("agreement", "agreement %", lambda v: f"{100 * v:.2f}"),
    ("kl_to_teacher", "KL", lambda v: f"{v:.4f}"),
    ("perplexity", "perplexity", lambda v: f"{v:.2f}"),
    ("tokens_per_s", "tokens/s", lambda v: f"{v:.1f}"),
    ("file_bytes", "file KiB", lambda v: f"{v / 1024:.1f}"),
    ("weight_bytes", "weight KiB", lambda v: f"{v / 1024:.1f}"),
    ("latency_p50_ms", "p50 ms", lambda v: f"{v:.3f}"),
    ("latency_p95_ms", "p95 ms", lambda v: f"{v:.3f}"),
)


def variant_cells(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells: one row per variant with its registry version and the metrics it has."""
    versions = ((summary.get("registered") or {}).get("versions")) or {}
    present = {k for v in summary["variants"].values() for k in (v.get("metrics") or {})}
    columns = [c for c in COLUMNS if c[0] in present] or list(COLUMNS)
    promoted = ((summary.get("registered") or {}).get("promoted")) or {}
    rows = []
    for name, v in summary["variants"].items():
        m = v.get("metrics") or {}
        version = str(versions.get(name, "-"))
        if promoted and promoted.get("variant") == name:
            version = f"{version} ({promoted['alias']})"
        rows.append([name, v["technique"], version, *(fmt(m[key]) if key in m else "-" for key, _, fmt in columns)])
    return ["variant", "technique", "version", *(h for _, h, _ in columns)], rows


def variant_table(summary: dict[str, Any]) -> str:
    """Markdown: one row per variant with its registry version and the metrics it has."""
    headers, rows = variant_cells(summary)
    sep = "|---|---|---:|" + "---:|" * (len(headers) - 3)
    return "\n".join(["| " + " | ".join(headers) + " |", sep, *("| " + " | ".join(r) + " |" for r in rows)])


def variant_records(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The variant table as records, for a Prefect table artifact."""
    headers, rows = variant_cells(summary)
    return [dict(zip(headers, row, strict=True)) for row in rows]


def plots_markdown(paths: list[Path], inline_bytes: int = PLOT_INLINE_BYTES) -> str:
    """Each PNG inlined as an image (data: URI) up to `inline_bytes`, else named by its path."""
    lines = ["# Plots", ""]
    for path in paths:
        if path.is_file() and path.stat().st_size <= inline_bytes:
            data = base64.b64encode(path.read_bytes()).decode()
            lines += [f"## {path.name}", "", f"![{path.name}](data:image/png;base64,{data})", ""]
        else:
            lines += [f"- `{path}`"]
    return "\n".join(lines)


def summary_markdown(recipe: Recipe, summary: dict[str, Any]) -> str:
    lines = [f"# {recipe.name}: compression run {summary['run_id']}", "", variant_table(summary), ""]
    reg = summary.get("registered") or {}
    for name, failed in (reg.get("gate_failures") or {}).items():
        if failed:
            lines.append(f"- gates failed for `{name}`: " + "; ".join(failed))
    lines += ["", "## Exports", ""]
    lines += [f"- `{name}`: `{v['export']}`" for name, v in summary["variants"].items() if v.get("export")]
    lines += ["", f"Recipe hash `{recipe.recipe_hash()[:16]}`; lineage: `shrinkwrap show {recipe.name}`."]
    return "\n".join(lines)


def artifact_key(name: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in name.lower())[:60]


def publish_summary(recipe: Recipe, summary: dict[str, Any]) -> None:
    """Prefect artifacts of the run: the markdown summary, the variant table, the plots, a link per export."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    from flows.links import publish_registry_link
    from flows.record import plot_paths

    key = artifact_key(recipe.name)
    create_markdown_artifact(key=f"{key}-summary", markdown=summary_markdown(recipe, summary),
                             description=f"variants of {recipe.name}")
    create_table_artifact(key=f"{key}-variants", table=variant_records(summary),
                          description=f"variants of {recipe.name}: registry version and metrics")
    for name, v in summary["variants"].items():
        if v.get("export"):
            create_link_artifact(link=f"file://{v['export']}", link_text=f"{name} export",
                                 description=f"export of variant {name}")
    plots = plot_paths(summary["run_id"])
    if plots:
        create_markdown_artifact(key=f"{key}-plots", markdown=plots_markdown(plots),
                                 description=f"plots of run {summary['run_id']}")
    publish_registry_link(summary["run_id"], summary.get("registered"))
