"""The live roster: experts that join mid-campaign are brought in, experts that die are worked around.

Joining runs on the ZeroLatencyTestEngine (instant fake outputs, not a model) since it is about
orchestration; dying mid-battle runs on the real SmolLM2 model, so battles are in flight when the
expert is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from warrior.cli import campaign as ops
from warrior.common.battles import load_battles
from warrior.dataset_builder.versions import read_manifest, read_rows

pytestmark = pytest.mark.stack


@pytest.fixture()
def spawn_expert(warrior_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"late-{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrior.expert_inference.server", "--name", name, *args],
            env=warrior_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _wait_registered(stack: Any, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while name not in stack.rt.registry.experts():
        assert time.monotonic() < deadline, f"{name} did not register"
        time.sleep(0.1)


def test_expert_registering_mid_campaign_joins_and_gets_battles(
    make_stack: Callable[..., Any], spawn_expert: Callable[..., subprocess.Popen[bytes]]
) -> None:
    stack = make_stack(
        {
            "campaign": "live-join",
            "experts": [{"name": n, "engine": "zero-latency-test"} for n in ("alpha", "beta", "gamma")],
            "mining": {"per_expert": 10},
            "screening": {"rating": {"min_score": 4.0}},  # hash-random ratings near 5.5: keep most
            "matchmaking": {"batch": 4, "bootstrap_rounds": 20},
            # The test engine's verdicts are hash-random, so the judge panel would exclude every judge;
            # this test is about the roster, so every vote counts.
            "scoring": {"bootstrap_rounds": 20, "max_flip_rate": 1.0},
            "dataset": {"name": "live-join"},
        }
    )
    campaign = ops.start(stack.rt, stack.app, stack.config)
    first = ops.wait(stack.rt, campaign, timeout_s=120, interval_s=0.5)
    assert first["roster"] == ["alpha", "beta", "gamma"]
    # The controller finishes the campaign (its dataset built, its state compacted) before more work comes.
    state = ops.CampaignState(stack.rt.redis, campaign, store=stack.rt.store)
    deadline = time.monotonic() + 120
    while not (state.status() == "finished" and state.compaction_complete()):
        assert time.monotonic() < deadline, f"the campaign was not finished and compacted: {state.status()}"
        time.sleep(0.2)
    built_first = state.table("controller")["dataset"]
    # delta comes up after the first instructions were judged ...
    spawn_expert("delta", "--engine", "zero-latency-test")
    _wait_registered(stack, "delta")
    # ... and more work arrives: the first battle that sees delta brings it into the campaign.
    state.expect_more_mining(4)
    for i in range(10, 14):
        stack.app.send_task("warrior.mine", args=[campaign, "alpha", i], task_id=f"late-mine-{i}")
    snap = ops.wait(stack.rt, campaign, timeout_s=120, interval_s=0.5)
    assert snap["battled"] > first["battled"], json.dumps(snap)  # the new work was battled ...
    assert "delta" in snap["roster"], json.dumps(snap)  # ... and its battles brought delta in
    battles = load_battles(stack.rt.store, campaign)
    with_delta = [b for b in battles.values() if "delta" in b["competitors"]]
    # delta answered and was judged on earlier instructions (backfills, scheduled first) ...
    assert snap["backfills"]["sent"] > 0 and snap["backfills"]["done"] == snap["backfills"]["sent"]
    earlier = first["battled"]
    assert len(with_delta) > len(battles) - earlier
    # ... met every other competitor there, judged by experts outside each pair.
    for battle in with_delta:
        pairs = {(p["a"], p["b"]) for p in battle["pairs"]}
        for other in set(battle["competitors"]) - {"delta"}:
            assert tuple(sorted(("delta", other))) in pairs
        for judgment in battle["judgments"]:
            assert judgment["judge"] not in (judgment["a"], judgment["b"])
    board = ops.finalize(stack.app, campaign)["leaderboard"]
    assert "delta" in {row["expert"] for row in board}
    assert next(row for row in board if row["expert"] == "delta")["battles"] > 0
    matchmaking = ops.CampaignState(stack.rt.redis, campaign).table("matchmaking")
    assert "delta" in matchmaking and matchmaking["delta"]["round"] >= 0
    manifest = ops.build_dataset(stack.app, campaign, "live-join")
    rows = read_rows(stack.rt.store, read_manifest(stack.rt.store, "live-join", manifest["version"]))
    assert any("delta" in r["lineage"]["model_revisions"] for r in rows)
    # The controller built the grown campaign's dataset again on its own, with the new rows.
    deadline = time.monotonic() + 120
    while state.status() != "finished" or state.table("controller")["dataset"]["version"] == built_first["version"]:
        assert time.monotonic() < deadline, f"no second build by the controller: {state.table('controller')}"
        time.sleep(0.2)
    assert state.table("controller")["dataset"]["rows"] > built_first["rows"]


@pytest.mark.model
def test_expert_killed_mid_battle_campaign_completes_and_failure_is_counted(
    make_stack: Callable[..., Any], smollm2_path: Path
) -> None:
    names = ("smol-a", "smol-b", "smol-c")
    stack = make_stack(
        {
            "campaign": "live-kill",
            "experts": [{"name": n, "model": str(smollm2_path), "parallel": 1} for n in names],
            "mining": {
                "per_expert": 3,
                "sampling": {"max_tokens": 96},
                "grid": [{"temperature": 1.0, "top_p": 0.99}],
            },
            # SmolLM2 rates every request near 3. The rewording judge is left out: this test is about battles.
            "screening": {"rating": {"min_score": 1.0}, "decontamination": {"rewording": {"enabled": False}}},
            "battle": {"answer_sampling": {"temperature": 0.7, "top_p": 0.95, "max_tokens": 96}},
            "scoring": {"bootstrap_rounds": 20},
            "dataset": {"name": "live-kill"},
        }
    )
    campaign = ops.start(stack.rt, stack.app, stack.config)
    state = ops.CampaignState(stack.rt.redis, campaign)
    deadline = time.monotonic() + 300
    # Kill smol-c while battles are in flight: mining is done and some kept instruction is not finished yet.
    while True:
        snap = state.snapshot()
        in_flight = snap["instructions"]["kept"] - snap["finished"]
        if snap["mine"]["done"] >= 3 and in_flight > 0 and snap["counters"].get("engine_calls", 0) > 9:
            break
        assert time.monotonic() < deadline and not snap["done"], "no battle was ever in flight"
        time.sleep(0.2)
    victim = next(p for p in stack.local.running() if p.name == "expert-smol-c")
    os.kill(victim.pid, signal.SIGKILL)
    snap = ops.wait(stack.rt, campaign, timeout_s=300, interval_s=0.5)
    assert snap["done"]
    assert sum(snap["failures"].values()) > 0
    # "rate": the killed expert may have been rating an instruction in screening when it died.
    assert set(snap["failures"]) <= {"absent", "answer", "tests", "judge", "mine", "battle", "rate"}
    # Every kept instruction ended: battled with the survivors, or closed as failed with a reason.
    assert snap["finished"] == snap["instructions"]["kept"]
    assert "smol-c" not in stack.rt.registry.experts()
