"""The judge's stage: run the battle of one kept instruction and record it."""

from __future__ import annotations

from typing import Any

from warrior.common.campaign_config import parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.runtime import Runtime
from warrior.common.store import ObjectNotFound
from warrior.judge.battle import run_battle


def battle_key(campaign: str, iid: str) -> str:
    return f"runs/{campaign}/battles/{iid}.json"


def battle(rt: Runtime, campaign: str, iid: str) -> bool:
    """Run and record the battle; True when it produced pairs to score (else it is closed as failed)."""
    state = CampaignState(rt.redis, campaign)
    config = parse_campaign_config(state.config(), f"campaign {campaign}")
    key = battle_key(campaign, iid)
    try:
        record: dict[str, Any] = rt.store.get_json(key)  # an earlier delivery already recorded it
    except ObjectNotFound:
        instruction = rt.store.get_json(f"runs/{campaign}/instructions/{iid}.json")["text"]
        record = run_battle(rt, campaign, iid, instruction, config.expert_names, config.battle)
        if len(record["competitors"]) < config.battle.min_competitors:
            abandon(rt, campaign, iid, f"only {len(record['competitors'])} competitor(s) answered")
            return False
        rt.store.put_json(key, record, if_absent=True)
        record = rt.store.get_json(key)
    pairs = record["pairs"]
    state.put(
        "battle_stats",
        iid,
        {
            "battles": len(pairs),
            "votes": sum(p["votes_a"] + p["votes_b"] for p in pairs),
            "ties": sum(p["ties"] for p in pairs),
            "judgments": len(record["judgments"]),
        },
    )
    state.mark("battled", iid)
    return True


def abandon(rt: Runtime, campaign: str, iid: str, reason: str) -> None:
    """Close a kept instruction that gets no battle, with its reason."""
    state = CampaignState(rt.redis, campaign)
    state.fail(f"battle:{iid}", reason)
    state.mark("finished", iid)
