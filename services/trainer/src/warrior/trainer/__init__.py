"""Trainer service: SFT on a dataset version, evaluation (its programs run by the executor), export and registration."""
