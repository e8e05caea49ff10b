"""QueueExecutor against a real executor worker on a real Redis: programs run in the service, never in
the caller, in chunks, and come back in order; a missing service or a bad chunk is an error, not a
result."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from warrior.common import queues
from warrior.common.celery_app import make_celery
from warrior.common.settings import Settings
from warrior.executor import sandbox
from warrior.executor.confinement import available
from warrior.executor.runner import ExecutorTimeout, Program, QueueExecutor


@pytest.fixture()
def no_local_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process cannot run a program: whatever runs, runs in the worker."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a program ran in the caller's process")

    monkeypatch.setattr(sandbox, "run", refuse)


def _keys(client: redis.Redis, pattern: str) -> set[bytes]:
    return set(client.scan_iter(match=pattern, count=1000))


def test_a_batch_runs_in_the_service_in_chunks_and_comes_back_in_order(
    executor_worker: Any, no_local_sandbox: None
) -> None:
    client = redis.Redis.from_url(executor_worker.redis_url)
    deliveries, stored = _keys(client, "warrior:deliveries:*"), _keys(client, "celery-task-meta-*")
    programs = [Program(f"print({i} * {i})\n", timeout_s=5.0) for i in range(68)]
    programs += [
        Program("assert 1 == 2\n"),
        Program("import os\nos.fork()\n"),
        Program("import time\ntime.sleep(30)\n", timeout_s=1.0),
    ]
    results = QueueExecutor(executor_worker.app, chunk=32, timeout_s=60).run_many(programs)
    assert [r.stdout for r in results[:68]] == [f"{i * i}\n" for i in range(68)]
    assert [r.status for r in results[:68]] == ["passed"] * 68
    assert [(r.status, r.limit) for r in results[68:]] == [
        ("failed", None),
        ("blocked", "no_subprocess"),
        ("timeout", "wall_time 1s"),
    ]
    assert "AssertionError" in results[68].stderr
    # 71 programs in chunks of 32: three tasks, each delivered once and ended, so their delivery counts are
    # gone (dropped just after each result is stored: allow the worker a moment); their results were read and removed.
    deadline = time.monotonic() + 10
    while _keys(client, "warrior:deliveries:*") - deliveries and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _keys(client, "warrior:deliveries:*") - deliveries == set()
    assert _keys(client, "celery-task-meta-*") == stored
    assert QueueExecutor(executor_worker.app).run_many([]) == []


def test_one_queue_executor_serves_many_threads_at_once(executor_worker: Any, no_local_sandbox: None) -> None:
    """A threaded worker (the judge's) shares one QueueExecutor: each thread gets its own results."""
    executor = QueueExecutor(executor_worker.app, chunk=3, timeout_s=60)
    out: dict[int, list[str]] = {}

    def batch(thread: int) -> None:
        results = executor.run_many([Program(f"print({thread}, {i})\n") for i in range(5)])
        out[thread] = [r.stdout for r in results]

    threads = [threading.Thread(target=batch, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert out == {t: [f"{t} {i}\n" for i in range(5)] for t in range(4)}


RELAY_APP = """
from warrior.common.celery_app import make_celery
from warrior.executor.runner import Program, QueueExecutor

app = make_celery("relay-test")


@app.task(name="relay_test.run", bind=True)
def relay(self, source):
    [result] = QueueExecutor(app, timeout_s=60).run_many([Program(source)])
    return result.stdout
"""


def test_a_task_of_another_worker_waits_for_its_programs(executor_worker: Any, tmp_path: Path) -> None:
    """As the trainer's evaluation and the judge's battles do: a task that sends programs to the
    executor service and waits for them inside its own worker (a solo pool, the trainer's)."""
    (tmp_path / "relay_app.py").write_text(RELAY_APP)
    env = os.environ | {
        "REDIS_URL": executor_worker.redis_url,
        "PYTHONPATH": str(tmp_path),
        "WARRIOR_HOME": str(tmp_path / "home"),
        "WARRIOR_STORE_URL": f"file://{tmp_path / 'store'}",
    }
    argv = [sys.executable, "-m", "celery", "-A", "relay_app", "worker", "-P", "solo", "-Q", "relay-test",
            "-n", f"relay-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]  # fmt: skip
    log = tmp_path / "relay.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        sent = executor_worker.app.send_task("relay_test.run", args=["print('relayed')\n"], queue="relay-test")
        assert sent.get(timeout=90) == "relayed\n", log.read_text()[-3000:]
        sent.forget()
    finally:
        worker.terminate()
        worker.wait(30)


def test_results_are_the_ones_the_sandbox_gives(executor_worker: Any) -> None:
    program = Program("import sys\nprint('out')\nprint('err', file=sys.stderr)\nraise SystemExit(4)\n")
    [remote] = QueueExecutor(executor_worker.app, timeout_s=60).run_many([program])
    local = sandbox.run(program.source, timeout_s=program.timeout_s, memory_mb=program.memory_mb)
    assert (remote.passed, remote.status, remote.limit, remote.returncode) == (False, "failed", None, 4)
    assert (remote.stdout, remote.stderr) == (local.stdout, local.stderr) == ("out\n", "err\n")


def test_the_worker_logs_its_sandbox_layers(executor_worker: Any) -> None:
    assert f"sandbox: {available().describe()}" in executor_worker.log.read_text(errors="replace")


def test_no_executor_service_is_a_timeout_not_a_result(executor_worker: Any, no_local_sandbox: None) -> None:
    app = make_celery("tests-nobody", replace(Settings.from_env(), redis_url=executor_worker.redis_url))
    nobody = f"execute-nobody-{time.monotonic_ns()}"  # a queue no worker consumes
    app.conf.task_routes = {queues.TASK_RUN_PROGRAMS: {"queue": nobody}}
    try:
        started = time.monotonic()
        with pytest.raises(ExecutorTimeout, match="is a worker consuming queue 'execute'"):
            QueueExecutor(app, timeout_s=1.0).run_many([Program("print(1)\n")])
        assert time.monotonic() - started < 10
    finally:
        app.close()
        redis.Redis.from_url(executor_worker.redis_url).delete(nobody)


def test_a_bad_chunk_is_refused_with_its_error_and_the_worker_carries_on(executor_worker: Any) -> None:
    sent = executor_worker.app.send_task(queues.TASK_RUN_PROGRAMS, args=[[{"source": "pass", "uid": 0}]])
    with pytest.raises(ValueError, match="unknown program fields"):
        sent.get(timeout=60)
    sent.forget()
    [result] = QueueExecutor(executor_worker.app, timeout_s=60).run_many([Program("print('still here')\n")])
    assert result.stdout == "still here\n"
