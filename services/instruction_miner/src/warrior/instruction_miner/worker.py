"""Celery worker of the instruction-miner service: queues `mine` and `screen`.

Run: celery -A warrior.instruction_miner.worker worker -Q screen,mine

Each task carries a batch (see warrior.common.batches); a message with a single unit, the form a
one-unit re-send uses, is a batch of one.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from warrior.common import queues
from warrior.common.batches import send_batches, units
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.runtime import get_runtime
from warrior.instruction_miner import tasks

app = make_celery("instruction_miner")


@app.task(name=queues.TASK_MINE, bind=True, ignore_result=True)
def mine(self: Task, campaign: str, attacker: str | list[Any], index: int | None = None) -> list[str]:
    """Mine a batch of (attacker, index) units (or the one unit `attacker`, `index`)."""
    if isinstance(attacker, list):
        batch = [(str(unit[0]), int(unit[1])) for unit in attacker]
    else:
        batch = [(attacker, int(index or 0))]
    rt = get_runtime()
    state = CampaignState(rt.redis, campaign)
    if state.cancelled():
        return []
    if not rt.admit(self.request.id, queues.TASK_MINE, attempt=self.request.retries or 0):
        for unit_attacker, unit_index in batch:
            tasks.abandon_mine(rt, campaign, unit_attacker, unit_index, "dead-lettered after repeated deliveries")
        return []
    mined = tasks.mine_batch(rt, campaign, batch)
    pipeline = state.campaign_config().pipeline
    send_batches(app, rt.redis, queues.TASK_SCREEN, campaign, mined, stage="screen",
                 batch_size=pipeline.batch_size, spread=pipeline.spread)  # fmt: skip
    return mined


@app.task(name=queues.TASK_SCREEN, bind=True, ignore_result=True)
def screen(self: Task, campaign: str, iids: str | list[str]) -> list[str]:
    """Screen a batch of mined instructions (or one); the kept ones go on to their battles."""
    batch = units(iids)
    rt = get_runtime()
    state = CampaignState(rt.redis, campaign)
    if state.cancelled():
        return []
    if not rt.admit(self.request.id, queues.TASK_SCREEN, attempt=self.request.retries or 0):
        for iid in batch:
            tasks.abandon_screen(rt, campaign, iid, "dead_lettered")
        return []
    kept = tasks.screen_batch(rt, campaign, batch)
    pipeline = state.campaign_config().pipeline
    send_batches(app, rt.redis, queues.TASK_BATTLE, campaign, kept, stage="battle",
                 batch_size=pipeline.batch_size, spread=pipeline.spread)  # fmt: skip
    return kept
