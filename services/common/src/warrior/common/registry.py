"""The expert registry in Redis: inference processes register under a TTL key and renew it by heartbeat."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from pydantic import BaseModel, Field

_PREFIX = "warrior:expert:"


class ExpertRecord(BaseModel):
    """One running replica of an expert, as it announces itself."""

    name: str
    instance: str
    endpoint: str  # host:port of its gRPC server
    model: str
    revision: str
    engine: str
    capacity: int = 1
    # Requests being served at the last heartbeat; with capacity, the replica's load.
    in_flight: int = 0
    # "serving", or "draining" between SIGTERM and deregistration.
    state: str = "serving"
    capabilities: dict[str, bool] = Field(default_factory=dict)
    pid: int = 0
    host: str = ""
    started_at: float = 0.0
    heartbeat_at: float = 0.0


class Registry:
    """Who is serving what, right now.

    A record lives under `warrior:expert:<name>:<instance>` with a TTL; a replica that stops
    renewing it (crash, SIGKILL, network partition) disappears by itself within the TTL.
    """

    def __init__(self, client: redis.Redis, ttl_s: float = 15.0) -> None:
        self._redis = client
        self.ttl_s = ttl_s

    @staticmethod
    def _key(name: str, instance: str) -> str:
        return f"{_PREFIX}{name}:{instance}"

    def register(self, record: ExpertRecord) -> None:
        """Announce (or renew) a replica; the heartbeat calls this again well within the TTL."""
        record = record.model_copy(update={"heartbeat_at": time.time()})
        self._redis.set(
            self._key(record.name, record.instance),
            record.model_dump_json(),
            px=int(self.ttl_s * 1000),
        )

    def deregister(self, name: str, instance: str) -> None:
        self._redis.delete(self._key(name, instance))

    def replicas(self) -> list[ExpertRecord]:
        """Every live replica, sorted by expert name then instance."""
        keys = sorted(self._redis.scan_iter(match=_PREFIX + "*", count=500))
        if not keys:
            return []
        records = []
        for raw in self._redis.mget(keys):
            if raw is None:  # expired between SCAN and MGET
                continue
            records.append(ExpertRecord.model_validate(json.loads(raw)))
        return sorted(records, key=lambda r: (r.name, r.instance))

    def experts(self) -> dict[str, list[ExpertRecord]]:
        """Replicas taking new work (not draining), grouped by expert name."""
        grouped: dict[str, list[ExpertRecord]] = {}
        for record in self.replicas():
            if record.state == "serving":
                grouped.setdefault(record.name, []).append(record)
        return grouped

    def resolve(self, name: str) -> list[ExpertRecord]:
        """The live replicas of one expert; empty when it is not registered."""
        return self.experts().get(name, [])


def summarize(records: list[ExpertRecord]) -> list[dict[str, Any]]:
    """One row per expert for `warrior experts`: replicas, endpoints, engine, last heartbeat age."""
    now = time.time()
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        row = rows.setdefault(
            r.name,
            {
                "expert": r.name,
                "model": r.model,
                "revision": r.revision,
                "engine": r.engine,
                "state": r.state,
                "replicas": 0,
                "endpoints": [],
                "capacity": 0,
                "in_flight": 0,
                "capabilities": r.capabilities,
                "last_heartbeat_s": None,
            },
        )
        row["replicas"] += 1
        row["endpoints"].append(r.endpoint)
        row["capacity"] += r.capacity
        row["in_flight"] += r.in_flight
        row["load"] = round(row["in_flight"] / max(1, row["capacity"]), 2)
        if r.state == "serving":
            row["state"] = "serving"
        age = round(now - r.heartbeat_at, 1)
        if row["last_heartbeat_s"] is None or age < row["last_heartbeat_s"]:
            row["last_heartbeat_s"] = age
    return list(rows.values())
