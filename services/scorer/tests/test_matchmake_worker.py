"""The matchmake task, like every other task, does nothing for a cancelled campaign and is dead-lettered
once it has come back too many times (a message that keeps killing its worker)."""

from __future__ import annotations

from typing import Any

import pytest

from warrior.common import queues
from warrior.common.campaign_state import CampaignState
from warrior.common.runtime import DEADLETTER_KEY, MAX_DELIVERIES, get_runtime
from warrior.scorer import worker


@pytest.fixture()
def sent(warrior_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Tasks the worker sends (recorded, not sent); tasks.matchmake always has one instruction to backfill."""
    out: list[tuple[str, Any]] = []
    monkeypatch.setattr(worker.app, "send_task", lambda name, args=None, **_: out.append((name, args)))
    monkeypatch.setattr(worker.tasks, "matchmake", lambda rt, campaign, expert, round_: ["i1"])
    return out


def test_a_cancelled_campaigns_matchmake_sends_nothing(sent: list[tuple[str, Any]]) -> None:
    state = CampaignState(get_runtime().redis, "c-cancelled")
    state.create({"campaign": "c-cancelled"}, expected_mine=0)
    state.set_status("cancelled")
    assert worker.matchmake.apply(args=["c-cancelled", "newbie", 1], task_id="mm-cancelled").get() == []
    assert sent == []


def test_a_matchmake_delivered_too_often_is_dead_lettered(sent: list[tuple[str, Any]]) -> None:
    rt = get_runtime()
    state = CampaignState(rt.redis, "c-redelivered")
    state.create({"campaign": "c-redelivered"}, expected_mine=0)
    # A run that ends is not a redelivery: its count is dropped with it.
    assert worker.matchmake.apply(args=["c-redelivered", "newbie", 1], task_id="mm-once").get() == ["i1"]
    assert [name for name, _ in sent] == [queues.TASK_BACKFILL] and not rt.redis.exists("warrior:deliveries:mm-once")
    sent.clear()
    # Deliveries whose worker was killed mid-task: each was counted, none ended.
    for _ in range(MAX_DELIVERIES):
        assert rt.admit("mm-again", queues.TASK_MATCHMAKE)
    assert worker.matchmake.apply(args=["c-redelivered", "newbie", 1], task_id="mm-again").get() == []
    assert sent == []
    assert rt.redis.hexists(DEADLETTER_KEY, "mm-again")
    assert "dead-lettered" in state.snapshot()["failure_examples"]["matchmake:newbie:1"]
