"""Cross-service fixtures: a real local stack (Redis, expert gRPC servers, Celery workers) per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings

from warrior.cli.stack import LocalStack
from warrior.common.campaign_config import CampaignConfig, parse_campaign_config
from warrior.common.celery_app import make_celery
from warrior.common.runtime import Runtime, get_runtime

# Property-based tests (tests/test_fuzz_*.py) run the same examples on every machine: derandomized,
# no example database, a bounded number of examples. HYPOTHESIS_PROFILE=explore searches further.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", settings.get_profile("ci"), derandomize=False, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class Stack:
    def __init__(self, config: CampaignConfig, config_path: Path) -> None:
        self.config = config
        self.config_path = config_path
        self.local = LocalStack()
        self.rt: Runtime = get_runtime()
        self.app = make_celery("tests")


@pytest.fixture()
def make_stack(warrior_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Stack]]:
    """Bring up the real local stack for a config dict; everything is stopped after the test."""
    started: list[Stack] = []

    def make(data: dict[str, Any]) -> Stack:
        config = parse_campaign_config(data)
        path = tmp_path / f"{config.campaign_id()}.yaml"
        path.write_text(yaml.safe_dump(data))
        stack = Stack(config, path)
        started.append(stack)
        stack.local.up(config, timeout_s=180, echo=lambda *_: None)
        return stack

    yield make
    for stack in started:
        stack.local.down(echo=lambda *_: None)
        stack.app.close()
