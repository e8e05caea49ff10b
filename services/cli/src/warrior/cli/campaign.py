"""Campaign operations of the CLI: validate and enqueue, follow progress, finalize, build datasets."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from warrior.common import queues
from warrior.common.batches import chunks
from warrior.common.campaign_config import CampaignConfig
from warrior.common.campaign_recovery import CampaignError, resend_unfinished, restore, wait_for_experts
from warrior.common.campaign_state import CampaignState, list_campaigns
from warrior.common.ids import task_id
from warrior.common.progress import ProgressBar, ProgressCallback
from warrior.common.runtime import DEADLETTER_KEY, Runtime
from warrior.controller.leader import leader

__all__ = [
    "CampaignError", "CampaignState", "build_dataset", "cancel", "finalize", "resume", "start", "status", "wait",
    "wait_for_experts",
]  # fmt: skip


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
    # Experts interleaved, so that each batch asks every expert for instructions at once.
    units = [[expert, index] for index in range(config.mining.per_expert) for expert in config.expert_names]
    for batch in chunks(units, config.pipeline.batch_size):
        app.send_task(queues.TASK_MINE, args=[campaign, batch], task_id=task_id("mine", campaign, *batch))
    return campaign


def resume(rt: Runtime, app: Celery, campaign: str, *, experts_timeout_s: float = 60.0) -> dict[str, int]:
    """Continue a campaign after its stack was stopped, crashed or cancelled: re-send the first
    unfinished stage of every unit of work; every stage skips what its records say is done and
    reuses recorded model calls, so nothing is paid twice.

    With Redis's state lost too, the campaign is recreated from `runs/<campaign>/config.json`
    and re-driven from mining: each stage finds its records in the object store and moves on.
    """
    state = restore(rt, campaign)
    config = state.campaign_config()
    wait_for_experts(rt.registry, config.expert_names, experts_timeout_s)
    state.set_status("running")
    return resend_unfinished(app, state, config, f"resume{state.next_resume()}")


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


def progress_counts(snap: dict[str, Any]) -> tuple[int, int]:
    """(settled, expected): of the instructions the campaign set out to mine, how many are settled -
    a mining unit that yielded none, an instruction dropped at screening, one battled to the end."""
    mine, ins = snap["mine"], snap["instructions"]
    expected = int(mine["expected"])
    settled = (mine["done"] - ins["mined"]) + (ins["screened"] - ins["kept"]) + snap["finished"]
    return max(0, min(settled, expected)), expected


def progress_postfix(snap: dict[str, Any]) -> str:
    """The stages behind the count: what `warrior status` shows, in one line."""
    ins = snap["instructions"]
    text = (
        f"mined {snap['mine']['done']}/{snap['mine']['expected']} screened {ins['screened']}/{ins['mined']} "
        f"kept {ins['kept']} battled {snap['battled']} done {snap['finished']}/{ins['kept']} "
        f"votes {snap['votes']} failures {sum(snap['failures'].values())}"
    )
    backfills = snap["backfills"]
    if backfills["sent"]:
        text += f" backfills {backfills['done']}/{backfills['sent']}"
    if snap["status"] == "building":
        text += " - building the dataset"
    return text


FINAL = ("finished", "build_failed")


def wait(
    rt: Runtime,
    campaign: str,
    *,
    timeout_s: float,
    interval_s: float = 2.0,
    until: str = "done",
    terminal: bool | None = None,
) -> dict[str, Any]:
    """Watch the campaign, showing its progress on stderr; returns the final snapshot. Only watches:
    re-sending stalled stages, finishing and building are the campaign controller's.

    Progress: a live bar of settled instructions out of those expected, with rate and ETA, on a
    terminal; a plain line every few seconds (and every 10%) otherwise (`terminal` forces either).

    until="done": its work is done (every kept instruction battled, scored and collected).
    until="finished": the controller has marked it finished, with its dataset built when asked
    (CampaignError if the build failed).
    """
    started = time.monotonic()
    state = CampaignState(rt.redis, campaign)
    snap = state.snapshot()
    settled, expected = progress_counts(snap)
    warned, told_building = False, False
    with ProgressBar(f"campaign {campaign}", expected, unit="instructions", initial=settled, terminal=terminal) as bar:
        while True:
            elapsed = time.monotonic() - started
            settled = max(settled, progress_counts(snap)[0])  # stages are counted one after the other
            bar.update_to(settled, postfix=progress_postfix(snap))
            line = progress_line(snap, elapsed)
            if until == "done" and snap["done"]:
                break
            if snap["status"] in FINAL:
                if snap["status"] == "build_failed":
                    error = snap["controller"].get("build", {}).get("error", "unknown error")
                    raise CampaignError(f"campaign {campaign!r}: its dataset could not be built: {error}")
                break
            if state.cancelled():
                raise CampaignError(f"campaign {campaign!r} was cancelled: {line}")
            if elapsed > timeout_s:
                raise CampaignError(f"campaign {campaign!r} not finished after {timeout_s:.0f}s: {line}")
            if not warned and elapsed > 10 and leader(rt.redis) is None:
                bar.write(
                    "no campaign controller is running: nothing will re-send lost work, finish the campaign or "
                    "build its dataset (start the stack with `warrior up`, or deploy the chart's controller)"
                )
                warned = True
            if snap["status"] == "building" and not told_building:
                told_building = True
                bar.write(f"campaign {campaign!r} is complete: the controller is building its dataset")
            time.sleep(interval_s)
            snap = state.snapshot()
    return state.snapshot()


def finalize(app: Celery, campaign: str, timeout_s: float = 600.0, *, verdicts: str = "arena") -> dict[str, Any]:
    """Ratings with intervals and final winners, computed by the scorer service (`verdicts="llm"`: from the
    LLM judges alone, the LLM-only ablation)."""
    result = app.send_task(queues.TASK_FINALIZE, args=[campaign], kwargs={"verdicts": verdicts})
    return dict(result.get(timeout=timeout_s))


def build_dataset(
    app: Celery,
    campaign: str,
    name: str,
    timeout_s: float = 600.0,
    *,
    ratings_key: str | None = None,
    winners: str = "ratings",
    instructions: list[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Finalize the ratings (unless `ratings_key` names a snapshot), then have the dataset builder write an
    immutable version; `winners`, `instructions` and `seed` build an ablation on given rows."""
    if ratings_key is None:
        ratings_key = finalize(app, campaign, timeout_s)["ratings_key"]
    result = app.send_task(
        queues.TASK_BUILD, args=[campaign, name, ratings_key],
        kwargs={"winners": winners, "instructions": instructions, "seed": seed},
    )  # fmt: skip
    manifest = dict(follow(result, f"dataset {name}", "rows", timeout_s))
    manifest["uri"] = manifest_uri(manifest)
    return manifest


def follow(result: AsyncResult, description: str, unit: str, timeout_s: float, interval_s: float = 0.2) -> Any:
    """The task's return value, showing the progress it reports (state PROGRESS: done, total, step) meanwhile."""
    deadline = time.monotonic() + timeout_s
    with ProgressCallback(description, unit=unit) as progress:
        while not result.ready() and time.monotonic() < deadline:
            if result.state == "PROGRESS" and isinstance(result.info, dict):
                info = result.info
                progress(int(info.get("done", 0)), int(info.get("total") or 0) or None, info.get("step"))
            time.sleep(interval_s)
    return result.get(timeout=max(0.0, deadline - time.monotonic()))


def manifest_uri(manifest: dict[str, Any]) -> str:
    return f"datasets/{manifest['name']}/{manifest['version']}/"
