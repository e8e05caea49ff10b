"""The build stage: campaign rows -> winners from the ratings -> selection -> a committed version."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from warrior.common.campaign_state import CampaignState
from warrior.common.redis_client import connect
from warrior.common.store import LocalStore
from warrior.dataset_builder import tasks
from warrior.dataset_builder.versions import read_rows

CONFIG = {
    "campaign": "c1",
    "experts": [{"name": "qwen", "engine": "zero-latency-test"}, {"name": "smol", "engine": "zero-latency-test"}],
    "dataset": {"name": "ds"},
}
TEXTS = [
    "Write a Python function that merges two sorted lists into one sorted list.",
    "Implement an LRU cache in Python with get and put in constant time.",
    "Parse an ISO 8601 date string and return the day of the week.",
    "Write a Python function that merges two sorted lists into one sorted list.",  # same text and answer as i000
]
RATINGS = "runs/c1/ratings/final.json"


@pytest.fixture()
def campaign(tmp_path: Path, redis_url: str) -> SimpleNamespace:
    """A finished two-expert campaign of four instructions, collected; returns a runtime with its store and Redis."""
    rt = SimpleNamespace(store=LocalStore(tmp_path), redis=connect(redis_url))
    state = CampaignState(rt.redis, "c1")
    state.create(CONFIG, expected_mine=6)
    state.drop("x1", "contaminated")
    state.drop("x2", "too_short")
    winners: dict[str, Any] = {}
    for i, text in enumerate(TEXTS):
        iid = f"i{i:03d}"
        rt.store.put_json(
            f"runs/c1/instructions/{iid}.json",
            {
                "id": iid,
                "campaign": "c1",
                "text": text,
                "attacker": "smol",
                "attacker_revision": "r0",
                "language": "Python",
            },
        )
        if i < 3:
            rt.store.put_json(f"runs/c1/screening/{iid}.json", {"id": iid, "category": "algorithms"})
        answer = "def merge(a, b):\n    return sorted(a + b)" if i in (0, 3) else f"qwen answer {i}"
        rt.store.put_json(
            f"runs/c1/battles/{iid}.json",
            {
                "id": iid,
                "answers": {
                    "qwen": {"text": answer, "revision": "rq", "finish_reason": "stop"},
                    "smol": {"text": f"smol answer {i}", "revision": "rs", "finish_reason": "stop"},
                },
                "pairs": [{"a": "qwen", "b": "smol", "votes_a": 1, "votes_b": 0, "ties": 0}],
                "judgments": [{"judge": "gemma"}],
            },
        )
        rt.store.put_json(f"runs/c1/scores/{iid}.json", {"winner": "qwen", "scores": {"qwen": 0.9, "smol": 0.1}})
        tasks.collect(rt, "c1", iid)
        winners[iid] = {"winner": "qwen", "scores": {"qwen": 0.9, "smol": 0.1}}
    leaderboard = [
        {"expert": "qwen", "rating": 1050.0, "ci_low": 1000.0, "ci_high": 1100.0, "battles": 4, "win_rate": 1.0}
    ]
    rt.store.put_json(RATINGS, {"winners": winners, "leaderboard": leaderboard})
    return rt


def test_build_removes_duplicates_and_records_screening_and_selection(campaign: SimpleNamespace) -> None:
    reported: list[tuple[int, int, str]] = []
    manifest = tasks.build(campaign, "c1", "ds", RATINGS, progress=lambda *a: reported.append(a))
    # What `warrior dataset build` shows: the rows read out of those there are, then the steps after.
    assert [r[:2] for r in reported] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4), (4, 4)]
    assert [r[2] for r in reported[-2:]] == ["selecting rows", "writing 3 rows"]
    rows = read_rows(campaign.store, manifest)
    assert [r["lineage"]["instruction_id"] for r in rows] == ["i000", "i001", "i002"]
    assert manifest["selection"]["dropped"] == {
        "not_verified": 0,
        "exact_duplicate": 1,
        "near_duplicate": 0,
        "not_selected": 0,
    }
    assert manifest["selection"]["embedding_model"] is None  # the defaults compare no embeddings
    assert manifest["screening"] == {"contaminated": 1, "too_short": 1}
    assert {r["lineage"]["category"] for r in rows} == {"algorithms"}
    assert {r["lineage"]["language"] for r in rows} == {"Python"}
    card = campaign.store.get(manifest["card"]).decode()
    assert "| contaminated | 1 |" in card and "| exact_duplicate | 1 |" in card
    assert tasks.build(campaign, "c1", "ds", RATINGS)["version"] == manifest["version"]


def test_build_subsamples_to_the_configured_target(campaign: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    section = SimpleNamespace(name="ds", target_rows=2, seed=0, near_dup_threshold=0.95, require_verified=False)
    monkeypatch.setattr(CampaignState, "campaign_config", lambda self: SimpleNamespace(dataset=section))
    manifest = tasks.build(campaign, "c1", "ds", RATINGS)
    assert manifest["rows"] == 2
    assert manifest["selection"]["config"] == {
        "target_rows": 2,
        "seed": 0,
        "near_dup_threshold": 0.95,
        "require_verified": False,
    }
    assert manifest["selection"]["dropped"] == {
        "not_verified": 0,
        "exact_duplicate": 1,
        "near_duplicate": 0,
        "not_selected": 1,
    }
    assert manifest["selection"]["embedding_model"]["name"] == "all-MiniLM-L6-v2"


def test_build_of_a_campaign_unknown_to_redis_records_no_screening(campaign: SimpleNamespace) -> None:
    campaign.redis.flushall()
    manifest = tasks.build(campaign, "c1", "ds", RATINGS)
    assert manifest["rows"] == 3 and manifest["screening"] is None


def test_ablation_builds_take_the_given_rows_and_draw_random_winners(campaign: SimpleNamespace) -> None:
    arena = read_rows(campaign.store, tasks.build(campaign, "c1", "ds", RATINGS))
    ids = [r["lineage"]["instruction_id"] for r in arena]
    # Exactly the rows named (the duplicate i003 too: no selection runs again), winner drawn per row.
    drawn = tasks.build(campaign, "c1", "ds-random", RATINGS, winners="random", instructions=[*ids, "i003"], seed=3)
    rows = read_rows(campaign.store, drawn)
    assert [r["lineage"]["instruction_id"] for r in rows] == [*ids, "i003"]
    winners = [r["lineage"]["winner"] for r in rows]
    assert set(winners) <= {"qwen", "smol"}
    for row in rows:  # the target is the drawn answer
        answer = row["messages"][-1]["content"]
        assert answer.startswith("smol") if row["lineage"]["winner"] == "smol" else not answer.startswith("smol")
    # The same seed draws the same winners; other seeds draw others.
    again = tasks.build(campaign, "c1", "ds-random", RATINGS, winners="random", instructions=[*ids, "i003"], seed=3)
    assert again["version"] == drawn["version"]
    draws = {
        tuple(r["lineage"]["winner"] for r in read_rows(campaign.store, tasks.build(
            campaign, "c1", f"ds-r{seed}", RATINGS, winners="random", instructions=ids, seed=seed)))
        for seed in range(8)
    }  # fmt: skip
    assert len(draws) > 1
    with pytest.raises(ValueError, match="no row for 1 instruction"):
        tasks.build(campaign, "c1", "ds-x", RATINGS, instructions=["i000", "nope"])
