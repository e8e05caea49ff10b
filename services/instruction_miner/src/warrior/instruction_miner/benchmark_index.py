"""The benchmark indexes screening checks against, built once per process.

The n-gram index covers each problem's full text (statement and reference code); the embedding
index covers statements only (what a mined request would paraphrase). Benchmark embeddings are
cached on disk (WARRIOR_CACHE_DIR, default ~/.cache/warrior), keyed by the model and the texts, so
they are computed once per machine.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from pathlib import Path

import numpy as np

from warrior.common import benchmarks as benchmark_data
from warrior.common.benchmarks import Problem
from warrior.common.campaign_config import DecontaminationConfig
from warrior.common.embeddings import embedder
from warrior.common.ids import content_hash
from warrior.instruction_miner.decontamination import BenchmarkItem, ContaminationIndex, EmbeddingIndex
from warrior.instruction_miner.rewording import CandidateFinder, item_names

# lru_cache does not stop two threads of a batch from building the same index at once (twice the work,
# and both writing one cache file): the first builds it, the others wait for it.
_BUILDING = threading.Lock()


def _problems(benchmarks: tuple[str, ...], mbpp_path: str | None, cache: Path) -> list[Problem]:
    problems = []
    if "humaneval" in benchmarks:
        problems += benchmark_data.humaneval()
    if "mbpp" in benchmarks:
        problems += benchmark_data.mbpp(mbpp_path, cache / "benchmarks")
    return problems


def reference_code(problem: Problem) -> str:
    """A problem's reference solution as one function: HumanEval's signature (its docstring left out)
    and body, or MBPP's code."""
    if problem.entry_point:
        signature = re.split(r'"""|\'\'\'', problem.prompt)[0].rstrip()
        return f"{signature}\n{problem.canonical_solution.rstrip()}"
    return problem.canonical_solution.replace("\r\n", "\n").strip()


@functools.lru_cache(maxsize=4)
def _ngram_index(benchmarks: tuple[str, ...], ngram: int, mbpp_path: str | None, cache: Path) -> ContaminationIndex:
    problems = _problems(benchmarks, mbpp_path, cache)
    return ContaminationIndex((BenchmarkItem(p.benchmark, p.task_id, p.text) for p in problems), n=ngram)


@functools.lru_cache(maxsize=4)
def _embedding_index(
    benchmarks: tuple[str, ...], model: str, threshold: float, mbpp_path: str | None, cache: Path
) -> EmbeddingIndex:
    items = [
        BenchmarkItem(p.benchmark, p.task_id, p.statement, code=reference_code(p))
        for p in _problems(benchmarks, mbpp_path, cache)
    ]
    model_ = embedder(model)
    texts = [item.text for item in items]
    saved = cache / "benchmarks" / f"embeddings-{content_hash(model_.revision, texts, length=16)}.npy"
    if saved.exists():
        vectors = np.load(saved)
    else:
        vectors = model_.encode(texts)
        saved.parent.mkdir(parents=True, exist_ok=True)
        partial = saved.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npy")
        np.save(partial, vectors)
        partial.replace(saved)  # whole or absent: a crashed writer leaves no half file behind
    return EmbeddingIndex(items, vectors, model_.encode, threshold)


@functools.lru_cache(maxsize=4)
def _candidate_finder(
    benchmarks: tuple[str, ...], model: str, threshold: float, mbpp_path: str | None, cache: Path
) -> CandidateFinder:
    index = _embedding_index(benchmarks, model, threshold, mbpp_path, cache)
    names: dict[str, list[BenchmarkItem]] = {}
    for problem, item in zip(_problems(benchmarks, mbpp_path, cache), index.items, strict=True):
        found = [problem.entry_point] if problem.entry_point else item_names(problem.canonical_solution, problem.tests)
        for name in found:
            names.setdefault(name, []).append(item)
    return CandidateFinder(index, names)


def contamination_index(config: DecontaminationConfig, cache: Path) -> ContaminationIndex:
    """The campaign's n-gram index."""
    with _BUILDING:
        return _ngram_index(tuple(sorted(config.benchmarks)), config.ngram, config.mbpp_path, cache)


def embedding_index(config: DecontaminationConfig, cache: Path) -> EmbeddingIndex:
    """The campaign's embedding index (loads the embedding model on first use)."""
    settings = config.embedding
    with _BUILDING:
        return _embedding_index(
            tuple(sorted(config.benchmarks)), settings.model, settings.threshold, config.mbpp_path, cache
        )


def candidate_finder(config: DecontaminationConfig, cache: Path) -> CandidateFinder:
    """The campaign's rewording candidates: nearest statements by embedding, and problems named by function."""
    settings = config.embedding
    with _BUILDING:
        return _candidate_finder(
            tuple(sorted(config.benchmarks)), settings.model, settings.threshold, config.mbpp_path, cache
        )
