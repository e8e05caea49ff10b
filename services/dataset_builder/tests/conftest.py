"""Rows as the builder makes them, for the dataset builder's tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from warrior.dataset_builder.rows import candidate_row, training_row


def make_row(
    i: int,
    *,
    winner: str = "qwen",
    text: str | None = None,
    answer: str | None = None,
    attacker: str = "smol",
    category: str | None = None,
    language: str | None = None,
    newcomer: str | None = None,
    ratings_key: str = "runs/c1/ratings/x.json",
) -> dict[str, Any]:
    """Row `i` (instruction id `i<i>`, zero-padded so ids sort like numbers) through candidate_row and training_row.

    `newcomer` adds a third expert to the battle, as when an expert joined the campaign late.
    """
    instruction: dict[str, Any] = {
        "id": f"i{i:03d}",
        "campaign": "c1",
        "text": text if text is not None else f"Task {i}?",
        "attacker": attacker,
        "attacker_revision": "r0",
    }
    if category is not None:
        instruction["category"] = category
    if language is not None:
        instruction["language"] = language
    experts = ["qwen", "smol"] + ([newcomer] if newcomer else [])
    answers = {
        name: {"text": f"{name} answer {i}", "revision": f"r-{name}", "finish_reason": "stop"} for name in experts
    }
    if answer is not None:
        answers[winner]["text"] = answer
    battle = {
        "answers": answers,
        "pairs": [{"a": "qwen", "b": "smol", "votes_a": 1, "votes_b": 0, "ties": 0}],
        "judgments": [{"judge": "gemma"}],
    }
    scores = {name: round(0.8 if name == winner else 0.2, 2) for name in experts}
    candidate = candidate_row(instruction, battle, {"winner": winner, "scores": scores})
    return training_row(candidate, winner, scores, ratings_key)


@pytest.fixture()
def row() -> Callable[..., dict[str, Any]]:
    """The make_row factory."""
    return make_row
