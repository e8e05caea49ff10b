"""A tiny campaign end to end on the real SmolLM2 model: three experts, real mining, answers and verdicts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from warrior.cli import campaign as ops
from warrior.dataset_builder.versions import read_manifest, read_rows

pytestmark = [pytest.mark.stack, pytest.mark.model]

NAMES = ("smol-a", "smol-b", "smol-c")
SMOLLM2_REVISION = "b179c9523d0e6a0f"


def test_tiny_campaign_on_a_real_model(make_stack: Callable[..., Any], smollm2_path: Path) -> None:
    stack = make_stack(
        {
            "campaign": "e2e-smollm2",
            # Three experts serving the same small model: distinct names, distinct sampling seeds.
            "experts": [{"name": n, "model": str(smollm2_path), "parallel": 1} for n in NAMES],
            "mining": {
                "per_expert": 3,
                "sampling": {"max_tokens": 96},
                "grid": [{"temperature": 1.0, "top_p": 0.99}],
            },
            # SmolLM2 rates every request low (expected ratings near 3): the rating runs, 1.0 keeps all.
            "screening": {"rating": {"min_score": 1.0}},
            "battle": {"answer_sampling": {"temperature": 0.7, "top_p": 0.95, "max_tokens": 48}, "tie_margin": 0.01},
            "scoring": {"bootstrap_rounds": 50},
            "dataset": {"name": "e2e-smollm2"},
        }
    )
    campaign = ops.start(stack.rt, stack.app, stack.config)
    snap = ops.wait(stack.rt, campaign, timeout_s=600, interval_s=1)
    assert snap["instructions"]["mined"] == 9
    kept = snap["instructions"]["kept"]
    assert kept >= 1, snap["instructions"]
    assert snap["battles"] == 3 * kept and snap["failures"] == {}

    manifest = ops.build_dataset(stack.app, campaign, "e2e-smollm2")
    rows = read_rows(stack.rt.store, read_manifest(stack.rt.store, "e2e-smollm2", manifest["version"]))
    assert len(rows) == kept
    for row in rows:
        lineage = row["lineage"]
        iid = lineage["instruction_id"]
        instruction = stack.rt.store.get_json(f"runs/{campaign}/instructions/{iid}.json")
        battle = stack.rt.store.get_json(f"runs/{campaign}/battles/{iid}.json")
        # The user turn is the mined instruction, the assistant turn the winner's real answer.
        assert row["messages"][0]["content"] == instruction["text"]
        assert row["messages"][1]["content"] == battle["answers"][lineage["winner"]]["text"]
        assert lineage["attacker"] == instruction["attacker"] and lineage["attacker_revision"] == SMOLLM2_REVISION
        assert lineage["model_revisions"] == dict.fromkeys(NAMES, SMOLLM2_REVISION)
        assert lineage["ratings"].startswith(f"runs/{campaign}/ratings/")
        # Every LLM judgment is by the expert outside the pair, in log-prob mode, both orders recorded;
        # a pair decided by running the code says why.
        for judgment in battle["judgments"]:
            assert judgment["judge"] not in (judgment["a"], judgment["b"])
            if judgment["source"] == "execution":
                assert judgment["judge"] == "execution" and judgment["reason"]
                continue
            assert judgment["mode"] == "logprobs"
            for order in ("forward", "backward"):
                assert abs(sum(judgment[order]["probs"].values()) - 1.0) < 1e-6
        # The row says what its winner passed, and the battle kept every run behind it.
        assert lineage["verification"]["status"] in ("verified", "partial", "unverified", "not_executed")
        if battle["execution"]["executable"]:
            assert set(battle["execution"]["matrix"]) == set(NAMES)
    # Every model call went through the ledger and is on record.
    calls = stack.rt.store.list(f"runs/{campaign}/calls/")
    assert len(calls) == snap["counters"]["engine_calls"]
