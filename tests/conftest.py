"""Cross-service fixtures: a real local stack (Redis, expert gRPC servers, Celery workers) per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from warrior.cli.stack import LocalStack
from warrior.common.campaign_config import CampaignConfig, parse_campaign_config
from warrior.common.celery_app import make_celery
from warrior.common.runtime import Runtime, get_runtime


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
