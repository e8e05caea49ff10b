"""Campaign progress in Redis: idempotent sets and hashes that every stage updates and `status` reads."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from warrior.common.campaign_config import CampaignConfig, parse_campaign_config
from warrior.common.verification import summarize_stats

_INDEX = "warrior:campaigns"
_ADD_ONCE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""


class CampaignState:
    """Progress of one campaign.

    Stages record *which* item they finished (set members, hash fields), never bare increments,
    so a redelivered task does not count twice.
    """

    def __init__(self, client: redis.Redis, campaign: str) -> None:
        self._r = client
        self.campaign = campaign
        self._p = f"warrior:campaign:{campaign}:"

    def _k(self, name: str) -> str:
        return self._p + name

    # -- lifecycle -------------------------------------------------------------------------
    def create(self, config: dict[str, Any], expected_mine: int) -> bool:
        """Record a new campaign; False when one with this id already exists (nothing changes)."""
        meta: dict[FieldT, EncodableT] = {
            "campaign": self.campaign,
            "config": json.dumps(config, sort_keys=True),
            "created_at": str(time.time()),
            "status": "running",
            "expected_mine": str(expected_mine),
        }
        if not self._r.hsetnx(self._k("meta"), "campaign", self.campaign):
            return False
        self._r.hset(self._k("meta"), mapping=meta)
        self._r.zadd(_INDEX, {self.campaign: time.time()})
        return True

    def expect_more_mining(self, units: int) -> None:
        """Grow the campaign by more mining units (sent by the caller), so `done` waits for them."""
        self._r.hincrby(self._k("meta"), "expected_mine", units)

    def exists(self) -> bool:
        return bool(self._r.exists(self._k("meta")))

    def config(self) -> dict[str, Any]:
        raw = self._r.hget(self._k("meta"), "config")
        if raw is None:
            raise KeyError(f"unknown campaign {self.campaign!r}")
        return dict(json.loads(str(raw)))

    def campaign_config(self) -> CampaignConfig:
        """The validated config; a campaign's config never changes, so each process parses it once."""
        return _parsed_config(self._r, self.campaign)

    def status(self) -> str:
        """running, building (the controller builds its dataset), finished, build_failed or cancelled."""
        value = self._r.hget(self._k("meta"), "status")
        if value is None:
            raise KeyError(f"unknown campaign {self.campaign!r}")
        return value.decode() if isinstance(value, bytes) else str(value)

    def set_status(self, status: str) -> None:
        self._r.hset(self._k("meta"), "status", status)

    def next_resume(self) -> int:
        """Number this resume of the campaign (1, 2, ...): names the tasks it sends."""
        return int(self._r.hincrby(self._k("meta"), "resumes", 1))

    def cancelled(self) -> bool:
        """True once `warrior campaign cancel` stopped the campaign: its queued tasks end without work."""
        return self._r.hget(self._k("meta"), "status") in ("cancelled", b"cancelled")

    # -- stage marks -----------------------------------------------------------------------
    def mark(self, stage: str, item: str) -> bool:
        """Record that item reached stage; True only the first time."""
        return bool(self._r.sadd(self._k(stage), item))

    def members(self, stage: str) -> set[str]:
        return {str(m) for m in self._r.smembers(self._k(stage))}

    def count(self, stage: str) -> int:
        return int(self._r.scard(self._k(stage)))

    def drop(self, item: str, reason: str) -> None:
        """An instruction left the pipeline for a recorded reason."""
        self._r.hset(self._k("dropped"), item, reason)

    def fail(self, item: str, reason: str) -> None:
        """A unit of work that could not be done (dead expert, unparseable verdict ...), with its reason."""
        self._r.hset(self._k("failures"), item, reason[:500])

    def put(self, table: str, item: str, value: Any) -> None:
        self._r.hset(self._k(table), item, json.dumps(value, sort_keys=True))

    def table(self, table: str) -> dict[str, Any]:
        return {str(k): json.loads(v) for k, v in self._r.hgetall(self._k(table)).items()}

    def add_once(self, stage: str, item: str, sums: str, increments: dict[str, float]) -> bool:
        """Mark `item` in `stage` and add `increments` to the fields of hash `sums`, atomically and only the
        first time (one Lua script): a redelivered task, or a crash between the two, cannot count twice or
        half. True when this call counted."""
        args: list[EncodableT] = [item]
        for field, by in increments.items():
            args += [field, repr(float(by))]
        return bool(self._r.eval(_ADD_ONCE, 2, self._k(stage), self._k(sums), *args))

    def sums(self, sums: str) -> dict[str, float]:
        """A hash written by `add_once`, as floats."""
        return {str(k): float(v) for k, v in self._r.hgetall(self._k(sums)).items()}

    def table_size(self, table: str) -> int:
        return int(self._r.hlen(self._k(table)))

    def incr(self, counter: str, by: int = 1) -> None:
        """Event counters (ledger reuse, engine calls): these count events, not items."""
        self._r.hincrby(self._k("counters"), counter, by)

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything `warrior status` shows, in one dict."""
        meta = {str(k): str(v) for k, v in self._r.hgetall(self._k("meta")).items()}
        if not meta:
            raise KeyError(f"unknown campaign {self.campaign!r}")
        dropped = Counter(str(v) for v in self._r.hvals(self._k("dropped")))
        failures_raw = {str(k): str(v) for k, v in self._r.hgetall(self._k("failures")).items()}
        failure_kinds = Counter(k.split(":", 1)[0] for k in failures_raw)
        stats = self.table("battle_stats")
        counters = {str(k): int(v) for k, v in self._r.hgetall(self._k("counters")).items()}
        timing = {str(k): round(float(v), 3) for k, v in self._r.hgetall(self._k("timing")).items()}
        expected = int(meta.get("expected_mine", "0"))
        snap = {
            "campaign": self.campaign,
            "status": meta.get("status", "unknown"),
            "created_at": float(meta.get("created_at", "0")),
            "mine": {"expected": expected, "done": self.count("mine_done")},
            "instructions": {
                "mined": self.count("mined"),
                "screened": self.count("screened"),
                "kept": self.count("kept"),
                "dropped": dict(sorted(dropped.items())),
            },
            "battled": self.count("battled"),
            "scored": self.count("scored"),
            "collected": self.count("collected"),
            "finished": self.count("finished"),
            "roster": sorted(self.members("roster")),
            "newcomers_matchmaking": self._newcomers_matchmaking(),
            "backfills": {"sent": self.count("backfill_sent"), "done": self.count("backfill_done")},
            "battles": sum(int(s.get("battles", 0)) for s in stats.values()),
            "votes": sum(int(s.get("votes", 0)) for s in stats.values()),
            "ties": sum(int(s.get("ties", 0)) for s in stats.values()),
            "execution": summarize_stats(stats.values()),
            "failures": dict(sorted(failure_kinds.items())),
            "failure_examples": dict(sorted(failures_raw.items())[:10]),
            "counters": counters,
            "timing": timing,
            # What the campaign controller did: progress watch, re-sends, the dataset it built.
            "controller": self.table("controller"),
        }
        snap["done"] = self._done(snap)
        return snap

    def _newcomers_matchmaking(self) -> list[str]:
        """Experts that joined mid-campaign and are still being brought in: between two rounds of
        backfills every sent backfill is done, yet the next round is still to be chosen."""
        starting = {e["name"] for e in self.config().get("experts", [])}
        over = {name for name, m in self.table("matchmaking").items()
                if m.get("rated") or m.get("exhausted") or m.get("abandoned")}  # fmt: skip
        return sorted(self.members("roster") - starting - over)

    @staticmethod
    def _done(snap: dict[str, Any]) -> bool:
        mine, ins = snap["mine"], snap["instructions"]
        return bool(
            mine["done"] >= mine["expected"]
            and ins["screened"] >= ins["mined"]
            and snap["finished"] >= ins["kept"]
            and snap["backfills"]["done"] >= snap["backfills"]["sent"]
            and not snap["newcomers_matchmaking"]
        )


_config_cache: dict[tuple[int, str], CampaignConfig] = {}


def _parsed_config(client: redis.Redis, campaign: str) -> CampaignConfig:
    key = (id(client), campaign)
    cached = _config_cache.get(key)
    if cached is None:
        cached = parse_campaign_config(CampaignState(client, campaign).config(), f"campaign {campaign}")
        _config_cache[key] = cached
    return cached


def list_campaigns(client: redis.Redis) -> list[str]:
    """Campaign ids, oldest first."""
    return [str(c) for c in client.zrange(_INDEX, 0, -1)]
