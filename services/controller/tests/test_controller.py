"""The controller's leader election and its reconciling pass, on a real Redis and a real broker.

No worker runs here: the tasks the controller sends stay in their Redis queues, where the tests count
them. The campaign controller end to end (workers, experts, a dataset built) is in
tests/test_campaign_controller.py.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from warrior.common.campaign_config import parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.registry import ExpertRecord
from warrior.common.runtime import Runtime, get_runtime
from warrior.controller.leader import Leadership, leader
from warrior.controller.reconcile import CampaignController


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def rt(warrior_env: dict[str, str]) -> Runtime:
    return get_runtime()


@pytest.fixture()
def app(rt: Runtime) -> Iterator[Celery]:
    app = make_celery("tests")
    yield app
    app.close()


def _campaign(rt: Runtime, name: str, *, build: bool = True, stall_s: float = 30.0) -> CampaignState:
    config = parse_campaign_config({
        "campaign": name,
        "experts": [{"name": "alpha", "engine": "zero-latency-test"}, {"name": "beta", "engine": "zero-latency-test"}],
        "mining": {"per_expert": 2},
        "controller": {"build_dataset": build, "stall_s": stall_s},
    })  # fmt: skip
    state = CampaignState(rt.redis, name)
    assert state.create(config.model_dump(mode="json"), 4)
    return state


def _register(rt: Runtime, *names: str) -> None:
    for name in names:
        rt.registry.register(
            ExpertRecord(name=name, instance="i0", endpoint="127.0.0.1:1", model="m", revision="r", engine="test")
        )


def _queued(client: redis.Redis, prefix: str) -> list[Any]:
    """The messages waiting in the Redis lists of one queue (kombu keeps one list per priority)."""
    lists = [k for k in client.scan_iter(f"{prefix}*") if client.type(k) == "list"]
    return [m for k in lists for m in client.lrange(k, 0, -1)]


def test_only_one_replica_leads_and_a_standby_takes_over_when_the_leader_stops(rt: Runtime) -> None:
    first, second = Leadership(rt.redis, "first", ttl_s=1.0), Leadership(rt.redis, "second", ttl_s=1.0)
    assert first.hold() and not second.hold()
    assert first.hold(), "the leader renews its lock on every pass"
    assert leader(rt.redis) == "first"
    first.release()  # a clean shutdown hands over at once
    assert second.hold() and leader(rt.redis) == "second"
    assert not first.hold()
    # A leader that dies (stops renewing) loses the lock when its TTL runs out.
    time.sleep(1.3)
    assert leader(rt.redis) is None
    assert first.hold() and not second.hold()


def test_a_stalled_campaign_gets_its_unfinished_stages_sent_again(rt: Runtime, app: Celery) -> None:
    state = _campaign(rt, "stalled", stall_s=30)
    _register(rt, "alpha", "beta")
    state.mark("mine_done", "alpha:0")  # one of four mining units is done; the other messages were lost
    clock = Clock()
    controller = CampaignController(rt, app, clock=clock)
    assert controller.reconcile(state) == "progressing"  # first sight: the stall window starts now
    clock.now += 29
    assert controller.reconcile(state) == "waiting"
    assert _queued(rt.redis, "mine") == []
    clock.now += 2
    assert controller.reconcile(state) == "resent"
    [message] = _queued(rt.redis, "mine")  # one batch...
    args = json.loads(base64.b64decode(json.loads(message)["body"]))[0]
    assert sorted(map(tuple, args[1])) == [("alpha", 1), ("beta", 0), ("beta", 1)], "...of the three unfinished units"
    assert [r["sent"]["mine"] for r in state.table("controller")["resends"]] == [3]
    # Progress restarts the window: no second re-send while work moves.
    state.mark("mine_done", "alpha:1")
    clock.now += 31
    assert controller.reconcile(state) == "progressing"
    assert len(_queued(rt.redis, "mine")) == 1


def test_a_stalled_campaign_whose_expert_is_gone_waits_for_it_instead_of_resending(rt: Runtime, app: Celery) -> None:
    state = _campaign(rt, "orphan", stall_s=5)
    _register(rt, "alpha")  # beta has no live replica
    clock = Clock()
    controller = CampaignController(rt, app, clock=clock)
    controller.reconcile(state)
    clock.now += 10
    assert controller.reconcile(state) == "waiting-for-experts"
    assert state.table("controller")["waiting_for"]["experts"] == ["beta"]
    assert _queued(rt.redis, "mine") == []


def _complete(state: CampaignState) -> None:
    for unit in ("alpha:0", "alpha:1", "beta:0", "beta:1"):
        state.mark("mine_done", unit)


def test_a_complete_campaign_without_a_dataset_to_build_is_marked_finished(rt: Runtime, app: Celery) -> None:
    state = _campaign(rt, "no-build", build=False)
    _complete(state)
    assert CampaignController(rt, app).reconcile_all() == {"no-build": "finished"}
    assert state.status() == "finished"
    assert CampaignController(rt, app).reconcile_all() == {}, "finished campaigns are left alone"


def test_a_finished_campaign_moves_its_per_instruction_state_to_the_store(rt: Runtime, app: Celery) -> None:
    state = _campaign(rt, "compacted", build=False)
    _complete(state)
    before = state.snapshot()
    assert CampaignController(rt, app).reconcile_all() == {"compacted": "finished"}
    assert state.compacted() and rt.store.exists(str(state.archive_key()))
    assert not rt.redis.exists("warrior:campaign:compacted:mine_done")
    assert state.snapshot() | {"status": "running", "controller": {}} == before
    # One finished before this controller compacted (or whose compaction failed) is compacted on a later pass.
    late = _campaign(rt, "finished-earlier", build=False)
    _complete(late)
    late.set_status("finished")
    assert CampaignController(rt, app).reconcile_all() == {"finished-earlier": "compacted"}
    assert late.compacted() and late.count("mine_done") == 4
    assert CampaignController(rt, app).reconcile_all() == {}


def test_the_controller_process_compacts_on_a_thread_of_its_own(rt: Runtime, app: Celery) -> None:
    """The loop goes on (renewing its lock, watching other campaigns) while a large campaign is compacted."""
    state = _campaign(rt, "in-background", build=False)
    _complete(state)
    controller = CampaignController(rt, app, background=True)
    assert controller.reconcile_all() == {"in-background": "finished"}
    controller.wait_for_compactions(timeout_s=30)
    assert state.compaction_complete() and not rt.redis.exists("warrior:campaign:in-background:mine_done")
    assert controller.reconcile_all() == {}
    controller.close()


def test_a_complete_campaign_is_finalized_and_a_lost_finalize_is_sent_again(rt: Runtime, app: Celery) -> None:
    state = _campaign(rt, "to-build", stall_s=60)
    _complete(state)
    clock = Clock()
    controller = CampaignController(rt, app, clock=clock)
    assert controller.reconcile(state) == "finalize-sent"
    assert state.status() == "building"
    assert len(_queued(rt.redis, "score")) == 1  # warrior.finalize runs on the scorer's queue
    clock.now += 30
    assert controller.reconcile(state) == "finalize-pending"
    for key in [k for k in rt.redis.scan_iter("score*") if rt.redis.type(k) == "list"]:
        rt.redis.delete(key)  # the message is lost with its worker
    clock.now += 31
    assert controller.reconcile(state) == "finalize-sent"
    assert len(_queued(rt.redis, "score")) == 1
    assert state.table("controller")["build"]["resent"] == 1


def test_cancelled_campaigns_are_left_alone(rt: Runtime, app: Celery) -> None:
    state = _campaign(rt, "cancelled")
    _complete(state)
    state.set_status("cancelled")
    assert CampaignController(rt, app).reconcile_all() == {}
    assert state.status() == "cancelled"


def test_a_newcomer_between_matchmaking_rounds_keeps_the_campaign_open_and_a_lost_round_is_sent_again(
    rt: Runtime, app: Celery
) -> None:
    """Between two rounds of a newcomer's backfills every sent backfill is done, yet the next round is
    still to be chosen: the campaign is not done then, and a lost matchmaking message is sent again."""
    state = _campaign(rt, "newcomer", stall_s=10)
    _register(rt, "alpha", "beta", "delta")
    _complete(state)
    state.mark("roster", "delta")  # joined mid-campaign
    state.mark("matchmade", "delta:0")
    state.mark("backfill_sent", "i1+delta")
    state.mark("backfill_done", "i1+delta")
    snap = state.snapshot()
    assert snap["newcomers_matchmaking"] == ["delta"] and not snap["done"]
    clock = Clock()
    controller = CampaignController(rt, app, clock=clock)
    assert controller.reconcile(state) == "progressing"
    clock.now += 11
    assert controller.reconcile(state) == "resent"
    (resend,) = state.table("controller")["resends"]
    assert resend["sent"]["matchmake"] == 1 and resend["sent"]["backfill"] == 0
    assert len(_queued(rt.redis, "score")) == 1  # warrior.matchmake runs on the scorer's queue
    state.put("matchmaking", "delta", {"round": 1, "rated": True})
    assert state.snapshot()["done"]
    assert controller.reconcile(state) == "finalize-sent"


def _finish_task(app: Celery, state: CampaignState, result: dict[str, Any]) -> str:
    """Store the result of the build step the controller last sent, as its worker would; its task id."""
    tid = str(state.table("controller")["build"]["task"])
    app.backend.store_result(tid, result, "SUCCESS")
    return tid


def test_work_added_while_the_dataset_is_built_is_built_again_with_tasks_of_its_own(rt: Runtime, app: Celery) -> None:
    state = _campaign(rt, "grows")
    _complete(state)
    controller = CampaignController(rt, app)
    assert controller.reconcile(state) == "finalize-sent"
    first_finalize = _finish_task(app, state, {"ratings_key": "runs/grows/ratings-1.json"})
    assert controller.reconcile(state) == "build-sent"
    _finish_task(app, state, {"name": "grows", "version": "v1", "rows": 4})
    # More work arrives before the controller sees the build's result: the campaign runs again.
    state.expect_more_mining(2)
    assert state.status() == "running" and "build" not in state.table("controller")
    assert controller.reconcile(state) == "progressing"  # not done: 4 of 6 mining units
    for unit in ("alpha:2", "beta:2"):
        state.mark("mine_done", unit)
    assert controller.reconcile(state) == "finalize-sent"
    second = state.table("controller")["build"]
    assert second["task"] != first_finalize and second["round"] == 2  # not the first build's result
    _finish_task(app, state, {"ratings_key": "runs/grows/ratings-2.json"})
    assert controller.reconcile(state) == "build-sent"
    _finish_task(app, state, {"name": "grows", "version": "v2", "rows": 6})
    # Work added between the controller reading `building` and marking it finished: it is not finished.
    assert state.set_status_if("building", "running")  # what expect_more_mining does first
    assert controller._build(state, state.campaign_config()) == "reopened"
    assert state.status() == "running"
    assert controller.reconcile(state) == "finalize-sent"  # done: a third build, covering everything
    assert state.table("controller")["build"]["round"] == 3
    _finish_task(app, state, {"ratings_key": "runs/grows/ratings-3.json"})
    assert controller.reconcile(state) == "build-sent"
    _finish_task(app, state, {"name": "grows", "version": "v3", "rows": 6})
    assert controller.reconcile(state) == "built"
    assert state.status() == "finished" and state.table("controller")["dataset"]["version"] == "v3"
