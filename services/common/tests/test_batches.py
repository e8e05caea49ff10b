"""Batches through the pipeline: how units are split into tasks, worked at once, and sent on."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from celery import Celery

from warrior.common import queues
from warrior.common.batches import chunks, plan, queue_depth, run_each, send_batches, units
from warrior.common.ids import task_id
from warrior.common.settings import celery_broker_url


def test_a_single_unit_message_is_a_batch_of_one() -> None:
    assert units("i-1") == ["i-1"]
    assert units(["i-1", "i-2"]) == ["i-1", "i-2"]


def test_units_go_on_in_full_batches_while_the_next_queue_has_work_waiting() -> None:
    items = list(range(40))
    batches = plan(items, batch_size=16, spread=4, queue_depth=3)
    assert [len(b) for b in batches] == [14, 14, 12]
    assert [u for b in batches for u in b] == items  # nothing lost, nothing repeated, order kept


def test_a_batch_is_split_for_idle_workers_when_the_next_queue_is_empty() -> None:
    assert [len(b) for b in plan(list(range(16)), batch_size=16, spread=4, queue_depth=0)] == [4, 4, 4, 4]
    assert plan(["only"], batch_size=16, spread=4, queue_depth=0) == [["only"]]
    assert plan([], batch_size=16, spread=4, queue_depth=0) == []
    assert chunks([1, 2, 3], 2) == [[1, 2], [3]]


def test_units_of_a_batch_are_worked_at_once_with_results_in_order() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def work(x: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return x * x

    assert run_each(work, [3, 1, 2], concurrency=3) == [9, 1, 4]
    assert peak[0] == 3


def test_a_failing_unit_does_not_stop_the_others_and_its_error_is_raised() -> None:
    done: list[int] = []

    def work(x: int) -> int:
        if x == 1:
            raise ConnectionError("store unreachable")
        time.sleep(0.02)
        done.append(x)
        return x

    with pytest.raises(ConnectionError, match="store unreachable"):
        run_each(work, [0, 1, 2, 3], concurrency=4)
    assert sorted(done) == [0, 2, 3]  # recorded, so the batch's retry finds them done


def test_batches_are_sent_under_ids_of_their_units_and_split_by_the_real_queue_depth(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    app = Celery("t", broker=celery_broker_url(redis_url))
    app.conf.task_routes = {name: {"queue": queue} for name, queue in queues.TASK_QUEUES.items()}
    sent: list[dict[str, Any]] = []

    class Recorder:
        def send_task(self, name: str, args: list[Any], task_id: str, **options: Any) -> None:
            sent.append({"name": name, "args": args, "task_id": task_id})
            app.send_task(name, args=args, task_id=task_id, priority=queues.PRIORITY_DEFAULT)

    items = [f"i-{n}" for n in range(8)]
    assert queue_depth(client, queues.BATTLE) == 0
    assert (
        send_batches(Recorder(), client, queues.TASK_BATTLE, "c1", items, stage="battle", batch_size=8, spread=4) == 4
    )
    assert [m["args"] for m in sent] == [["c1", items[i : i + 2]] for i in range(0, 8, 2)]
    assert sent[0]["task_id"] == task_id("battle", "c1", "i-0", "i-1")
    assert queue_depth(client, queues.BATTLE) == 4  # the messages are really queued (at priority 5)
    sent.clear()
    send_batches(Recorder(), client, queues.TASK_BATTLE, "c1", items, stage="battle", batch_size=8, spread=4)
    assert [m["args"] for m in sent] == [["c1", items]]  # work is waiting: one full batch
