"""Where a campaign's per-instruction records live in the store, for every stage that reads them."""

from __future__ import annotations

from typing import Any

from warrior.common.store import ObjectNotFound, ObjectStore


def instruction_key(campaign: str, iid: str) -> str:
    """The mined instruction (text, attacker, language), written by the miner."""
    return f"runs/{campaign}/instructions/{iid}.json"


def screening_key(campaign: str, iid: str) -> str:
    """What screening decided about a kept instruction (category, language, ratings, topic score)."""
    return f"runs/{campaign}/screening/{iid}.json"


def load_screening(store: ObjectStore, campaign: str, iid: str) -> dict[str, Any]:
    """The instruction's screening record; empty for instructions screened before records existed."""
    try:
        return dict(store.get_json(screening_key(campaign, iid)))
    except ObjectNotFound:
        return {}
