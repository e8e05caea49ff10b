"""S3 credentials come only from the environment (or files it names), never from the store URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from warrior.common.store import StoreError, open_store, s3_credentials

SECRET = "sup3rs3cret-" + "9" * 20


@pytest.fixture()
def no_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID_FILE", "AWS_SECRET_ACCESS_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_keys_from_the_environment_or_from_files(no_keys: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_keys.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    no_keys.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    assert s3_credentials() == ("AKIATEST", SECRET)
    (tmp_path / "id").write_text("AKIAFILE\n")
    (tmp_path / "secret").write_text(SECRET + "\n")
    no_keys.delenv("AWS_ACCESS_KEY_ID")
    no_keys.setenv("AWS_ACCESS_KEY_ID_FILE", str(tmp_path / "id"))
    assert s3_credentials() == ("AKIAFILE", SECRET)
    no_keys.delenv("AWS_SECRET_ACCESS_KEY")
    no_keys.setenv("AWS_SECRET_ACCESS_KEY_FILE", str(tmp_path / "secret"))
    assert s3_credentials() == ("AKIAFILE", SECRET)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, ["AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID_FILE)", "AWS_SECRET_ACCESS_KEY (or"]),
        ({"AWS_ACCESS_KEY_ID": "AKIA", "AWS_ACCESS_KEY_ID_FILE": "/x"}, ["both AWS_ACCESS_KEY_ID and", "_FILE"]),
        ({"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY_FILE": "/nonexistent/secret"},
         ["AWS_SECRET_ACCESS_KEY_FILE=/nonexistent/secret", "cannot read"]),
    ],
)  # fmt: skip
def test_missing_or_ambiguous_keys_name_the_variables(
    no_keys: pytest.MonkeyPatch, env: dict[str, str], words: list[str]
) -> None:
    for name, value in env.items():
        no_keys.setenv(name, value)
    with pytest.raises(StoreError) as info:
        open_store("s3://bucket-x/p?endpoint=http://127.0.0.1:9")
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"s3://AKIAXXX:{SECRET}@bucket-x/p?endpoint=http://127.0.0.1:9",
        f"s3://{SECRET}@bucket-x/p?endpoint=http://127.0.0.1:9",
        f"s3://bucket-x/p?endpoint=http://AKIAXXX:{SECRET}@127.0.0.1:9",
        f"file://me:{SECRET}@/var/store",
    ],
)
def test_credentials_in_the_url_are_refused_naming_the_variable(url: str, no_keys: pytest.MonkeyPatch) -> None:
    no_keys.setenv("AWS_ACCESS_KEY_ID", "AKIA")
    no_keys.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert "WARRIOR_STORE_URL" in str(info.value) and "may not carry credentials" in str(info.value)
    assert SECRET not in str(info.value)


def test_refusals_never_echo_query_values(no_keys: pytest.MonkeyPatch) -> None:
    """Unknown or malformed parameters are named, their values are not (they may be keys)."""
    no_keys.setenv("AWS_ACCESS_KEY_ID", "AKIA")
    no_keys.setenv("AWS_SECRET_ACCESS_KEY", "x")
    for url in (
        f"s3://bucket-x/p?endpoint=http://h:1&secret_key={SECRET}",
        f"s3://bucket-x/p?endpoint=http://h:1&sig={SECRET}",
        f"s3://bucket-x/p?endpoint=http://h:1&{SECRET}",
    ):
        with pytest.raises(StoreError) as info:
            open_store(url)
        assert SECRET not in str(info.value), str(info.value)
