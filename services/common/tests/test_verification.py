"""Code and tests out of model text, the cross-check of tests against answers, and execution's verdicts."""

from __future__ import annotations

from warrior.common.programs import (
    DONE_MARKER,
    binding_for,
    called_names,
    extract_code,
    parse_tests,
    unit_test_program,
)
from warrior.common.verification import (
    SHADOW,
    answer_verification,
    crosscheck,
    merge_executions,
    outcome_of,
    pair_verdict,
    row_verification,
    shadow_agreement,
    summarize_stats,
    trust_tests,
)

ANSWER = """Here is a solution:

```python
def add(a, b):
    return a + b

if __name__ == "__main__":
    print(add(input(), 2))
```

Example:
```python
print(add(1, 2))
```
"""


def test_code_comes_from_the_fenced_blocks():
    extracted = extract_code(ANSWER)
    assert extracted.reason == "fenced"
    assert "def add(a, b)" in (extracted.code or "")
    assert "print(add(1, 2))" not in (extracted.code or "")  # example usage is not what is judged


def test_prose_has_no_code_and_broken_code_says_it_does_not_parse():
    assert extract_code("A race condition is when two threads touch shared state.").reason == "no_code"
    broken = extract_code("```python\ndef f(:\n    return 1\n```")
    assert broken.code is None and broken.reason.startswith("syntax_error")


def test_unfenced_definition_counts_as_code():
    assert extract_code("def f(x):\n    return x * 2\n").reason == "whole_text"


def test_tests_are_the_asserts_that_call_the_solution():
    reply = (
        "```python\nimport math\nassert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert True\n"
        "assert 1 + 1 == 2\nassert add(1, 2) == 3\n```\nThese tests check addition."
    )
    tests = parse_tests(reply, "writer")
    assert [t.assertion for t in tests] == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    assert tests[0].preamble == "import math"
    assert tests[0].calls == ("add",)


def test_asserts_survive_prose_that_does_not_parse():
    tests = parse_tests("Sure! Tests:\nassert rev('ab') == 'ba'\nThat's it, these work.", "w")
    assert [t.assertion for t in tests] == ["assert rev('ab') == 'ba'"]


def test_called_names_leave_out_builtins_and_the_preamble():
    assert called_names("assert len(sort_it([3, 1])) == 2") == ("sort_it",)
    assert called_names("assert sqrt(4) == 2", "from math import sqrt") == ()


def test_a_test_binds_to_the_only_function_of_an_answer_named_otherwise():
    assert binding_for("def reverse_text(s):\n    return s[::-1]\n", ("reverse_string",)) == {
        "reverse_string": "reverse_text"
    }
    assert binding_for("def add(a, b):\n    return a + b\n", ("add",)) == {}
    two = "def helper(x):\n    return x\n\ndef count_vowels(s):\n    return 0\n"
    assert binding_for(two, ("count_vowel",)) == {"count_vowel": "count_vowels"}
    assert binding_for(two, ("parse_date",)) == {}


def test_program_runs_the_answer_without_its_main_block_then_the_test():
    (test,) = parse_tests("assert add(1, 2) == 3", "w")
    source = unit_test_program("def add(a, b):\n    return a + b\n", test, {})
    assert source.index("def add") < source.index("assert add(1, 2) == 3") < source.index(DONE_MARKER)
    assert "__name__ = 'warrior_solution'" in source.splitlines()[0]
    compile(source, "program", "exec")


def _result(status: str, stdout: str = "", stderr: str = "") -> dict[str, object]:
    return {"status": status, "stdout": stdout, "stderr": stderr}


def test_outcomes_of_runs():
    assert outcome_of(_result("passed", f"\n{DONE_MARKER}\n")) == "passed"
    assert outcome_of(_result("passed", "left early")) == "error"
    assert outcome_of(_result("failed", stderr="Traceback...\n  File x\nAssertionError")) == "failed"
    assert outcome_of(_result("failed", stderr="Traceback...\nNameError: name 'f' is not defined")) == "error"
    assert outcome_of(_result("timeout")) == "timeout"
    assert outcome_of(_result("blocked")) == "refused"
    assert outcome_of(_result("memory")) == "error"


def test_a_test_nobody_passes_or_that_contradicts_the_consensus_is_not_trusted():
    matrix = {
        "good1": {"t0": "passed", "t1": "passed", "t2": "failed", "t3": "failed"},
        "good2": {"t0": "passed", "t1": "passed", "t2": "failed", "t3": "failed"},
        "bad": {"t0": "failed", "t1": "error", "t2": "passed", "t3": "failed"},
    }
    trust = crosscheck(matrix, ["t0", "t1", "t2", "t3"])
    assert trust["trusted"] == ["t0", "t1"]
    assert trust["untrusted"]["t3"] == "no answer passes it"
    assert trust["untrusted"]["t2"].startswith("contradicts the consensus of good1, good2")
    assert trust["consensus"] == ["good1", "good2"] and not trust["ambiguous"]


def test_tied_consensus_is_ambiguous_and_keeps_every_passable_test():
    matrix = {"x": {"t0": "passed", "t1": "failed"}, "y": {"t0": "failed", "t1": "passed"}}
    trust = crosscheck(matrix, ["t0", "t1"])
    assert trust["ambiguous"] and trust["trusted"] == ["t0", "t1"]


def test_independent_rule_distrusts_a_test_only_its_writers_answer_passes():
    # qwen's test t1 is passed only by qwen's own answer: under `consensus` it is trusted (qwen's group
    # passes the most), under `independent` it is not; t0 (smol's test, passed by qwen) stays.
    matrix = {
        "qwen": {"t0": "passed", "t1": "passed", "t2": "failed"},
        "smol": {"t0": "failed", "t1": "failed", "t2": "passed"},
        "gemma": {"t0": "error", "t1": "error", "t2": "error"},
    }
    tests = [{"id": "t0", "writer": "smol"}, {"id": "t1", "writer": "qwen"}, {"id": "t2", "writer": "smol"}]
    consensus = trust_tests(matrix, tests, "consensus")
    assert consensus["trusted"] == ["t0", "t1"] and consensus["rule"] == "consensus"
    independent = trust_tests(matrix, tests, "independent")
    assert independent["trusted"] == ["t0"] and independent["rule"] == "independent"
    assert independent["untrusted"]["t1"] == "only its writer's answer passes it"
    assert independent["untrusted"]["t2"].startswith("contradicts the consensus")
    # A newcomer whose answer passes t1 makes it independent again, and the merge keeps the rule.
    base = {"executable": True, "tests": tests, "code": {n: {"load": "passed"} for n in matrix},
            "matrix": matrix, "trust": independent}  # fmt: skip
    part = {"code": {"new": {"load": "passed"}}, "matrix": {"new": {"t0": "passed", "t1": "passed", "t2": "failed"}}}
    merged = merge_executions([base, part])
    assert merged is not None and merged["trust"]["rule"] == "independent"
    assert merged["trust"]["trusted"] == ["t0", "t1"]


def _execution(matrix, code, tests=("t0", "t1")):
    trust = crosscheck(matrix, list(tests))
    return {
        "executable": True,
        "tests": [{"id": t, "writer": "w", "source": f"assert f() # {t}"} for t in tests],
        "code": code,
        "matrix": matrix,
        "trust": trust,
    }


def test_execution_decides_a_pair_the_trusted_tests_separate():
    execution = _execution(
        {"a": {"t0": "passed", "t1": "passed"}, "b": {"t0": "failed", "t1": "error"}},
        {"a": {"reason": "fenced", "load": "passed"}, "b": {"reason": "fenced", "load": "passed"}},
    )
    decided = pair_verdict(execution, "a", "b")
    assert decided is not None and decided["winner"] == "a"
    assert "2/2" in decided["reason"]
    assert pair_verdict(execution | {"executable": False}, "a", "b") is None


def test_code_that_crashes_loses_to_code_that_runs_even_without_trusted_tests():
    execution = _execution(
        {"a": {"t0": "error", "t1": "error"}, "b": {"t0": "error", "t1": "error"}},
        {"a": {"reason": "fenced", "load": "passed"}, "b": {"reason": "fenced", "load": "error"}},
    )
    decided = pair_verdict(execution, "a", "b")
    assert decided is not None and decided["winner"] == "a" and "crashes" in decided["reason"]


def test_prose_against_code_is_left_to_the_judges_when_nobody_wrote_tests():
    execution = _execution(
        {"a": {}, "b": {}},
        {"a": {"reason": "fenced", "load": "passed"}, "b": {"reason": "no_code", "load": None}},
        tests=(),
    )
    assert pair_verdict(execution, "a", "b") is None


def test_a_missing_answer_loses_to_code_that_runs_when_the_request_asks_for_code():
    # Tests were written (none trusted): the request asks for a function; prose cannot satisfy it.
    execution = _execution(
        {"a": {"t0": "failed", "t1": "error"}, "b": {"t0": "error", "t1": "error"}},
        {"a": {"reason": "fenced", "load": "passed"}, "b": {"reason": "no_code", "load": None}},
    )
    assert execution["trust"]["trusted"] == []
    decided = pair_verdict(execution, "a", "b")
    assert decided is not None and decided["winner"] == "a" and "missing" in decided["reason"]


def test_equal_pass_counts_are_left_to_the_judges():
    execution = _execution(
        {"a": {"t0": "passed", "t1": "failed"}, "b": {"t0": "passed", "t1": "failed"}},
        {"a": {"reason": "fenced", "load": "passed"}, "b": {"reason": "fenced", "load": "passed"}},
    )
    assert pair_verdict(execution, "a", "b") is None


def test_row_verification_says_what_the_winner_passed():
    execution = _execution(
        {"a": {"t0": "passed", "t1": "passed"}, "b": {"t0": "passed", "t1": "failed"}},
        {"a": {"reason": "fenced", "load": "passed"}, "b": {"reason": "fenced", "load": "passed"}},
    )
    votes = [{"source": "execution", "votes": 1}, {"source": "llm", "votes": 1}]
    assert row_verification(execution, "a", votes)["status"] == "verified"
    partial = row_verification(execution, "b", votes)
    assert partial["status"] == "partial" and partial["winner_passed"] == 1
    assert partial["vote_sources"] == {"execution": 1, "llm": 1}
    nothing = _execution(
        {"a": {"t0": "failed", "t1": "failed"}, "b": {"t0": "error", "t1": "failed"}},
        {"a": {"reason": "fenced", "load": "passed"}, "b": {"reason": "fenced", "load": "passed"}},
    )
    assert row_verification(nothing, "a", [])["status"] == "unverified"
    prose = row_verification({"executable": False, "reason": "a explanation request is answered in prose"}, "a", [])
    assert prose["status"] == "not_executed" and "prose" in prose["reason"]


def test_a_newcomer_changes_the_trust_of_the_merged_execution():
    base = _execution(
        {"a": {"t0": "passed", "t1": "failed"}, "b": {"t0": "failed", "t1": "passed"}},
        {"a": {"reason": "fenced", "load": "passed"}, "b": {"reason": "fenced", "load": "passed"}},
    )
    assert base["trust"]["ambiguous"]
    part = {"code": {"c": {"reason": "fenced", "load": "passed"}}, "matrix": {"c": {"t0": "passed", "t1": "failed"}}}
    merged = merge_executions([base, part])
    assert merged is not None
    assert merged["trust"]["consensus"] == ["a", "c"] and merged["trust"]["trusted"] == ["t0"]
    assert merged["passes"] == {"a": 1, "b": 0, "c": 1}


def test_campaign_figures_add_up_over_battles():
    stats = [
        {
            "execution": {
                "executable": True,
                "answers_run": 2,
                "tests": 3,
                "trusted": 2,
                "untrusted": 1,
                "outcomes": {"passed": 3, "failed": 3},
                "passed": {"a": [2, 2], "b": [1, 2]},
                "votes": {"execution": 1},
            }
        },
        {"execution": {"executable": False, "votes": {"llm": 2}}},
    ]
    total = summarize_stats(stats)
    assert total["battles_executed"] == 1 and total["battles_llm_only"] == 1
    assert total["pass_rate"]["a"]["rate"] == 1.0 and total["pass_rate"]["b"]["rate"] == 0.5
    assert total["votes_by_source"] == {"execution": 1, "llm": 2}


def test_example_usage_is_left_out_of_the_code_that_runs():
    answer = (
        "```python\nimport re\nLIMIT = 10\n\n@staticmethod\ndef helper(x):\n    return x\n\n"
        "def sum_keys(d):\n    return sum(d.keys())\n\nresult = sum_keys({'a': 1})\nprint(result)\n"
        "name = input('name? ')\nfor i in range(3):\n    print(i)\n```"
    )
    code = extract_code(answer).code or ""
    assert "def sum_keys" in code and "import re" in code and "LIMIT = 10" in code and "@staticmethod" in code
    assert "print(result)" not in code and "input(" not in code and "result = sum_keys" not in code
    assert "for i in range(3)" not in code
    script = "```python\nx = int('3')\nprint(x * 2)\n```"
    assert extract_code(script).code == "x = int('3')\nprint(x * 2)\n"


def test_a_reply_cut_off_in_its_last_assert_keeps_the_whole_ones():
    reply = (
        "```python\nimport math\nassert area(1) == math.pi\nassert area(0) == 0\nassert area(2) == round(4 * math.pi"
    )
    assert [t.assertion for t in parse_tests(reply, "w")] == ["assert area(1) == math.pi", "assert area(0) == 0"]


def test_answer_verification_counts_each_experts_answers_that_pass_every_trusted_test():
    def candidate(matrix, trusted, executable=True):
        execution = {"executable": executable, "matrix": matrix, "trust": {"trusted": trusted}}
        return {"answers": {name: {} for name in matrix}, "execution": execution}

    stats = answer_verification(
        [
            candidate({"a": {"t1": "passed", "t2": "passed"}, "b": {"t1": "passed", "t2": "failed"}}, ["t1", "t2"]),
            candidate({"a": {"t1": "failed"}, "b": {"t1": "passed"}}, ["t1"]),
            candidate({"a": {"t1": "passed"}, "b": {"t1": "passed"}}, []),  # no trusted test: not tested
            candidate({"a": {}, "b": {}}, ["t1"], executable=False),  # judged by LLMs alone
        ]
    )
    assert stats["requests"] == 4 and stats["with_trusted_tests"] == 2
    assert stats["experts"]["a"] == {"answers": 4, "tested": 2, "verified": 1, "verified_rate": 0.5}
    assert stats["experts"]["b"] == {"answers": 4, "tested": 2, "verified": 1, "verified_rate": 0.5}
    assert answer_verification([])["experts"] == {}


def test_shadow_agreement_says_how_often_each_judge_matched_execution_on_decided_pairs():
    def battle(*judgments):
        return {"judgments": list(judgments)}

    executed = {"a": "x", "b": "y", "judge": "execution", "source": "execution", "winner": "x", "votes": 2}
    shadow = {"a": "x", "b": "y", "source": SHADOW, "votes": 0}
    stats = shadow_agreement(
        [
            battle(executed, shadow | {"judge": "j1", "winner": "x"}, shadow | {"judge": "j2", "winner": "y"}),
            battle(executed, shadow | {"judge": "j1", "winner": None}),
            # An ordinary LLM vote on a pair the tests did not decide is not a shadow verdict.
            battle({"a": "x", "b": "y", "judge": "j1", "source": "llm", "winner": "y", "votes": 1}),
        ]
    )
    assert stats == {
        "j1": {"decided": 2, "agreed": 1, "tie": 1, "agreement": 0.5},
        "j2": {"decided": 1, "agreed": 0, "tie": 0, "agreement": 0.0},
    }
