"""Celery worker: votes to local scores, Elo and Bradley-Terry ratings, winners."""
