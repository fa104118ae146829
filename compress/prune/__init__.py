"""Pruning: PQ Index, sparsity-informed adaptive pruning (SAP) and the magnitude baselines.

Paper: Diao et al., "Pruning Deep Neural Networks from a Sparsity Perspective", ICLR 2023.

    from compress.prune import PQIPruneConfig, prune_, iterative_prune, save_sparse
    report = prune_(model, PQIPruneConfig(scope="layer"))    # one round, in place
    save_sparse("model.safetensors", model.state_dict())     # pruned zeros cost 1 bit each
    small = prune_structured_(model, config=PQIPruneConfig())  # physically smaller dense model
    structured_llm_prune_(llama, StructuredLLMPruneConfig(target=0.25), calibration)  # Minitron-style
"""

from compress.prune.api import (
    LayerPruneStats,
    MagnitudePruneConfig,
    PQIPruneConfig,
    PruneReport,
    prune_,
)
from compress.prune.masks import apply_masks_, keep_masked, mask_gradients_, prunable_weights, sparsity
from compress.prune.pq_index import pq_index, pq_upper_bound, prune_ratio, retain_bound
from compress.prune.report import layers_table, plot_rounds, rounds_table
from compress.prune.schedule import RoundReport, iterative_prune, one_shot_curve
from compress.prune.sparse import is_sparse_file, load_sparse, save_sparse
from compress.prune.structured import prune_structured_
from compress.prune.structured_llm import StructuredLLMPruneConfig, structured_llm_prune_

__all__ = [
    "LayerPruneStats", "MagnitudePruneConfig", "PQIPruneConfig", "PruneReport", "RoundReport",
    "apply_masks_", "is_sparse_file", "iterative_prune", "keep_masked", "layers_table", "load_sparse",
    "mask_gradients_", "one_shot_curve", "plot_rounds", "pq_index", "pq_upper_bound", "prunable_weights",
    "prune_", "prune_ratio", "prune_structured_", "retain_bound", "rounds_table", "save_sparse", "sparsity",
    "StructuredLLMPruneConfig", "structured_llm_prune_",
]
