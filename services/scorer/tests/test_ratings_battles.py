"""Tests for the vectorised ratings path and the by-battle bootstrap of warrior.scorer.ratings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from warrior.scorer.ratings import Outcome, Votes, bradley_terry, encode, online_elo, rate, rate_votes

_LN = math.log(10.0) / 400.0


def simulate(
    rng: np.random.Generator, true: np.ndarray, battles: int, *, votes_per_pair: int = 4, rho: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Battles of 3 competitors (3 pairs), `votes_per_pair` votes a pair in alternating order. A vote copies
    its pair's shared verdict with probability `rho`, else is drawn on its own; both are drawn with the
    Bradley-Terry probability, so the model of each vote is exact and only the correlation varies."""
    size = len(true)
    chosen = np.argsort(rng.random((battles, size)), axis=1)[:, :3]
    pa = chosen[:, [0, 0, 1]].reshape(-1)
    pb = chosen[:, [1, 2, 2]].reshape(-1)
    p = 1.0 / (1.0 + np.exp(-(true[pa] - true[pb]) * _LN))
    shared = np.repeat(rng.random(len(pa)) < p, votes_per_pair)
    own = rng.random(len(pa) * votes_per_pair) < np.repeat(p, votes_per_pair)
    a_wins = np.where(rng.random(len(own)) < rho, shared, own)
    a, b = np.repeat(pa, votes_per_pair), np.repeat(pb, votes_per_pair)
    swap = np.tile(np.arange(votes_per_pair) % 2 == 1, len(pa))
    score_a = np.where(swap, ~a_wins, a_wins).astype(np.float64)
    battle = np.repeat(np.arange(battles), 3 * votes_per_pair)
    return np.where(swap, b, a), np.where(swap, a, b), score_a, battle


def coverage(rho: float, reps: int, seed: int) -> dict[str, float]:
    """Share of 95% intervals (by-battle and by-vote resampling) that contain the true rating."""
    rng = np.random.default_rng(seed)
    names = [f"e{i}" for i in range(6)]
    hits = {"battle": 0, "vote": 0}
    for rep in range(reps):
        true = rng.normal(0.0, 150.0, len(names))
        true -= true.mean()  # the fit is centred to mean 0
        a, b, s, battle = simulate(rng, true, 250, rho=rho)
        for unit, ids in (("battle", battle), ("vote", None)):
            for r in rate_votes(Votes.of(names, a, b, s, ids), bootstrap_rounds=100, seed=rep):
                hits[unit] += int(r.ci_low <= true[names.index(r.expert)] <= r.ci_high)
    return {unit: n / (reps * len(names)) for unit, n in hits.items()}


def test_by_battle_intervals_cover_and_by_vote_intervals_do_not_when_votes_are_correlated() -> None:
    # 80 repetitions x 6 experts = 480 intervals at a fixed seed: by-battle resampling keeps its
    # nominal 95%; resampling single votes treats a battle's 12 correlated votes as independent.
    found = coverage(rho=0.7, reps=80, seed=0)
    assert 0.88 <= found["battle"] <= 0.99
    assert found["vote"] < found["battle"] - 0.08


def test_with_independent_votes_both_resamplings_cover() -> None:
    found = coverage(rho=0.0, reps=30, seed=1)
    assert 0.88 <= found["battle"] <= 0.99
    assert 0.88 <= found["vote"] <= 0.99


def test_copied_votes_widen_by_battle_intervals_only() -> None:
    # Every battle's single vote recorded four times over is one vote's worth of evidence:
    # by-battle intervals stay as wide as for the single votes, by-vote ones shrink by about half.
    rng = np.random.default_rng(3)
    true = np.array([150.0, 0.0, -150.0])
    a, b, s, battle = simulate(rng, true, 300, votes_per_pair=1, rho=0.0)
    names = ["x", "y", "z"]
    single = {r.expert: r for r in rate_votes(Votes.of(names, a, b, s, battle), bootstrap_rounds=200)}
    copied = Votes.of(names, np.repeat(a, 4), np.repeat(b, 4), np.repeat(s, 4), np.repeat(battle, 4))
    by_battle = {r.expert: r for r in rate_votes(copied, bootstrap_rounds=200)}
    by_vote = {
        r.expert: r for r in rate_votes(Votes.of(names, copied.a, copied.b, copied.score_a), bootstrap_rounds=200)
    }
    for name in names:
        width = single[name].ci_high - single[name].ci_low
        assert by_battle[name].ci_high - by_battle[name].ci_low == pytest.approx(width, rel=0.25)
        assert by_vote[name].ci_high - by_vote[name].ci_low < 0.7 * width
        assert by_battle[name].rating == pytest.approx(single[name].rating, abs=1.0)


def test_arrays_and_outcomes_give_the_same_ratings() -> None:
    rng = np.random.default_rng(5)
    a, b, s, battle = simulate(rng, np.array([100.0, 20.0, -40.0, -80.0]), 80)
    names = ["p", "q", "r", "s"]
    winners = {1.0: "a", 0.0: "b", 0.5: "tie"}
    outcomes = [Outcome(names[i], names[j], winners[x]) for i, j, x in zip(a, b, s, strict=True)]  # type: ignore[index]
    keys = [f"instruction-{k:04d}" for k in battle]  # numbered like the arrays
    for method in ("bt", "elo"):
        via_arrays = rate_votes(Votes.of(names, a, b, s, battle), method=method, bootstrap_rounds=20, seed=4)
        assert rate(outcomes, method=method, bootstrap_rounds=20, seed=4, battles=keys) == via_arrays
    assert {r.expert: r.rating for r in via_arrays} == pytest.approx(online_elo(outcomes), abs=1e-9)


def test_bt_intervals_do_not_depend_on_vote_order() -> None:
    # The scorer passes votes in arrival order; Bradley-Terry, intervals included, must not care.
    rng = np.random.default_rng(8)
    a, b, s, battle = simulate(rng, np.array([80.0, 0.0, -80.0]), 60)
    names = ["x", "y", "z"]
    winners = {1.0: "a", 0.0: "b", 0.5: "tie"}
    outcomes = [Outcome(names[i], names[j], winners[x]) for i, j, x in zip(a, b, s, strict=True)]  # type: ignore[index]
    keys = [f"i{k}" for k in battle]
    order = rng.permutation(len(outcomes))
    shuffled = rate([outcomes[i] for i in order], bootstrap_rounds=30, battles=[keys[i] for i in order])
    assert shuffled == rate(outcomes, bootstrap_rounds=30, battles=keys)


def test_points_matrix_counts_wins_and_half_ties() -> None:
    votes = encode([Outcome("A", "B", "a"), Outcome("B", "A", "a"), Outcome("A", "C", "tie"), Outcome("A", "B", "a")])
    assert votes.points().tolist() == [[0.0, 2.0, 0.5], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]]
    assert bradley_terry([Outcome("A", "B", "a")] * 3 + [Outcome("B", "A", "a")])["A"] > 0.0


def test_encode_numbers_battles_by_key() -> None:
    votes = encode([Outcome("A", "B", "a")] * 3, battles=["y", "x", "y"])
    assert votes.battle.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="2 keys for 3 outcomes"):
        encode([Outcome("A", "B", "a")] * 3, battles=["x", "y"])


@pytest.mark.parametrize(
    ("a", "b", "s", "battle"),
    [([0], [0], [1.0], [0]), ([0], [2], [1.0], [0]), ([0], [1], [0.3], [0]), ([0, 1], [1], [1.0], [0])],
)
def test_votes_rejects_bad_arrays(a: list[int], b: list[int], s: list[float], battle: list[int]) -> None:
    with pytest.raises(ValueError):
        Votes.of(["A", "B"], a, b, s, battle)
