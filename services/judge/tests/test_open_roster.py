"""The open roster is scoped: an expert registered mid-campaign joins it (as a competitor, judge and rater)
only when its labels match the campaign's matchmaking.roster_selector, and never when labelled role=eval."""

from __future__ import annotations

from typing import Any

from warrior.common.campaign_config import parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.registry import ExpertRecord
from warrior.common.runtime import get_runtime
from warrior.instruction_miner.tasks import _raters
from warrior.judge.tasks import roster


def _register(name: str, **labels: str) -> None:
    get_runtime().registry.register(
        ExpertRecord(
            name=name, instance=f"{name}-1", endpoint="127.0.0.1:1", model="m", revision="r", engine="e", labels=labels
        )
    )


def _campaign(name: str, matchmaking: dict[str, Any]) -> CampaignState:
    data = {
        "campaign": name,
        "experts": [{"name": "a", "engine": "zero-latency-test"}, {"name": "b", "engine": "zero-latency-test"}],
        "matchmaking": matchmaking,
    }
    state = CampaignState(get_runtime().redis, name)
    state.create(data, expected_mine=0)
    return state


def _register_all() -> None:
    _register("a")
    _register("b")
    _register("evaluee", role="eval", pool="paper")  # registered only to be evaluated
    _register("stranger", pool="elsewhere")
    _register("unlabelled")
    _register("joiner", pool="paper", role="arena")


def test_only_experts_matching_the_selector_join_and_never_an_eval_only_one(warrior_env: dict[str, str]) -> None:
    _register_all()
    state = _campaign("scoped", {"roster_selector": {"pool": "paper"}})
    config = parse_campaign_config(state.config())
    current, newcomers = roster(get_runtime(), state, config)
    assert newcomers == ["joiner"]
    assert current == ["a", "b", "joiner"]
    assert roster(get_runtime(), state, config) == (current, [])  # reported once
    assert _raters(get_runtime(), state, "a") == ["b", "joiner"]


def test_without_a_selector_any_expert_joins_but_an_eval_only_one(warrior_env: dict[str, str]) -> None:
    _register_all()
    state = _campaign("open", {})
    config = parse_campaign_config(state.config())
    current, newcomers = roster(get_runtime(), state, config)
    assert newcomers == ["joiner", "stranger", "unlabelled"]
    assert "evaluee" not in current
    assert "evaluee" not in _raters(get_runtime(), state, "a")
    # Even an expert already on the roster (from before it was labelled) does not rate once labelled role=eval.
    state.mark("roster", "evaluee")
    assert "evaluee" not in _raters(get_runtime(), state, "a")
