"""One battle: every competitor answers the instruction, every uninvolved judge rules on every pair, both orders."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from warrior.common.campaign_config import BattleConfig
from warrior.common.campaign_state import CampaignState
from warrior.common.expert_client import ExpertRequestError, ExpertUnavailable
from warrior.common.ids import content_hash
from warrior.common.ledger import CallLedger
from warrior.common.model_info import expert_model
from warrior.common.runtime import Runtime
from warrior.judge.prompts import VERDICT_CANDIDATES, VERDICT_PREFIX, answer_messages, judge_messages
from warrior.judge.verdicts import (
    VerdictParseError,
    combine_order_probs,
    combine_orders,
    parse_verdict,
    verdict_probs,
)

log = logging.getLogger(__name__)
_CALL_ERRORS = (ExpertUnavailable, ExpertRequestError)

# One pool for the model calls of every battle this process runs: starting threads per battle costs
# more than the calls to a fast engine. Sized for several battles' calls in flight at once.
_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="battle-call")


def schedule(competitors: Sequence[str], judges_pool: Sequence[str]) -> list[tuple[str, str, list[str]]]:
    """Every unordered pair of competitors with the judges not involved in it, in a stable order."""
    out = []
    for a, b in itertools.combinations(sorted(competitors), 2):
        judges = sorted(j for j in judges_pool if j not in (a, b))
        out.append((a, b, judges))
    return out


@dataclass
class BattleContext:
    rt: Runtime
    campaign: str
    iid: str
    instruction: str
    config: BattleConfig
    state: CampaignState
    ledger: CallLedger

    def call(self, expert: str, kind: str, request: dict[str, Any], invoke: Any) -> dict[str, Any]:
        revision = expert_model(self.rt.client, expert).revision
        response, reused = self.ledger.call(expert, revision, kind, request, invoke)
        self.state.incr("ledger_reused" if reused else "engine_calls")
        return response


def _answer(ctx: BattleContext, expert: str) -> dict[str, Any]:
    messages = answer_messages(ctx.instruction)
    sampling = ctx.config.answer_sampling.model_dump() | {
        "seed": int(content_hash(ctx.campaign, ctx.iid, expert, length=8), 16) or 1
    }
    request = {"messages": messages, "sampling": sampling}
    response = ctx.call(expert, "chat", request, lambda: ctx.rt.client.chat(expert, messages, sampling).to_dict())
    return {
        "text": response["text"],
        "finish_reason": response["finish_reason"],
        "revision": expert_model(ctx.rt.client, expert).revision,
    }


def _judge_once(ctx: BattleContext, judge: str, first: str, second: str, mode: str) -> dict[str, Any]:
    """One order: `first` shown as A. Returns the verdict (text mode) or the probabilities (logprobs mode)."""
    messages = judge_messages(ctx.instruction, first, second)
    if mode == "logprobs":
        request: dict[str, Any] = {
            "messages": messages,
            "assistant_prefix": VERDICT_PREFIX,
            "candidates": list(VERDICT_CANDIDATES),
        }
        response = ctx.call(
            judge,
            "score_candidates",
            request,
            lambda: {"logprobs": ctx.rt.client.score_candidates(judge, messages, VERDICT_PREFIX, VERDICT_CANDIDATES)},
        )
        return {"probs": verdict_probs(response["logprobs"])}

    def ask(sampling: dict[str, Any]) -> str:
        request = {"messages": messages, "sampling": sampling}
        response = ctx.call(judge, "chat", request, lambda: ctx.rt.client.chat(judge, messages, sampling).to_dict())
        return str(response["text"])

    greedy = ctx.config.judge_sampling.model_dump()
    text = ask(greedy)
    try:
        return {"verdict": parse_verdict(text), "text": text[-300:], "attempts": 1}
    except VerdictParseError:
        pass
    # One more try, sampled: greedy decoding would only repeat the same unparseable text.
    text = ask(greedy | {"temperature": max(0.7, greedy["temperature"]), "seed": 2})
    return {"verdict": parse_verdict(text), "text": text[-300:], "attempts": 2}


def _judge_pair(ctx: BattleContext, judge: str, a: str, b: str, answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    model = expert_model(ctx.rt.client, judge)
    mode = ctx.config.judge_mode
    if mode == "auto":
        mode = "logprobs" if model.candidate_logprobs else "text"
    text_a, text_b = answers[a]["text"], answers[b]["text"]
    forward = _judge_once(ctx, judge, text_a, text_b, mode)
    backward = _judge_once(ctx, judge, text_b, text_a, mode)
    if mode == "logprobs":
        side, margin = combine_order_probs(forward["probs"], backward["probs"], tie_margin=ctx.config.tie_margin)
    else:
        side, margin = combine_orders(forward["verdict"], backward["verdict"]), 0.0
    winner = {"first": a, "second": b, "tie": None}[side]
    return {
        "a": a,
        "b": b,
        "judge": judge,
        "judge_revision": model.revision,
        "mode": mode,
        "forward": forward,
        "backward": backward,
        "winner": winner,
        "margin": margin,
    }


def _judge_all(
    ctx: BattleContext,
    plan: list[tuple[str, str, list[str]]],
    answers: dict[str, dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every judgment of the plan (skipping failed judges, with reasons) and the vote counts per pair."""
    jobs = [
        ((a, b, judge), _POOL.submit(_judge_pair, ctx, judge, a, b, answers))
        for a, b, judges in plan
        for judge in judges
    ]
    judgments = []
    for (a, b, judge), future in jobs:
        try:
            judgments.append(future.result())
        except (*_CALL_ERRORS, VerdictParseError) as exc:
            ctx.state.fail(f"judge:{ctx.iid}:{a}|{b}:{judge}", f"{type(exc).__name__}: {exc}")
    pairs = []
    for a, b, judges in plan:
        mine = [j for j in judgments if j["a"] == a and j["b"] == b]
        pairs.append(
            {
                "a": a,
                "b": b,
                "votes_a": sum(1 for j in mine if j["winner"] == a),
                "votes_b": sum(1 for j in mine if j["winner"] == b),
                "ties": sum(1 for j in mine if j["winner"] is None),
                "judges": [j["judge"] for j in mine],
                "judges_planned": judges,
            }
        )
    return judgments, pairs


def _live(rt: Runtime, state: CampaignState, iid: str, roster: Sequence[str]) -> list[str]:
    live = [name for name in roster if rt.registry.resolve(name)]
    for name in roster:
        if name not in live:
            state.fail(f"absent:{iid}:{name}", f"expert {name!r} not registered when the battle started")
    return live


def run_battle(
    rt: Runtime, campaign: str, iid: str, instruction: str, roster: Sequence[str], config: BattleConfig
) -> dict[str, Any]:
    """Answers, judgments and per-pair vote counts for one instruction.

    Competitors and judges are the roster's experts that are live now. An expert that fails to
    answer leaves the battle; a judge that fails or whose verdict cannot be parsed is skipped; both
    are recorded with their reasons, and the battle goes on with the rest.
    """
    state = CampaignState(rt.redis, campaign)
    ctx = BattleContext(rt, campaign, iid, instruction, config, state, CallLedger(rt.store, campaign))
    live = _live(rt, state, iid, roster)
    answers: dict[str, dict[str, Any]] = {}
    futures = {name: _POOL.submit(_answer, ctx, name) for name in live}
    for name, future in futures.items():
        try:
            answers[name] = future.result()
        except _CALL_ERRORS as exc:
            state.fail(f"answer:{iid}:{name}", str(exc))
    judgments, pairs = _judge_all(ctx, schedule(list(answers), live), answers)
    return {
        "id": iid,
        "campaign": campaign,
        "instruction": instruction,
        "competitors": sorted(answers),
        "answers": answers,
        "judgments": judgments,
        "pairs": pairs,
    }


def run_backfill(
    rt: Runtime,
    campaign: str,
    iid: str,
    newcomer: str,
    base: dict[str, Any],
    roster: Sequence[str],
    config: BattleConfig,
) -> dict[str, Any] | None:
    """A newcomer's battles on an instruction judged before it joined: it answers, then meets every
    earlier competitor, judged by the live experts outside each pair. None when it could not answer."""
    state = CampaignState(rt.redis, campaign)
    ctx = BattleContext(rt, campaign, iid, base["instruction"], config, state, CallLedger(rt.store, campaign))
    live = _live(rt, state, iid, roster)
    try:
        mine = _answer(ctx, newcomer)
    except _CALL_ERRORS as exc:
        state.fail(f"answer:{iid}:{newcomer}", str(exc))
        return None
    answers = dict(base["answers"]) | {newcomer: mine}
    plan: list[tuple[str, str, list[str]]] = []
    for other in sorted(base["answers"]):
        if other != newcomer:
            a, b = sorted((newcomer, other))
            plan.append((a, b, sorted(j for j in live if j not in (a, b))))
    judgments, pairs = _judge_all(ctx, plan, answers)
    return {
        "id": iid,
        "campaign": campaign,
        "instruction": base["instruction"],
        "newcomer": newcomer,
        "competitors": sorted(answers),
        "answers": {newcomer: mine},
        "judgments": judgments,
        "pairs": pairs,
    }
