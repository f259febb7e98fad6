"""Prefect flows: the thin orchestration shell around the core in ``ost``."""
