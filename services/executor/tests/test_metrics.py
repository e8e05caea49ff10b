"""A Celery worker's Prometheus endpoint, on a real executor worker and a real Redis: tasks by stage and
outcome (success, failure, dead-lettered), their run time, redeliveries, dead letters and the sandbox's runs
by outcome; with a prefork pool (prometheus-client's multiprocess mode), the parent's endpoint shows what
its child processes ran."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import celery.exceptions
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from warrior.common import metrics, queues
from warrior.common.celery_app import make_celery
from warrior.common.settings import Settings
from warrior.executor.runner import Program

pytestmark = pytest.mark.stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
TASK = queues.TASK_RUN_PROGRAMS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{metrics.PATH}", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_when(port: int, name: str, wanted: float, **labels: str) -> Samples:
    """The samples once `name{labels}` reached `wanted`: a task's result reaches the caller just before the
    worker counts the task's end."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(port)
        if value(samples, name, **labels) >= wanted or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


Start = Callable[..., int]


@pytest.fixture()
def start_worker(redis_url: str, tmp_path: Path) -> Iterator[Start]:
    """start_worker(pool, **env) runs an executor worker serving its metrics; returns the metrics port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(pool: str, **extra_env: str) -> int:
        port = _free_port()
        log_path = tmp_path / f"worker-{pool}.log"
        env = dict(os.environ) | {
            "REDIS_URL": redis_url, "WARRIOR_HOME": str(tmp_path / "home"),
            "WARRIOR_STORE_URL": f"file://{tmp_path / 'store'}", "WARRIOR_EXECUTOR_WORKERS": "1",
            "PYTHONUNBUFFERED": "1", metrics.PORT_ENV: str(port), metrics.HOST_ENV: "127.0.0.1", **extra_env,
        }  # fmt: skip
        argv = [
            sys.executable, "-m", "celery", "-A", "warrior.executor.worker", "worker", "-Q", queues.EXECUTE,
            "-P", pool, "-c", "1", "-n", f"metrics-{pool}-{os.getpid()}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 60
        while "ready." not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _send(redis_url: str, programs: object, task_id: str | None = None) -> object:
    app = make_celery("tests-metrics", replace(Settings.from_env(), redis_url=redis_url))
    try:
        return app.send_task(TASK, args=[programs], task_id=task_id).get(timeout=60)
    finally:
        app.close()


def _ok(source: str = "print(1)\n") -> list[dict[str, object]]:
    return [Program(source, timeout_s=5.0).to_dict()]


def test_a_workers_endpoint_counts_tasks_by_stage_and_outcome_and_the_sandboxs_runs(
    start_worker: Start, redis_url: str
) -> None:
    port = start_worker("threads")
    before = scrape(port)
    assert value(before, "warrior_tasks_total", task=TASK, outcome="success") == 0

    _send(redis_url, _ok() + _ok("assert 1 == 2\n"))
    with pytest.raises(ValueError):
        _send(redis_url, "not a list")  # the task raises: a failure, with its exception type
    # A message delivered for the sixth time is dead-lettered, not run.
    redis.Redis.from_url(redis_url).set("warrior:deliveries:dead-one", 5)
    with pytest.raises(RuntimeError, match="dead-lettered"):
        _send(redis_url, _ok(), task_id="dead-one")

    samples = scrape_when(port, "warrior_task_seconds_count", 3, task=TASK)
    assert value(samples, "warrior_tasks_total", task=TASK, outcome="success") == 1
    assert value(samples, "warrior_tasks_total", task=TASK, outcome="failure") == 1
    assert value(samples, "warrior_tasks_total", task=TASK, outcome="dead_lettered") == 1
    assert value(samples, "warrior_task_failures_total", task=TASK, reason="ValueError") == 1
    assert value(samples, "warrior_dead_letters_total", task=TASK) == 1
    assert value(samples, "warrior_task_redeliveries_total", task=TASK) == 1
    assert value(samples, "warrior_task_seconds_count", task=TASK) == 3
    assert value(samples, "warrior_task_seconds_sum", task=TASK) > 0
    assert value(samples, "warrior_executor_runs_total", status="passed") == 1
    assert value(samples, "warrior_executor_runs_total", status="failed") == 1
    assert value(samples, "warrior_executor_run_seconds_count", status="passed") == 1
    served = {name for name, _ in samples if name.startswith("warrior_")}
    assert served <= metrics.exported_series(), served - metrics.exported_series()


def test_a_prefork_workers_endpoint_shows_what_its_child_processes_ran(
    start_worker: Start, redis_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "multiproc"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"")  # left by an earlier life of the worker: removed at start
    port = start_worker("prefork", **{metrics.MULTIPROC_ENV: str(folder)})
    assert not (folder / "counter_999999.db").exists()
    try:
        _send(redis_url, _ok())
    except celery.exceptions.TimeoutError:
        pytest.fail("the prefork worker ran no task")
    samples = scrape_when(port, "warrior_tasks_total", 1, task=TASK, outcome="success")
    assert value(samples, "warrior_tasks_total", task=TASK, outcome="success") == 1
    assert value(samples, "warrior_task_seconds_count", task=TASK) == 1
    assert value(samples, "warrior_executor_runs_total", status="passed") == 1
    assert any(path.name.startswith("counter_") for path in folder.iterdir()), "the child wrote no samples"
    # Only what a worker reports: no controller gauge leaks in through the shared files.
    served = {name for name, _ in samples if name.startswith("warrior_")}
    assert served <= metrics.exported_series() and not {n for n in served if n.startswith("warrior_controller")}
