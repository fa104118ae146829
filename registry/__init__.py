"""SQL-backed model registry: ORM models, repository functions, artifact store, Alembic migrations."""
