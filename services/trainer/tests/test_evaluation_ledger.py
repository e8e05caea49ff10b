"""An evaluation's model calls go through the call ledger: an evaluation killed half way, run again,
asks the engine only for the answers it had not got yet."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from warrior.common.store import LocalStore
from warrior.executor.runner import Program
from warrior.executor.sandbox import SandboxResult
from warrior.trainer.evaluation import evaluate_expert


class _Reply:
    def __init__(self, text: str, revision: str = "") -> None:
        self.text = text
        self.revision = revision

    def to_dict(self) -> dict[str, Any]:
        reply = {"text": self.text, "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 1}
        return reply | ({"revision": self.revision} if self.revision else {})


class _Killed(BaseException):
    """The evaluating process dies (a BaseException, as a KeyboardInterrupt or SystemExit is)."""


class _CountingClient:
    """A zero-latency engine that counts the calls it answers, by prompt; with `dies_after`, the
    evaluation is killed at the next call after that many."""

    def __init__(self, dies_after: int | None = None) -> None:
        self.asked: list[str] = []
        self.dies_after = dies_after
        self._lock = threading.Lock()

    def chat(self, expert: str, messages: Sequence[dict[str, str]], sampling: dict[str, Any]) -> _Reply:
        with self._lock:
            if self.dies_after is not None and len(self.asked) >= self.dies_after:
                raise _Killed
            self.asked.append(messages[0]["content"])
        return _Reply("```python\ndef f():\n    return 0\n```")


class _InstantExecutor:
    """Scores every program as failed without running it: only the model calls matter here."""

    def run_many(self, programs: Sequence[Program]) -> list[SandboxResult]:
        return [SandboxResult(False, "failed", None, 1, "", "AssertionError", 0.0) for _ in programs]


def test_an_interrupted_evaluation_pays_only_for_the_calls_it_had_not_made(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    cache = tmp_path / "cache"
    client = _CountingClient(dies_after=3)
    with pytest.raises(_Killed):
        evaluate_expert(client, store, "coder", "rev1", "humaneval", cache_dir=cache, limit=8, workers=2,
                        executor=_InstantExecutor())  # fmt: skip
    first = list(client.asked)
    assert len(first) == 3
    client = _CountingClient()
    stored = evaluate_expert(client, store, "coder", "rev1", "humaneval", cache_dir=cache, limit=8, workers=2,
                             executor=_InstantExecutor())  # fmt: skip
    assert stored["total"] == 8 and stored["reused"] is False
    # The rerun asked only for the problems the killed run had no answer to, and no prompt twice.
    assert len(first) + len(client.asked) == 8
    assert not set(first) & set(client.asked)
    # The calls are recorded beside the revision's results; another revision is another model.
    assert store.list("evals/coder/rev1/calls/")
    client.asked.clear()
    evaluate_expert(client, store, "coder", "rev2", "humaneval", cache_dir=cache, limit=2, workers=1,
                    executor=_InstantExecutor())  # fmt: skip
    assert len(client.asked) == 2


def test_the_ledger_records_the_greedy_request(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    client = _CountingClient()
    evaluate_expert(client, store, "org/coder", "r1", "humaneval", cache_dir=tmp_path / "cache", limit=1,
                    max_tokens=64, executor=_InstantExecutor())  # fmt: skip
    [key] = [k for k in store.list("evals/org--coder/r1/calls/")]
    record = store.get_json(key)
    assert record["expert"] == "org/coder" and record["revision"] == "r1" and record["kind"] == "chat"
    assert record["request"]["messages"][0]["content"] == client.asked[0]
    assert record["request"]["sampling"]["temperature"] == 0.0 and record["request"]["sampling"]["max_tokens"] == 64
    assert record["response"]["text"].startswith("```python")


def test_answers_from_other_weights_stop_the_evaluation_instead_of_being_scored(tmp_path: Path) -> None:
    """A replica that answers with another revision (a rolling update) is not this revision's failure:
    the evaluation stops, stores no result, and a rerun keyed on the new revision starts afresh."""
    from warrior.common.ledger import RevisionMismatch

    class _Redeployed(_CountingClient):
        def chat(self, expert: str, messages: Sequence[dict[str, str]], sampling: dict[str, Any]) -> _Reply:
            reply = super().chat(expert, messages, sampling)
            reply.revision = "rev2"
            return reply

    store = LocalStore(tmp_path / "store")
    with pytest.raises(RevisionMismatch):
        evaluate_expert(_Redeployed(), store, "coder", "rev1", "humaneval", cache_dir=tmp_path / "cache", limit=3,
                        executor=_InstantExecutor())  # fmt: skip
    assert not store.list("evals/coder/rev1/")


class _ForgettingClient(_CountingClient):
    """Also records which answers the evaluation let go from the experts' shared cache."""

    def __init__(self) -> None:
        super().__init__()
        self.forgotten: list[tuple[str, str, str]] = []

    def forget_answer(self, expert: str, revision: str, call_key: str) -> None:
        self.forgotten.append((expert, revision, call_key))


def test_an_evaluation_lets_each_recorded_answer_go_from_the_experts_shared_cache(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    client = _ForgettingClient()
    evaluate_expert(client, store, "coder", "rev1", "humaneval", cache_dir=tmp_path / "cache", limit=3, workers=1,
                    executor=_InstantExecutor())  # fmt: skip
    recorded = {key.rsplit("/", 1)[-1].removesuffix(".json") for key in store.list("evals/coder/rev1/calls/")}
    assert len(client.forgotten) == 3 and {c for _, _, c in client.forgotten} == recorded
    assert {(e, r) for e, r, _ in client.forgotten} == {("coder", "rev1")}
