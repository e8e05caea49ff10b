"""A battle's execution in the real sandbox: answers against the experts' tests, trust, and the verdicts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from warrior.common.campaign_config import BattleConfig, UnitTestsConfig
from warrior.common.verification import pair_verdict, row_verification
from warrior.judge.execution import execution_record, run_answers, unit_test_records
from warrior.judge.testgen import collect_tests, executable_reason

RT: Any = SimpleNamespace(settings=SimpleNamespace(executor="local"))

CORRECT = "Here you go:\n```python\ndef is_palindrome(s):\n    s = s.lower()\n    return s == s[::-1]\n```\n"
# Named differently, and wrong on mixed case: fails the case-insensitive test.
WRONG = "```python\ndef palindrome(text):\n    return text == text[::-1]\n```"
CRASHES = "```python\nimport nosuchmodule_xyz\n\ndef is_palindrome(s):\n    return True\n```"
PROSE = "A palindrome reads the same forwards and backwards."
LOOPS = "```python\ndef is_palindrome(s):\n    while True:\n        pass\n```"

GOOD_TESTS = (
    "```python\nassert is_palindrome('Racecar') == True\nassert is_palindrome('abc') == False\n"
    "assert is_palindrome('') == True\n```"
)
# A writer whose tests contradict every sensible answer (and one no answer can pass).
BAD_TESTS = "```python\nassert is_palindrome('abc') == True\nassert is_palindrome('x') == 'yes'\n```"


def _battle(answers: dict[str, str]) -> dict[str, Any]:
    config = UnitTestsConfig(timeout_s=2.0)
    tests, writers = collect_tests({"writer-a": GOOD_TESTS, "writer-b": BAD_TESTS}, config.per_writer)
    records = unit_test_records(tests)
    ran = run_answers(RT, {name: {"text": text} for name, text in answers.items()}, records, config)
    return execution_record(ran, records, writers, "Python")


def test_the_working_answer_wins_by_execution_and_bad_tests_are_not_trusted() -> None:
    execution = _battle({"good": CORRECT, "wrong": WRONG, "crash": CRASHES, "prose": PROSE})
    assert execution["code"]["good"]["load"] == "passed"
    assert execution["code"]["crash"]["load"] == "error"
    assert execution["code"]["prose"] == {"reason": "no_code", "load": None}
    # The misnamed answer is bound to the tests' name and really runs (it passes the lower-case tests).
    assert execution["bindings"]["wrong"]["t0"] == {"is_palindrome": "palindrome"}
    assert execution["matrix"]["wrong"]["t1"] == "passed"
    assert execution["matrix"]["wrong"]["t0"] == "failed"
    trust = execution["trust"]
    assert trust["consensus"] == ["good"]
    by_writer = {t["id"]: t["writer"] for t in execution["tests"]}
    assert {by_writer[t] for t in trust["trusted"]} == {"writer-a"}
    assert all(by_writer[t] == "writer-b" for t in trust["untrusted"])
    assert execution["passes"]["good"] == 3
    for other in ("wrong", "crash", "prose"):
        decided = pair_verdict(execution, "good", other)
        assert decided is not None and decided["winner"] == "good", other
    assert row_verification(execution, "good", [])["status"] == "verified"
    assert row_verification(execution, "wrong", [])["status"] == "partial"


def test_a_run_that_never_ends_is_a_timeout_not_a_hang() -> None:
    execution = _battle({"good": CORRECT, "loops": LOOPS})
    assert execution["matrix"]["loops"]["t0"] == "timeout"
    decided = pair_verdict(execution, "good", "loops")
    assert decided is not None and decided["winner"] == "good"


def test_requests_that_are_not_run_say_why() -> None:
    tests = UnitTestsConfig()
    assert executable_reason("execution-first", tests, "Python", "generation") is None
    assert executable_reason("llm-only", tests, "Python", "generation") == "battle.verdict is llm-only"
    assert executable_reason("execution-first", tests, "Rust", "generation") == "no runner for Rust"
    assert "prose" in (executable_reason("execution-first", tests, "Python", "explanation") or "")
    assert BattleConfig().verdict == "execution-first"


def _ctx(verdict: str) -> Any:
    return SimpleNamespace(config=BattleConfig(verdict=verdict), iid="i", state=None)  # type: ignore[arg-type]


def test_execution_only_makes_every_pair_it_cannot_separate_a_tie_and_asks_no_judge() -> None:
    from warrior.judge.battle import _judge_all, schedule

    execution = _battle({"good": CORRECT, "wrong": WRONG, "same": CORRECT.replace("Here you go:", "")})
    answers = {name: {"text": ""} for name in ("good", "wrong", "same")}
    plan = schedule(sorted(answers), ["good", "wrong", "same", "judge-x"])
    judgments, pairs = _judge_all(_ctx("execution-only"), plan, answers, execution)
    by_pair = {(p["a"], p["b"]): p for p in pairs}
    assert all(j["source"] == "execution" for j in judgments)
    # good vs same: both pass every trusted test, a tie weighing as much as the two judges it replaced.
    assert by_pair[("good", "same")]["ties"] == 2 and by_pair[("good", "same")]["votes_a"] == 0
    assert by_pair[("good", "wrong")]["votes_a"] == 2 and by_pair[("good", "wrong")]["source"] == "execution"


def test_shadow_judging_asks_the_judges_about_decided_pairs_without_counting_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from warrior.common.verification import SHADOW
    from warrior.judge import battle

    asked: list[tuple[str, str, str]] = []

    def judge_pair(ctx: Any, judge: str, a: str, b: str, answers: Any) -> dict[str, Any]:
        asked.append((judge, a, b))  # the judge prefers whichever answer comes second
        return {"a": a, "b": b, "judge": judge, "winner": b, "forward": {"verdict": "B"}, "backward": {"verdict": "A"}}

    monkeypatch.setattr(battle, "judge_pair", judge_pair)
    execution = _battle({"good": CORRECT, "wrong": WRONG, "same": CORRECT.replace("Here you go:", "")})
    answers = {name: {"text": ""} for name in ("good", "wrong", "same")}
    plan = battle.schedule(sorted(answers), ["good", "wrong", "same", "judge-x"])
    ctx = SimpleNamespace(config=BattleConfig(shadow_judging=True), iid="i", state=None)
    judgments, pairs = battle._judge_all(ctx, plan, answers, execution)  # type: ignore[arg-type]
    by_pair = {(p["a"], p["b"]): p for p in pairs}
    decided = [p for p in pairs if p["source"] == "execution"]
    assert decided, "execution separates the working answers from the wrong one"
    for pair in decided:  # every judge of a decided pair was asked, and its verdict kept without a vote
        shadows = [j for j in judgments if j["source"] == SHADOW and (j["a"], j["b"]) == (pair["a"], pair["b"])]
        assert sorted(j["judge"] for j in shadows) == sorted(pair["judges_planned"])
        assert all(j["votes"] == 0 for j in shadows)
        assert pair["judges"] == ["execution"]  # the vote counts are execution's alone
        assert pair["votes_a"] + pair["votes_b"] == len(pair["judges_planned"]) and pair["ties"] == 0
    # The pair the tests cannot separate is judged as usual, with votes.
    assert by_pair[("good", "same")]["source"] == "llm" and by_pair[("good", "same")]["votes_b"] == 2
    assert len(asked) == 2 * len(plan)
    # Without shadow judging the decided pairs cost no judge call.
    asked.clear()
    ctx = SimpleNamespace(config=BattleConfig(), iid="i", state=None)
    judgments, _ = battle._judge_all(ctx, plan, answers, execution)  # type: ignore[arg-type]
    assert not any(j["source"] == SHADOW for j in judgments) and len(asked) == 2
