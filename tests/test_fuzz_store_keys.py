"""Property-based tests of the object-store key validator and JSON reader.

Any input gives the key back or raises InvalidKey; a key it accepts is stored, read, listed and
found by a LocalStore as exactly one file inside the store's directory, never anywhere else.
Any bytes stored under a key read back through get_json as their JSON value or a StoreError
naming the key, never another exception (RecursionError, ValueError).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from warrior.common.store import InvalidKey, LocalStore, StoreError, validate_key

FAST = settings(max_examples=300)

pieces = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["/", "//", ".", "..", "./", "../", ".tmp-", "\\", "\x00", "\x1f", "\x7f", "\x85", "\u2028", "é",
                     "\U0001f600", " ", "~", ":", "%2e%2e", "\ud800", "\udcff", "a" * 255, "é" * 128]),
)  # fmt: skip
keys = st.lists(pieces, max_size=8).map("".join)


def expected_valid(key: str) -> bool:
    """The documented rule, written out independently."""
    if not key or key.startswith("/") or "\\" in key:
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in key):
        return False
    if len(key.encode("utf-8")) > 1024:
        return False
    return all(
        s not in ("", ".", "..") and not s.startswith(".tmp-") and len(s.encode("utf-8")) <= 255 for s in key.split("/")
    )


@FAST
@given(keys)
@example("a/../b")
@example("runs/\ud800")
@example("a/.tmp-x")
@example("a" * 256)
@example("/".join(["a" * 255] * 4) + "/bc")  # 1023 + 3 bytes
def test_validate_key_accepts_exactly_the_documented_keys(key: str) -> None:
    try:
        assert validate_key(key) == key
    except InvalidKey as exc:
        assert isinstance(exc, StoreError) and exc.key == key
        assert not expected_valid(key), key
        return
    assert expected_valid(key), key


@given(st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.lists(st.text(max_size=3), max_size=2)))
def test_anything_but_text_is_an_invalid_key(key: Any) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    return LocalStore(tmp_path_factory.mktemp("fuzz-store") / "root")


@FAST
@given(keys.filter(expected_valid), st.binary(max_size=16))
def test_a_valid_key_is_one_file_inside_the_store(store: LocalStore, key: str, data: bytes) -> None:
    segments = key.split("/")
    # A directory tree cannot hold both "a" and "a/b" (S3 can): the one refusal a valid key may get.
    clash = Path(store.root, *segments).is_dir() or any(
        Path(store.root, *segments[:i]).is_file() for i in range(1, len(segments))
    )
    try:
        store.put(key, data)
    except StoreError as exc:
        assert clash, exc
        return
    assert not clash
    assert store.get(key) == data and store.exists(key)
    assert key in store.list(key) and key in store.list("")
    path = Path(store.root, *key.split("/"))
    assert os.path.realpath(path).startswith(str(store.root) + os.sep)
    assert path.read_bytes() == data


json_pieces = st.one_of(
    st.text(max_size=4),
    st.sampled_from(["[", "]", "{", "}", ",", ":", '"', '"a":', "1", "-0.5e3", "null", "true", "NaN",
                     "\\u", "\\ud800"]),
)  # fmt: skip
json_bytes = st.one_of(st.binary(max_size=32), st.lists(json_pieces, max_size=24).map(lambda p: "".join(p).encode()))


@FAST
@given(json_bytes)
@example(b"[" * 100_000 + b"]" * 100_000)  # RecursionError escaped
@example(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
@example(b"[" * 100_000)
@example(b"1" * 5000)  # ValueError: longer than Python converts an int
@example(b"\xff")
def test_any_stored_bytes_read_back_as_json_or_a_store_error_naming_the_key(store: LocalStore, data: bytes) -> None:
    key = "json/object.json"
    store.put(key, data)
    try:
        expected = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        with pytest.raises(StoreError, match=re.escape(key)):
            store.get_json(key)
        return
    assert json.dumps(store.get_json(key)) == json.dumps(expected)
