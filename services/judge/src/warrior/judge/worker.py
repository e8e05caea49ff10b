"""Celery worker of the judge service: queue `battle`.

Run: celery -A warrior.judge.worker worker -Q battle
"""

from __future__ import annotations

from celery import Task

from warrior.common import queues
from warrior.common.celery_app import make_celery
from warrior.common.ids import task_id
from warrior.common.runtime import get_runtime
from warrior.judge import tasks

app = make_celery("judge")


@app.task(name=queues.TASK_BATTLE, bind=True)
def battle(self: Task, campaign: str, iid: str) -> bool:
    rt = get_runtime()
    if not rt.admit(self.request.id, queues.TASK_BATTLE):
        tasks.abandon(rt, campaign, iid, "dead-lettered after repeated deliveries")
        return False
    ok = tasks.battle(rt, campaign, iid)
    if ok:
        app.send_task(queues.TASK_SCORE, args=[campaign, iid], task_id=task_id("score", campaign, iid))
    return ok
