"""FastAPI admin API over the registry, with run triggering through Prefect."""
