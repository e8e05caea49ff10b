"""Process settings read from the environment: where Redis and the object store are."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".warrior"


@dataclass(frozen=True)
class Settings:
    """Where this process finds the shared infrastructure.

    Every service reads the same variables, so one exported environment points a whole stack
    at one Redis and one object store.
    """

    redis_url: str
    store_url: str
    home: Path
    cache_dir: Path  # content-addressed derived data (benchmark embeddings, fetched data) shared by homes
    registry_ttl_s: float
    grpc_deadline_s: float
    in_flight_per_expert: int

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("WARRIOR_HOME", DEFAULT_HOME)).absolute()
        redis_url = os.environ.get("REDIS_URL") or f"unix://{home / 'redis.sock'}"
        store_url = os.environ.get("WARRIOR_STORE_URL") or f"file://{home / 'store'}"
        return cls(
            redis_url=redis_url,
            store_url=store_url,
            home=home,
            cache_dir=Path(
                os.environ.get("WARRIOR_CACHE_DIR")
                or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "warrior"
            ).absolute(),
            registry_ttl_s=_positive_float("WARRIOR_REGISTRY_TTL_S", 15.0),
            grpc_deadline_s=_positive_float("WARRIOR_GRPC_DEADLINE_S", 300.0),
            # 0: twice the capacity the expert's replicas announce.
            in_flight_per_expert=_non_negative_int("WARRIOR_INFLIGHT_PER_EXPERT", 0),
        )


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"environment variable {name}={raw!r} must be positive")
    return value


def _non_negative_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise ValueError(f"environment variable {name}={raw!r} must be a whole number >= 0")
    return int(raw)


def celery_broker_url(redis_url: str) -> str:
    """The same Redis as a kombu URL: kombu spells unix sockets `redis+socket://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url
