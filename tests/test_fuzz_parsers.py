"""Property-based tests of the judge's verdict parser and combiners and the miner's rating parser.

Arbitrary judge output and arbitrary log-probability maps give a value or a named error
(VerdictParseError, RatingParseError, ValueError), never another exception, and the values obey
the rules the battles and ratings rely on: the last tag wins, probabilities add up to one, the
two presentation orders are treated symmetrically and a pure position bias cancels out.
"""

from __future__ import annotations

import math
import pickle
import time
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from warrior.instruction_miner.rating import RATING_CANDIDATES, RatingParseError, expected_rating, parse_rating
from warrior.judge.verdicts import (
    VerdictParseError,
    combine_order_probs,
    combine_orders,
    parse_verdict,
    verdict_probs,
)

FAST = settings(max_examples=200, deadline=timedelta(seconds=5))
MIRROR = {"first": "second", "second": "first", "tie": "tie"}

TAGS = {"[[A]]": "A", "[[B]]": "B", "[[Tie]]": "tie", "[[C]]": "tie", "[[ b ]]": "B", "[[TIE]]": "tie", "[[a]]": "A"}
# Judge-like text: prose, brackets that almost make a tag, the options restated, unicode.
fragments = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["[[", "]]", "[[D]]", "[[AB]]", "[A]", "[[ ]]", "[[\nA]]", "Verdict: A", "\u2028", "[[١]]"]),
    st.sampled_from(sorted(TAGS)),
)
judge_text = st.lists(fragments, max_size=12).map("".join)
no_tag_text = st.text(max_size=200).filter(lambda t: "[[" not in t)

logprob_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-50, max_value=0),
    st.sampled_from([-math.inf, 0.0, -0.0, 1e308, -1e308, 5e-324]),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)
verdict_keys = st.sampled_from(["A", "B", "Tie", "tie", "C", " A", "b ", "\tTIE\n", "D", "", "AB", "[[A]]"]) | st.text(
    max_size=4
)
logprob_maps = st.dictionaries(verdict_keys, logprob_values, max_size=8)
finite_logprobs = st.dictionaries(
    st.sampled_from(["A", "B", "Tie"]), st.floats(min_value=-80, max_value=0), min_size=1, max_size=3
)


# parse_verdict


@FAST
@given(judge_text)
def test_parse_verdict_returns_a_verdict_or_a_parse_error(text: str) -> None:
    try:
        verdict = parse_verdict(text)
    except VerdictParseError as exc:
        assert len(exc.excerpt) <= 120
        assert exc.excerpt in text.strip() or exc.excerpt.startswith("…")
        again = pickle.loads(pickle.dumps(exc))  # Celery carries it between processes
        assert (type(again), str(again), again.excerpt) == (VerdictParseError, str(exc), exc.excerpt)
        return
    assert verdict in ("A", "B", "tie")


@FAST
@given(judge_text, st.sampled_from(sorted(TAGS)), no_tag_text)
def test_the_last_verdict_tag_wins(before: str, tag: str, after: str) -> None:
    assert parse_verdict(before + tag + after) == TAGS[tag]


@FAST
@given(no_tag_text)
def test_text_without_a_tag_is_a_parse_error(text: str) -> None:
    with pytest.raises(VerdictParseError):
        parse_verdict(text)


def test_verdict_and_rating_parsers_are_linear_on_adversarial_text() -> None:
    started = time.monotonic()
    for text in ("[[" + " " * 1_000_000, "[[ " * 300_000, "[[10/" * 200_000, "[" * 1_000_000, "[[1 / 1" * 100_000):
        with pytest.raises((VerdictParseError, RatingParseError)):
            parse_verdict(text)
        with pytest.raises(RatingParseError):
            parse_rating(text)
    assert time.monotonic() - started < 10


# verdict_probs


@FAST
@given(logprob_maps)
@example({"A": 10**400})  # OverflowError escaped
@example({"A": "x"})  # TypeError escaped
@example({1: 0.0, "B": -1.0})  # a key that is not text: AttributeError escaped
@example({"A": math.inf})
@example({"A": -math.inf, " a ": -math.inf})
def test_verdict_probs_are_a_distribution_or_a_value_error(logprobs: dict[Any, Any]) -> None:
    try:
        probs = verdict_probs(logprobs)
    except ValueError:
        return
    assert set(probs) <= {"A", "B", "tie"} and probs
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert math.isclose(math.fsum(probs.values()), 1.0, rel_tol=1e-9)


@FAST
@given(finite_logprobs, st.floats(min_value=-500, max_value=500))
def test_verdict_probs_ignore_a_common_shift(logprobs: dict[str, float], shift: float) -> None:
    shifted = verdict_probs({k: v + shift for k, v in logprobs.items()})
    for verdict, p in verdict_probs(logprobs).items():
        assert math.isclose(shifted[verdict], p, rel_tol=1e-6, abs_tol=1e-12)


# combine_orders and combine_order_probs

verdicts = st.sampled_from(["A", "B", "tie"])


@FAST
@given(verdicts | st.text(max_size=4) | st.none() | st.integers(), verdicts | st.text(max_size=4) | st.lists(st.none()))
def test_combine_orders_returns_a_side_or_a_value_error(forward: Any, backward: Any) -> None:
    try:
        side = combine_orders(forward, backward)
    except ValueError:
        assert forward not in ("A", "B", "tie") or backward not in ("A", "B", "tie")
        return
    assert side in ("first", "second", "tie")
    # Swapping the two orders is swapping the two answers.
    assert combine_orders(backward, forward) == MIRROR[side]
    if forward == backward:
        assert side == "tie"  # the same position twice is a position preference, not an answer's


probabilities = st.one_of(
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, True, None, "0.5", 10**400]),
)
prob_maps = st.dictionaries(st.sampled_from(["A", "B", "tie"]) | st.text(max_size=3), probabilities, max_size=3)
margins = st.floats(min_value=0.0, max_value=1.0) | st.floats(allow_nan=True) | st.sampled_from([-0.1, 10**400, "x"])


@FAST
@given(prob_maps, prob_maps, margins)
@example({"A": 0.5}, {"B": 0.5}, math.nan)
@example({"A": math.nan}, {}, 0.05)
@example({"A": "0.5"}, {}, 0.05)  # text compared with floats: TypeError escaped
def test_combine_order_probs_returns_a_side_and_margin_or_a_value_error(
    forward: dict[Any, Any], backward: dict[Any, Any], tie_margin: Any
) -> None:
    try:
        side, margin = combine_order_probs(forward, backward, tie_margin=tie_margin)
    except ValueError:
        return
    assert side in ("first", "second", "tie") and -1.0 <= margin <= 1.0
    assert (side == "tie") == (abs(margin) < tie_margin or margin == 0.0)
    mirrored, minus = combine_order_probs(backward, forward, tie_margin=tie_margin)
    assert (mirrored, minus) == (MIRROR[side], -margin)


halves = st.floats(min_value=0.0, max_value=0.5)


@FAST
@given(halves, halves, halves, halves, halves)
def test_a_pure_position_bias_cancels_out(a1: float, b1: float, a2: float, b2: float, bias: float) -> None:
    """A judge that adds the same weight to position A in both orders leaves the margin as it was."""
    _, fair = combine_order_probs({"A": a1, "B": b1}, {"A": a2, "B": b2}, tie_margin=0.0)
    _, biased = combine_order_probs({"A": a1 + bias, "B": b1}, {"A": a2 + bias, "B": b2}, tie_margin=0.0)
    assert math.isclose(biased, fair, abs_tol=1e-12)


# parse_rating and expected_rating

RATING_TAGS = {f"[[{n}]]": n for n in range(1, 11)} | {"[[ 7 ]]": 7, "[[10/10]]": 10, "[[3 / 10]]": 3}
rating_fragments = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["[[0]]", "[[11]]", "[[7.5]]", "[[-3]]", "[[٣]]", "Rating: [[", "]]", "[[10/9]]"]),
    st.sampled_from(sorted(RATING_TAGS)),
)


@FAST
@given(st.lists(rating_fragments, max_size=12).map("".join))
def test_parse_rating_returns_one_to_ten_or_a_parse_error(text: str) -> None:
    try:
        rating = parse_rating(text)
    except RatingParseError as exc:
        assert len(str(exc)) < 250
        return
    assert type(rating) is int and 1 <= rating <= 10


@FAST
@given(st.lists(rating_fragments, max_size=8).map("".join), st.sampled_from(sorted(RATING_TAGS)), no_tag_text)
def test_the_last_rating_tag_wins(before: str, tag: str, after: str) -> None:
    assert parse_rating(before + tag + after) == RATING_TAGS[tag]


rating_keys = st.sampled_from(list(RATING_CANDIDATES) + ["0]]", "11]]", "5", "[[5]]", "", " 5]]"]) | st.text(max_size=4)


@FAST
@given(st.dictionaries(rating_keys, logprob_values, max_size=12))
@example({"1]]": math.inf, "2]]": 0.0})  # returned NaN: a rater's score NaN slipped into the mean
@example({"10]]": math.nan, "3]]": -1.0})  # NaN was skipped silently
@example({"1]]": 10**400})  # OverflowError escaped
@example({"4]]": "x"})  # TypeError escaped
def test_expected_rating_is_within_one_to_ten_or_a_parse_error(logprobs: dict[Any, Any]) -> None:
    try:
        rating = expected_rating(logprobs)
    except RatingParseError:
        return
    assert math.isfinite(rating) and 1.0 - 1e-9 <= rating <= 10.0 + 1e-9


@FAST
@given(st.sampled_from(RATING_CANDIDATES), st.floats(min_value=-700, max_value=0), st.floats(-700, 0))
def test_one_finite_candidate_is_its_rating_and_others_weigh_in_by_probability(
    candidate: str, logprob: float, other: float
) -> None:
    alone = dict.fromkeys(RATING_CANDIDATES, -math.inf) | {candidate: logprob}
    assert expected_rating(alone) == int(candidate[:-2])
    n = int(candidate[:-2])
    m = 10 if n != 10 else 1
    both = alone | {f"{m}]]": other}
    assert min(n, m) - 1e-9 <= expected_rating(both) <= max(n, m) + 1e-9
