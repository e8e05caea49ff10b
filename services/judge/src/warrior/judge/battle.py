"""One battle: every competitor answers the instruction, the experts write its tests, the executor runs every
answer against them, execution decides the pairs its trusted tests separate, and every uninvolved judge rules
on the others in both orders."""

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
from warrior.common.ledger import CallLedger, RevisionMismatch
from warrior.common.model_info import expert_model
from warrior.common.runtime import Runtime
from warrior.common.verification import SHADOW, merge_executions, pair_verdict
from warrior.judge.execution import execution_record, not_executed, run_answers, unit_test_records
from warrior.judge.prompts import VERDICT_CANDIDATES, VERDICT_PREFIX, answer_messages, judge_messages
from warrior.judge.testgen import collect_tests, executable_reason, tests_messages
from warrior.judge.verdicts import (
    VerdictParseError,
    combine_order_probs,
    combine_orders,
    parse_verdict,
    verdict_probs,
)

log = logging.getLogger(__name__)
_CALL_ERRORS = (ExpertUnavailable, ExpertRequestError, RevisionMismatch)

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

    def call(
        self, expert: str, kind: str, request: dict[str, Any], invoke: Any, revision: str | None = None
    ) -> dict[str, Any]:
        """The recorded answer of one call, keyed on `revision` (default: the expert's now) and answered by it."""
        revision = revision or expert_model(self.rt.client, expert).revision
        response, reused = self.ledger.call(expert, revision, kind, request, invoke)
        self.state.incr("ledger_reused" if reused else "engine_calls")
        return response


def answer(ctx: BattleContext, expert: str) -> dict[str, Any]:
    messages = answer_messages(ctx.instruction)
    sampling = ctx.config.answer_sampling.model_dump() | {
        "seed": int(content_hash(ctx.campaign, ctx.iid, expert, length=8), 16) or 1
    }
    request = {"messages": messages, "sampling": sampling}
    revision = expert_model(ctx.rt.client, expert).revision  # the key's, the call's and the lineage's
    response = ctx.call(
        expert,
        "chat",
        request,
        lambda: ctx.rt.client.chat(expert, messages, sampling, revision=revision).to_dict(),
        revision,
    )
    return {"text": response["text"], "finish_reason": response["finish_reason"], "revision": revision}


def write_tests(ctx: BattleContext, expert: str) -> str:
    """One expert's unit tests for the instruction, written without seeing any answer (greedy)."""
    messages = tests_messages(ctx.instruction, ctx.config.tests.per_writer)
    sampling = ctx.config.tests.sampling.model_dump() | {"seed": 1}
    request = {"messages": messages, "sampling": sampling}
    response = ctx.call(expert, "chat", request, lambda: ctx.rt.client.chat(expert, messages, sampling).to_dict())
    return str(response["text"])


def _judge_once(ctx: BattleContext, judge: str, revision: str, first: str, second: str, mode: str) -> dict[str, Any]:
    """One order: `first` shown as A, asked of the judge's `revision`. Returns the verdict (text mode) or the
    probabilities (logprobs mode)."""
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
            lambda: ctx.rt.client.score_candidates(
                judge, messages, VERDICT_PREFIX, VERDICT_CANDIDATES, revision=revision
            ).to_dict(),
            revision,
        )
        return {"probs": verdict_probs(response["logprobs"])}

    def ask(sampling: dict[str, Any]) -> str:
        request = {"messages": messages, "sampling": sampling}
        response = ctx.call(
            judge,
            "chat",
            request,
            lambda: ctx.rt.client.chat(judge, messages, sampling, revision=revision).to_dict(),
            revision,
        )
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


def judge_pair(ctx: BattleContext, judge: str, a: str, b: str, answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    model = expert_model(ctx.rt.client, judge)
    mode = ctx.config.judge_mode
    if mode == "auto":
        mode = "logprobs" if model.candidate_logprobs else "text"
    text_a, text_b = answers[a]["text"], answers[b]["text"]
    forward = _judge_once(ctx, judge, model.revision, text_a, text_b, mode)
    backward = _judge_once(ctx, judge, model.revision, text_b, text_a, mode)
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


def _execution_judgment(a: str, b: str, judges: list[str], winner: str | None, reason: str) -> dict[str, Any]:
    """Execution's vote on a pair: it weighs as much as the judges it stands in for, so a pair counts the
    same in the ratings whichever way it was decided."""
    return {
        "a": a,
        "b": b,
        "judge": "execution",
        "source": "execution",
        "winner": winner,
        "votes": max(1, len(judges)),
        "reason": reason,
    }


def _judge_all(
    ctx: BattleContext,
    plan: list[tuple[str, str, list[str]]],
    answers: dict[str, dict[str, Any]],
    execution: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every judgment of the plan (skipping failed judges, with reasons) and the vote counts per pair.

    With execution-first or execution-only verdicts, a pair the trusted tests separate is decided by
    execution and no judge is asked; execution-only makes every other pair a tie. With shadow judging
    (execution-first), the judges rule the decided pairs too, recorded as `llm-shadow` with no votes.
    """
    verdict = ctx.config.verdict
    shadow = ctx.config.shadow_judging and verdict == "execution-first"
    judgments: list[dict[str, Any]] = []
    jobs = []
    for a, b, judges in plan:
        decided = pair_verdict(execution, a, b) if execution and verdict != "llm-only" else None
        source = "llm"
        if decided is not None:
            judgments.append(_execution_judgment(a, b, judges, decided["winner"], decided["reason"]))
            if not shadow:
                continue
            source = SHADOW
        elif verdict == "execution-only":
            judgments.append(_execution_judgment(a, b, judges, None, "the tests do not separate them"))
            continue
        jobs += [((a, b, judge, source), _POOL.submit(judge_pair, ctx, judge, a, b, answers)) for judge in judges]
    for (a, b, judge, source), future in jobs:
        try:
            judgments.append(future.result() | {"source": source, "votes": 0 if source == SHADOW else 1})
        except (*_CALL_ERRORS, VerdictParseError) as exc:
            ctx.state.fail(f"judge:{ctx.iid}:{a}|{b}:{judge}", f"{type(exc).__name__}: {exc}")
    pairs = []
    for a, b, judges in plan:
        mine = [j for j in judgments if j["a"] == a and j["b"] == b and j["source"] != SHADOW]
        pairs.append(
            {
                "a": a,
                "b": b,
                "votes_a": sum(j["votes"] for j in mine if j["winner"] == a),
                "votes_b": sum(j["votes"] for j in mine if j["winner"] == b),
                "ties": sum(j["votes"] for j in mine if j["winner"] is None),
                "source": "execution" if any(j["source"] == "execution" for j in mine) else "llm",
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


def _collect(ctx: BattleContext, futures: dict[str, Any], kind: str) -> dict[str, Any]:
    out = {}
    for name, future in futures.items():
        try:
            out[name] = future.result()
        except _CALL_ERRORS as exc:
            ctx.state.fail(f"{kind}:{ctx.iid}:{name}", str(exc))
    return out


def run_battle(
    rt: Runtime,
    campaign: str,
    iid: str,
    instruction: str,
    roster: Sequence[str],
    config: BattleConfig,
    *,
    language: str = "Python",
    category: str | None = None,
) -> dict[str, Any]:
    """Answers, tests, execution, judgments and per-pair vote counts for one instruction.

    Competitors, test writers and judges are the roster's experts that are live now. An expert that
    fails to answer leaves the battle; a test writer or judge that fails, or whose verdict cannot be
    parsed, is skipped; all are recorded with their reasons, and the battle goes on with the rest.
    """
    state = CampaignState(rt.redis, campaign)
    ctx = BattleContext(rt, campaign, iid, instruction, config, state, rt.ledger(campaign))
    live = _live(rt, state, iid, roster)
    reason = executable_reason(config.verdict, config.tests, language, category)
    answering = {name: _POOL.submit(answer, ctx, name) for name in live}
    writing = {name: _POOL.submit(write_tests, ctx, name) for name in live} if reason is None else {}
    answers = _collect(ctx, answering, "answer")
    if reason is None:
        tests, writers = collect_tests(_collect(ctx, writing, "tests"), config.tests.per_writer)
        records = unit_test_records(tests)
        execution = execution_record(
            run_answers(rt, answers, records, config.tests), records, writers, language, config.tests.trust
        )
    else:
        execution = not_executed(reason, language)
    judgments, pairs = _judge_all(ctx, schedule(list(answers), live), answers, execution)
    return {
        "id": iid,
        "campaign": campaign,
        "instruction": instruction,
        "competitors": sorted(answers),
        "answers": answers,
        "execution": execution,
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
    ctx = BattleContext(rt, campaign, iid, base["instruction"], config, state, rt.ledger(campaign))
    live = _live(rt, state, iid, roster)
    try:
        mine = answer(ctx, newcomer)
    except _CALL_ERRORS as exc:
        state.fail(f"answer:{iid}:{newcomer}", str(exc))
        return None
    answers = dict(base["answers"]) | {newcomer: mine}
    execution, part_execution = _backfill_execution(rt, base, newcomer, mine, config)
    plan: list[tuple[str, str, list[str]]] = []
    for other in sorted(base["answers"]):
        if other != newcomer:
            a, b = sorted((newcomer, other))
            plan.append((a, b, sorted(j for j in live if j not in (a, b))))
    judgments, pairs = _judge_all(ctx, plan, answers, execution)
    return {
        "id": iid,
        "campaign": campaign,
        "instruction": base["instruction"],
        "newcomer": newcomer,
        "competitors": sorted(answers),
        "answers": {newcomer: mine},
        "execution": part_execution,
        "judgments": judgments,
        "pairs": pairs,
    }


def _backfill_execution(
    rt: Runtime, base: dict[str, Any], newcomer: str, answer: dict[str, Any], config: BattleConfig
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The newcomer's answer run against the instruction's tests; returns (the merged execution the pairs
    are decided with, the addendum's own part). Trust is recomputed over every answer, the newcomer's too."""
    earlier = base.get("execution")
    if not earlier or not earlier.get("executable"):
        return earlier, None
    ran = run_answers(rt, {newcomer: answer}, earlier["tests"], config.tests)
    merged = merge_executions([earlier, ran])
    assert merged is not None  # the base is executable
    return merged, ran | {"trust": merged["trust"], "passes": merged["passes"]}
