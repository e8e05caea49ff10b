"""The flywheel's GPU half, dry-run on a CPU: the real configs/flywheel-gpu.yaml renders, and its steps
(training on each dataset version, evaluation with transformers, the paired report) wire up end to end
on SmolLM2-135M, one training step and two problems per benchmark, from an object-store folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from warrior.cli.offline import OfflineConfig, load_offline_config
from warrior.common.campaign_config import ConfigError
from warrior.common.store import open_store
from warrior.dataset_builder.versions import build_version

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_HF = ROOT / "models" / "hf" / "SmolLM2-135M-Instruct"


def _rows(winner: str) -> list[dict[str, Any]]:
    pairs = [("Write a Python function add(a, b) that returns a + b.", "def add(a, b):\n    return a + b"),
             ("Write a Python function is_even(n).", "def is_even(n):\n    return n % 2 == 0")]  # fmt: skip
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"```python\n{a}\n```"}],
         "lineage": {"instruction_id": f"i{k}", "winner": winner}}
        for k, (q, a) in enumerate(pairs)
    ]  # fmt: skip


def _config(tmp_path: Path, **overrides: Any) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "flywheel-gpu.yaml").read_text())
    OfflineConfig.model_validate(data)  # the shipped file renders as it is
    store = tmp_path / "store"
    data |= {"store": str(store), "work_dir": str(tmp_path / "work"),
             "target": data["target"] | {"base_model": str(SMOLLM2_HF)},
             "datasets": {"arena": {"name": "fw-arena"}, "random": {"name": "fw-arena-random"}}}  # fmt: skip
    data |= overrides
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bad_offline_files_are_refused_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    with pytest.raises(ConfigError, match="datasets needs an 'arena' entry"):
        load_offline_config(_config(tmp_path, datasets={"random": {"name": "x"}}))
    with pytest.raises(ConfigError, match="evaluate.batch_sise"):
        load_offline_config(_config(tmp_path, evaluate={"batch_sise": 4}))
    with pytest.raises(ConfigError, match="train.output is set from target"):
        load_offline_config(_config(tmp_path, train={"output": "x"}))
    with pytest.raises(ConfigError, match="is not a Hugging Face model folder"):
        load_offline_config(_config(tmp_path, target={"name": "t", "base_model": str(tmp_path)}))
    with pytest.raises(ConfigError, match="evaluate.mbpp_path: MBPP's mbpp.jsonl is needed"):
        load_offline_config(_config(tmp_path, evaluate={"mbpp_path": "nowhere/mbpp.jsonl"}))


@pytest.mark.stack
def test_the_dry_run_trains_evaluates_and_reports_every_dataset(tmp_path: Path) -> None:
    path = _config(tmp_path)
    store = open_store(f"file://{tmp_path / 'store'}")
    for name, winner in (("fw-arena", "qwen"), ("fw-arena-random", "smol")):
        build_version(store, name, _rows(winner), campaigns=["c"], ratings_key="runs/c/ratings/x.json", leaderboard=[])
    env = dict(os.environ) | {"CUDA_VISIBLE_DEVICES": ""}
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "warrior.cli.main", "flywheel-offline", "--config", str(path), "--dry-run",
               "--report", str(report_path)]  # fmt: skip
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["flywheel"] == "flywheel-gpu-dry-run"
    assert set(report["evaluation"]) == {"base", "arena", "random"}
    for role, benchmarks in report["evaluation"].items():
        assert {b: r["total"] for b, r in benchmarks.items()} == {"humaneval": 2, "mbpp": 2}, role
    assert report["training"]["arena"]["steps"] == 1 and report["datasets"]["random"]["rows"] == 2
    assert report["training"]["random"]["model"] == "qwen2.5-coder-1.5b-arena-random"
    combined = report["paired"]["trained_minus_base"]["combined"]
    assert (
        combined["problems"] == 4 and combined["interval_95"][0] <= combined["difference"] <= combined["interval_95"][1]
    )
    assert "arena_minus_random" in report["paired"]
    assert "on cpu" in first.stderr and "paired over problems" in report_path.with_suffix(".md").read_text()
    # A rerun finds every step recorded.
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already done") == 5  # two trainings, three evaluations
