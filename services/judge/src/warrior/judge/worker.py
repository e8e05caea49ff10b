"""Celery worker of the judge service: queue `battle`.

Run: celery -A warrior.judge.worker worker -Q battle
"""

from __future__ import annotations

from celery import Task

from warrior.common import queues
from warrior.common.batches import run_each, send_batches, units
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.ids import task_id
from warrior.common.runtime import get_runtime
from warrior.judge import tasks

app = make_celery("judge")


def _welcome(campaign: str, newcomers: list[str]) -> None:
    for name in newcomers:
        app.send_task(
            queues.TASK_MATCHMAKE,
            args=[campaign, name, 0],
            task_id=task_id("matchmake", campaign, name, 0),
            priority=queues.PRIORITY_NEWCOMER,
        )


@app.task(name=queues.TASK_BATTLE, bind=True, ignore_result=True)
def battle(self: Task, campaign: str, iids: str | list[str]) -> list[str]:
    """The battles of a batch of kept instructions (or one), at once; those that produced pairs go on to scoring."""
    batch = units(iids)
    rt = get_runtime()
    state = CampaignState(rt.redis, campaign)
    if state.cancelled():
        return []
    if not rt.admit(self.request.id, queues.TASK_BATTLE, attempt=self.request.retries or 0):
        for iid in batch:
            tasks.abandon(rt, campaign, iid, "dead-lettered after repeated deliveries")
        return []
    results = run_each(lambda iid: tasks.battle(rt, campaign, iid), batch, concurrency=len(batch), instruction=str)
    _welcome(campaign, sorted({name for _, newcomers in results for name in newcomers}))
    fought = [iid for iid, (ok, _) in zip(batch, results, strict=True) if ok]
    pipeline = state.campaign_config().pipeline
    send_batches(app, rt.redis, queues.TASK_SCORE, campaign, fought, stage="score",
                 batch_size=pipeline.batch_size, spread=pipeline.spread)  # fmt: skip
    return fought


@app.task(name=queues.TASK_BACKFILL, bind=True, ignore_result=True)
def backfill(self: Task, campaign: str, iid: str, newcomer: str) -> bool:
    rt = get_runtime()
    if CampaignState(rt.redis, campaign).cancelled():
        return False
    part = f"{iid}+{newcomer}"
    if not rt.admit(self.request.id, queues.TASK_BACKFILL, attempt=self.request.retries or 0):
        state = CampaignState(rt.redis, campaign)
        state.fail(f"backfill:{part}", "dead-lettered after repeated deliveries")
        state.mark("backfill_done", part)
        return False
    ok = tasks.backfill(rt, campaign, iid, newcomer)
    if ok:
        app.send_task(
            queues.TASK_SCORE,
            args=[campaign, iid, newcomer],
            task_id=task_id("score", campaign, part),
            priority=queues.PRIORITY_NEWCOMER,
        )
    return ok
