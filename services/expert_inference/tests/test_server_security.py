"""A real warrior-expert (zero-latency-test engine) behind mutual TLS and a bearer token, with the
plain-text health port for probes; secrets never in its logs or errors."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from warrior.common.security import ClientSecurity
from warrior.expert_inference.engine import EngineUnavailable
from warrior.expert_inference.openai_engine import _check, _normalise_base_url
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.stack

TOKEN = "tok-" + secrets.token_hex(16)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tls_env(pki: dict[str, Path], token_file: Path) -> dict[str, str]:
    return {
        "WARRIOR_GRPC_TLS_CERT": str(pki["server_crt"]),
        "WARRIOR_GRPC_TLS_KEY": str(pki["server_key"]),
        "WARRIOR_GRPC_TLS_CA": str(pki["ca_crt"]),
        "WARRIOR_GRPC_TLS_CLIENT_AUTH": "require",
        "WARRIOR_GRPC_TOKEN_FILE": str(token_file),
    }


@pytest.fixture()
def locked_expert(test_pki: dict[str, Path], tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(endpoint, health endpoint, log file) of a running expert requiring mTLS and the token."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port_file = tmp_path / "endpoint"
    log_path = tmp_path / "expert.log"
    health_port = _free_port()
    env = os.environ | _tls_env(test_pki, token_file)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrior.expert_inference.server", "--name", "locked", "--engine",
             "zero-latency-test", "--no-register", "--port-file", str(port_file), "--health-port", str(health_port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the expert did not start"
            time.sleep(0.05)
        yield port_file.read_text(), f"127.0.0.1:{health_port}", log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _client(pki: dict[str, Path], *, cert: str | None = "client", token: str | None = TOKEN) -> ClientSecurity:
    return ClientSecurity(
        ca=pki["ca_crt"].read_bytes(),
        cert_chain=pki[f"{cert}_crt"].read_bytes() if cert else None,
        private_key=pki[f"{cert}_key"].read_bytes() if cert else None,
        token=token,
    )


def _code(call: object) -> grpc.StatusCode:
    try:
        if callable(call):
            call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _calls(channel: grpc.Channel) -> dict[str, object]:
    stub = pb_grpc.ExpertInferenceServiceStub(channel)
    request = pb.CompleteRequest(prompt="def f():", sampling=pb.SamplingParams(max_tokens=8))

    def reflect() -> None:
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        next(iter(stream))

    return {
        "Complete": lambda: stub.Complete(request, timeout=5),
        "GetModelInfo": lambda: stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5),
        "Health": lambda: health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5),
        "Reflection": reflect,
    }


def test_locked_expert_refuses_whoever_lacks_a_key(
    locked_expert: tuple[str, str, Path], test_pki: dict[str, Path]
) -> None:
    endpoint, health_endpoint, log_path = locked_expert
    refused = {
        "plain text": (grpc.insecure_channel(endpoint), grpc.StatusCode.UNAVAILABLE),
        "no client certificate": (
            _client(test_pki, cert=None).channel(endpoint, tls=True),
            grpc.StatusCode.UNAVAILABLE,
        ),
        "a stranger's certificate": (
            _client(test_pki, cert="stranger").channel(endpoint, tls=True),
            grpc.StatusCode.UNAVAILABLE,
        ),
        "no token": (_client(test_pki, token=None).channel(endpoint, tls=True), grpc.StatusCode.UNAUTHENTICATED),
        "a wrong token": (
            _client(test_pki, token=TOKEN[:-1] + "x").channel(endpoint, tls=True),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
    }
    for what, (channel, expected) in refused.items():
        with channel:
            for name, call in _calls(channel).items():
                assert _code(call) == expected, f"{name} with {what}"
    with _client(test_pki).channel(endpoint, tls=True) as channel:
        stub = pb_grpc.ExpertInferenceServiceStub(channel)
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5).name == "locked"
        for name, call in _calls(channel).items():
            assert _code(call) == grpc.StatusCode.OK, name
    # The probes' port: health checks only, plain text, no token.
    with grpc.insecure_channel(health_endpoint) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        calls = _calls(channel)
        assert _code(calls["Complete"]) == grpc.StatusCode.UNIMPLEMENTED
        assert _code(calls["Reflection"]) == grpc.StatusCode.UNIMPLEMENTED
    log = log_path.read_text()
    assert "mutual TLS, bearer token required" in log and "plain-text health checks on port" in log
    assert "refused /warrior.v1.ExpertInferenceService/Complete" in log
    assert TOKEN not in log


def test_bad_settings_stop_the_server_before_the_model_loads(test_pki: dict[str, Path], tmp_path: Path) -> None:
    env = os.environ | {
        "WARRIOR_GRPC_TLS_CERT": str(test_pki["server_crt"]),
        "WARRIOR_GRPC_TLS_KEY": str(tmp_path / "missing.key"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "warrior.expert_inference.server", "--name", "x", "--model", str(tmp_path / "no.gguf")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"WARRIOR_GRPC_TLS_KEY={tmp_path / 'missing.key'}: cannot read the file" in result.stderr
    assert "no.gguf" not in result.stderr


def test_openai_engine_keeps_its_key_out_of_errors() -> None:
    key = "sk-" + secrets.token_hex(12)
    echoed = httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {key}"}})
    with pytest.raises(EngineUnavailable) as info:
        _check(echoed, "http://llm:8000", key)
    assert key not in str(info.value) and "***" in str(info.value)
    with pytest.raises(ValueError, match="may not carry credentials") as refused:
        _normalise_base_url(f"http://user:{key}@llm:8000/v1")
    assert key not in str(refused.value)
