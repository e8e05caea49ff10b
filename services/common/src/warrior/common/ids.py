"""Deterministic identifiers: content hashes for records, task ids and campaign ids."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

_CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def content_hash(*parts: Any, length: int = 24) -> str:
    """A stable hex digest of JSON-serialisable parts (key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def task_id(stage: str, campaign: str, *inputs: Any) -> str:
    """The Celery task id of one stage on one input: a redelivery or a re-send reuses it."""
    return f"{stage}-{campaign}-{content_hash(*inputs, length=16)}"


def validate_campaign_id(value: str) -> str:
    """Campaign ids appear in object keys and Redis keys, so they are kept to a safe alphabet."""
    # fullmatch: with match(), '$' also matches before a final newline ("demo\n" would pass).
    if not _CAMPAIGN_ID.fullmatch(value):
        raise ValueError(
            f"campaign id {value!r} must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return value


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (model weights, checkpoints, exports)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
