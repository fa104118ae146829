"""Lineage as graph JSON: `{"nodes": [{id, type, ...}], "edges": [{source, target, stage}]}`.

Node ids are typed strings (`artifact:12`, `version:mnist-mlp:3`) so a client can draw artifacts and
versions in one graph; edges point from parent to child (teacher -> soft-labels -> checkpoint -> export).
"""

from __future__ import annotations

from typing import Any

from registry.models import Artifact, ArtifactEdge, ModelVersion


def artifact_node(row: Artifact) -> dict[str, Any]:
    return {"id": f"artifact:{row.id}", "type": "artifact", "artifact_id": row.id, "kind": row.kind,
            "format": row.format, "sha256": row.sha256, "bytes": row.bytes, "stage_run_id": row.stage_run_id,
            "created_at": row.created_at.isoformat() if row.created_at else None}


def edge(e: ArtifactEdge) -> dict[str, Any]:
    return {"source": f"artifact:{e.parent_id}", "target": f"artifact:{e.child_id}", "stage": e.stage}


def artifact_graph(lineage: dict[str, list]) -> dict[str, list]:
    """Registry `artifact_lineage` output ({"nodes": [Artifact], "edges": [ArtifactEdge]}) as graph JSON."""
    return {"nodes": [artifact_node(n) for n in lineage["nodes"]], "edges": [edge(e) for e in lineage["edges"]]}


def version_graph(version: ModelVersion, lineage: dict[str, list]) -> dict[str, list]:
    """The version as a node fed by its artifact, then the artifact's ancestors."""
    graph = artifact_graph(lineage)
    vid = f"version:{version.model_name}:{version.version}"
    graph["nodes"].insert(0, {"id": vid, "type": "version", "model_name": version.model_name,
                              "version": version.version, "run_id": version.run_id, "aliases": version.aliases})
    graph["edges"].insert(0, {"source": f"artifact:{version.artifact_id}", "target": vid, "stage": "register"})
    return graph
