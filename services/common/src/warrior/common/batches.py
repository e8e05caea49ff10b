"""Batches of work through the pipeline: a stage's task carries several units, works them at once, and
passes the ones that go on to the next stage as batches of their own.

Why: each Celery task costs a message in and out, a delivery count, a timing record and a worker
wake-up, whatever its size; a batch pays that once for many instructions, lets a stage use a batched
model (one embedding call for the batch) and overlaps the units' model calls. Exactly-once holds as
it does for single units: every unit's work is idempotent (write-once records, set marks, the call
ledger), so a redelivered or re-sent batch redoes only the units that did not finish.

Sizes adapt to the next queue: units go on in batches of up to `pipeline.batch_size`, but when the
next queue is empty (its workers idle) a batch is split into up to `pipeline.spread` parts so that
several workers take it up at once rather than one doing all of it.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis

from warrior.common import queues
from warrior.common.ids import task_id
from warrior.common.logs import log_context

T = TypeVar("T")
R = TypeVar("R")


def units(arg: Any) -> list[Any]:
    """A task's units: a batch (list) as it is, a single unit (a message of the per-unit form, as an
    earlier version or a re-send of one unit sends it) as a batch of one."""
    return list(arg) if isinstance(arg, list | tuple) else [arg]


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """`items` in order, in lists of at most `size` (at least 1)."""
    size = max(1, size)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def plan(items: Sequence[T], *, batch_size: int, spread: int, queue_depth: int) -> list[list[T]]:
    """The batches to send `items` on in: full batches while the next queue has work waiting, split
    into up to `spread` even parts when it is empty (so idle workers share them)."""
    if not items:
        return []
    parts = math.ceil(len(items) / max(1, batch_size))
    if queue_depth == 0:
        parts = max(parts, min(max(1, spread), len(items)))
    return chunks(items, math.ceil(len(items) / parts))


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a queue (all priority levels); 0 when Redis cannot say (the split is a hint)."""
    return queue_depth_or_none(client, queue) or 0


def queue_depth_or_none(client: redis.Redis, queue: str) -> int | None:
    """Messages waiting in a queue (all priority levels); None when Redis cannot say."""
    from kombu.transport.redis import Channel  # kombu names level p `<queue><sep><p>`, level 0 after the queue

    names = [queue] + [f"{queue}{Channel.sep}{level}" for level in range(1, 10)]
    try:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        return int(sum(pipe.execute()))
    except redis.RedisError:
        return None


def run_each(
    work: Callable[[T], R],
    items: Iterable[T],
    *,
    concurrency: int,
    instruction: Callable[[T], str | None] = lambda _: None,
) -> list[R]:
    """work(item) for every item, up to `concurrency` at once, results in item order.

    Every item is worked before an error is raised (the first one, in item order), so the units that
    could finish are recorded and a retry of the batch finds them done. Each item's log records carry
    the task's ids (campaign, task) and `instruction(item)`, the instruction the unit is about.
    """
    items = list(items)
    results: list[R] = []
    errors: list[BaseException] = []

    def one(item: T) -> R:
        with log_context(instruction=instruction(item)):
            return work(item)

    if concurrency <= 1 or len(items) <= 1:
        for item in items:
            try:
                results.append(one(item))
            except Exception as exc:  # noqa: BLE001 - raised below, after the other units
                errors.append(exc)
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="batch") as pool:
            # Each thread runs in a copy of this context: the task's log ids go with its units.
            futures = [pool.submit(contextvars.copy_context().run, one, item) for item in items]
            for future in futures:
                error = future.exception()
                if error is not None:
                    errors.append(error)
                else:
                    results.append(future.result())
    if errors:
        raise errors[0]
    return results


def send_batches(
    app: Any,
    client: redis.Redis,
    task_name: str,
    campaign: str,
    items: Sequence[Any],
    *,
    stage: str,
    batch_size: int,
    spread: int,
    extra: Sequence[Any] = (),
    **options: Any,
) -> int:
    """Send `items` on to the task `task_name` as planned batches; how many messages were sent.

    Each batch's task id is derived from its stage, campaign and units, so a redelivered batch that
    sends the same units again sends a duplicate id, not new work."""
    depth = queue_depth(client, queues.TASK_QUEUES[task_name])
    batches = plan(list(items), batch_size=batch_size, spread=spread, queue_depth=depth)
    for batch in batches:
        app.send_task(task_name, args=[campaign, batch, *extra], task_id=task_id(stage, campaign, *batch), **options)
    return len(batches)
