"""Model card (`README.md`) of an export: what the model is, its metrics, lineage and the command that
reproduces it. Front matter follows the Hugging Face model-card convention so the hub renders it."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _lineage_line(step: Any) -> str:
    if isinstance(step, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in step.items())
    return _fmt(step)


def render_card(*, name: str, layout: str, architecture: str, quantized: bool, sparse: bool,
                metadata: dict[str, str], metrics: dict[str, Any] | None, lineage: list | None,
                reproduce: str | None) -> str:
    tags = ["shrinkwrap", *(["quantized"] if quantized else []), *(["sparse"] if sparse else [])]
    lines = ["---", "library_name: " + ("transformers" if layout == "hf" else "pytorch"),
             "tags: [" + ", ".join(tags) + "]", "---", "", f"# {name}", "",
             f"Exported by shrinkwrap: {architecture}, {layout} layout"
             + (", quantized" if quantized else "") + (", sparse weights" if sparse else "") + ".", "",
             "Weights only (safetensors); no optimizer or training state. `manifest.json` lists the sha256 of "
             "every file; `compress.export.load_export(path)` verifies it before loading.", ""]
    lines += ["## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|", *(f"| {_fmt(k)} | {_fmt(v)} |" for k, v in metrics.items())]
    else:
        lines.append("No metrics recorded.")
    lines += ["", "## Lineage", ""]
    lines += [f"{i}. {_lineage_line(step)}" for i, step in enumerate(lineage or [], 1)] or ["No lineage recorded."]
    lines += ["", "## Reproduce", ""]
    lines += ["```bash", reproduce, "```"] if reproduce else ["No reproduce command recorded."]
    lines += ["", "## Metadata", "", "| key | value |", "|---|---|",
              *(f"| {_fmt(k)} | {_fmt(v)} |" for k, v in sorted(metadata.items())), ""]
    return "\n".join(lines)
