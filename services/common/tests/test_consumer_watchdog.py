"""A worker whose broker consumer stopped polling while its queue holds work starts itself afresh
(same command, same pid) and the waiting task runs; a healthy worker that sits idle longer than the
stall window is left alone."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from warrior.common.celery_app import make_celery
from warrior.common.consumer_watchdog import ConsumerWatchdog, stall_seconds
from warrior.common.redis_client import connect
from warrior.common.settings import Settings

STALL_S = 2
WAIT_S = 60.0

# The wedge: what kombu's bug leaves behind (celery/kombu#2629), the event loop's per-tick callbacks
# gone, so no BRPOP is sent again once the one in flight returns. Only the first run of the worker
# is wedged; its fresh copy (WARRIOR_CONSUMER_RESTARTS set) is not.
APP = """
import os
from celery.signals import worker_ready
from warrior.common.celery_app import make_celery
from warrior.common.redis_client import connect
from warrior.common.settings import Settings

app = make_celery('watchdog-test')
HUB = []

@worker_ready.connect
def _hub(sender=None, **_):
    HUB.append(sender.controller.hub)

@app.task(name='watchdog_test.wedge')
def wedge(key):
    if not os.environ.get('WARRIOR_CONSUMER_RESTARTS'):
        hub = HUB[0]
        hub.call_soon(hub.on_tick.clear)
    connect(Settings.from_env().redis_url).rpush(key, 'wedged')

@app.task(name='watchdog_test.mark')
def mark(key):
    run = os.environ.get('WARRIOR_CONSUMER_RESTARTS', '0')
    connect(Settings.from_env().redis_url).rpush(key, '%d %s' % (os.getpid(), run))
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _watchdog(clock: Clock, waiting: list[int | None], held: list[int]) -> ConsumerWatchdog:
    return ConsumerWatchdog(stall_s=10, waiting=lambda: waiting[0], held=lambda: held[0], clock=clock)


def test_a_quiet_consumer_with_work_waiting_is_wedged_on_the_second_look() -> None:
    clock, waiting, held = Clock(), [3], [0]
    watchdog = _watchdog(clock, waiting, held)
    clock.now += 5
    assert watchdog.wedged() == 0  # quiet for less than the stall window
    clock.now += 6
    assert watchdog.wedged() == 0  # first look: suspected only
    clock.now += 2
    assert watchdog.wedged() == 3  # nothing received since: wedged


def test_a_message_received_between_looks_clears_the_suspicion() -> None:
    clock, waiting, held = Clock(), [1], [0]
    watchdog = _watchdog(clock, waiting, held)
    clock.now += 11
    assert watchdog.wedged() == 0
    watchdog.received()
    clock.now += 11  # quiet again for a whole window: a new suspicion, not a confirmation
    assert watchdog.wedged() == 0
    clock.now += 1
    assert watchdog.wedged() == 1


def test_no_wedge_while_the_worker_holds_a_task_the_queues_are_empty_or_redis_cannot_say() -> None:
    clock, waiting, held = Clock(), [2], [1]
    watchdog = _watchdog(clock, waiting, held)
    for _ in range(3):
        clock.now += 30
        assert watchdog.wedged() == 0  # busy: a long task is not a wedge
    held[0] = 0
    for value in (0, None):
        waiting[0] = value
        for _ in range(3):
            clock.now += 30
            assert watchdog.wedged() == 0


def test_the_stall_window_comes_from_the_environment_and_a_bad_value_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WARRIOR_CONSUMER_STALL_S", raising=False)
    assert stall_seconds() == 60
    monkeypatch.setenv("WARRIOR_CONSUMER_STALL_S", "0")
    assert stall_seconds() == 0
    for bad in ("soon", "-5"):
        monkeypatch.setenv("WARRIOR_CONSUMER_STALL_S", bad)
        with pytest.raises(ValueError, match="WARRIOR_CONSUMER_STALL_S"):
            stall_seconds()


@pytest.fixture()
def worker(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A real threads-pool worker on its own queue, with a 2 s stall window."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    (tmp_path / "watchdog_app.py").write_text(APP)
    paths = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ) | {"PYTHONPATH": os.pathsep.join(paths), "WARRIOR_CONSUMER_STALL_S": str(STALL_S)}
    env.pop("WARRIOR_CONSUMER_RESTARTS", None)
    queue = "watchdog-" + secrets.token_hex(4)
    argv = [
        sys.executable, "-m", "celery", "-A", "watchdog_app", "worker", "-P", "threads", "-c", "2", "-Q", queue,
        "-n", f"{queue}@%h", "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "INFO",
    ]  # fmt: skip
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield queue, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_for(predicate: object, what: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {WAIT_S} s\n{log.read_text()[-3000:]}")


def test_a_wedged_worker_starts_afresh_with_the_same_pid_and_runs_the_waiting_task(
    worker: tuple[str, Path],
) -> None:
    queue, log = worker
    key = f"watchdog-test:{queue}"
    client = connect(Settings.from_env().redis_url)
    app = make_celery("watchdog-test-sender", Settings.from_env())
    try:
        app.send_task("watchdog_test.mark", args=[key], queue=queue)
        _wait_for(lambda: client.llen(key) == 1, "the first task", log)
        pid, run = str(client.lindex(key, 0)).split()
        assert run == "0"
        app.send_task("watchdog_test.wedge", args=[key], queue=queue)
        _wait_for(lambda: client.llen(key) == 2, "the wedge", log)
        time.sleep(3)  # the BRPOP in flight at the wedge times out (1 s); none follows
        app.send_task("watchdog_test.mark", args=[key], queue=queue)
        _wait_for(lambda: client.llen(key) == 3, "the waiting task, after the worker started afresh", log)
        assert str(client.lindex(key, 2)).split() == [pid, "1"]  # the same process, its fresh copy
        assert "broker consumer is wedged" in log.read_text()
    finally:
        app.close()
        client.delete(key)


def test_a_healthy_worker_idle_longer_than_the_window_is_left_alone(worker: tuple[str, Path]) -> None:
    queue, log = worker
    key = f"watchdog-test:{queue}"
    client = connect(Settings.from_env().redis_url)
    app = make_celery("watchdog-test-sender", Settings.from_env())
    try:
        for n in range(1, 5):
            app.send_task("watchdog_test.mark", args=[key], queue=queue)
            _wait_for(lambda n=n: client.llen(key) == n, f"task {n}", log)
            time.sleep(STALL_S + 1.5)  # idle past the window, then a message arrives
        runs = {str(entry).split()[1] for entry in client.lrange(key, 0, -1)}  # type: ignore[union-attr]
        assert runs == {"0"}, log.read_text()[-3000:]
        assert "wedged" not in log.read_text()
    finally:
        app.close()
        client.delete(key)
