"""The scorer hands its ratings the votes in the order they were recorded, each tagged with its instruction."""

from __future__ import annotations

import pytest

from warrior.common.campaign_state import CampaignState
from warrior.common.runtime import get_runtime
from warrior.scorer import tasks
from warrior.scorer.ratings import Outcome, online_elo


def test_stored_votes_come_in_arrival_order_with_their_instruction(warrior_env: dict[str, str]) -> None:
    state = CampaignState(get_runtime().redis, "c-order")
    state.put("votes", "i-a", [["A", "B", "b"]])
    state.put("votes", "i-b", [["A", "B", "a"], ["B", "A", "tie"]])
    state.put("votes", "i-a+C", [["C", "A", "a"]])  # a newcomer's addendum, its time lost: last
    state.put("vote_order", "i-b", 100.0)
    state.put("vote_order", "i-a", 200.0)
    outcomes, battles = tasks._stored_votes(state)
    assert battles == ["i-b", "i-b", "i-a", "i-a"]
    assert outcomes == [
        Outcome("A", "B", "a"),
        Outcome("B", "A", "tie"),
        Outcome("A", "B", "b"),
        Outcome("C", "A", "a"),
    ]


def test_online_elo_continues_from_earlier_ratings() -> None:
    earlier = [Outcome("A", "B", "a"), Outcome("B", "C", "tie")]
    later = [Outcome("C", "A", "a"), Outcome("D", "B", "b")]
    start = online_elo(earlier)
    assert online_elo(later, start=start) == pytest.approx(online_elo(earlier + later), abs=1e-12)
    assert start == online_elo(earlier)  # the starting ratings are not modified
