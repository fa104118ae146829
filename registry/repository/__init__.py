"""Repository functions: keyword-only, they flush and never commit (wrap calls in `session_scope()`).

They return ORM rows (registry/models.py) read with `expire_on_commit=False` sessions, so attributes
stay readable after the scope closes; lists come back as `(rows, total)` for pagination.
Errors: NotFound, AlreadyExists, InvalidState, GateFailed (registry/errors.py).
"""

from registry.repository.artifacts import (
    GC_GRACE_SECONDS,
    add_edge,
    artifact_lineage,
    check_store,
    collect_garbage,
    get_artifact,
    list_artifacts,
    referenced_blobs,
    register_artifact,
    register_blob,
)
from registry.repository.gates import Gate, evaluate_gates, metric_value, parent_value
from registry.repository.metrics import latest_values, list_metrics, log_metrics
from registry.repository.models import (
    archive_model,
    check_model_name,
    create_model,
    get_model,
    get_or_create_model,
    list_models,
    update_model,
)
from registry.repository.promotion import best_variant, register_variants
from registry.repository.reconcile import heartbeat_run, latest_crashed_run, reconcile_runs, worker_id
from registry.repository.runs import (
    canonical_json,
    create_run,
    find_completed_stage,
    finish_stage,
    get_run,
    get_run_by_flow_run_id,
    get_stage,
    link_flow_run,
    list_runs,
    list_stages,
    recipe_hash,
    set_run_status,
    start_stage,
)
from registry.repository.tokens import (
    create_token,
    get_token,
    hash_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from registry.repository.versions import (
    ARTIFACT_BYTES,
    VERSION_PAGE_KEYS,
    LikeForLike,
    ParetoPoint,
    create_version,
    get_latest_version,
    get_version,
    get_version_by_alias,
    get_version_id,
    like_for_like,
    list_aliases,
    list_version_dicts,
    list_version_metric_dicts,
    list_versions,
    measured_hosts,
    pareto_front,
    pareto_select,
    remove_alias,
    set_alias,
    timing_metric,
    update_version,
    version_lineage,
    version_metric_rows,
    version_page,
)

__all__ = [
    "ARTIFACT_BYTES", "VERSION_PAGE_KEYS", "GC_GRACE_SECONDS", "Gate", "LikeForLike", "ParetoPoint", "add_edge", "best_variant", "register_variants", "archive_model", "artifact_lineage",
    "canonical_json", "check_model_name", "check_store", "collect_garbage", "create_model", "create_run",
    "create_token", "create_version", "evaluate_gates", "find_completed_stage", "finish_stage", "get_artifact",
    "get_latest_version", "get_model", "get_or_create_model", "get_run", "get_run_by_flow_run_id", "get_stage",
    "get_token", "get_version", "like_for_like", "measured_hosts", "timing_metric", "heartbeat_run", "latest_crashed_run", "reconcile_runs", "worker_id", "get_version_by_alias", "get_version_id", "hash_token", "latest_values", "link_flow_run",
    "list_aliases", "list_artifacts", "list_metrics", "list_models", "list_runs", "list_stages", "list_tokens",
    "list_version_dicts", "list_version_metric_dicts", "list_versions", "log_metrics", "metric_value",
    "parent_value", "pareto_front", "pareto_select", "recipe_hash", "referenced_blobs", "register_artifact", "register_blob",
    "remove_alias", "revoke_token", "set_alias", "set_run_status", "start_stage", "update_model", "update_version",
    "verify_token", "version_lineage", "version_metric_rows", "version_page",
]
