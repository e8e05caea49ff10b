"""Redis behind a password / ACL user: refused without it, used through REDIS_URL (or REDIS_PASSWORD_FILE)
by redis-py, the registry and Celery alike, and never printed."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from kombu.exceptions import OperationalError

from warrior.common import queues
from warrior.common.celery_app import make_celery
from warrior.common.redis_client import connect
from warrior.common.registry import ExpertRecord, Registry
from warrior.common.security import redact_url
from warrior.common.settings import Settings, celery_broker_url, redis_url_with_password


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("REDIS_URL", "REDIS_PASSWORD", "REDIS_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WARRIOR_HOME", str(tmp_path / "home"))
    return monkeypatch


def test_clients_without_the_password_are_refused(password_redis: dict[str, str]) -> None:
    host, port = password_redis["host"], password_redis["port"]
    for url in (
        f"redis://{host}:{port}/0",
        f"redis://warrior:wrong@{host}:{port}/0",
        f"redis://:wrong@{host}:{port}/0",
    ):
        with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
            connect(url).ping()
    assert connect(password_redis["url"]).ping()


def test_registry_and_celery_work_through_a_url_with_credentials(
    password_redis: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("REDIS_URL", password_redis["url"])
    settings = Settings.from_env()
    assert settings.redis_url == password_redis["url"]
    assert password_redis["password"] not in repr(settings)
    client = connect(settings.redis_url)
    client.delete("warrior:experts")
    registry = Registry(client, ttl_s=10)
    registry.register(ExpertRecord(name="a", instance="1", endpoint="h:1", model="m", revision="r", engine="e"))
    assert [r.name for r in registry.replicas()] == ["a"]

    queue_lists = [queues.MINE, f"{queues.MINE}\x06\x165"]
    client.delete(*queue_lists)
    app = make_celery("auth-test", settings)
    try:
        app.send_task(queues.TASK_MINE, args=["c", "e", 0])
        assert sum(int(client.llen(name)) for name in queue_lists) == 1
    finally:
        app.close()
    # The same broker without the password, or with a wrong one, is refused.
    host, port = password_redis["host"], password_redis["port"]
    for url in (f"redis://{host}:{port}/0", redact_url(settings.redis_url)):
        anonymous = make_celery("auth-test", Settings(**{**settings.__dict__, "redis_url": url}))
        try:
            with pytest.raises(OperationalError, match="Authentication required|invalid username-password") as info:
                anonymous.connection_for_write().ensure_connection(max_retries=1, interval_start=0)
            assert password_redis["password"] not in str(info.value)
        finally:
            anonymous.close()
    client.delete(*queue_lists)


def test_password_from_a_file_joins_the_acl_user(
    password_redis: dict[str, str], clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """REDIS_PASSWORD_FILE (a mounted Secret) completes a URL naming only the user; any character goes."""
    admin = connect(password_redis["url"])
    odd = "p@ss:w/rd%?#&" + os.urandom(4).hex()
    admin.execute_command("ACL", "SETUSER", "odd", "on", f">{odd}", "~*", "&*", "+@all")
    secret = tmp_path / "redis-password"
    secret.write_text(odd + "\n")
    clean_env.setenv("REDIS_URL", f"redis://odd@{password_redis['host']}:{password_redis['port']}/0")
    clean_env.setenv("REDIS_PASSWORD_FILE", str(secret))
    settings = Settings.from_env()
    assert connect(settings.redis_url).ping()
    assert odd not in repr(settings) and quote(odd, safe="") not in repr(settings)
    assert odd not in redact_url(settings.redis_url) and quote(odd, safe="") not in redact_url(settings.redis_url)
    # Celery reads the same URL.
    app = make_celery("auth-test", settings)
    try:
        app.connection_for_write().ensure_connection(max_retries=1)
    finally:
        app.close()


def test_password_variables(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("REDIS_PASSWORD", "x y")
    assert redis_url_with_password("redis://h:1/0") == "redis://:x%20y@h:1/0"
    assert redis_url_with_password("rediss://me@h:1/0?ssl_cert_reqs=required") == (
        "rediss://me:x%20y@h:1/0?ssl_cert_reqs=required"
    )
    assert redis_url_with_password("unix:///run/redis.sock") == "unix://:x%20y@/run/redis.sock"
    assert celery_broker_url("unix://:x%20y@/run/redis.sock") == "redis+socket://:x%20y@/run/redis.sock"
    assert redis_url_with_password("redis://:x%20y@h:1/0") == "redis://:x%20y@h:1/0"  # the same password: fine
    with pytest.raises(ValueError, match="carries a password other than") as info:
        redis_url_with_password("redis://:other@h:1/0")
    assert "other" not in str(info.value).replace("other than", "")
    clean_env.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="both REDIS_PASSWORD and REDIS_PASSWORD_FILE"):
        redis_url_with_password("redis://h:1/0")
    clean_env.delenv("REDIS_PASSWORD")
    with pytest.raises(ValueError, match="REDIS_PASSWORD_FILE=.*absent"):
        redis_url_with_password("redis://h:1/0")
