"""Per-instruction scoring: local scores from votes, final scores, and the winning answer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# Relative so that mypy, run on these files directly, resolves it without the
# editable-install import hook that makes `warrior.scorer` importable at runtime.
from .ratings import expected_score

__all__ = ["final_scores", "local_score", "pick_winner"]


def local_score(votes_for_a: int, votes_for_b: int) -> float:
    """x = tA / (tA + tB): A's share of the decisive votes in one pair on one instruction.

    Ties are not passed in and so count for neither side. With no decisive votes the pair
    is even and the score is 0.5.
    """
    for name, value in (("votes_for_a", votes_for_a), ("votes_for_b", votes_for_b)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    total = votes_for_a + votes_for_b
    if total == 0:
        return 0.5
    return votes_for_a / total


def final_scores(
    competitors: Sequence[str],
    ratings: Mapping[str, float],
    pair_votes: Mapping[tuple[str, str], tuple[int, int]],
    *,
    alpha: float = 0.7,
) -> dict[str, float]:
    """Final score of each competitor on one instruction.

    e_A = sum over the other competitors B of
    alpha * expected_score(R_A, R_B) + (1 - alpha) * local_score(votes A over B),
    blending the global Elo-scale rating with this instruction's votes. `pair_votes`
    maps (a, b) to (votes for a, votes for b); each pair may be keyed in either order
    (both orders are accepted only if they agree). A pair with no entry counts as
    x = 0.5, as if it had no votes.
    """
    if not 0.0 <= alpha <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if len(set(competitors)) != len(competitors):
        raise ValueError(f"competitors must be distinct, got {list(competitors)!r}")
    for name in competitors:
        if name not in ratings:
            raise ValueError(f"no rating for competitor {name!r}")

    scores: dict[str, float] = {}
    for a in competitors:
        total = 0.0
        for b in competitors:
            if b == a:
                continue
            votes_a, votes_b = _votes(pair_votes, a, b)
            total += alpha * expected_score(ratings[a], ratings[b]) + (1.0 - alpha) * local_score(votes_a, votes_b)
        scores[a] = total
    return scores


def pick_winner(scores: Mapping[str, float]) -> str:
    """Name with the highest score; equal top scores go to the alphabetically first name.

    The name tie-break makes the pick independent of mapping order.
    """
    if not scores:
        raise ValueError("cannot pick a winner from no scores")
    for name, score in scores.items():
        if math.isnan(score):
            # NaN compares false both ways, which would make the pick depend on order.
            raise ValueError(f"score for {name!r} is NaN")
    return min(scores, key=lambda name: (-scores[name], name))


def _votes(pair_votes: Mapping[tuple[str, str], tuple[int, int]], a: str, b: str) -> tuple[int, int]:
    """(votes for a, votes for b), looking the pair up under either key order."""
    forward = pair_votes.get((a, b))
    backward = pair_votes.get((b, a))
    reversed_ = None if backward is None else (backward[1], backward[0])
    if forward is not None and reversed_ is not None and forward != reversed_:
        raise ValueError(f"pair_votes disagree for ({a!r}, {b!r}): {forward} vs {backward} under ({b!r}, {a!r})")
    if forward is not None:
        return forward
    if reversed_ is not None:
        return reversed_
    return (0, 0)
