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

Readers check everything they are handed: a manifest must name its own dataset and version and
list well-formed shards under its dataset's folder; each shard must match its sha256 and hold
exactly the rows the manifest says. Anything else raises :class:`DatasetCorrupt` naming the
object, and no row of a version that fails is returned.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any, TypeGuard

from warrior.common.ids import content_hash
from warrior.common.store import ObjectNotFound, ObjectStore
from warrior.dataset_builder.card import render_card
from warrior.dataset_builder.formats import jsonl_bytes, parquet_bytes
from warrior.dataset_builder.selection import Selection

SHARD_ROWS = 1000
FORMAT = "chat messages + lineage; jsonl (lineage nested) and parquet (lineage as arrow.json)"


class DatasetNotFound(LookupError):
    """No committed version of that dataset (or that version) exists."""


class DatasetCorrupt(ValueError):
    """A stored version that does not hold together (a tampered, truncated or foreign manifest,
    pointer or shard); the message names the object."""


# Dataset names and version ids are single key segments; nothing else can have been committed.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _prefix(name: str) -> str:
    return f"datasets/{name}/"


def manifest_key(name: str, version: str) -> str:
    return f"{_prefix(name)}{version}/manifest.json"


def latest_key(name: str) -> str:
    return f"{_prefix(name)}latest.json"


def _get_json(store: ObjectStore, key: str) -> Any:
    try:
        return store.get_json(key)
    except RecursionError:  # JSON nested deeper than the decoder goes
        raise DatasetCorrupt(f"{key}: JSON nested too deeply") from None


def _check_shard(where: str, shard: object, prefix: str | None) -> None:
    if not isinstance(shard, Mapping):
        raise DatasetCorrupt(f"{where}: a shard entry is not an object")
    key, sha, rows = shard.get("key"), shard.get("sha256"), shard.get("rows", 0)
    if not isinstance(key, str) or (prefix is not None and not key.startswith(prefix)):
        raise DatasetCorrupt(f"{where}: shard key {key!r:.200} is not an object of {prefix or 'the version'}")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise DatasetCorrupt(f"{where}: shard {key!r} has no sha256")
    if not _count(rows):
        raise DatasetCorrupt(f"{where}: shard {key!r} has a bad row count {rows!r:.80}")


def _check_manifest(key: str, manifest: object, name: str, version: str) -> dict[str, Any]:
    """The manifest stored under `key`, once it is one of `name`'s version `version`."""
    if not isinstance(manifest, dict):
        raise DatasetCorrupt(f"{key}: a manifest is a JSON object, got {type(manifest).__name__}")
    if manifest.get("name") != name or manifest.get("version") != version:
        raise DatasetCorrupt(f"{key}: the manifest names another dataset or version")
    created = manifest.get("created_at")
    if isinstance(created, bool) or not isinstance(created, int | float) or not math.isfinite(created):
        raise DatasetCorrupt(f"{key}: bad created_at {created!r:.80}")
    rows, shards = manifest.get("rows"), manifest.get("shards")
    if not _count(rows) or not isinstance(shards, list) or not shards:
        raise DatasetCorrupt(f"{key}: the manifest needs a row count and a list of shards")
    prefix = _prefix(name)  # a shard is an object of its own dataset, never one elsewhere in the store
    for shard in shards:
        _check_shard(key, shard, prefix)
        if "rows" not in shard:
            raise DatasetCorrupt(f"{key}: shard {shard['key']!r} has no row count")
    if sum(shard["rows"] for shard in shards) != rows:
        raise DatasetCorrupt(f"{key}: the shards' row counts do not add up to {rows}")
    parquet = manifest.get("parquet")
    if parquet is not None:
        if not isinstance(parquet, list):
            raise DatasetCorrupt(f"{key}: 'parquet' is not a list of shards")
        for shard in parquet:
            _check_shard(key, shard, prefix)
    if not isinstance(manifest.get("card", ""), str):
        raise DatasetCorrupt(f"{key}: 'card' is not an object key")
    return manifest


def _load_manifest(store: ObjectStore, name: str, version: str) -> dict[str, Any]:
    """Raises ObjectNotFound when the version is not committed, DatasetCorrupt when its manifest is bad."""
    key = manifest_key(name, version)
    return _check_manifest(key, _get_json(store, key), name, version)


def list_versions(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    """Committed versions (those with a manifest), oldest first; shards without a manifest are invisible."""
    if not _is_id(name):
        return []
    prefix = _prefix(name)
    found = []
    for key in store.list(prefix):
        version, _, rest = key[len(prefix) :].partition("/")
        if rest == "manifest.json" and _is_id(version):
            try:
                found.append(_load_manifest(store, name, version))
            except ObjectNotFound:
                continue  # removed since it was listed
    return sorted(found, key=lambda m: (m["created_at"], m["version"]))


def read_manifest(store: ObjectStore, name: str, version: str | None = None) -> dict[str, Any]:
    """A version's manifest; with version None, the one `latest.json` names (else the newest committed)."""
    if not _is_id(name):
        raise DatasetNotFound(f"dataset {name!r:.200} has no committed version (not a dataset name)")
    if version is None:
        try:
            pointer = _get_json(store, latest_key(name))
        except ObjectNotFound:
            pointer = None
        if pointer is not None:
            named = pointer.get("version") if isinstance(pointer, dict) else None
            if not _is_id(named):
                raise DatasetCorrupt(f"{latest_key(name)}: the pointer names no version")
            try:
                return _load_manifest(store, name, named)
            except ObjectNotFound:
                pass  # a pointer ahead of a manifest that never got written: the newest committed one
        versions = list_versions(store, name)
        if not versions:
            raise DatasetNotFound(f"dataset {name!r} has no committed version")
        return versions[-1]
    if not _is_id(version):
        raise DatasetNotFound(f"dataset {name!r} has no committed version {version!r:.200}")
    try:
        return _load_manifest(store, name, version)
    except ObjectNotFound:
        raise DatasetNotFound(f"dataset {name!r} has no committed version {version!r}") from None


def read_shard(store: ObjectStore, shard: Mapping[str, Any]) -> bytes:
    """A shard's bytes, checked against the sha256 its manifest recorded."""
    _check_shard("manifest", shard, None)
    data = store.get(shard["key"])
    if hashlib.sha256(data).hexdigest() != shard["sha256"]:
        raise DatasetCorrupt(f"shard {shard['key']} does not match the sha256 in its manifest")
    return data


def _shard_rows(shard: Mapping[str, Any], data: bytes) -> list[dict[str, Any]]:
    # Rows end at b"\n" only: JSON escapes it inside strings, but not U+2028, U+0085 or \x1c, on
    # which str.splitlines() would also split a row.
    rows = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise DatasetCorrupt(f"shard {shard['key']} line {number}: not a JSON row ({exc})") from None
        if not isinstance(row, dict):
            raise DatasetCorrupt(f"shard {shard['key']} line {number}: a row is a JSON object")
        rows.append(row)
    if "rows" in shard and len(rows) != shard["rows"]:
        raise DatasetCorrupt(f"shard {shard['key']} holds {len(rows)} rows, its manifest says {shard['rows']}")
    return rows


def read_rows(store: ObjectStore, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All rows of a version (from its JSONL shards), checking each shard against its recorded sha256
    and row count; DatasetCorrupt (and no rows) when any of them does not match."""
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise DatasetCorrupt("manifest: 'shards' is not a list of shards")
    rows: list[dict[str, Any]] = []
    for shard in shards:
        rows.extend(_shard_rows(shard, read_shard(store, shard)))
    if "rows" in manifest and len(rows) != manifest["rows"]:
        raise DatasetCorrupt(f"the version holds {len(rows)} rows, its manifest says {manifest['rows']}")
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
