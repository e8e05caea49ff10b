"""Near-duplicate removal shared by every miner replica: a MinHash LSH index in Redis.

Signatures and the (bands, rows) choice come from datasketch (minhash.py); the buckets are ours.
datasketch's Redis storage (``MinHashLSH(storage_config={"type": "redis", ...})``) was measured
side by side with this index (bench/dedup.py, docs/benchmarks.md): it makes one round trip per band
to query and two per band to insert (~80 per instruction at 25 bands), stores no signatures to
verify candidates with, and has no check-and-insert, so replicas would need a lock around it.
Here one Lua script does the whole check-and-insert in one round trip, atomically.
"""

from __future__ import annotations

import math

import redis

from warrior.instruction_miner.minhash import (
    BUCKET_FIELD_SIZE,
    bucket_fields,
    lsh_params,
    signature,
    signature_to_bytes,
)

# KEYS[1]: the campaign's signatures (hash: item -> signature bytes); KEYS[2]: its buckets (hash: band
# index + band digest -> the items in that bucket, ids joined by "\n"). One hash for all buckets rather
# than a Redis set per bucket: a key per bucket cost ~300 bytes, and 25 of them per instruction.
# ARGV: item, its signature bytes, the least number of equal 4-byte positions that makes a
# near-duplicate, the item's bucket fields concatenated (FIELD bytes each). Returns the first (in id
# order) indexed item whose signature agrees that much, else indexes the item and returns nil; an item
# already indexed (a redelivered task) returns nil without changes. A script runs atomically, so two
# replicas screening near-duplicates at the same moment never both keep them: whichever runs first
# inserts, the other finds it. Candidates grow with the index (requests sharing boilerplate share
# bands), so their signatures come in one HMGET per 256 and a comparison stops as soon as it is decided.
_CHECK_AND_INSERT = """
local item, sig, need, packed = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if redis.call('hexists', KEYS[1], item) == 1 then return false end
local fields = {}
for p = 1, #packed, FIELD do fields[#fields + 1] = string.sub(packed, p, p + FIELD - 1) end
local buckets = redis.call('hmget', KEYS[2], unpack(fields))
local seen, candidates = {}, {}
for i = 1, #fields do
  if buckets[i] then
    for m in string.gmatch(buckets[i], '[^\\n]+') do
      if not seen[m] then seen[m] = true; candidates[#candidates + 1] = m end
    end
  end
end
if #candidates > 0 then
  table.sort(candidates)
  local spare = #sig / 4 - need
  for first = 1, #candidates, 256 do
    local chunk = {unpack(candidates, first, math.min(first + 255, #candidates))}
    local others = redis.call('hmget', KEYS[1], unpack(chunk))
    for k, other in ipairs(others) do
      if other and #other == #sig then
        local agree, differ = 0, 0
        for p = 1, #sig, 4 do
          if string.sub(sig, p, p + 3) == string.sub(other, p, p + 3) then
            agree = agree + 1
            if agree >= need then return chunk[k] end
          else
            differ = differ + 1
            if differ > spare then break end
          end
        end
      end
    end
  end
end
redis.call('hset', KEYS[1], item, sig)
local updates = {}
for i = 1, #fields do
  updates[#updates + 1] = fields[i]
  updates[#updates + 1] = buckets[i] and (buckets[i] .. '\\n' .. item) or item
end
redis.call('hset', KEYS[2], unpack(updates))
return false
""".replace("FIELD", str(BUCKET_FIELD_SIZE))


def _least_agreement(threshold: float, num_perm: int) -> int:
    """Return the least ``k`` with ``k / num_perm >= threshold`` (the estimated Jaccard reaching it)."""
    k = math.ceil(threshold * num_perm)
    while k > 0 and (k - 1) / num_perm >= threshold:
        k -= 1
    while k / num_perm < threshold:
        k += 1
    return k


class SharedDedupIndex:
    """One campaign's LSH index: two Redis hashes, the signatures and the band buckets.

    Keys live under ``warrior:campaign:<campaign>:lsh:``, so campaigns never see each other's
    instructions. Every replica may hold its own instance on its own connection.
    """

    def __init__(self, client: redis.Redis, campaign: str, *, threshold: float = 0.5, num_perm: int = 128) -> None:
        self._r = client
        self._p = f"warrior:campaign:{campaign}:lsh:"
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self._need = _least_agreement(threshold, num_perm)
        self._script = client.register_script(_CHECK_AND_INSERT)

    def check_and_insert(self, item: str, text: str) -> str | None:
        """Insert item unless a near-duplicate is already indexed; returns that duplicate's id, or None."""
        sig = signature(text, num_perm=self.num_perm)
        fields = bucket_fields(sig, self.bands, self.rows)
        found = self._script(
            keys=[self._p + "sigs", self._p + "buckets"], args=[item, signature_to_bytes(sig), self._need, fields]
        )
        if found is None:
            return None
        return found.decode() if isinstance(found, bytes) else str(found)
