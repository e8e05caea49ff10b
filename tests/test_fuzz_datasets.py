"""Property-based tests of the dataset reader and the trainer's loader on damaged stores.

A committed version is built for real in a LocalStore; each example copies that store and damages
it (a shard truncated, a byte flipped, lines dropped or repeated, a manifest or the `latest`
pointer rewritten, a file removed, with or without the sha256 forged to match). Reading it then
gives exactly the rows that were committed or a named error (DatasetNotFound, DatasetCorrupt,
StoreError; TrainingDataError from the trainer), never another exception and never some of the rows.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from warrior.common.store import LocalStore, StoreError
from warrior.dataset_builder import versions
from warrior.dataset_builder.rows import candidate_row, training_row
from warrior.dataset_builder.versions import (
    DatasetCorrupt,
    DatasetNotFound,
    build_version,
    latest_key,
    list_versions,
    manifest_key,
    read_manifest,
    read_rows,
)
from warrior.trainer.data import TrainingDataError, load_version

FAST = settings(max_examples=120)
NAME = "ds"
READ_ERRORS = (DatasetNotFound, DatasetCorrupt, StoreError)
LOAD_ERRORS = (DatasetNotFound, TrainingDataError, StoreError)


def _row(i: int, answer: str | None = None) -> dict[str, Any]:
    instruction = {"id": f"i{i:03d}", "campaign": "c1", "text": f"Task {i}?", "attacker": "smol",
                   "attacker_revision": "r0"}  # fmt: skip
    battle = {
        "answers": {
            "qwen": {"text": answer or f"qwen answer {i}", "revision": "rq", "finish_reason": "stop"},
            "smol": {"text": f"smol answer {i}", "revision": "rs", "finish_reason": "stop"},
        },
        "pairs": [{"a": "qwen", "b": "smol", "votes_a": 1, "votes_b": 0, "ties": 0}],
        "judgments": [{"judge": "gemma"}],
    }
    candidate = candidate_row(instruction, battle, {"winner": "qwen", "scores": {"qwen": 0.8, "smol": 0.2}})
    return training_row(candidate, "qwen", {"qwen": 0.8, "smol": 0.2}, "runs/c1/ratings/x.json")


# Answers with characters that str.splitlines() splits on although JSON leaves them unescaped.
ROWS = [_row(i) for i in range(4)] + [_row(4, "first\u2028second\x85third\x1cfourth\x1d\x1e\u2029end")]


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A store holding one committed version of 5 rows in 3 JSONL shards, and its manifest."""
    root = tmp_path_factory.mktemp("fuzz-datasets") / "store"
    shard_rows = versions.SHARD_ROWS
    versions.SHARD_ROWS = 2
    try:
        manifest = build_version(LocalStore(root), NAME, ROWS, campaigns=["c1"], ratings_key="k", leaderboard=[])
    finally:
        versions.SHARD_ROWS = shard_rows
    assert len(manifest["shards"]) == 3
    yield root, manifest


def test_the_committed_version_reads_back_whole(committed: tuple[Path, dict[str, Any]]) -> None:
    """Regression: an answer holding U+2028 or U+0085 made its version unreadable (JSONDecodeError)."""
    root, manifest = committed
    store = LocalStore(root)
    assert read_rows(store, read_manifest(store, NAME)) == ROWS
    assert load_version(store, NAME, manifest["version"]).rows == ROWS
    assert [m["version"] for m in list_versions(store, NAME)] == [manifest["version"]]


@pytest.fixture(scope="module")
def copies(committed: tuple[Path, dict[str, Any]]) -> Iterator[Any]:
    """A factory of fresh copies of the committed store (one per example)."""
    root, _ = committed
    with tempfile.TemporaryDirectory(prefix="fuzz-datasets-") as scratch:
        count = iter(range(10**9))

        def copy_store() -> Path:
            target = Path(scratch) / str(next(count))
            shutil.copytree(root, target)
            return target

        yield copy_store


def _damage(data: bytes, how: tuple[str, int, int, bytes]) -> bytes:
    op, at, size, junk = how
    at = at % (len(data) + 1)
    lines = data.split(b"\n")
    line = at % max(len(lines), 1)
    if op == "truncate":
        return data[:at]
    if op == "flip":
        return data[:at] + bytes([data[at] ^ (1 << (size % 8))]) + data[at + 1 :] if at < len(data) else data + b"x"
    if op == "insert":
        return data[:at] + junk + data[at:]
    if op == "cut":
        return data[:at] + data[at + size :]
    if op == "drop_line":
        return b"\n".join(lines[:line] + lines[line + 1 :])
    if op == "repeat_line":
        return b"\n".join(lines[: line + 1] + lines[line:])
    if op == "replace":
        return junk
    raise AssertionError(op)


damages = st.tuples(
    st.sampled_from(["truncate", "flip", "insert", "cut", "drop_line", "repeat_line", "replace"]),
    st.integers(0, 5000),
    st.integers(0, 300),
    st.binary(max_size=40)
    | st.sampled_from([b"\n", b"{}\n", b"[]\n", b"null\n", b'"row"\n', b"\xff\xfe", b"[" * 100_000, b"\n\n\n"]),
)


def _read_all(store: LocalStore, version: str | None) -> list[dict[str, Any]] | None:
    """The rows read through every entry point (None when they refuse with a named error); the
    version reader and the trainer's loader must agree."""
    try:
        rows: list[dict[str, Any]] | None = read_rows(store, read_manifest(store, NAME, version))
    except READ_ERRORS:
        rows = None
    try:
        loaded: list[dict[str, Any]] | None = load_version(store, NAME, version).rows
    except LOAD_ERRORS:
        loaded = None
    assert loaded == rows
    try:
        listed = list_versions(store, NAME)
    except READ_ERRORS:
        pass
    else:
        assert all(isinstance(m, dict) and m["name"] == NAME for m in listed)
    return rows


@FAST
@given(st.integers(0, 2), damages, st.booleans(), st.sampled_from([None, "pinned"]))
@example(0, ("drop_line", 0, 0, b""), True, None)  # a row gone, sha256 forged: partial rows were returned
@example(1, ("insert", 0, 0, b"[1, 2]\n"), True, None)  # a row that is not an object
@example(2, ("replace", 0, 0, b"[" * 100_000), True, "pinned")  # RecursionError escaped
@example(0, ("flip", 3, 1, b""), False, None)  # sha256 mismatch
def test_a_damaged_shard_gives_the_committed_rows_or_a_named_error(
    copies: Any, committed: tuple[Path, dict[str, Any]], shard: int, how: tuple[str, int, int, bytes], forge: bool,
    pinned: str | None,
) -> None:  # fmt: skip
    root, manifest = committed
    store = LocalStore(copies())
    entry = manifest["shards"][shard]
    damaged = _damage(store.get(entry["key"]), how)
    store.put(entry["key"], damaged)
    if forge:  # whoever damaged the shard also rewrote the manifest's sha256 (not its row counts)
        forged = copy.deepcopy(manifest)
        forged["shards"][shard]["sha256"] = hashlib.sha256(damaged).hexdigest()
        store.put_json(manifest_key(NAME, manifest["version"]), forged)
    rows = _read_all(store, manifest["version"] if pinned else None)
    if rows is None:
        return
    if not forge:
        assert rows == ROWS  # only an undamaged shard passes its sha256
    else:
        assert len(rows) == len(ROWS) and all(isinstance(r, dict) for r in rows)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found.extend(_paths(value, (*prefix, key)))
    return found


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), st.text(max_size=20),
              st.sampled_from(["ds", "datasets/ds/", "runs/c1/config.json", "../x", "0" * 64, "latest"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


@st.composite
def manifest_edits(draw: st.DrawFn, manifest: dict[str, Any]) -> tuple[str, tuple[Any, ...], Any]:
    paths = _paths(manifest)
    op = draw(st.sampled_from(["set", "delete"]))
    return op, draw(st.sampled_from(paths)), draw(json_values) if op == "set" else None


def _edit(doc: Any, edit: tuple[str, tuple[Any, ...], Any]) -> Any:
    op, path, value = edit
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if op == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@pytest.fixture(scope="module")
def manifest_doc(committed: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    return committed[1]


@FAST
@given(st.data(), st.sampled_from([None, "pinned"]))
def test_a_rewritten_manifest_gives_the_committed_rows_or_a_named_error(
    copies: Any, committed: tuple[Path, dict[str, Any]], data: st.DataObject, pinned: str | None
) -> None:
    root, manifest = committed
    edit = data.draw(manifest_edits(manifest))
    store = LocalStore(copies())
    store.put_json(manifest_key(NAME, manifest["version"]), _edit(manifest, edit))
    rows = _read_all(store, manifest["version"] if pinned else None)
    if rows is not None:
        assert rows == ROWS, edit


@pytest.mark.parametrize(
    "edit",
    [
        ("set", ("shards", 0, "key"), "runs/c1/config.json"),  # a shard outside the dataset
        ("set", ("shards",), []),  # no shards: an empty version was read instead of a refusal
        ("delete", ("shards", 1, "rows"), None),
        ("set", ("rows",), 4),  # row counts that do not add up
        ("set", ("shards", 2, "rows"), 3),
        ("set", ("version",), "0123456789ab"),  # a manifest copied from another version
        ("set", ("name",), "other"),
        ("set", ("created_at",), "yesterday"),  # list_versions sorted on it: TypeError escaped
        ("set", ("shards", 0), "part-00000.jsonl"),  # TypeError escaped
        ("delete", ("shards",), None),  # KeyError escaped
    ],
)
def test_manifest_regressions(copies: Any, committed: tuple[Path, dict[str, Any]], edit: Any) -> None:
    root, manifest = committed
    store = LocalStore(copies())
    store.put_json(manifest_key(NAME, manifest["version"]), _edit(manifest, edit))
    with pytest.raises(DatasetCorrupt):
        read_rows(store, read_manifest(store, NAME, manifest["version"]))
    with pytest.raises(DatasetCorrupt):
        list_versions(store, NAME)
    with pytest.raises(TrainingDataError):
        load_version(store, NAME, None)


@FAST
@given(damages, st.sampled_from(["manifest", "latest"]))
@example(("replace", 0, 0, b"[" * 100_000), "manifest")  # RecursionError escaped from get_json
@example(("replace", 0, 0, b'{"version": "../../runs"}'), "latest")
@example(("replace", 0, 0, b'{"version": 7}'), "latest")  # TypeError escaped
@example(("replace", 0, 0, b"[]"), "latest")
def test_damaged_manifest_or_pointer_bytes_give_the_rows_or_a_named_error(
    copies: Any, committed: tuple[Path, dict[str, Any]], how: tuple[str, int, int, bytes], which: str
) -> None:
    root, manifest = committed
    store = LocalStore(copies())
    key = manifest_key(NAME, manifest["version"]) if which == "manifest" else latest_key(NAME)
    store.put(key, _damage(store.get(key), how))
    for version in (None, manifest["version"]):
        rows = _read_all(store, version)
        assert rows is None or rows == ROWS


@FAST
@given(st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True))
def test_removed_objects_give_the_rows_or_a_named_error_and_no_manifest_means_no_version(
    copies: Any, committed: tuple[Path, dict[str, Any]], removed: list[int]
) -> None:
    root, manifest = committed
    folder = copies()
    store = LocalStore(folder)
    keys = sorted(store.list(f"datasets/{NAME}/"))
    for index in removed:
        (folder / keys[index % len(keys)]).unlink(missing_ok=True)
    committed_still = store.exists(manifest_key(NAME, manifest["version"]))
    for version in (None, manifest["version"]):
        rows = _read_all(store, version)
        assert rows is None or rows == ROWS
        if not committed_still:
            assert rows is None
            with pytest.raises(DatasetNotFound):
                read_manifest(store, NAME, version)
    if not committed_still:
        assert list_versions(store, NAME) == []


@given(st.text(max_size=30), st.one_of(st.none(), st.text(max_size=30)))
@example("../datasets", None)
@example("ds", "../../runs/c1")
@example("ds/0", None)
@example("", "")
def test_any_name_and_version_give_a_manifest_or_a_named_error(
    committed: tuple[Path, dict[str, Any]], name: str, version: str | None
) -> None:
    root, manifest = committed
    store = LocalStore(root)  # read only
    try:
        found = read_manifest(store, name, version)
    except READ_ERRORS:
        return
    assert found == manifest


def test_a_version_whose_builder_died_before_the_manifest_stays_invisible(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    good = build_version(store, NAME, ROWS[:2], campaigns=["c1"], ratings_key="k", leaderboard=[])
    real_put_json = store.put_json

    def die_at_the_manifest(key: str, obj: object, *, if_absent: bool = False) -> bool:
        if key.endswith("/manifest.json"):
            raise KeyboardInterrupt("killed before the commit")
        return real_put_json(key, obj, if_absent=if_absent)

    store.put_json = die_at_the_manifest  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        build_version(store, NAME, ROWS, campaigns=["c1"], ratings_key="k", leaderboard=[])
    store.put_json = real_put_json  # type: ignore[method-assign]
    half = {k.split("/")[2] for k in store.list(f"datasets/{NAME}/")} - {good["version"], "latest.json"}
    assert len(half) == 1  # its shards and card are there ...
    assert [m["version"] for m in list_versions(store, NAME)] == [good["version"]]  # ... but not the version
    assert read_manifest(store, NAME)["version"] == good["version"]
    with pytest.raises(DatasetNotFound):
        read_manifest(store, NAME, half.pop())
    # A `latest` pointer naming a version that was never committed falls back to the newest committed.
    store.put_json(latest_key(NAME), {"name": NAME, "version": "f" * 12})
    assert read_manifest(store, NAME)["version"] == good["version"]
    assert json.loads((tmp_path / manifest_key(NAME, good["version"])).read_text())["rows"] == 2
