"""Prefect flows that orchestrate the DVC stages (no model code here)."""
