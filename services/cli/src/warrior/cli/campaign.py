"""Campaign operations of the CLI: validate and enqueue, follow progress, finalize, build datasets."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from celery import Celery

from warrior.common import queues
from warrior.common.campaign_config import CampaignConfig, parse_campaign_config
from warrior.common.campaign_state import CampaignState, list_campaigns

__all__ = [
    "CampaignError", "CampaignState", "StallWatch", "build_dataset", "cancel", "finalize", "resume", "start", "status",
    "wait",
]  # fmt: skip
from warrior.common.ids import task_id
from warrior.common.registry import Registry
from warrior.common.runtime import DEADLETTER_KEY, Runtime
from warrior.common.store import ObjectNotFound


class CampaignError(RuntimeError):
    """A campaign operation refused or failed; the message says why."""


def wait_for_experts(registry: Registry, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        missing = sorted(set(names) - set(registry.experts()))
        if not missing:
            return
        if time.monotonic() >= deadline:
            live = ", ".join(sorted(registry.experts())) or "none"
            raise CampaignError(f"unknown or unavailable experts: {', '.join(missing)} (registered now: {live})")
        time.sleep(0.5)


def start(rt: Runtime, app: Celery, config: CampaignConfig, *, experts_timeout_s: float = 60.0) -> str:
    """Create the campaign and enqueue its mining; nothing is enqueued unless every check passed."""
    wait_for_experts(rt.registry, config.expert_names, experts_timeout_s)
    campaign = config.campaign_id()
    state = CampaignState(rt.redis, campaign)
    expected = config.mining.per_expert * len(config.experts)
    if not state.create(config.model_dump(mode="json"), expected):
        raise CampaignError(f"campaign {campaign!r} already exists; give the config another `campaign:` id")
    rt.store.put_json(f"runs/{campaign}/config.json", config.model_dump(mode="json"), if_absent=True)
    for name in config.expert_names:
        state.mark("roster", name)
    for expert in config.expert_names:
        for index in range(config.mining.per_expert):
            app.send_task(
                queues.TASK_MINE,
                args=[campaign, expert, index],
                task_id=task_id("mine", campaign, expert, index),
            )
    return campaign


def resume(rt: Runtime, app: Celery, campaign: str, *, experts_timeout_s: float = 60.0) -> dict[str, int]:
    """Continue a campaign after its stack was stopped, crashed or cancelled: re-send the first
    unfinished stage of every unit of work; every stage skips what its records say is done and
    reuses recorded model calls, so nothing is paid twice.

    With Redis's state lost too, the campaign is recreated from `runs/<campaign>/config.json`
    and re-driven from mining: each stage finds its records in the object store and moves on.
    """
    state = CampaignState(rt.redis, campaign)
    if not state.exists():
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
    config = state.campaign_config()
    wait_for_experts(rt.registry, config.expert_names, experts_timeout_s)
    state.set_status("running")
    attempt = f"resume{state.next_resume()}"
    sent = {"mine": 0, "screen": 0, "battle": 0, "score": 0, "collect": 0}

    def send(stage: str, name: str, args: list[Any], *key: object) -> None:
        app.send_task(name, args=args, task_id=task_id(stage, campaign, *key, attempt))
        sent[stage] += 1

    mine_done = state.members("mine_done")
    for expert, index in ((e, i) for e in config.expert_names for i in range(config.mining.per_expert)):
        if f"{expert}:{index}" not in mine_done:
            send("mine", queues.TASK_MINE, [campaign, expert, index], expert, index)
    for iid in sorted(state.members("mined") - state.members("screened")):
        send("screen", queues.TASK_SCREEN, [campaign, iid], iid)
    battled, scored = state.members("battled"), state.members("scored")
    for iid in sorted(state.members("kept") - state.members("finished")):
        if iid in scored:
            send("collect", queues.TASK_COLLECT, [campaign, iid], iid)
        elif iid in battled:
            send("score", queues.TASK_SCORE, [campaign, iid], iid)
        else:
            send("battle", queues.TASK_BATTLE, [campaign, iid], iid)
    return sent


def cancel(rt: Runtime, campaign: str) -> None:
    """Stop a campaign cleanly: its queued tasks end without work; `resume` takes it up again."""
    state = CampaignState(rt.redis, campaign)
    if not state.exists():
        raise CampaignError(f"unknown campaign {campaign!r}")
    state.set_status("cancelled")


def resolve_campaign(rt: Runtime, campaign: str | None) -> str:
    """The named campaign, or the newest one."""
    known = list_campaigns(rt.redis)
    if campaign is None:
        if not known:
            raise CampaignError("no campaign has been started yet")
        return known[-1]
    if campaign not in known:
        raise CampaignError(f"unknown campaign {campaign!r} (known: {', '.join(known) or 'none'})")
    return campaign


def status(rt: Runtime, campaign: str) -> dict[str, Any]:
    snap = CampaignState(rt.redis, campaign).snapshot()
    deadletters = {str(k): str(v) for k, v in rt.redis.hgetall(DEADLETTER_KEY).items() if campaign in str(k)}
    snap["dead_lettered"] = deadletters
    return snap


def progress_line(snap: dict[str, Any], elapsed: float) -> str:
    ins = snap["instructions"]
    return (
        f"[{elapsed:5.0f}s] mined {snap['mine']['done']}/{snap['mine']['expected']}  "
        f"screened {ins['screened']}/{ins['mined']}  kept {ins['kept']}  "
        f"battled {snap['battled']}  done {snap['finished']}/{ins['kept']}  "
        f"votes {snap['votes']}  failures {sum(snap['failures'].values())}"
    )


def default_stall_s() -> float:
    """No progress for this long means work was lost, not slow: twice the visibility timeout (by then
    a killed worker's message is back in its queue), plus a minute."""
    return 2 * float(os.environ.get("WARRIOR_VISIBILITY_TIMEOUT_S", "3600")) + 60


def progress_marks(snap: dict[str, Any]) -> tuple[Any, ...]:
    """What changes whenever any unit of work moves on."""
    ins = snap["instructions"]
    return (snap["mine"]["done"], ins["mined"], ins["screened"], ins["kept"], snap["battled"], snap["finished"],
            snap["votes"], sum(snap["failures"].values()))  # fmt: skip


class StallWatch:
    """Re-sends a campaign's unfinished stages (`resume`) when it has made no progress for `stall_s`.

    A message can be lost for good in rare cases the broker cannot cover (a worker killed between
    taking a message off its queue and recording it as unacknowledged); every stage is idempotent and
    reuses recorded calls, so re-sending costs nothing but the lost work.
    """

    def __init__(self, rt: Runtime, app: Celery, campaign: str, stall_s: float) -> None:
        self.rt, self.app, self.campaign, self.stall_s = rt, app, campaign, stall_s
        self.resumes = 0
        self._marks: tuple[Any, ...] | None = None
        self._since = time.monotonic()

    def check(self, snap: dict[str, Any]) -> dict[str, int] | None:
        """Given the latest snapshot, resume if stalled; what was re-sent, or None."""
        marks = progress_marks(snap)
        now = time.monotonic()
        if marks != self._marks:
            self._marks, self._since = marks, now
            return None
        if snap["done"] or now - self._since < self.stall_s:
            return None
        self._since = now
        self.resumes += 1
        return resume(self.rt, self.app, self.campaign)


def wait(
    rt: Runtime,
    campaign: str,
    *,
    timeout_s: float,
    interval_s: float = 2.0,
    app: Celery | None = None,
    stall_s: float | None = None,
) -> dict[str, Any]:
    """Block until the campaign is done, printing progress to stderr; returns the final snapshot.

    With `app`, a campaign without progress for `stall_s` (default: `default_stall_s()`) gets its
    unfinished stages re-sent, as `warrior campaign resume` would."""
    started = time.monotonic()
    state = CampaignState(rt.redis, campaign)
    watch = StallWatch(rt, app, campaign, stall_s or default_stall_s()) if app is not None else None
    tty = sys.stderr.isatty()
    last_line, last_print = "", 0.0
    while True:
        snap = state.snapshot()
        elapsed = time.monotonic() - started
        line = progress_line(snap, elapsed)
        if tty:
            sys.stderr.write("\r" + line)
        elif line[9:] != last_line[9:] or elapsed - last_print > 30:
            sys.stderr.write(line + "\n")
            last_print = elapsed
        sys.stderr.flush()
        last_line = line
        if snap["done"]:
            if tty:
                sys.stderr.write("\n")
            if not state.cancelled():
                state.set_status("finished")
            return state.snapshot()
        if state.cancelled():
            if tty:
                sys.stderr.write("\n")
            raise CampaignError(f"campaign {campaign!r} was cancelled: {line}")
        if elapsed > timeout_s:
            if tty:
                sys.stderr.write("\n")
            raise CampaignError(f"campaign {campaign!r} not finished after {timeout_s:.0f}s: {line}")
        if watch is not None:
            try:
                sent = watch.check(snap)
            except CampaignError as exc:  # e.g. an expert of the roster is gone: keep waiting, say why
                lead = "\n" if tty else ""
                sys.stderr.write(f"{lead}no progress for {watch.stall_s:.0f}s; cannot resume: {exc}\n")
            else:
                if sent is not None:
                    sys.stderr.write(
                        f"{chr(10) if tty else ''}no progress for {watch.stall_s:.0f}s: re-sent the unfinished "
                        f"stages ({', '.join(f'{k} {v}' for k, v in sent.items() if v) or 'none'})\n"
                    )
        time.sleep(interval_s)


def finalize(app: Celery, campaign: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """Ratings with intervals and final winners, computed by the scorer service."""
    result = app.send_task(queues.TASK_FINALIZE, args=[campaign])
    return dict(result.get(timeout=timeout_s))


def build_dataset(app: Celery, campaign: str, name: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """Finalize the ratings, then have the dataset builder write an immutable version."""
    final = finalize(app, campaign, timeout_s)
    result = app.send_task(queues.TASK_BUILD, args=[campaign, name, final["ratings_key"]])
    manifest = dict(result.get(timeout=timeout_s))
    manifest["uri"] = manifest_uri(manifest)
    return manifest


def manifest_uri(manifest: dict[str, Any]) -> str:
    return f"datasets/{manifest['name']}/{manifest['version']}/"
