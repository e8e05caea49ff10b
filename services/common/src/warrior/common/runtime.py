"""Per-process connections a worker needs: settings, Redis, object store, registry, expert client."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import redis

from warrior.common import metrics
from warrior.common.expert_client import ExpertClient
from warrior.common.ledger import CallLedger
from warrior.common.redis_client import connect
from warrior.common.registry import Registry
from warrior.common.settings import Settings
from warrior.common.store import ObjectStore, open_store

DEADLETTER_KEY = "warrior:deadletter"
DELIVERIES_PREFIX = "warrior:deliveries:"
MAX_DELIVERIES = 5


def deliveries_ttl_s() -> int:
    """How long a task's delivery count outlives its last delivery: long enough to see every redelivery
    of a message whose worker keeps dying (each comes back after the visibility timeout, and may retry
    for the retry budget), so the dead-letter limit still holds; the count is deleted as soon as the
    task ends (the task_postrun handler in warrior.common.celery_app), so this bounds only the counts
    of deliveries whose worker was killed."""
    visibility = float(os.environ.get("WARRIOR_VISIBILITY_TIMEOUT_S", "3600"))
    budget = float(os.environ.get("WARRIOR_RETRY_BUDGET_S", "900"))
    return int((MAX_DELIVERIES + 1) * (visibility + budget)) + 60


def deliveries_keys(task_id: str, retries: int = 0) -> list[str]:
    """The delivery counts `Runtime.admit` keeps for a task: one per retry attempt."""
    return [f"{DELIVERIES_PREFIX}{task_id}"] + [f"{DELIVERIES_PREFIX}{task_id}:{a}" for a in range(1, retries + 1)]


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: ObjectStore
    registry: Registry
    client: ExpertClient

    def ledger(self, campaign: str) -> CallLedger:
        """The campaign's call ledger; a recorded call's answer is let go from the experts' shared cache."""
        return CallLedger(self.store, campaign, forget=self.client.forget_answer)

    def admit(self, task_id: str, task_name: str, max_deliveries: int = MAX_DELIVERIES, *, attempt: int = 0) -> bool:
        """Count a delivery of a task; False (and dead-lettered) once it came back too many times.

        A message whose task keeps killing its worker would otherwise be redelivered forever. Each
        retry `attempt` (a transient error: Redis or the store unreachable) has its own count: retries
        are bounded by the task's max_retries, deliveries of one attempt by `max_deliveries`.
        """
        key = f"{DELIVERIES_PREFIX}{task_id}" + (f":{attempt}" if attempt else "")
        count = int(self.redis.incr(key))
        self.redis.expire(key, deliveries_ttl_s())
        if count > 1:
            metrics.TASK_REDELIVERIES.labels(task_name).inc()
        if count <= max_deliveries:
            return True
        metrics.note_dead_letter(task_id, task_name)
        self.redis.hset(
            DEADLETTER_KEY,
            task_id,
            f"{task_name}: delivered {count} times (limit {max_deliveries}); dead-lettered at {time.time():.0f}",
        )
        return False


@functools.lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """The process's runtime, built on first use from the environment."""
    settings = Settings.from_env()
    client = connect(settings.redis_url)
    # Workers resolve experts on every model call: a snapshot a fraction of the TTL old is fresh enough.
    registry = Registry(client, ttl_s=settings.registry_ttl_s, cache_s=min(1.0, settings.registry_ttl_s / 10))
    return Runtime(
        settings=settings,
        redis=client,
        store=open_store(settings.store_url),
        registry=registry,
        client=ExpertClient(
            registry, deadline_s=settings.grpc_deadline_s, in_flight_per_expert=settings.in_flight_per_expert
        ),
    )
