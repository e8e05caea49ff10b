"""Celery worker: rows with lineage, immutable dataset versions."""
