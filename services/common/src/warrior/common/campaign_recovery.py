"""Bringing a campaign back on track: re-send the first unfinished stage of every unit of work.

Shared by `warrior campaign resume` (an operator's command) and the campaign controller (which
re-sends the stages of a campaign that stopped moving). Every stage skips what its records say is
done and reuses recorded model calls, so re-sending costs nothing but the lost work.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from warrior.common import queues
from warrior.common.batches import chunks
from warrior.common.campaign_config import CampaignConfig, parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.ids import task_id
from warrior.common.registry import Registry
from warrior.common.runtime import Runtime
from warrior.common.store import ObjectNotFound

STAGES = ("mine", "screen", "battle", "score", "collect", "backfill", "matchmake")


class CampaignError(RuntimeError):
    """A campaign operation refused or failed; the message says why."""


def missing_experts(registry: Registry, names: list[str]) -> list[str]:
    """The experts of `names` with no live replica now."""
    return sorted(set(names) - set(registry.experts()))


def wait_for_experts(registry: Registry, names: list[str], timeout_s: float) -> None:
    """Return once every named expert has a live replica; CampaignError naming the missing ones after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = missing_experts(registry, names)
        if not missing:
            return
        if time.monotonic() >= deadline:
            live = ", ".join(sorted(registry.experts())) or "none"
            raise CampaignError(f"unknown or unavailable experts: {', '.join(missing)} (registered now: {live})")
        time.sleep(0.5)


def restore(rt: Runtime, campaign: str) -> CampaignState:
    """The campaign's state; with Redis's state lost, recreated from `runs/<campaign>/config.json`
    (each stage then finds its records in the object store and moves on)."""
    state = CampaignState(rt.redis, campaign)
    if state.exists():
        return state
    try:
        data = rt.store.get_json(f"runs/{campaign}/config.json")
    except ObjectNotFound:
        raise CampaignError(
            f"unknown campaign {campaign!r}: not in Redis and no runs/{campaign}/config.json in the store"
        ) from None
    config = parse_campaign_config(data, f"runs/{campaign}/config.json")
    state.create(config.model_dump(mode="json"), config.mining.per_expert * len(config.experts))
    for name in config.expert_names:
        state.mark("roster", name)
    return state


def resend_unfinished(app: Celery, state: CampaignState, config: CampaignConfig, attempt: str) -> dict[str, int]:
    """Send the first unfinished stage of every unit of work again; how many units of each stage were sent
    (batched stages go in batches of the campaign's `pipeline.batch_size`).

    `attempt` names the tasks (`task_id(stage, campaign, ..., attempt)`), so a re-send is not taken
    for a duplicate of the message it replaces."""
    campaign = state.campaign
    sent = dict.fromkeys(STAGES, 0)

    def send(stage: str, name: str, args: list[Any], *key: object, priority: int | None = None) -> None:
        options = {} if priority is None else {"priority": priority}
        app.send_task(name, args=args, task_id=task_id(stage, campaign, *key, attempt), **options)
        sent[stage] += 1

    def send_batches(stage: str, name: str, items: list[Any]) -> None:
        """Unfinished units of a batched stage, re-sent in batches of the campaign's batch size."""
        for batch in chunks(items, config.pipeline.batch_size):
            app.send_task(name, args=[campaign, batch], task_id=task_id(stage, campaign, *batch, attempt))
            sent[stage] += len(batch)

    mine_done = state.members("mine_done")
    send_batches("mine", queues.TASK_MINE, [
        [expert, index] for index in range(config.mining.per_expert) for expert in config.expert_names
        if f"{expert}:{index}" not in mine_done
    ])  # fmt: skip
    send_batches("screen", queues.TASK_SCREEN, sorted(state.members("mined") - state.members("screened")))
    battled, scored = state.members("battled"), state.members("scored")
    unfinished = sorted(state.members("kept") - state.members("finished"))
    send_batches("collect", queues.TASK_COLLECT, [iid for iid in unfinished if iid in scored])
    send_batches("score", queues.TASK_SCORE, [iid for iid in unfinished if iid not in scored and iid in battled])
    send_batches("battle", queues.TASK_BATTLE, [iid for iid in unfinished if iid not in scored and iid not in battled])
    # Experts that joined mid-campaign: their unfinished backfills, else their next matchmaking round.
    backfilling = set()
    for part in sorted(state.members("backfill_sent") - state.members("backfill_done")):
        iid, newcomer = part.rsplit("+", 1)
        backfilling.add(newcomer)
        send("backfill", queues.TASK_BACKFILL, [campaign, iid, newcomer], iid, newcomer,
             priority=queues.PRIORITY_NEWCOMER)  # fmt: skip
    matchmade = state.members("matchmade")
    for newcomer in sorted(set(state.snapshot()["newcomers_matchmaking"]) - backfilling):
        rounds = [int(m.rsplit(":", 1)[1]) for m in matchmade if m.rsplit(":", 1)[0] == newcomer]
        next_round = max(rounds) + 1 if rounds else 0
        send("matchmake", queues.TASK_MATCHMAKE, [campaign, newcomer, next_round], newcomer, next_round,
             priority=queues.PRIORITY_NEWCOMER)  # fmt: skip
    return sent


def default_stall_s() -> float:
    """No progress for this long means work was lost, not slow: twice the visibility timeout (by then
    a killed worker's message is back in its queue), plus a minute."""
    return 2 * float(os.environ.get("WARRIOR_VISIBILITY_TIMEOUT_S", "3600")) + 60


def progress_marks(snap: dict[str, Any]) -> list[Any]:
    """What changes whenever any unit of work moves on."""
    ins = snap["instructions"]
    backfills = snap["backfills"]
    return [snap["mine"]["done"], ins["mined"], ins["screened"], ins["kept"], snap["battled"], snap["finished"],
            snap["votes"], sum(snap["failures"].values()), backfills["sent"], backfills["done"],
            snap["newcomers_matchmaking"]]  # fmt: skip
