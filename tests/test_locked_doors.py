"""Locked doors, end to end: the real local stack (gRPC experts on the zero-latency test engine, Celery
workers, the CLI) against a Redis that needs a password (an ACL user) and an S3 store (moto on
loopback) whose keys come from files, with mutual TLS and a bearer token on every gRPC call.

Callers without the token, over plain text or without a client certificate are refused; with every
key the campaign runs to a dataset. Then every log, printed output, status and summary JSON, state
file and stored object (dataset card included) is searched for the test credentials, which must
appear nowhere. The services log JSON lines (as in the chart): each a JSON object, a task's lines
carrying its campaign, instruction and task ids.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
import yaml

from warrior.common.registry import Registry
from warrior.common.security import ClientSecurity
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.stack

CAMPAIGN = "locked-doors"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def secrets_env(
    tmp_path: Path, test_pki: dict[str, Path], password_redis: dict[str, str], moto_endpoint: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(environment of every process, the credentials in it by name)."""
    creds = {
        "grpc token": "tok-" + secrets.token_hex(20),
        "redis password": password_redis["password"],
        "s3 access key": "AKIA" + secrets.token_hex(8).upper(),
        "s3 secret key": "s3s-" + secrets.token_hex(20),
    }
    for name in ("server_key", "client_key"):
        # The middle line of each private key's PEM body.
        lines = test_pki[name].read_text().splitlines()
        creds[name.replace("_", " ")] = lines[len(lines) // 2]
    files = tmp_path / "secrets"
    files.mkdir()
    for name, value in (("token", creds["grpc token"]), ("aws-id", creds["s3 access key"]),
                        ("aws-secret", creds["s3 secret key"])):  # fmt: skip
        (files / name).write_text(value + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "WARRIOR_GRPC_", "AWS_"))}
    env |= {
        "WARRIOR_HOME": str(tmp_path / "home"),
        "WARRIOR_REGISTRY_TTL_S": "3",
        "REDIS_URL": password_redis["url"],
        "WARRIOR_STORE_URL": f"s3://locked/arena?endpoint={moto_endpoint}",
        "AWS_ACCESS_KEY_ID_FILE": str(files / "aws-id"),
        "AWS_SECRET_ACCESS_KEY_FILE": str(files / "aws-secret"),
        "WARRIOR_GRPC_TLS_CERT": str(test_pki["server_crt"]),
        "WARRIOR_GRPC_TLS_KEY": str(test_pki["server_key"]),
        "WARRIOR_GRPC_TLS_CA": str(test_pki["ca_crt"]),
        "WARRIOR_GRPC_TLS_CLIENT_AUTH": "require",
        "WARRIOR_GRPC_TLS_CLIENT_CERT": str(test_pki["client_crt"]),
        "WARRIOR_GRPC_TLS_CLIENT_KEY": str(test_pki["client_key"]),
        "WARRIOR_GRPC_TOKEN_FILE": str(files / "token"),
        "PYTHONUNBUFFERED": "1",
        "WARRIOR_LOG_FORMAT": "json",
    }
    redis.Redis.from_url(password_redis["url"]).flushdb()
    return env, creds


def _warrior(env: dict[str, str], outputs: list[str], *args: str, timeout: float = 180) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    outputs += [result.stdout, result.stderr]
    assert result.returncode == 0, f"warrior {' '.join(args)}: {result.stderr[-3000:]}"
    return result.stdout


def _code(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        pb_grpc.ExpertInferenceServiceStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _check_the_doors(env: dict[str, str], password_redis: dict[str, str], pki: dict[str, Path]) -> None:
    host, port = password_redis["host"], password_redis["port"]
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
        redis.Redis.from_url(f"redis://{host}:{port}/0").ping()
    replicas = Registry(redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)).resolve("alpha")
    assert replicas and all(r.tls for r in replicas), "the expert announces TLS"
    endpoint = replicas[0].endpoint
    ca = pki["ca_crt"].read_bytes()
    cert, key = pki["client_crt"].read_bytes(), pki["client_key"].read_bytes()
    token = Path(env["WARRIOR_GRPC_TOKEN_FILE"]).read_text().strip()
    cases = {
        "no token": (ClientSecurity(ca=ca, cert_chain=cert, private_key=key), grpc.StatusCode.UNAUTHENTICATED),
        "plain text": (None, grpc.StatusCode.UNAVAILABLE),
        "no client certificate": (ClientSecurity(ca=ca, token=token), grpc.StatusCode.UNAVAILABLE),
        "every key": (ClientSecurity(ca=ca, cert_chain=cert, private_key=key, token=token), grpc.StatusCode.OK),
    }
    for what, (security, expected) in cases.items():
        channel = security.channel(endpoint, tls=True) if security else grpc.insecure_channel(endpoint)
        with channel:
            assert _code(channel) == expected, what


def _stored_objects(env: dict[str, str]) -> dict[str, bytes]:
    """Every object of the test's S3 store, read with the same environment as the services."""
    from warrior.common.store import open_store

    saved = dict(os.environ)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID_FILE", "AWS_SECRET_ACCESS_KEY_FILE")})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(name, None)
    try:
        store = open_store(env["WARRIOR_STORE_URL"])
        return {key: store.get(key) for key in store.list("")}
    finally:
        os.environ.clear()
        os.environ.update(saved)


# A line of the text format: what no service may write once WARRIOR_LOG_FORMAT=json.
_TEXT_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def _log_records(logs: dict[str, str]) -> list[dict[str, Any]]:
    """Every JSON log line of the services' log files (Celery's start-up banner aside, nothing else is logged)."""
    records = []
    for name, text in logs.items():
        lines = text.splitlines()
        assert not [line for line in lines if _TEXT_LOG_LINE.match(line)], f"{name}: a log line that is not JSON"
        found = [json.loads(line) for line in lines if line.startswith("{")]
        assert found, f"{name}: no JSON log line"
        for record in found:
            assert {"time", "level", "service", "logger", "message"} <= record.keys(), record
        records += found
    return records


def test_locked_stack_runs_a_campaign_and_never_shows_a_secret(
    secrets_env: tuple[dict[str, str], dict[str, str]],
    password_redis: dict[str, str],
    test_pki: dict[str, Path],
    tmp_path: Path,
) -> None:
    env, creds = secrets_env
    config: dict[str, Any] = {
        "campaign": CAMPAIGN,
        "experts": [{"name": "alpha", "engine": "zero-latency-test"}, {"name": "beta", "engine": "zero-latency-test"}],
        "mining": {"per_expert": 2},
        "screening": {"rating": {"min_score": 1.0}, "decontamination": {"embedding": {"enabled": False}}},
        "scoring": {"bootstrap_rounds": 10},
        "dataset": {"name": CAMPAIGN},
    }
    config_path = tmp_path / "campaign.yaml"
    config_path.write_text(yaml.safe_dump(config))
    outputs: list[str] = []
    state_files: list[str] = []
    home = Path(env["WARRIOR_HOME"])
    try:
        _warrior(env, outputs, "up", "--config", str(config_path), "--timeout", "60")
        assert "stack up: redis redis://warrior:***@" in outputs[-1]
        state_files.append((home / "stack.json").read_text())
        _check_the_doors(env, password_redis, test_pki)

        snap = json.loads(_warrior(env, outputs, "campaign", "start", "--config", str(config_path), "--wait",
                                   "--json", "--timeout", "120"))  # fmt: skip
        assert snap["done"] is True and snap["failures"] == {}, snap
        assert snap["instructions"]["kept"] > 0
        _warrior(env, outputs, "status", "--json")
        experts = json.loads(_warrior(env, outputs, "experts", "--json"))
        assert {row["expert"]: row["tls"] for row in experts} == {"alpha": True, "beta": True}
        built = json.loads(_warrior(env, outputs, "dataset", "build", "--json"))
        assert built["rows"] == snap["instructions"]["kept"]
        _warrior(env, outputs, "dataset", "export", CAMPAIGN, str(tmp_path / "export"))
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "warrior.cli.main", "down"], env=env, capture_output=True, text=True, timeout=60
        )
        outputs += [down.stdout, down.stderr]

    objects = _stored_objects(env)
    card = next(data for key, data in objects.items() if key.endswith("/card.md"))
    assert b"alpha" in card
    searched: dict[str, str] = {f"output {i}": text for i, text in enumerate(outputs)}
    searched |= {f"state {i}": text for i, text in enumerate(state_files)}
    searched |= {f"store {key}": data.decode("utf-8", "replace") for key, data in objects.items()}
    for folder in (home, tmp_path / "export"):
        searched |= {str(p): p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()}
    logs = [name for name in searched if name.endswith(".log") and not name.endswith("redis.log")]
    assert len(logs) >= 6, logs  # two experts and four workers
    records = _log_records({name: searched[name] for name in logs})
    assert {"expert", "instruction_miner", "judge", "scorer", "dataset_builder", "executor", "controller"} <= {
        r["service"] for r in records
    }
    assert any(r["service"] == "expert" and "mutual TLS, bearer token required" in r["message"] for r in records)
    mining = f"mine-{CAMPAIGN}-"  # a mining batch's task id: stage, campaign, hash of its units
    mined = [r for r in records if r["service"] == "instruction_miner" and str(r.get("task")).startswith(mining)]
    assert mined and all(r["campaign"] == CAMPAIGN for r in mined), mined
    battled = [r for r in records if r["service"] == "judge" and r.get("instruction")]
    assert battled and all(r["campaign"] == CAMPAIGN and r["task"] for r in battled)
    leaks = [f"{what} in {where}" for where, text in searched.items() for what, value in creds.items() if value in text]
    assert not leaks, leaks
