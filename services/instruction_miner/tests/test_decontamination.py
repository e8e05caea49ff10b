"""Instructions that overlap HumanEval or MBPP are dropped, naming the benchmark item they match."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from warrior.common import benchmarks
from warrior.common.campaign_state import CampaignState
from warrior.common.runtime import get_runtime
from warrior.instruction_miner import tasks
from warrior.instruction_miner.decontamination import BenchmarkItem, ContaminationIndex

# These tests check the n-gram and embedding stages on their own: no expert is live to judge rewordings
# (test_rewording.py covers that stage).
NO_REWORDING = {"rewording": {"enabled": False}}


@pytest.fixture(scope="module")
def mbpp_path() -> str:
    path = os.environ.get("WARRIOR_MBPP_PATH")
    if not path:
        pytest.fail("WARRIOR_MBPP_PATH is not set and no MBPP copy was found at ../shared/data/mbpp.jsonl")
    return path


@pytest.fixture(scope="module")
def index(mbpp_path: str) -> ContaminationIndex:
    return ContaminationIndex(benchmarks.humaneval() + benchmarks.mbpp(mbpp_path, Path("/nonexistent")))


def test_benchmark_data_loads_in_full(index: ContaminationIndex) -> None:
    assert index.items == 164 + 974


def test_humaneval_prompt_inside_a_request_is_caught_with_its_task_id(index: ContaminationIndex) -> None:
    problem = benchmarks.humaneval()[0]
    text = f"Can you help me finish this function?\n\n{problem.text}\nI am stuck on the loop."
    hit = index.match(text)
    assert hit is not None and (hit.benchmark, hit.task_id) == ("humaneval", "HumanEval/0")
    assert len(hit.ngram.split()) == 13


def test_mbpp_statement_is_caught(index: ContaminationIndex) -> None:
    hit = index.match("Please write a function to find the minimum cost path to reach (m, n) from (0, 0) "
                      "for the given cost matrix cost[][] and a position (m, n) in cost[][].")  # fmt: skip
    assert hit is not None and (hit.benchmark, hit.task_id) == ("mbpp", "1")


def test_an_ordinary_request_passes(index: ContaminationIndex) -> None:
    assert index.match("How do I read a CSV file with pandas and group the rows by region?") is None


def test_short_items_match_only_as_a_whole() -> None:
    index = ContaminationIndex([BenchmarkItem("tiny", "t1", "reverse a linked list")], n=13)
    assert index.match("Explain how to reverse a linked list in Python.") is not None
    assert index.match("Explain how to reverse a list.") is None


def test_tampered_or_missing_mbpp_copy_is_refused(tmp_path: Path, mbpp_path: str) -> None:
    bad = tmp_path / "mbpp.jsonl"
    bad.write_text('{"task_id": 1, "text": "x", "code": "y"}\n')
    with pytest.raises(benchmarks.BenchmarkDataError, match="sha256"):
        benchmarks.mbpp(str(bad), tmp_path)
    with pytest.raises(benchmarks.BenchmarkDataError, match="not found"):
        benchmarks.mbpp(str(tmp_path / "none.jsonl"), tmp_path)
    assert benchmarks.MBPP_SHA256 == hashlib.sha256(Path(mbpp_path).read_bytes()).hexdigest()


def test_screen_drops_a_slipped_in_humaneval_prompt(warrior_env: dict[str, str], mbpp_path: str) -> None:
    rt = get_runtime()
    state = CampaignState(rt.redis, "decon")
    config = {"campaign": "decon", "experts": [{"name": "a"}, {"name": "b"}],
              "screening": {"rating": {"enabled": False}, "decontamination": NO_REWORDING}}  # fmt: skip
    state.create(config, expected_mine=2)
    problem = benchmarks.humaneval()[12]
    for iid, text in (
        ("leak", f"Please complete this code:\n{problem.text}"),
        ("fine", "How do I sort a dict by value?"),
    ):
        rt.store.put_json(f"runs/decon/instructions/{iid}.json", {"id": iid, "text": text, "finish_reason": "stop"})
    assert tasks.screen(rt, "decon", "leak") is False
    assert tasks.screen(rt, "decon", "fine") is True
    snap = state.snapshot()
    assert snap["instructions"]["dropped"] == {"contaminated": 1}
    record = state.table("contamination")["leak"]
    assert (record["benchmark"], record["task_id"]) == ("humaneval", problem.task_id)
    assert record["method"] == "ngram"


PARAPHRASE = "Given a list of floats and a threshold, return True if any two of the numbers are closer together than the threshold."  # noqa: E501


def test_a_paraphrased_benchmark_task_is_caught_by_embedding_similarity(warrior_env: dict[str, str]) -> None:
    rt = get_runtime()
    state = CampaignState(rt.redis, "decon-emb")
    config = {"campaign": "decon-emb", "experts": [{"name": "a"}, {"name": "b"}],
              "screening": {"rating": {"enabled": False}, "decontamination": NO_REWORDING}}  # fmt: skip
    state.create(config, expected_mine=3)
    for iid, text in (
        ("paraphrase", PARAPHRASE),  # HumanEval/0 in other words: no 13-gram in common
        ("lru", "Implement an LRU cache class with get and put methods that both run in constant time."),
    ):
        rt.store.put_json(f"runs/decon-emb/instructions/{iid}.json", {"id": iid, "text": text, "finish_reason": "stop"})
    assert tasks.screen(rt, "decon-emb", "paraphrase") is False
    assert tasks.screen(rt, "decon-emb", "lru") is True
    record = state.table("contamination")["paraphrase"]
    assert (record["benchmark"], record["task_id"], record["method"]) == ("humaneval", "HumanEval/0", "embedding")
    assert record["similarity"] >= 0.8


def test_embedding_threshold_is_configurable(warrior_env: dict[str, str]) -> None:
    rt = get_runtime()
    state = CampaignState(rt.redis, "decon-loose")
    config = {"campaign": "decon-loose", "experts": [{"name": "a"}, {"name": "b"}],
              "screening": {"rating": {"enabled": False},
                            "decontamination": {"embedding": {"threshold": 0.95}, **NO_REWORDING}}}  # fmt: skip
    state.create(config, expected_mine=1)
    rt.store.put_json("runs/decon-loose/instructions/p.json", {"id": "p", "text": PARAPHRASE, "finish_reason": "stop"})
    assert tasks.screen(rt, "decon-loose", "p") is True


def test_humaneval_statements_are_the_docstring_words() -> None:
    problem = benchmarks.humaneval()[0]
    assert problem.statement.startswith("Check if in given list of numbers")
    assert ">>>" not in problem.statement and "def " not in problem.statement
