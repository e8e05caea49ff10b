"""Immutable dataset versions: shards first, card next, manifest last (the manifest is the commit)."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from typing import Any

from warrior.common.ids import content_hash
from warrior.common.store import ObjectNotFound, ObjectStore

SHARD_ROWS = 1000


class DatasetNotFound(LookupError):
    """No committed version of that dataset (or that version) exists."""


def _prefix(name: str) -> str:
    return f"datasets/{name}/"


def manifest_key(name: str, version: str) -> str:
    return f"{_prefix(name)}{version}/manifest.json"


def list_versions(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    """Committed versions (those with a manifest), oldest first; shards without a manifest are invisible."""
    manifests = [k for k in store.list(_prefix(name)) if k.endswith("/manifest.json")]
    found = [store.get_json(k) for k in manifests]
    return sorted(found, key=lambda m: (m["created_at"], m["version"]))


def read_manifest(store: ObjectStore, name: str, version: str | None = None) -> dict[str, Any]:
    """A version's manifest; the latest committed one when version is None."""
    if version is None:
        versions = list_versions(store, name)
        if not versions:
            raise DatasetNotFound(f"dataset {name!r} has no committed version")
        return versions[-1]
    try:
        return dict(store.get_json(manifest_key(name, version)))
    except ObjectNotFound:
        raise DatasetNotFound(f"dataset {name!r} has no committed version {version!r}") from None


def read_rows(store: ObjectStore, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """All rows of a version, checking each shard against its recorded sha256."""
    rows: list[dict[str, Any]] = []
    for shard in manifest["shards"]:
        data = store.get(shard["key"])
        if hashlib.sha256(data).hexdigest() != shard["sha256"]:
            raise ValueError(f"shard {shard['key']} does not match the sha256 in its manifest")
        rows.extend(json.loads(line) for line in data.decode("utf-8").splitlines() if line)
    return rows


def _card(name: str, version: str, rows: list[dict[str, Any]], leaderboard: list[dict[str, Any]]) -> str:
    winners = Counter(r["lineage"]["winner"] for r in rows)
    attackers = Counter(r["lineage"]["attacker"] for r in rows)
    lines = [
        f"# Dataset `{name}` version `{version}`",
        "",
        f"{len(rows)} chat rows (`messages`: user instruction, assistant answer that won its battle), with lineage.",
        "",
        "## Winners by expert",
        *[f"- {k}: {v}" for k, v in winners.most_common()],
        "",
        "## Instructions by attacker",
        *[f"- {k}: {v}" for k, v in attackers.most_common()],
        "",
        "## Leaderboard at build time",
        "| expert | rating | 95% interval | battles |",
        "| --- | ---: | --- | ---: |",
        *[f"| {r['expert']} | {r['rating']} | {r['ci_low']} .. {r['ci_high']} | {r['battles']} |" for r in leaderboard],
        "",
    ]
    return "\n".join(lines)


def build_version(
    store: ObjectStore,
    name: str,
    rows: list[dict[str, Any]],
    *,
    campaigns: list[str],
    ratings_key: str,
    leaderboard: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write a version and return its manifest; the same rows and ratings give the same version again."""
    rows = sorted(rows, key=lambda r: r["lineage"]["instruction_id"])
    version = content_hash(name, ratings_key, rows, length=12)
    try:
        return dict(store.get_json(manifest_key(name, version)))  # already committed
    except ObjectNotFound:
        pass
    base = f"{_prefix(name)}{version}/"
    shards = []
    for start in range(0, max(len(rows), 1), SHARD_ROWS):
        chunk = rows[start : start + SHARD_ROWS]
        data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in chunk).encode("utf-8")
        key = f"{base}part-{start // SHARD_ROWS:05d}.jsonl"
        store.put(key, data, if_absent=True)
        shards.append({"key": key, "rows": len(chunk), "sha256": hashlib.sha256(data).hexdigest()})
    store.put(f"{base}card.md", _card(name, version, rows, leaderboard).encode("utf-8"), if_absent=True)
    manifest = {
        "name": name,
        "version": version,
        "created_at": time.time(),
        "rows": len(rows),
        "shards": shards,
        "card": f"{base}card.md",
        "campaigns": campaigns,
        "ratings": ratings_key,
        "leaderboard": leaderboard,
        "format": "jsonl chat messages + lineage",
    }
    store.put_json(manifest_key(name, version), manifest, if_absent=True)
    return dict(store.get_json(manifest_key(name, version)))
