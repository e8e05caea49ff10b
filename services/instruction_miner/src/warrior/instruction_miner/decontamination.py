"""Decontamination: drop a mined instruction that overlaps a benchmark problem (word 13-grams).

Pure logic: the index is built from (benchmark, task id, text) items, wherever they came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    task_id: str
    text: str


@dataclass(frozen=True)
class Contamination:
    benchmark: str
    task_id: str
    ngram: str  # the shared word sequence, for the record


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    """Word n-grams; a text shorter than n words is one n-gram of all its words (so it still matches whole)."""
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class ContaminationIndex:
    """Every n-gram of every benchmark item, mapped to the first item that has it."""

    def __init__(self, items: Iterable[BenchmarkItem], n: int = 13) -> None:
        self.n = n
        self._index: dict[tuple[str, ...], BenchmarkItem] = {}
        self._short: dict[tuple[str, ...], BenchmarkItem] = {}
        self.items = 0
        for item in items:
            self.items += 1
            tokens = words(item.text)
            target = self._short if len(tokens) < n else self._index
            for gram in ngrams(tokens, n):
                target.setdefault(gram, item)

    def match(self, text: str) -> Contamination | None:
        """The benchmark item the text overlaps, if any."""
        tokens = words(text)
        for gram in sorted(ngrams(tokens, self.n)):
            item = self._index.get(gram)
            if item is not None:
                return Contamination(item.benchmark, item.task_id, " ".join(gram))
        if self._short:
            joined = " " + " ".join(tokens) + " "
            for gram, item in self._short.items():
                if " " + " ".join(gram) + " " in joined:
                    return Contamination(item.benchmark, item.task_id, " ".join(gram))
        return None
