"""The flywheel end to end at the smallest size: a campaign, training, export, evaluation, follow-up.

The campaign's roster is the zero-latency test engine (instant fake outputs, not a model), so the
arena part is quick; the target is the real SmolLM2-135M-Instruct, trained for two LoRA steps by
the trainer's worker, converted to GGUF with its base there, served by llama.cpp, evaluated in the
sandbox and battled. The flywheel starts the local stack itself here, so it stops it at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from warrior.cli.flywheel_config import load_flywheel
from warrior.cli.stack import LocalStack
from warrior.common.campaign_config import ConfigError

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_HF = ROOT / "models" / "hf" / "SmolLM2-135M-Instruct"


def _write(tmp_path: Path, **overrides: object) -> Path:
    campaign = {
        "campaign": "fw-arena",
        "experts": [{"name": n, "engine": "zero-latency-test"} for n in ("alpha", "beta", "gamma")],
        "mining": {"per_expert": 2, "sampling": {"max_tokens": 64}, "grid": [{"temperature": 1.0, "top_p": 0.99}]},
        # Decontamination beyond n-grams is screening's own business (its tests cover it); here it would
        # only slow the loop under test.
        "screening": {
            "rating": {"min_score": 1.0},
            "decontamination": {"embedding": {"enabled": False}, "rewording": {"enabled": False}},
        },
        "battle": {"answer_sampling": {"temperature": 0.7, "top_p": 0.95, "max_tokens": 48}, "tie_margin": 0.01},
        "scoring": {"bootstrap_rounds": 20, "max_flip_rate": 1.0},
        "dataset": {"name": "fw-arena"},
    }
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(campaign))
    flywheel = {
        "flywheel": "fw-test",
        "campaign": "campaign.yaml",
        "target": {"name": "smol-arena", "base_expert": "alpha", "base_model": str(SMOLLM2_HF)},
        "train": {
            "training": {
                "max_steps": 2,
                "per_device_batch_size": 2,
                "max_seq_length": 384,
                "save_steps": 1,
                "logging_steps": 1,
            }
        },  # fmt: skip
        "evaluate": {"benchmarks": ["humaneval"], "limit": 2, "max_tokens": 128},
        "followup": {"per_expert": 1},
    } | overrides
    path = tmp_path / "flywheel.yaml"
    path.write_text(yaml.safe_dump(flywheel))
    return path


def _flywheel(env: dict[str, str], path: Path, report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", "flywheel", "--config", str(path), "--report", str(report)],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


def test_bad_flywheel_files_are_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'evaluate.limt'"):
        load_flywheel(_write(tmp_path, evaluate={"limt": 3}))
    with pytest.raises(ConfigError, match="base_expert 'nobody' is not an expert"):
        load_flywheel(_write(tmp_path, target={"name": "x", "base_expert": "nobody", "base_model": str(SMOLLM2_HF)}))
    with pytest.raises(ConfigError, match="train.dataset is set by the flywheel"):
        load_flywheel(_write(tmp_path, train={"dataset": {"name": "other"}}))
    with pytest.raises(ConfigError, match="training.max_stepz"):
        load_flywheel(_write(tmp_path, train={"training": {"max_stepz": 3}}))


def test_flywheel_runs_the_whole_loop_and_resumes_from_its_records(warrior_env: dict[str, str], tmp_path: Path) -> None:
    import os

    env = dict(os.environ) | warrior_env
    path = _write(tmp_path)
    report_path = tmp_path / "report.json"
    first = _flywheel(env, path, report_path)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["dataset"]["rows"] >= 1
    assert report["training"]["steps"] == 2
    humaneval = report["evaluation"]["humaneval"]
    assert humaneval["base"]["expert"] == "alpha-f16" and humaneval["trained"]["expert"] == "smol-arena"
    assert humaneval["base"]["total"] == humaneval["trained"]["total"] == 2
    assert 0.0 <= humaneval["trained"]["pass_at_1"] <= 1.0
    paired = report["paired"]["benchmarks"]["humaneval"]  # trained vs base on the same two problems
    assert paired["problems"] == 2 and paired["difference"] == round(
        humaneval["trained"]["pass_at_1"] - humaneval["base"]["pass_at_1"], 4
    )
    assert paired["interval_95"][0] <= paired["difference"] <= paired["interval_95"][1]
    names = {row["expert"] for row in report["ratings"]["leaderboard"]}
    assert names == {"beta", "gamma", "alpha-f16", "smol-arena"}  # the trained model joined the roster
    assert report["ratings"]["trained"]["battles"] > 0
    assert "pass@1" in report_path.with_suffix(".md").read_text()
    assert "bootstrap 95% interval" in report_path.with_suffix(".md").read_text()
    assert "on the trainer's queue" in first.stderr  # training was a task, not a process of the CLI
    assert (Path(env["WARRIOR_STORE_URL"].removeprefix("file://")) / "flywheel/fw-test/turn-1/train.json").is_file()
    assert not LocalStack().running()  # the stack it started is stopped
    # A rerun finds every step recorded: nothing is trained, evaluated or battled again.
    started = time.monotonic()
    again = _flywheel(env, path, tmp_path / "again.json")
    assert again.returncode == 0, again.stderr[-3000:]
    for step in ("campaign", "train", "export", "evaluate", "followup"):
        assert f"[{step}] already done" in again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["evaluation"] == report["evaluation"]
    assert time.monotonic() - started < 60
