"""`warrior eval`: pass@1 of a registered expert through its gRPC server, stored once per revision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis


def _warrior(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warrior.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_eval_scores_a_registered_expert_and_reuses_its_stored_result(
    warrior_env: dict[str, str], smollm2_path: Path, tmp_path: Path
) -> None:
    env = dict(os.environ) | warrior_env
    missing = _warrior(env, "eval", "--expert", "nobody", "--limit", "1")
    assert missing.returncode == 2 and "'nobody' is not registered" in missing.stderr
    log = (tmp_path / "smol.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "warrior.expert_inference.server", "--name", "smol", "--model", str(smollm2_path),
         "--parallel", "2"], env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = redis.Redis.from_url(env["REDIS_URL"])
        deadline = time.monotonic() + 120
        while not any(b"smol" in k for k in client.keys("warrior:expert*")):
            assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "smol.log").read_text()
            time.sleep(0.2)
        first = _warrior(env, "eval", "--expert", "smol", "--limit", "3", "--max-tokens", "128", "--json")
        assert first.returncode == 0, first.stderr
        result = json.loads(first.stdout)
        assert result["total"] == 3 and result["reused"] is False
        assert result["key"].startswith("evals/smol/") and result["key"].endswith("/humaneval-first3.json")
        assert [o["task_id"] for o in result["outcomes"]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
        # Off a terminal, progress is plain lines with counts (a bar with rate and ETA on one).
        progress = [line for line in first.stderr.splitlines() if line.startswith("eval smol on humaneval: ")]
        assert progress[0].startswith("eval smol on humaneval: 1/3 problems (33%) [")
        assert progress[-1].startswith("eval smol on humaneval: 3/3 problems (100%) [")
        assert "\r" not in first.stderr
        reused = _warrior(env, "eval", "--expert", "smol", "--limit", "3", "--json")
        again = json.loads(reused.stdout)
        assert again["reused"] is True and again["pass_at_1"] == result["pass_at_1"]
        assert "problems" not in reused.stderr  # nothing to do, no progress shown
    finally:
        server.terminate()
        server.wait(timeout=30)
