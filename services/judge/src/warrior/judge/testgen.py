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

TESTS_SYSTEM = (
    "You write unit tests for programming tasks. You reply with one Python code block of assert statements "
    "and nothing else: no solution, no explanation."
)

# One worked example, as an earlier turn of the conversation: small models follow a shown format far
# more reliably than a described one (without it they write a solution instead of tests).
EXAMPLE_REQUEST = "Write a Python function that returns the largest of three numbers."
EXAMPLE_TESTS = (
    "```python\nassert largest_of_three(1, 2, 3) == 3\nassert largest_of_three(-1, -5, -3) == -1\n"
    "assert largest_of_three(7, 7, 2) == 7\n```"
)


# Languages whose answers the executor can run; a request in any other is judged by LLMs alone.
RUNNERS = {"python": "python", "python3": "python", "py": "python"}
# Requests of these categories are answered in prose, not code: LLM judges decide them.
NON_CODE_CATEGORIES = frozenset({"explanation"})


def tests_messages(instruction: str, count: int) -> list[dict[str, str]]:
    """The conversation a test writer sees: the rules, one worked example, then the request."""

    def ask(request: str) -> str:
        return (
            f"Write {max(3, count - 2)} to {count} Python assert statements that a correct solution to this request "
            "must pass. Each calls the function with concrete inputs and checks the exact expected result. Use the "
            "function name the request gives; if it gives none, choose a short snake_case name that says what it "
            f"does. Add the imports the asserts need.\n\nRequest:\n{request}"
        )

    return [
        {"role": "system", "content": TESTS_SYSTEM},
        {"role": "user", "content": ask(EXAMPLE_REQUEST)},
        {"role": "assistant", "content": EXAMPLE_TESTS},
        {"role": "user", "content": ask(instruction)},
    ]


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
