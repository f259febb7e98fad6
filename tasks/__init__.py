"""Thin Prefect ``@task`` wrappers of the core, one per unit the UI should show."""
