"""The chart's worker command and liveness probe, run for real against a Redis: the probe pings
exactly the worker the command starts (node name `<service>@%h` vs `-d <service>@$HOSTNAME`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import CHART, by_name, containers, render_scenario  # noqa: E402

pytestmark = pytest.mark.stack
BIN = Path(sys.executable).parent


def test_liveness_probe_pings_the_worker(redis_url: str, tmp_path: Path) -> None:
    docs = render_scenario(CHART / "ci" / "minimal-cpu-values.yaml")
    deployment = by_name(docs, "Deployment", "arena-warrior-scorer")
    container = containers(deployment)[0]
    command = [str(BIN / "celery"), *container["command"][1:]]
    probe = container["livenessProbe"]["exec"]["command"]
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "REDIS_URL": redis_url,
        "WARRIOR_HOME": str(tmp_path / "home"),
        "WARRIOR_STORE_URL": f"file://{tmp_path / 'store'}",
        # In a pod the hostname is the pod name and $HOSTNAME holds it; here, the machine's.
        "HOSTNAME": socket.gethostname(),
    }
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        assert worker.stderr is not None
        for line in worker.stderr:  # the worker logs "<node> ready." once it consumes
            if " ready." in line:
                break
            assert time.monotonic() < deadline, "the worker did not get ready"
        else:
            pytest.fail("the worker exited before it was ready")
        proc = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "pong" in proc.stdout
        # A probe naming another node fails: the check is specific to this worker.
        wrong = [*probe[:-1], probe[-1].replace("scorer@", "judge@").replace("--timeout 10", "--timeout 1")]
        assert subprocess.run(wrong, env=env, capture_output=True, timeout=60).returncode != 0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
