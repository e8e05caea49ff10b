"""The LLM-only ablation: the same battles rated and decided from the LLM judges' verdicts alone.

With shadow judging, a judge also rules the pairs execution decided; those verdicts carry no votes
in the arena's own ratings and winners, and are exactly what the ablation counts instead.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from warrior.common.campaign_state import CampaignState
from warrior.common.redis_client import connect
from warrior.common.store import LocalStore
from warrior.common.verification import SHADOW
from warrior.scorer import tasks

CONFIG = {
    "campaign": "abl",
    "experts": [{"name": n, "engine": "zero-latency-test"} for n in ("good", "bad", "judge")],
    "scoring": {"bootstrap_rounds": 10, "max_flip_rate": 1.0},
}


def _battle(iid: str) -> dict[str, Any]:
    """`good` passes the trusted test and `bad` does not; the judge, asked anyway, prefers `bad`."""
    return {
        "id": iid,
        "competitors": ["bad", "good"],
        "answers": {n: {"text": f"{n} answer", "revision": "r", "finish_reason": "stop"} for n in ("good", "bad")},
        "execution": {
            "executable": True,
            "matrix": {"good": {"t1": "passed"}, "bad": {"t1": "failed"}},
            "trust": {"trusted": ["t1"], "untrusted": {}},
            "tests": [{"id": "t1"}],
        },  # fmt: skip
        "judgments": [
            {"a": "good", "b": "bad", "judge": "execution", "source": "execution", "winner": "good", "votes": 1},
            {
                "a": "good",
                "b": "bad",
                "judge": "judge",
                "source": SHADOW,
                "winner": "bad",
                "votes": 0,
                "forward": {"verdict": "B"},
                "backward": {"verdict": "A"},
            },  # fmt: skip
        ],
        "pairs": [{"a": "good", "b": "bad", "votes_a": 1, "votes_b": 0, "ties": 0, "source": "execution"}],
    }


def test_llm_only_verdicts_decide_the_same_battles_by_the_judges_alone(tmp_path: Path, redis_url: str) -> None:
    rt: Any = SimpleNamespace(store=LocalStore(tmp_path), redis=connect(redis_url))
    state = CampaignState(rt.redis, "abl")
    state.create(CONFIG, expected_mine=4)
    for i in range(4):
        rt.store.put_json(f"runs/abl/battles/i{i}.json", _battle(f"i{i}"))
    arena = tasks.finalize(rt, "abl")
    snapshot = rt.store.get_json(arena["ratings_key"])
    # The arena's winners follow the tests; the shadow verdicts were recorded, not counted.
    assert {w["winner"] for w in snapshot["winners"].values()} == {"good"}
    assert arena["votes"] == 4 and arena["judges"] == {}
    llm = tasks.finalize(rt, "abl", verdicts="llm")
    ablation = rt.store.get_json(llm["ratings_key"])
    assert ablation["verdicts"] == "llm" and llm["ratings_key"] != arena["ratings_key"]
    assert {w["winner"] for w in ablation["winners"].values()} == {"bad"}
    assert [row["expert"] for row in llm["leaderboard"]][0] == "bad"
    assert llm["judges"]["judge"]["judgments"] == 4  # the judge is on the LLM-only panel
    # The campaign still points at the arena's ratings.
    assert state.table("meta_pointers")["ratings"] == arena["ratings_key"]
