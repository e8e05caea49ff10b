"""Decontamination: drop a mined instruction that overlaps a benchmark problem.

Two checks: word 13-gram overlap (`ContaminationIndex`) and embedding similarity to a problem's
statement (`EmbeddingIndex`). Pure logic: the indexes are built from (benchmark, task id, text)
items and, for embeddings, a function that embeds texts, wherever they came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    task_id: str
    text: str
    code: str = ""  # the reference solution, where the rewording judge reads it


@dataclass(frozen=True)
class Contamination:
    benchmark: str
    task_id: str
    ngram: str  # the shared word sequence, for the record ("" for an embedding match)
    method: str = "ngram"  # "ngram", "embedding" or "rewording"
    similarity: float | None = None  # cosine similarity of an embedding match
    evidence: float | None = None  # a rewording judgment's evidence (see rewording.py)

    def record(self) -> dict[str, object]:
        """What the campaign records beside the drop."""
        out: dict[str, object] = {"benchmark": self.benchmark, "task_id": self.task_id, "method": self.method}
        if self.ngram:
            out["ngram"] = self.ngram
        if self.similarity is not None:
            out["similarity"] = round(self.similarity, 4)
        if self.evidence is not None:
            out["evidence"] = round(self.evidence, 4)
        return out


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


class EmbeddingIndex:
    """Benchmark statements as unit vectors; a text matches the closest one at or above `threshold`."""

    def __init__(
        self,
        items: Sequence[BenchmarkItem],
        vectors: np.ndarray,
        embed: Callable[[list[str]], np.ndarray],
        threshold: float,
    ) -> None:
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        self.items = list(items)
        self._vectors = np.asarray(vectors, dtype=np.float32)
        self._embed = embed
        self.threshold = threshold
        self._row = {(item.benchmark, item.task_id): i for i, item in enumerate(self.items)}

    def similarities(self, text: str) -> np.ndarray:
        """Cosine similarity of the text to every benchmark statement, in `items` order."""
        return self._vectors @ self._embed([text])[0]  # type: ignore[no-any-return]

    def top(self, text: str, k: int) -> list[tuple[BenchmarkItem, float]]:
        """The k most similar benchmark items, most similar first."""
        if not self.items:
            return []
        similarities = self.similarities(text)
        k = min(k, len(similarities))
        order = np.argsort(-similarities, kind="stable")[:k]
        return [(self.items[int(i)], float(similarities[int(i)])) for i in order]

    def similarity(self, text: str, item: BenchmarkItem) -> float:
        return float(self._vectors[self._row[(item.benchmark, item.task_id)]] @ self._embed([text])[0])

    def nearest(self, text: str) -> tuple[BenchmarkItem, float] | None:
        """The most similar benchmark item and its cosine similarity."""
        found = self.top(text, 1)
        return found[0] if found else None

    def match(self, text: str) -> Contamination | None:
        found = self.nearest(text)
        if found is None or found[1] < self.threshold:
            return None
        item, similarity = found
        return Contamination(item.benchmark, item.task_id, "", method="embedding", similarity=similarity)
