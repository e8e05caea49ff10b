"""diff_versions reports added, removed and changed rows, count changes and build-setting changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from warrior.common.store import LocalStore
from warrior.dataset_builder.diff import diff_versions, render_diff
from warrior.dataset_builder.selection import SelectionConfig, select
from warrior.dataset_builder.versions import DatasetNotFound, build_version

RowFactory = Callable[..., dict[str, Any]]


def test_diff_reports_an_added_row_and_a_changed_winner(tmp_path: Path, row: RowFactory) -> None:
    store = LocalStore(tmp_path)
    old_rows = [row(i, category="algorithms", ratings_key="r1") for i in range(3)]
    old = build_version(store, "ds", old_rows, campaigns=["c1"], ratings_key="r1", leaderboard=[])
    new_rows = [
        row(0, category="algorithms", ratings_key="r2"),
        row(1, winner="smol", category="algorithms", ratings_key="r2"),  # new ratings flipped its winner
        row(2, category="algorithms", ratings_key="r2"),
        row(3, category="web", ratings_key="r2"),  # a newly battled instruction
    ]
    selection = select(new_rows, None, SelectionConfig(seed=7))
    new = build_version(
        store, "ds", selection.rows, campaigns=["c1"], ratings_key="r2", leaderboard=[], selection=selection
    )

    diff = diff_versions(store, "ds", old["version"], new["version"])
    assert diff["rows"] == {"a": 3, "b": 4}
    assert diff["added"] == ["i003"] and diff["removed"] == []
    assert diff["changed"] == [{"instruction_id": "i001", "winner": {"a": "qwen", "b": "smol"}, "answer_changed": True}]
    assert diff["winners"] == {"smol": {"a": 0, "b": 1, "delta": 1}}  # qwen: 3 -> 3 (lost i001, won i003)
    assert diff["categories"] == {"web": {"a": 0, "b": 1, "delta": 1}}
    assert diff["manifest"]["ratings"] == {"a": "r1", "b": "r2"}
    assert diff["manifest"]["selection_config"]["a"] is None
    assert diff["manifest"]["selection_config"]["b"]["seed"] == 7

    text = render_diff(diff)
    assert f"dataset ds: {old['version']} -> {new['version']}" in text
    assert "added (1)\n  i003" in text
    assert "i001: winner qwen -> smol, answer changed" in text
    assert "smol: 0 -> 1 (+1)" in text and "ratings: r1 -> r2" in text

    reverse = diff_versions(store, "ds", new["version"], old["version"])
    assert reverse["removed"] == ["i003"] and reverse["added"] == []


def test_a_version_compared_with_itself_has_no_differences(tmp_path: Path, row: RowFactory) -> None:
    store = LocalStore(tmp_path)
    version = build_version(store, "ds", [row(0), row(1)], campaigns=["c1"], ratings_key="r", leaderboard=[])
    diff = diff_versions(store, "ds", version["version"], version["version"])
    assert (diff["added"], diff["removed"], diff["changed"], diff["winners"], diff["manifest"]) == ([], [], [], {}, {})
    assert "manifest: no change" in render_diff(diff)


def test_diff_names_a_missing_version(tmp_path: Path, row: RowFactory) -> None:
    store = LocalStore(tmp_path)
    version = build_version(store, "ds", [row(0)], campaigns=["c1"], ratings_key="r", leaderboard=[])
    with pytest.raises(DatasetNotFound, match="'nope'"):
        diff_versions(store, "ds", version["version"], "nope")
