"""Behaviour tests of the object store, run against both backends.

The S3 backend talks to moto's server mode on loopback, through the real MinIO
client and real HTTP, so header handling (If-None-Match) is exercised end to end.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3
from minio import Minio
from moto.server import ThreadedMotoServer

from warrior.common.store import (
    InvalidKey,
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    S3Store,
    StoreError,
    open_store,
)

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-do-not-leak"
REGION = "us-east-1"

INVALID_KEYS = [
    "",
    "/abs",
    "trailing/",
    "a//b",
    "../escape",
    "a/../b",
    "a/./b",
    ".",
    "..",
    "a\\b",
    "nul\x00byte",
    "new\nline",
    ".tmp-reserved",
    "a/.tmp-x/b",
    "x" * 256,
    "a/" * 600 + "b",
]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback for the whole session, as http://host:port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _s3_store(endpoint: str, prefix: str = "") -> S3Store:
    # A fresh bucket per test keeps tests independent on the shared server.
    return S3Store(
        endpoint=endpoint,
        bucket=f"test-{uuid.uuid4().hex[:16]}",
        prefix=prefix,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        region=REGION,
    )


@pytest.fixture(name="store", params=["local", "s3", "s3-prefixed"])
def store_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each behaviour test runs against every backend."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint: str = request.getfixturevalue("moto_endpoint")
    return _s3_store(endpoint, prefix="runs/v1" if request.param == "s3-prefixed" else "")


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


# --- behaviour shared by both backends ---------------------------------------


def test_store_satisfies_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_put_get_round_trip(store: ObjectStore) -> None:
    payload = bytes(range(256)) * 3
    assert store.put("a/b/c.bin", payload) is True
    assert store.get("a/b/c.bin") == payload
    assert store.exists("a/b/c.bin")

    # A plain put overwrites.
    assert store.put("a/b/c.bin", b"second") is True
    assert store.get("a/b/c.bin") == b"second"

    assert store.put("empty", b"") is True
    assert store.get("empty") == b""
    assert store.put("unicodé/ключ 1.txt", b"x") is True
    assert store.get("unicodé/ключ 1.txt") == b"x"


def test_get_missing_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.get("no/such/key.json")
    assert info.value.key == "no/such/key.json"
    assert "no/such/key.json" in str(info.value)
    assert isinstance(info.value, StoreError)
    assert not store.exists("no/such/key.json")


def test_intermediate_folder_is_not_an_object(store: ObjectStore) -> None:
    store.put("dir/child", b"x")
    assert not store.exists("dir")
    with pytest.raises(ObjectNotFound):
        store.get("dir")


def test_if_absent_on_existing_key_keeps_original(store: ObjectStore) -> None:
    assert store.put("claims/job-1", b"original", if_absent=True) is True
    assert store.put("claims/job-1", b"usurper", if_absent=True) is False
    assert store.get("claims/job-1") == b"original"
    assert store.list("claims/") == ["claims/job-1"]


def test_list_prefix_is_sorted_and_filtered(store: ObjectStore) -> None:
    keys = [
        "runs/b/2",
        "runs/a/1",
        "runs/ab",
        "runs/a/0",
        "other/a/1",
        "runsx/1",
        "top",
    ]
    for key in keys:
        store.put(key, key.encode())

    assert store.list("runs/") == ["runs/a/0", "runs/a/1", "runs/ab", "runs/b/2"]
    # A plain string prefix: a partial last segment matches across "folders".
    assert store.list("runs/a") == ["runs/a/0", "runs/a/1", "runs/ab"]
    assert store.list("runs") == [
        "runs/a/0",
        "runs/a/1",
        "runs/ab",
        "runs/b/2",
        "runsx/1",
    ]
    assert store.list("") == sorted(keys)
    assert store.list("runs/a/1") == ["runs/a/1"]
    assert store.list("nothing/") == []
    assert store.list("runs/zzz/") == []


def test_list_page_walks_a_prefix_in_pages(store: ObjectStore) -> None:
    """Pages of list(): the last key of one page starts the next, in the same order, across "folders"."""
    keys = ["runs/a-b", "runs/a/0", "runs/a/1", "runs/a/sub/x", "runs/ab", "runs/b/2", "runsx/1", "top", "b.json"]
    for key in keys:
        store.put(key, b"x")
    # "runs/a-b" sorts before the keys under "runs/a/" ('-' < '/'): the walk follows key order, not folder order.
    expected = store.list("runs/")
    assert expected == ["runs/a-b", "runs/a/0", "runs/a/1", "runs/a/sub/x", "runs/ab", "runs/b/2"]
    for size in (1, 2, 4, 100):
        pages, after = [], ""
        while True:
            page = store.list_page("runs/", start_after=after, limit=size)
            assert len(page) <= size
            if not page:
                break
            pages.append(page)
            after = page[-1]
        assert [k for page in pages for k in page] == expected
        assert all(len(page) == size for page in pages[:-1])
    assert store.list_page("", limit=100) == sorted(keys)
    assert store.list_page("runs/a/", start_after="runs/a/0", limit=2) == ["runs/a/1", "runs/a/sub/x"]
    assert store.list_page("runs/", start_after="runs/a/zzz", limit=1) == ["runs/ab"]
    assert store.list_page("runs/", start_after="runs/z") == []
    assert store.list_page("nothing/") == []
    with pytest.raises(InvalidKey):
        store.list_page("../")
    with pytest.raises(ValueError):
        store.list_page("runs/", limit=0)


def test_list_page_of_a_large_flat_prefix(store: ObjectStore) -> None:
    keys = [f"flat/{n * 7919 % 1000:03d}-{n}.json" for n in range(60)]
    for key in keys:
        store.put(key, b"x")
    pages, after = [], ""
    while page := store.list_page("flat/", start_after=after, limit=4):
        pages.append(page)
        after = page[-1]
    assert [k for page in pages for k in page] == sorted(keys) == store.list("flat/")
    assert store.list_page("flat/0", limit=100) == [k for k in sorted(keys) if k.startswith("flat/0")]


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_rejected(store: ObjectStore, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"),
        lambda: store.put(key, b"x", if_absent=True),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.put_json(key, {}),
        lambda: store.get_json(key),
    ]
    for call in calls:
        with pytest.raises(InvalidKey) as info:
            call()
        assert isinstance(info.value, StoreError)
    assert store.list("") == []


@pytest.mark.parametrize("prefix", ["/abs", "../", "a/../", "a\\b", "a//b", ".tmp-x/"])
def test_invalid_list_prefixes_are_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        store.list(prefix)


def test_json_helpers(store: ObjectStore) -> None:
    obj = {"z": [1, 2.5, None, True], "a": {"ключ": "värde"}, "m": "😀"}
    assert store.put_json("meta/obj.json", obj) is True
    assert store.get_json("meta/obj.json") == obj
    # Canonical encoding: sorted keys, no indent, raw UTF-8.
    expected = json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=None).encode("utf-8")
    assert store.get("meta/obj.json") == expected

    assert store.put_json("meta/obj.json", {"other": 1}, if_absent=True) is False
    assert store.get_json("meta/obj.json") == obj

    with pytest.raises(ObjectNotFound):
        store.get_json("meta/missing.json")
    store.put("meta/broken.json", b"{not json")
    with pytest.raises(StoreError, match=re.escape("meta/broken.json")):
        store.get_json("meta/broken.json")
    with pytest.raises(StoreError, match=re.escape("meta/set.json")):
        store.put_json("meta/set.json", {1, 2})
    assert not store.exists("meta/set.json")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # a RecursionError escaped
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (b"1" * 5000, "not valid JSON"),  # an int longer than Python converts (a bare ValueError)
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_undecodable_json_is_a_store_error_naming_the_key(store: ObjectStore, data: bytes, reason: str) -> None:
    store.put("meta/deep.json", data)
    with pytest.raises(StoreError, match=re.escape("meta/deep.json")) as info:
        store.get_json("meta/deep.json")
    assert reason in str(info.value)
    assert type(info.value) is StoreError  # not a subclass that means "unreachable" or "bad settings"


def test_concurrent_create_only_writers_have_one_winner(store: ObjectStore) -> None:
    writers = 8

    def payload(i: int) -> bytes:
        return f"writer-{i}-".encode() * 500

    with ThreadPoolExecutor(max_workers=writers) as pool:
        for round_ in range(5):
            key = f"race/{round_}"
            barrier = threading.Barrier(writers)

            def write(i: int, key: str = key, barrier: threading.Barrier = barrier) -> bool:
                barrier.wait(timeout=30)  # release all writers at once
                return store.put(key, payload(i), if_absent=True)

            # result() re-raises a writer's exception here instead of losing it.
            results = list(pool.map(write, range(writers), timeout=60))
            winners = [i for i, won in enumerate(results) if won]
            assert len(winners) == 1, f"round {round_}: winners {winners}"
            assert store.get(key) == payload(winners[0])


# --- LocalStore specifics -------------------------------------------------------


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_local_store_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/x", b"1")
    store.put("a/x", b"2")
    store.put("a/y", b"3", if_absent=True)
    assert store.put("a/y", b"4", if_absent=True) is False
    store.put_json("b/z.json", {"k": 1})
    with pytest.raises(StoreError):
        store.put_json("b/bad.json", object())
    assert _all_files(tmp_path) == ["a/x", "a/y", "b/z.json"]


def test_local_store_list_hides_stray_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/x", b"1")
    # What a writer that crashed mid-write leaves behind.
    (tmp_path / "a" / ".tmp-deadbeef").write_bytes(b"half")
    (tmp_path / ".tmp-dir").mkdir()
    (tmp_path / ".tmp-dir" / "f").write_bytes(b"half")
    assert store.list("") == ["a/x"]


def test_local_store_url_and_layout(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir()
    assert store.url == (tmp_path / "new" / "dir").resolve().as_uri()
    store.put("k/v", b"data")
    assert (tmp_path / "new" / "dir" / "k" / "v").read_bytes() == b"data"


def test_local_store_objects_are_not_private_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        LocalStore(tmp_path).put("k", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o644


def test_local_store_key_blocked_by_folder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/b", b"x")
    with pytest.raises(StoreError, match="'a'"):
        store.put("a", b"y", if_absent=True)
    with pytest.raises(StoreError, match="'a'"):
        store.put("a", b"y")
    with pytest.raises(StoreError, match="'a/b/c'"):
        store.put("a/b/c", b"y")  # a file is in the way of the folder


# --- S3Store specifics ----------------------------------------------------------


def test_s3_url_has_no_secret_and_round_trips(moto_endpoint: str, s3_env: None) -> None:
    store = _s3_store(moto_endpoint, prefix="team/x")
    assert SECRET_KEY not in store.url and ACCESS_KEY not in store.url
    assert SECRET_KEY not in repr(store)
    assert store.url == f"s3://{store.bucket}/team/x?endpoint={moto_endpoint}&region={REGION}"
    store.put("k", b"v")
    again = open_store(store.url)
    assert isinstance(again, S3Store)
    assert again.get("k") == b"v"


def test_s3_prefix_is_applied_in_the_bucket(moto_endpoint: str) -> None:
    store = _s3_store(moto_endpoint, prefix="/team/x/")
    store.put("a/b", b"1")
    raw = Minio(
        moto_endpoint.removeprefix("http://"),
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        region=REGION,
    )
    raw.put_object(store.bucket, "outside", io.BytesIO(b"2"), 1)
    names = sorted(o.object_name or "" for o in raw.list_objects(store.bucket, recursive=True))
    assert names == ["outside", "team/x/a/b"]
    assert store.list("") == ["a/b"]


def test_s3_missing_bucket_is_a_store_error_not_not_found(moto_endpoint: str) -> None:
    store = S3Store(
        endpoint=moto_endpoint,
        bucket=f"absent-{uuid.uuid4().hex[:12]}",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        region=REGION,
        create_bucket=False,
    )
    with pytest.raises(StoreError) as info:
        store.get("k")
    assert not isinstance(info.value, ObjectNotFound)
    assert "'k'" in str(info.value) and moto_endpoint in str(info.value)
    assert SECRET_KEY not in str(info.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_s3_transport_errors_name_key_and_endpoint(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    # No retries: MinIO's default pool would back off for seconds on a refused connection.
    client = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=1))
    store = S3Store(
        endpoint=endpoint,
        bucket="some-bucket",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        region=REGION,
        create_bucket=False,
        http_client=client,
    )
    calls: list[Callable[[], object]] = [
        lambda: store.get("the/key"),
        lambda: store.put("the/key", b"x"),
        lambda: store.put("the/key", b"x", if_absent=True),
        lambda: store.exists("the/key"),
    ]
    for call in calls:
        with pytest.raises(StoreError) as info:
            call()
        assert not isinstance(info.value, ObjectNotFound)
        assert "'the/key'" in str(info.value) and endpoint in str(info.value)
        assert SECRET_KEY not in str(info.value)
    with pytest.raises(StoreError, match=re.escape(endpoint)):
        store.list("the/")


def test_s3_endpoint_scheme_must_match_secure(moto_endpoint: str) -> None:
    with pytest.raises(StoreError, match="secure"):
        S3Store(
            endpoint=moto_endpoint,
            bucket="b-bucket",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=True,
        )


# --- open_store -----------------------------------------------------------------


def test_open_store_file_url(tmp_path: Path) -> None:
    root = tmp_path / "via url"
    store = open_store(root.as_uri())
    assert isinstance(store, LocalStore)
    assert root.is_dir()
    store.put("k", b"v")
    assert (root / "k").read_bytes() == b"v"
    assert open_store(store.url).get("k") == b"v"
    assert isinstance(open_store(f"file://{tmp_path / 'plain'}"), LocalStore)


def test_open_store_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("./rel/dir")
    assert isinstance(store, LocalStore)
    assert (tmp_path / "rel" / "dir").is_dir()
    assert isinstance(open_store(str(tmp_path / "abs")), LocalStore)
    assert (tmp_path / "abs").is_dir()


def test_open_store_s3_url(moto_endpoint: str, s3_env: None) -> None:
    bucket = f"open-{uuid.uuid4().hex[:12]}"
    store = open_store(f"s3://{bucket}/some/prefix?endpoint={moto_endpoint}")
    assert isinstance(store, S3Store)
    assert store.bucket == bucket and store.prefix == "some/prefix"
    assert store.endpoint == moto_endpoint
    assert store.put("k", b"v") is True
    assert store.get("k") == b"v"
    assert SECRET_KEY not in store.url

    bare = open_store(f"s3://{bucket}?endpoint={moto_endpoint}&region={REGION}")
    assert isinstance(bare, S3Store) and bare.prefix == "" and bare.region == REGION
    assert bare.list("") == ["some/prefix/k"]


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
        ({"AWS_ACCESS_KEY_ID": ACCESS_KEY}, ["AWS_SECRET_ACCESS_KEY"]),
        ({"AWS_SECRET_ACCESS_KEY": SECRET_KEY}, ["AWS_ACCESS_KEY_ID"]),
    ],
)
def test_open_store_s3_without_credentials(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: list[str]
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StoreError) as info:
        open_store("s3://bucket-x/p?endpoint=http://127.0.0.1:9")
    for name in missing:
        assert name in str(info.value)
    assert SECRET_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://host/x", "'ftp'"),
        ("gs://bucket/x", "'gs'"),
        ("s3:/bucket/typo", "'s3'"),
        ("", "empty"),
        ("s3://bucket-x/p", "endpoint"),
        ("s3://bucket-x/p?endpoint=ftp://h:1", "http"),
        ("s3://bucket-x/p?endpoint=http://h:1&colour=red", "colour"),
        ("s3:///p?endpoint=http://h:1", "bucket"),
        ("file://remotehost/x", "remotehost"),
    ],
)
def test_open_store_refuses_bad_urls(url: str, fragment: str, s3_env: None) -> None:
    scheme_error = "unsupported store url scheme" if "'" in fragment else None
    with pytest.raises(StoreError, match=scheme_error) as info:
        open_store(url)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAXXX:sup3rs3cret@bucket-x/p?endpoint=http://127.0.0.1:9",
        "s3://bucket-x/p?endpoint=http://AKIAXXX:sup3rs3cret@127.0.0.1:9",
    ],
)
def test_open_store_refuses_credentials_in_url(url: str, s3_env: None) -> None:
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert "sup3rs3cret" not in str(info.value)
    assert "AWS_ACCESS_KEY_ID" in str(info.value)


def test_open_store_never_echoes_secrets_of_unknown_urls() -> None:
    for url in ("ftp://me:sup3rs3cret@host/x", "file://me:sup3rs3cret@host/x"):
        with pytest.raises(StoreError) as info:
            open_store(url)
        assert "sup3rs3cret" not in str(info.value)
