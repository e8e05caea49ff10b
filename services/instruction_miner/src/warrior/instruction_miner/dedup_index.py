"""Near-duplicate removal shared by every miner replica: a MinHash LSH index in Redis."""

from __future__ import annotations

import time
import uuid

import redis

from warrior.instruction_miner.minhash import (
    band_keys,
    jaccard_estimate,
    lsh_params,
    signature,
    signature_from_bytes,
    signature_to_bytes,
)


class DedupLockTimeout(RuntimeError):
    """The campaign's dedup lock could not be taken in time."""


class SharedDedupIndex:
    """One campaign's LSH index: band buckets as Redis sets, signatures in a Redis hash.

    Check-then-insert runs under a short per-campaign lock, so two workers screening
    near-duplicates at the same moment never both keep them: whichever takes the lock first
    inserts, the other finds it.
    """

    def __init__(self, client: redis.Redis, campaign: str, *, threshold: float = 0.5, num_perm: int = 128) -> None:
        self._r = client
        self._p = f"warrior:campaign:{campaign}:lsh:"
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands, self.rows = lsh_params(threshold, num_perm)

    def _lock(self) -> str:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + 30
        while not self._r.set(self._p + "lock", token, nx=True, px=10_000):
            if time.monotonic() > deadline:
                raise DedupLockTimeout(f"dedup lock {self._p}lock held for over 30 s")
            time.sleep(0.005)
        return token

    def _unlock(self, token: str) -> None:
        # Delete only our own lock (it may have expired and been taken by another worker).
        self._r.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
            1,
            self._p + "lock",
            token,
        )

    def check_and_insert(self, item: str, text: str) -> str | None:
        """Insert item unless a near-duplicate is already indexed; returns that duplicate's id, or None."""
        sig = signature(text, num_perm=self.num_perm)
        keys = band_keys(sig, self.bands, self.rows)
        token = self._lock()
        try:
            if self._r.hexists(self._p + "sigs", item):
                return None  # this item was inserted by an earlier delivery of the same task
            candidates: set[str] = set()
            pipe = self._r.pipeline(transaction=False)
            for key in keys:
                pipe.smembers(self._p + key)
            for members in pipe.execute():
                candidates |= {str(m) for m in members}
            for other in sorted(candidates - {item}):
                raw = self._r.hget(self._p + "sigs", other)
                if raw is None:
                    continue
                other_sig = signature_from_bytes(bytes.fromhex(str(raw)))
                if jaccard_estimate(sig, other_sig) >= self.threshold:
                    return other
            pipe = self._r.pipeline()
            pipe.hset(self._p + "sigs", item, signature_to_bytes(sig).hex())
            for key in keys:
                pipe.sadd(self._p + key, item)
            pipe.execute()
            return None
        finally:
            self._unlock(token)
