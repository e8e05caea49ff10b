"""The scorer's stages: score one battle (provisional winner) and finalize a campaign's ratings."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from warrior.common.campaign_config import CampaignConfig, parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.ids import content_hash
from warrior.common.runtime import Runtime
from warrior.scorer.ratings import Outcome, Rating, rate
from warrior.scorer.scores import final_scores, pick_winner


def outcomes_of(battle: dict[str, Any]) -> list[Outcome]:
    """One outcome per judgment that survived both orders (ties included)."""
    out = []
    for j in battle["judgments"]:
        winner: Literal["a", "b", "tie"] = "tie" if j["winner"] is None else ("a" if j["winner"] == j["a"] else "b")
        out.append(Outcome(j["a"], j["b"], winner))
    return out


def winner_of(battle: dict[str, Any], ratings: dict[str, float], alpha: float) -> dict[str, Any]:
    """The final score of every competitor on this instruction and the winning one (METHOD section 5)."""
    pair_votes = {(p["a"], p["b"]): (p["votes_a"], p["votes_b"]) for p in battle["pairs"]}
    scores = final_scores(battle["competitors"], ratings, pair_votes, alpha=alpha)
    return {"winner": pick_winner(scores), "scores": scores}


def _ratings(outcomes: Sequence[Outcome], config: CampaignConfig, rounds: int) -> list[Rating]:
    return rate(
        outcomes,
        method=config.scoring.rating,
        bootstrap_rounds=rounds,
        seed=config.scoring.seed,
        experts=config.expert_names,
    )


def _stored_votes(state: CampaignState) -> list[Outcome]:
    return [Outcome(a, b, w) for votes in state.table("votes").values() for a, b, w in votes]


def score(rt: Runtime, campaign: str, iid: str) -> dict[str, Any]:
    """Record this battle's votes and its provisional winner under the campaign's current ratings."""
    state = CampaignState(rt.redis, campaign)
    config = parse_campaign_config(state.config(), f"campaign {campaign}")
    battle = rt.store.get_json(f"runs/{campaign}/battles/{iid}.json")
    state.put("votes", iid, [[o.a, o.b, o.winner] for o in outcomes_of(battle)])
    ratings = {r.expert: r.rating for r in _ratings(_stored_votes(state), config, rounds=0)}
    result = winner_of(battle, ratings, config.scoring.alpha) | {
        "id": iid,
        "provisional": True,
        "ratings": ratings,
    }
    key = f"runs/{campaign}/scores/{iid}.json"
    rt.store.put_json(key, result, if_absent=True)
    state.mark("scored", iid)
    return dict(rt.store.get_json(key))


def _battles(rt: Runtime, campaign: str) -> Iterable[dict[str, Any]]:
    for key in rt.store.list(f"runs/{campaign}/battles/"):
        yield rt.store.get_json(key)


def finalize(rt: Runtime, campaign: str) -> dict[str, Any]:
    """Ratings with confidence intervals over every recorded battle, and each instruction's winner.

    The snapshot is stored under a content-addressed key; the campaign points at its newest one.
    """
    state = CampaignState(rt.redis, campaign)
    config = parse_campaign_config(state.config(), f"campaign {campaign}")
    battles = list(_battles(rt, campaign))
    outcomes = [o for b in battles for o in outcomes_of(b)]
    ratings = _ratings(outcomes, config, rounds=config.scoring.bootstrap_rounds)
    points = {r.expert: r.rating for r in ratings}
    decisive: dict[str, list[int]] = {name: [0, 0] for name in points}
    for o in outcomes:
        if o.winner != "tie":
            won, lost = (o.a, o.b) if o.winner == "a" else (o.b, o.a)
            decisive[won][0] += 1
            decisive[lost][1] += 1
    leaderboard = [
        {
            "expert": r.expert,
            "rating": round(r.rating, 1),
            "ci_low": round(r.ci_low, 1),
            "ci_high": round(r.ci_high, 1),
            "battles": r.battles,
            "wins": decisive[r.expert][0],
            "losses": decisive[r.expert][1],
            "win_rate": round(decisive[r.expert][0] / max(1, sum(decisive[r.expert])), 3),
        }
        for r in ratings
    ]
    winners = {b["id"]: winner_of(b, points, config.scoring.alpha) for b in battles if len(b["competitors"]) >= 2}
    snapshot = {
        "campaign": campaign,
        "method": config.scoring.rating,
        "alpha": config.scoring.alpha,
        "bootstrap_rounds": config.scoring.bootstrap_rounds,
        "seed": config.scoring.seed,
        "battles": len(battles),
        "votes": len(outcomes),
        "leaderboard": leaderboard,
        "winners": winners,
    }
    key = f"runs/{campaign}/ratings/{content_hash(snapshot, length=16)}.json"
    rt.store.put_json(key, snapshot | {"computed_at": time.time()}, if_absent=True)
    state.put("meta_pointers", "ratings", key)
    return {"ratings_key": key, "leaderboard": leaderboard, "battles": len(battles), "votes": len(outcomes)}
