"""Process settings read from the environment: where Redis and the object store are."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

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
        )


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


def celery_broker_url(redis_url: str) -> str:
    """The same Redis as a kombu URL: kombu spells unix sockets `redis+socket://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url
