"""Ratings at scale: count-then-fit Bradley-Terry with a by-battle bootstrap against the earlier method.

Part 1, speed: synthetic votes (default 1,000,000 among 50 experts), grouped in battles as the pipeline
makes them (one instruction: 3 competitors, so 3 pairs, each judged by 2 judges in both orders, 12
votes), rated with 100 bootstrap rounds by

- `old`: the scorer's earlier method, kept here as a private reference: Outcome objects, a points
  matrix built with np.add.at from per-vote index arrays, and every round a resample of single votes
  refitted from scratch;
- `new, arrays`: `rate_votes` on `Votes` arrays (expert indices, scores, battle ids), counted into a
  points matrix once, bootstrap rounds drawn on per-battle count contributions;
- `new, outcomes`: `rate` on the same Outcome objects with battle keys (the API the scorer calls),
  which adds the encoding of the objects.

Part 2, honesty: a coverage simulation. True ratings are drawn; every battle's judges share a latent
draw (each judge copies the battle's shared verdict with probability --rho, else judges independently,
both with the Bradley-Terry probability, so the marginal model is exact and only the correlation
differs); 95% intervals from by-battle and by-vote resampling are checked against the truth over
--reps repetitions. By-vote resampling treats correlated votes as independent and under-covers.

    make bench-ratings    # or: .venv/bin/python bench/ratings.py --votes 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from warrior.scorer.ratings import BT_PRIOR_SD, Outcome, Votes, rate, rate_votes

ROOT = Path(__file__).resolve().parent.parent
_LN = np.log(10.0) / 400.0
_WINNERS = ("b", "tie", "a")  # indexed by 2 * score_a


# --- the earlier method, as a reference ---------------------------------------------------------------


def _old_bt_fit(index_a: np.ndarray, index_b: np.ndarray, score_a: np.ndarray, size: int) -> np.ndarray:
    """The earlier `_bt_fit`: np.add.at over the votes of each fit, then damped Newton from 0."""
    wins = np.zeros((size, size), dtype=np.float64)
    np.add.at(wins, (index_a, index_b), score_a)
    np.add.at(wins, (index_b, index_a), 1.0 - score_a)
    games = wins + wins.T
    lam = 1.0 / (BT_PRIOR_SD * _LN) ** 2
    identity = np.eye(size)

    def objective(theta: np.ndarray) -> float:
        diff = theta[:, None] - theta[None, :]
        return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * lam * theta @ theta)

    theta = np.zeros(size)
    value = objective(theta)
    for _ in range(200):
        diff = theta[:, None] - theta[None, :]
        p = 0.5 * (1.0 + np.tanh(0.5 * diff))
        gradient = (wins - games * p).sum(axis=1) - lam * theta
        curvature = games * p * (1.0 - p)
        step = np.linalg.solve(np.diag(curvature.sum(axis=1)) - curvature + lam * identity, gradient)
        converged = float(np.max(np.abs(step))) < 1e-6 * _LN
        scale, slack = 1.0, 1e-12 * (1.0 + abs(value))
        while True:
            candidate = theta + scale * step
            candidate_value = objective(candidate)
            if candidate_value >= value - slack or scale < 1e-10:
                break
            scale *= 0.5
        theta, value = candidate, candidate_value
        if converged:
            ratings = theta / _LN
            return ratings - ratings.mean()
    raise RuntimeError("no convergence")


def _old_rate(outcomes: Sequence[Outcome], rounds: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """The earlier `rate(method="bt")`: encode Outcome objects, resample single votes."""
    names = sorted({o.a for o in outcomes} | {o.b for o in outcomes})
    position = {name: i for i, name in enumerate(names)}
    n = len(outcomes)
    index_a = np.fromiter((position[o.a] for o in outcomes), dtype=np.intp, count=n)
    index_b = np.fromiter((position[o.b] for o in outcomes), dtype=np.intp, count=n)
    score_a = np.fromiter((o.score_a for o in outcomes), dtype=np.float64, count=n)
    size = len(names)
    point = _old_bt_fit(index_a, index_b, score_a, size)
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, size))
    for r in range(rounds):
        rows = rng.integers(0, n, size=n, dtype=np.intp)
        samples[r] = _old_bt_fit(index_a[rows], index_b[rows], score_a[rows], size)
    low, high = np.percentile(samples, 2.5, axis=0), np.percentile(samples, 97.5, axis=0)
    return {name: (float(point[i]), float(low[i]), float(high[i])) for i, name in enumerate(names)}


# --- synthetic battles ----------------------------------------------------------------------------------


def simulate(
    rng: np.random.Generator,
    true: np.ndarray,
    battles: int,
    *,
    competitors: int = 3,
    votes_per_pair: int = 4,
    rho: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, score_a, battle) arrays: each battle draws `competitors` experts, every pair gets
    `votes_per_pair` votes (judges x orders, the order alternating); a vote copies its pair's shared
    verdict with probability `rho`, else is drawn on its own, both with P(A wins) = BT(true)."""
    size = len(true)
    chosen = np.argsort(rng.random((battles, size)), axis=1)[:, :competitors]
    first, second = np.triu_indices(competitors, k=1)
    pa = chosen[:, first].reshape(-1)  # one row per (battle, pair)
    pb = chosen[:, second].reshape(-1)
    pair_battle = np.repeat(np.arange(battles), len(first))
    p = 1.0 / (1.0 + np.exp(-(true[pa] - true[pb]) * _LN))
    shared = rng.random(len(pa)) < p
    a = np.repeat(pa, votes_per_pair)
    b = np.repeat(pb, votes_per_pair)
    own = rng.random(len(a)) < np.repeat(p, votes_per_pair)
    copies = rng.random(len(a)) < rho
    a_wins = np.where(copies, np.repeat(shared, votes_per_pair), own)
    swap = np.tile(np.arange(votes_per_pair) % 2 == 1, len(pa))  # the other presentation order
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    score_a = np.where(swap, ~a_wins, a_wins).astype(np.float64)
    return a.astype(np.intp), b.astype(np.intp), score_a, np.repeat(pair_battle, votes_per_pair).astype(np.intp)


def speed(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    true = rng.normal(0.0, 150.0, args.experts)
    per_battle = 3 * 4
    a, b, score_a, battle = simulate(rng, true, -(-args.votes // per_battle), rho=args.rho)
    a, b, score_a, battle = a[: args.votes], b[: args.votes], score_a[: args.votes], battle[: args.votes]
    names = [f"expert-{i:02d}" for i in range(args.experts)]

    started = time.perf_counter()
    triples = zip(a.tolist(), b.tolist(), score_a.tolist(), strict=True)
    outcomes = [Outcome(names[i], names[j], _WINNERS[int(2 * s)]) for i, j, s in triples]
    build_s = time.perf_counter() - started
    keys = [f"i{k:07d}" for k in battle.tolist()]  # instruction ids, in the order of the battle numbers

    timings: dict[str, float] = {}
    started = time.perf_counter()
    old = _old_rate(outcomes, args.rounds, args.seed)
    timings["old"] = time.perf_counter() - started
    started = time.perf_counter()
    votes = Votes.of(names, a, b, score_a, battle)
    arrays = {r.expert: r for r in rate_votes(votes, bootstrap_rounds=args.rounds, seed=args.seed)}
    timings["new_arrays"] = time.perf_counter() - started
    started = time.perf_counter()
    via_outcomes = {r.expert: r for r in rate(outcomes, bootstrap_rounds=args.rounds, seed=args.seed, battles=keys)}
    timings["new_outcomes"] = time.perf_counter() - started

    started = time.perf_counter()
    rate_votes(votes, method="elo", bootstrap_rounds=0)
    timings["elo_point"] = time.perf_counter() - started

    point_gap = max(abs(old[n][0] - arrays[n].rating) for n in names)
    assert all(via_outcomes[n] == arrays[n] for n in names), "the two entry points disagree"
    old_width = float(np.mean([old[n][2] - old[n][1] for n in names]))
    new_width = float(np.mean([arrays[n].ci_high - arrays[n].ci_low for n in names]))
    return {
        "votes": len(a),
        "battles": int(battle.max()) + 1,
        "experts": args.experts,
        "rounds": args.rounds,
        "rho": args.rho,
        "build_outcomes_s": round(build_s, 3),
        "old_s": round(timings["old"], 3),
        "new_arrays_s": round(timings["new_arrays"], 3),
        "new_outcomes_s": round(timings["new_outcomes"], 3),
        "elo_point_s": round(timings["elo_point"], 3),
        "speedup_arrays": round(timings["old"] / timings["new_arrays"], 1),
        "max_point_gap_elo": float(point_gap),
        "mean_ci_width_old_by_vote": round(old_width, 2),
        "mean_ci_width_new_by_battle": round(new_width, 2),
    }


def coverage(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed + 1)
    names = [f"e{i}" for i in range(args.coverage_experts)]
    hits = {"battle": 0, "vote": 0}
    widths: dict[str, list[float]] = {"battle": [], "vote": []}
    total = 0
    for rep in range(args.reps):
        true = rng.normal(0.0, 150.0, len(names))
        true -= true.mean()  # the fit is centred to mean 0
        a, b, s, battle = simulate(rng, true, args.coverage_battles, rho=args.rho)
        for unit, ids in (("battle", battle), ("vote", None)):
            votes = Votes.of(names, a, b, s, ids)
            for r in rate_votes(votes, bootstrap_rounds=args.coverage_rounds, seed=rep):
                t = true[names.index(r.expert)]
                hits[unit] += int(r.ci_low <= t <= r.ci_high)
                widths[unit].append(r.ci_high - r.ci_low)
        total += len(names)
    return {
        "reps": args.reps,
        "experts": args.coverage_experts,
        "battles": args.coverage_battles,
        "votes_per_battle": 12,
        "rho": args.rho,
        "rounds": args.coverage_rounds,
        "intervals": total,
        "coverage_by_battle": round(hits["battle"] / total, 3),
        "coverage_by_vote": round(hits["vote"] / total, 3),
        "mean_width_by_battle": round(float(np.mean(widths["battle"])), 1),
        "mean_width_by_vote": round(float(np.mean(widths["vote"])), 1),
    }


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--experts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100, help="bootstrap rounds of the speed run")
    parser.add_argument("--rho", type=float, default=0.7, help="share of a battle's votes that copy its shared verdict")
    parser.add_argument("--reps", type=int, default=200, help="coverage repetitions")
    parser.add_argument("--coverage-experts", type=int, default=8)
    parser.add_argument("--coverage-battles", type=int, default=400)
    parser.add_argument("--coverage-rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ratings.json"))
    args = parser.parse_args()

    fast = speed(args)
    print(f"Speed ({fast['votes']:,} votes in {fast['battles']:,} battles, {fast['experts']} experts, "
          f"{fast['rounds']} bootstrap rounds; Outcome objects built in {fast['build_outcomes_s']} s)")  # fmt: skip
    rows = [
        {"method": "old: Outcome objects, by-vote resample", "seconds": fast["old_s"],
         "mean_ci_width": fast["mean_ci_width_old_by_vote"]},
        {"method": "new: Votes arrays, by-battle resample", "seconds": fast["new_arrays_s"],
         "mean_ci_width": fast["mean_ci_width_new_by_battle"]},
        {"method": "new: rate(outcomes, battles=...)", "seconds": fast["new_outcomes_s"],
         "mean_ci_width": fast["mean_ci_width_new_by_battle"]},
        {"method": "new: online Elo in arrival order, no bootstrap", "seconds": fast["elo_point_s"],
         "mean_ci_width": "-"},
    ]  # fmt: skip
    print(_table(rows, ["method", "seconds", "mean_ci_width"]))
    print(f"speed-up (arrays): {fast['speedup_arrays']}x; largest point-estimate gap old vs new: "
          f"{fast['max_point_gap_elo']:.2e} Elo")  # fmt: skip
    print()
    cov = coverage(args)
    print(f"Coverage of 95% intervals ({cov['reps']} repetitions x {cov['experts']} experts, {cov['battles']} battles "
          f"of 12 votes, rho={cov['rho']}, {cov['rounds']} rounds)")  # fmt: skip
    print(_table([
        {"resample": "by battle", "coverage": cov["coverage_by_battle"], "mean_width": cov["mean_width_by_battle"]},
        {"resample": "by vote", "coverage": cov["coverage_by_vote"], "mean_width": cov["mean_width_by_vote"]},
    ], ["resample", "coverage", "mean_width"]))  # fmt: skip
    load = os.getloadavg()
    result = {
        "speed": fast,
        "coverage": cov,
        "machine": {"cpus": os.cpu_count(), "load_avg_1_5_15": [round(x, 2) for x in load],
                    "python": platform.python_version(), "numpy": np.__version__},
    }  # fmt: skip
    print(f"\nload average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
