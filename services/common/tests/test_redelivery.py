"""A task whose worker was SIGKILLed comes back to another worker soon after its visibility timeout,
not after kombu's default scan period (100 s), and it runs to the end there."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from warrior.common.celery_app import make_celery, restore_interval_s
from warrior.common.redis_client import connect
from warrior.common.settings import Settings

VISIBILITY_S = 3
WAIT_S = 60.0  # generous bound on every wait; kombu's default scan alone would take 100 s

APP = """
import os
import time
from warrior.common.celery_app import make_celery
from warrior.common.redis_client import connect
from warrior.common.settings import Settings

app = make_celery('redelivery-test')

@app.task(name='redelivery_test.slow', bind=True)
def slow(self, key, seconds):
    client = connect(Settings.from_env().redis_url)
    client.rpush(key, 'started %d' % os.getpid())
    time.sleep(seconds if client.llen(key) == 1 else 0)  # the first delivery hangs until it is killed
    client.rpush(key, 'finished')
    return 'done'
"""


def test_restore_interval_follows_the_visibility_timeout() -> None:
    assert restore_interval_s(3600) == 10
    assert restore_interval_s(8) == 2
    assert restore_interval_s(1) == 1


@pytest.fixture()
def worker_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("WARRIOR_VISIBILITY_TIMEOUT_S", str(VISIBILITY_S))
    (tmp_path / "redelivery_app.py").write_text(APP)
    paths = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    yield dict(os.environ) | {"PYTHONPATH": os.pathsep.join(paths)}


def _start(queue: str, name: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "celery", "-A", "redelivery_app", "worker", "--pool", "solo", "-Q", queue,
        "-n", f"{name}@%h", "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "INFO",
    ]  # fmt: skip
    log = (cwd / f"{name}.log").open("wb")
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_for(predicate: object, what: str, procs: list[subprocess.Popen[bytes]], cwd: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < WAIT_S:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.1)
    logs = "\n".join(p.read_text()[-2000:] for p in cwd.glob("*.log"))
    pytest.fail(f"{what} did not happen within {WAIT_S} s\n{logs}")


def test_a_killed_workers_task_is_redelivered_soon_after_the_visibility_timeout(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """Two workers have been running a while (so each made its first scan for lost messages, which
    kombu makes at once); the one running the task is killed; the other runs it again."""
    queue = "redelivery-" + secrets.token_hex(4)
    key = f"redelivery-test:{queue}"
    client = connect(Settings.from_env().redis_url)
    app = make_celery("redelivery-test", Settings.from_env())
    procs = [_start(queue, name, worker_env, tmp_path) for name in ("first", "second")]
    try:
        time.sleep(12)  # past both workers' first scan (kombu's interval is 10 s)
        result = app.send_task("redelivery_test.slow", args=[key, 3600], queue=queue)
        _wait_for(lambda: client.llen(key) == 1, "the first delivery", procs, tmp_path)
        pid = int(str(client.lindex(key, 0)).split()[1])
        victim = next(p for p in procs if p.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        waited = _wait_for(lambda: client.llen(key) == 3, "the redelivery", procs, tmp_path)
        assert result.get(timeout=10) == "done"
        entries: list[str] = client.lrange(key, 0, -1)  # type: ignore[assignment]  # decoded: str
        assert entries[1] != entries[0] and entries[1].startswith("started ") and entries[2] == "finished"
        # Back after the visibility timeout, well before kombu's default 100 s scan.
        assert VISIBILITY_S <= waited + 1 < 40, waited
    finally:
        app.close()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        client.delete(key)
