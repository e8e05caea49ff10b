"""Paired evidence that a trained model beats its base: pass@1 difference over the same problems,
a bootstrap 95% interval drawn over problems, and the problems gained and lost.

Both models answer the same problems, so the comparison is paired: resampling problems (not each
model's results separately) keeps the interval as narrow as the pairing allows, and honest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

BOOTSTRAP_ROUNDS = 10_000


def paired_difference(
    base: Mapping[str, bool], trained: Mapping[str, bool], *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> dict[str, object]:
    """pass@1 of each, their difference (trained - base) with a percentile bootstrap 95% interval over
    problems, and the problems each got right that the other did not. Both maps must hold the same ids."""
    if set(base) != set(trained):
        missing = sorted(set(base) ^ set(trained))[:5]
        raise ValueError(f"base and trained were scored on different problems (e.g. {missing})")
    if not base:
        raise ValueError("no problems to compare")
    ids = sorted(base)
    a = np.array([base[i] for i in ids], dtype=np.float64)
    b = np.array([trained[i] for i in ids], dtype=np.float64)
    delta = b - a
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(rounds, len(ids)))
    means = delta[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "problems": len(ids),
        "base_pass_at_1": round(float(a.mean()), 4),
        "trained_pass_at_1": round(float(b.mean()), 4),
        "difference": round(float(delta.mean()), 4),
        "interval_95": [round(float(low), 4), round(float(high), 4)],
        "above_zero": bool(low > 0),
        "gained": [i for i in ids if trained[i] and not base[i]],
        "lost": [i for i in ids if base[i] and not trained[i]],
        "bootstrap_rounds": rounds,
    }


# The columns of `paired_rows`, for a report's table (a leading "compared" column is the caller's choice).
PAIRED_COLUMNS = ("benchmark", "problems", "difference", "interval_95", "above_zero", "gained", "lost")


def paired_rows(paired: Mapping[str, Any], label: str = "") -> list[dict[str, Any]]:
    """Table rows of a {"benchmarks": {name: paired_difference}, "combined": ... or None} record."""
    found = [*paired.get("benchmarks", {}).items(), ("combined", paired.get("combined"))]
    return [
        {"compared": label, "benchmark": name, "problems": p["problems"], "difference": f"{p['difference']:+.3f}",
         "interval_95": f"[{p['interval_95'][0]:+.3f}, {p['interval_95'][1]:+.3f}]",
         "above_zero": "yes" if p["above_zero"] else "no", "gained": len(p["gained"]), "lost": len(p["lost"])}
        for name, p in found if p
    ]  # fmt: skip
