"""Redis holds no per-instruction state past its stage: the status tallies are O(1), a finished campaign's
per-instruction sets and hashes move to one store object (and `status` answers the same), and a task's
delivery count is gone once the task ended."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest
import redis

from warrior.common.campaign_recovery import resend_unfinished, restore
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.runtime import DEADLETTER_KEY, MAX_DELIVERIES, Runtime, deliveries_ttl_s, get_runtime
from warrior.common.verification import summarize_stats

N = 300  # instructions: enough that any per-instruction hash or set left behind stands out
EXPERTS = ["alpha", "beta", "gamma"]


@pytest.fixture()
def rt(warrior_env: dict[str, str]) -> Runtime:
    return get_runtime()


def _stats(rng: random.Random) -> dict[str, Any]:
    executable = rng.random() < 0.7
    execution: dict[str, Any] = {"executable": executable, "votes": {"execution": rng.randint(0, 4),
                                                                       "llm": rng.randint(0, 4)}}  # fmt: skip
    if executable:
        execution |= {
            "answers_run": 3, "tests": rng.randint(1, 9), "trusted": rng.randint(0, 5), "untrusted": rng.randint(0, 2),
            "outcomes": {"passed": rng.randint(0, 9), "failed": rng.randint(0, 9)},
            "passed": {name: [rng.randint(0, 3), 3] for name in EXPERTS},
        }  # fmt: skip
    return {"battles": 3, "votes": rng.randint(2, 12), "ties": rng.randint(0, 2), "judgments": 6,
            "execution": execution}  # fmt: skip


def _campaign(rt: Runtime, name: str = "bounded", n: int = N) -> CampaignState:
    """A campaign that went through every stage the way the workers record it, redeliveries included."""
    rng = random.Random(7)
    state = CampaignState(rt.redis, name)
    config = {"campaign": name, "experts": [{"name": e, "engine": "zero-latency-test"} for e in EXPERTS],
              "mining": {"per_expert": n // 3}}  # fmt: skip
    assert state.create(config, n)
    for expert in EXPERTS:
        state.mark("roster", expert)
    for i in range(n):
        iid = f"{name}-{i:05d}"
        state.mark("mine_done", f"{EXPERTS[i % 3]}:{i // 3}")
        state.mark("mined", iid)
        state.mark("screened", iid)
        state.put("quality", iid, {"score": rng.random() * 10})
        rt.redis.hset(f"warrior:campaign:{name}:lsh:sigs", iid, b"\x00\x01sig")  # the miner's dedup index
        if i % 10 == 0:
            state.drop(iid, "off_topic")
            state.drop(iid, "duplicate")  # a redelivery that came to another verdict: counted once, as the last
            continue
        if i % 17 == 0:
            state.drop(iid, "low_quality")
            state.drop(iid, "low_quality")
            continue
        state.mark("kept", iid)
        state.put("categories", iid, ["algorithms", "strings", "math"][i % 3])
        state.mark("battled", iid)
        stats = _stats(rng)
        state.put("battle_stats", iid, stats)
        state.put("battle_stats", iid, stats)  # a redelivered battle records the same statistics again
        state.put("votes", iid, [["alpha", "beta", "a"]])
        state.put("vote_order", iid, float(i))
        state.add_once("votes_counted", iid, "vote_points", {json.dumps(["alpha", "beta"]): 1.0})
        if i % 29 == 0:
            state.fail(f"judge:{iid}:alpha|beta:gamma", "no verdict")
            state.fail(f"judge:{iid}:alpha|beta:gamma", "no verdict")
        for stage in ("scored", "collected", "finished"):
            state.mark(stage, iid)
    state.fail("mine:alpha:99", "expert gone")
    state.incr("engine_calls", 9 * n)
    return state


def _reference(client: redis.Redis, name: str) -> dict[str, Any]:
    """What the status read before its tallies: every per-item hash read whole."""
    prefix = f"warrior:campaign:{name}:"
    stats = [json.loads(v) for v in client.hvals(prefix + "battle_stats")]
    failures = client.hgetall(prefix + "failures")
    return {
        "dropped": dict(sorted(Counter(client.hvals(prefix + "dropped")).items())),
        "failures": dict(sorted(Counter(k.split(":", 1)[0] for k in failures).items())),
        "failure_examples": dict(sorted(failures.items())[:10]),
        "battles": sum(s["battles"] for s in stats),
        "votes": sum(s["votes"] for s in stats),
        "ties": sum(s["ties"] for s in stats),
        "execution": summarize_stats(stats),
    }


def _per_instruction_keys(client: redis.Redis, name: str, bound: int) -> dict[str, int]:
    """The campaign's keys holding more than `bound` members or fields (key -> size)."""
    out = {}
    for key in client.scan_iter(match=f"warrior:campaign:{name}:*"):
        kind = client.type(key)
        size = client.scard(key) if kind == "set" else client.hlen(key) if kind == "hash" else 0
        if size > bound:
            out[str(key)] = int(size)
    return out


def test_status_reads_tallies_that_match_every_hash_read_whole(rt: Runtime) -> None:
    state = _campaign(rt)
    snap = state.snapshot()
    reference = _reference(rt.redis, "bounded")
    assert snap["instructions"]["dropped"] == reference["dropped"] == {"duplicate": 30, "low_quality": 16}
    assert {k: snap[k] for k in reference if k != "dropped"} == {k: v for k, v in reference.items() if k != "dropped"}
    assert snap["failures"] == {"judge": 9, "mine": 1}
    assert snap["done"]


def test_hashes_written_without_tallies_are_still_counted_right(rt: Runtime) -> None:
    """A campaign recorded before the tallies existed (or written directly): the status reads the hashes."""
    state = _campaign(rt, n=60)
    prefix = "warrior:campaign:bounded:"
    rt.redis.hset(prefix + "dropped", "legacy-1", "off_topic")
    rt.redis.hset(prefix + "failures", "score:legacy-1", "lost")
    rt.redis.hset(prefix + "battle_stats", "legacy-1", json.dumps(_stats(random.Random(1))))
    snap = state.snapshot()
    reference = _reference(rt.redis, "bounded")
    assert snap["instructions"]["dropped"] == reference["dropped"]
    assert snap["failures"] == reference["failures"]
    assert (snap["battles"], snap["votes"], snap["execution"]) == (
        reference["battles"], reference["votes"], reference["execution"])  # fmt: skip


def test_a_compacted_campaign_keeps_only_counts_in_redis_and_reports_the_same(rt: Runtime) -> None:
    state = _campaign(rt)
    before = state.snapshot()
    kept_members = state.members("kept")
    categories = state.table("categories")
    assert _per_instruction_keys(rt.redis, "bounded", 20), "the running campaign has per-instruction keys"
    keys_before = len(list(rt.redis.scan_iter(match="warrior:campaign:bounded:*")))

    key = state.compact(rt.store)

    assert key.startswith("runs/bounded/state/") and rt.store.exists(key)
    assert _per_instruction_keys(rt.redis, "bounded", 20) == {}, "no per-instruction set or hash is left"
    fields = sum(rt.redis.hlen(k) if rt.redis.type(k) == "hash" else rt.redis.scard(k)
                 for k in rt.redis.scan_iter(match="warrior:campaign:bounded:*"))  # fmt: skip
    assert fields < 60, f"{fields} fields left in Redis for {N} instructions"
    assert len(list(rt.redis.scan_iter(match="warrior:campaign:bounded:*"))) < keys_before
    assert not list(rt.redis.scan_iter(match="warrior:campaign:bounded:lsh:*")), "the dedup index is dropped"
    after = CampaignState(rt.redis, "bounded").snapshot()
    assert after == before
    # The stages' tables read back from the store, for the finalize, the dataset and the viewer.
    reader = CampaignState(rt.redis, "bounded", rt.store)
    assert reader.members("kept") == kept_members
    assert reader.count("kept") == len(kept_members)
    assert reader.table("categories") == categories
    some = sorted(categories)[:3]
    assert reader.lookup("categories", [*some, "no-such-id"]) == [categories[i] for i in some] + [None]
    assert reader.table_size("votes") == len(kept_members)
    assert reader.reasons("dropped") == {i: r for i, r in _reference_reasons(N).items()}
    assert state.compaction_complete()
    assert state.compact(rt.store) == key, "compacting again changes nothing"
    assert CampaignState(rt.redis, "bounded").snapshot() == before


def _reference_reasons(n: int) -> dict[str, str]:
    return {f"bounded-{i:05d}": "duplicate" if i % 10 == 0 else "low_quality"
            for i in range(n) if i % 10 == 0 or i % 17 == 0}  # fmt: skip


def test_work_added_to_a_compacted_campaign_reopens_it_with_every_table_back(rt: Runtime) -> None:
    """More mining sent to a finished campaign: its tables come back to Redis and count live again."""
    state = _campaign(rt, n=90)
    state.set_status("finished")
    before = state.snapshot()
    state.compact(rt.store)
    state.expect_more_mining(3)
    assert not state.compacted() and state.status() == "running"
    again = state.snapshot()
    assert again | {"status": "finished", "mine": before["mine"], "done": True} == before
    assert again["mine"]["expected"] == before["mine"]["expected"] + 3 and not again["done"]
    assert _reference(rt.redis, "bounded") == {k: again[k] if k != "dropped" else again["instructions"]["dropped"]
                                               for k in _reference(rt.redis, "bounded")}  # fmt: skip
    state.drop("bounded-new", "off_topic")  # the tallies count on from where they were
    assert state.snapshot()["instructions"]["dropped"]["off_topic"] == before["instructions"]["dropped"].get(
        "off_topic", 0) + 1  # fmt: skip


def test_a_late_redelivery_after_compaction_counts_nothing_twice(rt: Runtime) -> None:
    """A battle re-sent after the campaign was compacted writes its marks again (into fresh keys): the
    status of the finished campaign stays what it was, and the next compaction folds them in."""
    state = _campaign(rt, n=60)
    state.set_status("finished")
    before = state.snapshot()
    key = state.compact(rt.store)
    iid = sorted(state.members("kept"))[0]
    stats = json.loads(json.dumps(CampaignState(rt.redis, "bounded", rt.store).table("battle_stats")[iid]))
    state.mark("battled", iid)
    state.put("battle_stats", iid, stats)
    state.drop("bounded-00000", "duplicate")
    state.fail("mine:alpha:99", "expert gone")
    assert state.snapshot() == before
    rt.redis.hdel("warrior:campaign:bounded:meta", "compacted_at")  # as if the first compaction was cut short
    assert state.compact(rt.store) == key, "the same tables: the same archive"
    assert not rt.redis.exists("warrior:campaign:bounded:battled", "warrior:campaign:bounded:battle_stats")
    assert state.snapshot() == before


def test_resuming_a_compacted_campaign_finds_every_stage_done_and_sends_nothing(rt: Runtime) -> None:
    """`warrior campaign resume` on a finished, compacted campaign reads its stages from the archive: nothing
    is unfinished, so nothing is sent (nothing paid twice), and the controller marks it finished again."""
    state = _campaign(rt, n=30)
    state.set_status("finished")
    before = state.snapshot()
    state.compact(rt.store)
    app = make_celery("bounded-tests")
    resumed = restore(rt, "bounded")
    resumed.set_status("running")
    sent = resend_unfinished(app, resumed, resumed.campaign_config(), "resume1")
    app.close()
    assert sum(sent.values()) == 0, sent
    snap = resumed.snapshot()
    assert snap["done"] and snap | {"status": "finished"} == before


def test_a_task_that_ended_leaves_no_delivery_count_and_a_killed_one_is_still_dead_lettered(rt: Runtime) -> None:
    app = make_celery("bounded-tests")
    app.conf.task_always_eager = True

    @app.task(name="bounded_test.work", bind=True)
    def work(self: Any, fail: bool) -> str:
        assert get_runtime().admit(self.request.id, self.name, attempt=self.request.retries or 0)
        assert rt.redis.exists(f"warrior:deliveries:{self.request.id}")
        if fail:
            raise ValueError("a task that fails for good is acknowledged too")
        return "done"

    assert work.apply(args=[False], task_id="ok-1").get() == "done"
    assert work.apply(args=[True], task_id="bad-1").failed()
    assert list(rt.redis.scan_iter(match="warrior:deliveries:*")) == []

    # A worker killed mid-task never ends it: the count stays (bounded by its TTL) and the limit holds.
    for _ in range(MAX_DELIVERIES):
        assert rt.admit("killed-1", "bounded_test.work")
    assert not rt.admit("killed-1", "bounded_test.work")
    assert "killed-1" in rt.redis.hgetall(DEADLETTER_KEY)
    assert 0 < rt.redis.ttl("warrior:deliveries:killed-1") <= deliveries_ttl_s() < 7 * 24 * 3600
    app.close()
