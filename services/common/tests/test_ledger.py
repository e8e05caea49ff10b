"""A model call is paid once: a repeated or raced call reuses the recorded response."""

from __future__ import annotations

import threading
from pathlib import Path

from warrior.common.ledger import CallLedger
from warrior.common.store import LocalStore


def test_second_call_reuses_the_record(tmp_path: Path) -> None:
    ledger = CallLedger(LocalStore(tmp_path), "c1")
    calls = []

    def invoke() -> dict:
        calls.append(1)
        return {"text": f"answer {len(calls)}"}

    first, reused1 = ledger.call("smol", "rev1", "chat", {"prompt": "p", "seed": 1}, invoke)
    second, reused2 = ledger.call("smol", "rev1", "chat", {"prompt": "p", "seed": 1}, invoke)
    assert (first, reused1) == ({"text": "answer 1"}, False)
    assert (second, reused2) == ({"text": "answer 1"}, True)
    assert len(calls) == 1
    # Another seed, revision or expert is another call.
    ledger.call("smol", "rev1", "chat", {"prompt": "p", "seed": 2}, invoke)
    ledger.call("smol", "rev2", "chat", {"prompt": "p", "seed": 1}, invoke)
    ledger.call("qwen", "rev1", "chat", {"prompt": "p", "seed": 1}, invoke)
    assert len(calls) == 4


def test_racing_callers_all_see_the_first_record(tmp_path: Path) -> None:
    ledger = CallLedger(LocalStore(tmp_path), "c1")
    barrier = threading.Barrier(6)
    results: list[tuple[dict, bool]] = []

    def worker(i: int) -> None:
        def invoke() -> dict:
            barrier.wait()
            return {"text": f"from {i}"}

        results.append(ledger.call("smol", "r", "complete", {"prompt": "x"}, invoke))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({response["text"] for response, _ in results}) == 1
    # One caller recorded the call; the others lost the race and count it as reused, not paid again.
    assert sorted(reused for _, reused in results) == [False] + [True] * 5


def test_a_recorded_call_lets_the_experts_shared_answer_go(tmp_path: Path) -> None:
    forgotten: list[tuple[str, str, str]] = []
    ledger = CallLedger(LocalStore(tmp_path), "c1", forget=lambda *call: forgotten.append(call))
    request = {"prompt": "p", "seed": 1}
    ledger.call("smol", "rev1", "chat", request, lambda: {"text": "answer", "revision": "rev1"})
    digest = ledger.key("smol", "rev1", "chat", request).rsplit("/", 1)[-1].removesuffix(".json")
    assert forgotten == [("smol", "rev1", digest)]  # the key the call carried to the expert
    ledger.call("smol", "rev1", "chat", request, lambda: {"text": "not asked"})
    assert len(forgotten) == 1  # a reused record was let go when it was written
