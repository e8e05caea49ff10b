"""Leader election through Redis: one controller replica acts, the others stand by.

redis-py's lock does the work: the leader holds `warrior:controller:leader` with a TTL and renews it
on every pass (`reacquire`); a leader that dies or loses Redis stops renewing, the key expires, and a
standby takes it on its next try. The lock's token is the replica's identity, so `leader()` names
who leads.
"""

from __future__ import annotations

import redis
from redis.exceptions import LockError

LEADER_KEY = "warrior:controller:leader"


class Leadership:
    """This replica's claim on the controller's lock."""

    def __init__(self, client: redis.Redis, identity: str, ttl_s: float = 15.0) -> None:
        self.identity = identity
        self.ttl_s = ttl_s
        self._client = client
        self._lock = client.lock(LEADER_KEY, timeout=ttl_s, blocking=False, thread_local=False)
        self._held = False

    def hold(self) -> bool:
        """True while this replica leads: renews the lock when held, takes it when free."""
        if self._held:
            try:
                self._lock.reacquire()
                return True
            except LockError:  # expired (a pause longer than the TTL) or taken by another replica
                self._held = False
        self._held = bool(self._lock.acquire(blocking=False, token=self.identity))
        return self._held

    def release(self) -> None:
        """Give the lock up (on shutdown), so a standby takes over at once instead of after the TTL."""
        if self._held:
            try:
                self._lock.release()
            except LockError:
                pass
            self._held = False


def leader(client: redis.Redis) -> str | None:
    """The identity of the replica leading now, or None when no controller runs."""
    value = client.get(LEADER_KEY)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
