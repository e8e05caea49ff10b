"""Celery worker of the scorer service: queue `score` (scores, final ratings, newcomers' matchmaking).

Run: celery -A warrior.scorer.worker worker -Q score
"""

from __future__ import annotations

from typing import Any

from celery import Task

from warrior.common import queues
from warrior.common.batches import send_batches, units
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.ids import task_id
from warrior.common.runtime import get_runtime
from warrior.scorer import tasks

app = make_celery("scorer")


@app.task(name=queues.TASK_SCORE, bind=True, ignore_result=True)
def score(self: Task, campaign: str, iids: str | list[str], newcomer: str | None = None) -> None:
    """Score a batch of battles (or one; with `newcomer`, its backfill battles); rows are collected next."""
    batch = units(iids)
    rt = get_runtime()
    state = CampaignState(rt.redis, campaign)
    if state.cancelled():
        return None
    parts = batch if newcomer is None else [f"{iid}+{newcomer}" for iid in batch]
    if not rt.admit(self.request.id, queues.TASK_SCORE, attempt=self.request.retries or 0):
        for part in parts:
            state.fail(f"score:{part}", "dead-lettered after repeated deliveries")
            state.mark("finished" if newcomer is None else "backfill_done", part)
        return
    tasks.score_batch(rt, campaign, batch, newcomer)
    if newcomer is None:
        pipeline = state.campaign_config().pipeline
        send_batches(app, rt.redis, queues.TASK_COLLECT, campaign, batch, stage="collect",
                     batch_size=pipeline.batch_size, spread=pipeline.spread)  # fmt: skip
        return
    next_round = tasks.round_complete(rt, campaign, newcomer)
    if next_round is not None:
        _send_matchmake(campaign, newcomer, next_round)


def _send_matchmake(campaign: str, expert: str, round_: int) -> None:
    app.send_task(
        queues.TASK_MATCHMAKE,
        args=[campaign, expert, round_],
        task_id=task_id("matchmake", campaign, expert, round_),
        priority=queues.PRIORITY_NEWCOMER,
    )


@app.task(name=queues.TASK_MATCHMAKE, bind=True, ignore_result=True)
def matchmake(self: Task, campaign: str, expert: str, round_: int) -> list[str]:
    rt = get_runtime()
    state = CampaignState(rt.redis, campaign)
    if state.cancelled():
        return []
    if not rt.admit(self.request.id, queues.TASK_MATCHMAKE, attempt=self.request.retries or 0):
        state.fail(f"matchmake:{expert}:{round_}", "dead-lettered after repeated deliveries")
        state.put("matchmaking", expert, {"round": round_, "abandoned": "dead-lettered after repeated deliveries"})
        return []
    batch = tasks.matchmake(rt, campaign, expert, round_)
    for iid in batch:
        app.send_task(
            queues.TASK_BACKFILL,
            args=[campaign, iid, expert],
            task_id=task_id("backfill", campaign, iid, expert),
            priority=queues.PRIORITY_NEWCOMER,
        )
    return batch


@app.task(name=queues.TASK_FINALIZE)
def finalize(campaign: str, verdicts: str = "arena") -> dict[str, Any]:
    """Final ratings and winners; `verdicts="llm"`: the LLM-only ablation of the same battles."""
    if verdicts not in ("arena", "llm"):
        raise ValueError(f"verdicts must be 'arena' or 'llm', got {verdicts!r}")
    return tasks.finalize(get_runtime(), campaign, "llm" if verdicts == "llm" else "arena")
