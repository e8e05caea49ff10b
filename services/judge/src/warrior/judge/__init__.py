"""Celery worker: battles, answers from every competitor, both-order verdicts from uninvolved judges."""
