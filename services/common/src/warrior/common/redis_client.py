"""One way to open Redis from a URL, shared by every service."""

from __future__ import annotations

import redis


def connect(url: str) -> redis.Redis:
    """A client with bounded timeouts, so a dead Redis fails a call instead of hanging it."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=30,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
