"""Experts register under a TTL key; silent ones disappear by themselves."""

from __future__ import annotations

import time

from warrior.common.redis_client import connect
from warrior.common.registry import ExpertRecord, Registry, summarize


def _record(name: str, instance: str) -> ExpertRecord:
    return ExpertRecord(
        name=name,
        instance=instance,
        endpoint=f"127.0.0.1:{5000 + len(instance)}",
        model="m.gguf",
        revision="abc",
        engine="llamacpp",
        capacity=2,
    )


def test_register_resolve_and_deregister(redis_url: str) -> None:
    registry = Registry(connect(redis_url), ttl_s=10)
    registry.register(_record("qwen", "i1"))
    registry.register(_record("qwen", "i22"))
    registry.register(_record("smol", "i1"))
    assert sorted(registry.experts()) == ["qwen", "smol"]
    assert len(registry.resolve("qwen")) == 2
    rows = {r["expert"]: r for r in summarize(registry.replicas())}
    assert rows["qwen"]["replicas"] == 2 and rows["qwen"]["capacity"] == 4
    registry.deregister("qwen", "i1")
    assert [r.instance for r in registry.resolve("qwen")] == ["i22"]
    assert registry.resolve("nobody") == []


def test_silent_replica_expires_within_its_ttl(redis_url: str) -> None:
    registry = Registry(connect(redis_url), ttl_s=0.5)
    registry.register(_record("smol", "i1"))
    assert registry.resolve("smol")
    time.sleep(0.8)
    assert registry.resolve("smol") == []
