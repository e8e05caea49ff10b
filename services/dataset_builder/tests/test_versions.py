"""Dataset versions are immutable, committed by their manifest, and verified when read."""

from __future__ import annotations

from pathlib import Path

import pytest

from warrior.common.store import LocalStore
from warrior.dataset_builder import versions
from warrior.dataset_builder.rows import candidate_row, training_row
from warrior.dataset_builder.versions import DatasetNotFound, build_version, list_versions, read_manifest, read_rows


def _row(i: int, winner: str = "qwen") -> dict:
    instruction = {"id": f"i{i}", "campaign": "c1", "text": f"Task {i}?", "attacker": "smol", "attacker_revision": "r0"}
    battle = {
        "answers": {
            "qwen": {"text": f"qwen answer {i}", "revision": "rq", "finish_reason": "stop"},
            "smol": {"text": f"smol answer {i}", "revision": "rs", "finish_reason": "stop"},
        },
        "pairs": [{"a": "qwen", "b": "smol", "votes_a": 1, "votes_b": 0, "ties": 0}],
        "judgments": [{"judge": "gemma"}],
    }
    candidate = candidate_row(instruction, battle, {"winner": winner, "scores": {"qwen": 0.8, "smol": 0.2}})
    return training_row(candidate, winner, {"qwen": 0.8, "smol": 0.2}, "runs/c1/ratings/x.json")


def test_build_writes_shards_card_and_manifest_and_reads_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    manifest = build_version(
        store, "ds", [_row(i) for i in range(3)], campaigns=["c1"], ratings_key="k", leaderboard=[]
    )
    assert manifest["rows"] == 3
    rows = read_rows(store, read_manifest(store, "ds"))
    assert [r["messages"][0]["content"] for r in rows] == ["Task 0?", "Task 1?", "Task 2?"]
    assert rows[0]["messages"][1] == {"role": "assistant", "content": "qwen answer 0"}
    lineage = rows[0]["lineage"]
    assert lineage["winner"] == "qwen" and lineage["attacker"] == "smol" and lineage["judges"] == ["gemma"]
    assert lineage["model_revisions"] == {"qwen": "rq", "smol": "rs"}
    assert store.get(manifest["card"]).decode().startswith("# Dataset `ds`")


def test_same_input_gives_the_same_version_and_nothing_is_rewritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    rows = [_row(i) for i in range(2)]
    first = build_version(store, "ds", rows, campaigns=["c1"], ratings_key="k", leaderboard=[])
    again = build_version(store, "ds", list(reversed(rows)), campaigns=["c1"], ratings_key="k", leaderboard=[])
    assert again == first
    other = build_version(store, "ds", rows + [_row(9)], campaigns=["c1"], ratings_key="k", leaderboard=[])
    assert other["version"] != first["version"]
    assert [v["version"] for v in list_versions(store, "ds")] == [first["version"], other["version"]]


def test_version_without_manifest_is_invisible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    real_put_json = store.put_json

    def crash_on_manifest(key: str, obj: object, *, if_absent: bool = False) -> bool:
        if key.endswith("manifest.json"):
            raise RuntimeError("worker killed before the commit")
        return real_put_json(key, obj, if_absent=if_absent)

    monkeypatch.setattr(store, "put_json", crash_on_manifest)
    with pytest.raises(RuntimeError):
        build_version(store, "ds", [_row(1)], campaigns=["c1"], ratings_key="k", leaderboard=[])
    assert store.list("datasets/ds/")  # shards were written ...
    assert list_versions(store, "ds") == []  # ... but no reader sees them
    with pytest.raises(DatasetNotFound):
        read_manifest(store, "ds")


def test_tampered_shard_is_detected(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    manifest = build_version(store, "ds", [_row(1)], campaigns=["c1"], ratings_key="k", leaderboard=[])
    shard = tmp_path / manifest["shards"][0]["key"]
    shard.write_text(shard.read_text().replace("Task 1?", "Task X?"))
    with pytest.raises(ValueError, match="sha256"):
        read_rows(store, manifest)


def test_unknown_version_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound, match="'nope'"):
        read_manifest(LocalStore(tmp_path), "ds", "nope")


def test_large_datasets_are_sharded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "SHARD_ROWS", 2)
    manifest = build_version(LocalStore(tmp_path), "ds", [_row(i) for i in range(5)], campaigns=["c1"],
                             ratings_key="k", leaderboard=[])  # fmt: skip
    assert [s["rows"] for s in manifest["shards"]] == [2, 2, 1]
