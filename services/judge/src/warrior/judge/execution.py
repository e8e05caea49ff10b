"""A battle's execution: every answer's code against every test, in the executor, then the cross-check.

The judge builds the programs and the executor service runs them (the judge never runs model
code itself unless `WARRIOR_EXECUTOR=local` says this process is the whole arena). The judge
waits for the runs as it waits for model calls: they are one more remote call of the battle.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from warrior.common.campaign_config import UnitTestsConfig
from warrior.common.celery_app import ServiceUnavailable, make_celery
from warrior.common.programs import UnitTest, binding_for, extract_code, load_program, unit_test_program
from warrior.common.runtime import Runtime
from warrior.common.verification import TrustRule, outcome_of, passes, trust_tests
from warrior.executor.runner import Executor, ExecutorTimeout, LocalExecutor, Program, QueueExecutor

STDERR_CHARS = 300


@functools.lru_cache(maxsize=2)
def executor_for(mode: str) -> Executor:
    """The process's executor: the executor service through its queue, or this process's own sandbox."""
    if mode == "local":
        return LocalExecutor()
    # Its own app (not the worker's): it only sends runs and reads their results. A battle waits at most
    # two minutes for them before it is retried in place.
    return QueueExecutor(make_celery("judge-executor-client"), timeout_s=120.0)


def _unit_test(entry: Mapping[str, Any]) -> UnitTest:
    return UnitTest(
        id=str(entry["id"]),
        writer=str(entry["writer"]),
        assertion=str(entry["assertion"]),
        preamble=str(entry.get("preamble", "")),
        calls=tuple(entry.get("calls", ())),
    )


def unit_test_records(tests: Sequence[UnitTest]) -> list[dict[str, Any]]:
    return [
        {
            "id": t.id,
            "writer": t.writer,
            "assertion": t.assertion,
            "preamble": t.preamble,
            "calls": list(t.calls),
            "source": t.source(),
        }
        for t in tests
    ]


def run_answers(
    rt: Runtime,
    answers: Mapping[str, Mapping[str, Any]],
    tests: Sequence[Mapping[str, Any]],
    config: UnitTestsConfig,
) -> dict[str, Any]:
    """Run each answer's code as it loads and against every test; return code, matrix, bindings and runs."""
    units = [_unit_test(t) for t in tests]
    code: dict[str, dict[str, Any]] = {}
    bindings: dict[str, dict[str, dict[str, str]]] = {}
    jobs: list[tuple[str, str | None, str]] = []  # (answer, test id or None for the load run, source)
    for name in sorted(answers):
        extracted = extract_code(str(answers[name]["text"]))
        code[name] = {"reason": extracted.reason, "load": None}
        if extracted.code is None:
            continue
        jobs.append((name, None, load_program(extracted.code)))
        for t in units:
            binding = binding_for(extracted.code, t.calls)
            if binding:
                bindings.setdefault(name, {})[t.id] = binding
            jobs.append((name, t.id, unit_test_program(extracted.code, t, binding)))
    programs = [Program(source=src, timeout_s=config.timeout_s, memory_mb=config.memory_mb) for _, _, src in jobs]
    try:
        results = executor_for(rt.settings.executor).run_many(programs) if programs else []
    except ExecutorTimeout as exc:
        raise ServiceUnavailable(str(exc)) from None  # the battle is retried in place, its calls reused
    matrix: dict[str, dict[str, str]] = {name: {} for name in code}
    runs: list[dict[str, Any]] = []
    for (name, test, _), result in zip(jobs, results, strict=True):
        raw = result.to_dict()
        outcome = outcome_of(raw)
        if test is None:
            code[name]["load"] = outcome
        else:
            matrix[name][test] = outcome
        runs.append(
            {
                "answer": name,
                "test": test or "load",
                "outcome": outcome,
                "status": raw["status"],
                "limit": raw["limit"],
                "seconds": round(float(raw["duration_s"]), 3),
                "stderr": "" if outcome == "passed" else str(raw["stderr"])[-STDERR_CHARS:],
            }
        )
    for name, entry in code.items():
        if entry["load"] is None:  # no code: every test fails for it
            matrix[name] = {t.id: "error" for t in units}
    return {"code": code, "matrix": matrix, "bindings": bindings, "runs": runs}


def execution_record(
    executed: dict[str, Any],
    tests: list[dict[str, Any]],
    writers: dict[str, Any],
    language: str,
    rule: TrustRule = "consensus",
) -> dict[str, Any]:
    """The battle's `execution` entry: tests, who wrote them, the pass matrix and the trust decision
    under `rule` (`battle.tests.trust`)."""
    trust = trust_tests(executed["matrix"], tests, rule)
    return {
        "executable": True,
        "reason": None,
        "language": language,
        "tests": tests,
        "writers": writers,
        **executed,
        "trust": trust,
        "passes": passes(executed["matrix"], trust["trusted"]),
    }


def not_executed(reason: str, language: str) -> dict[str, Any]:
    return {"executable": False, "reason": reason, "language": language}
