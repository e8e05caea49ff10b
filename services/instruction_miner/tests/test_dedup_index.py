"""Near-duplicate removal holds across miner replicas: the LSH index lives in Redis."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from warrior.common.redis_client import connect
from warrior.instruction_miner import dedup_index
from warrior.instruction_miner.dedup_index import SharedDedupIndex

BASE = (
    "Write a Python function that reads a CSV file of sales records, groups the rows by region, "
    "and returns the total revenue per region as a dictionary sorted by revenue in descending order."
)
NEAR = BASE.replace("descending", "ascending")
OTHER = "How do I reverse a linked list in place in Python without using extra memory for a new list?"


def test_second_near_duplicate_is_dropped_and_names_the_first(redis_url: str) -> None:
    index = SharedDedupIndex(connect(redis_url), "c1")
    assert index.check_and_insert("i1", BASE) is None
    assert index.check_and_insert("i2", NEAR) == "i1"
    assert index.check_and_insert("i3", OTHER) is None


def test_two_replicas_on_one_redis_see_each_others_instructions(redis_url: str) -> None:
    replica_a = SharedDedupIndex(connect(redis_url), "c1")
    replica_b = SharedDedupIndex(connect(redis_url), "c1")
    assert replica_a.check_and_insert("i1", BASE) is None
    assert replica_b.check_and_insert("i2", NEAR) == "i1"
    assert replica_b.check_and_insert("i3", OTHER) is None
    assert replica_a.check_and_insert("i4", OTHER.replace("Python", "Java")) == "i3"


def test_distinct_instructions_are_all_kept(redis_url: str) -> None:
    rng = random.Random(7)
    vocab = [f"{rng.choice('bcdfgklmnprst')}{rng.choice('aeiou')}{rng.choice('bcdfgklmnprst')}{i}" for i in range(3000)]
    index = SharedDedupIndex(connect(redis_url), "c1")
    for i in range(300):
        text = "Write a Python function that " + " ".join(rng.sample(vocab, 25))
        assert index.check_and_insert(f"i{i}", text) is None, i


def _with_jaccard(base_words: list[str], keep: int, total: int) -> str:
    """Words sharing `keep` of `total` distinct words with base_words (the rest new)."""
    return " ".join(base_words[:keep] + [f"other{k}" for k in range(total - keep)])


@pytest.mark.parametrize(
    ("threshold", "similar_kept"),
    # A pair at true Jaccard 0.75 and a pair at 0.35 against one original, at three thresholds.
    [(0.5, {"low"}), (0.3, set()), (0.9, {"low", "high"})],
)
def test_the_threshold_decides(redis_url: str, threshold: float, similar_kept: set[str]) -> None:
    words = [f"word{k}" for k in range(60)]
    # 60 words each: sharing 51 gives Jaccard 51/69 ~ 0.74; sharing 31 gives 31/89 ~ 0.35.
    texts = {"high": _with_jaccard(words, 51, 60), "low": _with_jaccard(words, 31, 60)}
    kept = set()
    for name, text in texts.items():
        # Each one alone against the original, in a campaign of its own.
        index = SharedDedupIndex(connect(redis_url), f"c-{name}", threshold=threshold)
        assert index.check_and_insert("orig", " ".join(words)) is None
        if index.check_and_insert(name, text) is None:
            kept.add(name)
    assert kept == similar_kept


def test_redelivery_of_a_kept_item_is_kept_again(redis_url: str) -> None:
    index = SharedDedupIndex(connect(redis_url), "c1")
    assert index.check_and_insert("i1", BASE) is None
    assert index.check_and_insert("i1", BASE) is None


def test_redelivery_after_its_duplicate_was_dropped(redis_url: str) -> None:
    # The kept one stays kept, and the dropped one is dropped again against the same original.
    index = SharedDedupIndex(connect(redis_url), "c1")
    assert index.check_and_insert("i1", BASE) is None
    assert index.check_and_insert("i2", NEAR) == "i1"
    assert index.check_and_insert("i1", BASE) is None
    assert index.check_and_insert("i2", NEAR) == "i1"


def test_a_bucket_shared_by_hundreds_of_instructions_is_searched_whole(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 indexed requests share one band (a common boilerplate opening) without being near-duplicates;
    a near-duplicate of the last of them (in id order) is still found, and a request unlike them all kept."""
    rng = np.random.default_rng(3)
    shared_band = rng.integers(0, 2**32 - 1, size=5, dtype=np.uint32)
    crafted: dict[str, np.ndarray] = {}
    for k in range(600):
        values = rng.integers(0, 2**32 - 1, size=128, dtype=np.uint32)
        values[:5] = shared_band
        crafted[f"request {k}"] = values
    near = crafted["request 599"].copy()
    near[100:110] += 1  # 118 of 128 positions still agree
    crafted["near"] = near
    crafted["unlike"] = rng.integers(0, 2**32 - 1, size=128, dtype=np.uint32)
    monkeypatch.setattr(dedup_index, "signature", lambda text, num_perm: crafted[text])
    index = SharedDedupIndex(connect(redis_url), "c1")
    for k in range(600):
        assert index.check_and_insert(f"i{k:03d}", f"request {k}") is None, k
    assert index.check_and_insert("j1", "near") == "i599"
    assert index.check_and_insert("j2", "unlike") is None


def test_campaigns_do_not_share_an_index(redis_url: str) -> None:
    client = connect(redis_url)
    assert SharedDedupIndex(client, "c1").check_and_insert("i1", BASE) is None
    assert SharedDedupIndex(client, "c2").check_and_insert("i1", BASE) is None


def test_two_workers_racing_on_near_duplicates_keep_exactly_one_of_each_pair(redis_url: str) -> None:
    """Two replicas (each with its own Redis connection) screen overlapping batches at the same time."""
    # Twenty unrelated requests (each mostly its own words), each with a near-duplicate in the other batch.
    pairs = [
        "Write a Python function that counts " + " ".join(f"topic{i}word{k}" for k in range(16)) + " per hour"
        for i in range(20)
    ]
    batch_a = [(f"a{i}", text) for i, text in enumerate(pairs)]
    batch_b = [(f"b{i}", text.replace("counts", "tallies")) for i, text in enumerate(pairs)]
    kept: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def worker(name: str, batch: list[tuple[str, str]]) -> None:
        index = SharedDedupIndex(connect(redis_url), "race")
        start.wait()
        for item, text in batch:
            if index.check_and_insert(item, text) is None:
                kept[name].append(item)

    threads = [threading.Thread(target=worker, args=(n, b)) for n, b in (("a", batch_a), ("b", batch_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    survivors = kept["a"] + kept["b"]
    for i in range(20):
        assert (f"a{i}" in survivors) != (f"b{i}" in survivors), f"pair {i}: {survivors}"
