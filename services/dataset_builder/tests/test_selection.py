"""Selection: duplicates go with a recorded reason, KCenterGreedy keeps a spread-out, reproducible subset."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from warrior.common.campaign_config import DatasetConfig
from warrior.dataset_builder.selection import (
    SelectionConfig,
    k_center_greedy,
    near_duplicates,
    select,
    select_rows,
)

RowFactory = Callable[..., dict[str, Any]]


def _clusters(sizes: list[int], dim: int = 16, spread: float = 0.3, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Points around well separated centres (10 x a basis vector each), shuffled; returns points and cluster labels."""
    rng = np.random.default_rng(seed)
    points, labels = [], []
    for c, size in enumerate(sizes):
        centre = np.zeros(dim)
        centre[c] = 10.0
        points.append(centre + rng.normal(scale=spread, size=(size, dim)))
        labels += [c] * size
    order = rng.permutation(len(labels))
    return np.concatenate(points)[order], [labels[i] for i in order]


def _covering_radius(points: np.ndarray, chosen: list[int]) -> float:
    """The largest distance from any point to its nearest chosen point."""
    distances = np.linalg.norm(points[:, None, :] - points[chosen][None, :, :], axis=2)
    return float(distances.min(axis=1).max())


@pytest.mark.parametrize("seed", range(8))
def test_every_cluster_gets_a_row_before_any_cluster_gets_a_second(seed: int) -> None:
    # One dense cluster and five small ones: a random sample would mostly come from the dense one.
    points, labels = _clusters([60, 4, 4, 4, 4, 4], seed=seed)
    picks = k_center_greedy(points, 6, seed=seed)
    assert sorted(labels[i] for i in picks) == [0, 1, 2, 3, 4, 5]
    longer = k_center_greedy(points, 9, seed=seed)
    assert longer[:6] == picks  # the greedy order: a larger target only adds rows
    assert len(set(longer)) == 9


def test_k_center_covers_the_space_better_than_random_subsets() -> None:
    points = np.random.default_rng(1).uniform(size=(400, 2))
    radius = _covering_radius(points, k_center_greedy(points, 20, seed=0))
    rng = random.Random(0)
    random_radii = [_covering_radius(points, rng.sample(range(400), 20)) for _ in range(20)]
    assert radius < min(random_radii)


def test_k_center_never_picks_a_row_twice_even_among_identical_points() -> None:
    points = np.zeros((5, 3))
    assert sorted(k_center_greedy(points, 4, seed=3)) == sorted(set(k_center_greedy(points, 4, seed=3)))
    assert k_center_greedy(points, 9, seed=0) == [0, 1, 2, 3, 4]


def test_selection_is_reproducible_with_a_seed_whatever_the_row_order(row: RowFactory) -> None:
    rows = [row(i) for i in range(60)]
    embeddings = np.random.default_rng(7).normal(size=(60, 8))
    config = SelectionConfig(target_rows=10, seed=5)

    def chosen(rows_: list[dict], embeddings_: np.ndarray, config_: SelectionConfig = config) -> list[str]:
        return [r["lineage"]["instruction_id"] for r in select(rows_, embeddings_, config_).rows]

    first = chosen(rows, embeddings)
    assert len(first) == 10 and first == sorted(first)  # kept rows come back in instruction-id order
    assert chosen(rows, embeddings) == first
    order = np.random.default_rng(0).permutation(60)
    assert chosen([rows[i] for i in order], embeddings[order]) == first
    by_seed = {tuple(chosen(rows, embeddings, SelectionConfig(target_rows=10, seed=s))) for s in range(6)}
    assert len(by_seed) > 1  # the seed does choose the first centre


def test_exact_duplicates_are_removed_and_counted(row: RowFactory) -> None:
    rows = [
        row(0, text="Reverse a string in Python.", answer="def rev(s):\n    return s[::-1]"),
        row(1, text="  reverse a STRING in python. ", answer="def rev(s):\n  return s[::-1]"),  # same once normalised
        row(2, text="Reverse a string in Python.", answer="def rev(s):\n    return ''.join(reversed(s))"),
        row(3, text="Sort a list of tuples by their second item."),
    ]
    selection = select(rows, None, SelectionConfig())
    assert [r["lineage"]["instruction_id"] for r in selection.rows] == ["i000", "i002", "i003"]
    assert selection.dropped == {"i001": {"reason": "exact_duplicate", "of": "i000"}}
    assert selection.drop_counts == {"not_verified": 0, "exact_duplicate": 1, "near_duplicate": 0, "not_selected": 0}
    record = selection.record()
    assert record["input_rows"] == 4 and record["kept_rows"] == 3 and record["embedding_model"] is None


def test_near_duplicates_are_removed_and_counted(row: RowFactory) -> None:
    base = np.eye(6)
    close = base[0] * 0.99 + base[5] * np.sqrt(1 - 0.99**2)  # cosine 0.99 with row 0
    farther = base[1] * 0.9 + base[5] * np.sqrt(1 - 0.9**2)  # cosine 0.90 with row 1: a different task
    embeddings = np.stack([base[0], base[1], close, farther, base[2], 3.0 * base[2]])  # the last: same direction
    rows = [row(i) for i in range(6)]
    selection = select(rows, embeddings, SelectionConfig(near_dup_threshold=0.95))
    assert [r["lineage"]["instruction_id"] for r in selection.rows] == ["i000", "i001", "i003", "i004"]
    assert selection.dropped == {
        "i002": {"reason": "near_duplicate", "of": "i000"},
        "i005": {"reason": "near_duplicate", "of": "i004"},
    }
    assert selection.drop_counts["near_duplicate"] == 2
    assert near_duplicates(embeddings, 0.95) == [None, None, 0, None, None, 4]


def test_stages_run_in_order_and_every_dropped_row_is_accounted_for(row: RowFactory) -> None:
    points, _ = _clusters([10, 10, 10, 10], dim=8, seed=2)
    rows = [row(i) for i in range(40)]
    rows.append(row(40, text=rows[3]["messages"][0]["content"], answer=rows[3]["messages"][1]["content"]))
    points = np.vstack([points, points[3] + 0.01])
    points = np.vstack([points, points[7]])
    rows.append(row(41))  # same embedding as row 7, different text: a near duplicate
    selection = select(rows, points, SelectionConfig(target_rows=8, seed=1, near_dup_threshold=0.999))
    counts = selection.drop_counts
    assert counts["exact_duplicate"] == 1 and counts["near_duplicate"] >= 1
    assert counts["not_selected"] == 42 - 8 - counts["exact_duplicate"] - counts["near_duplicate"]
    assert len(selection.rows) == 8
    kept = {r["lineage"]["instruction_id"] for r in selection.rows}
    assert kept.isdisjoint(selection.dropped) and len(kept) + len(selection.dropped) == 42


def test_embeddings_are_required_only_when_the_config_compares_instructions(row: RowFactory) -> None:
    rows = [row(i) for i in range(3)]
    assert len(select(rows, None, SelectionConfig(target_rows=5)).rows) == 3  # nothing to subsample
    with pytest.raises(ValueError, match="embeddings"):
        select(rows, None, SelectionConfig(target_rows=2))
    with pytest.raises(ValueError, match="2 embeddings for 3 rows"):
        select(rows, np.zeros((2, 4)), SelectionConfig())


def test_settings_come_from_the_dataset_section_with_defaults() -> None:
    assert SelectionConfig.from_dataset_config(DatasetConfig()) == SelectionConfig()
    configured = DatasetConfig(name="arena", target_rows=500, seed=3, near_dup_threshold=0.9)
    assert SelectionConfig.from_dataset_config(configured) == SelectionConfig(
        target_rows=500, seed=3, near_dup_threshold=0.9
    )


def test_the_shared_embedder_catches_a_reworded_instruction(row: RowFactory) -> None:
    texts = [
        "Write a Python function that reverses a string.",
        "Implement an LRU cache in Python with get and put in constant time.",
        "Write a python function which reverses a given string.",
        "Parse an ISO 8601 date string and return the day of the week.",
        "Count word frequencies in a text file and print the ten most common words.",
    ]
    rows = [row(i, text=t) for i, t in enumerate(texts)]
    selection = select_rows(rows, SelectionConfig(near_dup_threshold=0.9, target_rows=3, seed=0))
    assert selection.dropped["i002"] == {"reason": "near_duplicate", "of": "i000"}
    assert selection.drop_counts == {"not_verified": 0, "exact_duplicate": 0, "near_duplicate": 1, "not_selected": 1}
    assert len(selection.rows) == 3
    assert selection.record()["embedding_model"]["name"] == "all-MiniLM-L6-v2"


def test_require_verified_keeps_only_rows_whose_winner_passed_every_trusted_test(row: RowFactory) -> None:
    rows = [row(i, text=f"Request number {i} about sorting lists.") for i in range(4)]
    for r, status in zip(rows, ["verified", "partial", "unverified", "not_executed"], strict=True):
        r["lineage"]["verification"] = {"status": status}
    kept = select(rows, None, SelectionConfig(require_verified=True))
    assert [r["lineage"]["instruction_id"] for r in kept.rows] == ["i000"]
    assert kept.drop_counts["not_verified"] == 3
    assert kept.dropped["i003"] == {"reason": "not_verified", "of": None, "status": "not_executed"}
    assert len(select(rows, None, SelectionConfig()).rows) == 4
    assert SelectionConfig.from_dataset_config(DatasetConfig(require_verified=True)).require_verified
