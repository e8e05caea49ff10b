"""Property-based tests of the expert server's request validation, over real gRPC.

One expert server runs for the module as a subprocess (`warrior.expert_inference.server` with the
zero-latency test engine), registered in a real Redis. Generated requests (empty and oversized
prompts, bad sampling, bad roles, empty and oversized candidate lists) go through the raw stub:
each is answered OK or INVALID_ARGUMENT as the contract says, never UNKNOWN or INTERNAL, and the
server stays healthy, its load back at zero. Through ExpertClient, an expert that is not
registered (or does not answer) raises ExpertUnavailable promptly and a bad request
ExpertRequestError without retries.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from warrior.common.expert_client import ExpertClient, ExpertRequestError, ExpertUnavailable
from warrior.common.redis_client import connect
from warrior.common.registry import ExpertRecord, Registry
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.stack

NAME = "fuzz-zlt"
MAX_PROMPT_CHARS = 1_000_000  # the server's limit on a prompt, or on a chat's messages together
MAX_CANDIDATES = 64
ROLES = ("system", "user", "assistant")
# `healthy_after` checks the server once after all of a test's examples, as intended.
FAST = settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
_OPTIONS = [("grpc.max_send_message_length", 64 * 1024 * 1024), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@pytest.fixture(scope="module")
def expert(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    folder = tmp_path_factory.mktemp("fuzz-grpc")
    port_file, log_path = folder / "endpoint", folder / "expert.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARRIOR_TLS", "WARRIOR_GRPC_TOKEN"))}
    env |= {"REDIS_URL": redis_server, "WARRIOR_REGISTRY_TTL_S": "3", "WARRIOR_HOME": str(folder / "home")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrior.expert_inference.server", "--name", NAME, "--engine", "zero-latency-test",
             "--parallel", "4", "--port-file", str(port_file), "--drain-s", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the expert did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    yield proc, port_file.read_text()
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def stub(expert: tuple[subprocess.Popen[bytes], str]) -> Iterator[pb_grpc.ExpertInferenceServiceStub]:
    with grpc.insecure_channel(expert[1], options=_OPTIONS) as channel:
        yield pb_grpc.ExpertInferenceServiceStub(channel)


def assert_healthy(expert: tuple[subprocess.Popen[bytes], str], stub: pb_grpc.ExpertInferenceServiceStub) -> None:
    assert expert[0].poll() is None, "the expert process died"
    with grpc.insecure_channel(expert[1]) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="warrior.v1.ExpertInferenceService"), timeout=5
        )
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    reply = stub.Complete(pb.CompleteRequest(prompt="def f():", sampling=pb.SamplingParams(max_tokens=8)), timeout=5)
    assert reply.text and reply.finish_reason in ("stop", "length")


@pytest.fixture()
def healthy_after(
    expert: tuple[subprocess.Popen[bytes], str], stub: pb_grpc.ExpertInferenceServiceStub
) -> Iterator[None]:
    yield
    assert_healthy(expert, stub)


# The contract, written out: "ok", "invalid" (INVALID_ARGUMENT), or "gap": a request the contract
# refuses that the server accepts today (see test_known_gaps_*); either answer is allowed for it.


def _worst(*verdicts: str) -> str:
    return "invalid" if "invalid" in verdicts else "gap" if "gap" in verdicts else "ok"


def sampling_verdict(s: pb.SamplingParams) -> str:
    if (not math.isnan(s.temperature) and not 0 <= s.temperature <= 5) or (
        not math.isnan(s.top_p) and not 0 <= s.top_p <= 1
    ):
        return "invalid"
    if len(s.stop) > 16:
        return "invalid"
    return "gap" if math.isnan(s.temperature) or math.isnan(s.top_p) else "ok"


def messages_verdict(messages: Any) -> str:
    if not messages or any(m.role not in ROLES for m in messages):
        return "invalid"
    return "invalid" if sum(len(m.content) for m in messages) > MAX_PROMPT_CHARS else "ok"


# Requests: sizes at and around the limits, every float a proto float can hold, odd roles.


def _text_of(size: int) -> str:
    return "x" * size


lengths = st.sampled_from([0, 1, 2, 100, MAX_PROMPT_CHARS - 1, MAX_PROMPT_CHARS, MAX_PROMPT_CHARS + 1, 3_000_000])
texts = st.one_of(st.text(max_size=60), lengths.map(_text_of))
floats32 = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 5.0, 5.000001, -1e-9, 1e-9, 0.999999, 1.000001]),
)
sampling = st.builds(
    pb.SamplingParams,
    temperature=floats32,
    top_p=floats32,
    max_tokens=st.sampled_from([0, 1, 2, 256, 32768, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1),
    stop=st.lists(st.text(max_size=4), max_size=18),
    seed=st.integers(0, 2**64 - 1),
)
roles = st.sampled_from([*ROLES, "", "User", "tool", "robot", "user ", "\x00", "système"]) | st.text(max_size=6)
message = st.builds(pb.ChatMessage, role=roles, content=texts)
messages = st.lists(message, max_size=4)
candidate_lists = st.one_of(
    st.lists(st.text(max_size=8), max_size=6),
    st.lists(st.sampled_from(["A", "B", "Tie", "1]]", "10]]"]), min_size=1, max_size=10),
    st.integers(60, 70).map(lambda n: [f"c{i}" for i in range(n)]),
    lengths.map(lambda n: ["A", _text_of(n)]),
)


def _call(method: Any, request: Any) -> tuple[grpc.StatusCode, Any]:
    try:
        return grpc.StatusCode.OK, method(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()


def _assert_verdict(verdict: str, code: grpc.StatusCode, detail: Any) -> None:
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (code, detail)
    if verdict == "ok":
        assert code == grpc.StatusCode.OK, detail
    elif verdict == "invalid":
        assert code == grpc.StatusCode.INVALID_ARGUMENT, "accepted a request the contract refuses"


@FAST
@given(texts, sampling | st.none())
@example("", None)
@example("x" * (MAX_PROMPT_CHARS + 1), None)
@example("def f():", pb.SamplingParams(temperature=-1))
@example("def f():", pb.SamplingParams(top_p=1.5))
@example("def f():", pb.SamplingParams(max_tokens=2**32 - 1))
@example("def f():", pb.SamplingParams(stop=["x"] * 17))
def test_complete_answers_ok_or_invalid_argument(
    stub: pb_grpc.ExpertInferenceServiceStub, healthy_after: None, prompt: str, params: pb.SamplingParams | None
) -> None:
    request = pb.CompleteRequest(prompt=prompt, sampling=params)
    verdict = _worst(
        "invalid" if not prompt or len(prompt) > MAX_PROMPT_CHARS else "ok", sampling_verdict(request.sampling)
    )
    code, reply = _call(stub.Complete, request)
    _assert_verdict(verdict, code, reply)
    if code == grpc.StatusCode.OK:
        assert reply.finish_reason in ("stop", "length") and reply.usage.completion_tokens >= 0


@FAST
@given(messages, sampling | st.none())
@example([], None)
@example([pb.ChatMessage(role="robot", content="hi")], None)
@example([pb.ChatMessage(role="user", content="x" * 600_000)] * 2, None)
@example([pb.ChatMessage(role="user", content="{{ 7 * 7 }}{% for x in range(10**9) %}{% endfor %}")], None)
def test_chat_answers_ok_or_invalid_argument(
    stub: pb_grpc.ExpertInferenceServiceStub, healthy_after: None, chat: list[pb.ChatMessage],
    params: pb.SamplingParams | None,
) -> None:  # fmt: skip
    request = pb.ChatRequest(messages=chat, sampling=params)
    verdict = _worst(messages_verdict(request.messages), sampling_verdict(request.sampling))
    code, reply = _call(stub.Chat, request)
    _assert_verdict(verdict, code, reply)
    if code == grpc.StatusCode.OK:
        assert "{{" in reply.text or "49" not in reply.text  # message text is data, never template code


@FAST
@given(messages, texts, candidate_lists)
@example([pb.ChatMessage(role="user", content="Which?")], "[[", [])
@example([pb.ChatMessage(role="user", content="Which?")], "[[", ["A", ""])
@example([pb.ChatMessage(role="user", content="Which?")], "[[", [f"c{i}" for i in range(65)])
@example([], "[[", ["A", "B"])
def test_score_candidates_answers_ok_or_invalid_argument(
    stub: pb_grpc.ExpertInferenceServiceStub, healthy_after: None, chat: list[pb.ChatMessage], prefix: str,
    candidates: list[str],
) -> None:  # fmt: skip
    request = pb.ScoreCandidatesRequest(messages=chat, assistant_prefix=prefix, candidates=candidates)
    shape = "invalid" if not candidates or len(candidates) > MAX_CANDIDATES or not all(candidates) else "ok"
    total = sum(len(m.content) for m in chat) + len(prefix) + sum(len(c) for c in candidates)
    verdict = _worst(shape, messages_verdict(chat), "gap" if total > MAX_PROMPT_CHARS else "ok")
    code, reply = _call(stub.ScoreCandidates, request)
    _assert_verdict(verdict, code, reply)
    if code == grpc.StatusCode.OK:
        assert [s.candidate for s in reply.scores] == candidates
        assert all(math.isfinite(s.logprob) and s.logprob <= 0 and s.tokens >= 1 for s in reply.scores)


def test_a_burst_of_bad_requests_leaves_the_server_serving_with_nothing_in_flight(
    expert: tuple[subprocess.Popen[bytes], str], stub: pb_grpc.ExpertInferenceServiceStub, redis_server: str
) -> None:
    bad = [
        (stub.Complete, pb.CompleteRequest(prompt="")),
        (stub.Complete, pb.CompleteRequest(prompt="x" * (MAX_PROMPT_CHARS + 1))),
        (stub.Chat, pb.ChatRequest(messages=[pb.ChatMessage(role="robot", content="hi")])),
        (stub.ScoreCandidates, pb.ScoreCandidatesRequest(candidates=[])),
        (stub.Complete, pb.CompleteRequest(prompt="x", sampling=pb.SamplingParams(temperature=-1))),
    ]
    futures = [method.future(request, timeout=30) for _ in range(40) for method, request in bad]
    for future in futures:
        with pytest.raises(grpc.RpcError) as err:
            future.result()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_healthy(expert, stub)
    registry = Registry(connect(redis_server))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the heartbeat (every second) reports the load
        [record] = registry.resolve(NAME)
        if record.in_flight == 0 and record.heartbeat_at > time.time() - 1.5:
            break
        time.sleep(0.2)
    assert record.in_flight == 0 and record.state == "serving"


# NaN fails every comparison, and scoring requests carry text outside the messages: both are refused.


@pytest.mark.parametrize("params", [pb.SamplingParams(temperature=math.nan), pb.SamplingParams(top_p=math.nan)])
def test_nan_sampling_is_refused(stub: pb_grpc.ExpertInferenceServiceStub, params: pb.SamplingParams) -> None:
    code, _ = _call(stub.Complete, pb.CompleteRequest(prompt="x", sampling=params))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("big", ["prefix", "candidate"])
def test_oversized_score_requests_are_refused(stub: pb_grpc.ExpertInferenceServiceStub, big: str) -> None:
    huge = "x" * (2 * MAX_PROMPT_CHARS)
    request = pb.ScoreCandidatesRequest(
        messages=[pb.ChatMessage(role="user", content="Which?")],
        assistant_prefix=huge if big == "prefix" else "[[",
        candidates=["A", huge] if big == "candidate" else ["A", "B"],
    )
    code, _ = _call(stub.ScoreCandidates, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# Through ExpertClient.


@pytest.fixture(scope="module")
def client(expert: tuple[subprocess.Popen[bytes], str], redis_server: str) -> Iterator[ExpertClient]:
    registry = Registry(connect(redis_server), ttl_s=3)
    deadline = time.monotonic() + 10
    while not registry.resolve(NAME) and time.monotonic() < deadline:
        time.sleep(0.1)
    client = ExpertClient(registry, deadline_s=10, attempts=3, backoff_s=0.2)
    yield client
    client.close()


def test_an_unknown_expert_is_unavailable_promptly(client: ExpertClient) -> None:
    calls = [
        lambda: client.complete("nobody-here", "def f():", {"max_tokens": 8}),
        lambda: client.chat("nobody-here", [{"role": "user", "content": "hi"}], {}),
        lambda: client.score_candidates("nobody-here", [{"role": "user", "content": "hi"}], "[[", ["A", "B"]),
        lambda: client.model_info("nobody-here"),
        lambda: client.replica("nobody-here"),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(ExpertUnavailable, match="nobody-here"):
            call()
        assert time.monotonic() - started < 3  # 3 attempts, 0.2 s + 0.4 s of backoff


def test_a_registered_expert_that_does_not_answer_is_unavailable_promptly(
    client: ExpertClient, redis_server: str
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = Registry(connect(redis_server), ttl_s=30)
    record = ExpertRecord(name="ghost", instance="g1", endpoint=f"127.0.0.1:{port}", model="m", revision="r",
                          engine="zero-latency-test")  # fmt: skip
    registry.register(record)
    try:
        started = time.monotonic()
        with pytest.raises(ExpertUnavailable, match="ghost"):
            client.complete("ghost", "def f():", {"max_tokens": 8})
        assert time.monotonic() - started < 8
    finally:
        registry.deregister("ghost", "g1")


@FAST
@given(texts, floats32, floats32, st.integers(0, 2**32 - 1))
@example("", 0.0, 1.0, 8)
@example("def f():", -1.0, 1.0, 8)
@example("def f():", 0.5, 0.9, 0)
def test_the_client_returns_a_generation_or_a_request_error_without_retrying(
    client: ExpertClient, healthy_after: None, prompt: str, temperature: float, top_p: float, max_tokens: int
) -> None:
    request = pb.CompleteRequest(
        prompt=prompt, sampling=pb.SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens)
    )
    verdict = _worst(
        "invalid" if not prompt or len(prompt) > MAX_PROMPT_CHARS else "ok", sampling_verdict(request.sampling)
    )
    started = time.monotonic()
    try:
        generation = client.complete(
            NAME, prompt, {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        )
    except ExpertRequestError as exc:
        assert verdict != "ok", exc
        assert "INVALID_ARGUMENT" in str(exc)
        assert time.monotonic() - started < 2  # refused once, not retried with backoff
        return
    assert verdict != "invalid"
    assert generation.finish_reason in ("stop", "length")


def test_the_fixture_server_log_is_clean(expert: tuple[subprocess.Popen[bytes], str]) -> None:
    """No traceback in the server's log after every request above (an escaped exception logs one)."""
    log = Path(expert[0].args[expert[0].args.index("--port-file") + 1]).with_name("expert.log").read_text()
    assert "Traceback" not in log, log[-3000:]
