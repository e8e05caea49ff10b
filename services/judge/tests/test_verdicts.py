"""Tests for verdict parsing and the both-orders rule."""

from __future__ import annotations

import math
import pickle

import pytest

from warrior.judge.verdicts import (
    Side,
    Verdict,
    VerdictParseError,
    combine_order_probs,
    combine_orders,
    parse_verdict,
    verdict_probs,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Assistant A is more accurate.\n\nMy final verdict is [[A]]", "A"),
        ("[[B]]", "B"),
        ("It's a draw: [[Tie]]", "tie"),
        ("Both are equally good. [[C]]", "tie"),
        ("[[a]]", "A"),
        ("[[ b ]]", "B"),
        ("[[TIE]]", "tie"),
        ("[[ tie]]", "tie"),
        ("[[c]]", "tie"),
    ],
)
def test_parse_verdict_tags(text: str, expected: Verdict) -> None:
    assert parse_verdict(text) == expected


def test_parse_verdict_last_tag_wins() -> None:
    text = (
        'I must output "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, '
        'and "[[C]]" for a tie.\n\nA misses the edge case; B handles it.\n\nFinal verdict: [[B]]'
    )
    assert parse_verdict(text) == "B"
    assert parse_verdict("At first I leaned [[B]], but on reflection [[A]]") == "A"
    assert parse_verdict("[[A]] ... [[B]] ... [[tie]]") == "tie"


def test_parse_verdict_ignores_non_tags() -> None:
    assert parse_verdict("Assistant A [A] is fine, [[D]] is not an option, verdict [[B]]") == "B"


@pytest.mark.parametrize("text", ["", "Both answers look fine to me.", "[A] [B] [[D]] [[AB]]"])
def test_parse_verdict_without_tag_raises(text: str) -> None:
    with pytest.raises(VerdictParseError) as info:
        parse_verdict(text)
    assert info.value.excerpt == text.strip()
    assert repr(text.strip()) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_error_excerpt_is_short_and_from_the_end() -> None:
    text = "I compared both answers at length. " * 20 + "In the end neither is clearly better."
    with pytest.raises(VerdictParseError) as info:
        parse_verdict(text)
    excerpt = info.value.excerpt
    assert len(excerpt) <= 120
    assert excerpt.endswith("neither is clearly better.")
    assert excerpt in str(info.value) or repr(excerpt) in str(info.value)


def test_parse_error_survives_pickling() -> None:
    # Celery ships task exceptions through the result backend by pickling them.
    with pytest.raises(VerdictParseError) as info:
        parse_verdict("no verdict here")
    clone = pickle.loads(pickle.dumps(info.value))
    assert str(clone) == str(info.value)
    assert clone.excerpt == "no verdict here"


@pytest.mark.parametrize(
    ("forward", "backward", "expected"),
    [
        ("A", "B", "first"),  # both orders prefer answer 1
        ("B", "A", "second"),  # both orders prefer answer 2
        ("A", "A", "tie"),  # always position A: pure position bias
        ("B", "B", "tie"),  # always position B
        ("A", "tie", "tie"),
        ("tie", "B", "tie"),
        ("B", "tie", "tie"),
        ("tie", "A", "tie"),
        ("tie", "tie", "tie"),
    ],
)
def test_combine_orders_all_cases(forward: Verdict, backward: Verdict, expected: Side) -> None:
    assert combine_orders(forward, backward) == expected


def test_combine_orders_rejects_unknown_verdict() -> None:
    with pytest.raises(ValueError):
        combine_orders("C", "A")  # type: ignore[arg-type]


def test_verdict_probs_softmax() -> None:
    probs = verdict_probs({"A": math.log(0.6), "B": math.log(0.3), "Tie": math.log(0.1)})
    assert probs.keys() == {"A", "B", "tie"}
    assert probs["A"] == pytest.approx(0.6)
    assert probs["B"] == pytest.approx(0.3)
    assert probs["tie"] == pytest.approx(0.1)


def test_verdict_probs_normalises_over_present_keys() -> None:
    probs = verdict_probs({"A": -1.0, "B": -1.0})
    assert probs == {"A": pytest.approx(0.5), "B": pytest.approx(0.5)}
    assert "tie" not in probs


def test_verdict_probs_is_numerically_stable() -> None:
    probs = verdict_probs({"A": -1000.0, "B": -1001.0})
    assert probs["A"] == pytest.approx(1 / (1 + math.exp(-1)))
    assert sum(probs.values()) == pytest.approx(1.0)
    assert verdict_probs({"A": 0.0, "B": -math.inf}) == {"A": 1.0, "B": 0.0}


def test_verdict_probs_token_spellings() -> None:
    # Tokenizers give " A" and "A" as separate tokens; both are the same verdict.
    probs = verdict_probs({" A": math.log(0.2), "A": math.log(0.2), "b": math.log(0.4), "The": -0.1})
    assert probs["A"] == pytest.approx(0.5)
    assert probs["B"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "logprobs",
    [
        {},
        {"The": -0.1},
        {"A": -math.inf, "B": -math.inf},
        {"A": math.nan, "B": -1.0},
        {"A": math.inf},
    ],
)
def test_verdict_probs_rejects_unusable_input(logprobs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        verdict_probs(logprobs)


def test_position_biased_judge_is_a_tie() -> None:
    # The judge prefers whatever is shown as A by the same amount in both orders.
    side, margin = combine_order_probs({"A": 0.8, "B": 0.2}, {"A": 0.8, "B": 0.2})
    assert side == "tie"
    assert margin == pytest.approx(0.0)


def test_consistent_judge_picks_the_right_side() -> None:
    # Prefers answer 1 in both orders: A forward, B backward.
    side, margin = combine_order_probs({"A": 0.9, "B": 0.1}, {"A": 0.2, "B": 0.8})
    assert side == "first"
    assert margin == pytest.approx(0.7)
    # Prefers answer 2 in both orders.
    side, margin = combine_order_probs({"A": 0.3, "B": 0.7}, {"A": 0.75, "B": 0.25})
    assert side == "second"
    assert margin == pytest.approx(-0.45)


def test_consistent_preference_survives_a_position_bias() -> None:
    # Answer 1 is better by 0.2 and position A adds 0.3 on top of it, in both orders.
    side, margin = combine_order_probs({"A": 0.75, "B": 0.25}, {"A": 0.55, "B": 0.45})
    assert side == "first"
    assert margin == pytest.approx(0.2)


def test_tie_margin_and_tie_mass() -> None:
    forward: dict[Verdict, float] = {"A": 0.44, "B": 0.40, "tie": 0.16}
    backward: dict[Verdict, float] = {"A": 0.40, "B": 0.44, "tie": 0.16}
    side, margin = combine_order_probs(forward, backward)
    assert side == "tie"
    assert margin == pytest.approx(0.04)
    side, margin = combine_order_probs(forward, backward, tie_margin=0.01)
    assert side == "first"
    assert margin == pytest.approx(0.04)
    even: dict[Verdict, float] = {"A": 0.5, "B": 0.5}
    assert combine_order_probs(even, even, tie_margin=0.0) == ("tie", 0.0)


def test_combine_order_probs_accepts_verdict_probs_output() -> None:
    forward = verdict_probs({"A": -0.1, "B": -2.5, "Tie": -4.0})
    backward = verdict_probs({"A": -2.0, "B": -0.2})
    side, margin = combine_order_probs(forward, backward)
    assert side == "first"
    assert margin > 0.5


def test_combine_order_probs_validates() -> None:
    with pytest.raises(ValueError):
        combine_order_probs({"A": 1.2}, {"A": 0.5})
    with pytest.raises(ValueError):
        combine_order_probs({"A": 0.5}, {"A": 0.5}, tie_margin=-0.1)
