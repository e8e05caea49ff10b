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


def test_parquet_shards_hold_the_same_rows_and_are_recorded_with_rows_and_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from warrior.dataset_builder.formats import rows_from_parquet

    monkeypatch.setattr(versions, "SHARD_ROWS", 2)
    store = LocalStore(tmp_path)
    manifest = build_version(
        store, "ds", [_row(i) for i in range(3)], campaigns=["c1"], ratings_key="k", leaderboard=[]
    )
    assert [(s["key"].rsplit("/", 1)[-1], s["rows"]) for s in manifest["parquet"]] == [
        ("part-00000.parquet", 2),
        ("part-00001.parquet", 1),
    ]
    from_parquet = []
    for shard in manifest["parquet"]:
        data = store.get(shard["key"])
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
        from_parquet += rows_from_parquet(data)
    assert from_parquet == read_rows(store, manifest)


def test_latest_pointer_moves_but_versions_never_depend_on_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first = build_version(store, "ds", [_row(1)], campaigns=["c1"], ratings_key="k", leaderboard=[])
    second = build_version(store, "ds", [_row(1), _row(2)], campaigns=["c1"], ratings_key="k", leaderboard=[])
    assert store.get_json(versions.latest_key("ds"))["version"] == second["version"]
    assert read_manifest(store, "ds") == second
    # Rebuilding the first version writes nothing new but makes it the latest again.
    assert build_version(store, "ds", [_row(1)], campaigns=["c1"], ratings_key="k", leaderboard=[]) == first
    assert read_manifest(store, "ds")["version"] == first["version"]
    # A named version reads the same with the pointer gone or pointing elsewhere.
    (tmp_path / versions.latest_key("ds")).unlink()
    assert read_manifest(store, "ds", second["version"]) == second
    assert read_manifest(store, "ds") == second  # without a pointer: the newest committed version


def test_a_failed_build_does_not_move_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    first = build_version(store, "ds", [_row(1)], campaigns=["c1"], ratings_key="k", leaderboard=[])
    real_put_json = store.put_json

    def crash_on_manifest(key: str, obj: object, *, if_absent: bool = False) -> bool:
        if key.endswith("manifest.json"):
            raise RuntimeError("worker killed before the commit")
        return real_put_json(key, obj, if_absent=if_absent)

    monkeypatch.setattr(store, "put_json", crash_on_manifest)
    with pytest.raises(RuntimeError):
        build_version(store, "ds", [_row(1), _row(2)], campaigns=["c1"], ratings_key="k", leaderboard=[])
    assert read_manifest(store, "ds") == first
    assert [v["version"] for v in list_versions(store, "ds")] == [first["version"]]


def test_manifest_records_selection_screening_sources_and_ratings(tmp_path: Path) -> None:
    import numpy as np

    from warrior.dataset_builder.selection import SelectionConfig, select

    store = LocalStore(tmp_path)
    rows = [_row(i) for i in range(6)]
    config = SelectionConfig(target_rows=3, seed=4, near_dup_threshold=0.95)
    selection = select(rows, np.eye(6), config, embedding_model={"name": "m", "revision": "abc"})
    manifest = build_version(
        store,
        "ds",
        selection.rows,
        campaigns=["c1"],
        ratings_key="runs/c1/ratings/r.json",
        leaderboard=[],
        selection=selection,
        screening={"contaminated": 2, "too_short": 1},
    )
    assert manifest["rows"] == 3 and manifest["campaigns"] == ["c1"]
    assert manifest["ratings"] == "runs/c1/ratings/r.json"
    assert manifest["screening"] == {"contaminated": 2, "too_short": 1}
    recorded = manifest["selection"]
    assert recorded["config"] == {"target_rows": 3, "seed": 4, "near_dup_threshold": 0.95, "require_verified": False}
    assert recorded["seed"] == 4 and recorded["embedding_model"] == {"name": "m", "revision": "abc"}
    assert recorded["dropped"] == {"not_verified": 0, "exact_duplicate": 0, "near_duplicate": 0, "not_selected": 3}
    details = store.get_json(recorded["details"])
    assert sorted(details) == sorted(
        {"i0", "i1", "i2", "i3", "i4", "i5"} - {r["lineage"]["instruction_id"] for r in selection.rows}
    )
    assert {d["reason"] for d in details.values()} == {"not_selected"}
    # Other selection settings over the same rows are another version.
    other = select(rows, np.eye(6), SelectionConfig(target_rows=3, seed=4))
    again = build_version(
        store,
        "ds",
        other.rows,
        campaigns=["c1"],
        ratings_key="runs/c1/ratings/r.json",
        leaderboard=[],
        selection=other,
        screening={"contaminated": 2, "too_short": 1},
    )
    assert again["version"] != manifest["version"]
