"""Celery worker of the scorer service: queue `score`.

Run: celery -A warrior.scorer.worker worker -Q score
"""

from __future__ import annotations

from typing import Any

from celery import Task

from warrior.common import queues
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.ids import task_id
from warrior.common.runtime import get_runtime
from warrior.scorer import tasks

app = make_celery("scorer")


@app.task(name=queues.TASK_SCORE, bind=True)
def score(self: Task, campaign: str, iid: str) -> None:
    rt = get_runtime()
    if not rt.admit(self.request.id, queues.TASK_SCORE):
        state = CampaignState(rt.redis, campaign)
        state.fail(f"score:{iid}", "dead-lettered after repeated deliveries")
        state.mark("finished", iid)
        return
    tasks.score(rt, campaign, iid)
    app.send_task(queues.TASK_COLLECT, args=[campaign, iid], task_id=task_id("collect", campaign, iid))


@app.task(name=queues.TASK_FINALIZE)
def finalize(campaign: str) -> dict[str, Any]:
    return tasks.finalize(get_runtime(), campaign)
