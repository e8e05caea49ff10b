"""Task categories of coding requests, by a transparent keyword classifier.

Deterministic and free: every kept instruction gets exactly one category, so the leaderboard can
show per-category win rates (no expert wins everywhere). Rules run from the most specific
intent to the most general; "generation" (write new code) is the default.
"""

from __future__ import annotations

import re
from typing import Final

CATEGORIES: Final = (
    "debugging",
    "testing",
    "optimization",
    "refactoring",
    "translation",
    "explanation",
    "generation",
)

_LANGS = r"(?:python|java|javascript|typescript|c\+\+|c#|c|go|golang|rust|ruby|php|kotlin|swift|scala|r|sql|bash)"
_RULES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    (
        "debugging",
        re.compile(
            r"\b(?:bugs?|debug\w*|fix(?:ing|es)?|traceback|stack ?trace|crash\w*|segfault|"
            r"(?:does ?n[o']?t|not|doesn't|isn't|is not|won't) (?:work|working|compile|run|return)\w*|"
            r"wrong (?:output|result|answer)|unexpected (?:output|result|behaviou?r)|"
            r"(?:get|getting|got|throws?|throwing|seeing|receiving) (?:an? |this |the )?\w*(?:error|exception)|"
            r"error message)\b",
            re.I,
        ),
    ),
    (
        "testing",
        re.compile(
            r"\b(?:unit ?tests?|pytest|unittest|junit|test cases?|test suite|write tests?|tests? for|mock\w*|"
            r"test coverage)\b",
            re.I,
        ),
    ),
    (
        "optimization",
        re.compile(
            r"\b(?:optimi[sz]\w*|faster|speed(?: it)? up|performance|efficien\w*|time complexity|space complexity|"
            r"memory usage|too slow|slow|bottleneck|vectori[sz]e)\b",
            re.I,
        ),
    ),
    (
        "refactoring",
        re.compile(
            r"\b(?:refactor\w*|clean(?:er| up)|readab\w*|more (?:pythonic|idiomatic|maintainable)|restructure|"
            r"simplify|improve (?:the|this|my) code|code review|best practices?)\b",
            re.I,
        ),
    ),
    (
        "translation",
        re.compile(
            rf"\b(?:translate\w*|port(?:ing)? (?:this|it|the code)|convert (?:this|the|my|a|an)? ?\w* ?(?:code|"
            rf"function|script|program|class) (?:from \w+ )?(?:to|into) {_LANGS}|rewrite (?:this|it|the code) in "
            rf"{_LANGS}|from {_LANGS} to {_LANGS})\b",
            re.I,
        ),
    ),
    (
        "explanation",
        re.compile(
            r"\b(?:explain\w*|what (?:does|is|are|do)|why (?:does|do|is|are|would)|how does|how do(?:es)? .* work|"
            r"difference between|understand\w*|meaning of|describe|walk me through|when should)\b",
            re.I,
        ),
    ),
)


def categorize(instruction: str) -> str:
    """The instruction's task category (one of CATEGORIES)."""
    for category, pattern in _RULES:
        if pattern.search(instruction):
            return category
    return "generation"
