"""Trainer service: SFT on a dataset version, evaluation in a sandbox, export and registration."""
