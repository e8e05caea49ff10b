"""Every Prometheus series the arena exports, and the HTTP endpoint that serves them.

One module for all of them, so the names, labels and help texts live in one place: the experts
(`warrior_expert_*`), the Celery workers (`warrior_task*`, `warrior_ledger_*`, `warrior_dead_letters_total`),
the executor (`warrior_executor_*`) and the campaign controller (`warrior_campaign_*`, `warrior_queue_*`,
`warrior_controller_*`). docs/observability.md lists them (scripts/gen_metrics_reference.py writes
the table from `ALL`); the Grafana dashboard under charts/warrior/files/ queries them.

A process serves its series on `WARRIOR_METRICS_PORT` (0 or unset: no endpoint), bound to
`WARRIOR_METRICS_HOST` (default 0.0.0.0). A Celery worker started with a prefork pool runs its tasks
in child processes: with `PROMETHEUS_MULTIPROC_DIR` set (before the worker starts) each child writes
its samples there and the parent's endpoint sums them (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client import multiprocess as _multiprocess

PORT_ENV = "WARRIOR_METRICS_PORT"
HOST_ENV = "WARRIOR_METRICS_HOST"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PATH = "/metrics"

log = logging.getLogger("warrior.metrics")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_RUN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_RETRY_AFTER_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

# -- experts (warrior-expert) ---------------------------------------------------------------------
EXPERT_INFO = Gauge(
    "warrior_expert_info",
    "1 per expert process: the model, engine and weights revision it serves",
    ["expert", "model", "engine", "revision"],
    multiprocess_mode="max",
)
EXPERT_REQUESTS = Counter(
    "warrior_expert_requests_total",
    "Model calls answered, by gRPC method and outcome (ok, or the gRPC status: invalid_argument, "
    "resource_exhausted, unavailable, cancelled, ...)",
    ["expert", "method", "outcome"],
)
EXPERT_REQUEST_SECONDS = Histogram(
    "warrior_expert_request_seconds",
    "Seconds from receiving a model call to answering it (answers from the answer cache included)",
    ["expert", "method"],
    buckets=_LATENCY_BUCKETS,
)
EXPERT_PROMPT_TOKENS = Counter(
    "warrior_expert_prompt_tokens_total",
    "Prompt tokens the engine read (Complete and Chat calls it ran; cached answers cost none)",
    ["expert", "model"],
)
EXPERT_COMPLETION_TOKENS = Counter(
    "warrior_expert_completion_tokens_total",
    "Tokens the engine generated; tokens/s is rate() of this",
    ["expert", "model"],
)
EXPERT_IN_FLIGHT = Gauge(
    "warrior_expert_in_flight",
    "Engine calls in this process now, running or waiting for a free sequence",
    ["expert"],
    multiprocess_mode="livesum",
)
EXPERT_WAITING = Gauge(
    "warrior_expert_waiting",
    "Engine calls beyond the engine's capacity (in flight minus capacity): queued for a free sequence",
    ["expert"],
    multiprocess_mode="livesum",
)
EXPERT_REFUSALS = Counter(
    "warrior_expert_refusals_total",
    "Calls refused because the engine is overloaded (RESOURCE_EXHAUSTED, with a retry-after)",
    ["expert", "reason"],
)
EXPERT_RETRY_AFTER_SECONDS = Histogram(
    "warrior_expert_refusal_retry_after_seconds",
    "The retry-after given with each refusal, in seconds",
    ["expert"],
    buckets=_RETRY_AFTER_BUCKETS,
)
EXPERT_ANSWER_CACHE = Counter(
    "warrior_expert_answer_cache_total",
    "Lookups of calls carrying a ledger key in the answer cache: memory, shared (Redis) and joined "
    "(the same call already running here) are hits; miss ran the engine",
    ["expert", "result"],
)

# -- Celery workers --------------------------------------------------------------------------------
TASKS = Counter(
    "warrior_tasks_total",
    "Tasks ended, by stage (task name) and outcome: success, failure, retry, dead_lettered, ...",
    ["task", "outcome"],
)
TASK_SECONDS = Histogram(
    "warrior_task_seconds",
    "Run time of each task; rate(_sum) by task is the busy worker-seconds per second of each stage",
    ["task"],
    buckets=_TASK_BUCKETS,
)
TASK_FAILURES = Counter(
    "warrior_task_failures_total",
    "Tasks that raised, by stage and exception type",
    ["task", "reason"],
)
TASK_RETRIES = Counter(
    "warrior_task_retries_total",
    "In-place retries of a task after a transient error (Redis, the object store or a service unreachable), "
    "by stage and exception type",
    ["task", "reason"],
)
TASK_REDELIVERIES = Counter(
    "warrior_task_redeliveries_total",
    "Deliveries of a task message after its first (its worker died or it outlived the visibility timeout)",
    ["task"],
)
DEAD_LETTERS = Counter(
    "warrior_dead_letters_total",
    "Task messages set aside after too many deliveries (warrior:deadletter)",
    ["task"],
)
CONSUMER_STALLS = Counter(
    "warrior_consumer_stalls_total",
    "Times a worker started itself afresh because messages waited in its queues while it, idle, took none "
    "for WARRIOR_CONSUMER_STALL_S (its broker consumer wedged after a reconnection)",
    ["service"],
)
LEDGER_CALLS = Counter(
    "warrior_ledger_calls_total",
    "Model calls through the call ledger: reused (answered from a record, not paid again) or paid",
    ["kind", "result"],
)

# -- executor --------------------------------------------------------------------------------------
EXECUTOR_RUNS = Counter(
    "warrior_executor_runs_total",
    "Programs run in the sandbox, by outcome (passed, failed, timeout, memory, blocked, killed, error)",
    ["status"],
)
EXECUTOR_RUN_SECONDS = Histogram(
    "warrior_executor_run_seconds",
    "Wall-clock seconds of each sandboxed run",
    ["status"],
    buckets=_RUN_BUCKETS,
)

# -- campaign controller (only the leader reports the campaign and queue gauges) --------------------
CONTROLLER_LEADER = Gauge(
    "warrior_controller_leader",
    "1 while this controller replica (its --identity) leads and reports the campaign and queue gauges, else 0",
    ["controller"],
    multiprocess_mode="max",
)
CONTROLLER_ACTIONS = Counter(
    "warrior_controller_actions_total",
    "What the controller did to a campaign: resent (stalled stages sent again), finished, built, "
    "build-failed, error, waiting-for-experts, ...",
    ["action"],
)
CAMPAIGN_STATUS = Gauge(
    "warrior_campaign_status",
    "1 for a campaign's current status (running, building, finished, build_failed, cancelled)",
    ["campaign", "status"],
    multiprocess_mode="max",
)
CAMPAIGN_MINED = Gauge("warrior_campaign_mined", "Instructions mined", ["campaign"], multiprocess_mode="max")
CAMPAIGN_KEPT = Gauge(
    "warrior_campaign_kept", "Instructions kept after screening", ["campaign"], multiprocess_mode="max"
)
CAMPAIGN_DROPPED = Gauge(
    "warrior_campaign_dropped",
    "Instructions dropped in screening, by reason",
    ["campaign", "reason"],
    multiprocess_mode="max",
)
CAMPAIGN_BATTLES = Gauge("warrior_campaign_battles", "Battles fought", ["campaign"], multiprocess_mode="max")
CAMPAIGN_VOTES = Gauge("warrior_campaign_votes", "Judge votes cast", ["campaign"], multiprocess_mode="max")
CAMPAIGN_ROWS = Gauge(
    "warrior_campaign_rows",
    "Dataset rows collected (instructions with a winning answer)",
    ["campaign"],
    multiprocess_mode="max",
)
CAMPAIGN_FAILURES = Gauge(
    "warrior_campaign_failures",
    "Units of work that could not be done, by kind (mine, battle, judge, collect, ...)",
    ["campaign", "kind"],
    multiprocess_mode="max",
)
CAMPAIGN_STAGE_BUSY_SECONDS = Gauge(
    "warrior_campaign_stage_busy_seconds",
    "Seconds workers spent on each stage (task name) of a campaign, summed over tasks; the stage whose "
    "total grows fastest bounds the campaign",
    ["campaign", "task"],
    multiprocess_mode="max",
)
CAMPAIGN_STAGE_TASKS = Gauge(
    "warrior_campaign_stage_tasks",
    "Tasks run for each stage of a campaign",
    ["campaign", "task"],
    multiprocess_mode="max",
)
QUEUE_DEPTH = Gauge(
    "warrior_queue_depth",
    "Messages waiting in a Celery queue, by priority level (one Redis list each)",
    ["queue", "priority"],
    multiprocess_mode="max",
)
QUEUE_UNACKED = Gauge(
    "warrior_queue_unacked",
    "Messages of a queue handed to workers and not yet acknowledged (running, or held by a worker that died)",
    ["queue"],
    multiprocess_mode="max",
)

ALL: tuple[Counter | Gauge | Histogram, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, Counter | Gauge | Histogram)
)


def series_names(metric: Counter | Gauge | Histogram) -> set[str]:
    """The sample names a metric exposes (a counter's `_total`, a histogram's `_bucket`/`_sum`/`_count`)."""
    name = metric._name
    kind = metric._type
    if kind == "counter":
        return {f"{name}_total", f"{name}_created"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name}


def exported_series() -> set[str]:
    """Every sample name this module can expose."""
    return set().union(*(series_names(m) for m in ALL))


def label_value(text: str, limit: int = 64) -> str:
    """A bounded label value from free text: its first word-ish part (before ':'), at most `limit` characters."""
    return text.split(":", 1)[0].strip()[:limit] or "unknown"


# -- serving -----------------------------------------------------------------------------------------
def port_from_env(default: int = 0) -> int:
    value = os.environ.get(PORT_ENV, "").strip()
    if not value:
        return default
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{PORT_ENV} must be a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{PORT_ENV} must be a port number (0-65535, 0: off), got {port}")
    return port


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    return Path(value) if value else None


def serving_registry() -> CollectorRegistry:
    """The registry the endpoint serves: this process', or every process' samples in multiprocess mode."""
    folder = multiprocess_dir()
    if folder is None:
        return REGISTRY
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return registry


_served: dict[str, int] = {}
_serve_lock = threading.Lock()


def serve(port: int | None = None, *, host: str | None = None) -> int | None:
    """Serve /metrics on `port` (default: $WARRIOR_METRICS_PORT; 0: no endpoint) in a daemon thread.

    Returns the bound port, or None when off. A port that cannot be bound is logged, not fatal: the
    service goes on without its metrics. Serving twice in one process returns the first port.
    """
    port = port_from_env() if port is None else port
    if not port:
        return None
    host = host or os.environ.get(HOST_ENV) or "0.0.0.0"
    with _serve_lock:
        if "port" in _served:
            return _served["port"]
        try:
            server, _ = start_http_server(port, addr=host, registry=serving_registry())
        except OSError as exc:
            log.warning("metrics: cannot serve on %s:%d (%s); going on without a metrics endpoint", host, port, exc)
            return None
        _served["port"] = int(server.server_address[1])
    log.info("metrics: serving http://%s:%d%s", host, _served["port"], PATH)
    return _served["port"]


# -- Celery workers ------------------------------------------------------------------------------------
_started: dict[str, float] = {}
_dead_lettered: set[str] = set()
_task_lock = threading.Lock()
_celery_instrumented = False


def note_dead_letter(task_id: str, task_name: str) -> None:
    """Count a dead-lettered message; the task's end is then counted as outcome `dead_lettered`."""
    DEAD_LETTERS.labels(task_name).inc()
    with _task_lock:
        _dead_lettered.add(task_id)


def _clear_multiprocess_dir(folder: Path) -> None:
    """Samples of an earlier life of this worker (a restarted container keeps its emptyDir) are removed."""
    own = f"_{os.getpid()}.db"
    for path in folder.glob("*.db"):
        if not path.name.endswith(own):
            path.unlink(missing_ok=True)


def instrument_celery() -> None:
    """Count every task of this process by stage and outcome, time it, and serve the endpoint when the
    worker starts (in the pool's parent). Connected once per process, whatever the number of apps."""
    global _celery_instrumented
    if _celery_instrumented:
        return
    _celery_instrumented = True
    from celery.signals import (
        task_failure,
        task_postrun,
        task_prerun,
        worker_init,
        worker_process_shutdown,
    )

    def _start(task_id: str | None = None, **_: Any) -> None:
        if task_id:
            with _task_lock:
                _started[task_id] = time.perf_counter()

    def _stop(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
        with _task_lock:
            began = _started.pop(task_id or "", None)
            dead = task_id in _dead_lettered
            _dead_lettered.discard(task_id or "")
        name = getattr(task, "name", None) or "unknown"
        outcome = "dead_lettered" if dead else (state or "unknown").lower()
        if began is not None:
            TASK_SECONDS.labels(name).observe(time.perf_counter() - began)
        TASKS.labels(name, outcome).inc()  # last: a task counted has its run time recorded

    def _failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        name = getattr(sender, "name", None) or "unknown"
        TASK_FAILURES.labels(name, type(exception).__name__ if exception is not None else "unknown").inc()

    def _serve(sender: Any = None, **_: Any) -> None:
        folder = multiprocess_dir()
        pool = str(getattr(sender, "pool_cls", ""))  # the pool class, e.g. celery.concurrency.prefork.TaskPool
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            _clear_multiprocess_dir(folder)
        elif port_from_env() and "prefork" in pool.lower():
            log.warning(
                "metrics: a prefork pool runs tasks in child processes; set %s to a writable folder before "
                "the worker starts, else the endpoint shows none of their series",
                MULTIPROC_ENV,
            )
        serve()

    def _child_exit(pid: int | None = None, **_: Any) -> None:
        if multiprocess_dir() is not None:
            _multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]

    task_prerun.connect(_start, weak=False)
    task_postrun.connect(_stop, weak=False)
    task_failure.connect(_failed, weak=False)
    worker_init.connect(_serve, weak=False)
    worker_process_shutdown.connect(_child_exit, weak=False)


# -- campaign controller ---------------------------------------------------------------------------------
_CAMPAIGN_GAUGES = (
    CAMPAIGN_STATUS,
    CAMPAIGN_MINED,
    CAMPAIGN_KEPT,
    CAMPAIGN_DROPPED,
    CAMPAIGN_BATTLES,
    CAMPAIGN_VOTES,
    CAMPAIGN_ROWS,
    CAMPAIGN_FAILURES,
    CAMPAIGN_STAGE_BUSY_SECONDS,
    CAMPAIGN_STAGE_TASKS,
)


def clear_campaign_gauges() -> None:
    """A standby controller reports no campaign: only the leader's numbers are current."""
    for gauge in _CAMPAIGN_GAUGES:
        gauge.clear()
    QUEUE_DEPTH.clear()
    QUEUE_UNACKED.clear()


def report_campaign(snap: dict[str, Any]) -> None:
    """Set a campaign's gauges from its `CampaignState.snapshot()`."""
    campaign = str(snap["campaign"])
    for status in ("running", "building", "finished", "build_failed", "cancelled"):
        CAMPAIGN_STATUS.labels(campaign, status).set(1 if snap.get("status") == status else 0)
    instructions = snap.get("instructions", {})
    CAMPAIGN_MINED.labels(campaign).set(instructions.get("mined", 0))
    CAMPAIGN_KEPT.labels(campaign).set(instructions.get("kept", 0))
    for reason, count in _bounded(instructions.get("dropped", {})).items():
        CAMPAIGN_DROPPED.labels(campaign, reason).set(count)
    CAMPAIGN_BATTLES.labels(campaign).set(snap.get("battles", 0))
    CAMPAIGN_VOTES.labels(campaign).set(snap.get("votes", 0))
    CAMPAIGN_ROWS.labels(campaign).set(snap.get("collected", 0))
    for kind, count in _bounded(snap.get("failures", {})).items():
        CAMPAIGN_FAILURES.labels(campaign, kind).set(count)
    for field, value in snap.get("timing", {}).items():
        task, _, what = str(field).rpartition(".")
        if what == "seconds":
            CAMPAIGN_STAGE_BUSY_SECONDS.labels(campaign, task).set(float(value))
        elif what == "tasks":
            CAMPAIGN_STAGE_TASKS.labels(campaign, task).set(float(value))


def _bounded(counts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for reason, count in counts.items():
        key = label_value(str(reason))
        out[key] = out.get(key, 0) + int(count)
    return out


def report_queues(client: Any, queue_names: Iterable[str], priorities: Iterable[int]) -> None:
    """Set the queue gauges from the Redis lists Celery keeps: one per queue and priority level
    (kombu names level 0 after the queue, level p `<queue>\\x06\\x16<p>`), and its `unacked` hash,
    whose entries (one per message in a worker's hands: [message, exchange, routing key]) are counted
    by queue."""
    from kombu.transport.redis import Channel

    steps = sorted(set(priorities))
    names = list(queue_names)
    pipe = client.pipeline(transaction=False)
    for queue in names:
        for level in steps:
            pipe.llen(f"{queue}{Channel.sep}{level}" if level else queue)
    pipe.hvals(Channel.unacked_key)
    *lengths, unacked = pipe.execute()
    i = 0
    for queue in names:
        for level in steps:
            QUEUE_DEPTH.labels(queue, str(level)).set(int(lengths[i]))
            i += 1
    held = dict.fromkeys(names, 0)
    for entry in unacked:
        try:
            queue = str(json.loads(entry)[2])
        except (ValueError, TypeError, IndexError):
            queue = "unknown"
        held[queue] = held.get(queue, 0) + 1
    for queue, count in held.items():
        QUEUE_UNACKED.labels(queue).set(count)
