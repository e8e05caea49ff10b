"""Reworded benchmark problems: the second stage of decontamination.

Word n-grams catch copies, and an embedding catches close paraphrases, but a benchmark problem
reworded by a person or a model shares no n-gram, and a different problem on the same theme is as
close by embedding as a paraphrase. So, as lm-sys's LLM decontaminator does, candidates come first
and a model judges each:

* candidates: the benchmark statements nearest the request by embedding (`candidates` of them, at
  cosine `min_similarity` or more), and every problem whose function name the request names;
* judgment: how much the request raises an expert's likelihood of the candidate's statement and of
  its reference solution, read from the expert's candidate log-probabilities (the ScoreCandidates
  call the arena already serves):

      statement = (log P(statement | "restate this request: <request>") - log P(statement | "write a request")) / words
      code      = (log P(solution | <request>) - log P(solution | "write a Python function")) / words
      evidence  = statement + code_weight x code

  Each is the pointwise mutual information of the request and the benchmark's text, per word. A
  rewording predicts its source's specifics (which inputs, which output, which edge cases, and so
  the reference code); a different problem on the same theme predicts only the theme, which the
  baseline already knows. It needs no instruction following, so the small models of a laptop's arena
  can make it, where they answer a "same problem? yes/no" question at chance. How well it separates
  rewordings from novel requests depends on the judge's size: `make bench-rewording` measures it.

Pure logic: the caller supplies the scoring function (through the call ledger in a campaign).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from warrior.instruction_miner.decontamination import BenchmarkItem, Contamination, EmbeddingIndex, words

RESTATE_INSTRUCTION = "Restate this programming request in other words."
BASELINE_REQUEST = "Write a programming request."
BASELINE_CODE_REQUEST = "Write a Python function."
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Messages = list[dict[str, str]]
# (messages, candidates) -> each candidate's summed log-probability as the assistant's reply.
ScoreFn = Callable[[Messages, list[str]], dict[str, float]]


def restate_messages(request: str) -> Messages:
    """The conditional context: the request, then the ask to restate it."""
    return [{"role": "user", "content": f"{request.strip()}\n\n{RESTATE_INSTRUCTION}"}]


def baseline_messages() -> Messages:
    """The context without the request: what any programming request would make likely."""
    return [{"role": "user", "content": BASELINE_REQUEST}]


@dataclass(frozen=True)
class Candidate:
    item: BenchmarkItem
    similarity: float
    by_name: bool = False  # the request names the problem's function


@dataclass(frozen=True)
class Judged:
    candidate: Candidate
    statement: float  # pointwise mutual information of request and statement, per statement word (nats)
    code: float | None  # the same for the reference solution (None: the problem has no code)
    code_weight: float

    @property
    def evidence(self) -> float:
        return self.statement + self.code_weight * (self.code or 0.0)


def fenced(code: str) -> str:
    """A reference solution as an assistant would write it."""
    return f"```python\n{code.strip()}\n```"


def item_names(code: str, tests: str) -> list[str]:
    """The functions a benchmark problem's tests call among those its reference code defines."""
    defined = re.findall(r"def\s+([A-Za-z_]\w*)\s*\(", code)
    called = set(re.findall(r"([A-Za-z_]\w*)\s*\(", tests))
    return [name for name in dict.fromkeys(defined) if name in called]


class CandidateFinder:
    """The benchmark problems a request may reword: nearest by embedding, and named by function."""

    def __init__(self, index: EmbeddingIndex, names: dict[str, list[BenchmarkItem]]) -> None:
        self.index = index
        # Only names specific enough to point at one problem: a snake_case or long name, never `add`.
        self.names = {name.lower(): items for name, items in names.items() if "_" in name or len(name) >= 8}

    def find(self, text: str, *, top: int, min_similarity: float) -> list[Candidate]:
        found: dict[tuple[str, str], Candidate] = {}
        for item, similarity in self.index.top(text, top):
            if similarity >= min_similarity:
                found[(item.benchmark, item.task_id)] = Candidate(item, similarity)
        mentioned = {token.lower() for token in _IDENTIFIER.findall(text)}
        for name in sorted(mentioned & self.names.keys()):
            for item in self.names[name]:
                key = (item.benchmark, item.task_id)
                similarity = found[key].similarity if key in found else self.index.similarity(text, item)
                found[key] = Candidate(item, similarity, by_name=True)
        return sorted(found.values(), key=lambda c: (-c.similarity, c.item.benchmark, c.item.task_id))


def judge(text: str, candidates: Sequence[Candidate], score: ScoreFn, *, code_weight: float) -> list[Judged]:
    """Each candidate's evidence that `text` rewords it: one conditional call for all the statements
    and one for all the solutions; the baselines are the same for every request (a ledger pays each once)."""
    if not candidates:
        return []
    request = text.strip()
    statements = score(restate_messages(request), list(dict.fromkeys(c.item.text for c in candidates)))
    codes = [fenced(c.item.code) for c in candidates if c.item.code and code_weight]
    solutions = score([{"role": "user", "content": request}], list(dict.fromkeys(codes))) if codes else {}
    judged = []
    for candidate in candidates:
        statement = candidate.item.text
        baseline = score(baseline_messages(), [statement])[statement]
        gain = (statements[statement] - baseline) / max(1, len(words(statement)))
        code_gain = None
        if candidate.item.code and code_weight:
            code = fenced(candidate.item.code)
            code_baseline = score([{"role": "user", "content": BASELINE_CODE_REQUEST}], [code])[code]
            code_gain = (solutions[code] - code_baseline) / max(1, len(words(code)))
        judged.append(Judged(candidate, gain, code_gain, code_weight))
    return judged


def verdict(judged: Iterable[Judged], threshold: float) -> Contamination | None:
    """The strongest candidate at or above `threshold`, as a contamination record."""
    best = max(judged, key=lambda j: j.evidence, default=None)
    if best is None or best.evidence < threshold:
        return None
    item = best.candidate.item
    return Contamination(
        item.benchmark, item.task_id, "", method="rewording", similarity=best.candidate.similarity,
        evidence=best.evidence,
    )  # fmt: skip
