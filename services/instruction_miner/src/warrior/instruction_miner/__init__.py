"""Celery worker: pre-query instruction mining and screening (dedup, filters)."""
