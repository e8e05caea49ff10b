"""Running many programs in the sandbox: in this process's sandbox, or in the executor service.

A `Program` is the source of a Python program and its limits; an `Executor` runs a batch of them and
returns one `SandboxResult` per program, in the order given. Two executors:

* `LocalExecutor` runs them here, each through `warrior.executor.sandbox.run`, on a thread pool
  shared by every call (so concurrent callers together run at most `workers` programs at once).
  For the command line and tests, and inside the executor service itself.
* `QueueExecutor` sends them, in chunks, to the executor service's Celery workers (task
  `warrior.run_programs`, queue `execute`) and waits for the results through the result backend.
  For services that must never run untrusted code in their own pods (the trainer's evaluation).

Programs travel as dicts (`Program.to_dict` / `Program.from_dict`) and results as
`SandboxResult.to_dict` / `SandboxResult.from_dict`: both are plain JSON.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import celery.exceptions

from warrior.common import metrics, queues
from warrior.executor import sandbox
from warrior.executor.sandbox import SandboxResult

__all__ = [
    "MAX_MEMORY_MB",
    "MAX_TIMEOUT_S",
    "Executor",
    "ExecutorError",
    "ExecutorTimeout",
    "LocalExecutor",
    "Program",
    "QueueExecutor",
    "cpu_budget",
]

# The most a program may ask for: a chunk of them must finish well inside the broker's visibility timeout.
MAX_TIMEOUT_S = 600.0
MAX_MEMORY_MB = 4_096


@dataclass(frozen=True)
class Program:
    """One program to run: its source, its wall-clock (and CPU-time) limit, its address-space limit."""

    source: str
    timeout_s: float = 10.0
    memory_mb: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise ValueError(f"source must be text, got {type(self.source).__name__}")
        timeout = self.timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
            raise ValueError(f"timeout_s must be a number of seconds, got {timeout!r}")
        if not 0 < timeout <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}], got {timeout!r}")
        memory = self.memory_mb
        if isinstance(memory, bool) or not isinstance(memory, int) or not 0 < memory <= MAX_MEMORY_MB:
            raise ValueError(f"memory_mb must be an integer in [1, {MAX_MEMORY_MB}], got {memory!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "timeout_s": self.timeout_s, "memory_mb": self.memory_mb}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Program:
        """The program `to_dict` gave; ValueError for anything else (unknown keys included)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a program is a mapping, got {type(data).__name__}")
        unknown = set(data) - {"source", "timeout_s", "memory_mb"}
        if unknown:
            raise ValueError(f"unknown program fields: {sorted(map(str, unknown))}")
        if "source" not in data:
            raise ValueError("a program needs a source")
        return cls(**dict(data))


class Executor(Protocol):
    """Runs programs in the sandbox and returns what became of each, in the order given."""

    def run_many(self, programs: Sequence[Program]) -> list[SandboxResult]: ...


def cpu_budget() -> int:
    """The CPUs this process may use: its CPU affinity, bounded by a cgroup v2 CPU quota (a
    container's CPU limit) where one is set; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


class LocalExecutor:
    """Runs programs in this process's sandbox, `workers` at a time (by default the CPUs this
    process may use, see `cpu_budget`). The thread pool is started on first use and shared by
    every `run_many` call, from any thread; `close()` (or leaving a `with` block) stops it."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers or cpu_budget()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="warrior-sandbox")
            return self._pool

    def run_many(self, programs: Sequence[Program]) -> list[SandboxResult]:
        """Run every program and return their results in the order given. An error of the sandbox
        itself (not of a program: those are results) is raised once the runs already started end."""
        if not programs:
            return []
        pool = self._executor()
        futures: list[Future[SandboxResult]] = [
            pool.submit(sandbox.run, p.source, timeout_s=p.timeout_s, memory_mb=p.memory_mb) for p in programs
        ]
        try:
            results = [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        for result in results:
            metrics.EXECUTOR_RUNS.labels(result.status).inc()
            metrics.EXECUTOR_RUN_SECONDS.labels(result.status).observe(result.duration_s)
        return results

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class ExecutorError(RuntimeError):
    """The executor service did not return results for a batch of programs."""


class ExecutorTimeout(ExecutorError, TimeoutError):
    """No results came back in time: is an executor worker consuming the `execute` queue?"""


class QueueExecutor:
    """Runs programs in the executor service: chunks of `chunk` programs are sent at once as
    `warrior.run_programs` tasks (queue `execute`), so the service's replicas share them, and their
    results are collected from the Celery result backend in order.

    `timeout_s` bounds the wait for each chunk's results once the previous chunk's came back, so a
    large batch may take longer in all; when it passes, the chunks not done are revoked and
    `ExecutorTimeout` is raised. A chunk the service failed raises its error. `priority` is the
    Celery priority the chunks are sent at (None: the queue's default).
    """

    def __init__(self, app: Any, *, chunk: int = 32, timeout_s: float = 600.0, priority: int | None = None) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.app = app
        self.chunk = chunk
        self.timeout_s = timeout_s
        self.priority = priority

    def run_many(self, programs: Sequence[Program]) -> list[SandboxResult]:
        if not programs:
            return []
        options: dict[str, Any] = {} if self.priority is None else {"priority": self.priority}
        sent: list[tuple[int, Any]] = []
        results: list[SandboxResult] = []
        try:
            for start in range(0, len(programs), self.chunk):
                part = programs[start : start + self.chunk]
                payload = [program.to_dict() for program in part]
                sent.append((len(part), self.app.send_task(queues.TASK_RUN_PROGRAMS, args=[payload], **options)))
            for size, pending in sent:
                try:
                    # Waiting inside a task (the trainer's evaluation) is intended: the work runs elsewhere.
                    answer = pending.get(timeout=self.timeout_s, disable_sync_subtasks=False)
                except celery.exceptions.TimeoutError:
                    self._revoke(sent)
                    raise ExecutorTimeout(
                        f"no results from the executor service within {self.timeout_s:g}s for {size} program(s) "
                        f"(task {queues.TASK_RUN_PROGRAMS} {pending.id}): is a worker consuming queue "
                        f"{queues.EXECUTE!r}?"
                    ) from None
                if not isinstance(answer, list) or len(answer) != size:
                    got = len(answer) if isinstance(answer, list) else type(answer).__name__
                    raise ExecutorError(f"{queues.TASK_RUN_PROGRAMS} {pending.id}: {got} results for {size} programs")
                results.extend(SandboxResult.from_dict(item) for item in answer)
        finally:
            for _, pending in sent:
                try:
                    pending.forget()  # the results are read (or abandoned): free the backend's copy
                except Exception:  # noqa: BLE001 - best effort: Redis may be what failed
                    pass
        return results

    @staticmethod
    def _revoke(sent: list[tuple[int, Any]]) -> None:
        for _, pending in sent:
            try:
                if not pending.ready():
                    pending.revoke()
            except Exception:  # noqa: BLE001 - best effort: the broker may be what failed
                pass
