"""Tests for warrior.scorer.ratings: Elo, Bradley-Terry and bootstrap ratings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from warrior.scorer.ratings import (
    Outcome,
    Rating,
    bradley_terry,
    expected_score,
    online_elo,
    rate,
)

# True Elo-scale strengths for the simulation; they already have mean 0, which is where
# bradley_terry centres its estimates.
TRUE_RATINGS = {"alpha": 200.0, "beta": 50.0, "gamma": 0.0, "delta": -250.0}


def simulate(games: int, seed: int) -> list[Outcome]:
    """Decisive games between random pairs, won with the Elo-model probability."""
    rng = np.random.default_rng(seed)
    names = list(TRUE_RATINGS)
    outcomes = []
    for _ in range(games):
        i, j = rng.choice(len(names), size=2, replace=False)
        a, b = names[i], names[j]
        a_wins = rng.random() < expected_score(TRUE_RATINGS[a], TRUE_RATINGS[b])
        outcomes.append(Outcome(a, b, "a" if a_wins else "b"))
    return outcomes


def by_name(ratings: list[Rating]) -> dict[str, Rating]:
    return {r.expert: r for r in ratings}


# --- expected_score ---------------------------------------------------------------------


def test_expected_score_is_half_at_equal_ratings() -> None:
    assert expected_score(0.0, 0.0) == 0.5
    assert expected_score(1234.5, 1234.5) == 0.5


def test_expected_score_400_point_gap() -> None:
    assert expected_score(400.0, 0.0) == pytest.approx(10 / 11)  # ~0.909
    assert expected_score(0.0, 400.0) == pytest.approx(1 / 11)


@pytest.mark.parametrize(("a", "b"), [(0.0, 0.0), (100.0, -35.0), (-800.0, 1200.0)])
def test_expected_score_is_symmetric(a: float, b: float) -> None:
    assert expected_score(a, b) + expected_score(b, a) == pytest.approx(1.0)


def test_expected_score_survives_huge_gaps() -> None:
    # 10 ** 500 would overflow a float; the score must saturate instead.
    assert expected_score(200_000.0, 0.0) == 1.0
    assert expected_score(0.0, 200_000.0) == 0.0


# --- Outcome ----------------------------------------------------------------------------


def test_outcome_rejects_self_play() -> None:
    with pytest.raises(ValueError, match="'x'"):
        Outcome("x", "x", "a")


# --- online_elo -------------------------------------------------------------------------


def test_elo_one_win_from_zero_moves_twenty_points() -> None:
    assert online_elo([Outcome("A", "B", "a")]) == {"A": 20.0, "B": -20.0}
    assert online_elo([Outcome("A", "B", "b")]) == {"A": -20.0, "B": 20.0}


def test_elo_tie_between_equals_moves_nothing() -> None:
    assert online_elo([Outcome("A", "B", "tie")]) == {"A": 0.0, "B": 0.0}


def test_elo_tie_pulls_unequal_ratings_together() -> None:
    ratings = online_elo([Outcome("A", "B", "a"), Outcome("A", "B", "tie")])
    assert 0.0 < ratings["A"] < 20.0
    assert ratings["A"] + ratings["B"] == pytest.approx(0.0)


def test_elo_respects_k_and_initial() -> None:
    ratings = online_elo([Outcome("A", "B", "a")], k=32.0, initial=1000.0)
    assert ratings == {"A": 1016.0, "B": 984.0}


def test_elo_second_game_uses_updated_ratings() -> None:
    ratings = online_elo([Outcome("A", "B", "a"), Outcome("A", "B", "a")])
    # Written out: after game 1 A=20, B=-20; game 2 adds 40 * (1 - E(20, -20)).
    second = 40.0 * (1.0 - 1.0 / (1.0 + 10.0 ** ((-20.0 - 20.0) / 400.0)))
    assert ratings["A"] == pytest.approx(20.0 + second)
    assert ratings["B"] == pytest.approx(-20.0 - second)


def test_elo_depends_on_order() -> None:
    forward = [Outcome("A", "B", "a"), Outcome("A", "B", "b")]
    backward = list(reversed(forward))
    # Whoever wins last ends up ahead.
    assert online_elo(forward)["A"] < 0.0 < online_elo(backward)["A"]


def test_elo_rates_every_expert_that_appears() -> None:
    ratings = online_elo([Outcome("A", "B", "a"), Outcome("C", "D", "tie")])
    assert set(ratings) == {"A", "B", "C", "D"}


def test_elo_empty_is_empty() -> None:
    assert online_elo([]) == {}


# --- bradley_terry ----------------------------------------------------------------------


def test_bt_recovers_order_of_simulated_strengths() -> None:
    ratings = bradley_terry(simulate(2000, seed=7))
    assert sorted(ratings, key=ratings.__getitem__, reverse=True) == [
        "alpha",
        "beta",
        "gamma",
        "delta",
    ]
    assert sum(ratings.values()) == pytest.approx(0.0, abs=1e-9)
    for name, true in TRUE_RATINGS.items():
        assert ratings[name] == pytest.approx(true, abs=40.0)


def test_bt_matches_closed_form_for_two_experts() -> None:
    # A wins 3 of every 4: the plain MLE gap is 400 * log10(3), split evenly around 0.
    # With this many games the prior shifts it by well under a point.
    outcomes = [Outcome("A", "B", "a")] * 300 + [Outcome("A", "B", "b")] * 100
    ratings = bradley_terry(outcomes)
    assert ratings["A"] == pytest.approx(200.0 * math.log10(3.0), abs=0.5)
    assert ratings["B"] == pytest.approx(-ratings["A"])


def test_bt_ignores_outcome_order() -> None:
    outcomes = simulate(600, seed=3)
    shuffled = [outcomes[i] for i in np.random.default_rng(11).permutation(len(outcomes))]
    original = bradley_terry(outcomes)
    assert bradley_terry(shuffled) == pytest.approx(original, abs=1e-9)
    assert online_elo(shuffled) != pytest.approx(online_elo(outcomes), abs=1e-6)


def test_bt_ignores_key_order_a_b() -> None:
    # Recording "B lost to A" instead of "A beat B" is the same fact.
    left = bradley_terry([Outcome("A", "B", "a"), Outcome("B", "C", "tie")])
    right = bradley_terry([Outcome("B", "A", "b"), Outcome("C", "B", "tie")])
    assert left == pytest.approx(right, abs=1e-9)


def test_bt_stays_finite_when_one_expert_wins_everything() -> None:
    outcomes = [Outcome("A", "B", "a")] * 50 + [Outcome("C", "A", "b")] * 50
    ratings = bradley_terry(outcomes)
    assert all(math.isfinite(v) for v in ratings.values())
    assert ratings["A"] > 400.0
    assert ratings["B"] < 0.0
    assert ratings["B"] == pytest.approx(ratings["C"])


def test_bt_ties_count_half_each() -> None:
    assert bradley_terry([Outcome("A", "B", "tie")] * 5) == pytest.approx({"A": 0.0, "B": 0.0}, abs=1e-9)
    # Two ties are worth one win and one loss.
    with_ties = bradley_terry([Outcome("A", "B", "tie")] * 2 + [Outcome("A", "C", "a")])
    with_split = bradley_terry([Outcome("A", "B", "a"), Outcome("A", "B", "b"), Outcome("A", "C", "a")])
    assert with_ties == pytest.approx(with_split, abs=1e-9)


def test_bt_includes_listed_experts_without_games() -> None:
    ratings = bradley_terry([Outcome("A", "B", "a")], experts=["A", "Z"])
    assert set(ratings) == {"A", "B", "Z"}
    assert ratings["Z"] == pytest.approx(0.0, abs=1e-9)
    assert bradley_terry([], experts=["X", "Y"]) == {"X": 0.0, "Y": 0.0}


# --- rate -------------------------------------------------------------------------------


def test_rate_bt_intervals_cover_true_strengths() -> None:
    ratings = rate(simulate(2000, seed=7), bootstrap_rounds=200, seed=1)
    assert [r.expert for r in ratings] == ["alpha", "beta", "gamma", "delta"]
    for r in ratings:
        assert r.ci_low < r.rating < r.ci_high
        assert r.ci_low <= TRUE_RATINGS[r.expert] <= r.ci_high
        assert r.ci_high - r.ci_low < 100.0  # informative, not just wide


def test_rate_point_estimate_equals_method() -> None:
    outcomes = simulate(300, seed=5)
    bt = by_name(rate(outcomes, bootstrap_rounds=0))
    elo = by_name(rate(outcomes, method="elo", bootstrap_rounds=0))
    for name, value in bradley_terry(outcomes).items():
        assert bt[name].rating == value
    for name, value in online_elo(outcomes).items():
        assert elo[name].rating == value


def test_rate_zero_rounds_gives_zero_width_interval() -> None:
    for method in ("bt", "elo"):
        for r in rate(simulate(100, seed=2), method=method, bootstrap_rounds=0):
            assert r.ci_low == r.rating == r.ci_high


def test_rate_is_reproducible_for_a_seed() -> None:
    outcomes = simulate(300, seed=4)
    for method in ("bt", "elo"):
        first = rate(outcomes, method=method, bootstrap_rounds=30, seed=9)
        assert rate(outcomes, method=method, bootstrap_rounds=30, seed=9) == first
        assert rate(outcomes, method=method, bootstrap_rounds=30, seed=10) != first


def test_rate_elo_interval_is_not_degenerate() -> None:
    ratings = rate(simulate(300, seed=4), method="elo", bootstrap_rounds=40, seed=0)
    assert all(r.ci_low < r.ci_high for r in ratings)


def test_rate_counts_battles_including_ties() -> None:
    outcomes = [
        Outcome("A", "B", "a"),
        Outcome("A", "C", "tie"),
        Outcome("B", "A", "tie"),
        Outcome("D", "B", "b"),
    ]
    counts = {r.expert: r.battles for r in rate(outcomes, bootstrap_rounds=5, experts=["E"])}
    assert counts == {"A": 3, "B": 3, "C": 1, "D": 1, "E": 0}


def test_rate_includes_experts_without_games() -> None:
    for method in ("bt", "elo"):
        ratings = by_name(
            rate(
                [Outcome("A", "B", "a")],
                method=method,
                bootstrap_rounds=10,
                experts=["Z"],
            )
        )
        assert set(ratings) == {"A", "B", "Z"}
        assert ratings["Z"].rating == pytest.approx(0.0, abs=1e-9)
        assert ratings["Z"].battles == 0


def test_rate_with_no_outcomes_puts_everyone_at_zero() -> None:
    for method in ("bt", "elo"):
        ratings = rate([], method=method, experts=["y", "x"])
        assert ratings == [Rating("x", 0.0, 0.0, 0.0, 0), Rating("y", 0.0, 0.0, 0.0, 0)]
    assert rate([]) == []


def test_rate_sorts_by_rating_then_name() -> None:
    outcomes = [Outcome("b", "c", "a"), Outcome("a", "d", "tie")]
    ratings = rate(outcomes, method="elo", bootstrap_rounds=0)
    # b is top, c is bottom; a and d tie at 0 and come alphabetically.
    assert [r.expert for r in ratings] == ["b", "a", "d", "c"]


def test_rate_stays_finite_when_one_expert_wins_everything() -> None:
    outcomes = [Outcome("A", "B", "a")] * 30 + [Outcome("A", "C", "a")] * 30
    for r in rate(outcomes, bootstrap_rounds=20):
        assert all(math.isfinite(v) for v in (r.rating, r.ci_low, r.ci_high))


def test_rate_narrower_confidence_gives_narrower_interval() -> None:
    outcomes = simulate(300, seed=6)
    wide = by_name(rate(outcomes, bootstrap_rounds=50, confidence=0.95))
    narrow = by_name(rate(outcomes, bootstrap_rounds=50, confidence=0.5))
    for name in TRUE_RATINGS:
        assert wide[name].ci_low <= narrow[name].ci_low <= narrow[name].ci_high
        assert narrow[name].ci_high <= wide[name].ci_high


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "glicko"},
        {"bootstrap_rounds": -1},
        {"confidence": 0.0},
        {"confidence": 1.0},
    ],
)
def test_rate_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        rate([Outcome("A", "B", "a")], **kwargs)  # type: ignore[arg-type]
