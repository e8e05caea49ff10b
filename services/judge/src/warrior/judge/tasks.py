"""The judge's stages: the battle of one kept instruction, and a newcomer's backfill battle on an earlier one."""

from __future__ import annotations

import logging
from typing import Any

from warrior.common.battles import battle_key
from warrior.common.campaign_config import CampaignConfig
from warrior.common.campaign_state import CampaignState
from warrior.common.records import instruction_key, load_screening
from warrior.common.registry import joins_open_roster
from warrior.common.runtime import Runtime
from warrior.common.store import ObjectNotFound
from warrior.common.verification import execution_stats
from warrior.judge.battle import run_backfill, run_battle

log = logging.getLogger(__name__)


def roster(rt: Runtime, state: CampaignState, config: CampaignConfig) -> tuple[list[str], list[str]]:
    """The campaign's roster now, and the experts that joined it just now.

    With an open roster, an expert registered in the registry whose labels match the campaign's
    matchmaking.roster_selector (and that is not labelled role=eval) joins the campaign the first time a
    battle sees it; the first battle to add it reports it as a newcomer (exactly once).
    """
    newcomers = []
    if config.matchmaking.open_roster:
        selector = config.matchmaking.roster_selector
        for name, replicas in sorted(rt.registry.experts().items()):
            if name in config.expert_names or not joins_open_roster(replicas, selector):
                continue
            if state.mark("roster", name):
                newcomers.append(name)
    return sorted(state.members("roster") | set(config.expert_names)), newcomers


def battle(rt: Runtime, campaign: str, iid: str) -> tuple[bool, list[str]]:
    """Run and record the battle; returns (produced pairs to score, experts that just joined)."""
    state = CampaignState(rt.redis, campaign)
    config = state.campaign_config()
    current, newcomers = roster(rt, state, config)
    key = battle_key(campaign, iid)
    try:
        record: dict[str, Any] = rt.store.get_json(key)  # an earlier delivery already recorded it
    except ObjectNotFound:
        instruction = rt.store.get_json(instruction_key(campaign, iid))
        language, category = _labels(rt, campaign, iid, instruction, config)
        record = run_battle(
            rt, campaign, iid, instruction["text"], current, config.battle, language=language, category=category
        )
        if len(record["competitors"]) < config.battle.min_competitors:
            abandon(rt, campaign, iid, f"only {len(record['competitors'])} competitor(s) answered")
            return False, newcomers
        rt.store.put_json(key, record, if_absent=True)
        record = rt.store.get_json(key)
    stats = _record_stats(state, iid, record)
    if state.mark("battled", iid):  # once per instruction, though a redelivery passes here again
        log.info(
            "battle recorded: %d competitors, %d pairs, %d votes",
            len(record["competitors"]), stats["battles"], stats["votes"],
        )  # fmt: skip
    return True, newcomers


def backfill(rt: Runtime, campaign: str, iid: str, newcomer: str) -> bool:
    """The newcomer's battles on an instruction judged before it joined; True when there is a part to score."""
    state = CampaignState(rt.redis, campaign)
    config = state.campaign_config()
    part = f"{iid}+{newcomer}"
    key = battle_key(campaign, iid, newcomer)
    if not rt.store.exists(key):
        base = rt.store.get_json(battle_key(campaign, iid))
        current, _ = roster(rt, state, config)
        record = run_backfill(rt, campaign, iid, newcomer, base, current, config.battle)
        if record is None:
            state.mark("backfill_done", part)
            return False
        rt.store.put_json(key, record, if_absent=True)
    _record_stats(state, part, rt.store.get_json(key))
    return True


def _labels(
    rt: Runtime, campaign: str, iid: str, instruction: dict[str, Any], config: CampaignConfig
) -> tuple[str, str | None]:
    """The instruction's language and the category screening gave it (None before screening tagged any)."""
    screening = load_screening(rt.store, campaign, iid)
    language = screening.get("language") or instruction.get("language") or config.languages[0]
    return str(language), screening.get("category")


def _record_stats(state: CampaignState, part: str, record: dict[str, Any]) -> dict[str, Any]:
    pairs = record["pairs"]
    stats = {
        "battles": len(pairs),
        "votes": sum(p["votes_a"] + p["votes_b"] for p in pairs),
        "ties": sum(p["ties"] for p in pairs),
        "judgments": len(record["judgments"]),
        "execution": execution_stats(record),
    }
    state.put("battle_stats", part, stats)
    return stats


def abandon(rt: Runtime, campaign: str, iid: str, reason: str) -> None:
    """Close a kept instruction that gets no battle, with its reason."""
    state = CampaignState(rt.redis, campaign)
    state.fail(f"battle:{iid}", reason)
    state.mark("finished", iid)
