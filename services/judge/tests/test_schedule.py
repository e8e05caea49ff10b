"""Every pair of competitors is judged by every live expert not in the pair."""

from __future__ import annotations

from warrior.judge.battle import schedule
from warrior.judge.prompts import VERDICT_PREFIX, judge_messages


def test_three_experts_each_pair_has_the_third_as_judge() -> None:
    plan = schedule(["qwen", "smol", "gemma"], ["qwen", "smol", "gemma"])
    assert plan == [("gemma", "qwen", ["smol"]), ("gemma", "smol", ["qwen"]), ("qwen", "smol", ["gemma"])]


def test_judges_may_include_live_experts_that_did_not_answer() -> None:
    plan = schedule(["a", "b"], ["a", "b", "c", "d"])
    assert plan == [("a", "b", ["c", "d"])]


def test_two_experts_have_no_uninvolved_judge() -> None:
    assert schedule(["a", "b"], ["a", "b"]) == [("a", "b", [])]


def test_judge_prompt_shows_both_answers_and_asks_for_the_verdict_format() -> None:
    messages = judge_messages("Reverse a list?", "use reversed()", "use slicing")
    system, user = messages[0]["content"], messages[1]["content"]
    assert "[[A]]" in system and "[[B]]" in system and "[[Tie]]" in system
    assert user.index("use reversed()") < user.index("use slicing")
    assert VERDICT_PREFIX.endswith("[[")
