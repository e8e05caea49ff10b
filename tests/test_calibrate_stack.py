"""`warrior calibrate` end to end on the zero-latency test engine (hash-derived text, not a model).

Its answers hold no code, so every answer fails every ground-truth test and no pair is separable:
this checks that a calibration completes through the real services, the shape of its report, where
it is stored, that nothing of it becomes a campaign or a dataset, and that a rerun pays for nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from warrior.cli.calibrate import latest_calibration
from warrior.common.campaign_state import list_campaigns

pytestmark = pytest.mark.stack

EXPERTS = ("alpha", "beta", "gamma")
SET = [
    {"id": "add", "request": "Write a function `add(a, b)` that returns the sum of two numbers.",
     "tests": "assert add(1, 2) == 3\nassert add(-1, 1) == 0", "language": "Python"},
    {"request": "Write a function `rev(s)` that reverses a string.",
     "tests": "import string\nassert rev('ab') == 'ba'", "language": "Python"},
]  # fmt: skip


def _calibrate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", "calibrate", *args],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_calibration_completes_and_reports_every_source(
    make_stack: Callable[..., Any], warrior_env: dict[str, str], tmp_path: Path
) -> None:
    stack = make_stack({"campaign": "calib", "experts": [{"name": n, "engine": "zero-latency-test"} for n in EXPERTS]})
    labelled = tmp_path / "set.jsonl"
    labelled.write_text("".join(json.dumps(item) + "\n" for item in SET))
    out = tmp_path / "out" / "calibration.json"
    args = ["--config", str(stack.config_path), "--set", str(labelled), "--out", str(out), "--max-tokens", "300"]
    result = _calibrate(warrior_env, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "items 2/2" in result.stderr  # progress
    assert "judge alpha" in result.stdout and "combined" in result.stdout and "pass_rate" in result.stdout

    report = json.loads(out.read_text())
    assert report["calibration"].startswith("calibration-")
    assert report["set"] | {"ids": None} == report["set"] | {
        "name": "set.jsonl", "size": 2, "items_run": 2, "items": 2, "available": 2, "excluded": {}, "seed": 0,
        "ids": None,
    }  # fmt: skip
    assert report["set"]["ids"] == ["add", "line-2"]
    assert [e["name"] for e in report["experts"]] == list(EXPERTS) and all(e["revision"] for e in report["experts"])
    assert report["battle"]["answer_sampling"]["max_tokens"] == 300 and report["battle"]["max_tokens_override"] == 300
    assert report["pairs"] == 6 and report["separable"] == 0  # no code: every answer fails every test
    assert set(report["verdicts"]) == {"judge alpha", "judge beta", "judge gamma", "llm panel", "execution",
                                       "combined", "combined, trusted judges", "longer answer"}  # fmt: skip
    for name in EXPERTS:
        judge = report["verdicts"][f"judge {name}"]
        assert judge["pairs"] == 2 and judge["judgments"] == 2  # one pair per item, both orders
        assert judge["accuracy"] is None and judge["coverage"] is None  # nothing separable to score
        assert 0.0 <= judge["flip_rate"] <= 1.0
        row = report["per_expert"][name]
        assert (row["items"], row["passed_all"], row["pass_rate"], row["gt_tests"]) == (2, 0, 0.0, 3)
    assert report["verdicts"]["combined"]["pairs"] == 6
    # How correct the rows would be, under each trust rule: no answer passes a ground-truth test here.
    assert "min_trusted" in result.stdout
    assert [(r["rule"], r["min_trusted"]) for r in report["rows"]] == [
        ("every answer (no test)", 0), ("consensus", 1), ("consensus", 2), ("independent", 1), ("independent", 2)
    ]  # fmt: skip
    assert all(r["correct"] == 0 for r in report["rows"])
    assert report["failures"] == {}
    assert report["calls"]["paid"] > 0 and report["timings"]["seconds"] > 0

    store = stack.rt.store
    cid = report["calibration"]
    assert store.get_json(f"runs/{cid}/calibration.json")["calibration"] == cid
    assert len(store.list(f"runs/{cid}/items/")) == 2
    found = latest_calibration(store, list(reversed(EXPERTS)))
    assert found is not None and found["calibration"] == cid
    # A calibration is no campaign: nothing in Redis's campaign index, no battles, rows or datasets.
    assert list_campaigns(stack.rt.redis) == []
    assert store.list(f"runs/{cid}/battles/") == store.list(f"runs/{cid}/rows/") == store.list("datasets/") == []

    again = _calibrate(warrior_env, *args, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads(again.stdout)
    assert rerun["calibration"] == cid and rerun["calls"]["paid"] == 0 and rerun["calls"]["reused"] > 0
    assert rerun["verdicts"] == report["verdicts"]
