"""One way to open Redis from a URL, shared by every service."""

from __future__ import annotations

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect(url: str) -> redis.Redis:
    """A client with bounded timeouts, so a dead Redis fails a call instead of hanging it."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=30,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def connect_async(url: str, *, timeout_s: float) -> redis.asyncio.Redis:
    """An asyncio client for calls that must stay short: bytes in and out, every socket operation bounded
    by timeout_s, and one immediate retry (a connection a restarted Redis dropped) instead of backing off."""
    return redis.asyncio.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
    )
