"""A server refuses to start on a chat template that cannot yield a pre-query prefix, and says what to do."""

from __future__ import annotations

import pytest

from warrior.expert_inference.engine import EngineInfo
from warrior.expert_inference.server import check_prequery
from warrior.expert_inference.zero_latency_engine import ZeroLatencyTestEngine


class _Engine:
    def __init__(self, template: str) -> None:
        self.info = EngineInfo(
            model="odd-model", revision="r", engine="test", chat_template=template, bos_token="", eos_token="",
            stop_strings=(), context_length=2048, capacity=1,
        )  # fmt: skip


def test_a_good_template_gives_the_prefix_exposed_in_model_info() -> None:
    prefix = check_prequery(ZeroLatencyTestEngine("z"))  # type: ignore[arg-type]
    assert prefix == "<|im_start|>user\n"


def test_no_template_means_completion_style_and_no_prefix() -> None:
    assert check_prequery(_Engine("")) == ""  # type: ignore[arg-type]


def test_a_template_that_drops_the_user_text_stops_the_server_with_a_way_out() -> None:
    with pytest.raises(SystemExit) as err:
        check_prequery(_Engine("{% for m in messages %}<turn>{% endfor %}"))  # type: ignore[arg-type]
    message = str(err.value)
    assert "odd-model" in message and "pre-query" in message and "--chat-template none" in message
