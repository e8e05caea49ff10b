"""One reconciling pass over every campaign that is not over yet.

A campaign moves `running` -> `building` -> `finished` (or `build_failed`); `cancelled` campaigns are
left alone until `warrior campaign resume` sets them running again. Everything the controller knows
lives in Redis (the campaign's `controller` table), not in the process, so a standby that takes the
lead mid-way carries on where the old leader stopped:

- running, work not done: when none of the campaign's progress marks moved for its stall window, the
  unfinished stages are re-sent (as `warrior campaign resume` would), unless an expert of its roster is
  gone, which is recorded and waited for.
- running, work done: `building` when the campaign asks for its dataset (`controller.build_dataset`),
  else `finished`.
- building: the final ratings (`warrior.finalize`), then the dataset version (`warrior.dataset.build`),
  each sent as a task under a deterministic id and read back from the result backend on later passes;
  a task whose result does not come within the stall window is sent again, a failed one is retried up
  to `BUILD_ATTEMPTS` times, then the campaign is `build_failed` with the error.
- finished: its per-instruction state is compacted (`CampaignState.compact`): moved to one object in the
  store, with only counts left in Redis, so Redis holds nothing per instruction once a campaign is over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from warrior.common import metrics, queues
from warrior.common.campaign_config import CampaignConfig
from warrior.common.campaign_recovery import default_stall_s, missing_experts, progress_marks, resend_unfinished
from warrior.common.campaign_state import CampaignState, list_campaigns
from warrior.common.ids import task_id
from warrior.common.runtime import Runtime

log = logging.getLogger("warrior.controller")

ACTIVE = ("running", "building")
BUILD_ATTEMPTS = 3
RESENDS_KEPT = 20  # the newest re-sends shown in `warrior status --json`


class CampaignController:
    """Drives campaigns to their end; `reconcile_all` is one pass, safe to repeat and to interrupt."""

    def __init__(
        self, rt: Runtime, app: Celery, *, clock: Callable[[], float] = time.time, background: bool = False
    ) -> None:
        self.rt, self.app, self.clock = rt, app, clock
        self._reported: dict[str, str] = {}  # campaign -> its status when its gauges were last set
        # With `background`, compactions run on a thread of their own: a 100k-instruction campaign takes
        # tens of seconds (every table read, written to the store, deleted), longer than the leader lock
        # lives, and the loop must keep renewing it and watching the other campaigns meanwhile.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="warrior-compact") if background else None
        self._compacting: dict[str, Future[str]] = {}

    def report_metrics(self) -> None:
        """Set the campaign and queue gauges (warrior.common.metrics) from Redis: every active campaign,
        and once more a campaign that ended (or that this process has not reported yet), so its final
        numbers stay on the dashboard."""
        for campaign in list_campaigns(self.rt.redis):
            state = CampaignState(self.rt.redis, campaign)
            try:
                status = state.status()
                if status not in ACTIVE and self._reported.get(campaign, "running") not in ACTIVE:
                    continue
                metrics.report_campaign(state.snapshot())
            except KeyError:  # listed but its state is gone
                continue
            self._reported[campaign] = status
        priorities = self.app.conf.broker_transport_options.get("priority_steps") or [0]
        metrics.report_queues(self.rt.redis, queues.QUEUES, priorities)

    def reconcile_all(self, still_leader: Callable[[], bool] = lambda: True) -> dict[str, str]:
        """Reconcile each active campaign; what was done to each (stops early once leadership is lost)."""
        actions: dict[str, str] = {}
        for campaign in list_campaigns(self.rt.redis):
            state = CampaignState(self.rt.redis, campaign)
            try:
                status = state.status()
            except KeyError:  # listed but its state is gone (Redis flushed): `resume` restores it
                continue
            if status == "finished":
                if not state.compaction_complete() and still_leader():
                    actions[campaign] = self._compact(state)
                continue
            if status not in ACTIVE:
                continue
            if not still_leader():
                break
            try:
                actions[campaign] = self.reconcile(state)
            except Exception as exc:  # one broken campaign must not stop the others
                log.exception("campaign %s: reconcile failed", campaign)
                state.put("controller", "error", f"{type(exc).__name__}: {exc}"[:500])
                actions[campaign] = "error"
        return actions

    def reconcile(self, state: CampaignState) -> str:
        config = state.campaign_config()
        if state.status() == "building":
            return self._build(state, config)
        snap = state.snapshot()
        if snap["done"]:
            # Compare-and-set: a campaign that was cancelled or given more work meanwhile keeps that status.
            if config.controller.build_dataset:
                if not state.set_status_if("running", "building"):
                    return "changed"
                log.info("campaign %s: complete; building dataset %s", state.campaign, config.dataset.name)
                return self._build(state, config)
            if not state.set_status_if("running", "finished"):
                return "changed"
            log.info("campaign %s: finished", state.campaign)
            self._compact(state)
            return "finished"
        return self._watch_progress(state, config, snap)

    # -- stalls ------------------------------------------------------------------------------
    def _watch_progress(self, state: CampaignState, config: CampaignConfig, snap: dict[str, Any]) -> str:
        now = self.clock()
        marks = progress_marks(snap)
        progress = state.table("controller").get("progress")
        if progress is None or progress["marks"] != marks:
            state.put("controller", "progress", {"marks": marks, "since": now})
            return "progressing"
        stall_s = config.controller.stall_s or default_stall_s()
        if now - float(progress["since"]) < stall_s:
            return "waiting"
        missing = missing_experts(self.rt.registry, config.expert_names)
        if missing:
            state.put("controller", "waiting_for", {"experts": missing, "since": progress["since"], "at": now})
            return "waiting-for-experts"
        attempt = f"controller{state.next_resume()}"
        sent = resend_unfinished(self.app, state, config, attempt)
        state.put("controller", "progress", {"marks": marks, "since": now})
        resends = state.table("controller").get("resends", [])[-(RESENDS_KEPT - 1) :]
        resends.append({"at": now, "stalled_s": round(now - progress["since"], 1), "sent": sent})
        state.put("controller", "resends", resends)
        state.incr("controller_resends")
        log.info("campaign %s: no progress for %.0fs; re-sent %s", state.campaign, now - progress["since"], sent)
        return "resent"

    # -- finalize and build ------------------------------------------------------------------
    def _build(self, state: CampaignState, config: CampaignConfig) -> str:
        now = self.clock()
        table = state.table("controller")
        build = table.get("build") or {"attempt": 0}
        stall_s = config.controller.stall_s or default_stall_s()
        step = build.get("step")
        if step is None or step == "done":  # "done": an earlier build, before work was added to the campaign
            # Each build of the campaign is a new round: its tasks get ids (and results) of their own.
            return self._send(state, {"round": state.next_build(), "attempt": 1}, "finalize", now)
        result = AsyncResult(build["task"], app=self.app)
        if not result.ready():
            if now - float(build["sent_at"]) > stall_s:  # the message or its worker was lost
                log.info("campaign %s: no %s result after %.0fs; sending it again", state.campaign, step,
                         now - build["sent_at"])  # fmt: skip
                return self._send(state, build | {"resent": build.get("resent", 0) + 1}, step, now)
            return f"{step}-pending"
        if not result.successful():
            error = f"{step}: {type(result.result).__name__}: {result.result}"[:500]
            if build["attempt"] >= BUILD_ATTEMPTS:
                state.put("controller", "build", build | {"error": error})
                state.set_status("build_failed")
                log.error("campaign %s: %s failed %d times: %s", state.campaign, step, build["attempt"], error)
                return "build-failed"
            log.warning("campaign %s: %s failed (%s); retrying", state.campaign, step, error)
            retry = {"round": build.get("round", 1), "attempt": build["attempt"] + 1, "last_error": error}
            return self._send(state, retry, "finalize", now)
        value = dict(result.result)
        if step == "finalize":
            return self._send(state, build | {"ratings_key": value["ratings_key"]}, "build", now)
        state.put("controller", "dataset", {
            "name": value["name"], "version": value["version"], "rows": value["rows"],
            "uri": f"datasets/{value['name']}/{value['version']}/", "ratings_key": build["ratings_key"],
        })  # fmt: skip
        state.put("controller", "build", build | {"step": "done", "finished_at": now})
        if not state.set_status_if("building", "finished"):  # work was added meanwhile: built again when done
            log.info("campaign %s: work was added while its dataset was built; building again once done",
                     state.campaign)  # fmt: skip
            return "reopened"
        log.info("campaign %s: finished; dataset %s version %s (%d rows)", state.campaign, value["name"],
                 value["version"], value["rows"])  # fmt: skip
        self._compact(state)
        return "built"

    # -- compaction ----------------------------------------------------------------------------
    def _compact(self, state: CampaignState) -> str:
        """Move a finished campaign's per-instruction state to the store, now or on the compaction thread."""
        if self._pool is None:
            return self._compact_now(state)
        running = self._compacting.get(state.campaign)
        if running is not None and not running.done():
            return "compact-pending"
        self._compacting[state.campaign] = self._pool.submit(self._compact_now, state)
        return "compacting"

    def wait_for_compactions(self, timeout_s: float | None = None) -> None:
        """Until the compactions sent to the background thread are over (on shutdown, and in tests)."""
        for future in list(self._compacting.values()):
            future.result(timeout=timeout_s)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _compact_now(self, state: CampaignState) -> str:
        """Tried again on the next pass when the store or Redis fails meanwhile (the campaign is finished
        either way, and a compaction cut short is simply redone)."""
        try:
            key = state.compact(self.rt.store)
        except Exception:  # the campaign is over: a failed compaction only leaves its state in Redis a while
            log.exception("campaign %s: could not compact its state; trying again on the next pass", state.campaign)
            return "compact-failed"
        log.info("campaign %s: per-instruction state moved to %s", state.campaign, key)
        return "compacted"

    def _send(self, state: CampaignState, build: dict[str, Any], step: str, now: float) -> str:
        campaign = state.campaign
        key = (build.get("round", 1), build["attempt"], build.get("resent", 0))
        if step == "finalize":
            tid = task_id("finalize", campaign, *key)
            self.app.send_task(queues.TASK_FINALIZE, args=[campaign], task_id=tid)
        else:
            name = state.campaign_config().dataset.name
            tid = task_id("build", campaign, *key)
            self.app.send_task(queues.TASK_BUILD, args=[campaign, name, build["ratings_key"]], task_id=tid)
        state.put("controller", "build", build | {"step": step, "task": tid, "sent_at": now})
        return f"{step}-sent"
