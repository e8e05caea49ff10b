"""Reworded benchmark problems: candidates by embedding and by function name, judged by an expert's
log-probabilities (pointwise mutual information of request and statement)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest

from warrior.common.campaign_config import DecontaminationConfig
from warrior.instruction_miner.benchmark_index import candidate_finder
from warrior.instruction_miner.decontamination import BenchmarkItem, EmbeddingIndex
from warrior.instruction_miner.rewording import (
    BASELINE_CODE_REQUEST,
    BASELINE_REQUEST,
    Candidate,
    CandidateFinder,
    Judged,
    item_names,
    judge,
    verdict,
)

ROOT = Path(__file__).resolve().parents[3]
DEV = ROOT / "bench" / "data" / "decontam_dev.jsonl"


def _index(items: list[BenchmarkItem], vectors: list[list[float]], query: list[float]) -> EmbeddingIndex:
    def embed(texts: list[str]) -> np.ndarray:
        return np.array([query] * len(texts), dtype=np.float32)

    return EmbeddingIndex(items, np.array(vectors, dtype=np.float32), embed, threshold=0.99)


def test_the_tested_function_is_the_problems_name() -> None:
    code = "def helper(x):\n    return x\n\ndef min_cost(cost, m, n):\n    return helper(cost)\n"
    tests = "assert min_cost([[1, 2]], 0, 1) == 3\n"
    assert item_names(code, tests) == ["min_cost"]


def test_candidates_are_the_nearest_statements_and_those_named_by_function() -> None:
    near = BenchmarkItem("mbpp", "1", "find the minimum cost path")
    far = BenchmarkItem("mbpp", "2", "count vowels")
    named = BenchmarkItem("humaneval", "HumanEval/0", "close elements")
    add = BenchmarkItem("humaneval", "HumanEval/53", "add two numbers")
    index = _index([near, far, named, add], [[1, 0], [0, 1], [0, 1], [0, 1]], [1, 0])
    finder = CandidateFinder(index, {"has_close_elements": [named], "add": [add]})

    found = finder.find("Write has_close_elements(numbers) and add(x, y) please", top=2, min_similarity=0.5)

    # `far` is among the top 2 by embedding but below min_similarity; `add` is too generic a name to point at a problem.
    assert [(c.item.task_id, c.by_name) for c in found] == [("1", False), ("HumanEval/0", True)]
    assert found[1].similarity == pytest.approx(0.0)


def test_evidence_is_the_gain_in_likelihood_per_word_of_the_statement_and_of_the_solution() -> None:
    statement = BenchmarkItem("mbpp", "17", "Write a function to find the perimeter of a square.",
                              code="def square_perimeter(a):\n  return 4*a")  # fmt: skip
    calls: list[tuple[str, list[str]]] = []

    def score(messages: list[dict[str, str]], candidates: list[str]) -> dict[str, float]:
        asked = messages[-1]["content"]
        calls.append((asked, candidates))
        baseline = asked in (BASELINE_REQUEST, BASELINE_CODE_REQUEST)
        return dict.fromkeys(candidates, -30.0 if baseline else -10.0)

    judged = judge("Perimeter of a square from its side?", [Candidate(statement, 0.8)], score, code_weight=2.0)

    # 10 words in the statement; 9 in the fenced solution (python, def, square_perimeter, a, return, 4, a...).
    assert judged[0].statement == pytest.approx(20.0 / 10)
    code_words = len("python def square_perimeter a return 4 a".split())
    assert judged[0].code == pytest.approx(20.0 / code_words)
    assert judged[0].evidence == pytest.approx(2.0 + 2.0 * 20.0 / code_words)
    assert calls[0][0].startswith("Perimeter of a square from its side?") and calls[0][1] == [statement.text]
    assert calls[1][0] == "Perimeter of a square from its side?" and "return 4*a" in calls[1][1][0]
    assert (BASELINE_REQUEST, [statement.text]) in calls
    # Weight 0: statements only, no solution is scored.
    calls.clear()
    only = judge("Perimeter of a square?", [Candidate(statement, 0.8)], score, code_weight=0.0)
    assert only[0].code is None and all("```" not in c[0] for _, cs in calls for c in cs)


def test_the_verdict_names_the_strongest_candidate_at_or_above_the_threshold() -> None:
    a, b = BenchmarkItem("mbpp", "1", "a"), BenchmarkItem("mbpp", "2", "b")
    judged = [Judged(Candidate(a, 0.7), 0.4, None, 1.0), Judged(Candidate(b, 0.6), 0.5, 0.2, 2.0)]
    hit = verdict(judged, threshold=0.9)
    assert hit is not None and hit.record() == {
        "benchmark": "mbpp", "task_id": "2", "method": "rewording", "similarity": 0.6, "evidence": 0.9,
    }  # fmt: skip
    assert verdict(judged, threshold=0.91) is None
    assert verdict([], threshold=-100) is None


@pytest.fixture(scope="module")
def smollm2_engine(smollm2_path: Path):  # type: ignore[no-untyped-def]
    from warrior.expert_inference.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine(smollm2_path, parallel=1, context_length=2048)
    yield engine
    engine.close()


def test_a_small_model_ranks_a_rewording_above_a_different_problem_on_the_same_theme(smollm2_engine) -> None:  # type: ignore[no-untyped-def]
    """The development set (MBPP training problems only) pairs some problems with a rewording and a
    different request on the same theme; against that problem, the default judge (SmolLM2-135M) gives
    the rewording the stronger evidence in most pairs."""
    from warrior.common.chat_template import Message
    from warrior.expert_inference.server import ExpertInferenceServicer

    servicer = ExpertInferenceServicer("judge", smollm2_engine)
    loop = asyncio.new_event_loop()

    def score(messages: list[dict[str, str]], candidates: list[str]) -> dict[str, float]:
        prompt, _ = servicer._render([Message(m["role"], m["content"]) for m in messages])
        scores = loop.run_until_complete(smollm2_engine.score(prompt, candidates))
        return {c: lp for c, (lp, _) in zip(candidates, scores, strict=True)}

    settings = DecontaminationConfig(mbpp_path=os.environ["WARRIOR_MBPP_PATH"])
    finder = candidate_finder(settings, Path(os.environ.get("WARRIOR_CACHE_DIR", Path.home() / ".cache" / "warrior")))
    items = {(i.benchmark, i.task_id): i for i in finder.index.items}
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines()]
    by_kind: dict[str, dict[str, str]] = {"paraphrase": {}, "novel": {}}
    for row in rows:
        if row["benchmark"] == "mbpp":
            by_kind[row["kind"]].setdefault(row["task_id"], row["text"])
    shared = sorted(set(by_kind["paraphrase"]) & set(by_kind["novel"]), key=int)
    assert len(shared) >= 4
    wins = {}
    for task_id in shared:
        source = Candidate(items[("mbpp", task_id)], 0.0)
        evidence = {kind: judge(by_kind[kind][task_id], [source], score, code_weight=settings.rewording.code_weight)[0]
                    for kind in ("paraphrase", "novel")}  # fmt: skip
        wins[task_id] = (round(evidence["paraphrase"].evidence, 3), round(evidence["novel"].evidence, 3))
    loop.close()
    assert sum(p > n for p, n in wins.values()) >= len(wins) - 1, wins
