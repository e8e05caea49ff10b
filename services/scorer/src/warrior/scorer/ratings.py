"""Expert ratings from pairwise judge votes: online Elo, Bradley-Terry, bootstrap intervals.

All ratings are on the Elo scale (base 10, 400 points per factor of ten in odds), so a
rating gap of 400 means the stronger expert is expected to win about 91% of the time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "BT_PRIOR_SD",
    "Outcome",
    "Rating",
    "bradley_terry",
    "expected_score",
    "online_elo",
    "rate",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

# Natural-log logits per Elo point: 10 ** (d / 400) == exp(d * _LN10_OVER_400).
_LN10_OVER_400 = math.log(10.0) / 400.0

BT_PRIOR_SD = 1000.0
"""Standard deviation, in Elo points, of the Gaussian prior on Bradley-Terry ratings.

Wide enough that it shifts ratings estimated from hundreds of games by well under a point,
narrow enough that an expert who wins every game gets a large but finite rating.
"""

# Newton stops once its full step moves no rating by more than this many Elo points.
_BT_TOLERANCE = 1e-6
_BT_MAX_ITERATIONS = 200


@dataclass(frozen=True)
class Outcome:
    """One judge's final verdict on one pair of experts for one instruction."""

    a: str
    b: str
    winner: Literal["a", "b", "tie"]

    def __post_init__(self) -> None:
        """Reject self-play and unknown verdicts, which no rating method can use."""
        if self.a == self.b:
            raise ValueError(f"an outcome needs two different experts, got {self.a!r} twice")
        if self.winner not in ("a", "b", "tie"):
            raise ValueError(f"winner must be 'a', 'b' or 'tie', got {self.winner!r}")

    @property
    def score_a(self) -> float:
        """Points for `a`: 1 for a win, 0 for a loss, 0.5 for a tie."""
        return {"a": 1.0, "b": 0.0, "tie": 0.5}[self.winner]


@dataclass(frozen=True)
class Rating:
    """An expert's rating with a bootstrap confidence interval.

    `battles` is the number of outcomes (votes, ties included) the expert took part in.
    """

    expert: str
    rating: float
    ci_low: float
    ci_high: float
    battles: int


def expected_score(rating_a: float, rating_b: float) -> float:
    """E = 1 / (1 + 10 ** ((R_B - R_A) / 400)).

    The expected score (win probability, ties as half) of A against B. Evaluated as a
    logistic in whichever direction keeps the exponent non-positive, so huge rating gaps
    give 0.0 or 1.0 instead of an OverflowError from `10 ** big`.
    """
    x = (rating_a - rating_b) * _LN10_OVER_400
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def online_elo(outcomes: Sequence[Outcome], *, k: float = 40.0, initial: float = 0.0) -> dict[str, float]:
    """Sequential Elo over `outcomes` in the order given; a tie scores 0.5 for each side.

    Each outcome moves A by K * (S_A - E_A) and B by the same amount the other way, so
    the total is conserved. The result depends on the order of `outcomes`. Every expert
    that appears gets a rating, starting from `initial`.
    """
    if not math.isfinite(k) or k < 0.0:
        raise ValueError(f"k must be a finite non-negative number, got {k!r}")
    ratings: dict[str, float] = {}
    for outcome in outcomes:
        r_a = ratings.get(outcome.a, initial)
        r_b = ratings.get(outcome.b, initial)
        delta = k * (outcome.score_a - expected_score(r_a, r_b))
        ratings[outcome.a] = r_a + delta
        ratings[outcome.b] = r_b - delta
    return ratings


def bradley_terry(outcomes: Sequence[Outcome], *, experts: Sequence[str] | None = None) -> dict[str, float]:
    """Maximum-a-posteriori Bradley-Terry ratings on the Elo scale, centred to mean 0.

    P(A beats B) = expected_score(R_A, R_B); a tie counts as half a win for each side.
    A weak Gaussian prior (sd `BT_PRIOR_SD` Elo points) keeps the estimate finite when
    one expert wins everything; see `_bt_fit`. The result does not depend on the order
    of `outcomes`. Names in `experts` appear in the result even with zero outcomes
    (an expert with no games gets 0, up to rounding).
    """
    names, index_a, index_b, score_a = _encode(outcomes, experts)
    fitted = _bt_fit(index_a, index_b, score_a, len(names))
    return {name: float(value) for name, value in zip(names, fitted, strict=True)}


def rate(
    outcomes: Sequence[Outcome],
    *,
    method: Literal["bt", "elo"] = "bt",
    bootstrap_rounds: int = 200,
    seed: int = 0,
    experts: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> list[Rating]:
    """Ratings with percentile-bootstrap confidence intervals, best first (ties by name).

    The point estimate uses all outcomes with `method` ("bt": `bradley_terry`, "elo":
    `online_elo` with its defaults). Each of `bootstrap_rounds` rounds draws len(outcomes)
    outcomes with replacement (numpy Generator seeded with `seed`, so results are
    reproducible) and refits; the interval is the central `confidence` percentile range of
    those refits. For "elo" the point estimate follows the given order, while each
    resample is rated in its drawn order, which is a random order, so the interval also
    reflects Elo's order dependence. A percentile interval need not contain the point
    estimate when the bootstrap distribution is skewed. Experts absent from a resample
    get 0 in that round. With `bootstrap_rounds=0` or no outcomes the interval has zero
    width; with no outcomes every name in `experts` gets 0.0.
    """
    if method not in ("bt", "elo"):
        raise ValueError(f"method must be 'bt' or 'elo', got {method!r}")
    if bootstrap_rounds < 0:
        raise ValueError(f"bootstrap_rounds must be >= 0, got {bootstrap_rounds}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")

    names, index_a, index_b, score_a = _encode(outcomes, experts)
    size = len(names)
    battles = np.bincount(index_a, minlength=size) + np.bincount(index_b, minlength=size)

    def fit(rows: IntArray) -> FloatArray:
        # `rows` indexes `outcomes` and the encoded arrays alike: a resample is a
        # row selection, and for Elo its order is the order the games are played in.
        if method == "bt":
            return _bt_fit(index_a[rows], index_b[rows], score_a[rows], size)
        elo = online_elo([outcomes[i] for i in rows.tolist()])
        return np.array([elo.get(name, 0.0) for name in names], dtype=np.float64)

    count = len(outcomes)
    point = fit(np.arange(count, dtype=np.intp))
    low, high = point, point
    if count > 0 and bootstrap_rounds > 0:
        rng = np.random.default_rng(seed)
        samples = np.empty((bootstrap_rounds, size), dtype=np.float64)
        for round_ in range(bootstrap_rounds):
            samples[round_] = fit(rng.integers(0, count, size=count, dtype=np.intp))
        tail = (1.0 - confidence) / 2.0 * 100.0
        low = np.percentile(samples, tail, axis=0)
        high = np.percentile(samples, 100.0 - tail, axis=0)

    ratings = [
        Rating(
            expert=name,
            rating=float(point[i]),
            ci_low=float(low[i]),
            ci_high=float(high[i]),
            battles=int(battles[i]),
        )
        for i, name in enumerate(names)
    ]
    ratings.sort(key=lambda r: (-r.rating, r.expert))
    return ratings


def _encode(
    outcomes: Sequence[Outcome], experts: Sequence[str] | None
) -> tuple[list[str], IntArray, IntArray, FloatArray]:
    """Sorted expert names plus per-outcome index arrays for A and B and A's score."""
    names = sorted(set(experts or ()) | {o.a for o in outcomes} | {o.b for o in outcomes})
    position = {name: i for i, name in enumerate(names)}
    index_a = np.fromiter((position[o.a] for o in outcomes), dtype=np.intp, count=len(outcomes))
    index_b = np.fromiter((position[o.b] for o in outcomes), dtype=np.intp, count=len(outcomes))
    score_a = np.fromiter((o.score_a for o in outcomes), dtype=np.float64, count=len(outcomes))
    return names, index_a, index_b, score_a


def _bt_fit(index_a: IntArray, index_b: IntArray, score_a: FloatArray, size: int) -> FloatArray:
    """Bradley-Terry MAP estimate by damped Newton; Elo-scale ratings with mean 0.

    Works in natural logits theta = R * ln(10) / 400 and maximises

        f(theta) = sum_ij W_ij * log sigmoid(theta_i - theta_j) - lam / 2 * |theta|^2

    where W_ij is i's points against j (1 per win, 0.5 per tie). The L2 term is a
    Gaussian prior N(0, BT_PRIOR_SD^2) on each rating: without it the likelihood has no
    maximum when an expert wins (or loses) every game, and its rating would run off to
    infinity. It also makes f strictly concave, so Newton has a unique target and needs
    no pinned reference expert: the likelihood gradient sums to zero over experts, so at
    the optimum lam * sum(theta) = 0, i.e. the mean is already 0, and experts with no
    games sit at 0.
    """
    if size == 0:
        return np.zeros(0, dtype=np.float64)
    # Aggregate into a points matrix. Entries are sums of 1s and 0.5s, which floats hold
    # exactly, so W (and hence the fit) is identical for any order of the outcomes.
    wins = np.zeros((size, size), dtype=np.float64)
    np.add.at(wins, (index_a, index_b), score_a)
    np.add.at(wins, (index_b, index_a), 1.0 - score_a)
    games = wins + wins.T
    lam = 1.0 / (BT_PRIOR_SD * _LN10_OVER_400) ** 2
    tolerance = _BT_TOLERANCE * _LN10_OVER_400
    identity = np.eye(size)

    def objective(theta: FloatArray) -> float:
        diff = theta[:, None] - theta[None, :]
        # log sigmoid(d) = -log(1 + exp(-d)), via logaddexp to stay finite for large |d|.
        return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * lam * theta @ theta)

    theta = np.zeros(size, dtype=np.float64)
    value = objective(theta)
    for _ in range(_BT_MAX_ITERATIONS):
        diff = theta[:, None] - theta[None, :]
        p = 0.5 * (1.0 + np.tanh(0.5 * diff))  # sigmoid without overflow warnings
        gradient = (wins - games * p).sum(axis=1) - lam * theta
        curvature = games * p * (1.0 - p)
        # -Hessian = graph Laplacian of the curvature weights + lam * I: positive definite.
        neg_hessian = np.diag(curvature.sum(axis=1)) - curvature + lam * identity
        step = np.linalg.solve(neg_hessian, gradient)
        # Judge convergence on the full Newton step, not the damped one, so a heavily
        # shortened step far from the optimum cannot pass for convergence.
        converged = float(np.max(np.abs(step))) < tolerance
        # Backtrack until f does not fall: full Newton steps can overshoot when one expert
        # dominates (near-separable data). The slack absorbs rounding once f is flat.
        scale = 1.0
        slack = 1e-12 * (1.0 + abs(value))
        while True:
            candidate = theta + scale * step
            candidate_value = objective(candidate)
            if candidate_value >= value - slack or scale < 1e-10:
                break
            scale *= 0.5
        theta, value = candidate, candidate_value
        if converged:
            ratings: FloatArray = theta / _LN10_OVER_400
            # Already mean 0 in exact arithmetic; remove the rounding residue.
            centred: FloatArray = ratings - ratings.mean()
            return centred
    raise RuntimeError(f"Bradley-Terry fit did not converge in {_BT_MAX_ITERATIONS} iterations")
