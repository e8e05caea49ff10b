"""The expert registry in Redis: inference processes register under a TTL key and renew it by heartbeat."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import redis
from pydantic import BaseModel, Field

_PREFIX = "warrior:expert:"
_INDEX = "warrior:experts"


class ExpertRecord(BaseModel):
    """One running replica of an expert, as it announces itself."""

    name: str
    instance: str
    endpoint: str  # host:port of its gRPC server
    # Whether that server speaks TLS, so callers open the right channel (a caller that trusts a CA
    # of its own, WARRIOR_GRPC_TLS_CA, uses TLS whatever this says).
    tls: bool = False
    model: str
    revision: str
    engine: str
    capacity: int = 1
    # Requests being served at the last heartbeat; with capacity, the replica's load.
    in_flight: int = 0
    # "serving", or "draining" between SIGTERM and deregistration.
    state: str = "serving"
    capabilities: dict[str, bool] = Field(default_factory=dict)
    # The replica's labels (`--label`, WARRIOR_EXPERT_LABELS): a campaign with an open roster takes in
    # only experts matching its matchmaking.roster_selector, and never one labelled role=eval.
    labels: dict[str, str] = Field(default_factory=dict)
    pid: int = 0
    host: str = ""
    started_at: float = 0.0
    heartbeat_at: float = 0.0


# The label of an expert registered only to be evaluated: it never joins a campaign's open roster.
EVAL_ONLY_LABEL = ("role", "eval")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


def parse_labels(text: str) -> dict[str, str]:
    """`key=value` pairs, comma separated ("role=eval,pool=paper"); ValueError names a malformed one."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _LABEL.match(key) or (value and not _LABEL.match(value)):
            raise ValueError(
                f"label {item!r} must be key=value (letters, digits, '.', '_', '-', '/'; at most 63 characters each)"
            )
        labels[key] = value
    return labels


def joins_open_roster(replicas: list[ExpertRecord], selector: dict[str, str]) -> bool:
    """Whether an expert with these serving replicas joins a campaign's open roster: every replica
    carries every label of the selector, and none is labelled role=eval."""
    key, value = EVAL_ONLY_LABEL
    return bool(replicas) and all(
        r.labels.get(key) != value and all(r.labels.get(k) == v for k, v in selector.items()) for r in replicas
    )


class Registry:
    """Who is serving what, right now.

    A record lives under `warrior:expert:<name>:<instance>` with a TTL; a replica that stops
    renewing it (crash, SIGKILL, network partition) disappears by itself within the TTL. The keys
    are also listed in one index set, so reading the registry costs two commands instead of a SCAN
    over the whole keyspace; readers drop index entries whose record has expired.

    Reads may be served from a snapshot up to `cache_s` old (0 by default): callers that resolve
    experts on every model call set it to a fraction of the TTL.
    """

    def __init__(self, client: redis.Redis, ttl_s: float = 15.0, cache_s: float = 0.0) -> None:
        self._redis = client
        self.ttl_s = ttl_s
        self.cache_s = cache_s
        self._snapshot: tuple[float, list[ExpertRecord]] | None = None
        self._lock = threading.Lock()

    @property
    def redis(self) -> redis.Redis:
        """The Redis the experts register in (and share their answers in)."""
        return self._redis

    @staticmethod
    def _key(name: str, instance: str) -> str:
        return f"{_PREFIX}{name}:{instance}"

    def register(self, record: ExpertRecord) -> None:
        """Announce (or renew) a replica; the heartbeat calls this again well within the TTL."""
        record = record.model_copy(update={"heartbeat_at": time.time()})
        key = self._key(record.name, record.instance)
        pipe = self._redis.pipeline()
        pipe.set(key, record.model_dump_json(), px=int(self.ttl_s * 1000))
        pipe.sadd(_INDEX, key)
        pipe.execute()

    def deregister(self, name: str, instance: str) -> None:
        key = self._key(name, instance)
        pipe = self._redis.pipeline()
        pipe.delete(key)
        pipe.srem(_INDEX, key)
        pipe.execute()

    def replicas(self) -> list[ExpertRecord]:
        """Every live replica, sorted by expert name then instance."""
        if self.cache_s > 0:
            with self._lock:
                if self._snapshot and time.monotonic() - self._snapshot[0] < self.cache_s:
                    return list(self._snapshot[1])
        keys = sorted(str(k) for k in self._redis.smembers(_INDEX))
        records = []
        expired = []
        for key, raw in zip(keys, self._redis.mget(keys) if keys else [], strict=True):
            if raw is None:  # the replica stopped renewing its record: forget it
                expired.append(key)
                continue
            records.append(ExpertRecord.model_validate(json.loads(raw)))
        if expired:
            self._redis.srem(_INDEX, *expired)
        records.sort(key=lambda r: (r.name, r.instance))
        if self.cache_s > 0:
            with self._lock:
                self._snapshot = (time.monotonic(), records)
        return list(records)

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
                "tls": r.tls,
                "capacity": 0,
                "in_flight": 0,
                "capabilities": r.capabilities,
                "last_heartbeat_s": None,
            },
        )
        row["replicas"] += 1
        row["tls"] = row["tls"] and r.tls  # "tls" only when every replica speaks it
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
