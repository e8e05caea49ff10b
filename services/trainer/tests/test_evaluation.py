"""pass@1 through the sandbox: reference solutions score 1.0, wrong or hostile answers score 0, the
programs run through the executor given (the executor service for the trainer's Celery task), and the
bookkeeping (prompts, code extraction, generation failures, storage) does what a user expects.

Known-bad reference: MBPP task 341 ("convert the given set into ordered tuples"), whose canonical
solution is `tuple(s)` and relies on a set's iteration order; for {12, 13, 14, 15, 16} CPython
iterates 16 first, so the reference fails its own test. It is the only one of the 500 test-split
references that fails (all 500 were run through the harness); `test_the_known_bad_mbpp_reference_fails`
pins it down instead of hiding it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from warrior.common.benchmarks import Problem
from warrior.common.store import LocalStore
from warrior.executor import sandbox
from warrior.executor.runner import ExecutorTimeout, LocalExecutor, Program, QueueExecutor
from warrior.executor.sandbox import SandboxResult
from warrior.trainer.evaluation import (
    EvalResultExists,
    evaluate,
    expert_generator,
    extract_code,
    load_problems,
    program,
    prompt_messages,
    store_result,
)

MBPP_KNOWN_BAD = {"341"}


@pytest.fixture(scope="module")
def humaneval_problems(tmp_path_factory: pytest.TempPathFactory) -> list[Problem]:
    return load_problems("humaneval", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def mbpp_problems(tmp_path_factory: pytest.TempPathFactory) -> list[Problem]:
    return load_problems("mbpp", cache_dir=tmp_path_factory.mktemp("cache"))


def _canonical(problem: Problem) -> str:
    return problem.canonical_solution


def test_load_problems(humaneval_problems: list[Problem], mbpp_problems: list[Problem], tmp_path: Path) -> None:
    assert len(humaneval_problems) == 164
    assert [p.task_id for p in mbpp_problems] == [str(i) for i in range(11, 511)]
    assert [p.task_id for p in load_problems("mbpp", 3, cache_dir=tmp_path)] == ["11", "12", "13"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_problems("apps", cache_dir=tmp_path)  # type: ignore[arg-type]


def test_humaneval_reference_solutions_score_one(humaneval_problems: list[Problem]) -> None:
    seen: list[tuple[int, int]] = []
    result = evaluate(
        humaneval_problems, _canonical, workers=2, progress=lambda done, total: seen.append((done, total))
    )
    failures = [(o.task_id, o.status, o.limit, o.detail) for o in result.outcomes if not o.passed]
    assert failures == []
    assert (result.pass_at_1, result.passed, result.total) == (1.0, 164, 164)
    assert [o.task_id for o in result.outcomes] == [p.task_id for p in humaneval_problems]
    assert seen == [(i, 164) for i in range(1, 165)]


def test_mbpp_reference_solutions_score_one(mbpp_problems: list[Problem]) -> None:
    sample = mbpp_problems[:40]
    assert not MBPP_KNOWN_BAD & {p.task_id for p in sample}
    result = evaluate(sample, _canonical, workers=2)
    failures = [(o.task_id, o.status, o.limit, o.detail) for o in result.outcomes if not o.passed]
    assert failures == []
    assert (result.pass_at_1, result.passed, result.total) == (1.0, 40, 40)


def test_the_known_bad_mbpp_reference_fails(mbpp_problems: list[Problem]) -> None:
    bad = [p for p in mbpp_problems if p.task_id in MBPP_KNOWN_BAD]
    result = evaluate(bad, _canonical)
    assert [(o.task_id, o.status) for o in result.outcomes] == [("341", "failed")]
    assert "AssertionError" in result.outcomes[0].detail


def test_wrong_answers_score_zero(humaneval_problems: list[Problem], mbpp_problems: list[Problem]) -> None:
    problems = humaneval_problems[:6] + mbpp_problems[:6]

    def wrong(problem: Problem) -> str:
        if problem.benchmark == "humaneval":
            return "    return None\n"
        name = problem.tests.split("assert ", 1)[1].split("(", 1)[0].strip()
        return f"def {name}(*args):\n    return None\n"

    result = evaluate(problems, wrong)
    assert (result.pass_at_1, result.passed, result.total) == (0.0, 0, 12)
    assert {o.status for o in result.outcomes} == {"failed"}


def test_a_reply_in_a_markdown_block_is_extracted(
    humaneval_problems: list[Problem], mbpp_problems: list[Problem]
) -> None:
    he, mb = humaneval_problems[2], mbpp_problems[0]

    def chatty(problem: Problem) -> str:
        if problem.benchmark == "humaneval":
            code = problem.prompt + problem.canonical_solution
            return f"Here is a solution.\n\n```python\n{code}```\n\nIt works because of ```magic```."
        return (
            "First a shell aside:\n```bash\nrm -rf /\n```\n"
            f"And the function:\n```Python\n{problem.canonical_solution}\n```\nDone."
        )

    result = evaluate([he, mb], chatty)
    assert [o.passed for o in result.outcomes] == [True, True], result.outcomes
    assert result.outcomes[0].completion.startswith("Here is a solution.")


def test_extract_code_cases(humaneval_problems: list[Problem], mbpp_problems: list[Problem]) -> None:
    he = humaneval_problems[0]  # has_close_elements(numbers: List[float], ...), with `from typing import List`
    mb = mbpp_problems[0]
    body = he.canonical_solution
    # A completion of the prompt (no fence, no def) is appended to the prompt.
    assert extract_code(he, body) == he.prompt + body
    # A whole function keeps its own text and is given the prompt's imports it may rely on.
    function = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n" + body
    assert extract_code(he, f"```python\n{function}```") == "from typing import List\n\n" + function
    # The python block wins over an earlier block of another language; a cut-off block still counts.
    assert extract_code(mb, "```text\nnope\n```\n```py\nx = 1\n```") == "x = 1\n"
    assert extract_code(mb, "```\ny = 2\n```") == "y = 2\n"
    assert extract_code(mb, "Sure:\n```python\ndef f():\n    return 1") == "def f():\n    return 1"
    assert extract_code(mb, "def f():\n    return 1") == "def f():\n    return 1"
    # The program appends the tests (and the check call for HumanEval).
    assert program(he, "X").startswith("X\n") and program(he, "X").rstrip().endswith("check(has_close_elements)")
    assert program(mb, "X").rstrip().endswith(mb.tests.rstrip())


def test_prompt_messages(humaneval_problems: list[Problem], mbpp_problems: list[Problem]) -> None:
    he, mb = humaneval_problems[0], mbpp_problems[0]
    [message] = prompt_messages(he)
    assert message["role"] == "user"
    assert f"```python\n{he.prompt.rstrip()}\n```" in message["content"]
    [message] = prompt_messages(mb)
    assert mb.prompt in message["content"]
    assert 'assert remove_Occ("hello","l") == "heo"' in message["content"]
    assert 'remove_Occ("abcda","a")' not in message["content"]  # only the first test is shown
    assert "```python" in message["content"]


def test_a_failing_generate_is_recorded_and_the_rest_goes_on(humaneval_problems: list[Problem]) -> None:
    problems = humaneval_problems[:4]

    def flaky(problem: Problem) -> str:
        if problem.task_id == "HumanEval/1":
            raise ConnectionError("expert went away")
        return problem.canonical_solution

    result = evaluate(problems, flaky)
    by_id = {o.task_id: o for o in result.outcomes}
    assert by_id["HumanEval/1"].status == "generation_error"
    assert not by_id["HumanEval/1"].passed
    assert "ConnectionError: expert went away" in by_id["HumanEval/1"].detail
    assert (result.passed, result.total, result.pass_at_1) == (3, 4, 0.75)


def test_an_answer_that_exits_before_the_tests_does_not_pass(humaneval_problems: list[Problem]) -> None:
    problem = humaneval_problems[0]
    for escape in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"):

        def reply(problem: Problem, code: str = escape) -> str:
            return f"```python\n{code}```"

        [outcome] = evaluate([problem], reply).outcomes
        assert (outcome.passed, outcome.status, outcome.limit) == (False, "failed", "early_exit")


def test_hostile_answers_are_contained_and_scored_as_failures(
    mbpp_problems: list[Problem], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-eval-9d2b")
    target = tmp_path / "pwned.txt"
    hostile = {
        "11": "while True:\n    pass",
        "12": "import os\nwhile True:\n    os.fork()",
        "13": "x = bytearray(8 * 1024 ** 3)",
        "14": f"open({str(target)!r}, 'w').write('x')",
        "15": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "16": "import os\nprint(os.environ)\nraise SystemExit(1)",
    }
    problems = [p for p in mbpp_problems if p.task_id in hostile]
    result = evaluate(problems, lambda p: f"```python\n{hostile[p.task_id]}\n```", timeout_s=1.0, memory_mb=256)
    outcomes = {o.task_id: (o.status, o.limit) for o in result.outcomes}
    # A busy loop meets the wall clock and the CPU limit (both 1 s) together: either may stop it.
    assert outcomes.pop("11") in {("timeout", "wall_time 1s"), ("timeout", "cpu_time")}
    assert outcomes == {
        "12": ("blocked", "no_subprocess"),
        "13": ("memory", "memory 256MB"),
        "14": ("blocked", "write_outside_dir"),
        "15": ("blocked", "no_signals"),
        "16": ("failed", None),
    }
    assert result.pass_at_1 == 0.0
    assert not target.exists()
    assert all("fake-secret-eval-9d2b" not in o.detail for o in result.outcomes)


class _FakeGeneration:
    def __init__(self, text: str) -> None:
        self.text = text

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 1}


class _FakeClient:
    """Stands in for ExpertClient: records each call and answers with the reference solution."""

    def __init__(self, problems: list[Problem]) -> None:
        self.calls: list[tuple[str, list[dict[str, str]], dict[str, Any]]] = []
        self._answers = {prompt_messages(p)[0]["content"]: p.canonical_solution for p in problems}
        self._lock = threading.Lock()

    def chat(self, expert: str, messages: Any, sampling: dict[str, Any]) -> _FakeGeneration:
        with self._lock:
            self.calls.append((expert, list(messages), dict(sampling)))
        return _FakeGeneration(f"```python\n{self._answers[messages[0]['content']]}\n```")


def test_expert_generator_asks_greedily(humaneval_problems: list[Problem]) -> None:
    problems = humaneval_problems[:3]
    client = _FakeClient(problems)
    result = evaluate(problems, expert_generator(client, "coder-a", max_tokens=256))
    assert result.pass_at_1 == 1.0
    assert len(client.calls) == 3
    for expert, messages, sampling in client.calls:
        assert expert == "coder-a"
        assert messages[0]["role"] == "user"
        assert sampling["temperature"] == 0.0 and sampling["max_tokens"] == 256
        assert sampling["seed"] == client.calls[0][2]["seed"]


def test_store_result_writes_once(humaneval_problems: list[Problem], tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    problems = humaneval_problems[:2]
    result = evaluate(problems, lambda p: p.canonical_solution if p.task_id == "HumanEval/0" else "    return 0\n")
    key = store_result(store, result, model="org/coder-7b", revision="r1", benchmark="humaneval")
    assert key == "evals/org--coder-7b/r1/humaneval.json"
    stored = store.get_json(key)
    assert (stored["model"], stored["revision"], stored["benchmark"]) == ("org/coder-7b", "r1", "humaneval")
    assert (stored["pass_at_1"], stored["passed"], stored["total"]) == (0.5, 1, 2)
    assert [(o["task_id"], o["passed"], o["status"]) for o in stored["outcomes"]] == [
        ("HumanEval/0", True, "passed"),
        ("HumanEval/1", False, "failed"),
    ]
    with pytest.raises(EvalResultExists):
        store_result(
            store, dataclasses.replace(result, passed=2), model="org/coder-7b", revision="r1", benchmark="humaneval"
        )
    assert store.get_json(key)["passed"] == 1


class _RecordingExecutor:
    """Runs programs through a LocalExecutor and keeps every batch it was given, with its results."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[Program], list[SandboxResult]]] = []
        self._local = LocalExecutor(workers=2)

    def run_many(self, programs: Sequence[Program]) -> list[SandboxResult]:
        results = self._local.run_many(programs)
        self.batches.append((list(programs), results))
        return results


def test_sandbox_results_reach_the_outcome(mbpp_problems: list[Problem]) -> None:
    # The outcome carries what the sandbox saw, so a failure can be read without rerunning it.
    executor = _RecordingExecutor()
    [outcome] = evaluate(
        mbpp_problems[:1], lambda p: "def remove_Occ(s, ch):\n    return s\n", executor=executor, timeout_s=3.0
    ).outcomes
    [(programs, results)] = executor.batches
    assert programs[0].timeout_s == 3.0 and programs[0].memory_mb == 512
    assert programs[0].source.startswith("def remove_Occ(s, ch):")
    assert results[0].status == "failed" and "AssertionError" in results[0].stderr
    assert outcome.status == "failed" and "AssertionError" in outcome.detail
    assert outcome.detail == results[0].stderr[-len(outcome.detail) :]


def test_answers_run_in_batches_through_the_executor_given(humaneval_problems: list[Problem]) -> None:
    executor = _RecordingExecutor()
    problems = humaneval_problems[:12]
    seen: list[int] = []
    result = evaluate(problems, _canonical, workers=3, executor=executor, progress=lambda done, _: seen.append(done))
    assert (result.passed, result.total) == (12, 12)
    assert [o.task_id for o in result.outcomes] == [p.task_id for p in problems]
    assert sorted(len(programs) for programs, _ in executor.batches)[-1] > 1  # answers that were ready ran together
    assert sum(len(programs) for programs, _ in executor.batches) == 12
    assert seen == list(range(1, 13))


def test_an_executor_that_fails_fails_the_evaluation(humaneval_problems: list[Problem]) -> None:
    """No result is made (and none stored) when the programs could not run: an outage is not a score."""

    class Unreachable:
        def run_many(self, programs: Sequence[Program]) -> list[SandboxResult]:
            raise ExecutorTimeout("no results from the executor service")

    with pytest.raises(ExecutorTimeout):
        evaluate(humaneval_problems[:3], _canonical, executor=Unreachable())


def test_the_programs_run_in_the_executor_service(
    humaneval_problems: list[Problem], executor_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a program ran in the evaluating process")

    monkeypatch.setattr(sandbox, "run", refuse)
    problems = humaneval_problems[:5]
    answers = {p.task_id: _canonical(p) for p in problems} | {"HumanEval/3": "    return None\n"}
    result = evaluate(problems, lambda p: answers[p.task_id], executor=QueueExecutor(executor_worker.app, chunk=2))
    assert [(o.task_id, o.passed) for o in result.outcomes] == [
        (p.task_id, p.task_id != "HumanEval/3") for p in problems
    ]
    assert result.outcomes[3].status == "failed" and "AssertionError" in result.outcomes[3].detail


def test_the_trainers_evaluate_task_sends_the_programs_to_the_executor_service(
    warrior_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import warrior.common.model_info
    import warrior.trainer.evaluation
    from warrior.trainer import worker

    calls: list[dict[str, Any]] = []

    def evaluate_expert(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"key": "evals/x.json", "pass_at_1": 1.0, "passed": 1, "total": 1, "reused": False}

    monkeypatch.setattr(warrior.trainer.evaluation, "evaluate_expert", evaluate_expert)
    model = type("Model", (), {"revision": "r1"})
    monkeypatch.setattr(warrior.common.model_info, "expert_model", lambda client, expert: model)
    summary = worker.evaluate.apply(args=["coder", "humaneval"], kwargs={"limit": 1}).get()
    assert summary["pass_at_1"] == 1.0
    [kwargs] = calls
    assert isinstance(kwargs["executor"], QueueExecutor) and kwargs["executor"].app is worker.app
