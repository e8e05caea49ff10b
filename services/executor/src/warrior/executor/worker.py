"""Celery worker of the executor service: queue `execute`, the one place untrusted code runs.

Run: celery -A warrior.executor.worker worker -Q execute -P threads -c 2

`warrior.run_programs` takes a chunk of programs (dicts of `warrior.executor.runner.Program`), runs
them in the sandbox and returns their results (dicts of `SandboxResult`) through the result backend,
in the order given; `QueueExecutor` sends these chunks and collects the results. Every chunk of
every task of this process shares one pool of WARRIOR_EXECUTOR_WORKERS sandbox threads (default:
the CPUs the process may use), whatever the Celery concurrency, so `-c` sets how many chunks are in
hand and the pool how many programs run at once.

Every process of the worker is made non-dumpable at import, before a pool could fork: a program
cannot read the worker's environment (credentials) through /proc even where the kernel offers no
Landlock. The kernel layers this host gives a program are logged once the worker is ready
(`sandbox: caller's identity, no network namespace, seccomp, Landlock ABI 6`, say).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Task
from celery.signals import worker_ready
from celery.utils.log import get_logger

from warrior.common import queues
from warrior.common.celery_app import make_celery
from warrior.common.runtime import get_runtime
from warrior.executor.confinement import available, protect_caller
from warrior.executor.runner import LocalExecutor, Program

# Under Celery's logger, so that the line reaches the worker's log (the root logger is not Celery's).
log = get_logger("warrior.executor")
protect_caller()
LAYERS = available()
app = make_celery("executor")


@worker_ready.connect(weak=False)
def _report_layers(**_: Any) -> None:
    log.info("sandbox: %s", LAYERS.describe())


def _sandbox_workers() -> int | None:
    value = os.environ.get("WARRIOR_EXECUTOR_WORKERS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"WARRIOR_EXECUTOR_WORKERS must be a positive integer, got {value!r}")
    return int(value)


# Started on first use, so no thread exists when a prefork pool forks.
local = LocalExecutor(_sandbox_workers())


@app.task(name=queues.TASK_RUN_PROGRAMS, bind=True)
def run_programs(self: Task, programs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a chunk of programs in the sandbox; their results, in the order given."""
    rt = get_runtime()
    if not rt.admit(self.request.id, queues.TASK_RUN_PROGRAMS, attempt=self.request.retries or 0):
        raise RuntimeError(f"{queues.TASK_RUN_PROGRAMS} {self.request.id}: dead-lettered after repeated deliveries")
    if not isinstance(programs, list):
        raise ValueError(f"{queues.TASK_RUN_PROGRAMS} takes a list of programs, got {type(programs).__name__}")
    parsed = [Program.from_dict(program) for program in programs]
    return [result.to_dict() for result in local.run_many(parsed)]
