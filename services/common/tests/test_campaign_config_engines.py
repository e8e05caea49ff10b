"""Locally served experts on each engine: what each needs, and errors that name the key when it is wrong."""

from __future__ import annotations

import re
from typing import Any

import pytest

from warrior.common.campaign_config import ConfigError, ExpertConfig, parse_campaign_config


def _first(expert: dict[str, Any]) -> ExpertConfig:
    return parse_campaign_config({"experts": [expert, {"name": "z", "engine": "zero-latency-test"}]}).experts[0]


def _refused(expert: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        _first(expert)
    return str(caught.value)


def test_llamacpp_serves_a_gguf_file_or_nothing() -> None:
    served = _first({"name": "a", "model": "models/a.gguf"})
    assert (served.engine, served.served_locally) == ("llamacpp", True)
    remote = _first({"name": "a"})  # served elsewhere (a cluster): registered, not started
    assert remote.served_locally is False
    assert "bad value for 'experts.0.model'" in _refused({"name": "a", "model": "models/hf/A"})


def test_vllm_serves_a_hugging_face_folder() -> None:
    expert = _first({"name": "a", "engine": "vllm", "model": "models/hf/SmolLM2-135M-Instruct"})
    assert (expert.engine, expert.model, expert.vllm, expert.served_locally) == (
        "vllm", "models/hf/SmolLM2-135M-Instruct", None, True,
    )  # fmt: skip
    tuned = _first({"name": "a", "engine": "vllm", "model": "m", "vllm": {"dtype": "bfloat16",
                                                                        "gpu_memory_utilization": 0.5}})  # fmt: skip
    assert tuned.vllm is not None and (tuned.vllm.dtype, tuned.vllm.gpu_memory_utilization) == ("bfloat16", 0.5)


@pytest.mark.parametrize(
    ("expert", "message"),
    [
        ({"name": "a", "engine": "vllm"}, r"bad value for 'experts\.0\.model': .*engine 'vllm' serves a Hugging Face"),
        ({"name": "a", "engine": "vllm", "model": "a.gguf"}, r"'experts\.0\.model': .*served by engine 'llamacpp'"),
        ({"name": "a", "engine": "vllm", "model": "m", "vllm": {"dtype": "int3"}}, r"'experts\.0\.vllm\.dtype'"),
        ({"name": "a", "engine": "vllm", "model": "m", "vllm": {"gpu_memory_utilization": 1.5}},
         r"'experts\.0\.vllm\.gpu_memory_utilization'"),
        ({"name": "a", "engine": "vllm", "model": "m", "vllm": {"tp": 2}}, r"unknown key 'experts\.0\.vllm\.tp'"),
        ({"name": "a", "model": "a.gguf", "vllm": {}}, r"'experts\.0\.vllm': .*this expert's engine is 'llamacpp'"),
        ({"name": "a", "engine": "vlm", "model": "m"}, r"bad value for 'experts\.0\.engine'"),
    ],
)  # fmt: skip
def test_bad_vllm_experts_are_named(expert: dict[str, Any], message: str) -> None:
    assert re.search(message, _refused(expert))


def test_openai_fronts_a_server_named_by_url() -> None:
    expert = _first({"name": "big", "engine": "openai", "openai": {"base_url": "http://10.0.0.5:8000/v1"}})
    assert expert.openai is not None and expert.served_locally and expert.model is None
    assert (expert.openai.base_url, expert.openai.model, expert.openai.api_key_env) == (
        "http://10.0.0.5:8000/v1", None, "OPENAI_API_KEY",
    )  # fmt: skip
    full = _first({"name": "big", "engine": "openai", "openai": {
        "base_url": "https://llm.example:443", "model": "Qwen/Qwen2.5-72B-Instruct", "api_key_env": "ARENA_KEY",
        "chat_template_file": "qwen.jinja"}})  # fmt: skip
    assert full.openai is not None and full.openai.model == "Qwen/Qwen2.5-72B-Instruct"


@pytest.mark.parametrize(
    ("expert", "message"),
    [
        ({"name": "a", "engine": "openai"}, r"bad value for 'experts\.0\.openai': .*needs the server it fronts"),
        ({"name": "a", "engine": "openai", "openai": {}}, r"missing key 'experts\.0\.openai\.base_url'"),
        ({"name": "a", "engine": "openai", "openai": {"base_url": "10.0.0.5:8000"}},
         r"bad value for 'experts\.0\.openai\.base_url': .*http:// or https://"),
        ({"name": "a", "engine": "openai", "openai": {"base_url": "http://h", "api_key_env": "MY-KEY"}},
         r"bad value for 'experts\.0\.openai\.api_key_env'"),
        ({"name": "a", "engine": "openai", "openai": {"base_url": "http://h", "key": "x"}},
         r"unknown key 'experts\.0\.openai\.key'"),
        ({"name": "a", "engine": "openai", "model": "m", "openai": {"base_url": "http://h"}},
         r"'experts\.0\.model': .*name it in openai\.model"),
        ({"name": "a", "model": "a.gguf", "openai": {"base_url": "http://h"}},
         r"'experts\.0\.openai': .*only engine 'openai'"),
    ],
)  # fmt: skip
def test_bad_openai_experts_are_named(expert: dict[str, Any], message: str) -> None:
    assert re.search(message, _refused(expert))


def test_credentials_in_the_url_are_refused_without_being_echoed() -> None:
    message = _refused({"name": "a", "engine": "openai", "openai": {"base_url": "http://user:hunter2@h:8000"}})
    assert "bad value for 'experts.0.openai.base_url'" in message and "may not carry credentials" in message
    assert "hunter2" not in message
