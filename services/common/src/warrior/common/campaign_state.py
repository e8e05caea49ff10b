"""Campaign progress in Redis: idempotent sets and hashes that every stage updates and `status` reads.

While a campaign runs, its per-instruction marks live in Redis (sets and hashes under
`warrior:campaign:<id>:`), beside small tallies that `snapshot()` reads in O(1). Once the controller
marks it finished, `compact()` moves every per-instruction set and hash into one object in the store
(`runs/<id>/state/<hash>.json`) and keeps only counts in Redis: `snapshot()` answers the same, and
`members()` / `table()` read the archived tables back from the store.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import io
import json
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from redis.typing import EncodableT, FieldT

from warrior.common.campaign_config import CampaignConfig, parse_campaign_config

if TYPE_CHECKING:
    from warrior.common.store import ObjectStore

_INDEX = "warrior:campaigns"
_ADD_ONCE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""
# Write one field of a per-item hash and keep its tally (KEYS[2]) in step, in one atomic step.
# ARGV: field, value, mode, then increments. mode "value": the tally counts the fields by value (a
# drop's reason; an overwrite with another reason moves the count). mode "new": the increments are
# added only when the field is new (a failure's kind, a battle part's statistics), so a redelivery
# that writes the field again does not count twice.
_PUT_TALLIED = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == 'value' then
  if old then
    if redis.call('HINCRBY', KEYS[2], old, -1) <= 0 then redis.call('HDEL', KEYS[2], old) end
  end
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
elseif not old then
  for i = 4, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
return 1
"""
# Compare-and-set of the status field of KEYS[1] (the meta hash): ARGV expected, new.
_SET_STATUS_IF = """
if redis.call('HGET', KEYS[1], 'status') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'status', ARGV[2])
  return 1
end
return 0
"""
# Hashes and sets of a campaign that stay in Redis when it is compacted: bounded by the roster or
# by the number of reasons, kinds and stages, never by the number of instructions.
KEPT_KEYS = frozenset({
    "meta", "counters", "timing", "controller", "meta_pointers", "matchmaking", "roster", "vote_points",
})  # fmt: skip
# The miner's near-duplicate index: needed only while mining, rebuilt by nothing after; dropped, not archived.
INDEX_PREFIX = "lsh:"
# Stage sets whose sizes `snapshot()` and the viewer report.
COUNTED_SETS = ("mine_done", "mined", "screened", "kept", "battled", "scored", "collected", "finished",
                "backfill_sent", "backfill_done", "votes_counted")  # fmt: skip
TALLIED_TABLES = {"dropped": "drop_counts", "failures": "failure_counts", "battle_stats": "battle_sums"}
# A compacted campaign's tallies are frozen in its summary: a late redelivery that writes a mark again
# after compaction (into a fresh key) cannot count twice.
_UNREAD = object()  # the campaign's summary, not read yet
# (archive key, kind, table) -> its values: archives never change once written.
_tables: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
_tables_lock = threading.Lock()


class CampaignState:
    """Progress of one campaign.

    Stages record *which* item they finished (set members, hash fields), never bare increments,
    so a redelivered task does not count twice.
    """

    def __init__(self, client: redis.Redis, campaign: str, store: ObjectStore | None = None) -> None:
        self._r = client
        self.campaign = campaign
        self._p = f"warrior:campaign:{campaign}:"
        self._store = store  # reads a compacted campaign's archive; None: the process's runtime store

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
        """Grow the campaign by more mining units (sent by the caller), so `done` waits for them.

        A finished campaign that was compacted is reopened first (`reopen`): its new work is counted live.
        A campaign that is building or built (not yet compacted) goes back to `running` and forgets its
        build, so the controller builds the dataset again, with the new rows, once the new work is done
        (a build in flight meanwhile cannot mark it finished: see `set_status_if`)."""
        if self.compacted():
            self.reopen()
        self._r.hincrby(self._k("meta"), "expected_mine", units)
        for status in ("building", "finished", "build_failed"):
            if self.set_status_if(status, "running"):
                self._r.hdel(self._k("controller"), "build")
                break

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

    def set_status_if(self, expected: str, status: str) -> bool:
        """Set the status only if it is `expected` (one atomic step); whether it was set."""
        return bool(self._r.eval(_SET_STATUS_IF, 1, self._k("meta"), expected, status))

    def next_build(self) -> int:
        """Number this build of the campaign's dataset (1, 2, ...; work added after a build means another)."""
        return int(self._r.hincrby(self._k("meta"), "builds", 1))

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
        if stage in KEPT_KEYS:
            return {str(m) for m in self._r.smembers(self._k(stage))}
        members, archived = self._with_archive("smembers", stage)
        return {str(m) for m in members} | set(archived or ())

    def count(self, stage: str) -> int:
        size, summary = self._with_summary("scard", stage)
        if summary is not None and stage in summary["counts"]:
            return int(summary["counts"][stage])
        return int(size)

    def drop(self, item: str, reason: str) -> None:
        """An instruction left the pipeline for a recorded reason."""
        self._r.eval(_PUT_TALLIED, 2, self._k("dropped"), self._k("drop_counts"), item, reason, "value")

    def fail(self, item: str, reason: str) -> None:
        """A unit of work that could not be done (dead expert, unparseable verdict ...), with its reason."""
        kind = item.split(":", 1)[0]
        self._r.eval(_PUT_TALLIED, 2, self._k("failures"), self._k("failure_counts"), item, reason[:500], "new",
                     kind, "1")  # fmt: skip

    def put(self, table: str, item: str, value: Any) -> None:
        encoded = json.dumps(value, sort_keys=True)
        if table == "battle_stats":  # summed once per battle part, so `snapshot()` need not read them all
            args: list[EncodableT] = []
            for field, by in _stat_increments(value).items():
                args += [field, repr(float(by))]
            self._r.eval(_PUT_TALLIED, 2, self._k(table), self._k("battle_sums"), item, encoded, "new", *args)
            return
        self._r.hset(self._k(table), item, encoded)

    def table(self, table: str) -> dict[str, Any]:
        if table in KEPT_KEYS:
            return {str(k): json.loads(v) for k, v in self._r.hgetall(self._k(table)).items()}
        live, archived = self._with_archive("hgetall", table)
        merged = dict(archived or {}) | {str(k): str(v) for k, v in live.items()}
        return {k: json.loads(v) for k, v in merged.items()}

    def reasons(self, table: str) -> dict[str, str]:
        """A hash of plain strings (`dropped`: item -> reason, `failures`: unit -> error), archived or not."""
        live, archived = self._with_archive("hgetall", table)
        return dict(archived or {}) | {str(k): str(v) for k, v in live.items()}

    def lookup(self, table: str, items: list[str]) -> list[Any]:
        """The values of a few fields of a table (None where absent), archived or not."""
        if not items:
            return []
        raw, archived = self._with_archive("hmget", table, items)
        if archived:
            raw = [value if value is not None else archived.get(item) for item, value in zip(items, raw, strict=True)]
        return [None if value is None else json.loads(value) for value in raw]

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
        if sums in KEPT_KEYS:
            return {str(k): float(v) for k, v in self._r.hgetall(self._k(sums)).items()}
        live, archived = self._with_archive("hgetall", sums)
        merged = dict(archived or {}) | {str(k): str(v) for k, v in live.items()}
        return {k: float(v) for k, v in merged.items()}

    def table_size(self, table: str) -> int:
        size, summary = self._with_summary("hlen", table)
        if summary is not None and table in summary["sizes"]:
            return int(summary["sizes"][table])
        return int(size)

    def incr(self, counter: str, by: int = 1) -> None:
        """Event counters (ledger reuse, engine calls): these count events, not items."""
        self._r.hincrby(self._k("counters"), counter, by)

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything `warrior status` shows, in one dict.

        O(1) in the campaign's size: stage sizes (SCARD), and tallies kept beside the per-item hashes
        (drop reasons, failure kinds, summed battle statistics); a compacted campaign's sizes come from
        its summary. A hash whose tally does not cover it (written before tallies were kept) is read whole.
        """
        meta = {str(k): str(v) for k, v in self._r.hgetall(self._k("meta")).items()}
        if not meta:
            raise KeyError(f"unknown campaign {self.campaign!r}")
        summary = json.loads(meta["summary"]) if "summary" in meta else None
        counters = {str(k): int(v) for k, v in self._r.hgetall(self._k("counters")).items()}
        timing = {str(k): round(float(v), 3) for k, v in self._r.hgetall(self._k("timing")).items()}
        expected = int(meta.get("expected_mine", "0"))
        counts = summary["counts"] if summary is not None else self._set_sizes()
        dropped, kinds, sums = self.dropped_counts(summary), self.failure_counts(summary), self._battle_sums(summary)
        examples = summary["failure_examples"] if summary is not None else self._failure_examples()
        snap = {
            "campaign": self.campaign,
            "status": meta.get("status", "unknown"),
            "created_at": float(meta.get("created_at", "0")),
            "mine": {"expected": expected, "done": counts["mine_done"]},
            "instructions": {
                "mined": counts["mined"],
                "screened": counts["screened"],
                "kept": counts["kept"],
                "dropped": dict(sorted(dropped.items())),
            },
            "battled": counts["battled"],
            "scored": counts["scored"],
            "collected": counts["collected"],
            "finished": counts["finished"],
            "roster": sorted(self.members("roster")),
            "newcomers_matchmaking": self._newcomers_matchmaking(),
            "backfills": {"sent": counts["backfill_sent"], "done": counts["backfill_done"]},
            "battles": int(sums.get("battles", 0)),
            "votes": int(sums.get("votes", 0)),
            "ties": int(sums.get("ties", 0)),
            "execution": _execution_from_sums(sums),
            "failures": dict(sorted(kinds.items())),
            "failure_examples": examples,
            "counters": counters,
            "timing": timing,
            # What the campaign controller did: progress watch, re-sends, the dataset it built.
            "controller": self.table("controller"),
        }
        snap["done"] = self._done(snap)
        return snap

    def _set_sizes(self) -> dict[str, int]:
        pipe = self._r.pipeline(transaction=False)
        for stage in COUNTED_SETS:
            pipe.scard(self._k(stage))
        return {stage: int(n) for stage, n in zip(COUNTED_SETS, pipe.execute(), strict=True)}

    def _tally(self, table: str, summary: dict[str, Any] | None) -> dict[str, float] | None:
        """The tally of a per-item hash when it covers every field, else None (read the hash whole)."""
        if summary is not None:
            return {str(k): float(v) for k, v in summary["tallies"][table].items()}
        tally = {str(k): float(v) for k, v in self._r.hgetall(self._k(TALLIED_TABLES[table])).items()}
        size = int(self._r.hlen(self._k(table)))
        covered = tally.get("parts", 0.0) if table == "battle_stats" else sum(tally.values())
        return tally if round(covered) == size else None

    def dropped_counts(self, summary: dict[str, Any] | None | object = _UNREAD) -> dict[str, int]:
        """How many instructions were dropped, by reason."""
        summary = self._summary() if summary is _UNREAD else summary
        tally = self._tally("dropped", summary)  # type: ignore[arg-type]
        if tally is None:
            return dict(Counter(str(v) for v in self._r.hvals(self._k("dropped"))))
        return {k: int(v) for k, v in tally.items() if int(v) > 0}

    def failure_counts(self, summary: dict[str, Any] | None | object = _UNREAD) -> dict[str, int]:
        """How many units of work failed, by kind (the failure key's first part)."""
        summary = self._summary() if summary is _UNREAD else summary
        tally = self._tally("failures", summary)  # type: ignore[arg-type]
        if tally is None:
            return dict(Counter(str(k).split(":", 1)[0] for k in self._r.hkeys(self._k("failures"))))
        return {k: int(v) for k, v in tally.items() if int(v) > 0}

    def failure_examples(self) -> dict[str, str]:
        """Up to 10 failures with their reasons (archived ones for a compacted campaign)."""
        summary = self._summary()
        return dict(summary["failure_examples"]) if summary is not None else self._failure_examples()

    def _failure_examples(self) -> dict[str, str]:
        # One HSCAN page: the whole hash while it is small (as it is unless the campaign fails at scale).
        _, page = self._r.hscan(self._k("failures"), 0, count=100)
        items = page.items() if isinstance(page, dict) else []
        return dict(sorted((str(k), str(v)) for k, v in items)[:10])

    def _battle_sums(self, summary: dict[str, Any] | None) -> dict[str, float]:
        tally = self._tally("battle_stats", summary)
        if tally is None:
            tally = {}
            for stats in self.table("battle_stats").values():
                for field, by in _stat_increments(stats).items():
                    tally[field] = tally.get(field, 0.0) + by
        return tally

    # -- compaction --------------------------------------------------------------------------
    def compacted(self) -> bool:
        """True once `compact()` moved the campaign's per-instruction state to the store (reads go there)."""
        return bool(self._r.hexists(self._k("meta"), "archive"))

    def compaction_complete(self) -> bool:
        """True once `compact()` also deleted every per-instruction key (False: run it again)."""
        return bool(self._r.hexists(self._k("meta"), "compacted_at"))

    def reopen(self) -> None:
        """Put a compacted campaign's tables back in Redis, a table at a time, and make it `running`, for
        work added after it finished; the controller finishes (and compacts) it again once that is done.
        Until the last step (one HDEL of the archive's key and summary), readers see the compacted view."""
        key, summary = self.archive_key(), self._summary()
        if key is None or summary is None:
            return
        for kind, name, values in archived_tables(self._store_or_runtime().get(key)):
            items = list(values) if kind == "set" else list(values.items())
            for i in range(0, len(items), 1000):
                if kind == "set":
                    self._r.sadd(self._k(name), *items[i : i + 1000])
                else:
                    self._r.hset(self._k(name), mapping=dict(items[i : i + 1000]))
        pipe = self._r.pipeline(transaction=True)
        for table, tally in TALLIED_TABLES.items():
            counts = summary["tallies"].get(table) or {}
            pipe.delete(self._k(tally))
            if counts:  # drop and failure tallies are HINCRBY counts: integers
                as_int = table != "battle_stats"
                pipe.hset(
                    self._k(tally), mapping={k: str(int(v)) if as_int else repr(float(v)) for k, v in counts.items()}
                )
        pipe.hset(self._k("meta"), "status", "running")
        pipe.hdel(self._k("controller"), "build")  # built before: the controller builds it again when done
        pipe.hdel(self._k("meta"), "archive", "summary", "compacted_at")
        pipe.execute()

    def archive_key(self) -> str | None:
        """The store key of the campaign's archived state, None while it is not compacted."""
        key = self._r.hget(self._k("meta"), "archive")
        return None if key is None else str(key)

    def _summary(self) -> dict[str, Any] | None:
        raw = self._r.hget(self._k("meta"), "summary")
        return None if raw is None else dict(json.loads(raw))

    def _store_or_runtime(self) -> ObjectStore:
        if self._store is None:
            from warrior.common.runtime import get_runtime  # late: the runtime is built on first use

            self._store = get_runtime().store
        return self._store

    def _with_archive(self, command: str, name: str, *args: Any) -> tuple[Any, Any]:
        """One read of a live key and, in the same round trip, whether the campaign was compacted: the
        reply and the table's archived values (a set's members, a hash's fields; None while not compacted)."""
        pipe = self._r.pipeline(transaction=False)
        getattr(pipe, command)(self._k(name), *args)
        pipe.hget(self._k("meta"), "archive")
        reply, key = pipe.execute()
        if key is None:
            return reply, None
        return reply, self._archived(str(key), "set" if command == "smembers" else "hash", name)

    def _with_summary(self, command: str, name: str) -> tuple[Any, dict[str, Any] | None]:
        """One read of a live key and, in the same round trip, the compacted campaign's summary (or None)."""
        pipe = self._r.pipeline(transaction=False)
        getattr(pipe, command)(self._k(name))
        pipe.hget(self._k("meta"), "summary")
        reply, raw = pipe.execute()
        return reply, None if raw is None else dict(json.loads(raw))

    def _archived(self, key: str, kind: str, name: str) -> Any:
        """One table of an archive (None when it has none of that name), read alone: the archive is one
        gzipped JSON-lines object, a line per table, so a reader of `categories` parses only that line."""
        with _tables_lock:
            if (key, kind, name) in _tables:
                _tables.move_to_end((key, kind, name))
                return _tables[(key, kind, name)]
        value = read_archived_table(self._store_or_runtime().get(key), kind, name)
        with _tables_lock:
            _tables[(key, kind, name)] = value
            while len(_tables) > 8:
                _tables.popitem(last=False)
        return value

    def _live_keys(self) -> dict[str, str]:
        """The campaign's keys in Redis (name after the prefix -> Redis type)."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self._p) + "*"
        names = [str(k)[len(self._p) :] for k in self._r.scan_iter(match=pattern, count=1000)]
        pipe = self._r.pipeline(transaction=False)
        for name in names:
            pipe.type(self._k(name))
        return {name: str(kind) for name, kind in zip(names, pipe.execute(), strict=True)}

    def compact(self, store: ObjectStore) -> str:
        """Move a finished campaign's per-instruction state out of Redis; the archive's store key.

        Every set and hash but the bounded ones (KEPT_KEYS) is written, merged with an earlier archive,
        to one store object `runs/<campaign>/state/<content hash>.jsonl.gz` (a line per table), table by
        table, so memory holds one table at a time however large the campaign; the meta hash then gets the
        stage sizes and tallies `snapshot()` needs (`summary`) and the archive's key, in one HSET; only
        then are the per-instruction keys deleted, and `compacted_at` set last. Interrupted anywhere, it
        is simply run again (`compaction_complete()` is False until it ran to its end).
        """
        self._store = store
        keys = self._live_keys()
        earlier_key = self.archive_key()
        earlier = (self._summary() or {}).get("tables", {"set": [], "hash": []}) if earlier_key else {}
        tallies = set(TALLIED_TABLES.values())
        moved = sorted(n for n, kind in keys.items() if n not in KEPT_KEYS and n not in tallies
                       and not n.startswith(INDEX_PREFIX) and kind in ("set", "hash"))  # fmt: skip
        names = {
            kind: sorted({n for n in moved if keys[n] == kind} | set(earlier.get(kind, ()))) for kind in ("set", "hash")
        }
        gzip_ = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip stream
        digest = hashlib.sha256()
        parts: list[bytes] = []

        def emit(line: bytes) -> None:
            digest.update(line)
            parts.append(gzip_.compress(line))

        emit(json.dumps({"campaign": self.campaign, "format": 2}, sort_keys=True).encode() + b"\n")
        counts: dict[str, int] = dict.fromkeys(COUNTED_SETS, 0)
        sizes: dict[str, int] = {}
        summary: dict[str, Any] = {
            "failure_examples": {},
            "tallies": {"dropped": {}, "failures": {}, "battle_stats": {}},
        }
        tables: dict[str, list[str]] = {"set": [], "hash": []}
        for name in names["set"]:
            members = set(self._archived(earlier_key, "set", name) or ()) if earlier_key else set()
            members.update(str(m) for m in self._r.sscan_iter(self._k(name), count=1000))
            counts[name] = len(members)
            if members:
                emit(_table_line("set", name, sorted(members)))
                tables["set"].append(name)
        for name in names["hash"]:
            fields = dict(self._archived(earlier_key, "hash", name) or {}) if earlier_key else {}
            fields.update((str(k), str(v)) for k, v in self._r.hscan_iter(self._k(name), count=1000))
            sizes[name] = len(fields)
            if name in TALLIED_TABLES:
                summary["tallies"][name] = _tally_of(name, fields)
            if name == "failures":
                summary["failure_examples"] = dict(heapq.nsmallest(10, fields.items()))
            if fields:
                emit(_table_line("hash", name, fields))
                tables["hash"].append(name)
        parts.append(gzip_.flush())
        key = f"runs/{self.campaign}/state/{digest.hexdigest()[:16]}.jsonl.gz"
        store.put(key, b"".join(parts), if_absent=True)
        parts.clear()
        summary |= {"counts": dict(sorted(counts.items())), "sizes": dict(sorted(sizes.items())), "tables": tables}
        self._r.hset(self._k("meta"), mapping={"summary": json.dumps(summary, sort_keys=True), "archive": key})
        gone = moved + [n for n in keys if n.startswith(INDEX_PREFIX) or n in tallies]
        for i in range(0, len(gone), 500):
            self._r.delete(*(self._k(n) for n in gone[i : i + 500]))
        self._r.hset(self._k("meta"), "compacted_at", str(time.time()))
        return key

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


def archived_tables(data: bytes) -> Iterator[tuple[str, str, Any]]:
    """Every table of an archive's bytes, one at a time: (kind, name, values)."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as lines:
        for line in lines:
            record = json.loads(line)
            if "kind" in record:
                yield record["kind"], record["name"], record["values"]


def _table_line(kind: str, name: str, values: Any) -> bytes:
    """One table of an archive: `{"kind":...,"name":...,"values":...}` on one line (the prefix is what a
    reader looks for)."""
    body = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _line_prefix(kind, name) + body.encode() + b"}\n"


def _line_prefix(kind: str, name: str) -> bytes:
    return f'{{"kind":{json.dumps(kind)},"name":{json.dumps(name)},"values":'.encode()


def read_archived_table(data: bytes, kind: str, name: str) -> Any:
    """The values of one table of an archive's bytes (None when it has no such table), read line by line."""
    prefix = _line_prefix(kind, name)
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as lines:
        for line in lines:
            if line.startswith(prefix):
                return json.loads(line)["values"]
    return None


def _tally_of(table: str, fields: dict[str, str]) -> dict[str, float]:
    """A per-item hash's tally, from the hash read whole (what the running campaign kept beside it)."""
    if table == "dropped":
        return {k: float(v) for k, v in Counter(fields.values()).items()}
    if table == "failures":
        return {k: float(v) for k, v in Counter(f.split(":", 1)[0] for f in fields).items()}
    sums: dict[str, float] = {}
    for raw in fields.values():
        for field, by in _stat_increments(json.loads(raw)).items():
            sums[field] = sums.get(field, 0.0) + by
    return sums


def _stat_increments(stats: dict[str, Any]) -> dict[str, float]:
    """One battle part's statistics as the increments of the campaign's sums (`battle_sums`), the inverse
    of `_execution_from_sums`: together they give what `summarize_stats` gives over every part."""
    out: dict[str, float] = {"parts": 1.0}
    for name in ("battles", "votes", "ties"):
        out[name] = float(stats.get(name, 0))
    e = stats.get("execution") or {}
    for source, n in (e.get("votes") or {}).items():
        out[f"votes_by_source:{source}"] = out.get(f"votes_by_source:{source}", 0.0) + int(n)
    if not e.get("executable"):
        out["battles_llm_only"] = 1.0
        return out
    out["battles_executed"] = 1.0
    out["answers_run"] = float(int(e.get("answers_run", 0)))
    out["tests_written"] = float(int(e.get("tests", 0)))
    out["tests_trusted"] = float(int(e.get("trusted", 0)))
    out["tests_untrusted"] = float(int(e.get("untrusted", 0)))
    for outcome, n in (e.get("outcomes") or {}).items():
        out[f"runs:{outcome}"] = out.get(f"runs:{outcome}", 0.0) + int(n)
    for name, (won, faced) in (e.get("passed") or {}).items():
        out[f"passed:{name}"] = out.get(f"passed:{name}", 0.0) + int(won)
        out[f"faced:{name}"] = out.get(f"faced:{name}", 0.0) + int(faced)
    return out


def _execution_from_sums(sums: dict[str, float]) -> dict[str, Any]:
    """`summarize_stats` over every battle part, from the parts' summed increments."""
    names = ("battles_executed", "battles_llm_only", "answers_run", "tests_written", "tests_trusted", "tests_untrusted")
    total: dict[str, Any] = {name: int(sums.get(name, 0)) for name in names}
    total["runs"] = {}
    total["votes_by_source"] = {}
    per_expert: dict[str, list[int]] = {}
    for field, value in sums.items():
        kind, _, name = field.partition(":")
        if kind == "runs":
            total["runs"][name] = int(value)
        elif kind == "votes_by_source":
            total["votes_by_source"][name] = int(value)
        elif kind in ("passed", "faced"):
            per_expert.setdefault(name, [0, 0])[0 if kind == "passed" else 1] = int(value)
    total["runs"] = dict(sorted(total["runs"].items()))
    total["votes_by_source"] = dict(sorted(total["votes_by_source"].items()))
    total["pass_rate"] = {
        name: {"passed": won, "trusted_tests": faced, "rate": round(won / faced, 3) if faced else None}
        for name, (won, faced) in sorted(per_expert.items())
    }
    return total


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
