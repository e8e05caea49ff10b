"""gRPC security settings, the bearer-token interceptor on a real server, and URL redaction."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from warrior.common import security
from warrior.common.security import (
    ClientSecurity,
    SecurityConfigError,
    ServerSecurity,
    TokenSource,
    bearer_matches,
    read_token,
    redact_url,
)

TOKEN = "tok-" + "0123456789abcdef" * 2


# -- configuration from the environment -------------------------------------------------------------
def test_nothing_configured_is_plain_and_open() -> None:
    server = ServerSecurity.from_env({})
    assert not server.tls and not server.locked and server.credentials() is None and server.interceptors() == []
    client = ClientSecurity.from_env({})
    assert not client.tls_required and client.token is None


def test_server_settings_from_files(test_pki: dict[str, Path], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {
        "WARRIOR_GRPC_TLS_CERT": str(test_pki["server_crt"]),
        "WARRIOR_GRPC_TLS_KEY": str(test_pki["server_key"]),
        "WARRIOR_GRPC_TLS_CA": str(test_pki["ca_crt"]),
        "WARRIOR_GRPC_TLS_CLIENT_AUTH": "require",
        "WARRIOR_GRPC_TOKEN_FILE": str(token_file),
    }
    server = ServerSecurity.from_env(env)
    assert server.tls and server.mutual_tls and server.locked and server.token is not None
    assert server.token.accepted() == (TOKEN,)
    assert server.describe() == "mutual TLS, bearer token required"
    assert server.credentials() is not None and len(server.interceptors()) == 1
    # Nothing secret in reprs.
    assert TOKEN not in repr(server) and b"PRIVATE" not in repr(server).encode()
    assert TOKEN not in repr(server.interceptors()[0])
    # The CA alone (a caller's setting in a shared environment) does not ask clients for certificates.
    assert not ServerSecurity.from_env({k: v for k, v in env.items() if "CLIENT_AUTH" not in k}).mutual_tls


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"WARRIOR_GRPC_TLS_CERT": "{server_crt}"}, ["WARRIOR_GRPC_TLS_CERT", "WARRIOR_GRPC_TLS_KEY"]),
        ({"WARRIOR_GRPC_TLS_KEY": "{server_key}"}, ["WARRIOR_GRPC_TLS_CERT"]),
        ({"WARRIOR_GRPC_TLS_CERT": "/nonexistent/tls.crt", "WARRIOR_GRPC_TLS_KEY": "{server_key}"},
         ["WARRIOR_GRPC_TLS_CERT=/nonexistent/tls.crt", "cannot read"]),
        ({"WARRIOR_GRPC_TLS_CERT": "{server_key}", "WARRIOR_GRPC_TLS_KEY": "{server_key}"},
         ["WARRIOR_GRPC_TLS_CERT", "certificate"]),
        ({"WARRIOR_GRPC_TLS_CERT": "{server_crt}", "WARRIOR_GRPC_TLS_KEY": "{server_crt}"},
         ["WARRIOR_GRPC_TLS_KEY", "private key"]),
        ({"WARRIOR_GRPC_TLS_CLIENT_AUTH": "require"}, ["WARRIOR_GRPC_TLS_CLIENT_AUTH=require needs TLS"]),
        ({"WARRIOR_GRPC_TLS_CERT": "{server_crt}", "WARRIOR_GRPC_TLS_KEY": "{server_key}",
          "WARRIOR_GRPC_TLS_CLIENT_AUTH": "require"}, ["WARRIOR_GRPC_TLS_CA"]),
        ({"WARRIOR_GRPC_TLS_CLIENT_AUTH": "maybe"}, ["WARRIOR_GRPC_TLS_CLIENT_AUTH", "none, require"]),
        ({"WARRIOR_GRPC_TOKEN_FILE": "/nonexistent/token"}, ["WARRIOR_GRPC_TOKEN_FILE=/nonexistent/token"]),
        ({"WARRIOR_GRPC_TOKEN": "a", "WARRIOR_GRPC_TOKEN_FILE": "/x"}, ["WARRIOR_GRPC_TOKEN", "_FILE", "use one"]),
        ({"WARRIOR_GRPC_TOKEN": "two words"}, ["WARRIOR_GRPC_TOKEN", "printable ASCII"]),
    ],
    ids=["cert-without-key", "key-without-cert", "missing-file", "key-as-cert", "cert-as-key", "mtls-without-tls",
         "mtls-without-ca", "bad-mode", "token-file-missing", "token-twice", "token-with-space"],
)  # fmt: skip
def test_server_settings_errors_name_the_variable(
    env: dict[str, str], names: list[str], test_pki: dict[str, Path]
) -> None:
    env = {k: v.format(**{n: str(p) for n, p in test_pki.items()}) for k, v in env.items()}
    with pytest.raises(SecurityConfigError) as info:
        ServerSecurity.from_env(env)
    for name in names:
        assert name in str(info.value)
    assert "two words" not in str(info.value)


def test_client_settings(test_pki: dict[str, Path]) -> None:
    with pytest.raises(SecurityConfigError, match="WARRIOR_GRPC_TLS_CLIENT_KEY"):
        ClientSecurity.from_env({"WARRIOR_GRPC_TLS_CLIENT_CERT": str(test_pki["client_crt"])})
    client = ClientSecurity.from_env(
        {
            "WARRIOR_GRPC_TLS_CA": str(test_pki["ca_crt"]),
            "WARRIOR_GRPC_TLS_CLIENT_CERT": str(test_pki["client_crt"]),
            "WARRIOR_GRPC_TLS_CLIENT_KEY": str(test_pki["client_key"]),
            "WARRIOR_GRPC_TLS_SERVER_NAME": "warrior-expert",
            "WARRIOR_GRPC_TOKEN": TOKEN,
        }
    )
    assert client.tls_required and client.server_name == "warrior-expert"
    assert client.token is not None and client.token.send() == TOKEN
    assert TOKEN not in repr(client)


def test_token_file_is_stripped_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text(f"  {TOKEN}\r\n")
    assert read_token({"WARRIOR_GRPC_TOKEN_FILE": str(path)}) == TOKEN
    path.write_text("\n")
    with pytest.raises(SecurityConfigError, match="empty"):
        read_token({"WARRIOR_GRPC_TOKEN_FILE": str(path)})
    assert read_token({}) is None


def test_a_token_file_may_hold_several_tokens(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text(f"{TOKEN}\n\nnext-{TOKEN}\n")
    source = TokenSource.from_env({"WARRIOR_GRPC_TOKEN_FILE": str(path)})
    assert source is not None and source.accepted() == (TOKEN, f"next-{TOKEN}") and source.send() == TOKEN
    path.write_text(f"{TOKEN}\nnot one\n")
    with pytest.raises(SecurityConfigError, match=r"line 2: the token must be printable") as info:
        TokenSource.from_env({"WARRIOR_GRPC_TOKEN_FILE": str(path)})
    assert TOKEN not in str(info.value)


def test_bearer_matching() -> None:
    assert bearer_matches([f"Bearer {TOKEN}"], TOKEN)
    assert bearer_matches([f"bearer {TOKEN}"], TOKEN)
    assert not bearer_matches([TOKEN], TOKEN)
    assert not bearer_matches([f"Basic {TOKEN}"], TOKEN)
    assert not bearer_matches([f"Bearer {TOKEN}x"], TOKEN)
    assert not bearer_matches(["Bearer ünïcode"], TOKEN)
    assert not bearer_matches([], TOKEN)


# -- a real server --------------------------------------------------------------------------------
class _Server:
    """A grpc.aio server with the health service, on its own event loop thread."""

    def __init__(self, security: ServerSecurity) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(security), self.loop).result(10)

    async def _start(self, security: ServerSecurity) -> int:
        self.server = grpc.aio.server(interceptors=security.interceptors())
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, self.server)
        credentials = security.credentials()
        address = "127.0.0.1:0"
        port: int = (
            self.server.add_secure_port(address, credentials) if credentials else self.server.add_insecure_port(address)
        )
        await self.server.start()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        return port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture()
def serve() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(security: ServerSecurity) -> str:
        servers.append(_Server(security))
        return f"127.0.0.1:{servers[-1].port}"

    yield start
    for server in servers:
        server.stop()


def _check(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _watch(channel: grpc.Channel) -> grpc.StatusCode:
    """A server-streaming call: refused the same way as unary ones."""
    try:
        next(iter(health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=5)))
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_token_is_required_on_every_call(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = serve(ServerSecurity(token=TOKEN))
    with ClientSecurity().channel(endpoint, tls=False) as channel:
        assert _check(channel) == grpc.StatusCode.UNAUTHENTICATED
        assert _watch(channel) == grpc.StatusCode.UNAUTHENTICATED
    with ClientSecurity(token="wrong-" + TOKEN).channel(endpoint, tls=False) as channel:
        assert _check(channel) == grpc.StatusCode.UNAUTHENTICATED
    with ClientSecurity(token=TOKEN).channel(endpoint, tls=False) as channel:
        assert _check(channel) == grpc.StatusCode.OK
        assert _watch(channel) == grpc.StatusCode.OK
    assert "refused /grpc.health.v1.Health/Check" in caplog.text
    assert TOKEN not in caplog.text


def test_a_rotated_token_file_takes_effect_without_a_restart(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(security, "TOKEN_RECHECK_S", 0.0)
    old, new = f"old-{TOKEN}", f"new-{TOKEN}"
    server_file, caller_file = tmp_path / "server-token", tmp_path / "caller-token"

    def write(path: Path, *tokens: str) -> None:
        staged = path.with_suffix(".staged")
        staged.write_text("\n".join(tokens) + "\n")
        os.replace(staged, path)  # as a Secret volume swaps its files

    write(server_file, old)
    write(caller_file, old)
    endpoint = serve(ServerSecurity.from_env({"WARRIOR_GRPC_TOKEN_FILE": str(server_file)}))
    caller = ClientSecurity.from_env({"WARRIOR_GRPC_TOKEN_FILE": str(caller_file)})
    stranger = ClientSecurity(token=new)
    with caller.channel(endpoint, tls=False) as channel, stranger.channel(endpoint, tls=False) as other:
        assert (_check(channel), _check(other)) == (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED)
        write(server_file, new, old)  # 1. every server accepts both
        assert (_check(channel), _check(other)) == (grpc.StatusCode.OK, grpc.StatusCode.OK)
        write(caller_file, new)  # 2. callers send the new one, on the channel they already hold
        assert _check(channel) == grpc.StatusCode.OK
        write(server_file, new)  # 3. the old one is gone
        assert _check(channel) == grpc.StatusCode.OK
        assert _check(ClientSecurity(token=old).channel(endpoint, tls=False)) == grpc.StatusCode.UNAUTHENTICATED
        server_file.write_text("not a token\n")  # a broken update keeps what was in force
        assert _check(channel) == grpc.StatusCode.OK
    assert "cannot be used" in caplog.text
    assert old not in caplog.text and new not in caplog.text


def _tls_server(test_pki: dict[str, Path], *, mutual: bool, token: str | None = TOKEN) -> ServerSecurity:
    return ServerSecurity(
        cert_chain=test_pki["server_crt"].read_bytes(),
        private_key=test_pki["server_key"].read_bytes(),
        client_ca=test_pki["ca_crt"].read_bytes() if mutual else None,
        token=token,
    )


def _client(test_pki: dict[str, Path], cert: str | None = "client", **kwargs: Any) -> ClientSecurity:
    return ClientSecurity(
        ca=test_pki["ca_crt"].read_bytes(),
        cert_chain=test_pki[f"{cert}_crt"].read_bytes() if cert else None,
        private_key=test_pki[f"{cert}_key"].read_bytes() if cert else None,
        **kwargs,
    )


def test_tls_with_token(serve: Any, test_pki: dict[str, Path]) -> None:
    endpoint = serve(_tls_server(test_pki, mutual=False))
    # Plain text to a TLS port: no handshake, UNAVAILABLE.
    with grpc.insecure_channel(endpoint) as channel:
        assert _check(channel) == grpc.StatusCode.UNAVAILABLE
    # TLS without the token.
    with _client(test_pki, cert=None).channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.UNAUTHENTICATED
    # A caller trusting another CA refuses the server.
    other = ClientSecurity(ca=test_pki["other_ca_crt"].read_bytes(), token=TOKEN)
    with other.channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.UNAVAILABLE
    # Reached by a name the certificate does not hold, unless told which name to check.
    localhost_ip = endpoint.replace("127.0.0.1", "localhost")
    with _client(test_pki, cert=None, token=TOKEN).channel(localhost_ip, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.OK
    with _client(test_pki, cert=None, token=TOKEN, server_name="elsewhere").channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.UNAVAILABLE
    with _client(test_pki, cert=None, token=TOKEN, server_name="warrior-expert").channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.OK
    # A caller with a CA uses TLS even when the registry says plain text (no downgrade).
    with _client(test_pki, cert=None, token=TOKEN).channel(endpoint, tls=False) as channel:
        assert _check(channel) == grpc.StatusCode.OK


def test_mutual_tls(serve: Any, test_pki: dict[str, Path]) -> None:
    endpoint = serve(_tls_server(test_pki, mutual=True))
    with _client(test_pki, cert=None, token=TOKEN).channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.UNAVAILABLE  # no client certificate: no handshake
    with _client(test_pki, cert="stranger", token=TOKEN).channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.UNAVAILABLE  # a certificate of another CA
    with _client(test_pki, cert="client").channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.UNAUTHENTICATED  # a good certificate, no token
    with _client(test_pki, cert="client", token=TOKEN).channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.OK


def test_plain_caller_follows_the_registry_record(serve: Any, test_pki: dict[str, Path]) -> None:
    """Without a CA of its own a caller uses TLS (system roots) where the record says so: here those
    roots do not know the test CA, so the handshake fails rather than falling back to plain text."""
    endpoint = serve(_tls_server(test_pki, mutual=False, token=None))
    with ClientSecurity().channel(endpoint, tls=True) as channel:
        assert _check(channel) == grpc.StatusCode.UNAVAILABLE
    with ClientSecurity().channel(endpoint, tls=False) as channel:
        assert _check(channel) == grpc.StatusCode.UNAVAILABLE


# -- URLs fit to print ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://warrior:s3cret@host:6379/0", "redis://warrior:***@host:6379/0"),
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://s3cret@host:6380/1?ssl_cert_reqs=required", "rediss://***@host:6380/1?ssl_cert_reqs=required"),
        ("redis://host:6379/0?password=s3cret&db=1", "redis://host:6379/0?password=***&db=1"),
        ("unix://:s3cret@/var/run/redis.sock", "unix://:***@/var/run/redis.sock"),
        ("s3://b/p?endpoint=http://AK:s3cret@h:9000", "s3://b/p?endpoint=http://AK:***@h:9000"),
        ("s3://b/p?endpoint=http://h:9000&region=r", "s3://b/p?endpoint=http://h:9000&region=r"),
        ("unix:///home/me/.warrior/redis.sock", "unix:///home/me/.warrior/redis.sock"),
        ("file:///data/store", "file:///data/store"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)
    assert redact_url(redact_url(url)) == redact_url(url)
