-- docker-compose: PostgreSQL holds two databases, the registry (POSTGRES_DB=shrinkwrap) and Prefect's.
CREATE DATABASE prefect OWNER shrinkwrap;
