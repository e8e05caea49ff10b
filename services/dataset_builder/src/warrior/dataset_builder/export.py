"""Export a committed version to a local folder that `datasets.load_dataset` reads directly.

Layout of the folder::

    README.md            the dataset card, with a YAML header naming the Parquet files as the
                         default configuration, so `load_dataset("<folder>")` works as well
    manifest.json        the version's manifest
    parquet/part-*.parquet   the version's Parquet shards, byte for byte (sha256-checked)
    jsonl/part-*.jsonl       the same rows as JSONL, lineage as a JSON string (see formats.py)

`load_dataset("parquet", data_files="<folder>/parquet/*.parquet")` gives `messages` and `lineage`
(a dict); `load_dataset("json", data_files="<folder>/jsonl/*.jsonl")` gives `messages` and
`lineage` (a string). Either goes into TRL's SFTTrainer as is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from warrior.common.store import ObjectStore
from warrior.dataset_builder.formats import loader_jsonl_bytes, parquet_bytes
from warrior.dataset_builder.versions import read_manifest, read_rows, read_shard

_YAML_HEADER = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: parquet/*.parquet
- config_name: jsonl
  data_files:
  - split: train
    path: jsonl/*.jsonl
---

"""


def _shard_name(key: str, suffix: str) -> str:
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{stem}{suffix}"


def _write_files(store: ObjectStore, manifest: dict[str, Any], folder: Path) -> None:
    (folder / "parquet").mkdir()
    (folder / "jsonl").mkdir()
    parquet_shards = manifest.get("parquet")
    for shard in manifest["shards"]:
        rows = read_rows(store, {"shards": [shard]})
        (folder / "jsonl" / _shard_name(shard["key"], ".jsonl")).write_bytes(loader_jsonl_bytes(rows))
        if not parquet_shards:  # a version from before Parquet shards were written: convert its rows
            (folder / "parquet" / _shard_name(shard["key"], ".parquet")).write_bytes(parquet_bytes(rows))
    for shard in parquet_shards or []:
        (folder / "parquet" / _shard_name(shard["key"], ".parquet")).write_bytes(read_shard(store, shard))
    card = store.get(manifest["card"]).decode("utf-8")
    (folder / "README.md").write_text(_YAML_HEADER + card, encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_version(store: ObjectStore, name: str, version: str | None, dest_dir: str | os.PathLike[str]) -> Path:
    """Write a version's Parquet and JSONL files, card and manifest to `dest_dir`; returns that folder.

    version None exports the latest version. `dest_dir` must not exist yet or be an empty folder;
    the files are written to a temporary folder beside it that is renamed into place, so an
    interrupted export leaves no half-written dataset behind. Shards are checked against their
    sha256 on the way.
    """
    dest = Path(dest_dir).expanduser().resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} already exists and is not an empty folder")
    manifest = read_manifest(store, name, version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's folder is private; the export is an ordinary folder
        _write_files(store, manifest, staging)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest
