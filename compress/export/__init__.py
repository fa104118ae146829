"""Weights-only model export: safetensors + architecture/config, model card, sha256 manifest, atomic.

    result = export_model(model, Path("exports/mnist-int8"), metadata={"recipe_hash": h}, metrics=m)
    model = load_export(result.path)          # verifies the manifest first
"""

from compress.export.api import ExportResult, export_model, library_versions
from compress.export.loader import load_export
from compress.export.manifest import ExportCorrupt, verify_export
from compress.export.weights import PickleRefused, load_weights

__all__ = ["ExportCorrupt", "ExportResult", "PickleRefused", "export_model", "library_versions", "load_export",
           "load_weights", "verify_export"]
