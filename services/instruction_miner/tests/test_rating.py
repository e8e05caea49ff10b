"""Ratings of instructions: parsed from `[[n]]`, or the expected value of the rating log-probabilities."""

from __future__ import annotations

import math

import pytest

from warrior.instruction_miner.rating import RATING_CANDIDATES, RatingParseError, expected_rating, parse_rating


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ("Clear and specific. Rating: [[7]]", 7),
        ("Rating: [[ 10 ]]", 10),
        ("It is vague. [[3/10]]", 3),
        ("first [[2]] then on reflection [[8]]", 8),
    ],
)
def test_ratings_are_read_from_the_last_tag(reply: str, rating: int) -> None:
    assert parse_rating(reply) == rating


@pytest.mark.parametrize("reply", ["Rating: 7", "[[0]]", "[[11]]", "[[seven]]", ""])
def test_replies_without_a_valid_rating_are_refused_with_an_excerpt(reply: str) -> None:
    with pytest.raises(RatingParseError, match="no \\[\\[n\\]\\] rating"):
        parse_rating(reply)


def test_expected_rating_weighs_every_rating_by_its_probability() -> None:
    certain_eight = {c: (0.0 if c == "8]]" else -math.inf) for c in RATING_CANDIDATES}
    assert expected_rating(certain_eight) == 8.0
    uniform = dict.fromkeys(RATING_CANDIDATES, -2.0)
    assert expected_rating(uniform) == pytest.approx(5.5)
    split = {c: -math.inf for c in RATING_CANDIDATES} | {"2]]": math.log(0.5), "9]]": math.log(0.5)}
    assert expected_rating(split) == pytest.approx(5.5)


def test_expected_rating_needs_a_finite_probability() -> None:
    with pytest.raises(RatingParseError):
        expected_rating(dict.fromkeys(RATING_CANDIDATES, -math.inf))
