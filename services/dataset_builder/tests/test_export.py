"""An exported version loads with `datasets.load_dataset` (Parquet and JSON) and goes into TRL's SFTTrainer as is."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pytest

from warrior.common.store import LocalStore
from warrior.dataset_builder import versions
from warrior.dataset_builder.export import export_version
from warrior.dataset_builder.versions import build_version, manifest_key, read_manifest, read_rows

ROOT = Path(__file__).resolve().parents[3]
TINY_MODEL = ROOT / "models" / "hf" / "SmolLM2-135M-Instruct"

RowFactory = Callable[..., dict[str, Any]]


@pytest.fixture()
def built(tmp_path: Path, row: RowFactory, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalStore, dict[str, Any]]:
    """A version of 5 rows in 3 shards whose lineage changes shape between shards.

    The later rows have a third expert (a newcomer) in their scores and revisions and a category,
    which is what makes a loader that fixes its schema from the first file fail.
    """
    monkeypatch.setattr(versions, "SHARD_ROWS", 2)
    rows = [row(i, text=f"Write function number {i} in Python.") for i in range(3)]
    rows += [row(i, newcomer="delta", category="algorithms", language="Python") for i in range(3, 5)]
    rows[4]["messages"][1]["content"] = "Ünïcode answer ```python\nprint('hé')\n```"
    store = LocalStore(tmp_path / "store")
    leaderboard = [{"expert": "qwen", "rating": 1010.0, "ci_low": 990.0, "ci_high": 1030.0, "battles": 5}]
    manifest = build_version(store, "ds", rows, campaigns=["c1"], ratings_key="k", leaderboard=leaderboard)
    return store, manifest


def _load(kind: str, files: list[str], cache: Path) -> datasets.Dataset:
    loaded = datasets.load_dataset(kind, data_files=files, split="train", cache_dir=str(cache))
    assert isinstance(loaded, datasets.Dataset)
    return loaded


def test_parquet_and_json_exports_round_trip_through_load_dataset(
    tmp_path: Path, built: tuple[LocalStore, dict[str, Any]]
) -> None:
    store, manifest = built
    rows = read_rows(store, manifest)
    folder = export_version(store, "ds", manifest["version"], tmp_path / "export")

    parquet = sorted(str(p) for p in (folder / "parquet").glob("*.parquet"))
    assert len(parquet) == 3
    from_parquet = _load("parquet", parquet, tmp_path / "cache")
    assert [r["messages"] for r in from_parquet] == [r["messages"] for r in rows]
    assert [r["lineage"] for r in from_parquet] == [r["lineage"] for r in rows]  # a dict again

    jsonl = sorted(str(p) for p in (folder / "jsonl").glob("*.jsonl"))
    from_json = _load("json", jsonl, tmp_path / "cache")
    assert [r["messages"] for r in from_json] == [r["messages"] for r in rows]
    assert [json.loads(r["lineage"]) for r in from_json] == [r["lineage"] for r in rows]

    # The README's header names the Parquet files, so the folder itself is a loadable dataset.
    as_folder = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "cache"))
    assert as_folder["messages"] == [r["messages"] for r in rows]
    assert (folder / "README.md").read_text().split("---\n", 2)[2].lstrip().startswith("# Dataset `ds`")
    assert json.loads((folder / "manifest.json").read_text())["version"] == manifest["version"]


def test_export_refuses_a_folder_in_use_and_defaults_to_the_latest_version(
    tmp_path: Path, built: tuple[LocalStore, dict[str, Any]]
) -> None:
    store, manifest = built
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        export_version(store, "ds", None, used)
    assert (used / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = export_version(store, "ds", None, empty)
    assert json.loads((folder / "manifest.json").read_text())["version"] == manifest["version"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_a_tampered_shard_is_not_exported(tmp_path: Path, built: tuple[LocalStore, dict[str, Any]]) -> None:
    store, manifest = built
    shard = tmp_path / "store" / manifest["parquet"][1]["key"]
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"):
        export_version(store, "ds", manifest["version"], tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_a_version_without_parquet_shards_is_exported_with_parquet_made_from_its_rows(
    tmp_path: Path, built: tuple[LocalStore, dict[str, Any]]
) -> None:
    store, manifest = built
    old = {k: v for k, v in manifest.items() if k != "parquet"} | {"version": "old"}
    store.put_json(manifest_key("ds", "old"), old)
    folder = export_version(store, "ds", "old", tmp_path / "export")
    loaded = _load("parquet", sorted(str(p) for p in (folder / "parquet").glob("*.parquet")), tmp_path / "cache")
    assert loaded["messages"] == [r["messages"] for r in read_rows(store, read_manifest(store, "ds", "old"))]


def test_sft_trainer_prepares_and_batches_the_exported_dataset_as_is(
    tmp_path: Path, built: tuple[LocalStore, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    store, manifest = built
    folder = export_version(store, "ds", manifest["version"], tmp_path / "export")
    model = AutoModelForCausalLM.from_pretrained(str(TINY_MODEL))
    tokenizer = AutoTokenizer.from_pretrained(str(TINY_MODEL))
    for kind, pattern in (("parquet", "parquet/*.parquet"), ("json", "jsonl/*.jsonl")):
        dataset = _load(kind, sorted(str(p) for p in folder.glob(pattern)), tmp_path / "cache")
        args = SFTConfig(
            output_dir=str(tmp_path / f"out-{kind}"),
            max_steps=1,
            per_device_train_batch_size=2,
            max_length=96,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        prepared = trainer.train_dataset
        assert prepared is not None and len(prepared) == manifest["rows"]
        # The chat template was applied to `messages`: each row's tokens contain its instruction.
        first = tokenizer.decode(prepared[0]["input_ids"])
        assert "Write function number 0 in Python." in first and "qwen answer 0" in first
        batch = next(iter(trainer.get_train_dataloader()))
        assert batch["input_ids"].shape[0] == 2 and batch["labels"].shape == batch["input_ids"].shape
