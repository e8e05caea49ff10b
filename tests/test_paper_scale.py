"""The paper's setup at scale: configs/paper-scale.yaml is a valid campaign with the paper's roster, grid and
sizes, and charts/warrior/ci/paper-scale-values.yaml (rendered with `helm template`, linted and validated
with every scenario in tests/test_chart.py) serves exactly that roster and runs exactly that file."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import CHART, ROOT, by_name, containers, is_expert, of_kind, render_scenario  # noqa: E402

from warrior.common.campaign_config import PAPER_GRID, load_campaign_config  # noqa: E402

CONFIG = ROOT / "configs" / "paper-scale.yaml"
VALUES = CHART / "ci" / "paper-scale-values.yaml"
# The paper's five open experts (METHOD.md, "Roster"), by their arena names.
ROSTER = [
    "athene-v2-chat",
    "deepseek-coder-v2-lite-instruct",
    "llama-3.3-70b-instruct",
    "qwen2.5-72b-instruct",
    "qwq-32b-preview",
]


def test_config_is_the_papers_setup() -> None:
    config = load_campaign_config(CONFIG)
    assert config.expert_names == ROSTER
    assert not any(e.served_locally for e in config.experts), "the chart serves them, not `warrior up`"
    assert config.mining.grid == PAPER_GRID  # 3 x 3: temperature {1.0, 1.1, 1.2} x top_p {1.0, 0.995, 0.99}
    assert config.mining.per_expert % config.mining.cycle_length() == 0, "an equal budget for every cell"
    assert config.mining.per_expert * len(ROSTER) >= 100_000 and config.mining.sampling.max_tokens == 2048
    assert (config.battle.answer_sampling.temperature, config.battle.answer_sampling.top_p) == (1.0, 0.95)
    assert config.scoring.alpha == 0.7 and config.screening.rating.min_score == 6
    assert config.dataset.target_rows is not None and 70_000 <= config.dataset.target_rows <= 80_000


def _command_value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_values_serve_the_configs_roster_with_vllm_on_gpus() -> None:
    docs = render_scenario(VALUES)
    experts = [d for d in of_kind(docs, "Deployment") if is_expert(d)]
    served = {}
    for deployment in experts:
        container = containers(deployment)[0]
        command = container["command"]
        served[_command_value(command, "--name")] = command
        assert _command_value(command, "--engine") == "vllm"
        assert _command_value(command, "--model").startswith("/models/")
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert "expert-inference-gpu" in container["image"]
    assert sorted(served) == sorted(load_campaign_config(CONFIG).expert_names)


def test_campaign_job_runs_the_config_file() -> None:
    docs = render_scenario(VALUES)
    (job,) = of_kind(docs, "Job")
    assert containers(job)[0]["command"][:5] == [
        "warrior",
        "campaign",
        "start",
        "--config",
        "/etc/warrior/campaign.yaml",
    ]
    text = by_name(docs, "ConfigMap", job["metadata"]["name"])["data"]["campaign.yaml"]
    assert yaml.safe_load(text) == yaml.safe_load(CONFIG.read_text(encoding="utf-8")), (
        "campaignJob.config of charts/warrior/ci/paper-scale-values.yaml differs from configs/paper-scale.yaml"
    )
