"""Every kept instruction gets one task category; the leaderboard's per-category win rates rest on it."""

from __future__ import annotations

import pytest

from warrior.instruction_miner.categories import CATEGORIES, categorize


@pytest.mark.parametrize(
    ("instruction", "category"),
    [
        ("Write a function that merges two sorted lists, raising a ValueError on bad input.", "generation"),
        ("Why does my loop not work? I get a TypeError when I call it.", "debugging"),
        ("My script crashes with a KeyError traceback, how do I fix it?", "debugging"),
        ("Write unit tests for this class using pytest.", "testing"),
        ("How can I make this function faster? It is too slow for large inputs.", "optimization"),
        ("Refactor this code to be more pythonic and readable.", "refactoring"),
        ("Convert this JavaScript function to Python.", "translation"),
        ("Explain the difference between a list and a tuple.", "explanation"),
        ("What does the yield keyword do?", "explanation"),
        ("Implement a thread-safe LRU cache with get and put.", "generation"),
    ],
)
def test_requests_are_categorized_by_their_intent(instruction: str, category: str) -> None:
    assert categorize(instruction) == category


def test_every_result_is_a_known_category() -> None:
    assert {categorize(t) for t in ("", "???", "fix", "explain")} <= set(CATEGORIES)
