"""A campaign nobody watches still finishes: the campaign controller of the local stack re-sends what was
lost, finalizes the ratings and builds the dataset. Real Redis, Celery workers, gRPC servers and object
store; inference is the ZeroLatencyTestEngine (instant fake outputs, not a model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from warrior.common.campaign_state import CampaignState
from warrior.dataset_builder.versions import read_manifest, read_rows

pytestmark = pytest.mark.stack

ZLT = "zero-latency-test"


def _config(campaign: str, per_expert: int = 2) -> dict[str, Any]:
    return {
        "campaign": campaign,
        "experts": [{"name": n, "engine": ZLT} for n in ("alpha", "beta", "gamma")],
        "mining": {"per_expert": per_expert},
        "screening": {"rating": {"min_score": 4.0}},
        "scoring": {"bootstrap_rounds": 20},
        "dataset": {"name": campaign},
        "controller": {"stall_s": 5},
    }


def _mine_lists(client: Any) -> list[Any]:
    return [k for k in client.scan_iter("mine*") if client.type(k) == "list"]


def test_an_abandoned_campaign_with_lost_messages_finishes_and_builds_its_dataset(
    make_stack: Callable[..., Any], warrior_env: dict[str, str]
) -> None:
    stack = make_stack(_config("abandoned"))
    rt = stack.rt
    # The miner is down, so the mining messages wait in their queue...
    miner = next(p for p in stack.local.running() if "instruction_miner" in p.name)
    os.kill(miner.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(p.pid == miner.pid for p in stack.local.running()):
        time.sleep(0.1)
    # ...the operator starts the campaign with --wait and walks away: the CLI is killed mid-wait...
    cli = subprocess.Popen(
        [sys.executable, "-m", "warrior.cli.main", "campaign", "start", "--config", str(stack.config_path), "--wait"],
        env=warrior_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not CampaignState(rt.redis, "abandoned").exists():
        time.sleep(0.1)
    while time.monotonic() < deadline and sum(rt.redis.llen(k) for k in _mine_lists(rt.redis)) < 1:
        time.sleep(0.1)
    cli.kill()
    cli.communicate(timeout=30)
    # ...and every stage message is lost (a broker failover, a flushed queue).
    assert sum(rt.redis.llen(k) for k in _mine_lists(rt.redis)) == 1  # one message: a batch of the 6 units
    rt.redis.delete(*_mine_lists(rt.redis))
    stack.local.restart(miner.name)

    state = CampaignState(rt.redis, "abandoned")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and state.status() not in ("finished", "build_failed"):
        time.sleep(0.5)
    snap = state.snapshot()
    assert snap["status"] == "finished", snap["controller"]
    assert snap["done"] and snap["mine"]["done"] == snap["mine"]["expected"] == 6
    assert snap["counters"]["controller_resends"] >= 1
    assert snap["controller"]["resends"][0]["sent"]["mine"] == 6
    dataset = snap["controller"]["dataset"]
    manifest = read_manifest(rt.store, "abandoned")
    assert dataset["version"] == manifest["version"] and dataset["rows"] == manifest["rows"] == snap["battled"] > 0
    rows = read_rows(rt.store, manifest)
    assert {r["lineage"]["instruction_id"] for r in rows} == {
        i for i in state.members("kept") if i in state.members("battled")
    }


def test_campaign_start_returns_at_once_and_wait_only_watches_until_the_controller_finishes(
    make_stack: Callable[..., Any], warrior_env: dict[str, str]
) -> None:
    stack = make_stack(_config("watched", per_expert=1))
    argv = [sys.executable, "-m", "warrior.cli.main", "campaign", "start", "--config", str(stack.config_path)]
    started = subprocess.run(argv, env=warrior_env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "watched"  # returned with the id, without waiting
    watch = subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", "campaign", "watch", "watched", "--json"],
        env=warrior_env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert watch.returncode == 0, watch.stderr
    snap = json.loads(watch.stdout)
    assert snap["status"] == "finished"
    assert snap["controller"]["dataset"]["name"] == "watched"
    version = snap["controller"]["dataset"]["version"]
    assert read_manifest(stack.rt.store, "watched")["version"] == version
    shown = subprocess.run([sys.executable, "-m", "warrior.cli.main", "status", "watched"], env=warrior_env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert f"built dataset watched version {version}" in shown.stdout, shown.stdout
