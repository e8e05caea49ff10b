"""What `warrior up` runs for each locally served expert: the engine's arguments, parsed by warrior-expert's
own parser, and the openai engine end to end (config -> command line -> gRPC server -> an OpenAI-compatible
server on loopback, here a small fake one that checks the API key)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from warrior.cli.stack import LocalStack, StackError, expert_argv
from warrior.common.campaign_config import ExpertConfig, parse_campaign_config
from warrior.expert_inference.server import parse_args

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _expert(**fields: Any) -> ExpertConfig:
    other = {"name": "other", "engine": "zero-latency-test"}
    return parse_campaign_config({"experts": [fields, other]}).experts[0]


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_llamacpp_expert_gets_its_gguf_file_and_threads(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    argv = expert_argv(_expert(name="small", model=str(gguf), parallel=3), threads=2)
    args = parse_args(argv[1:])
    assert (args.engine, args.model, args.threads, args.parallel) == ("llamacpp", str(gguf), 2, 3)
    assert "--dtype" not in argv and "--openai-base-url" not in argv


def test_vllm_expert_gets_its_model_folder_and_vllm_settings(tmp_path: Path) -> None:
    folder = tmp_path / "hf" / "Coder"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    expert = _expert(
        name="coder", engine="vllm", model=str(folder), parallel=16, context_length=4096,
        vllm={"dtype": "bfloat16", "gpu_memory_utilization": 0.6},
    )  # fmt: skip
    argv = expert_argv(expert, threads=4)
    args = parse_args(argv[1:])
    assert (args.engine, args.model, args.dtype, args.gpu_memory_utilization) == ("vllm", str(folder), "bfloat16", 0.6)
    assert (args.parallel, args.context_length, args.chat_template) == (16, 4096, "auto")
    assert "--threads" not in argv  # CPU threads are llama.cpp's
    defaults = parse_args(expert_argv(_expert(name="coder", engine="vllm", model=str(folder)), threads=1)[1:])
    assert (defaults.dtype, defaults.gpu_memory_utilization) == ("auto", 0.85)


def test_vllm_expert_without_a_model_folder_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for model in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(StackError, match=r"expert 'coder': model folder .* without config\.json"):
            expert_argv(_expert(name="coder", engine="vllm", model=str(model)), threads=1)


def test_openai_expert_gets_the_server_the_model_and_the_key_variable(tmp_path: Path) -> None:
    template = tmp_path / "t.jinja"
    template.write_text(CHATML)
    server = {"base_url": "http://10.0.0.5:8000/v1", "model": "Qwen/Qwen2.5-72B-Instruct",
              "api_key_env": "ARENA_KEY", "chat_template_file": str(template)}  # fmt: skip
    argv = expert_argv(_expert(name="big", engine="openai", openai=server), threads=1, environ={"ARENA_KEY": "k"})
    args = parse_args(argv[1:])
    assert args.engine == "openai" and args.model is None
    assert (args.openai_base_url, args.openai_model) == ("http://10.0.0.5:8000/v1", "Qwen/Qwen2.5-72B-Instruct")
    assert (args.openai_api_key_env, args.chat_template_file) == ("ARENA_KEY", str(template))
    assert "k" not in argv  # the key itself never is on a command line


def test_openai_expert_defaults_and_missing_pieces(tmp_path: Path) -> None:
    # The default key variable may be unset (a server without a key); the first listed model is used.
    argv = expert_argv(_expert(name="big", engine="openai", openai={"base_url": "http://h:1"}), threads=1, environ={})
    args = parse_args(argv[1:])
    assert (args.openai_api_key_env, args.openai_model, args.chat_template_file) == ("OPENAI_API_KEY", None, None)
    named = _expert(name="big", engine="openai", openai={"base_url": "http://h:1", "api_key_env": "ARENA_KEY"})
    with pytest.raises(StackError, match="expert 'big': openai.api_key_env names ARENA_KEY, which is not set"):
        expert_argv(named, threads=1, environ={})
    no_file = str(tmp_path / "none.jinja")
    missing = _expert(name="big", engine="openai", openai={"base_url": "http://h:1", "chat_template_file": no_file})
    with pytest.raises(StackError, match="expert 'big': chat template file .*none.jinja not found"):
        expert_argv(missing, threads=1, environ={})


def test_zero_latency_expert_command_is_unchanged() -> None:
    args = parse_args(expert_argv(_expert(name="z", engine="zero-latency-test"), threads=1)[1:])
    assert (args.engine, args.model, args.threads) == ("zero-latency-test", None, 1)


def test_up_refuses_a_missing_model_before_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARRIOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("WARRIOR_STORE_URL", raising=False)
    experts = [{"name": "z", "engine": "zero-latency-test"}, {"name": "coder", "engine": "vllm", "model": "nowhere"}]
    monkeypatch.chdir(tmp_path)
    config = parse_campaign_config({"experts": experts})
    stack = LocalStack()
    with pytest.raises(StackError, match="expert 'coder': model folder"):
        stack.up(config, timeout_s=5, echo=lambda *_: None)
    assert stack.running() == [] and not (tmp_path / "home" / "redis.sock").exists()


# -- the openai engine end to end -------------------------------------------------------------------
FAKE_KEY = "sk-fake-7c1f0e"


class _FakeOpenAI(BaseHTTPRequestHandler):
    """/v1/models, /v1/completions and /v1/chat/completions of one model; every request needs the key."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {FAKE_KEY}":
            return True
        self._reply(401, {"error": {"message": "invalid api key"}})
        return False

    def do_GET(self) -> None:
        if self._authorized():
            self._reply(200, {"object": "list", "data": [{"id": "fake-coder", "max_model_len": 4096}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if not self._authorized():
            return
        self.seen.append({"path": self.path, **body})
        usage = {"prompt_tokens": 3, "completion_tokens": 2}
        if self.path == "/v1/chat/completions":
            text = "echo: " + body["messages"][-1]["content"]
            self._reply(200, {"choices": [{"message": {"content": text}, "finish_reason": "stop"}], "usage": usage})
        elif self.path == "/v1/completions":
            self._reply(200, {"choices": [{"text": "def f(): pass", "finish_reason": "stop"}], "usage": usage})
        else:
            self._reply(404, {"error": {"message": f"no route {self.path}"}})


@pytest.fixture()
def fake_openai() -> Iterator[str]:
    _FakeOpenAI.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.stack
def test_openai_expert_serves_through_the_command_up_builds(
    fake_openai: str, warrior_env: dict[str, str], tmp_path: Path
) -> None:
    from warrior.common.expert_client import ExpertClient
    from warrior.common.redis_client import connect
    from warrior.common.registry import Registry

    template = tmp_path / "chatml.jinja"
    template.write_text(CHATML)
    expert = _expert(name="remote-coder", engine="openai", parallel=4, openai={
        "base_url": fake_openai + "/v1", "model": "fake-coder", "api_key_env": "FAKE_OPENAI_KEY",
        "chat_template_file": str(template)})  # fmt: skip
    env = warrior_env | {"FAKE_OPENAI_KEY": FAKE_KEY}
    argv = expert_argv(expert, threads=1, environ=env)
    log = (tmp_path / "expert.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    registry = Registry(connect(warrior_env["REDIS_URL"]), ttl_s=3)
    client = ExpertClient(registry, deadline_s=10, attempts=2, backoff_s=0.2)
    try:
        deadline = time.monotonic() + 60
        while "remote-coder" not in registry.experts():
            assert proc.poll() is None, (tmp_path / "expert.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the openai expert did not register within 60 s"
            time.sleep(0.2)
        (record,) = registry.resolve("remote-coder")
        assert (record.engine, record.model, record.capacity) == ("openai", "fake-coder", 4)
        info = client.model_info("remote-coder")
        assert info.capabilities.chat_template and info.prequery_prefix.startswith("<|im_start|>user\n")
        reply = client.chat("remote-coder", [{"role": "user", "content": "reverse a list"}],
                            {"temperature": 0.0, "max_tokens": 16})  # fmt: skip
        assert reply.text == "echo: reverse a list"
        chats = [r for r in _FakeOpenAI.seen if r["path"] == "/v1/chat/completions"]
        assert chats and chats[-1]["model"] == "fake-coder" and chats[-1]["max_tokens"] == 16
    finally:
        client.close()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
