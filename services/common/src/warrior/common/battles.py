"""Battle records in the store: one base record per instruction, plus one addendum per expert that joined later.

A newcomer's battles on an instruction that was already judged are written as a separate record
(`battles/<id>+<expert>.json`), so every record stays write-once. Readers merge the parts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from warrior.common.store import ObjectStore
from warrior.common.verification import merge_executions

_SEP = "+"


def battle_key(campaign: str, iid: str, newcomer: str | None = None) -> str:
    part = iid if newcomer is None else f"{iid}{_SEP}{newcomer}"
    return f"runs/{campaign}/battles/{part}.json"


def part_id(key: str) -> str:
    """`runs/c/battles/<id>+<expert>.json` -> `<id>+<expert>`."""
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def instruction_of(part: str) -> str:
    return part.split(_SEP, 1)[0]


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One instruction's battle from its base record and addenda: all answers, judgments and pairs."""
    base = next((p for p in parts if not p.get("newcomer")), parts[0])
    merged = dict(base)
    merged["answers"] = {}
    merged["judgments"] = []
    merged["pairs"] = []
    for part in sorted(parts, key=lambda p: p.get("newcomer") or ""):
        merged["answers"].update(part["answers"])
        merged["judgments"].extend(part["judgments"])
        merged["pairs"].extend(part["pairs"])
    merged["competitors"] = sorted(merged["answers"])
    ordered = sorted(parts, key=lambda p: p.get("newcomer") or "")
    merged["execution"] = merge_executions([p["execution"] for p in ordered if p.get("execution")])
    return merged


def load_battles(store: ObjectStore, campaign: str) -> dict[str, dict[str, Any]]:
    """Every instruction's merged battle, keyed by instruction id."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key in store.list(f"runs/{campaign}/battles/"):
        grouped[instruction_of(part_id(key))].append(store.get_json(key))
    return {iid: merge(parts) for iid, parts in sorted(grouped.items())}


def load_battle(store: ObjectStore, campaign: str, iid: str) -> dict[str, Any]:
    """One instruction's merged battle."""
    keys = [k for k in store.list(f"runs/{campaign}/battles/{iid}") if instruction_of(part_id(k)) == iid]
    if not keys:
        raise KeyError(f"no battle recorded for instruction {iid!r} of campaign {campaign!r}")
    return merge([store.get_json(k) for k in keys])
