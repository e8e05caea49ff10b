"""The scorer hands its ratings the votes in the order they were recorded, each tagged with its instruction."""

from __future__ import annotations

import numpy as np
import pytest

from warrior.common.campaign_config import CampaignConfig, parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.runtime import get_runtime
from warrior.scorer import tasks
from warrior.scorer.ratings import Outcome, bradley_terry, online_elo


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


def _campaign(name: str, rating: str = "bt") -> tuple[CampaignState, CampaignConfig]:
    data = {
        "campaign": name,
        "experts": [{"name": n, "engine": "zero-latency-test"} for n in ("A", "B", "C", "D")],
        "scoring": {"rating": rating},
    }
    state = CampaignState(get_runtime().redis, name)
    state.create(data, expected_mine=0)
    return state, parse_campaign_config(state.config())


def _record(state: CampaignState, part: str, outcomes: list[Outcome]) -> None:
    """What `score` records for one battle part before it rates."""
    state.put("votes", part, [[o.a, o.b, o.winner] for o in outcomes])
    state.add_once("votes_counted", part, "vote_points", tasks._points(outcomes))


def test_provisional_ratings_from_running_counts_equal_a_refit_over_every_vote(warrior_env: dict[str, str]) -> None:
    state, config = _campaign("c-counts")
    rng = np.random.default_rng(2)
    names = ["A", "B", "C", "D"]
    everything: list[Outcome] = []
    for i in range(40):
        a, b = rng.choice(4, size=2, replace=False)
        part = [Outcome(names[a], names[b], str(rng.choice(["a", "b", "tie"])))]  # type: ignore[arg-type]
        part += [Outcome(names[b], names[a], "b" if part[0].winner == "a" else "a")] * int(rng.integers(0, 3))
        _record(state, f"i{i}", part)
        everything += part
        if i % 10 == 0:
            _record(state, f"i{i}", part)  # a redelivery records the same votes and counts nothing
        assert tasks._provisional_ratings(state, config) == bradley_terry(everything, experts=names)
    assert state.count("votes_counted") == 40


def test_provisional_ratings_replay_the_votes_when_the_counts_are_incomplete(warrior_env: dict[str, str]) -> None:
    state, config = _campaign("c-partial")
    _record(state, "i1", [Outcome("A", "B", "a")] * 3)
    state.put("votes", "i0", [["B", "A", "a"], ["C", "D", "tie"]])  # recorded before counts were kept
    expected = bradley_terry([Outcome("A", "B", "a")] * 3 + [Outcome("B", "A", "a"), Outcome("C", "D", "tie")])
    assert tasks._provisional_ratings(state, config) == pytest.approx(expected, abs=1e-9)
    # The counts alone know only A's three wins; the old part's win of B is not lost.
    assert bradley_terry([Outcome("A", "B", "a")] * 3, experts=["C", "D"])["A"] > expected["A"]


def test_a_newcomer_with_one_battle_is_not_rated_on_its_degenerate_interval(warrior_env: dict[str, str]) -> None:
    # delta tied all its votes in its one battle: every bootstrap resample gives it the same rating,
    # an interval of width 0, which must not end its matchmaking before it met a round of instructions.
    rt = get_runtime()
    state, config = _campaign("c-newcomer")
    rng = np.random.default_rng(4)
    for i in range(12):
        a, b = rng.choice(["A", "B", "C", "D"], size=2, replace=False)
        state.put("votes", f"i{i:02d}", [[str(a), str(b), str(rng.choice(["a", "b"]))] for _ in range(6)])
        state.mark("battled", f"i{i:02d}")
    state.put("votes", "i00+delta", [["A", "delta", "tie"], ["delta", "B", "tie"]] * 3)
    state.mark("roster", "delta")
    batch = tasks.matchmake(rt, "c-newcomer", "delta", 0)
    recorded = state.table("matchmaking")["delta"]
    assert recorded["width"] <= recorded["median_width"]  # the interval alone would call it rated
    assert batch and "rated" not in recorded
    assert len(batch) == config.matchmaking.batch
