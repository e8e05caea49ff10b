"""Orchestration end to end on the ZeroLatencyTestEngine (instant fake outputs, not a model).

Real Redis, real Celery workers, real gRPC servers and a real object store: only inference is
replaced, so these tests are about the pipeline's bookkeeping, not about model quality.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from warrior.cli import campaign as ops
from warrior.common.campaign_state import list_campaigns
from warrior.dataset_builder.versions import read_manifest, read_rows

pytestmark = pytest.mark.stack

ZLT = "zero-latency-test"


def _config(
    campaign: str, per_expert: int = 6, experts: tuple[str, ...] = ("alpha", "beta", "gamma")
) -> dict[str, Any]:
    return {
        "campaign": campaign,
        "experts": [{"name": n, "engine": ZLT} for n in experts],
        "mining": {"per_expert": per_expert},
        # The test engine's rating log-probabilities are hash-random (expected ratings near 5.5): keep most.
        "screening": {"rating": {"min_score": 4.0}},
        "scoring": {"bootstrap_rounds": 20},
        "dataset": {"name": campaign},
    }


def _warrior(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_campaign_produces_a_dataset_with_lineage(make_stack: Callable[..., Any]) -> None:
    stack = make_stack(_config("e2e-zlt"))
    campaign = ops.start(stack.rt, stack.app, stack.config)
    snap = ops.wait(stack.rt, campaign, timeout_s=120, interval_s=0.5)
    kept = snap["instructions"]["kept"]
    assert snap["instructions"]["mined"] == 18
    assert kept + sum(snap["instructions"]["dropped"].values()) == 18
    assert snap["battles"] == 3 * kept  # three pairs per instruction
    assert snap["failures"] == {}
    # Every answer is recorded in the call ledger, so the experts' shared copies in Redis are gone.
    assert list(stack.rt.redis.scan_iter("warrior:answer:*")) == []
    manifest = ops.build_dataset(stack.app, campaign, "e2e-zlt")
    rows = read_rows(stack.rt.store, read_manifest(stack.rt.store, "e2e-zlt"))
    assert manifest["rows"] == len(rows) == kept
    ids = {r["lineage"]["instruction_id"] for r in rows}
    assert len(ids) == kept
    for row in rows:
        lineage = row["lineage"]
        assert lineage["campaign"] == campaign
        assert lineage["winner"] in {"alpha", "beta", "gamma"}
        assert lineage["attacker"] in {"alpha", "beta", "gamma"}
        assert sorted(lineage["judges"]) == ["alpha", "beta", "gamma"]  # each judged the pair it was not in
        assert {(v["a"], v["b"]) for v in lineage["votes"]} == {
            ("alpha", "beta"),
            ("alpha", "gamma"),
            ("beta", "gamma"),
        }
        assert row["messages"][0]["role"] == "user" and row["messages"][1]["role"] == "assistant"
        # The answer in the row is the winner's own answer from the battle record.
        battle = stack.rt.store.get_json(f"runs/{campaign}/battles/{lineage['instruction_id']}.json")
        assert row["messages"][1]["content"] == battle["answers"][lineage["winner"]]["text"]
    # A second build of the same campaign is the same immutable version.
    assert ops.build_dataset(stack.app, campaign, "e2e-zlt")["version"] == manifest["version"]
    _every_process_serves_its_metrics(stack, campaign, mined=18)


def _every_process_serves_its_metrics(stack: Any, campaign: str, mined: int) -> None:
    """`curl` on each process's metrics port (stack.json) shows its series: experts their requests and
    tokens, each worker its stages' tasks, the controller the campaign's progress."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    def scrape(url: str) -> dict[str, float]:
        with urllib.request.urlopen(url, timeout=10) as response:
            families = text_string_to_metric_families(response.read().decode())
        return {f"{s.name}{sorted(s.labels.items())}": s.value for family in families for s in family.samples}

    procs = {p.name: p for p in stack.local.running() if p.kind != "redis"}
    assert all(p.metrics_url for p in procs.values()), "a process of the stack serves no metrics"
    for name, proc in procs.items():
        text = " ".join(scrape(proc.metrics_url))
        if proc.kind == "expert":
            assert "warrior_expert_requests_total" in text and "warrior_expert_completion_tokens_total" in text
        elif name == "worker-instruction_miner":
            assert "warrior_tasks_total[('outcome', 'success'), ('task', 'warrior.mine')]" in text
        elif name == "worker-judge":
            assert "warrior_tasks_total[('outcome', 'success'), ('task', 'warrior.battle')]" in text
    deadline = time.monotonic() + 15  # the local stack's controller reads the campaigns every 2 s
    key = f"warrior_campaign_mined[('campaign', '{campaign}')]"
    while scrape(procs["controller"].metrics_url or "").get(key) != mined:
        assert time.monotonic() < deadline, f"the controller does not report {key} = {mined}"
        time.sleep(0.5)


def test_redelivered_tasks_reuse_recorded_calls(make_stack: Callable[..., Any]) -> None:
    stack = make_stack(_config("e2e-redeliver", per_expert=3))
    campaign = ops.start(stack.rt, stack.app, stack.config)
    snap = ops.wait(stack.rt, campaign, timeout_s=120, interval_s=0.5)
    paid = snap["counters"]["engine_calls"]
    # Re-send every battle as a redelivery would: nothing is paid again and nothing is counted twice.
    # The controller may have compacted the finished campaign already: the state API reads the archive too.
    kept = ops.CampaignState(stack.rt.redis, campaign, stack.rt.store).members("kept")
    assert kept
    for iid in kept:
        stack.app.send_task("warrior.battle", args=[campaign, iid], task_id=f"again-{iid}", ignore_result=False).get(
            timeout=60
        )
    again = ops.status(stack.rt, campaign)
    assert again["counters"]["engine_calls"] == paid
    assert again["battles"] == snap["battles"] and again["votes"] == snap["votes"]


def test_killed_expert_leaves_the_roster_and_the_campaign_finishes(
    make_stack: Callable[..., Any], warrior_env: dict[str, str]
) -> None:
    stack = make_stack(_config("e2e-kill", per_expert=4, experts=("alpha", "beta", "gamma", "delta")))
    listed = json.loads(_warrior(warrior_env, "experts", "--json").stdout)
    assert sorted(row["expert"] for row in listed) == ["alpha", "beta", "delta", "gamma"]
    victim = next(p for p in stack.local.running() if p.name == "expert-delta")
    os.kill(victim.pid, signal.SIGKILL)
    ttl = float(warrior_env["WARRIOR_REGISTRY_TTL_S"])
    deadline = time.monotonic() + ttl + 2
    while "delta" in stack.rt.registry.experts() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "delta" not in stack.rt.registry.experts()
    listed = json.loads(_warrior(warrior_env, "experts", "--json").stdout)
    assert sorted(row["expert"] for row in listed) == ["alpha", "beta", "gamma"]
    # The roster still names delta: its work is recorded as failed, the others battle on.
    state = ops.CampaignState(stack.rt.redis, "e2e-kill")
    state.create(stack.config.model_dump(mode="json"), expected_mine=16)
    for expert in stack.config.expert_names:
        for i in range(4):
            stack.app.send_task("warrior.mine", args=["e2e-kill", expert, i], task_id=f"mine-kill-{expert}-{i}")
    snap = ops.wait(stack.rt, "e2e-kill", timeout_s=120, interval_s=0.5)
    assert snap["done"]
    assert snap["failures"]["mine"] == 4  # delta's mining units
    assert snap["failures"].get("absent", 0) == snap["battled"]  # delta absent from every battle
    assert snap["battles"] == 3 * snap["battled"]  # the three live experts still battle


def test_misspelled_key_exits_2_naming_it_and_enqueues_nothing(
    make_stack: Callable[..., Any], warrior_env: dict[str, str], tmp_path: Path
) -> None:
    stack = make_stack(_config("e2e-typo", per_expert=1))
    bad = tmp_path / "typo.yaml"
    bad.write_text(stack.config_path.read_text().replace("per_expert", "per_exprt"))
    result = _warrior(warrior_env, "campaign", "start", "--config", str(bad))
    assert result.returncode == 2
    assert "mining.per_exprt" in result.stderr
    assert list_campaigns(stack.rt.redis) == []
    assert all(stack.rt.redis.llen(q) == 0 for q in ("mine", "screen", "battle", "score", "dataset"))


def test_unknown_expert_is_refused_before_anything_is_enqueued(
    make_stack: Callable[..., Any], warrior_env: dict[str, str], tmp_path: Path
) -> None:
    stack = make_stack(_config("e2e-unknown", per_expert=1))
    data = _config("e2e-unknown-2", per_expert=1, experts=("alpha", "nobody"))
    path = tmp_path / "unknown.yaml"
    path.write_text(json.dumps(data))
    result = _warrior(warrior_env, "campaign", "start", "--config", str(path), "--experts-timeout", "1")
    assert result.returncode == 2
    assert "nobody" in result.stderr
    assert list_campaigns(stack.rt.redis) == []


def test_cli_status_leaderboard_and_dataset_commands(
    make_stack: Callable[..., Any], warrior_env: dict[str, str]
) -> None:
    data = _config("e2e-cli", per_expert=3)
    data["scoring"]["max_flip_rate"] = 1.0  # the test engine's verdicts are hash-random: count every judge
    stack = make_stack(data)
    started = _warrior(warrior_env, "campaign", "start", "--config", str(stack.config_path), "--wait", "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["done"] is True
    status = json.loads(_warrior(warrior_env, "status", "--json").stdout)
    assert status["campaign"] == "e2e-cli" and status["done"]
    board = json.loads(_warrior(warrior_env, "leaderboard", "--json").stdout)
    assert sorted(r["expert"] for r in board["leaderboard"]) == ["alpha", "beta", "gamma"]
    assert all(r["ci_low"] <= r["rating"] <= r["ci_high"] for r in board["leaderboard"])
    # Per-category win rates add up to the overall decisive votes.
    assert board["votes"] > 0
    for row in board["leaderboard"]:
        assert sum(c["wins"] for c in row["categories"].values()) == row["wins"]
        assert sum(c["losses"] for c in row["categories"].values()) == row["losses"]
    text = _warrior(warrior_env, "leaderboard").stdout
    assert "win rate (decisive votes)" in text
    built = json.loads(_warrior(warrior_env, "dataset", "build", "--json").stdout)
    shown = json.loads(_warrior(warrior_env, "dataset", "show", "e2e-cli", "--json").stdout)
    assert shown["version"] == built["version"] and shown["rows"] == built["rows"] == status["instructions"]["kept"]
    missing = _warrior(warrior_env, "dataset", "show", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_unparseable_text_verdicts_are_retried_once_then_recorded(make_stack: Callable[..., Any]) -> None:
    """The test engine's chat replies carry no [[A]]/[[B]] verdict: every judge fails, visibly, twice."""
    data = _config("e2e-text", per_expert=2) | {"battle": {"judge_mode": "text"}}
    stack = make_stack(data)
    campaign = ops.start(stack.rt, stack.app, stack.config)
    snap = ops.wait(stack.rt, campaign, timeout_s=120, interval_s=0.5)
    assert snap["done"] and snap["votes"] == 0
    assert snap["failures"]["judge"] == snap["battles"]  # one recorded failure per pair's judge
    assert all("VerdictParseError" in reason for k, reason in snap["failure_examples"].items() if k.startswith("judge"))
    judge_calls = [
        c
        for c in (stack.rt.store.get_json(k) for k in stack.rt.store.list(f"runs/{campaign}/calls/"))
        if c["kind"] == "chat" and c["request"]["messages"][0]["content"].startswith("Please act as an impartial judge")
    ]
    # Each failed judgment asked twice in the first order: greedy, then sampled.
    assert len(judge_calls) == 2 * snap["battles"]
    assert {c["request"]["sampling"]["temperature"] for c in judge_calls} == {0.0, 0.7}


def test_every_other_expert_rates_each_instruction_and_the_mean_decides(make_stack: Callable[..., Any]) -> None:
    data = _config("e2e-rate", per_expert=4) | {"screening": {"rating": {"min_score": 5.5}}}
    stack = make_stack(data)
    campaign = ops.start(stack.rt, stack.app, stack.config)
    snap = ops.wait(stack.rt, campaign, timeout_s=120, interval_s=0.5)
    state = ops.CampaignState(stack.rt.redis, campaign, stack.rt.store)
    quality = state.table("quality")
    dropped = state.reasons("dropped")
    kept = state.members("kept")
    assert quality and snap["failures"] == {}
    for iid, q in quality.items():
        attacker = stack.rt.store.get_json(f"runs/{campaign}/instructions/{iid}.json")["attacker"]
        assert sorted(q["by"]) == sorted({"alpha", "beta", "gamma"} - {attacker})  # never its own author
        assert q["mean"] == pytest.approx(sum(r["score"] for r in q["by"].values()) / 2, abs=1e-3)
        if iid in kept:
            assert q["mean"] >= 5.5
        else:
            assert q["mean"] < 5.5 and dropped[iid] == "low_quality"
    assert snap["instructions"]["dropped"].get("low_quality", 0) >= 1
    for iid in kept:  # a kept instruction is tagged with its category
        assert state.table("categories")[iid] in {"generation", "explanation", "debugging", "optimization",
                                                  "refactoring", "testing", "translation"}  # fmt: skip


def test_a_request_judged_to_reword_a_benchmark_problem_is_dropped_naming_it(make_stack: Callable[..., Any]) -> None:
    """The rewording stage: every request's nearest benchmark problems are judged by the named expert,
    through the call ledger; one judged a rewording is dropped as contaminated, naming the problem."""
    # min_similarity -1 makes every request a candidate, threshold -100 judges every candidate a rewording.
    rewording = {"expert": "beta", "min_similarity": -1.0, "threshold": -100.0}
    data = _config("e2e-reword", per_expert=2) | {
        "screening": {"rating": {"enabled": False}, "decontamination": {"rewording": rewording}}
    }
    stack = make_stack(data)
    campaign = ops.start(stack.rt, stack.app, stack.config)
    snap = ops.wait(stack.rt, campaign, timeout_s=120, interval_s=0.5)
    state = ops.CampaignState(stack.rt.redis, campaign, stack.rt.store)
    judged = state.table("rewording")
    contaminated = {iid: r for iid, r in state.table("contamination").items() if r["method"] == "rewording"}
    assert judged and set(contaminated) == set(judged)
    assert snap["instructions"]["dropped"]["contaminated"] >= len(contaminated) and snap["failures"] == {}
    for iid, record in contaminated.items():
        assert record["benchmark"] in ("humaneval", "mbpp") and record["task_id"] and record["evidence"] >= -100
        assert judged[iid]["judge"] == "beta" and judged[iid]["nearest"] == f"{record['benchmark']}/{record['task_id']}"
    calls = [stack.rt.store.get_json(k) for k in stack.rt.store.list(f"runs/{campaign}/calls/")]
    judging = [c for c in calls if c["kind"] == "score_candidates" and c["expert"] == "beta"
               and "Restate this programming request" in c["request"]["messages"][-1]["content"]]  # fmt: skip
    assert len(judging) == len(judged)  # one conditional call per judged request, recorded once


def test_unparseable_text_ratings_are_retried_once_then_recorded(make_stack: Callable[..., Any]) -> None:
    """The test engine's chat replies carry no [[n]]: each rater fails, visibly, after two asks."""
    data = _config("e2e-rate-text", per_expert=1) | {"screening": {"rating": {"mode": "text"}}}
    stack = make_stack(data)
    campaign = ops.start(stack.rt, stack.app, stack.config)
    snap = ops.wait(stack.rt, campaign, timeout_s=120, interval_s=0.5)
    screened_ok = snap["instructions"]["dropped"].get("unrated", 0)
    assert screened_ok >= 1 and snap["instructions"]["kept"] == 0
    assert snap["failures"]["rate"] == 2 * screened_ok  # both other experts failed on each
    rating_calls = [
        c
        for c in (stack.rt.store.get_json(k) for k in stack.rt.store.list(f"runs/{campaign}/calls/"))
        if c["kind"] == "chat" and "Rate the user's" in c["request"]["messages"][0]["content"]
    ]
    assert len(rating_calls) == 2 * 2 * screened_ok


def test_cancel_then_resume_after_the_stack_was_stopped_finishes_without_paying_twice(
    make_stack: Callable[..., Any], warrior_env: dict[str, str]
) -> None:
    stack = make_stack(_config("e2e-resume", per_expert=6))
    campaign = ops.start(stack.rt, stack.app, stack.config)
    deadline = time.monotonic() + 60
    while ops.status(stack.rt, campaign)["instructions"]["mined"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    cancelled = _warrior(warrior_env, "campaign", "cancel", campaign)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    stack.local.down(echo=lambda *_: None)  # the whole stack goes away, as on a reboot
    assert ops.status(stack.rt, campaign)["status"] == "cancelled"
    stack.local.up(stack.config, timeout_s=180, echo=lambda *_: None)
    resumed = _warrior(warrior_env, "campaign", "resume", campaign, "--wait", "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    snap = json.loads(resumed.stdout)
    assert snap["done"] and snap["instructions"]["mined"] == 18
    assert snap["instructions"]["kept"] + sum(snap["instructions"]["dropped"].values()) == 18
    calls = list(stack.rt.store.list(f"runs/{campaign}/calls/"))
    assert snap["counters"]["engine_calls"] == len(calls)  # every call paid once, recorded once
    manifest = ops.build_dataset(stack.app, campaign, "e2e-resume")
    assert manifest["rows"] == snap["battled"]
    unknown = _warrior(warrior_env, "campaign", "resume", "no-such-campaign")
    assert unknown.returncode == 2 and "unknown campaign 'no-such-campaign'" in unknown.stderr
