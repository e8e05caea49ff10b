"""The trainer's tasks take a model from the store: a run's final model is trained again (the
flywheel's later turns) after a checked download into the worker's home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from warrior.common.store import LocalStore
from warrior.trainer.checkpoints import CheckpointError, upload_folder
from warrior.trainer.worker import local_model


def _hf_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    (path / "tokenizer.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"weights")
    return path


def test_a_final_model_in_the_store_is_downloaded_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    upload_folder(store, "checkpoints/smol-arena/r-1/final/", _hf_folder(tmp_path / "trained"), {"model": "smol-arena"})
    work = tmp_path / "work"
    folder = local_model("checkpoints/smol-arena/r-1/final/", store, work)
    assert folder == work / "models" / "smol-arena" / "r-1"
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    (folder / "model.safetensors").write_bytes(b"kept")  # a second call finds it and fetches nothing
    assert local_model("checkpoints/smol-arena/r-1/final/", store, work) == folder
    assert (folder / "model.safetensors").read_bytes() == b"kept"
    # A folder on this machine is used as it is; a final model not (completely) in the store is an error.
    assert local_model(str(tmp_path / "trained"), store, work) == tmp_path / "trained"
    with pytest.raises(CheckpointError):
        local_model("checkpoints/other/r-2/final/", store, work)
