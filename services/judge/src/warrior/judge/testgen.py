"""Unit tests for a request, written by the experts before they see any answer (CodeT's setting).

Each live expert is asked once, greedily, for assert statements a correct solution must pass;
their usable asserts (see `warrior.common.programs.parse_tests`) become the request's tests, each
named by its writer. Which of them are trusted is decided later, against the answers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from warrior.common.campaign_config import UnitTestsConfig
from warrior.common.programs import UnitTest, parse_tests

TESTS_SYSTEM = "You write unit tests for programming tasks. You reply with one Python code block and nothing else."

# Languages whose answers the executor can run; a request in any other is judged by LLMs alone.
RUNNERS = {"python": "python", "python3": "python", "py": "python"}
# Requests of these categories are answered in prose, not code: LLM judges decide them.
NON_CODE_CATEGORIES = frozenset({"explanation"})


def tests_messages(instruction: str, count: int) -> list[dict[str, str]]:
    user = (
        "Write unit tests for a correct solution to the request below.\n\n"
        f"- Python `assert` statements only, {max(3, count - 2)} to {count} of them, in one ```python code block.\n"
        "- Each assert calls the function the solution must define with concrete inputs and checks the exact "
        "expected result.\n"
        "- Use the function name the request gives; if it gives none, choose a short snake_case name that says "
        "what the function does.\n"
        "- Add the imports the asserts need. No explanations.\n\n"
        f"Request:\n{instruction}"
    )
    return [{"role": "system", "content": TESTS_SYSTEM}, {"role": "user", "content": user}]


def runner_for(language: str) -> str | None:
    return RUNNERS.get(language.strip().lower())


def executable_reason(verdict: str, config: UnitTestsConfig, language: str, category: str | None) -> str | None:
    """Why a request will be judged without running anything, or None when its answers will be run."""
    if verdict == "llm-only":
        return "battle.verdict is llm-only"
    if not config.enabled:
        return "battle.tests.enabled is false"
    if runner_for(language) is None:
        return f"no runner for {language}"
    if category in NON_CODE_CATEGORIES:
        return f"a {category} request is answered in prose"
    return None


def collect_tests(replies: dict[str, str], per_writer: int) -> tuple[list[UnitTest], dict[str, dict[str, Any]]]:
    """The tests of every writer's reply, numbered in writer order, and a summary per writer."""
    tests: list[UnitTest] = []
    writers: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for writer in sorted(replies):
        mine = [t for t in parse_tests(replies[writer], writer, limit=per_writer) if t.source() not in seen]
        for t in mine:
            seen.add(t.source())
            tests.append(dataclasses.replace(t, id=f"t{len(tests)}"))
        writers[writer] = {"tests": len(mine), "reply": replies[writer][-600:]}
    return tests, writers
