"""Judge verdicts: parse them from judge output and combine the two presentation orders.

Every pair of answers is judged twice, once in each order, because LLM judges favour a
position. A discrete verdict counts for a side only when both orders agree (the FastChat /
Arena-Hard consistency rule); with verdict probabilities, averaging the two orders cancels
a constant position bias exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final, Literal

__all__ = [
    "Side",
    "Verdict",
    "VerdictParseError",
    "combine_order_probs",
    "combine_orders",
    "parse_verdict",
    "verdict_probs",
]

Verdict = Literal["A", "B", "tie"]
"""A verdict in terms of presentation positions: answer shown as A, as B, or neither."""

Side = Literal["first", "second", "tie"]
"""A verdict in terms of the two answers themselves, independent of presentation order."""

_VERDICTS: Final[tuple[Verdict, ...]] = ("A", "B", "tie")
_EXCERPT_CHARS = 120
# "[[A]]", "[[ b ]]", "[[Tie]]", "[[C]]" (FastChat's tie label); case and inner spaces vary.
_VERDICT_TAG = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_LABELS: Final[Mapping[str, Verdict]] = {"a": "A", "b": "B", "c": "tie", "tie": "tie"}


class VerdictParseError(ValueError):
    """Judge output without a verdict tag; ``excerpt`` holds at most 120 characters of it."""

    def __init__(self, message: str, excerpt: str = "") -> None:
        """Keep both arguments in ``args`` so the error survives pickling (Celery results)."""
        super().__init__(message, excerpt)
        self.message = message
        self.excerpt = excerpt

    def __str__(self) -> str:
        """Return the message alone (ValueError would print the args tuple)."""
        return self.message


def _excerpt(text: str) -> str:
    """Return at most 120 characters of ``text``, from its end, where a verdict belongs."""
    text = text.strip()
    if len(text) <= _EXCERPT_CHARS:
        return text
    return "…" + text[-(_EXCERPT_CHARS - 1) :]


def parse_verdict(text: str) -> Verdict:
    """Return the verdict tagged ``[[A]]``, ``[[B]]``, ``[[Tie]]`` or ``[[C]]`` (a tie) in ``text``.

    When several tags appear the LAST one wins: judges often restate the options first
    ('output "[[A]]" if A is better, "[[B]]" if B is better') and give their decision at the
    end ("My final verdict is [[B]]"). Raises :class:`VerdictParseError` if there is no tag.
    """
    tags = _VERDICT_TAG.findall(text)
    if not tags:
        excerpt = _excerpt(text)
        raise VerdictParseError(
            f"no verdict tag ([[A]], [[B]] or [[Tie]]) in judge output: {excerpt!r}",
            excerpt,
        )
    return _LABELS[tags[-1].lower()]


def _check_verdict(verdict: str, name: str) -> None:
    """Raise ValueError unless ``verdict`` is "A", "B" or "tie"."""
    if verdict not in _VERDICTS:
        raise ValueError(f"{name} verdict must be 'A', 'B' or 'tie', got {verdict!r}")


def combine_orders(forward: Verdict, backward: Verdict) -> Side:
    """Return the side both presentation orders agree on, else "tie".

    ``forward`` judged answer 1 as A and answer 2 as B; ``backward`` judged answer 2 as A and
    answer 1 as B. Answer 1 wins only on (A, B), answer 2 only on (B, A); a win in one order
    and a tie in the other, or a win for the same position twice, is a tie: the judge's
    preference did not survive swapping the positions.
    """
    _check_verdict(forward, "forward")
    _check_verdict(backward, "backward")
    if forward == "A" and backward == "B":
        return "first"
    if forward == "B" and backward == "A":
        return "second"
    return "tie"


def verdict_probs(logprobs: Mapping[str, float]) -> dict[Verdict, float]:
    """Return a softmax over the verdict logprobs present (keys "A", "B", optional "Tie").

    Keys are matched after stripping whitespace and ignoring case (tokenizers yield " A" as
    often as "A"; "C" also means tie); logprobs of spellings of one verdict add up as
    probabilities. Keys that name no verdict are ignored, so a whole top-k list can be passed.
    A ``-inf`` logprob gives probability 0; at least one verdict needs a finite logprob.
    """
    merged: dict[Verdict, float] = {}
    for key, value in logprobs.items():
        verdict = _LABELS.get(key.strip().lower()) if isinstance(key, str) else None
        if verdict is None:
            continue
        logprob = _number(value, f"logprob for {key!r}")
        if math.isnan(logprob) or logprob == math.inf:
            raise ValueError(f"logprob for {key!r} must be finite or -inf, got {logprob}")
        merged[verdict] = _logaddexp(merged[verdict], logprob) if verdict in merged else logprob
    if not merged:
        shown = sorted(str(k)[:40] for k in logprobs)[:20]
        raise ValueError(f"no verdict key (A, B, Tie) among {shown!r} ({len(logprobs)} keys)")
    # Subtracting the maximum keeps exp() from overflowing or underflowing to all zeros.
    top = max(merged.values())
    if top == -math.inf:
        raise ValueError("every verdict logprob is -inf")
    weights = {verdict: math.exp(logprob - top) for verdict, logprob in merged.items()}
    total = math.fsum(weights.values())
    return {verdict: weights[verdict] / total for verdict in _VERDICTS if verdict in weights}


def _number(value: object, what: str) -> float:
    """`value` as a float; anything but an int or a float (bools included) raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r:.80}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{what} is too large: {value!r:.80}") from None


def _logaddexp(x: float, y: float) -> float:
    """Return ``log(exp(x) + exp(y))`` without overflow."""
    hi, lo = max(x, y), min(x, y)
    if hi == -math.inf:
        return hi
    return hi + math.log1p(math.exp(lo - hi))


def combine_order_probs(
    forward: Mapping[Verdict, float],
    backward: Mapping[Verdict, float],
    *,
    tie_margin: float = 0.05,
) -> tuple[Side, float]:
    """Return ``(side, margin)`` from both orders' verdict probabilities.

    ``p_first = (forward["A"] + backward["B"]) / 2`` and ``p_second = (forward["B"] +
    backward["A"]) / 2``; ``margin = p_first - p_second`` (positive favours answer 1) and
    ``|margin| < tie_margin`` is a tie. A judge that adds the same weight to position A in
    both orders adds it to both sides, so a pure position bias yields margin 0. A missing
    verdict counts as probability 0.
    """
    if not _number(tie_margin, "tie_margin") >= 0.0:
        raise ValueError(f"tie_margin must be >= 0, got {tie_margin}")
    checked: dict[str, dict[Verdict, float]] = {}
    for name, probs in (("forward", forward), ("backward", backward)):
        checked[name] = {}
        for verdict, value in probs.items():
            _check_verdict(verdict, name)
            p = _number(value, f"{name} probability of {verdict!r}")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} probability of {verdict!r} must be in [0, 1], got {p}")
            checked[name][verdict] = p
    forward, backward = checked["forward"], checked["backward"]
    p_first = (forward.get("A", 0.0) + backward.get("B", 0.0)) / 2.0
    p_second = (forward.get("B", 0.0) + backward.get("A", 0.0)) / 2.0
    margin = p_first - p_second
    # margin == 0 is a tie even with tie_margin 0: neither side is favoured.
    if abs(margin) < tie_margin or margin == 0.0:
        return "tie", margin
    return ("first" if margin > 0 else "second"), margin
