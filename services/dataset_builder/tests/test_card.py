"""The dataset card states sizes, counts, length distributions, every drop and the leaderboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from warrior.common.store import LocalStore
from warrior.dataset_builder.card import length_stats
from warrior.dataset_builder.selection import SelectionConfig, select
from warrior.dataset_builder.versions import build_version

RowFactory = Callable[..., dict[str, Any]]

LEADERBOARD = [
    {"expert": "qwen", "rating": 1042.3, "ci_low": 1010.0, "ci_high": 1075.5, "battles": 12, "win_rate": 0.667},
    {"expert": "smol", "rating": 957.7, "ci_low": 925.1, "ci_high": 990.2, "battles": 12, "win_rate": 0.333},
]


def _section(card: str, title: str) -> str:
    return card.split(title, 1)[1].split("\n#", 1)[0]


def test_card_counts_rows_lengths_drops_and_the_leaderboard(tmp_path: Path, row: RowFactory) -> None:
    rows = [
        row(0, winner="qwen", attacker="smol", category="algorithms", language="Python", text="a" * 10, answer="x" * 5),
        row(1, winner="qwen", attacker="smol", category="algorithms", language="Python", text="b" * 20, answer="y" * 7),
        row(2, winner="smol", attacker="qwen", category="web", language="Rust", text="c" * 30, answer="z" * 9),
        row(3, winner="qwen", attacker="qwen", text="d" * 40, answer="w" * 100),  # an older row: no tags
        row(4, winner="qwen", attacker="qwen", text="d" * 40, answer="w" * 100),  # exact duplicate of row 3
    ]
    selection = select(rows, np.eye(5), SelectionConfig(target_rows=3, seed=0))
    kept = {r["lineage"]["instruction_id"] for r in selection.rows}
    store = LocalStore(tmp_path)
    manifest = build_version(
        store,
        "ds",
        selection.rows,
        campaigns=["c1"],
        ratings_key="runs/c1/ratings/r.json",
        leaderboard=LEADERBOARD,
        selection=selection,
        screening={"contaminated": 4, "duplicate": 2},
    )
    card = store.get(manifest["card"]).decode()

    assert card.startswith(f"# Dataset `ds` version `{manifest['version']}`")
    assert "- rows: 3" in card and "| JSONL | 1 | 3 |" in card and "| Parquet | 1 | 3 |" in card
    winners = _section(card, "### By winner")
    expected_qwen = sum(1 for r in selection.rows if r["lineage"]["winner"] == "qwen")
    assert f"| qwen | {expected_qwen} |" in winners
    categories = _section(card, "### By category")
    expected = {
        c: sum(1 for r in selection.rows if r["lineage"].get("category", "unknown") == c)
        for c in ("algorithms", "web", "unknown")
    }
    for category, count in expected.items():
        if count:
            assert f"| {category} | {count} |" in categories
    assert "### By attacker" in card and "### By language" in card

    lengths = _section(card, "## Lengths (characters)")
    instruction = length_stats([len(r["messages"][0]["content"]) for r in selection.rows])
    assert f"| instruction | {instruction['min']} |" in lengths

    screening = _section(card, "### Screening")
    assert "| contaminated | 4 |" in screening and "| duplicate | 2 |" in screening and "| **total** | 6 |" in screening
    chosen = _section(card, "### Selection")
    assert (
        "| exact_duplicate | 1 |" in chosen and "| not_selected | 1 |" in chosen and "| near_duplicate | 0 |" in chosen
    )
    assert "target rows: 3, seed: 0" in chosen
    assert len(kept) == 3

    board = _section(card, "## Leaderboard at build time")
    assert "| qwen | 1042.3 | 1010.0 .. 1075.5 | 12 | 66.7% |" in board
    assert "| smol | 957.7 | 925.1 .. 990.2 | 12 | 33.3% |" in board


def test_length_statistics() -> None:
    assert length_stats([5, 1, 3, 2, 4, 6, 7, 8, 9, 10]) == {"min": 1, "median": 5.5, "p90": 9, "max": 10}
    assert length_stats([7]) == {"min": 7, "median": 7, "p90": 7, "max": 7}
    assert length_stats([]) == {"min": 0, "median": 0, "p90": 0, "max": 0}
