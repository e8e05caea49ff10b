"""An expert server registers with its labels: WARRIOR_EXPERT_LABELS, then each --label (which wins)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from warrior.common.redis_client import connect
from warrior.common.registry import Registry, parse_labels
from warrior.expert_inference.server import parse_args


def test_labels_come_from_the_environment_and_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARRIOR_EXPERT_LABELS", "role=eval, pool=paper")
    args = parse_args(["--name", "x", "--label", "pool=mine", "--label", "team=a,tier=2"])
    assert args.labels == {"role": "eval", "pool": "mine", "team": "a", "tier": "2"}
    monkeypatch.delenv("WARRIOR_EXPERT_LABELS")
    assert parse_args(["--name", "x"]).labels == {}
    with pytest.raises(SystemExit):
        parse_args(["--name", "x", "--label", "no-equals-sign"])
    with pytest.raises(ValueError, match="key=value"):
        parse_labels("a=b,=c")


def test_a_served_expert_registers_its_labels(warrior_env: dict[str, str], tmp_path: Path) -> None:
    port_file = tmp_path / "endpoint"
    env = warrior_env | {"WARRIOR_EXPERT_LABELS": "role=eval"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "warrior.expert_inference.server", "--name", "labelled", "--engine",
         "zero-latency-test", "--port-file", str(port_file), "--drain-s", "0", "--label", "pool=paper"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        registry = Registry(connect(warrior_env["REDIS_URL"]))
        deadline = time.monotonic() + 60
        while not registry.resolve("labelled"):
            assert proc.poll() is None and time.monotonic() < deadline, "the expert did not register"
            time.sleep(0.05)
        [record] = registry.resolve("labelled")
        assert record.labels == {"role": "eval", "pool": "paper"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
