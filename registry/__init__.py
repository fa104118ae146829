"""SQL-backed model registry: ORM models, repository functions, artifact store, Alembic migrations.

    from registry.session import session_scope
    from registry.store import ArtifactStore
    from registry.config import artifact_root
    import registry.repository as repo

    store = ArtifactStore(artifact_root())
    with session_scope() as s:                      # commits at the end, rolls back on error
        run = repo.create_run(s, recipe=recipe.model_dump())
        stage = repo.start_stage(s, run_id=run.id, name="prune", params_hash=h, cache_key=key)
        ckpt = repo.register_artifact(s, store, kind="checkpoint", path="student.pt", format="pt",
                                      stage_run_id=stage.id, parents=[teacher_id])
        repo.log_metrics(s, metrics={"accuracy": 0.97}, artifact_id=ckpt.id, run_id=run.id)
        v = repo.create_version(s, model_name="mnist-mlp", artifact_id=ckpt.id, run_id=run.id)
        repo.set_alias(s, model_name="mnist-mlp", version=v.version, alias="production",
                       gates=[repo.Gate.max_drop("accuracy", 0.01)])

Layout: models.py (ORM rows) · session.py (engines, session_scope, check_schema, init_db) ·
store.py (content-addressed blobs) · repository/ (keyword-only functions that flush, never commit) ·
errors.py (NotFound, AlreadyExists, InvalidState, GateFailed, SchemaOutOfDate, ArtifactCorrupt) ·
migrations/ (Alembic, `shrinkwrap db upgrade`) · cli.py (`shrinkwrap db upgrade|current|check|fsck|gc`).
"""
