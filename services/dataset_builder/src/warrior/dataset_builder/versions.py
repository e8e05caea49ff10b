"""Immutable dataset versions: shards first, card next, manifest last (the manifest is the commit).

Layout in the object store::

    datasets/<name>/<version>/part-00000.jsonl     canonical rows, 1000 a shard
    datasets/<name>/<version>/part-00000.parquet   the same rows as Parquet (see formats.py)
    datasets/<name>/<version>/selection.json       every row the selection dropped, with its reason
    datasets/<name>/<version>/card.md              the dataset card
    datasets/<name>/<version>/manifest.json        written last: a version exists once this does
    datasets/<name>/latest.json                    the version built most recently

Every object of a version is written create-only and never changes; the version id is a hash of
what went into it, so building the same rows with the same settings gives the same version again.
``latest.json`` is the only object that moves. Readers of a named version never look at it, and a
version whose manifest was never written (a builder that died half way) stays invisible.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from warrior.common.ids import content_hash
from warrior.common.store import ObjectNotFound, ObjectStore
from warrior.dataset_builder.card import render_card
from warrior.dataset_builder.formats import jsonl_bytes, parquet_bytes
from warrior.dataset_builder.selection import Selection

SHARD_ROWS = 1000
FORMAT = "chat messages + lineage; jsonl (lineage nested) and parquet (lineage as arrow.json)"


class DatasetNotFound(LookupError):
    """No committed version of that dataset (or that version) exists."""


def _prefix(name: str) -> str:
    return f"datasets/{name}/"


def manifest_key(name: str, version: str) -> str:
    return f"{_prefix(name)}{version}/manifest.json"


def latest_key(name: str) -> str:
    return f"{_prefix(name)}latest.json"


def list_versions(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    """Committed versions (those with a manifest), oldest first; shards without a manifest are invisible."""
    manifests = [k for k in store.list(_prefix(name)) if k.endswith("/manifest.json")]
    found = [store.get_json(k) for k in manifests]
    return sorted(found, key=lambda m: (m["created_at"], m["version"]))


def read_manifest(store: ObjectStore, name: str, version: str | None = None) -> dict[str, Any]:
    """A version's manifest; with version None, the one `latest.json` names (else the newest committed)."""
    if version is None:
        try:
            pointer = store.get_json(latest_key(name))
            return dict(store.get_json(manifest_key(name, pointer["version"])))
        except ObjectNotFound:
            pass
        versions = list_versions(store, name)
        if not versions:
            raise DatasetNotFound(f"dataset {name!r} has no committed version")
        return versions[-1]
    try:
        return dict(store.get_json(manifest_key(name, version)))
    except ObjectNotFound:
        raise DatasetNotFound(f"dataset {name!r} has no committed version {version!r}") from None


def read_shard(store: ObjectStore, shard: Mapping[str, Any]) -> bytes:
    """A shard's bytes, checked against the sha256 its manifest recorded."""
    data = store.get(shard["key"])
    if hashlib.sha256(data).hexdigest() != shard["sha256"]:
        raise ValueError(f"shard {shard['key']} does not match the sha256 in its manifest")
    return data


def read_rows(store: ObjectStore, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All rows of a version (from its JSONL shards), checking each shard against its recorded sha256."""
    rows: list[dict[str, Any]] = []
    for shard in manifest["shards"]:
        data = read_shard(store, shard)
        rows.extend(json.loads(line) for line in data.decode("utf-8").splitlines() if line)
    return rows


def _write_shard(store: ObjectStore, key: str, data: bytes, rows: int) -> dict[str, Any]:
    store.put(key, data, if_absent=True)
    return {"key": key, "rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _point_latest(store: ObjectStore, name: str, version: str) -> None:
    pointer = {"name": name, "version": version, "manifest": manifest_key(name, version), "updated_at": time.time()}
    store.put_json(latest_key(name), pointer)


def build_version(
    store: ObjectStore,
    name: str,
    rows: list[dict[str, Any]],
    *,
    campaigns: list[str],
    ratings_key: str,
    leaderboard: list[dict[str, Any]],
    selection: Selection | None = None,
    screening: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Write a version and return its manifest; the same inputs give the same version again.

    rows: the rows to publish (after selection, when there was one).
    selection: the selection they came out of; its settings, seed, embedder and drop counts go into
    the manifest and the card, its per-row reasons into ``selection.json``.
    screening: instructions dropped before battles, reason -> count, for the manifest and the card.
    Afterwards ``latest.json`` names this version, also when it had been committed before.
    """
    rows = sorted(rows, key=lambda r: r["lineage"]["instruction_id"])
    selection_record = selection.record() if selection is not None else None
    screening_counts = dict(sorted(screening.items())) if screening is not None else None
    version = content_hash(name, ratings_key, sorted(campaigns), rows, selection_record, screening_counts, length=12)
    try:
        manifest = dict(store.get_json(manifest_key(name, version)))  # already committed
    except ObjectNotFound:
        manifest = _write_version(
            store,
            name,
            version,
            rows,
            campaigns=campaigns,
            ratings_key=ratings_key,
            leaderboard=leaderboard,
            selection=selection,
            screening=screening_counts,
        )
    _point_latest(store, name, version)
    return manifest


def _write_version(
    store: ObjectStore,
    name: str,
    version: str,
    rows: list[dict[str, Any]],
    *,
    campaigns: list[str],
    ratings_key: str,
    leaderboard: list[dict[str, Any]],
    selection: Selection | None,
    screening: dict[str, int] | None,
) -> dict[str, Any]:
    base = f"{_prefix(name)}{version}/"
    shards, parquet = [], []
    for start in range(0, max(len(rows), 1), SHARD_ROWS):
        chunk = rows[start : start + SHARD_ROWS]
        part = f"{base}part-{start // SHARD_ROWS:05d}"
        shards.append(_write_shard(store, f"{part}.jsonl", jsonl_bytes(chunk), len(chunk)))
        parquet.append(_write_shard(store, f"{part}.parquet", parquet_bytes(chunk), len(chunk)))
    selection_record = None
    if selection is not None:
        selection_record = selection.record() | {"details": f"{base}selection.json"}
        store.put_json(selection_record["details"], selection.dropped, if_absent=True)
    card = render_card(
        name,
        version,
        rows,
        campaigns=campaigns,
        ratings_key=ratings_key,
        leaderboard=leaderboard,
        selection=selection_record,
        screening=screening,
        files={"JSONL": shards, "Parquet": parquet},
    )
    store.put(f"{base}card.md", card.encode("utf-8"), if_absent=True)
    manifest = {
        "name": name,
        "version": version,
        "created_at": time.time(),
        "rows": len(rows),
        "shards": shards,
        "parquet": parquet,
        "card": f"{base}card.md",
        "campaigns": campaigns,
        "ratings": ratings_key,
        "leaderboard": leaderboard,
        "selection": selection_record,
        "screening": screening,
        "format": FORMAT,
    }
    store.put_json(manifest_key(name, version), manifest, if_absent=True)
    return dict(store.get_json(manifest_key(name, version)))
