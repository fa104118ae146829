"""Prefect 3 flows and tasks: thin wrappers that call compress/ and record into registry/."""
