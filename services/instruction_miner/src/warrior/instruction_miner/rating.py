"""Difficulty and quality: every expert but the instruction's author rates it 1-10; the mean decides.

A rating is read from the text (`[[n]]`, asked once more, sampled, when unparseable) or, where
the engine offers candidate log-probabilities, as the expected value of the ratings 1..10 after
the prefix "Rating: [[" (tiny models rarely follow the format, but their next-token
distribution still orders instructions).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from warrior.common.campaign_config import RatingConfig
from warrior.common.expert_client import ExpertRequestError, ExpertUnavailable
from warrior.common.ids import content_hash
from warrior.common.ledger import RevisionMismatch
from warrior.common.model_info import expert_model
from warrior.common.runtime import Runtime

RATING_SYSTEM = (
    "You are an expert reviewer of programming tasks. Rate the user's {language} coding request below on a "
    "scale of 1 to 10 for quality and difficulty together: a clear, specific, self-contained request that takes "
    "real skill to answer well scores high; a vague, trivial, unanswerable or incoherent one scores low. "
    "1-2 very poor, 3-5 poor to average, 6-7 good, 8-10 excellent. Reply with a one-sentence reason, then the "
    'rating in this exact format: "Rating: [[n]]".'
)
RATING_PREFIX = "Rating: [["
RATING_CANDIDATES = tuple(f"{n}]]" for n in range(1, 11))
_RATING_TAG = re.compile(r"\[\[\s*(10|[1-9])(?:\s*/\s*10)?\s*\]\]")
_CALL_ERRORS = (ExpertUnavailable, ExpertRequestError, RevisionMismatch)
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="rating-call")

CallFn = Callable[[str, str, dict[str, Any], Callable[[], dict[str, Any]]], dict[str, Any]]


class RatingParseError(ValueError):
    """A reply without a `[[n]]` rating (n in 1..10)."""


def rating_messages(instruction: str, language: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": RATING_SYSTEM.format(language=language)},
        {"role": "user", "content": f"[Request]\n{instruction}\n[End of Request]"},
    ]


def parse_rating(text: str) -> int:
    """The last `[[n]]` in the reply (1 <= n <= 10)."""
    found = _RATING_TAG.findall(text)
    if not found:
        excerpt = text.strip()[-120:]
        raise RatingParseError(f"no [[n]] rating (1-10) in the reply: {excerpt!r}")
    return int(found[-1])


def _logprob(candidate: str, value: object) -> float:
    """A candidate's log-probability as a float; NaN and +inf are no log-probabilities."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RatingParseError(f"log-probability of {candidate!r} is not a number: {value!r:.80}")
    try:
        logprob = float(value)
    except OverflowError:
        raise RatingParseError(f"log-probability of {candidate!r} is too large: {value!r:.80}") from None
    if math.isnan(logprob) or logprob == math.inf:
        raise RatingParseError(f"log-probability of {candidate!r} must be finite or -inf, got {logprob}")
    return logprob


def expected_rating(logprobs: Mapping[str, float]) -> float:
    """E[n] under the softmax of the candidates' log-probabilities (-inf: probability 0).

    Keys other than the candidates "1]]".."10]]" are ignored; a candidate's NaN or +inf
    log-probability, or none finite at all, raises RatingParseError.
    """
    values = [(int(c[:-2]), _logprob(c, lp)) for c, lp in logprobs.items() if c in RATING_CANDIDATES]
    finite = [lp for _, lp in values if lp != -math.inf]
    if not finite:
        shown = sorted(str(c)[:40] for c in logprobs)[:20]
        raise RatingParseError(f"no finite rating log-probability among {shown} ({len(logprobs)} keys)")
    top = max(finite)
    weights = [(n, math.exp(lp - top)) for n, lp in values if lp != -math.inf]
    total = math.fsum(w for _, w in weights)
    return math.fsum(n * w for n, w in weights) / total


def _rate_one(rt: Runtime, call: CallFn, expert: str, messages: list[dict[str, str]], config: RatingConfig,
              seed: int) -> dict[str, Any]:  # fmt: skip
    mode = config.mode
    if mode == "auto":
        mode = "logprobs" if expert_model(rt.client, expert).candidate_logprobs else "text"
    if mode == "logprobs":
        request: dict[str, Any] = {"messages": messages, "assistant_prefix": RATING_PREFIX,
                                   "candidates": list(RATING_CANDIDATES)}  # fmt: skip
        response = call(expert, "score_candidates", request, lambda: rt.client.score_candidates(
            expert, messages, RATING_PREFIX, RATING_CANDIDATES).to_dict())  # fmt: skip
        return {"score": round(expected_rating(response["logprobs"]), 3), "mode": mode}

    def ask(sampling: dict[str, Any]) -> str:
        response = call(expert, "chat", {"messages": messages, "sampling": sampling},
                        lambda: rt.client.chat(expert, messages, sampling).to_dict())  # fmt: skip
        return str(response["text"])

    greedy = config.sampling.model_dump() | {"seed": seed}
    try:
        return {"score": float(parse_rating(ask(greedy))), "mode": mode, "attempts": 1}
    except RatingParseError:
        pass  # greedy decoding would repeat itself: one more try, sampled
    text = ask(greedy | {"temperature": max(0.7, greedy["temperature"]), "seed": seed + 1})
    return {"score": float(parse_rating(text)), "mode": mode, "attempts": 2}


def rate(
    rt: Runtime,
    call: CallFn,
    instruction: str,
    language: str,
    raters: list[str],
    config: RatingConfig,
    on_failure: Callable[[str, str], None],
) -> dict[str, Any]:
    """Every rater's score (failures reported through `on_failure(rater, reason)`) and their mean."""
    messages = rating_messages(instruction, language)
    seed = int(content_hash(instruction, length=8), 16) or 1
    futures = {name: _POOL.submit(_rate_one, rt, call, name, messages, config, seed) for name in raters}
    by: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        try:
            by[name] = future.result()
        except (*_CALL_ERRORS, RatingParseError) as exc:
            on_failure(name, f"{type(exc).__name__}: {exc}")
    mean = math.fsum(r["score"] for r in by.values()) / len(by) if by else None
    return {"mean": None if mean is None else round(mean, 3), "by": by, "min_score": config.min_score}
