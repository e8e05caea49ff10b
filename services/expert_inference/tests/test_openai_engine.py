"""OpenAICompatibleEngine against a real OpenAI-compatible server: llama-cpp-python's, on loopback, with SmolLM2.

The server requires an API key, so every request here also proves the Bearer header is sent.
The last tests drive the same server through the expert-inference gRPC server (--engine openai).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import pytest

from warrior.common.chat_template import Message, render_chat
from warrior.expert_inference.engine import EngineRequestError, EngineUnavailable, SamplingSpec
from warrior.expert_inference.openai_engine import OpenAICompatibleEngine
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.model, pytest.mark.stack]

API_KEY = "sk-warrior-test-0d5c1e"
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def openai_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port; yields its base URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("openai-server") / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--api_key", API_KEY],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"llama_cpp.server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"llama_cpp.server not ready within 60 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def smollm2_template(smollm2_path: Path) -> str:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(smollm2_path), vocab_only=True, verbose=False)
    try:
        return str(llm.metadata["tokenizer.chat_template"])
    finally:
        llm.close()


def _with_engine(url: str, fn: Callable[[OpenAICompatibleEngine], Awaitable[T]], **kwargs: Any) -> T:
    async def main() -> T:
        engine = await OpenAICompatibleEngine.connect(url, api_key=API_KEY, **kwargs)
        try:
            return await fn(engine)
        finally:
            await engine.aclose()

    return asyncio.run(main())


def _verdict_prompt(template: str) -> str:
    question = "Which letter comes first in the alphabet? Answer with A or B."
    return render_chat(template, [Message("user", question)]) + "[["


# -- the engine ------------------------------------------------------------------------------


def test_discovers_the_served_model(openai_server: str, smollm2_path: Path, smollm2_template: str) -> None:
    plain = OpenAICompatibleEngine(openai_server + "/v1/", api_key=API_KEY, capacity=3)
    assert plain.base_url == openai_server
    info = plain.info
    assert info.model == str(smollm2_path)  # llama-cpp-python serves the --model path as the model id
    assert info.revision == "oa-" + hashlib.sha256(str(smollm2_path).encode()).hexdigest()[:12]
    assert info.engine == "openai" and info.native_chat and info.capacity == 3
    assert info.chat_template == "" and info.stop_strings == () and info.context_length == 0
    assert info.capabilities == {
        "raw_completion": True,
        "chat": True,
        "candidate_logprobs": False,
        "chat_template": False,
    }
    plain.close()  # nothing to close yet: no request was made

    templated = OpenAICompatibleEngine(
        openai_server, model=str(smollm2_path), api_key=API_KEY, chat_template=smollm2_template
    )
    assert templated.info.chat_template == smollm2_template
    assert templated.info.capabilities["candidate_logprobs"] and templated.info.capabilities["chat_template"]
    assert templated.info.revision == info.revision  # the revision does not depend on the URL


def test_greedy_generation_is_reproducible_and_counts_tokens(openai_server: str) -> None:
    greedy = SamplingSpec(temperature=0, max_tokens=16, seed=1)

    async def run(engine: OpenAICompatibleEngine) -> None:
        first = await engine.generate("def add(a, b):\n    return", greedy)
        again = await engine.generate("def add(a, b):\n    return", greedy)
        assert first.text.strip() and again.text == first.text
        assert first.prompt_tokens > 0 and 0 < first.completion_tokens <= 16
        assert first.finish_reason in ("stop", "length")
        short = await engine.generate("Once upon a time", SamplingSpec(temperature=0.7, max_tokens=3, seed=7))
        assert short.finish_reason == "length" and short.completion_tokens == 3
        stopped = await engine.generate("1, 2, 3, 4,", SamplingSpec(max_tokens=32, stop=(" 7",)))
        assert " 7" not in stopped.text and stopped.finish_reason == "stop"

    _with_engine(openai_server, run)


def test_chat_is_rendered_by_the_server(openai_server: str) -> None:
    async def run(engine: OpenAICompatibleEngine) -> None:
        out = await engine.chat(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}],
            SamplingSpec(max_tokens=24),
        )
        assert out.text.strip()
        assert not any(t in out.text for t in ("<|im_start|>", "<|im_end|>", "assistant\n"))
        assert out.prompt_tokens > 10 and out.completion_tokens > 0  # the server's template wrapped the turns
        assert out.finish_reason in ("stop", "length")

    _with_engine(openai_server, run)


def test_candidates_are_scored_whole_from_the_echoed_prompt(openai_server: str, smollm2_template: str) -> None:
    prompt = _verdict_prompt(smollm2_template)
    scores = _with_engine(openai_server, lambda e: e.score(prompt, ["A", "B", "1", "10"]))
    (a, na), (b, nb), (one, n1), (ten, n10) = scores
    assert all(lp < 0 for lp, _ in scores) and na == nb == n1 == 1
    assert math.exp(a) + math.exp(b) <= 1.0
    assert n10 == 2 and ten != one  # every token of a candidate counts: "10" is not scored as "1"


def test_an_unknown_model_is_refused_with_the_served_ids(openai_server: str, smollm2_path: Path) -> None:
    with pytest.raises(EngineRequestError) as err:
        OpenAICompatibleEngine(openai_server, model="no-such-model", api_key=API_KEY)
    assert "no-such-model" in str(err.value) and str(smollm2_path) in str(err.value)


def test_an_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(EngineUnavailable) as err:
        OpenAICompatibleEngine(url, api_key=API_KEY)
    assert url in str(err.value) and "cannot reach" in str(err.value)


def test_a_wrong_key_is_refused_without_echoing_it(openai_server: str) -> None:
    with pytest.raises(EngineUnavailable) as err:
        OpenAICompatibleEngine(openai_server, api_key="sk-wrong-key-42")
    assert "401" in str(err.value) and "sk-wrong-key-42" not in str(err.value)
    with pytest.raises(EngineUnavailable, match="401"):
        OpenAICompatibleEngine(openai_server)  # no key at all


def test_a_too_long_prompt_is_a_request_error(openai_server: str) -> None:
    # llama-cpp-python answers 400 (code context_length_exceeded) when the prompt alone fills n_ctx;
    # a max_tokens beyond the room left is silently cut to it instead.
    with pytest.raises(EngineRequestError) as err:
        _with_engine(openai_server, lambda e: e.generate("word " * 3000, SamplingSpec(max_tokens=8)))
    assert "HTTP 400" in str(err.value) and "maximum context length is 2048" in str(err.value)
    assert len(str(err.value)) < 400 and API_KEY not in str(err.value)


# -- through the gRPC server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_endpoint(openai_server: str, smollm2_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("oa-expert")
    template_file = tmp / "template.jinja"
    template_file.write_text(smollm2_template, encoding="utf-8")
    port_file = tmp / "oa.endpoint"
    env = dict(os.environ) | {"WARRIOR_TEST_OA_KEY": API_KEY}
    with (tmp / "oa.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrior.expert_inference.server", "--name", "oa", "--engine", "openai",
             "--openai-base-url", openai_server, "--openai-api-key-env", "WARRIOR_TEST_OA_KEY",
             "--chat-template-file", str(template_file), "--parallel", "4", "--port-file", str(port_file),
             "--no-register"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    try:
        while not port_file.exists():
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {(tmp / 'oa.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("server did not start within 30 s")
            time.sleep(0.1)
        yield port_file.read_text()
    finally:
        _stop(proc)


def test_grpc_server_fronts_the_openai_server(grpc_endpoint: str, smollm2_path: Path, smollm2_template: str) -> None:
    greedy = pb.SamplingParams(temperature=0, max_tokens=16, seed=1)
    with grpc.insecure_channel(grpc_endpoint) as channel:
        stub = pb_grpc.ExpertInferenceServiceStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert info.name == "oa" and info.engine == "openai" and info.model == str(smollm2_path)
        assert info.chat_template == smollm2_template and info.capacity == 4
        assert info.capabilities.chat and info.capabilities.candidate_logprobs

        out = stub.Complete(pb.CompleteRequest(prompt="def add(a, b):\n    return", sampling=greedy), timeout=60)
        assert out.text.strip() and out.usage.completion_tokens > 0

        chat = stub.Chat(
            pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="What is 2 + 2?")], sampling=greedy),
            timeout=60,
        )
        assert chat.text and "<|im_end|>" not in chat.text and "<|im_start|>" not in chat.text

        reply = stub.ScoreCandidates(
            pb.ScoreCandidatesRequest(
                messages=[pb.ChatMessage(role="user", content="Which letter comes first? Answer with A or B.")],
                assistant_prefix="[[",
                candidates=["A", "B", "Tie"],
            ),
            timeout=60,
        )
        scores = {s.candidate: s for s in reply.scores}
        assert set(scores) == {"A", "B", "Tie"} and all(s.logprob < 0 and s.tokens >= 1 for s in scores.values())
        assert sum(math.exp(scores[c].logprob) for c in ("A", "B")) <= 1.0

        with pytest.raises(grpc.RpcError) as err:
            stub.Complete(pb.CompleteRequest(prompt="word " * 3000), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "context length" in err.value.details()


def test_grpc_server_exits_clearly_when_the_openai_server_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "warrior.expert_inference.server", "--name", "oa", "--engine", "openai",
         "--openai-base-url", url, "--no-register"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"cannot reach the OpenAI-compatible server at {url}" in result.stderr
    assert "Traceback" not in result.stderr
