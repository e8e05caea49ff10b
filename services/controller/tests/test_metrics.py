"""The campaign controller's Prometheus endpoint, on real `warrior-controller` processes and a real Redis: the
leader reports each campaign's progress, drops by reason, failures, per-stage busy seconds and the depth of
every queue by priority; a standby reports no campaign, so two replicas never disagree."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from warrior.common import metrics, queues
from warrior.common.campaign_config import parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.runtime import Runtime, get_runtime

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{metrics.PATH}", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture()
def rt(warrior_env: dict[str, str]) -> Runtime:
    return get_runtime()


@pytest.fixture()
def app(rt: Runtime) -> Iterator[Celery]:
    app = make_celery("tests")
    yield app
    app.close()


def _busy_campaign(rt: Runtime) -> None:
    config = parse_campaign_config({
        "campaign": "metered",
        "experts": [{"name": "alpha", "engine": "zero-latency-test"}, {"name": "beta", "engine": "zero-latency-test"}],
        "mining": {"per_expert": 2},
        "controller": {"build_dataset": False, "stall_s": 600},
    })  # fmt: skip
    state = CampaignState(rt.redis, "metered")
    assert state.create(config.model_dump(mode="json"), 4)
    for i in range(5):
        state.mark("mined", f"i{i}")
    state.mark("kept", "i0")
    state.mark("kept", "i1")
    state.drop("i2", "near_duplicate")
    state.drop("i3", "near_duplicate")
    state.drop("i4", "off_topic")
    state.fail("battle:i0:alpha|beta", "expert alpha: unavailable")
    state.put("battle_stats", "i0", {"battles": 3, "votes": 7, "ties": 1})
    state.mark("collected", "i0")
    timing = "warrior:campaign:metered:timing"
    rt.redis.hset(timing, mapping={"warrior.battle.seconds": 12.5, "warrior.battle.tasks": 4,
                                   "warrior.screen.seconds": 1.25, "warrior.screen.tasks": 5})  # fmt: skip


class Controller:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def wait_for(self, name: str, timeout_s: float = 30, **labels: str) -> Samples:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                samples = scrape(self.port)
                if value(samples, name, **labels) is not None:
                    return samples
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {name}{labels} on the controller's endpoint:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)


@pytest.fixture()
def start_controller(warrior_env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(identity: str) -> Controller:
        port, log_path = _free_port(), tmp_path / f"controller-{identity}.log"
        env = dict(os.environ) | warrior_env | {"WARRIOR_CONTROLLER_ALIVE_PATH": str(tmp_path / f"{identity}.alive")}
        argv = [sys.executable, "-m", "warrior.controller.main", "--interval", "0.2", "--identity", identity,
                "--metrics-port", str(port), "--metrics-interval", "0"]  # fmt: skip
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        return Controller(proc, port, log_path)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_leader_reports_campaign_progress_stage_time_and_queue_depths(
    rt: Runtime, app: Celery, start_controller: object
) -> None:
    _busy_campaign(rt)
    app.send_task(queues.TASK_MINE, args=["other"], priority=queues.PRIORITY_DEFAULT)
    app.send_task(queues.TASK_MINE, args=["other"], priority=queues.PRIORITY_DEFAULT)
    app.send_task(queues.TASK_BACKFILL, args=["other"], priority=queues.PRIORITY_NEWCOMER)
    # A message in a worker's hands, as kombu records it: [message, exchange, routing key (the queue)].
    rt.redis.hset("unacked", "tag-1", json.dumps([{"body": ""}, "", queues.BATTLE]))

    leader = start_controller("first")  # type: ignore[operator]
    # One pass sets the campaign gauges, then the queue gauges: wait for the last of them.
    samples = leader.wait_for("warrior_queue_unacked", queue=queues.BATTLE)
    assert value(samples, "warrior_controller_leader", controller="first") == 1
    assert value(samples, "warrior_campaign_mined", campaign="metered") == 5
    assert value(samples, "warrior_campaign_kept", campaign="metered") == 2
    assert value(samples, "warrior_campaign_dropped", campaign="metered", reason="near_duplicate") == 2
    assert value(samples, "warrior_campaign_dropped", campaign="metered", reason="off_topic") == 1
    assert value(samples, "warrior_campaign_failures", campaign="metered", kind="battle") == 1
    assert value(samples, "warrior_campaign_battles", campaign="metered") == 3
    assert value(samples, "warrior_campaign_votes", campaign="metered") == 7
    assert value(samples, "warrior_campaign_rows", campaign="metered") == 1
    assert value(samples, "warrior_campaign_status", campaign="metered", status="running") == 1
    busy = {"campaign": "metered", "task": queues.TASK_BATTLE}
    assert value(samples, "warrior_campaign_stage_busy_seconds", **busy) == 12.5
    assert value(samples, "warrior_campaign_stage_tasks", **busy) == 4
    # Celery's Redis lists: one per queue and priority level.
    assert value(samples, "warrior_queue_depth", queue=queues.MINE, priority=str(queues.PRIORITY_DEFAULT)) == 2
    assert value(samples, "warrior_queue_depth", queue=queues.BATTLE, priority=str(queues.PRIORITY_NEWCOMER)) == 1
    assert value(samples, "warrior_queue_depth", queue=queues.SCORE, priority="0") == 0
    assert value(samples, "warrior_queue_unacked", queue=queues.BATTLE) == 1
    assert value(samples, "warrior_queue_unacked", queue=queues.MINE) == 0
    served = {name for name, _ in samples if name.startswith("warrior_")}
    assert served <= metrics.exported_series(), served - metrics.exported_series()

    # A standby replica reports no campaign (only the leader's numbers are current).
    standby = start_controller("second")  # type: ignore[operator]
    samples = standby.wait_for("warrior_controller_leader", controller="second")
    assert value(samples, "warrior_controller_leader", controller="second") == 0
    assert not [name for name, _ in samples if name.startswith(("warrior_campaign_", "warrior_queue_"))]
