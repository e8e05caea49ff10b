"""Shared library of the arena: settings, object store, registry, Celery app, gRPC client, config schema."""
