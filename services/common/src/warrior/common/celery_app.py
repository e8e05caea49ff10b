"""The Celery application every pipeline worker shares, with the reliability settings of the design."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import Celery, Task
from celery.signals import task_postrun, task_prerun

from warrior.common import consumer_watchdog, metrics, queues
from warrior.common.logs import install_celery_logging
from warrior.common.settings import Settings, celery_broker_url
from warrior.common.store import StoreUnavailable


class ServiceUnavailable(RuntimeError):
    """Another service of the pipeline did not answer in time (e.g. no executor worker took the runs)."""


# Errors that say "not now" rather than "never": Redis restarting, the object store unreachable.
# kombu's OperationalError: sending the next stage's task while the broker is down.
TRANSIENT_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    StoreUnavailable,
    ServiceUnavailable,
)
RETRY_BUDGET_S = float(os.environ.get("WARRIOR_RETRY_BUDGET_S", "900"))
RESULT_EXPIRES_S = 24 * 3600
_log = logging.getLogger(__name__)


class WarriorTask(Task):  # type: ignore[misc]
    """Every pipeline task retries transient errors in place, with exponential backoff (1 s doubling
    to 30 s, jittered) for up to RETRY_BUDGET_S, instead of failing and losing its unit of work.

    In place, not through Celery's `retry`: a retry is a new message, and publishing it fails
    exactly when Redis is the thing that is down (Celery then rejects the original for good).
    Tasks are idempotent, so running one again from the top is safe; each in-place attempt counts
    as a retry (`request.retries`), so the delivery counter does not mistake it for a redelivery.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + RETRY_BUDGET_S
        delay = 1.0
        while True:
            try:
                return super().__call__(*args, **kwargs)
            except TRANSIENT_ERRORS as exc:
                if time.monotonic() + delay > deadline:
                    raise
                _log.warning("%s: %s; trying again in %.1fs", self.name, exc, delay)
                metrics.TASK_RETRIES.labels(self.name, type(exc).__name__).inc()
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(30.0, delay * 2)
                request = self.request
                if request is not None and request.id is not None:
                    request.retries = (request.retries or 0) + 1


def restore_interval_s(visibility_timeout_s: float) -> float:
    """Seconds between the broker's scans for unacknowledged messages past their visibility timeout."""
    return max(1.0, min(10.0, visibility_timeout_s / 4))


def make_celery(service: str, settings: Settings | None = None) -> Celery:
    """A Celery app bound to the stack's Redis.

    Reliability: a task is acknowledged only after it finished (acks_late), a task whose worker
    died is rejected back to the queue (reject_on_worker_lost), a worker holds one message at a
    time (prefetch 1), and the visibility timeout outlasts the longest task so a slow task is not
    handed to a second worker while the first still runs.
    """
    settings = settings or Settings.from_env()
    broker = celery_broker_url(settings.redis_url)
    visibility = float(os.environ.get("WARRIOR_VISIBILITY_TIMEOUT_S", "3600"))
    app = Celery(f"warrior.{service}", broker=broker, backend=broker, task_cls=WarriorTask)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Most tasks ignore their result; the ones kept (finalize, build, train ...) are read by the
        # controller within its stall window or by a CLI waiting on them: a day is plenty.
        result_expires=RESULT_EXPIRES_S,
        # The route carries the default priority: `send_task` by name ignores task_default_priority,
        # and a message without one would land in level 0, beside the newcomers' backfills.
        task_routes={
            name: {"queue": queue, "priority": queues.PRIORITY_DEFAULT} for name, queue in queues.TASK_QUEUES.items()
        },
        task_default_queue=queues.MINE,
        # Redis emulates priorities with one list per level, 0 first: newcomers' backfill battles
        # are sent at 0 so they run before the campaign's regular work (sent at the default, 5).
        task_default_priority=queues.PRIORITY_DEFAULT,
        task_queue_max_priority=9,
        broker_transport_options={
            "priority_steps": list(range(10)),
            "queue_order_strategy": "priority",
            "visibility_timeout": visibility,
            # kombu looks for messages of dead workers every interval x throttle seconds (100 s by
            # default, whatever the visibility timeout): look every quarter of the timeout (10 s at
            # most) and on every look, so a killed worker's message is back soon after the timeout.
            "unacked_restore_interval": restore_interval_s(visibility),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": visibility},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    _record_stage_timing()
    consumer_watchdog.install(app, service)
    install_celery_logging(service)
    metrics.instrument_celery()
    return app


_started: dict[str, float] = {}
_timing_lock = threading.Lock()


def _record_stage_timing() -> None:
    """Add each task's run time to its campaign's per-stage totals (`timing` in `warrior status --json`).

    This is what the benchmarks read to say where a campaign's time goes.
    """

    @task_prerun.connect(weak=False)
    def _start(task_id: str | None = None, **_: Any) -> None:
        if task_id:
            with _timing_lock:
                _started[task_id] = time.perf_counter()

    @task_postrun.connect(weak=False)
    def _stop(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
        with _timing_lock:
            began = _started.pop(task_id or "", None)
        from warrior.common.runtime import deliveries_keys, get_runtime  # late: the runtime is built on first use

        pipe = get_runtime().redis.pipeline()
        if task_id and task is not None and getattr(task.request, "id", None) == task_id:
            # The task ran to its end (returned or raised): its message is acknowledged and never
            # redelivered, so its delivery counts (Runtime.admit) are dropped now rather than expiring.
            # A worker killed mid-task never gets here: its counts stay, and the dead-letter limit holds.
            pipe.delete(*deliveries_keys(task_id, int(task.request.retries or 0)))
        if began is not None and args and isinstance(args[0], str) and task is not None:
            key = f"warrior:campaign:{args[0]}:timing"
            pipe.hincrbyfloat(key, f"{task.name}.seconds", time.perf_counter() - began)
            pipe.hincrby(key, f"{task.name}.tasks", 1)
        if len(pipe):
            pipe.execute()
