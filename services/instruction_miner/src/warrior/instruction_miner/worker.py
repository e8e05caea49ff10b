"""Celery worker of the instruction-miner service: queues `mine` and `screen`.

Run: celery -A warrior.instruction_miner.worker worker -Q mine,screen
"""

from __future__ import annotations

from celery import Task

from warrior.common import queues
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.ids import task_id
from warrior.common.runtime import get_runtime
from warrior.instruction_miner import tasks

app = make_celery("instruction_miner")


@app.task(name=queues.TASK_MINE, bind=True, ignore_result=True)
def mine(self: Task, campaign: str, attacker: str, index: int) -> str | None:
    rt = get_runtime()
    if CampaignState(rt.redis, campaign).cancelled():
        return None
    if not rt.admit(self.request.id, queues.TASK_MINE, attempt=self.request.retries or 0):
        tasks.abandon_mine(rt, campaign, attacker, index, "dead-lettered after repeated deliveries")
        return None
    iid = tasks.mine(rt, campaign, attacker, index)
    if iid is not None:
        app.send_task(queues.TASK_SCREEN, args=[campaign, iid], task_id=task_id("screen", campaign, iid))
    return iid


@app.task(name=queues.TASK_SCREEN, bind=True, ignore_result=True)
def screen(self: Task, campaign: str, iid: str) -> bool:
    rt = get_runtime()
    if CampaignState(rt.redis, campaign).cancelled():
        return False
    if not rt.admit(self.request.id, queues.TASK_SCREEN, attempt=self.request.retries or 0):
        tasks.abandon_screen(rt, campaign, iid, "dead_lettered")
        return False
    kept = tasks.screen(rt, campaign, iid)
    if kept:
        app.send_task(queues.TASK_BATTLE, args=[campaign, iid], task_id=task_id("battle", campaign, iid))
    return kept
