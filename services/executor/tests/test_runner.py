"""LocalExecutor runs a batch of programs in the sandbox, in parallel, and gives their results back in
the order given; programs and results survive a trip through JSON (the way they cross the queue)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from warrior.executor.runner import MAX_TIMEOUT_S, LocalExecutor, Program, cpu_budget
from warrior.executor.sandbox import SandboxResult


def test_results_come_back_in_the_order_given_whatever_order_the_runs_end_in() -> None:
    # The first programs sleep longest, so they end last.
    programs = [Program(f"import time\ntime.sleep({0.05 * (5 - i)})\nprint('program', {i})\n") for i in range(6)]
    with LocalExecutor(workers=3) as executor:
        results = executor.run_many(programs)
    assert [r.status for r in results] == ["passed"] * 6
    assert [r.stdout for r in results] == [f"program {i}\n" for i in range(6)]


def test_one_program_failing_or_stopped_does_not_touch_the_others() -> None:
    programs = [
        Program("print('fine')\n"),
        Program("assert 1 + 1 == 3\n"),
        Program("while True:\n    pass\n", timeout_s=1.0),
        Program("x = bytearray(2 * 1024 ** 3)\n", memory_mb=256),
        Program("import socket\nsocket.create_connection(('127.0.0.1', 9))\n"),
        Program("print('also fine')\n"),
    ]
    with LocalExecutor(workers=2) as executor:
        results = executor.run_many(programs)
    # The busy loop meets its wall-clock deadline and its CPU limit (both 1 s) at about the same time:
    # whichever stops it, it is a timeout.
    assert results[2].status == "timeout" and results[2].limit in ("wall_time 1s", "cpu_time"), results[2]
    assert [(r.status, r.limit) for i, r in enumerate(results) if i != 2] == [
        ("passed", None),
        ("failed", None),
        ("memory", "memory 256MB"),
        ("blocked", "no_network"),
        ("passed", None),
    ]
    assert "AssertionError" in results[1].stderr
    assert results[5].stdout == "also fine\n"


def test_programs_run_in_parallel_up_to_the_number_of_workers() -> None:
    sleeper = Program("import time\ntime.sleep(0.8)\n")
    with LocalExecutor(workers=4) as executor:
        started = time.monotonic()
        results = executor.run_many([sleeper] * 4)
        parallel = time.monotonic() - started
    assert [r.status for r in results] == ["passed"] * 4
    assert parallel < 2.4, f"4 runs of 0.8 s on 4 workers took {parallel:.2f} s"  # one at a time: over 3.2 s


def test_concurrent_callers_share_one_pool_of_workers() -> None:
    """Two threads each running two 0.6 s programs on a 2-worker executor: never more than two runs
    at a time, so the four take two rounds."""
    sleeper = Program("import time\ntime.sleep(0.6)\n")
    out: list[list[SandboxResult]] = []
    with LocalExecutor(workers=2) as executor:
        threads = [threading.Thread(target=lambda: out.append(executor.run_many([sleeper, sleeper]))) for _ in range(2)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert [r.status for batch in out for r in batch] == ["passed"] * 4
    assert elapsed >= 1.2, f"4 runs of 0.6 s on 2 shared workers took only {elapsed:.2f} s"


def test_an_empty_batch_and_the_worker_count() -> None:
    assert LocalExecutor().run_many([]) == []
    assert LocalExecutor().workers == cpu_budget() >= 1
    assert LocalExecutor(workers=3).workers == 3
    with pytest.raises(ValueError, match="workers"):
        LocalExecutor(workers=0)


def test_programs_round_trip_through_json_and_bad_ones_are_refused() -> None:
    program = Program("print(1)\n", timeout_s=2.5, memory_mb=256)
    assert Program.from_dict(json.loads(json.dumps(program.to_dict()))) == program
    assert Program.from_dict({"source": "pass"}) == Program("pass", 10.0, 512)
    for bad, match in [
        ({"timeout_s": 1}, "needs a source"),
        ({"source": "pass", "timeout_s": 0}, "timeout_s"),
        ({"source": "pass", "timeout_s": MAX_TIMEOUT_S + 1}, "timeout_s"),
        ({"source": "pass", "timeout_s": float("nan")}, "timeout_s"),
        ({"source": "pass", "timeout_s": "5"}, "timeout_s"),
        ({"source": "pass", "memory_mb": 0}, "memory_mb"),
        ({"source": "pass", "memory_mb": 1.5}, "memory_mb"),
        ({"source": b"pass"}, "source"),
        ({"source": "pass", "uid": 0}, "unknown program fields"),
        (["pass"], "mapping"),
    ]:
        with pytest.raises(ValueError, match=match):
            Program.from_dict(bad)  # type: ignore[arg-type]


def test_sandbox_results_round_trip_through_json() -> None:
    with LocalExecutor(workers=2) as executor:
        results = executor.run_many(
            [Program("print('ok')\n"), Program("raise SystemExit(3)\n"), Program("import os\nos.fork()\n")]
        )
    assert [r.status for r in results] == ["passed", "failed", "blocked"]
    for result in results:
        assert SandboxResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    good = results[0].to_dict()
    for change in ({"status": "won"}, {"passed": False}, {"returncode": "0"}, {"stdout": None}, {"duration_s": "1"}):
        with pytest.raises(ValueError, match="not a sandbox result"):
            SandboxResult.from_dict(good | change)
    with pytest.raises(ValueError, match="not a sandbox result"):
        SandboxResult.from_dict({k: v for k, v in good.items() if k != "stderr"})
