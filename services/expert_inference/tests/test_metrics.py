"""An expert's Prometheus endpoint: a real warrior-expert process (zero-latency-test engine) answers calls and its
/metrics shows them by method and outcome, with tokens, latency, load and the answer cache; an overloaded
engine's refusals are counted with the retry-after they give."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from warrior.common import metrics
from warrior.common.expert_client import CALL_KEY_HEADER
from warrior.expert_inference.engine import EngineBusy, Generated, SamplingSpec
from warrior.expert_inference.server import RETRY_AFTER_MS, ExpertInferenceServicer
from warrior.expert_inference.zero_latency_engine import ZeroLatencyTestEngine
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

GREEDY = pb.SamplingParams(temperature=0, max_tokens=16, seed=1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of http://127.0.0.1:<port>/metrics, by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{metrics.PATH}", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture()
def expert(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A warrior-expert serving metrics on a free port; (gRPC endpoint, metrics port)."""
    port, port_file, log_path = _free_port(), tmp_path / "endpoint", tmp_path / "expert.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrior.expert_inference.server", "--name", "meter", "--engine",
             "zero-latency-test", "--no-register", "--answer-cache-ttl-s", "0", "--port-file", str(port_file),
             "--metrics-port", str(port), "--drain-s", "0"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the expert did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield port_file.read_text(), port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_an_experts_metrics_port_shows_its_requests_tokens_latency_and_answer_cache(expert: tuple[str, int]) -> None:
    endpoint, port = expert
    chat = pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="Sort a list.")], sampling=GREEDY)
    key = ((CALL_KEY_HEADER, "0123456789abcdef0123456789abcdef"),)
    with grpc.insecure_channel(endpoint) as channel:
        stub = pb_grpc.ExpertInferenceServiceStub(channel)
        done = stub.Complete(pb.CompleteRequest(prompt="def add(a, b):", sampling=GREEDY), timeout=10)
        first = stub.Chat(chat, metadata=key, timeout=10)
        stub.Chat(chat, metadata=key, timeout=10)  # the same ledger key: answered from memory
        with pytest.raises(grpc.RpcError) as refused:
            stub.Complete(pb.CompleteRequest(prompt="", sampling=GREEDY), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    samples = scrape(port)
    assert value(samples, "warrior_expert_requests_total", expert="meter", method="Complete", outcome="ok") == 1
    assert (
        value(samples, "warrior_expert_requests_total", expert="meter", method="Complete", outcome="invalid_argument")
        == 1
    )
    assert value(samples, "warrior_expert_requests_total", expert="meter", method="Chat", outcome="ok") == 2
    assert value(samples, "warrior_expert_request_seconds_count", expert="meter", method="Chat") == 2
    assert value(samples, "warrior_expert_request_seconds_bucket", expert="meter", method="Chat", le="+Inf") == 2
    # Tokens the engine produced: the cached answer costs none.
    model = "zero-latency-test/meter"
    engine_completion = done.usage.completion_tokens + first.usage.completion_tokens
    assert engine_completion > 0
    assert value(samples, "warrior_expert_completion_tokens_total", expert="meter", model=model) == engine_completion
    prompt_tokens = done.usage.prompt_tokens + first.usage.prompt_tokens
    assert value(samples, "warrior_expert_prompt_tokens_total", expert="meter", model=model) == prompt_tokens
    assert value(samples, "warrior_expert_answer_cache_total", expert="meter", result="miss") == 1
    assert value(samples, "warrior_expert_answer_cache_total", expert="meter", result="memory") == 1
    assert value(samples, "warrior_expert_in_flight", expert="meter") == 0
    assert value(samples, "warrior_expert_waiting", expert="meter") == 0
    info = {"expert": "meter", "model": model, "engine": "zero-latency-test"}
    assert any(name == "warrior_expert_info" and info.items() <= dict(labels).items() for name, labels in samples)
    # What it serves is what warrior.common.metrics declares (the dashboard is checked against that).
    served = {name for name, _ in samples if name.startswith("warrior_")}
    assert served <= metrics.exported_series(), served - metrics.exported_series()
    assert not {name for name in served if name.startswith(("warrior_controller_", "warrior_queue_"))}


class _Overloaded(ZeroLatencyTestEngine):
    async def generate(self, prompt: str, sampling: SamplingSpec) -> Generated:
        raise EngineBusy("32 requests already waiting (limit 32)")


def test_an_overloaded_engines_refusals_are_counted_with_their_retry_after() -> None:
    name = "overloaded-meter"

    async def call() -> tuple[grpc.StatusCode, str]:
        server = grpc.aio.server()
        pb_grpc.add_ExpertInferenceServiceServicer_to_server(ExpertInferenceServicer(name, _Overloaded(name)), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ExpertInferenceServiceStub(channel)
                try:
                    await stub.Complete(pb.CompleteRequest(prompt="x", sampling=GREEDY), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    trailing = dict(exc.trailing_metadata() or ())
                    return exc.code(), str(trailing.get("retry-after-ms"))
                raise AssertionError("an overloaded engine answered")
        finally:
            await server.stop(None)

    code, retry_after_ms = asyncio.run(call())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after_ms == str(RETRY_AFTER_MS)
    get = REGISTRY.get_sample_value
    assert get("warrior_expert_refusals_total", {"expert": name, "reason": "resource_exhausted"}) == 1
    assert get("warrior_expert_refusal_retry_after_seconds_count", {"expert": name}) == 1
    assert get("warrior_expert_refusal_retry_after_seconds_sum", {"expert": name}) == RETRY_AFTER_MS / 1000
    labels = {"expert": name, "method": "Complete", "outcome": "resource_exhausted"}
    assert get("warrior_expert_requests_total", labels) == 1
    assert get("warrior_expert_in_flight", {"expert": name}) == 0
