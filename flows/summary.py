"""The run summary: a markdown table of variants (size, quality, latency), published as a Prefect markdown
artifact with links to the exports and the plots, and printed by `shrinkwrap run`."""

from __future__ import annotations

from typing import Any

from flows.recipe import Recipe

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


def variant_table(summary: dict[str, Any]) -> str:
    """Markdown: one row per variant with its registry version and the metrics it has."""
    versions = ((summary.get("registered") or {}).get("versions")) or {}
    present = {k for v in summary["variants"].values() for k in (v.get("metrics") or {})}
    columns = [c for c in COLUMNS if c[0] in present] or list(COLUMNS)
    promoted = ((summary.get("registered") or {}).get("promoted")) or {}
    head = "| variant | technique | version | " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|---|---|---:|" + "---:|" * len(columns)
    rows = []
    for name, v in summary["variants"].items():
        m = v.get("metrics") or {}
        version = versions.get(name, "-")
        if promoted and promoted.get("variant") == name:
            version = f"{version} ({promoted['alias']})"
        cells = [fmt(m[key]) if key in m else "-" for key, _, fmt in columns]
        rows.append(f"| {name} | {v['technique']} | {version} | " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *rows])


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


def publish_summary(recipe: Recipe, summary: dict[str, Any]) -> None:
    """Prefect artifacts of the run: the markdown summary, a link per export and per plot."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    from flows.record import plot_paths

    key = "".join(c if c.isalnum() else "-" for c in recipe.name.lower())[:60]
    create_markdown_artifact(key=f"{key}-summary", markdown=summary_markdown(recipe, summary),
                             description=f"variants of {recipe.name}")
    for name, v in summary["variants"].items():
        if v.get("export"):
            create_link_artifact(link=f"file://{v['export']}", link_text=f"{name} export",
                                 description=f"export of variant {name}")
    for path in plot_paths(summary["run_id"]):
        create_link_artifact(link=f"file://{path}", link_text=path.name, description="plot")
