"""Process settings read from the environment: where Redis and the object store are."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

from warrior.common.security import redact_url

DEFAULT_HOME = ".warrior"


class SettingsError(ValueError):
    """An environment variable (or the file it names) holds an unusable value; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Where this process finds the shared infrastructure.

    Every service reads the same variables, so one exported environment points a whole stack
    at one Redis and one object store.
    """

    redis_url: str
    store_url: str
    home: Path
    cache_dir: Path  # content-addressed derived data (benchmark embeddings, fetched data) shared by homes
    registry_ttl_s: float
    grpc_deadline_s: float
    in_flight_per_expert: int
    # Where battles run answers against tests: "queue" sends them to the executor service (the
    # default, and the only choice where untrusted code must not run in the judge's pod); "local"
    # runs them in this process's sandbox (a single-process set-up, the tests).
    executor: str = "queue"

    def __repr__(self) -> str:
        # A Redis URL may carry a password: settings are printed with it masked.
        return (
            f"Settings(redis_url={redact_url(self.redis_url)!r}, store_url={redact_url(self.store_url)!r}, "
            f"home={str(self.home)!r})"
        )

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("WARRIOR_HOME", DEFAULT_HOME)).absolute()
        given = os.environ.get("REDIS_URL")
        # A password variable completes a given REDIS_URL; the embedded Redis of `warrior up` has none.
        redis_url = redis_url_with_password(given) if given else f"unix://{home / 'redis.sock'}"
        redis_url = redis_url_with_tls(redis_url)
        store_url = os.environ.get("WARRIOR_STORE_URL") or f"file://{home / 'store'}"
        return cls(
            redis_url=redis_url,
            store_url=store_url,
            home=home,
            cache_dir=Path(
                os.environ.get("WARRIOR_CACHE_DIR")
                or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "warrior"
            ).absolute(),
            registry_ttl_s=_positive_float("WARRIOR_REGISTRY_TTL_S", 15.0),
            grpc_deadline_s=_positive_float("WARRIOR_GRPC_DEADLINE_S", 300.0),
            # 0: twice the capacity the expert's replicas announce.
            in_flight_per_expert=_non_negative_int("WARRIOR_INFLIGHT_PER_EXPERT", 0),
            executor=_choice("WARRIOR_EXECUTOR", ("queue", "local"), "queue"),
        )


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw not in allowed:
        raise SettingsError(f"environment variable {name}={raw!r} must be one of {', '.join(allowed)}")
    return raw


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"environment variable {name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"environment variable {name}={raw!r} must be positive")
    return value


def _non_negative_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise SettingsError(f"environment variable {name}={raw!r} must be a whole number >= 0")
    return int(raw)


def _redis_password() -> str | None:
    """REDIS_PASSWORD, or the content of the file REDIS_PASSWORD_FILE names (a mounted Secret)."""
    direct = os.environ.get("REDIS_PASSWORD", "")
    path = os.environ.get("REDIS_PASSWORD_FILE", "").strip()
    if direct and path:
        raise SettingsError("both REDIS_PASSWORD and REDIS_PASSWORD_FILE are set: use one")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                direct = handle.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"REDIS_PASSWORD_FILE={path}: cannot read the file ({exc})") from None
        if not direct:
            raise SettingsError(f"REDIS_PASSWORD_FILE={path}: the file is empty")
    return direct or None


def redis_url_with_password(url: str) -> str:
    """REDIS_URL with the password of REDIS_PASSWORD / REDIS_PASSWORD_FILE put in (percent-encoded).

    The password may then hold any character, and never has to be written into REDIS_URL itself.
    An ACL user stays in the URL (`redis://warrior@host:6379/0`); a URL that already carries a
    password and a password variable at the same time is ambiguous and refused.
    """
    password = _redis_password()
    if password is None:
        return url
    parts = urlsplit(url)
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    if not at:
        userinfo, hostinfo = "", parts.netloc
    user, colon, existing = userinfo.partition(":")
    if colon and existing:
        if unquote(existing) == password:
            return url
        raise SettingsError(
            f"REDIS_URL={redact_url(url)} carries a password other than REDIS_PASSWORD(_FILE)'s: give it once"
        )
    netloc = f"{user}:{quote(password, safe='')}@{hostinfo}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# The spellings of ssl_cert_reqs that Celery and kombu accept; redis-py accepts only the lower-case words.
_CERT_REQS = {spelling: word for word in ("none", "optional", "required") for spelling in (word, f"cert_{word}")}


def redis_url_with_tls(url: str) -> str:
    """REDIS_URL completed so that redis-py, kombu (the broker) and Celery's result backend verify a TLS
    Redis alike; REDIS_TLS_CA_FILE (a CA bundle in PEM, e.g. a mounted Secret's ca.crt) becomes its
    `ssl_ca_certs`, for a Redis whose certificate a private CA signed (else the system's CAs verify it).

    A `rediss://` URL gets `ssl_cert_reqs=required` where it names none (see `_tls_query`). Any other URL
    comes back unchanged, unless REDIS_TLS_CA_FILE is set: that asks for TLS, so it is refused.
    """
    path = os.environ.get("REDIS_TLS_CA_FILE", "").strip()
    if not path:
        return _tls_query(url, None)
    ca_file = str(Path(path).absolute())
    if not url.startswith("rediss://"):
        raise SettingsError(
            f"REDIS_TLS_CA_FILE={path} is set but REDIS_URL={redact_url(url)} is not a rediss:// (TLS) URL"
        )
    if "%" in ca_file:  # Celery's result backend percent-decodes ssl_* values twice
        raise SettingsError(f"REDIS_TLS_CA_FILE={path}: a path with '%' in it is not supported")
    try:
        with open(ca_file, encoding="ascii", errors="replace") as handle:
            pem = handle.read()
    except OSError as exc:
        raise SettingsError(f"REDIS_TLS_CA_FILE={path}: cannot read the file ({exc})") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise SettingsError(f"REDIS_TLS_CA_FILE={path}: no PEM certificate in the file")
    return _tls_query(url, ca_file)


def _tls_query(url: str, ca_file: str | None) -> str:
    """A `rediss://` URL with the query every client reads the same way: certificate verification on
    unless the URL turns it off (`ssl_cert_reqs=required` added where absent: without it kombu silently
    connects without verifying anything and Celery's result backend refuses the URL), `ssl_cert_reqs`
    spelled as redis-py accepts it (`CERT_REQUIRED` -> `required`), and `ssl_ca_certs=ca_file` when given."""
    if not url.startswith("rediss://"):
        return url
    parts = urlsplit(url)
    pairs = [pair.partition("=") for pair in parts.query.split("&") if pair]
    names = [unquote_plus(name) for name, _, _ in pairs]
    for name in ("ssl_cert_reqs", "ssl_ca_certs"):
        if names.count(name) > 1:
            raise SettingsError(f"REDIS_URL={redact_url(url)} gives {name} more than once")
    query = []
    for (raw, sep, value), name in zip(pairs, names, strict=True):
        if name == "ssl_cert_reqs":
            word = _CERT_REQS.get(unquote_plus(value).lower())
            if word is None:
                raise SettingsError(f"REDIS_URL={redact_url(url)}: ssl_cert_reqs must be required, optional or none")
            sep, value = "=", word
        elif name == "ssl_ca_certs" and ca_file is not None and unquote_plus(value) != ca_file:
            raise SettingsError(
                f"REDIS_URL={redact_url(url)} names a CA file other than REDIS_TLS_CA_FILE={ca_file}: give it once"
            )
        query.append(f"{raw}{sep}{value}")
    if "ssl_cert_reqs" not in names:
        query.append("ssl_cert_reqs=required")
    if ca_file is not None and "ssl_ca_certs" not in names:
        query.append(f"ssl_ca_certs={quote(ca_file, safe='/')}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(query), parts.fragment))


def celery_broker_url(redis_url: str) -> str:
    """The same Redis as a kombu URL: kombu spells unix sockets `redis+socket://`, and a `rediss://` URL
    always states `ssl_cert_reqs` (kombu would not verify the server's certificate without it)."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return _tls_query(redis_url, None)
