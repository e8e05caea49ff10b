"""Tests for warrior.scorer.scores: local scores, final scores and the winner."""

from __future__ import annotations

import pytest

from warrior.scorer.scores import final_scores, local_score, pick_winner

RATINGS = {"A": 100.0, "B": 0.0, "C": -50.0}
# (C, A) is keyed the "wrong" way round on purpose: C got 1 vote, A got 3.
# (B, C) has no entry, so it counts as x = 0.5.
PAIR_VOTES = {("A", "B"): (3, 1), ("C", "A"): (1, 3)}


def elo_e(r_a: float, r_b: float) -> float:
    """The paper's expected score, written out independently of the code under test."""
    return 1.0 / (1.0 + float(10.0 ** ((r_b - r_a) / 400.0)))


# --- local_score ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t_a", "t_b", "expected"),
    [(3, 1, 0.75), (1, 3, 0.25), (5, 0, 1.0), (0, 5, 0.0), (2, 2, 0.5), (0, 0, 0.5)],
)
def test_local_score(t_a: int, t_b: int, expected: float) -> None:
    assert local_score(t_a, t_b) == expected


def test_local_score_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="-2"):
        local_score(-2, 3)
    with pytest.raises(ValueError, match="-1"):
        local_score(3, -1)


# --- final_scores -----------------------------------------------------------------------


def test_final_scores_hand_computed_three_competitors() -> None:
    scores = final_scores(["A", "B", "C"], RATINGS, PAIR_VOTES, alpha=0.7)
    e_ab = elo_e(100.0, 0.0)
    e_ac = elo_e(100.0, -50.0)
    e_bc = elo_e(0.0, -50.0)
    expected = {
        # A: beats B 3 of 4 votes, beats C 3 of 4 votes.
        "A": (0.7 * e_ab + 0.3 * (3 / 4)) + (0.7 * e_ac + 0.3 * (3 / 4)),
        # B: 1 of 4 votes against A, no votes against C.
        "B": (0.7 * (1 - e_ab) + 0.3 * (1 / 4)) + (0.7 * e_bc + 0.3 * 0.5),
        # C: 1 of 4 votes against A, no votes against B.
        "C": (0.7 * (1 - e_ac) + 0.3 * (1 / 4)) + (0.7 * (1 - e_bc) + 0.3 * 0.5),
    }
    assert scores == pytest.approx(expected)
    # Each pair hands out exactly one point between its two members.
    assert sum(scores.values()) == pytest.approx(3.0)


def test_final_scores_alpha_one_ignores_votes() -> None:
    flipped = {("A", "B"): (0, 9), ("A", "C"): (0, 9), ("B", "C"): (9, 0)}
    with_votes = final_scores(["A", "B", "C"], RATINGS, PAIR_VOTES, alpha=1.0)
    assert final_scores(["A", "B", "C"], RATINGS, flipped, alpha=1.0) == with_votes
    assert with_votes["A"] == pytest.approx(elo_e(100.0, 0.0) + elo_e(100.0, -50.0))


def test_final_scores_alpha_zero_ignores_ratings() -> None:
    reversed_ratings = {"A": -500.0, "B": 0.0, "C": 900.0}
    scores = final_scores(["A", "B", "C"], RATINGS, PAIR_VOTES, alpha=0.0)
    assert final_scores(["A", "B", "C"], reversed_ratings, PAIR_VOTES, alpha=0.0) == scores
    assert scores == pytest.approx({"A": 1.5, "B": 0.75, "C": 0.75})


def test_final_scores_accepts_both_key_orders_when_they_agree() -> None:
    both = {**PAIR_VOTES, ("A", "C"): (3, 1)}
    assert final_scores(["A", "B", "C"], RATINGS, both) == final_scores(["A", "B", "C"], RATINGS, PAIR_VOTES)


def test_final_scores_rejects_conflicting_key_orders() -> None:
    conflicting = {("A", "B"): (3, 1), ("B", "A"): (3, 1)}
    with pytest.raises(ValueError, match="disagree"):
        final_scores(["A", "B"], RATINGS, conflicting)


def test_final_scores_single_competitor_scores_zero() -> None:
    assert final_scores(["A"], RATINGS, {}) == {"A": 0.0}


def test_final_scores_rejects_competitor_without_rating() -> None:
    with pytest.raises(ValueError, match="'D'"):
        final_scores(["A", "D"], RATINGS, {})


@pytest.mark.parametrize("alpha", [-0.1, 1.1, float("nan")])
def test_final_scores_rejects_alpha_outside_unit_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        final_scores(["A", "B"], RATINGS, {}, alpha=alpha)


def test_final_scores_rejects_duplicate_competitors() -> None:
    with pytest.raises(ValueError, match="distinct"):
        final_scores(["A", "A"], RATINGS, {})


# --- pick_winner ------------------------------------------------------------------------


def test_pick_winner_takes_highest_score() -> None:
    assert pick_winner({"A": 1.2, "B": 1.9, "C": 0.4}) == "B"


def test_pick_winner_breaks_ties_alphabetically() -> None:
    assert pick_winner({"zeta": 1.0, "beta": 1.0, "alpha": 0.5}) == "beta"
    assert pick_winner({"beta": 1.0, "zeta": 1.0}) == "beta"


def test_pick_winner_rejects_empty() -> None:
    with pytest.raises(ValueError):
        pick_winner({})


def test_pick_winner_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        pick_winner({"A": float("nan"), "B": 1.0})


def test_final_scores_feed_pick_winner() -> None:
    scores = final_scores(["A", "B", "C"], RATINGS, PAIR_VOTES)
    assert pick_winner(scores) == "A"


def test_an_answer_that_passes_fewer_trusted_tests_cannot_win_on_its_rating() -> None:
    from warrior.scorer.tasks import outcomes_of, winner_of

    battle = {
        "competitors": ["strong", "weak"],
        "pairs": [{"a": "strong", "b": "weak"}],
        "judgments": [
            {"a": "strong", "b": "weak", "judge": "execution", "source": "execution", "winner": "weak", "votes": 3}
        ],
        "execution": {
            "executable": True,
            "matrix": {"strong": {"t0": "failed", "t1": "passed"}, "weak": {"t0": "passed", "t1": "passed"}},
            "trust": {"trusted": ["t0", "t1"], "untrusted": {}},
        },
    }
    # A much higher rating would win under the paper's blend alone (alpha 0.7).
    decided = winner_of(battle, {"strong": 400.0, "weak": -400.0}, alpha=0.7)
    assert decided["scores"]["strong"] > decided["scores"]["weak"]
    assert decided["winner"] == "weak" and decided["eligible"] == ["weak"]
    # Execution's verdict weighs as many votes as the judges it stood in for.
    assert [o.winner for o in outcomes_of(battle)] == ["b", "b", "b"]
