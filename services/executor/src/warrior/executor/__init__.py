"""Executor service: runs untrusted, model-generated programs in a sandbox, here or for other services over Celery."""
