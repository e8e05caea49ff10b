"""Answers shared by every replica of an expert: the server's answer cache, kept in Redis.

An expert server keeps each answer it gives to a call carrying the caller's ledger key
(`x-warrior-call-key`) in memory, and writes it to Redis too before replying, under
`warrior:answer:<expert>:<revision>:<method>:<key>` with a TTL. A replica of the same expert that
gets the call again (a fresh process after the one that answered was killed, or another replica)
then serves the same answer without running the engine a second time.

Redis helps here and is never needed: a read or write that fails, or takes longer than its timeout,
counts as a miss (one warning per outage, and Redis is left alone for a moment after a failure, so an
outage costs the calls nothing), and a stored value that does not check out (corrupt, truncated,
another format) is a miss too; the engine then answers and the good value replaces it.

A caller that recorded the answer in its call ledger deletes the copy (warrior.common.answer_keys):
the ledger answers from then on, so Redis holds an answer only until it is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time

import redis.asyncio

from warrior.common.answer_keys import answer_key

log = logging.getLogger("warrior.expert_inference")

DEFAULT_TTL_S = 24 * 3600  # beyond any redelivery: visibility timeout plus the retry budget
TIMEOUT_S = 1.0  # the longest one Redis read or write may delay a call
PAUSE_S = 1.0  # after a failure, Redis is not tried again for this long
_FORMAT = b"\x01"
_DIGEST_BYTES = 16
# Keys as the expert client sends them (hex content hashes); anything else stays in memory only.
_CALL_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def pack(payload: bytes) -> bytes:
    """A stored value: a format byte and a digest of the payload, then the payload (a serialized reply)."""
    return _FORMAT + hashlib.blake2b(payload, digest_size=_DIGEST_BYTES).digest() + payload


def unpack(value: bytes) -> bytes | None:
    """The payload of a stored value, or None when the value does not check out."""
    head = len(_FORMAT) + _DIGEST_BYTES
    if len(value) < head or not value.startswith(_FORMAT):
        return None
    payload = value[head:]
    if hashlib.blake2b(payload, digest_size=_DIGEST_BYTES).digest() != value[len(_FORMAT) : head]:
        return None
    return payload


class SharedAnswers:
    """Reads and writes one expert's answers in Redis; never raises for Redis' sake (see the module)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        expert: str,
        revision: str,
        ttl_s: int = DEFAULT_TTL_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s={ttl_s} must be at least 1")
        self._client = client
        self.expert = expert
        self.revision = revision
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._down = False  # a failure was logged and no call has succeeded since
        self._retry_at = 0.0

    def accepts(self, call_key: str) -> bool:
        """Whether answers by this key are shared (keys of another shape stay in this process' memory)."""
        return _CALL_KEY.fullmatch(call_key) is not None

    def key(self, method: str, call_key: str) -> str:
        return answer_key(self.expert, self.revision, method, call_key)

    async def get(self, method: str, call_key: str) -> bytes | None:
        """The stored answer (serialized), or None: not stored, unreadable, or Redis unavailable."""
        if time.monotonic() < self._retry_at:
            return None
        key = self.key(method, call_key)
        try:
            async with asyncio.timeout(self.timeout_s):
                value = await self._client.get(key)
        except Exception as exc:  # noqa: BLE001 - whatever Redis does, the call goes on without it
            self._failed("read", exc)
            return None
        self._succeeded()
        if value is None:
            return None
        payload = unpack(value) if isinstance(value, bytes) else None  # bytes: the client does not decode
        if payload is None:
            log.warning("answer cache: the value under %s does not check out; answering anew", key)
        return payload

    async def put(self, method: str, call_key: str, payload: bytes) -> bool:
        """Store an answer (serialized) for ttl_s; False when Redis did not take it."""
        if time.monotonic() < self._retry_at:
            return False
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._client.set(self.key(method, call_key), pack(payload), ex=self.ttl_s)
        except Exception as exc:  # noqa: BLE001 - whatever Redis does, the call goes on without it
            self._failed("write", exc)
            return False
        self._succeeded()
        return True

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # noqa: BLE001 - closing a client of a Redis that is gone
            log.debug("answer cache: closing the Redis client: %s", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + PAUSE_S
        if not self._down:
            self._down = True
            log.warning(
                "answer cache: Redis %s failed (%s: %s); answers are kept in this process only until it is back",
                what,
                type(exc).__name__,
                str(exc) or "timed out",
            )

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            log.info("answer cache: Redis is back; answers are shared again")
