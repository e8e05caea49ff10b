"""The expert-inference server on the real SmolLM2 model: gRPC calls, health, reflection, registration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from warrior.common.redis_client import connect
from warrior.common.registry import Registry
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.model, pytest.mark.stack]


def _start(name: str, model: Path, tmp: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / f"{name}.endpoint"
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "warrior.expert_inference.server", "--name", name, "--model", str(model),
         "--parallel", "2", "--threads", "1", "--port-file", str(port_file), *extra],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {(tmp / f'{name}.log').read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start within 120 s")
        time.sleep(0.1)
    return proc, port_file.read_text()


@pytest.fixture()
def server(
    tmp_path: Path, smollm2_path: Path, warrior_env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc, endpoint = _start("smol", smollm2_path, tmp_path, warrior_env)
    yield proc, endpoint
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture()
def stub(server: tuple[subprocess.Popen[bytes], str]) -> Iterator[pb_grpc.ExpertInferenceServiceStub]:
    with grpc.insecure_channel(server[1]) as channel:
        yield pb_grpc.ExpertInferenceServiceStub(channel)


def test_model_info_names_the_model_and_its_template(stub: pb_grpc.ExpertInferenceServiceStub) -> None:
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.name == "smol"
    assert info.model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert info.revision == "b179c9523d0e6a0f"  # sha256 prefix of the pinned weights
    assert "<|im_start|>" in info.chat_template
    assert "<|im_end|>" in info.stop_strings
    assert info.capabilities.raw_completion and info.capabilities.candidate_logprobs
    assert info.capacity == 2


def test_completion_and_chat_generate_text(stub: pb_grpc.ExpertInferenceServiceStub) -> None:
    greedy = pb.SamplingParams(temperature=0, max_tokens=24, seed=1)
    out = stub.Complete(pb.CompleteRequest(prompt="def add(a, b):\n    return", sampling=greedy), timeout=60)
    assert out.text.strip() and out.usage.completion_tokens > 0
    again = stub.Complete(pb.CompleteRequest(prompt="def add(a, b):\n    return", sampling=greedy), timeout=60)
    assert again.text == out.text  # greedy decoding is reproducible
    chat = stub.Chat(
        pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="What is 2 + 2?")], sampling=greedy), timeout=60
    )
    assert chat.text and "<|im_end|>" not in chat.text
    assert chat.finish_reason in ("stop", "length")


def test_candidate_logprobs_are_probabilities(stub: pb_grpc.ExpertInferenceServiceStub) -> None:
    reply = stub.ScoreCandidates(
        pb.ScoreCandidatesRequest(
            messages=[pb.ChatMessage(role="user", content="Answer with A or B. Which letter comes first?")],
            assistant_prefix="[[",
            candidates=["A", "B", "Tie"],
        ),
        timeout=60,
    )
    scores = {s.candidate: s for s in reply.scores}
    assert set(scores) == {"A", "B", "Tie"}
    assert all(s.logprob < 0 for s in scores.values())
    assert sum(2.718281828 ** scores[c].logprob for c in ("A", "B")) <= 1.0
    assert scores["Tie"].tokens >= 1


def test_concurrent_requests_are_served(stub: pb_grpc.ExpertInferenceServiceStub) -> None:
    sampling = pb.SamplingParams(temperature=0, max_tokens=16)
    prompts = [f"def add_{i}(a, b):\n    return" for i in range(6)]
    futures = [stub.Complete.future(pb.CompleteRequest(prompt=p, sampling=sampling), timeout=120) for p in prompts]
    replies = [f.result() for f in futures]
    assert all(r.usage.completion_tokens > 0 and r.text.strip() for r in replies)
    # Each answer belongs to its own request: the same prompt alone gives the same greedy text.
    alone = stub.Complete(pb.CompleteRequest(prompt=prompts[3], sampling=sampling), timeout=60)
    assert alone.text == replies[3].text


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.CompleteRequest(prompt=""), "prompt is empty"),
        (pb.CompleteRequest(prompt="x", sampling=pb.SamplingParams(temperature=-1)), "temperature"),
        (pb.CompleteRequest(prompt="x", sampling=pb.SamplingParams(top_p=2)), "top_p"),
        (pb.CompleteRequest(prompt="word " * 5000), "does not fit the context"),
    ],
)
def test_bad_requests_are_refused_with_invalid_argument(
    stub: pb_grpc.ExpertInferenceServiceStub, request_: pb.CompleteRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Complete(request_, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_bad_chat_role_is_refused(stub: pb_grpc.ExpertInferenceServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Chat(pb.ChatRequest(messages=[pb.ChatMessage(role="robot", content="hi")]), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "role" in err.value.details()


def test_health_and_reflection(server: tuple[subprocess.Popen[bytes], str]) -> None:
    with grpc.insecure_channel(server[1]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="warrior.v1.ExpertInferenceService"), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for reply in replies for s in reply.list_services_response.service}
        assert "warrior.v1.ExpertInferenceService" in names and "grpc.health.v1.Health" in names


def test_registers_on_start_and_deregisters_on_sigterm(
    server: tuple[subprocess.Popen[bytes], str], warrior_env: dict[str, str]
) -> None:
    proc, endpoint = server
    registry = Registry(connect(warrior_env["REDIS_URL"]))
    [record] = registry.resolve("smol")
    assert record.endpoint == endpoint and record.pid == proc.pid and record.revision == "b179c9523d0e6a0f"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert registry.resolve("smol") == []


def test_killed_server_disappears_within_its_ttl(
    server: tuple[subprocess.Popen[bytes], str], warrior_env: dict[str, str]
) -> None:
    proc, _ = server
    registry = Registry(connect(warrior_env["REDIS_URL"]))
    assert registry.resolve("smol")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ttl = float(warrior_env["WARRIOR_REGISTRY_TTL_S"])
    deadline = time.monotonic() + ttl + 1
    while registry.resolve("smol") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert registry.resolve("smol") == []


def test_missing_model_file_is_a_clear_error(tmp_path: Path, warrior_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "warrior.expert_inference.server", "--name", "x", "--model", str(tmp_path / "no.gguf")],
        env=warrior_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "model file not found" in result.stderr


def test_backpressure_refuses_with_a_hint_and_the_client_retries(
    tmp_path: Path, smollm2_path: Path, warrior_env: dict[str, str]
) -> None:
    from warrior.common.expert_client import ExpertClient

    proc, endpoint = _start("busy", smollm2_path, tmp_path, warrior_env, "--max-waiting", "1")
    try:
        request = pb.CompleteRequest(prompt="def f(x):\n    return", sampling=pb.SamplingParams(max_tokens=24))
        with grpc.insecure_channel(endpoint) as channel:
            stub = pb_grpc.ExpertInferenceServiceStub(channel)
            futures = [stub.Complete.future(request, timeout=60) for _ in range(8)]
            refused = []
            for future in futures:
                try:
                    future.result()
                except grpc.RpcError as exc:
                    refused.append(exc)
        assert refused, "eight requests at once on 2 sequences + 1 waiting: some must be refused"
        assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
        assert all(("retry-after-ms", "500") in tuple(e.trailing_metadata()) for e in refused)
        # The client waits as told and retries, so the same burst through it all succeeds.
        client = ExpertClient(Registry(connect(warrior_env["REDIS_URL"])), in_flight_per_expert=8)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: client.complete("busy", "def g(x):\n    return", {"max_tokens": 24}),
                                    range(8)))  # fmt: skip
        assert all(r.completion_tokens > 0 for r in results)
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
