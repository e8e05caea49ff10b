"""Locked doors: TLS, mutual TLS and a bearer token on the experts' gRPC, and URLs fit to print.

Everything is configured by environment variables, so one environment (a shell, a pod spec, the
local stack) configures servers and callers alike. Certificates, keys and the token are read from
files (mounted Secrets); the token may also be given directly.

Server (warrior-expert):

* ``WARRIOR_GRPC_TLS_CERT`` / ``WARRIOR_GRPC_TLS_KEY``: PEM certificate chain and private key. With
  both, the server speaks only TLS.
* ``WARRIOR_GRPC_TLS_CLIENT_AUTH``: ``none`` (default) or ``require``: mutual TLS, every caller must
  present a certificate signed by ``WARRIOR_GRPC_TLS_CA``.
* ``WARRIOR_GRPC_TOKEN`` or ``WARRIOR_GRPC_TOKEN_FILE``: every call must carry
  ``authorization: Bearer <token>``; any other call is refused with UNAUTHENTICATED.

Callers (workers, the CLI):

* ``WARRIOR_GRPC_TLS_CA``: PEM bundle the experts' certificates are verified against. When set,
  callers use TLS for every expert, whatever its registry record says (no downgrade to plain text).
  Unset, they use TLS (with the system's roots) for experts whose record says ``tls``.
* ``WARRIOR_GRPC_TLS_CLIENT_CERT`` / ``WARRIOR_GRPC_TLS_CLIENT_KEY``: the caller's certificate for
  mutual TLS.
* ``WARRIOR_GRPC_TLS_SERVER_NAME``: the name the experts' certificates are checked against, for
  endpoints reached by an address the certificate does not name (Kubernetes pod IPs).
* ``WARRIOR_GRPC_TOKEN`` / ``WARRIOR_GRPC_TOKEN_FILE``: the token sent on every call.

A token file may hold several tokens, one per line: callers send the first, servers accept any.
The file is read again when it changes (checked at most once a second), so a rotated Secret takes
effect without a restart: add the new token as a second line everywhere, then make it the first,
then remove the old one. A file that turns unreadable or invalid keeps the last good tokens (and
says so in the log). Tokens are never logged, never part of an error message, and compared in
constant time.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

log = logging.getLogger("warrior.security")

ENV_TLS_CERT = "WARRIOR_GRPC_TLS_CERT"
ENV_TLS_KEY = "WARRIOR_GRPC_TLS_KEY"
ENV_TLS_CA = "WARRIOR_GRPC_TLS_CA"
ENV_TLS_CLIENT_AUTH = "WARRIOR_GRPC_TLS_CLIENT_AUTH"
ENV_TLS_CLIENT_CERT = "WARRIOR_GRPC_TLS_CLIENT_CERT"
ENV_TLS_CLIENT_KEY = "WARRIOR_GRPC_TLS_CLIENT_KEY"
ENV_TLS_SERVER_NAME = "WARRIOR_GRPC_TLS_SERVER_NAME"
ENV_TOKEN = "WARRIOR_GRPC_TOKEN"
ENV_TOKEN_FILE = "WARRIOR_GRPC_TOKEN_FILE"
CLIENT_AUTH_MODES = ("none", "require")

_AUTHORIZATION = "authorization"
_REFUSED = "missing or invalid bearer token"
# Printable ASCII without spaces: what an HTTP/2 header value and a Bearer token can hold.
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")


class SecurityConfigError(ValueError):
    """The gRPC security settings are incomplete or unreadable; the message names the variable."""


# -- reading the environment ----------------------------------------------------------------------
def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _read(env: Mapping[str, str], name: str) -> bytes | None:
    """The bytes of the file the variable names; None when the variable is unset or empty."""
    path = _get(env, name)
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SecurityConfigError(f"{name}={path}: cannot read the file ({exc.strerror or exc})") from None
    if not data.strip():
        raise SecurityConfigError(f"{name}={path}: the file is empty")
    return data


def _pem(env: Mapping[str, str], name: str, what: str) -> bytes | None:
    data = _read(env, name)
    if data is not None and (b"-----BEGIN" not in data or what.encode() not in data):
        path = _get(env, name)
        raise SecurityConfigError(f"{name}={path}: not a PEM file holding a {what.lower()}")
    return data


def _pair(env: Mapping[str, str], cert_var: str, key_var: str) -> tuple[bytes, bytes] | None:
    if bool(_get(env, cert_var)) != bool(_get(env, key_var)):
        missing = key_var if _get(env, cert_var) else cert_var
        given = cert_var if missing == key_var else key_var
        raise SecurityConfigError(f"{given} is set but {missing} is not: a certificate needs its private key")
    cert = _pem(env, cert_var, "CERTIFICATE")
    key = _pem(env, key_var, "PRIVATE KEY")
    return (cert, key) if cert is not None and key is not None else None


def read_token(env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token callers send (the first of WARRIOR_GRPC_TOKEN_FILE, or WARRIOR_GRPC_TOKEN); None if neither."""
    source = TokenSource.from_env(env)
    return source.send() if source is not None else None


def _parse_tokens(raw: bytes, source: str) -> tuple[str, ...]:
    """The tokens of a file: one per non-empty line, each printable ASCII without spaces."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise SecurityConfigError(f"{source}: the token must be ASCII") from None
    tokens = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not tokens:
        raise SecurityConfigError(f"{source}: the file is empty")
    for number, token in enumerate(tokens, 1):
        if not _TOKEN_CHARS.match(token):
            # The message names where the token came from, never the token.
            where = source if len(tokens) == 1 else f"{source} line {number}"
            raise SecurityConfigError(f"{where}: the token must be printable ASCII without spaces")
    return tokens


# How often a token file is looked at again for a rotation (seconds).
TOKEN_RECHECK_S = 1.0


class TokenSource:
    """The bearer tokens in force: given directly (WARRIOR_GRPC_TOKEN), or a file (WARRIOR_GRPC_TOKEN_FILE)
    read again whenever it changes. `send()` is the token callers send, `accepted()` all a server takes."""

    def __init__(self, tokens: tuple[str, ...], path: str | None = None) -> None:
        self._tokens = tokens
        self._path = path
        self._signature = self._stat() if path else None
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._complained: object = None

    @classmethod
    def of(cls, token: str | TokenSource | None) -> TokenSource | None:
        if token is None or isinstance(token, TokenSource):
            return token
        return cls(_parse_tokens(token.encode("ascii", "replace"), "the token"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TokenSource | None:
        env = os.environ if env is None else env
        direct = _get(env, ENV_TOKEN)
        from_file = _get(env, ENV_TOKEN_FILE)
        if direct and from_file:
            raise SecurityConfigError(f"both {ENV_TOKEN} and {ENV_TOKEN_FILE} are set: use one")
        if from_file:
            raw = _read(env, ENV_TOKEN_FILE)
            assert raw is not None
            return cls(_parse_tokens(raw, f"{ENV_TOKEN_FILE}={from_file}"), from_file)
        if direct:
            if not _TOKEN_CHARS.match(direct):
                raise SecurityConfigError(f"{ENV_TOKEN}: the token must be printable ASCII without spaces")
            return cls((direct,))
        return None

    def __repr__(self) -> str:
        return f"TokenSource(file={self._path!r}, tokens=***)" if self._path else "TokenSource(tokens=***)"

    def _stat(self) -> object:
        assert self._path is not None
        try:
            info = os.stat(self._path)  # follows the symlink a mounted Secret swaps on update
        except OSError as exc:
            return ("error", exc.errno)
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def accepted(self) -> tuple[str, ...]:
        if self._path is not None and time.monotonic() - self._checked >= TOKEN_RECHECK_S:
            self._reload()
        return self._tokens

    def send(self) -> str:
        return self.accepted()[0]

    def _reload(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked < TOKEN_RECHECK_S:
                return
            self._checked = time.monotonic()
            signature = self._stat()
            if signature == self._signature:
                return
            source = f"{ENV_TOKEN_FILE}={self._path}"
            try:
                with open(str(self._path), "rb") as handle:
                    tokens = _parse_tokens(handle.read(), source)
            except (OSError, SecurityConfigError) as exc:
                if self._complained != signature:
                    detail = exc.strerror if isinstance(exc, OSError) else str(exc)
                    log.warning("%s changed but cannot be used (%s): keeping the tokens read before", source, detail)
                    self._complained = signature
                return
            self._tokens, self._signature = tokens, signature
            log.info("%s changed: %d token(s) in force", source, len(tokens))


# -- the server -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerSecurity:
    """What an expert's gRPC server requires of its callers."""

    cert_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    client_ca: bytes | None = field(default=None, repr=False)  # set: mutual TLS is required
    token: TokenSource | str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", TokenSource.of(self.token))

    @property
    def tls(self) -> bool:
        return self.cert_chain is not None

    @property
    def mutual_tls(self) -> bool:
        return self.client_ca is not None

    @property
    def locked(self) -> bool:
        """Whether plain, anonymous callers are refused (and the kubelet needs the health port)."""
        return self.tls or self.token is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSecurity:
        env = os.environ if env is None else env
        pair = _pair(env, ENV_TLS_CERT, ENV_TLS_KEY)
        mode = _get(env, ENV_TLS_CLIENT_AUTH).lower() or "none"
        if mode not in CLIENT_AUTH_MODES:
            raise SecurityConfigError(f"{ENV_TLS_CLIENT_AUTH}={mode!r} must be one of {', '.join(CLIENT_AUTH_MODES)}")
        client_ca = None
        if mode == "require":
            if pair is None:
                raise SecurityConfigError(
                    f"{ENV_TLS_CLIENT_AUTH}=require needs TLS: set {ENV_TLS_CERT} and {ENV_TLS_KEY}"
                )
            client_ca = _pem(env, ENV_TLS_CA, "CERTIFICATE")
            if client_ca is None:
                raise SecurityConfigError(
                    f"{ENV_TLS_CLIENT_AUTH}=require needs {ENV_TLS_CA}: the CA that signs the callers' certificates"
                )
        return cls(
            cert_chain=pair[0] if pair else None,
            private_key=pair[1] if pair else None,
            client_ca=client_ca,
            token=TokenSource.from_env(env),
        )

    def credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials for `add_secure_port`; None when the server speaks plain text."""
        if self.cert_chain is None or self.private_key is None:
            return None
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [BearerTokenInterceptor(self.token)] if isinstance(self.token, TokenSource) else []

    def describe(self) -> str:
        """For the start-up log line: what is required, never a secret."""
        parts = ["mutual TLS" if self.mutual_tls else "TLS" if self.tls else "plain text"]
        parts.append("bearer token required" if self.token is not None else "no token")
        return ", ".join(parts)


def bearer_matches(values: list[str], token: str | tuple[str, ...]) -> bool:
    """Whether one of the `authorization` values is `Bearer <t>` for one of the tokens (scheme
    case-insensitive, constant time)."""
    expected = [t.encode("ascii") for t in ((token,) if isinstance(token, str) else token)]
    found = False
    for value in values:
        scheme, _, presented = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            continue
        given = presented.strip().encode("utf-8", "replace")
        # Compare every candidate, so the time taken does not depend on which one matched.
        for candidate in expected:
            found |= hmac.compare_digest(given, candidate)
    return found


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every RPC (inference, health, reflection) without `authorization: Bearer <token>`."""

    def __init__(self, token: TokenSource | str) -> None:
        source = TokenSource.of(token)
        assert source is not None
        self._tokens = source

    def __repr__(self) -> str:
        return "BearerTokenInterceptor(token=***)"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = handler_call_details.invocation_metadata or ()
        values = [str(value) for key, value in metadata if key == _AUTHORIZATION]
        handler = await continuation(handler_call_details)
        if bearer_matches(values, self._tokens.accepted()):
            return handler
        method = str(handler_call_details.method)
        return _refusal(handler, method, "no bearer token" if not values else "a wrong bearer token")


def _refusal(handler: grpc.RpcMethodHandler | None, method: str, why: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        log.warning("refused %s from %s: %s", method, context.peer(), why)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSED)

    deserializer = getattr(handler, "request_deserializer", None)
    serializer = getattr(handler, "response_serializer", None)
    request_streaming = bool(getattr(handler, "request_streaming", False))
    response_streaming = bool(getattr(handler, "response_streaming", False))
    if request_streaming and response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, deserializer, serializer)
    if request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, deserializer, serializer)
    if response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, deserializer, serializer)
    return grpc.unary_unary_rpc_method_handler(refuse, deserializer, serializer)


# -- callers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientSecurity:
    """How a caller reaches experts: TLS material, the server name to check, the token to send."""

    ca: bytes | None = field(default=None, repr=False)
    cert_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    token: TokenSource | str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", TokenSource.of(self.token))

    @property
    def tls_required(self) -> bool:
        """A caller that trusts a CA of its own never talks plain text, whatever the registry says."""
        return self.ca is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSecurity:
        env = os.environ if env is None else env
        pair = _pair(env, ENV_TLS_CLIENT_CERT, ENV_TLS_CLIENT_KEY)
        return cls(
            ca=_pem(env, ENV_TLS_CA, "CERTIFICATE"),
            cert_chain=pair[0] if pair else None,
            private_key=pair[1] if pair else None,
            server_name=_get(env, ENV_TLS_SERVER_NAME) or None,
            token=TokenSource.from_env(env),
        )

    def channel(self, endpoint: str, *, tls: bool, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
        """A channel to one expert: TLS when it announces TLS or this caller requires it; the token on every call."""
        options = list(options or [])
        if tls or self.tls_required:
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.ca, private_key=self.private_key, certificate_chain=self.cert_chain
            )
            if isinstance(self.token, TokenSource):
                # Asked on every call, so a rotated token file is followed without a new channel.
                credentials = grpc.composite_channel_credentials(
                    credentials, grpc.metadata_call_credentials(_BearerPlugin(self.token), name="warrior-bearer")
                )
            return grpc.secure_channel(endpoint, credentials, options=options)
        channel = grpc.insecure_channel(endpoint, options=options)
        if not isinstance(self.token, TokenSource):
            return channel
        # gRPC refuses call credentials on plain-text channels; an expert with a token but without
        # TLS (e.g. behind a mesh that encrypts) still gets it, as metadata.
        return grpc.intercept_channel(channel, _TokenMetadata(self.token))


class _TokenMetadata(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    def __repr__(self) -> str:
        return "_TokenMetadata(***)"

    def _details(self, details: Any) -> Any:
        header = (_AUTHORIZATION, f"Bearer {self._tokens.send()}")
        metadata = [m for m in (details.metadata or ()) if m[0] != _AUTHORIZATION] + [header]
        return _CallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


class _BearerPlugin(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    """Call credentials with the token in force at each call."""

    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    def __repr__(self) -> str:
        return "_BearerPlugin(***)"

    def __call__(self, context: Any, callback: Any) -> None:
        callback(((_AUTHORIZATION, f"Bearer {self._tokens.send()}"),), None)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


# -- printing URLs --------------------------------------------------------------------------------
# user:password@ (or a bare secret@) right after any "//", including URLs inside a query string.
_USERINFO = re.compile(r"(?<=//)([^/?#@\s]*)@")
# Query parameters that carry secrets by their name (redis-py's ?password=, S3 style signatures...).
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[^=&#;\s]*(?:pass|secret|token|key|auth|signature|credential)[^=&#;\s]*)=)[^&#;\s]*"
)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group(1).partition(":")
    # With a password, the user name is not secret (an ACL user); without one, the part may be the secret.
    return f"{user}:***@" if colon else "***@"


def redact_url(url: str) -> str:
    """`url` fit for logs and output: passwords in user info and secret-looking query values masked.

    `redis://warrior:s3cret@host:6379/0` -> `redis://warrior:***@host:6379/0`;
    `rediss://host/0?password=x` -> `rediss://host/0?password=***`. Text that is not a URL comes back unchanged.
    """
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(_mask_userinfo, url))
