"""Celery worker of the dataset-builder service: queue `dataset`.

Run: celery -A warrior.dataset_builder.worker worker -Q dataset
"""

from __future__ import annotations

import time
from typing import Any, Literal

from celery import Task

from warrior.common import queues
from warrior.common.batches import run_each, units
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.runtime import get_runtime
from warrior.dataset_builder import tasks

app = make_celery("dataset_builder")


@app.task(name=queues.TASK_COLLECT, bind=True, ignore_result=True)
def collect(self: Task, campaign: str, iids: str | list[str]) -> None:
    """Collect a batch of scored battles (or one) as candidate rows."""
    batch = units(iids)
    rt = get_runtime()
    state = CampaignState(rt.redis, campaign)
    if state.cancelled():
        return None
    if not rt.admit(self.request.id, queues.TASK_COLLECT, attempt=self.request.retries or 0):
        for iid in batch:
            state.fail(f"collect:{iid}", "dead-lettered after repeated deliveries")
            state.mark("finished", iid)
        return
    run_each(lambda iid: tasks.collect(rt, campaign, iid), batch, concurrency=len(batch), instruction=str)


@app.task(name=queues.TASK_BUILD, bind=True)
def build(
    self: Task,
    campaign: str,
    name: str,
    ratings_key: str,
    winners: str = "ratings",
    instructions: list[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The dataset version; while it is made, the task's state is PROGRESS with done, total and step
    (what `warrior dataset build` shows), updated at most every half second. `winners`, `instructions`
    and `seed` build an ablation on the same rows (see `tasks.build`)."""
    if winners not in ("ratings", "random"):
        raise ValueError(f"winners must be 'ratings' or 'random', got {winners!r}")
    last = [0.0]

    def progress(done: int, total: int, step: str) -> None:
        now = time.monotonic()
        if self.request.id and (now - last[0] >= 0.5 or done >= total):
            last[0] = now
            self.update_state(state="PROGRESS", meta={"done": done, "total": total, "step": step})

    policy: Literal["ratings", "random"] = "random" if winners == "random" else "ratings"
    return tasks.build(
        get_runtime(), campaign, name, ratings_key, progress=progress, winners=policy, instructions=instructions,
        seed=seed,
    )  # fmt: skip
