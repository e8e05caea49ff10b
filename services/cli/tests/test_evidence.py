"""The flywheel's paired evidence: difference, bootstrap interval over problems, gained and lost."""

from __future__ import annotations

import pytest

from warrior.cli.evidence import paired_difference


def test_a_clear_gain_has_an_interval_above_zero_and_names_what_changed() -> None:
    base = {f"p{i}": i < 20 for i in range(100)}
    trained = {f"p{i}": i < 45 or i == 99 for i in range(100)}
    trained["p0"] = False
    out = paired_difference(base, trained, rounds=2000)
    assert out["base_pass_at_1"] == 0.2 and out["trained_pass_at_1"] == 0.45
    assert out["difference"] == 0.25
    low, high = out["interval_95"]
    assert 0 < low < 0.25 < high
    assert out["above_zero"] is True
    assert out["lost"] == ["p0"] and "p99" in out["gained"] and len(out["gained"]) == 26


def test_no_change_straddles_zero() -> None:
    base = {f"p{i}": i % 2 == 0 for i in range(60)}
    trained = {f"p{i}": (i % 2 == 0) != (i % 10 == 0) or i % 10 == 1 for i in range(60)}
    out = paired_difference(base, trained, rounds=2000)
    low, high = out["interval_95"]
    assert low < 0 < high and out["above_zero"] is False


def test_the_two_must_be_scored_on_the_same_problems() -> None:
    with pytest.raises(ValueError, match="different problems"):
        paired_difference({"a": True}, {"b": True})
