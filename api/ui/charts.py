"""Server-side geometry for the two drawings: the Pareto scatter and the lineage graph.

Both return plain numbers and strings that the templates turn into inline SVG (autoescaped, no inline
style: the CSP forbids it, so colours come from classes in ui.css). Drawing on the server keeps the page
working without JavaScript and needs no charting library: nothing to vendor, nothing to fetch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from markupsafe import Markup, escape

W, H = 720, 380
LEFT, RIGHT, TOP, BOTTOM = 78, 18, 16, 46
NODE_W, NODE_H, COL_GAP, ROW_GAP = 170, 46, 56, 18


def fmt(value: float | None) -> str:
    """A metric value for a label or a table cell: integers with thousands separators, else 4 digits."""
    if value is None:
        return "–"
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _ticks(lo: float, hi: float, log: bool, n: int = 5) -> list[float]:
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        step = max(1, (b - a) // n)
        return [10.0 ** e for e in range(a, b + 1, step) if lo <= 10.0 ** e <= hi] or [lo, hi]
    if hi == lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _scale(values: list[float], lo_px: float, hi_px: float):
    lo, hi = min(values), max(values)
    log = lo > 0 and hi / lo > 50  # byte sizes spanning orders of magnitude read better on a log axis
    f = math.log10 if log else float
    a, b = f(lo), f(hi)
    span = (b - a) or 1.0
    pad = 0.04 if b != a else 0.5  # a margin so edge points are not clipped by the frame

    def to_px(v: float) -> float:
        return lo_px + (f(v) - a + pad * span) / (span * (1 + 2 * pad)) * (hi_px - lo_px)

    return to_px, _ticks(lo, hi, log), log


def dots_markup(dots: list[tuple], href: str, x_name: str, y_name: str) -> Markup:
    """The plot's points as SVG, built here rather than in a template loop: with 10k versions the loop's
    per-value escaping cost ~400 ms. Every interpolated value is a number or escaped. Front points are
    labelled links in the Tab order; the others are links for the mouse, hidden from the keyboard and
    from screen readers (the versions table is their accessible form)."""
    href, xn, yn = escape(href), escape(x_name), escape(y_name)
    parts = []
    for cx, cy, v, on, x, y in sorted(dots, key=lambda d: d[3]):  # front last: drawn on top
        if on:
            parts.append(f'<a href="{href}{v}" class="pt front" aria-label="version {v}: {xn} {fmt(x)}, '
                         f'{yn} {fmt(y)}"><circle cx="{cx}" cy="{cy}" r="6"/></a>')
        else:
            parts.append(f'<a href="{href}{v}" class="pt" tabindex="-1" aria-hidden="true">'
                         f'<circle cx="{cx}" cy="{cy}" r="3.5"/></a>')
    return Markup("".join(parts))  # noqa: S704 - built from numbers and escaped strings only


def pareto_svg(points: list[tuple[int, float, float]], front: list[int], model: str) -> dict[str, Any]:
    """Plot geometry: one dot per (version, x, y); front dots flagged and joined by a step line."""
    if not points:
        return {"width": W, "height": H, "dots": [], "xticks": [], "yticks": [], "line": ""}
    sx, xt, xlog = _scale([p[1] for p in points], LEFT, W - RIGHT)
    sy, yt, ylog = _scale([p[2] for p in points], H - BOTTOM, TOP)
    on_front = set(front)
    dots = [(round(sx(x), 1), round(sy(y), 1), v, v in on_front, x, y) for v, x, y in points]
    by_version = {d[2]: d for d in dots}
    line = " ".join(f"{by_version[v][0]},{by_version[v][1]}" for v in front if v in by_version)
    return {"width": W, "height": H, "dots": dots, "line": line, "xlog": xlog, "ylog": ylog,
            "xticks": [(round(sx(t), 1), fmt(t)) for t in xt], "yticks": [(round(sy(t), 1), fmt(t)) for t in yt],
            "plot": (LEFT, TOP, W - RIGHT, H - BOTTOM), "href": f"/ui/models/{model}/versions/"}


def _label(node: dict) -> tuple[str, str]:
    if node["type"] == "version":
        aliases = f" ({', '.join(node['aliases'])})" if node.get("aliases") else ""
        return f"version {node['version']}{aliases}", node["model_name"]
    return f"{node['kind']} #{node['artifact_id']}", f"{node['format']} · {fmt(float(node['bytes']))} B"


def lineage_svg(graph: dict[str, list]) -> dict[str, Any]:
    """Layered layout of a lineage DAG, left to right: a node's column is its longest path from a root."""
    parents: dict[str, list[str]] = defaultdict(list)
    for e in graph["edges"]:
        parents[e["target"]].append(e["source"])
    depth: dict[str, int] = {}

    def level(nid: str, seen: frozenset = frozenset()) -> int:
        if nid not in depth:
            ps = [p for p in parents.get(nid, []) if p not in seen]
            depth[nid] = 1 + max((level(p, seen | {nid}) for p in ps), default=-1)
        return depth[nid]

    columns: dict[int, list[dict]] = defaultdict(list)
    for node in sorted(graph["nodes"], key=lambda n: n["id"]):
        columns[level(node["id"])].append(node)
    pos, nodes = {}, []
    rows = max((len(c) for c in columns.values()), default=1)
    for col, members in sorted(columns.items()):
        for row, node in enumerate(members):
            x = 10 + col * (NODE_W + COL_GAP)
            y = 10 + row * (NODE_H + ROW_GAP) + (rows - len(members)) * (NODE_H + ROW_GAP) / 2
            pos[node["id"]] = (x, y)
            title, sub = _label(node)
            nodes.append({"id": node["id"], "type": node["type"], "kind": node.get("kind", "version"), "x": x, "y": y,
                          "title": title, "sub": sub, "href": f"/ui/artifacts/{node['artifact_id']}/download"
                          if node["type"] == "artifact" else None})
    edges = []
    for e in graph["edges"]:
        if e["source"] in pos and e["target"] in pos:
            (x1, y1), (x2, y2) = pos[e["source"]], pos[e["target"]]
            x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
            mid = (x1 + x2) / 2
            edges.append({"d": f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}", "stage": e.get("stage") or "",
                          "source": e["source"], "target": e["target"]})
    width = 20 + len(columns) * (NODE_W + COL_GAP) - COL_GAP
    return {"width": max(width, NODE_W + 20), "height": 20 + rows * (NODE_H + ROW_GAP) - ROW_GAP, "nodes": nodes,
            "edges": edges, "node_w": NODE_W, "node_h": NODE_H}
