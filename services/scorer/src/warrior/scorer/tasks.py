"""The scorer's stages: score one battle (provisional winner) and finalize a campaign's ratings."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal

from warrior.common.batches import run_each
from warrior.common.battles import battle_key, instruction_of, load_battle, merge, part_id
from warrior.common.campaign_config import CampaignConfig
from warrior.common.campaign_state import CampaignState
from warrior.common.ids import content_hash
from warrior.common.runtime import Runtime
from warrior.common.verification import SHADOW, passes
from warrior.scorer import judge_panel
from warrior.scorer.ratings import Outcome, Rating, bradley_terry_points, rate
from warrior.scorer.scores import final_scores, pick_winner


def outcomes_of(battle: dict[str, Any], excluded: AbstractSet[str] = frozenset()) -> list[Outcome]:
    """One outcome per vote of a trusted judge (ties included); execution's verdict on a pair carries as
    many votes as the judges it stands in for."""
    out = []
    for j in battle["judgments"]:
        if j["judge"] in excluded:
            continue
        winner: Literal["a", "b", "tie"] = "tie" if j["winner"] is None else ("a" if j["winner"] == j["a"] else "b")
        out.extend([Outcome(j["a"], j["b"], winner)] * int(j.get("votes", 1)))
    return out


def eligible(battle: dict[str, Any]) -> list[str]:
    """The competitors that may win the instruction: with trusted tests, those passing the most of them.

    The paper's winner is the best final score (rating blended with the local votes); here, when the
    tests tell answers apart, an answer that passes fewer trusted tests cannot win on its author's
    rating alone: the row's target must be the code that works best.
    """
    execution = battle.get("execution") or {}
    competitors = list(battle["competitors"])
    if not execution.get("executable") or not execution.get("trust", {}).get("trusted"):
        return competitors
    counts = passes({n: execution["matrix"].get(n, {}) for n in competitors}, execution["trust"]["trusted"])
    best = max(counts.values(), default=0)
    return [n for n in competitors if counts[n] == best] if best > 0 else competitors


def winner_of(
    battle: dict[str, Any], ratings: dict[str, float], alpha: float, excluded: AbstractSet[str] = frozenset()
) -> dict[str, Any]:
    """The final score of every competitor on this instruction and the winning one (METHOD section 5),
    among the competitors that pass the most trusted tests.

    Votes are counted from the judgments of trusted judges only.
    """
    pair_votes = {(p["a"], p["b"]): [0, 0] for p in battle["pairs"]}
    for j in battle["judgments"]:
        if j["judge"] in excluded or j["winner"] is None or (j["a"], j["b"]) not in pair_votes:
            continue
        pair_votes[(j["a"], j["b"])][0 if j["winner"] == j["a"] else 1] += int(j.get("votes", 1))
    scores = final_scores(
        battle["competitors"], ratings, {pair: (va, vb) for pair, (va, vb) in pair_votes.items()}, alpha=alpha
    )
    allowed = eligible(battle)
    return {"winner": pick_winner({n: scores[n] for n in allowed}), "scores": scores, "eligible": allowed}


def _ratings(
    outcomes: Sequence[Outcome],
    battles: Sequence[str],
    config: CampaignConfig,
    rounds: int,
    experts: Sequence[str] | None = None,
) -> list[Rating]:
    """Ratings of `outcomes`; `battles` names each outcome's instruction, the unit the bootstrap resamples."""
    return rate(
        outcomes,
        method=config.scoring.rating,
        bootstrap_rounds=rounds,
        seed=config.scoring.seed,
        experts=experts or config.expert_names,
        battles=battles,
    )


def _stored_votes(state: CampaignState) -> tuple[list[Outcome], list[str]]:
    """Every recorded vote, in arrival order (`_arrival_order`), and its instruction: a newcomer's addendum
    (`<id>+<expert>`) joins its instruction's battle, since its votes are on the same instruction and answers."""
    outcomes: list[Outcome] = []
    battles: list[str] = []
    table = state.table("votes")
    for part in _arrival_order(state, table):
        votes = table[part]
        outcomes.extend(Outcome(a, b, w) for a, b, w in votes)
        battles.extend([instruction_of(part)] * len(votes))
    return outcomes, battles


def _arrival_order(state: CampaignState, parts: Iterable[str]) -> list[str]:
    """Battle parts in the order the scorer recorded their votes: the time `score` first recorded each part
    (table `vote_order`), then, for a part without one (recorded before the table existed, or its time lost
    to a crash), after all of those, by part id. This is the order online Elo plays the votes in."""
    recorded = {part: float(at) for part, at in state.table("vote_order").items()}
    return sorted(parts, key=lambda part: (part not in recorded, recorded.get(part, 0.0), part))


def _points(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Each ordered pair's points (1 per win, 0.5 per tie), keyed by the JSON of [a, b]: a part's increment
    to the campaign's running Bradley-Terry counts (table `vote_points`)."""
    points: dict[str, float] = defaultdict(float)
    for o in outcomes:
        points[json.dumps([o.a, o.b])] += o.score_a
        points[json.dumps([o.b, o.a])] += 1.0 - o.score_a
    return dict(points)


def _provisional_ratings(state: CampaignState, config: CampaignConfig) -> dict[str, float]:
    """The ratings over every recorded vote, for a provisional winner.

    Bradley-Terry is fitted on the running counts (`vote_points`), which each part adds to exactly once
    (`CampaignState.add_once`), so a score costs a fit on an experts x experts matrix instead of a pass over
    every vote, with the same result: the counts are exact sums of 1s and 0.5s. The counts are complete when
    every part in `votes` is counted; otherwise (votes recorded before the counts were kept, or a part
    recorded but not yet counted) and for online Elo, which depends on the order, every vote is replayed.
    """
    experts = _experts(state, config)
    if config.scoring.rating == "bt" and state.count("votes_counted") == state.table_size("votes"):
        points = {(a, b): value for field, value in state.sums("vote_points").items() for a, b in [json.loads(field)]}
        return bradley_terry_points(points, experts=experts)
    outcomes, battles = _stored_votes(state)
    return {r.expert: r.rating for r in _ratings(outcomes, battles, config, rounds=0, experts=experts)}


def _experts(state: CampaignState, config: CampaignConfig) -> list[str]:
    return sorted(set(config.expert_names) | state.members("roster"))


def score(rt: Runtime, campaign: str, iid: str, newcomer: str | None = None) -> dict[str, Any]:
    """Record a battle part's votes and the instruction's provisional winner under the current ratings."""
    return score_batch(rt, campaign, [iid], newcomer)[0]


def score_batch(rt: Runtime, campaign: str, iids: list[str], newcomer: str | None = None) -> list[dict[str, Any]]:
    """Record the votes of a batch of battle parts, fit the provisional ratings once, and record each
    instruction's provisional winner under them; the score records, in batch order."""
    state = CampaignState(rt.redis, campaign)
    config = state.campaign_config()
    battles = run_each(lambda iid: rt.store.get_json(battle_key(campaign, iid, newcomer)), iids, concurrency=len(iids))
    parts = []
    for iid, own in zip(iids, battles, strict=True):
        part = iid if newcomer is None else f"{iid}+{newcomer}"
        own_outcomes = outcomes_of(own)
        state.put("votes", part, [[o.a, o.b, o.winner] for o in own_outcomes])
        if state.mark("votes_recorded", part):  # a redelivery keeps the part's first place in arrival order
            state.put("vote_order", part, time.time())
        state.add_once("votes_counted", part, "vote_points", _points(own_outcomes))
        parts.append(part)
    ratings = _provisional_ratings(state, config)

    def record(pair: tuple[str, str]) -> dict[str, Any]:
        iid, part = pair
        result = winner_of(load_battle(rt.store, campaign, iid), ratings, config.scoring.alpha) | {
            "id": iid,
            "part": part,
            "provisional": True,
            "ratings": ratings,
        }
        key = f"runs/{campaign}/scores/{part}.json"
        rt.store.put_json(key, result, if_absent=True)
        state.mark("scored" if newcomer is None else "backfill_done", part)
        return dict(rt.store.get_json(key))

    return run_each(record, list(zip(iids, parts, strict=True)), concurrency=len(iids), instruction=lambda p: p[0])


def matchmake(rt: Runtime, campaign: str, expert: str, round_: int) -> list[str]:
    """Choose the next earlier instructions a newcomer battles; empty once it is rated well enough.

    A newcomer is scheduled first (its backfills go ahead of regular work) until its rating's
    interval is as narrow as the median interval of the others, or it has met every instruction.
    The interval counts only once the newcomer has met at least one round's worth of instructions
    (`matchmaking.batch`): the bootstrap resamples battles, and over a handful of them it understates
    the spread (with a single battle, every resample that draws it gives the same rating).
    """
    state = CampaignState(rt.redis, campaign)
    config = state.campaign_config()
    if not state.mark("matchmade", f"{expert}:{round_}"):
        return []  # this round was already handled by an earlier delivery
    experts = _experts(state, config)
    outcomes, instructions = _stored_votes(state)
    ratings = _ratings(outcomes, instructions, config, rounds=config.matchmaking.bootstrap_rounds, experts=experts)
    widths = {r.expert: r.ci_high - r.ci_low for r in ratings}
    others = sorted(w for name, w in widths.items() if name != expert)
    mine = widths.get(expert)
    met = len({iid for o, iid in zip(outcomes, instructions, strict=True) if expert in (o.a, o.b)})
    state.put("matchmaking", expert, {"round": round_, "width": mine, "median_width": _median(others)})
    if met >= config.matchmaking.batch and mine is not None and others and mine <= _median(others):
        state.put("matchmaking", expert, {"round": round_, "width": mine, "median_width": _median(others),
                                          "rated": True})  # fmt: skip
        return []
    sent = state.members("backfill_sent")
    todo = sorted(i for i in state.members("battled") if f"{i}+{expert}" not in sent)
    batch = todo[: config.matchmaking.batch]
    if not batch:  # it has met every instruction: its matchmaking is over, rated or not
        state.put("matchmaking", expert, {"round": round_, "width": mine, "median_width": _median(others),
                                          "exhausted": True})  # fmt: skip
        return []
    for iid in batch:
        state.mark("round:" + f"{expert}:{round_}", iid)
        state.mark("backfill_sent", f"{iid}+{expert}")
    return batch


def round_complete(rt: Runtime, campaign: str, expert: str) -> int | None:
    """The newcomer's next round number once every backfill of its current round is scored, else None."""
    state = CampaignState(rt.redis, campaign)
    current = max((int(m.split(":")[1]) for m in state.members("matchmade") if m.startswith(f"{expert}:")),
                  default=None)  # fmt: skip
    if current is None:
        return None
    pending = {f"{i}+{expert}" for i in state.members(f"round:{expert}:{current}")}
    if pending and pending <= state.members("backfill_done"):
        return current + 1
    return None


def _median(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def llm_verdicts_only(part: dict[str, Any]) -> dict[str, Any]:
    """A battle part as if its pairs had been judged by LLMs alone: execution's votes and its tests out,
    the judges' verdicts on the pairs execution decided (shadow judging) counted as ordinary votes."""
    judged = [j for j in part["judgments"] if j.get("source", "llm") in ("llm", SHADOW)]
    judgments = [j | {"source": "llm", "votes": 1} for j in judged]
    return part | {"judgments": judgments, "execution": None}


def finalize(rt: Runtime, campaign: str, verdicts: Literal["arena", "llm"] = "arena") -> dict[str, Any]:
    """Ratings with confidence intervals over every recorded battle, and each instruction's winner.

    The snapshot is stored under a content-addressed key; the campaign points at its newest one.
    `verdicts="llm"` is the LLM-only ablation: the same battles rated and decided from the LLM judges'
    verdicts alone (see `llm_verdicts_only`); its snapshot is stored but the campaign does not point at it.
    """
    if verdicts not in ("arena", "llm"):
        raise ValueError(f"verdicts must be 'arena' or 'llm', got {verdicts!r}")
    state = CampaignState(rt.redis, campaign)
    config = state.campaign_config()
    parts = {part_id(key): rt.store.get_json(key) for key in rt.store.list(f"runs/{campaign}/battles/")}
    if verdicts == "llm":
        parts = {part: llm_verdicts_only(record) for part, record in parts.items()}
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for part, record in sorted(parts.items()):
        grouped[instruction_of(part)].append(record)
    battles = [merge(records) for _, records in sorted(grouped.items())]
    judges = judge_panel.panel(
        battles, max_flip_rate=config.scoring.max_flip_rate, min_judgments=config.scoring.min_judge_judgments
    )
    untrusted = judge_panel.excluded(judges)
    by_battle = [(b, outcomes_of(b, untrusted)) for b in battles]
    # The ratings take the votes part by part in arrival order (online Elo depends on it; Bradley-Terry does
    # not), each tagged with its instruction, the unit the bootstrap resamples.
    outcomes, battle_ids = [], []
    for part in _arrival_order(state, parts):
        part_outcomes = outcomes_of(parts[part], untrusted)
        outcomes.extend(part_outcomes)
        battle_ids.extend([instruction_of(part)] * len(part_outcomes))
    experts = _experts(state, config)
    ratings = _ratings(outcomes, battle_ids, config, rounds=config.scoring.bootstrap_rounds, experts=experts)
    points = {r.expert: r.rating for r in ratings}
    categories = state.table("categories")
    decisive: dict[str, list[int]] = {name: [0, 0] for name in points}
    per_category: dict[str, dict[str, list[int]]] = {name: {} for name in points}
    for battle, battle_outcomes in by_battle:
        category = categories.get(battle["id"], "unknown")
        for o in battle_outcomes:
            if o.winner == "tie":
                continue
            won, lost = (o.a, o.b) if o.winner == "a" else (o.b, o.a)
            decisive[won][0] += 1
            decisive[lost][1] += 1
            per_category[won].setdefault(category, [0, 0])[0] += 1
            per_category[lost].setdefault(category, [0, 0])[1] += 1
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
            "categories": {
                category: {"wins": won, "losses": lost, "win_rate": round(won / max(1, won + lost), 3)}
                for category, (won, lost) in sorted(per_category[r.expert].items())
            },
        }
        for r in ratings
    ]
    winners = {
        b["id"]: winner_of(b, points, config.scoring.alpha, untrusted) for b in battles if len(b["competitors"]) >= 2
    }
    snapshot = {
        "campaign": campaign,
        "verdicts": verdicts,
        "method": config.scoring.rating,
        "alpha": config.scoring.alpha,
        "bootstrap_rounds": config.scoring.bootstrap_rounds,
        "seed": config.scoring.seed,
        "battles": len(battles),
        "votes": len(outcomes),
        "leaderboard": leaderboard,
        "judges": judges,
        "winners": winners,
    }
    key = f"runs/{campaign}/ratings/{content_hash(snapshot, length=16)}.json"
    rt.store.put_json(key, snapshot | {"computed_at": time.time()}, if_absent=True)
    if verdicts == "arena":
        state.put("meta_pointers", "ratings", key)
    return {
        "ratings_key": key,
        "leaderboard": leaderboard,
        "judges": judges,
        "battles": len(battles),
        "votes": len(outcomes),
    }
