"""Expert ratings from pairwise judge votes: online Elo, Bradley-Terry, bootstrap intervals.

All ratings are on the Elo scale (base 10, 400 points per factor of ten in odds), so a
rating gap of 400 means the stronger expert is expected to win about 91% of the time.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "BT_PRIOR_SD",
    "Outcome",
    "Rating",
    "Votes",
    "bradley_terry",
    "bradley_terry_points",
    "encode",
    "expected_score",
    "online_elo",
    "rate",
    "rate_votes",
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


def online_elo(
    outcomes: Sequence[Outcome],
    *,
    k: float = 40.0,
    initial: float = 0.0,
    start: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Sequential Elo over `outcomes` in the order given; a tie scores 0.5 for each side.

    Each outcome moves A by K * (S_A - E_A) and B by the same amount the other way, so
    the total is conserved. The result depends on the order of `outcomes`: give them in
    the order they were recorded. Every expert that appears gets a rating, starting from
    `initial`, or from `start` (the ratings after earlier votes, left unchanged): Elo is
    updated incrementally, online_elo(later, start=online_elo(earlier)) equals
    online_elo(earlier + later).
    """
    if not math.isfinite(k) or k < 0.0:
        raise ValueError(f"k must be a finite non-negative number, got {k!r}")
    ratings: dict[str, float] = dict(start or {})
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
    votes = encode(outcomes, experts=experts)
    fitted = _bt_fit(votes.points(), len(votes.experts))
    return {name: float(value) for name, value in zip(votes.experts, fitted, strict=True)}


def bradley_terry_points(
    points: Mapping[tuple[str, str], float], *, experts: Sequence[str] | None = None
) -> dict[str, float]:
    """`bradley_terry` from counts already taken: `points[(a, b)]` is a's points against b (1 per win,
    0.5 per tie), summed over any number of votes. Counts kept up to date vote by vote give, without
    re-reading the votes, the same ratings as `bradley_terry` over all of them."""
    names = sorted(set(experts or ()) | {name for pair in points for name in pair})
    position = {name: i for i, name in enumerate(names)}
    wins = np.zeros((len(names), len(names)), dtype=np.float64)
    for (a, b), value in points.items():
        if a == b:
            raise ValueError(f"points of {a!r} against itself")
        wins[position[a], position[b]] += value
    fitted = _bt_fit(wins, len(names))
    return {name: float(value) for name, value in zip(names, fitted, strict=True)}


@dataclass(frozen=True)
class Votes:
    """Votes as arrays, in the order they were recorded: the vectorised input of `rate_votes`.

    Vote v is expert `a[v]` against expert `b[v]` (indices into `experts`), A scoring
    `score_a[v]` (1 win, 0 loss, 0.5 tie), in battle `battle[v]` (0 .. battles - 1): the
    instruction whose answers were judged, which the bootstrap resamples as a whole.
    """

    experts: tuple[str, ...]
    a: IntArray
    b: IntArray
    score_a: FloatArray
    battle: IntArray

    def __post_init__(self) -> None:
        """Reject arrays of different lengths, out-of-range indices, self-play and bad scores."""
        n = len(self.a)
        if not len(self.b) == len(self.score_a) == len(self.battle) == n:
            raise ValueError("a, b, score_a and battle must have one entry per vote")
        if n == 0:
            return
        size = len(self.experts)
        if min(int(self.a.min()), int(self.b.min())) < 0 or max(int(self.a.max()), int(self.b.max())) >= size:
            raise ValueError(f"expert indices must lie in [0, {size})")
        if np.any(self.a == self.b):
            raise ValueError("a vote needs two different experts")
        if not np.all(np.isin(self.score_a, (0.0, 0.5, 1.0))):
            raise ValueError("score_a must be 1 (A won), 0 (B won) or 0.5 (tie)")
        if int(self.battle.min()) < 0:
            raise ValueError("battle indices must be >= 0")

    @classmethod
    def of(
        cls,
        experts: Sequence[str],
        a: npt.ArrayLike,
        b: npt.ArrayLike,
        score_a: npt.ArrayLike,
        battle: npt.ArrayLike | None = None,
    ) -> Votes:
        """Votes from array-likes; without `battle` every vote is its own battle."""
        index_a = np.asarray(a, dtype=np.intp)
        battles = np.arange(len(index_a), dtype=np.intp) if battle is None else np.asarray(battle, dtype=np.intp)
        return cls(tuple(experts), index_a, np.asarray(b, dtype=np.intp), np.asarray(score_a, dtype=np.float64),
                   battles)  # fmt: skip

    def points(self, weights: FloatArray | None = None) -> FloatArray:
        """The count matrix W: W[i, j] is i's points against j (1 per win, 0.5 per tie).

        `weights` (one per vote) multiply each vote's contribution. One bincount per
        direction over the flattened (i, j) cell: O(votes), no Python loop.
        """
        size = len(self.experts)
        forward = self.score_a if weights is None else self.score_a * weights
        backward = (1.0 - self.score_a) if weights is None else (1.0 - self.score_a) * weights
        cells = size * size
        wins: FloatArray = np.bincount(self.a * size + self.b, weights=forward, minlength=cells).astype(np.float64)
        wins += np.bincount(self.b * size + self.a, weights=backward, minlength=cells)
        return wins.reshape(size, size)

    def battles_played(self) -> IntArray:
        """How many votes each expert took part in (ties included)."""
        size = len(self.experts)
        played: IntArray = np.bincount(self.a, minlength=size) + np.bincount(self.b, minlength=size)
        return played


def encode(
    outcomes: Sequence[Outcome],
    *,
    experts: Sequence[str] | None = None,
    battles: Sequence[Hashable] | None = None,
) -> Votes:
    """`Votes` from `Outcome` objects (names sorted), battles numbered in the order of their keys' repr."""
    names = sorted(set(experts or ()) | {o.a for o in outcomes} | {o.b for o in outcomes})
    position = {name: i for i, name in enumerate(names)}
    count = len(outcomes)
    index_a = np.fromiter((position[o.a] for o in outcomes), dtype=np.intp, count=count)
    index_b = np.fromiter((position[o.b] for o in outcomes), dtype=np.intp, count=count)
    score_a = np.fromiter((o.score_a for o in outcomes), dtype=np.float64, count=count)
    if battles is None:
        battle = np.arange(count, dtype=np.intp)
    else:
        if len(battles) != count:
            raise ValueError(f"battles has {len(battles)} keys for {count} outcomes")
        # Numbered in a fixed order of the keys, not of their first appearance, so that the bootstrap
        # draws (and hence the Bradley-Terry intervals) do not depend on the order of the votes.
        numbering = {key: i for i, key in enumerate(sorted(set(battles), key=repr))}
        battle = np.fromiter((numbering[k] for k in battles), dtype=np.intp, count=count)
    return Votes(tuple(names), index_a, index_b, score_a, battle)


def rate(
    outcomes: Sequence[Outcome],
    *,
    method: Literal["bt", "elo"] = "bt",
    bootstrap_rounds: int = 200,
    seed: int = 0,
    experts: Sequence[str] | None = None,
    confidence: float = 0.95,
    battles: Sequence[Hashable] | None = None,
) -> list[Rating]:
    """`rate_votes` over `Outcome` objects, taken in the order given (it matters for "elo").

    `battles`, one key per outcome, names the battle (instruction) each vote belongs to; the
    bootstrap resamples whole battles. Without it every outcome is its own battle.
    """
    _check(method, bootstrap_rounds, confidence)
    return rate_votes(
        encode(outcomes, experts=experts, battles=battles),
        method=method,
        bootstrap_rounds=bootstrap_rounds,
        seed=seed,
        confidence=confidence,
    )


def rate_votes(
    votes: Votes,
    *,
    method: Literal["bt", "elo"] = "bt",
    bootstrap_rounds: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[Rating]:
    """Ratings with percentile-bootstrap confidence intervals, best first (ties by name).

    The point estimate uses every vote with `method`: "bt" counts the votes into a points
    matrix and fits `_bt_fit` on it; "elo" plays `online_elo`'s updates (K=40, start 0) in
    the order of `votes`, which is the order they were recorded.

    The bootstrap resamples battles, not votes: the votes of one battle (several judges,
    both orders, several pairs, all on the same answers) are correlated, so resampling
    single votes treats them as independent and gives intervals that are too narrow. Each
    of `bootstrap_rounds` rounds draws as many battles as there are, with replacement (a
    numpy Generator seeded with `seed`, so results are reproducible); a battle drawn m
    times contributes its votes m times. For "bt" a round is a weighted sum of per-battle
    count contributions (one bincount) and one warm-started Newton fit, so rounds cost
    O(distinct battle x pair cells), not a pass over Outcome objects. For "elo" a round
    replays the drawn battles' votes in recorded order, each vote as many times as its
    battle was drawn. The interval is the central `confidence` percentile range of the
    rounds' ratings; it need not contain the point estimate when the bootstrap
    distribution is skewed. With `bootstrap_rounds=0` or no votes the interval has zero
    width; with no votes every expert gets 0.0.
    """
    _check(method, bootstrap_rounds, confidence)
    names = votes.experts
    size = len(names)
    count = len(votes.a)

    if method == "bt":
        point = _bt_fit(votes.points(), size)
    else:
        point = _elo_fit(votes, np.ones(count, dtype=np.intp))
    low, high = point, point
    if count > 0 and bootstrap_rounds > 0:
        rng = np.random.default_rng(seed)
        # Renumber battles densely so a round draws exactly as many battles as exist.
        _, battle = np.unique(votes.battle, return_inverse=True)
        battle = battle.astype(np.intp, copy=False)
        n_battles = int(battle.max()) + 1
        samples = np.empty((bootstrap_rounds, size), dtype=np.float64)
        if method == "bt":
            cells = _BattleCells(votes, battle)
        for round_ in range(bootstrap_rounds):
            drawn = np.bincount(rng.integers(0, n_battles, size=n_battles), minlength=n_battles)
            if method == "bt":
                samples[round_] = _bt_fit(cells.points(drawn), size, start=point)
            else:
                samples[round_] = _elo_fit(votes, drawn[battle])
        tail = (1.0 - confidence) / 2.0 * 100.0
        low = np.percentile(samples, tail, axis=0)
        high = np.percentile(samples, 100.0 - tail, axis=0)

    played = votes.battles_played()
    ratings = [
        Rating(
            expert=name,
            rating=float(point[i]),
            ci_low=float(low[i]),
            ci_high=float(high[i]),
            battles=int(played[i]),
        )
        for i, name in enumerate(names)
    ]
    ratings.sort(key=lambda r: (-r.rating, r.expert))
    return ratings


def _check(method: str, bootstrap_rounds: int, confidence: float) -> None:
    if method not in ("bt", "elo"):
        raise ValueError(f"method must be 'bt' or 'elo', got {method!r}")
    if bootstrap_rounds < 0:
        raise ValueError(f"bootstrap_rounds must be >= 0, got {bootstrap_rounds}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


class _BattleCells:
    """Each battle's contribution to the points matrix, for resampling battles on counts.

    Votes are folded into one entry per (battle, unordered pair): the lower-indexed
    expert's points and the number of games. A bootstrap round weights each entry by how
    often its battle was drawn and sums the entries per pair with two bincounts.
    """

    def __init__(self, votes: Votes, battle: IntArray) -> None:
        size = len(votes.experts)
        self.size = size
        low = np.minimum(votes.a, votes.b)
        high = np.maximum(votes.a, votes.b)
        low_points = np.where(votes.a == low, votes.score_a, 1.0 - votes.score_a)
        pair = low * size + high
        entry, inverse = np.unique(battle.astype(np.int64) * (size * size) + pair, return_inverse=True)
        self.battle = (entry // (size * size)).astype(np.intp)
        self.pair = (entry % (size * size)).astype(np.intp)
        self.low_points = np.bincount(inverse, weights=low_points, minlength=len(entry))
        self.games = np.bincount(inverse, minlength=len(entry)).astype(np.float64)

    def points(self, drawn: IntArray) -> FloatArray:
        """The points matrix of a resample where battle k was drawn `drawn[k]` times."""
        cells = self.size * self.size
        weight = drawn[self.battle]
        upper = np.bincount(self.pair, weights=weight * self.low_points, minlength=cells).reshape(self.size, self.size)
        games = np.bincount(self.pair, weights=weight * self.games, minlength=cells).reshape(self.size, self.size)
        wins: FloatArray = upper + (games - upper).T
        return wins


def _elo_fit(votes: Votes, repeats: IntArray, *, k: float = 40.0, initial: float = 0.0) -> FloatArray:
    """Online Elo over `votes` in their order, vote v played `repeats[v]` times in a row.

    Same updates as `online_elo`; experts that never play stay at `initial`.
    """
    ratings = [initial] * len(votes.experts)
    for a, b, s, times in zip(
        votes.a.tolist(), votes.b.tolist(), votes.score_a.tolist(), repeats.tolist(), strict=True
    ):
        for _ in range(times):
            delta = k * (s - expected_score(ratings[a], ratings[b]))
            ratings[a] += delta
            ratings[b] -= delta
    return np.array(ratings, dtype=np.float64)


def _bt_fit(wins: FloatArray, size: int, *, start: FloatArray | None = None) -> FloatArray:
    """Bradley-Terry MAP estimate from a points matrix by damped Newton; Elo-scale ratings with mean 0.

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
    # `wins` is the points matrix (`Votes.points`). Its entries are sums of 1s and 0.5s,
    # which floats hold exactly, so W (and hence the fit) is identical for any order of
    # the votes. The fit works on these size x size counts, never on the votes themselves.
    games = wins + wins.T
    lam = 1.0 / (BT_PRIOR_SD * _LN10_OVER_400) ** 2
    tolerance = _BT_TOLERANCE * _LN10_OVER_400
    identity = np.eye(size)

    def objective(theta: FloatArray) -> float:
        diff = theta[:, None] - theta[None, :]
        # log sigmoid(d) = -log(1 + exp(-d)), via logaddexp to stay finite for large |d|.
        return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * lam * theta @ theta)

    # A bootstrap round starts from the full-data estimate, a few Newton steps from its own.
    theta = np.zeros(size, dtype=np.float64) if start is None else start * _LN10_OVER_400
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
