"""What the pages read: campaign state in Redis and records in the object store, a page at a time.

No page reads a whole campaign. Lists of battles are pages of the store's listing (``list_page``, a
cursor after the last instruction id shown); dataset rows are read from the one or two shards a page
falls in. Two things are read whole and kept, because they never change once written: a ratings
snapshot (content-addressed, holds every winner) and the diff between two dataset versions.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import redis

from warrior.common.battles import battle_key, instruction_of, merge, part_id
from warrior.common.campaign_state import CampaignState, list_campaigns
from warrior.common.store import ObjectNotFound, ObjectStore
from warrior.dataset_builder.versions import DatasetNotFound, list_versions, read_manifest, read_shard

T = TypeVar("T")
STAGES = ("mined", "screened", "kept", "battled", "scored", "finished")


class NotFound(LookupError):
    """The campaign, battle, dataset or report asked for does not exist."""


class _Cache:
    """A small thread-safe LRU for immutable objects (a snapshot per content hash, a diff per version pair)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[no-any-return]
        value = load()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


class Viewer:
    """Read-only access to one stack's Redis and object store."""

    def __init__(self, client: redis.Redis, store: ObjectStore) -> None:
        self.redis = client
        self.store = store
        self._snapshots = _Cache(4)
        self._diffs: OrderedDict[tuple[str, str, str], Future[dict[str, Any]]] = OrderedDict()
        self._diff_lock = threading.Lock()
        self._diff_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warrior-web-diff")

    # -- campaigns ---------------------------------------------------------------------------------
    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign, newest first, with its status and stage counts (one pipelined round trip)."""
        names = list(reversed(list_campaigns(self.redis)))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            prefix = f"warrior:campaign:{name}:"
            pipe.hmget(prefix + "meta", "status", "created_at", "summary")
            for stage in ("mined", "kept", "finished"):
                pipe.scard(prefix + stage)
        replies = pipe.execute()
        out = []
        for i, name in enumerate(names):
            (status, created, summary), mined, kept, finished = replies[i * 4 : i * 4 + 4]
            if summary:  # compacted: the stage sets are in the store, their sizes in the summary
                counts = json.loads(summary)["counts"]
                mined, kept, finished = counts["mined"], counts["kept"], counts["finished"]
            out.append({"campaign": name, "status": status or "unknown", "created_at": float(created or 0),
                        "mined": mined, "kept": kept, "finished": finished})  # fmt: skip
        return out

    def _state(self, campaign: str) -> CampaignState:
        state = CampaignState(self.redis, campaign, self.store)
        if not state.exists():
            raise NotFound(f"no campaign {campaign!r}")
        return state

    def progress(self, campaign: str) -> dict[str, Any]:
        """Counts by stage and the finished share: cheap enough to poll every few seconds."""
        self._state(campaign)
        prefix = f"warrior:campaign:{campaign}:"
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(prefix + "meta", "status", "expected_mine", "summary")
        pipe.scard(prefix + "mine_done")
        for stage in STAGES:
            pipe.scard(prefix + stage)
        pipe.hlen(prefix + "dropped")
        pipe.hlen(prefix + "failures")
        (status, expected, summary), mine_done, *counts, dropped, failures = pipe.execute()
        stages = dict(zip(STAGES, counts, strict=True))
        if summary:  # compacted: the sizes of its archived sets and hashes
            compact = json.loads(summary)
            mine_done = compact["counts"]["mine_done"]
            stages = {stage: compact["counts"][stage] for stage in STAGES}
            dropped, failures = compact["sizes"].get("dropped", 0), compact["sizes"].get("failures", 0)
        kept = stages["kept"]
        return {
            "campaign": campaign,
            "status": status or "unknown",
            "mine": {"done": mine_done, "expected": int(expected or 0)},
            "stages": stages,
            "dropped": dropped,
            "failures": failures,
            "done": stages["finished"],
            "total": kept,
            "percent": round(100.0 * stages["finished"] / kept, 1) if kept else 0.0,
        }

    def overview(self, campaign: str) -> dict[str, Any]:
        """The campaign page: what `warrior status` shows but the per-battle figures, from small Redis reads.

        Drop reasons and failure kinds come from the tallies kept beside their hashes (O(1)); the leaderboard
        page has the rated battles and votes.
        """
        state = self._state(campaign)
        prefix = f"warrior:campaign:{campaign}:"
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(prefix + "meta")
        pipe.hgetall(prefix + "counters")
        pipe.hgetall(prefix + "timing")
        meta, counters, timing = pipe.execute()
        return {
            "campaign": campaign,
            "status": meta.get("status", "unknown"),
            "created_at": float(meta.get("created_at", 0)),
            "dropped": dict(sorted(state.dropped_counts().items())),
            "failures": dict(sorted(state.failure_counts().items())),
            "failure_examples": state.failure_examples(),
            "counters": {k: int(v) for k, v in counters.items()},
            "timing": {k: round(float(v), 3) for k, v in timing.items()},
            "controller": state.table("controller"),
            "roster": sorted(state.members("roster")),
            "ratings_key": self.ratings_key(campaign),
        }

    def snapshot(self, campaign: str) -> dict[str, Any]:
        """What `warrior status` shows (CampaignState.snapshot): every figure, read whole."""
        return self._state(campaign).snapshot()

    # -- ratings -----------------------------------------------------------------------------------
    def ratings_key(self, campaign: str) -> str | None:
        pointer = self.redis.hget(f"warrior:campaign:{campaign}:meta_pointers", "ratings")
        return None if pointer is None else str(json.loads(pointer))

    def ratings(self, campaign: str) -> dict[str, Any] | None:
        """The campaign's newest ratings snapshot (the scorer's finalize: leaderboard, judges, winners), or
        None before the campaign was finalized."""
        self._state(campaign)
        key = self.ratings_key(campaign)
        if key is None:
            return None
        return self._snapshots.get(key, lambda: dict(self.store.get_json(key)))

    def preload(self, campaigns: int = 4) -> None:
        """Read the ratings snapshots of the newest campaigns, so that their first pages need not (best effort)."""
        try:
            for campaign in list(reversed(list_campaigns(self.redis)))[:campaigns]:
                self.ratings(campaign)
        except Exception:  # noqa: BLE001 - a page that needs the snapshot reads it (and reports) itself
            return

    # -- battles -----------------------------------------------------------------------------------
    def battles_page(self, campaign: str, after: str = "", limit: int = 50) -> dict[str, Any]:
        """A page of the campaign's battles in instruction-id order, after the instruction id `after`."""
        self._state(campaign)
        prefix = f"runs/{campaign}/battles/"
        ids: list[str] = []
        cursor = prefix + after + ".json" if after else ""
        more = False
        while len(ids) <= limit:
            keys = self.store.list_page(prefix, start_after=cursor, limit=limit + 1 - len(ids))
            if not keys:
                break
            for key in keys:
                part = part_id(key)
                if instruction_of(part) == part and part != after:
                    ids.append(part)  # a newcomer's addendum (<id>+<expert>) is part of its base's battle
            cursor = keys[-1]
        if len(ids) > limit:
            ids, more = ids[:limit], True
        categories = self._state(campaign).lookup("categories", ids)
        winners = (self.ratings(campaign) or {}).get("winners", {})
        rows = []
        for iid, category in zip(ids, categories, strict=True):
            battle = self.store.get_json(f"{prefix}{iid}.json")
            final = winners.get(iid)
            rows.append({
                "id": iid,
                "instruction": battle["instruction"],
                "category": category or None,
                "competitors": battle["competitors"],
                "winner": final["winner"] if final else self._provisional_winner(campaign, iid),
                "final": final is not None,
            })  # fmt: skip
        return {"rows": rows, "next": ids[-1] if more else None, "after": after}

    def _provisional_winner(self, campaign: str, iid: str) -> str | None:
        try:
            return self.store.get_json(f"runs/{campaign}/scores/{iid}.json").get("winner")  # type: ignore[no-any-return]
        except ObjectNotFound:
            return None

    def battle(self, campaign: str, iid: str) -> dict[str, Any]:
        """One instruction's merged battle with its category and its winner (final, else provisional)."""
        self._state(campaign)
        # load_battle's parts, found with one page of the listing (no sort of the whole folder).
        keys = self.store.list_page(battle_key(campaign, iid).removesuffix(".json"), limit=1000)
        parts = [self.store.get_json(k) for k in keys if instruction_of(part_id(k)) == iid]
        if not parts:
            raise NotFound(f"no battle {iid!r} in campaign {campaign!r}")
        battle = merge(parts)
        (category,) = self._state(campaign).lookup("categories", [iid])
        final = ((self.ratings(campaign) or {}).get("winners") or {}).get(iid)
        return battle | {
            "category": category or None,
            "final": final,
            "provisional_winner": None if final else self._provisional_winner(campaign, iid),
        }

    # -- datasets ----------------------------------------------------------------------------------
    def datasets(self) -> list[dict[str, Any]]:
        """Dataset names with the version `latest.json` names."""
        names = sorted({key.split("/")[1] for key in self.store.list("datasets/") if key.endswith("/latest.json")})
        out = []
        for name in names:
            try:
                latest = self.store.get_json(f"datasets/{name}/latest.json")
            except ObjectNotFound:
                continue
            out.append({"name": name, "latest": latest.get("version"), "updated_at": latest.get("updated_at")})
        return out

    def versions(self, name: str) -> list[dict[str, Any]]:
        versions = list_versions(self.store, name)
        if not versions:
            raise NotFound(f"no dataset {name!r}")
        return versions

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        try:
            return read_manifest(self.store, name, version)
        except DatasetNotFound as exc:
            raise NotFound(str(exc)) from None

    def card(self, manifest: dict[str, Any]) -> str:
        try:
            return self.store.get(manifest["card"]).decode("utf-8")
        except (KeyError, ObjectNotFound):
            return ""

    def rows(self, manifest: dict[str, Any], offset: int, limit: int) -> list[dict[str, Any]]:
        """Rows offset .. offset+limit of a version, read from the shards they fall in (sha256-checked)."""
        out: list[dict[str, Any]] = []
        start = 0
        for shard in manifest["shards"]:
            end = start + int(shard["rows"])
            if end > offset and start < offset + limit:
                lines = [line for line in read_shard(self.store, shard).split(b"\n") if line]
                first = max(0, offset - start)
                out += [json.loads(line) for line in lines[first : first + limit - len(out)]]
            start = end
            if len(out) >= limit:
                break
        return out

    def diff(self, name: str, a: str, b: str, wait_s: float = 0.5) -> dict[str, Any] | None:
        """diff_versions of two committed versions, or None while it is still being computed.

        Versions never change, so each pair is computed once, in the background: a diff of two large
        versions (every row of both is read) takes seconds, and the page asks again until it is there.
        """
        from warrior.dataset_builder.diff import diff_versions

        self.manifest(name, a)  # NotFound at once for a version that does not exist
        self.manifest(name, b)
        key = (name, a, b)
        with self._diff_lock:
            future = self._diffs.get(key)
            if future is None or (future.done() and future.exception() is not None):
                future = self._diff_pool.submit(diff_versions, self.store, name, a, b)
                self._diffs[key] = future
            self._diffs.move_to_end(key)
            while len(self._diffs) > 8:
                oldest = next(iter(self._diffs))
                if not self._diffs[oldest].done():
                    break
                del self._diffs[oldest]
        try:
            return future.result(timeout=wait_s)
        except FutureTimeout:
            return None

    # -- flywheel and evaluations ------------------------------------------------------------------
    def flywheels(self) -> list[dict[str, Any]]:
        out = []
        for key in self.store.list("flywheel/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "report.json":
                report = self.store.get_json(key)
                out.append({"id": parts[1], "turns": len(report.get("turns") or [report]),
                            "evaluation": sorted(report.get("evaluation", {}))})  # fmt: skip
        return out

    def flywheel(self, flywheel: str) -> dict[str, Any]:
        try:
            return dict(self.store.get_json(f"flywheel/{flywheel}/report.json"))
        except ObjectNotFound:
            raise NotFound(f"no flywheel report {flywheel!r}") from None

    def evals(self) -> list[dict[str, Any]]:
        """Stored evaluations (evals/<model>/<revision>/<benchmark>.json): pass@1 each."""
        out = []
        for key in self.store.list("evals/"):
            parts = key.split("/")
            if len(parts) != 4 or not parts[3].endswith(".json"):
                continue  # the evaluations' call ledger lives under evals/<model>/<revision>/calls/
            stored = self.store.get_json(key)
            out.append({"model": parts[1], "revision": parts[2], "benchmark": parts[3].removesuffix(".json"),
                        "pass_at_1": stored.get("pass_at_1"), "passed": stored.get("passed"),
                        "total": stored.get("total")})  # fmt: skip
        return out
