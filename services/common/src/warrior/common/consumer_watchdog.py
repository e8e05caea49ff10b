"""A worker whose consumer went quiet while its queues hold work starts itself afresh.

After the broker's connection breaks and comes back (Redis restarted, a network blip), a Celery
worker on Redis can stay alive, answer pings and take nothing more from its queues: kombu's event
loop loses the callback that polls the queues (celery/celery#8030, celery/kombu#2629, reported
against recent releases too). Its messages wait for good and the campaign stalls. Nothing
inside Celery notices, so this watchdog does: when messages wait in the worker's queues, the worker
holds none (no task running, none reserved) and it has received nothing for `stall_s` seconds, its
consumer is wedged. The worker then replaces itself with a fresh copy of the same command (exec, so
the process keeps its pid: the local stack and Kubernetes see the same process, and no supervisor
is needed). Nothing is lost: an idle worker holds no message.

`WARRIOR_CONSUMER_STALL_S` (default 60; 0 turns the watchdog off) sets `stall_s`. A healthy idle
worker takes a waiting message within about a second, so a minute cannot be mistaken for a wedge.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from warrior.common import metrics

_log = logging.getLogger(__name__)
DEFAULT_STALL_S = 60.0
# How many times this worker started itself afresh: carried across the exec, so the metric counts on.
RESTARTS_ENV = "WARRIOR_CONSUMER_RESTARTS"


def stall_seconds() -> float:
    """`WARRIOR_CONSUMER_STALL_S`, checked: a number of seconds, 0 for off."""
    raw = os.environ.get("WARRIOR_CONSUMER_STALL_S", str(DEFAULT_STALL_S))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"WARRIOR_CONSUMER_STALL_S must be seconds (a number; 0 turns it off), not {raw!r}") from None
    if value < 0:
        raise ValueError(f"WARRIOR_CONSUMER_STALL_S must be 0 or more, not {raw!r}")
    return value


class ConsumerWatchdog:
    """Decides, from what it is told, whether the consumer is wedged.

    `waiting()` counts the messages in the worker's queues (None when the broker cannot say, e.g.
    while Redis is down: then nothing is decided), `held()` counts the messages the worker holds
    (running or reserved). `received()` is called for every message the consumer takes.
    """

    def __init__(
        self,
        *,
        stall_s: float,
        waiting: Callable[[], int | None],
        held: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_s = stall_s
        self._waiting = waiting
        self._held = held
        self._clock = clock
        self._last_received = clock()
        # The last reception time at the first look that found the consumer quiet with work waiting.
        self._suspected: float | None = None

    def received(self) -> None:
        self._last_received = self._clock()

    def wedged(self) -> int:
        """The messages waiting while the consumer is wedged; 0 when it is not (or cannot be told).

        A wedge is confirmed on two looks in a row with nothing received between them: a message
        counted as waiting in the instant between its arrival and the worker taking it is not one.
        """
        if self._held() or self._clock() - self._last_received < self.stall_s:
            self._suspected = None
            return 0
        waiting = self._waiting()
        if not waiting:
            self._suspected = None
            return 0
        if self._suspected != self._last_received:
            self._suspected = self._last_received
            return 0
        return waiting


def _queue_waiting(client: Any, names: Iterable[str]) -> int | None:
    from warrior.common.batches import queue_depth_or_none

    total = 0
    for name in names:
        depth = queue_depth_or_none(client, name)
        if depth is None:
            return None
        total += depth
    return total


def install(app: Any, service: str) -> None:
    """Watch the consumer of every worker this app starts (a no-op in senders: it starts on worker_ready)."""
    from celery.signals import task_received, worker_ready, worker_shutting_down

    stall_s = stall_seconds()
    if stall_s == 0:
        return
    if restarts := int(os.environ.get(RESTARTS_ENV, "0") or 0):
        metrics.CONSUMER_STALLS.labels(service).inc(restarts)
    stopping = threading.Event()
    watchdogs: list[ConsumerWatchdog] = []

    def _received(**_: Any) -> None:
        for watchdog in watchdogs:
            watchdog.received()

    def _stopping(**_: Any) -> None:
        stopping.set()

    def _ready(sender: Any = None, **_: Any) -> None:
        if sender is None or sender.app is not app:
            return
        from celery.worker import state

        from warrior.common.runtime import get_runtime

        names = sorted(app.amqp.queues.consume_from or {})
        client = get_runtime().redis
        watchdog = ConsumerWatchdog(
            stall_s=stall_s,
            waiting=lambda: _queue_waiting(client, names),
            held=lambda: len(state.active_requests) + len(state.reserved_requests),
        )
        watchdogs.append(watchdog)
        threading.Thread(
            target=_watch, args=(watchdog, service, names, stopping), name="consumer-watchdog", daemon=True
        ).start()

    task_received.connect(_received, weak=False)
    worker_shutting_down.connect(_stopping, weak=False)
    worker_ready.connect(_ready, weak=False)


def _watch(watchdog: ConsumerWatchdog, service: str, names: list[str], stopping: threading.Event) -> None:
    interval = max(1.0, watchdog.stall_s / 6)
    while not stopping.wait(interval):
        try:
            waiting = watchdog.wedged()
        except Exception:  # noqa: BLE001 - a look that failed decides nothing; the next one tries again
            _log.debug("consumer watchdog: look failed", exc_info=True)
            continue
        if waiting:
            _log.error(
                "%s worker: %d message(s) wait in %s, and this idle worker has taken none for %.0fs: "
                "its broker consumer is wedged; starting afresh",
                service, waiting, ", ".join(names), watchdog.stall_s,
            )  # fmt: skip
            restart_process()
            return


def restart_process() -> None:
    """Replace this process with a fresh run of the command that started it (the same pid)."""
    env = dict(os.environ)
    env[RESTARTS_ENV] = str(int(env.get(RESTARTS_ENV, "0") or 0) + 1)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
