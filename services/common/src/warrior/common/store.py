"""Object store: one interface, two backends (a local directory and S3).

Keys are relative, '/'-separated names such as ``runs/42/manifest.json``. They are
validated the same way for both backends, so a key that works against a local
directory in tests also works against S3 in production and vice versa.

``open_store`` turns a URL from configuration into a store:

* ``file:///abs/path`` or a plain path -> :class:`LocalStore`
* ``s3://bucket/optional/prefix?endpoint=http://host:9000[&region=...]`` ->
  :class:`S3Store`, with credentials taken only from ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` (or ``AWS_ACCESS_KEY_ID_FILE`` / ``AWS_SECRET_ACCESS_KEY_FILE``, files
  such as a mounted Secret) so that they never end up in a URL, a log line or an error. A URL that
  carries credentials is refused.
"""

from __future__ import annotations

import builtins
import heapq
import io
import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error, ServerError
from minio.helpers import DictType
from urllib3.exceptions import HTTPError

from warrior.common.security import redact_url

__all__ = [
    "InvalidKey",
    "LocalStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "StoreConfigError",
    "StoreError",
    "open_store",
    "validate_key",
]

# Temp files of LocalStore start with this; keys may not use it as a segment prefix,
# otherwise list() (which hides temp files) would hide real objects on one backend only.
_TMP_PREFIX = ".tmp-"
# S3 limits a key to 1024 UTF-8 bytes; most filesystems limit a name to 255 bytes.
_MAX_KEY_BYTES = 1024
_MAX_SEGMENT_BYTES = 255
# Error codes S3 uses for "no such object" (MinIO's client synthesises them for HEAD).
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
# AWS answers 409 ConditionalRequestConflict when conditional writes to one key overlap;
# the documented remedy is to retry.
_CONDITIONAL_CONFLICT_RETRIES = 5
_ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
_SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
# The variable services read the store URL from, named in refusals.
_STORE_URL_ENV = "WARRIOR_STORE_URL"
# Everything the MinIO client raises for a failed request: S3 error replies, odd
# responses, transport failures from urllib3, argument checks, raw socket errors.
_S3_FAILURES = (MinioException, HTTPError, ValueError, OSError)
# "name:" at the start of something that is not a URL: a typo such as "s3:/bucket"
# must not silently become a local directory called "s3:".
# Needs two or more letters so that a Windows drive ("C:") still reads as a path.
_SCHEME_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
# A query parameter name fit to echo in a refusal (anything else may be a pasted secret).
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


class StoreError(Exception):
    """Base error of the object store; the message names the key or URL concerned."""


class StoreConfigError(StoreError):
    """The store URL or its credentials are unusable (a setting to fix, not a failed request)."""


class StoreUnavailable(StoreError):
    """The store could not be reached (connection refused or reset, timeout, 5xx): worth retrying."""


class ObjectNotFound(StoreError):
    """No object is stored under ``key``."""

    def __init__(self, key: str, where: str) -> None:
        super().__init__(f"object {key!r} not found in {where}")
        self.key = key


class InvalidKey(StoreError):
    """The key (or list prefix) is not an acceptable object name."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid object key {key!r}: {reason}")
        self.key = key


def _check_segment(key: str, segment: str) -> None:
    if segment == "":
        raise InvalidKey(key, "empty path segment (leading, trailing or doubled '/')")
    if segment in (".", ".."):
        raise InvalidKey(key, f"{segment!r} path segments are not allowed")
    if segment.startswith(_TMP_PREFIX):
        raise InvalidKey(key, f"segments starting with {_TMP_PREFIX!r} are reserved")
    if len(segment.encode("utf-8")) > _MAX_SEGMENT_BYTES:
        raise InvalidKey(key, f"a path segment is longer than {_MAX_SEGMENT_BYTES} bytes")


def _check_chars(key: str) -> None:
    if "\\" in key:
        raise InvalidKey(key, "backslashes are not allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidKey(key, "control characters are not allowed")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. from os.fsdecode) cannot be stored in S3.
        raise InvalidKey(key, "not valid UTF-8") from None
    if len(encoded) > _MAX_KEY_BYTES:
        raise InvalidKey(key, f"longer than {_MAX_KEY_BYTES} bytes")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid object key, else raise InvalidKey.

    A key is a non-empty, relative, '/'-separated path without '.', '..' or empty
    segments, backslashes or control characters.
    """
    if not isinstance(key, str):
        raise InvalidKey(repr(key), "keys must be str")
    if key == "":
        raise InvalidKey(key, "empty key")
    if key.startswith("/"):
        raise InvalidKey(key, "keys are relative and may not start with '/'")
    _check_chars(key)
    for segment in key.split("/"):
        _check_segment(key, segment)
    return key


def _validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can prefix a valid key, else raise InvalidKey.

    A list prefix is a plain string prefix, so its last segment may be empty ('runs/')
    or partial ('runs/4'); every earlier segment must be a valid key segment.
    """
    if not isinstance(prefix, str):
        raise InvalidKey(repr(prefix), "prefixes must be str")
    if prefix == "":
        return prefix
    if prefix.startswith("/"):
        raise InvalidKey(prefix, "prefixes are relative and may not start with '/'")
    _check_chars(prefix)
    for segment in prefix.split("/")[:-1]:
        _check_segment(prefix, segment)
    return prefix


def _check_page(prefix: str, start_after: str, limit: int) -> None:
    _validate_prefix(prefix)
    if not isinstance(start_after, str):
        raise InvalidKey(repr(start_after), "start_after must be str")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")


def _encode_json(key: str, obj: Any) -> bytes:
    try:
        text = json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=None)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot encode {key!r} as JSON: {exc}") from exc
    return text.encode("utf-8")


def _decode_json(key: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:  # arrays/objects nested deeper than the decoder recurses
        raise StoreError(f"object {key!r} is not usable JSON: nested too deeply") from None
    except ValueError as exc:
        # Malformed JSON, bytes that are not UTF-8, or an integer longer than Python converts.
        raise StoreError(f"object {key!r} is not valid JSON: {exc}") from exc


@runtime_checkable
class ObjectStore(Protocol):
    """What every backend offers; keys are checked with :func:`validate_key`."""

    url: str
    """Where the store points, never including credentials."""

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store ``data`` atomically under ``key``; readers never see half an object.

        With ``if_absent=True`` the write is create-only: it returns False and writes
        nothing when the key already exists. Otherwise it returns True.
        """
        ...

    def get(self, key: str) -> bytes:
        """Return the bytes stored under ``key``; raise ObjectNotFound if there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Return whether an object is stored under ``key``."""
        ...

    def list(self, prefix: str) -> builtins.list[str]:
        """Return every key that starts with ``prefix`` (a plain string prefix), sorted."""
        ...

    def list_page(self, prefix: str, *, start_after: str = "", limit: int = 1000) -> builtins.list[str]:
        """At most ``limit`` keys starting with ``prefix`` that sort after ``start_after``, sorted.

        A page of what list() returns: pass the last key of a page as ``start_after`` to get the next.
        """
        ...

    def put_json(self, key: str, obj: Any, *, if_absent: bool = False) -> bool:
        """Store ``obj`` as canonical UTF-8 JSON (sorted keys, no indent); see put()."""
        ...

    def get_json(self, key: str) -> Any:
        """Return the JSON object stored under ``key``."""
        ...


class _JsonMixin:
    """JSON helpers written once on top of put() and get()."""

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def put_json(self, key: str, obj: Any, *, if_absent: bool = False) -> bool:
        """Store ``obj`` as canonical UTF-8 JSON (sorted keys, no indent); see put()."""
        validate_key(key)
        return self.put(key, _encode_json(key, obj), if_absent=if_absent)

    def get_json(self, key: str) -> Any:
        """Return the JSON object stored under ``key``."""
        return _decode_json(key, self.get(key))


def _fsync_dir(path: Path) -> None:
    """Flush a directory entry so a published rename/link survives a crash."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # Not supported here (e.g. Windows); the data itself is already synced.
    try:
        os.fsync(fd)
    except OSError:
        pass  # Some filesystems refuse fsync on directories; nothing more we can do.
    finally:
        os.close(fd)


class LocalStore(_JsonMixin):
    """An object store in a local directory, one file per key.

    Writes go to a temp file in the target's directory that is fsynced and then
    published with os.replace (overwrite) or os.link (create-only, fails if the
    target exists), so readers see either the old object or the whole new one.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreConfigError(f"cannot create store directory {str(self.root)!r}: {exc}") from exc
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _write_temp(self, directory: Path, data: bytes) -> Path:
        """Write ``data`` to a fresh, fsynced temp file in ``directory`` and return it."""
        tmp = directory / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        # O_EXCL with a random name instead of mkstemp: mkstemp creates mode 0600, but
        # objects must get the usual umask-derived mode so other processes can read them.
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
            0o666,
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store ``data`` atomically under ``key``; see ObjectStore.put."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._write_temp(target.parent, bytes(data))
            try:
                if if_absent:
                    try:
                        # link() refuses an existing target atomically, unlike a
                        # check-then-replace; the temp name is removed in `finally`.
                        os.link(tmp, target)
                    except FileExistsError:
                        if target.is_dir():
                            # Not an object: a "folder" of other keys; S3 would allow
                            # both, a directory tree cannot.
                            raise StoreError(
                                f"cannot write {key!r} to {self.url}: a directory of other keys is in the way"
                            ) from None
                        return False
                else:
                    os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StoreError(f"cannot write {key!r} to {self.url}: {exc}") from exc
        return True

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``; raise ObjectNotFound if there are none."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            # A directory is an intermediate "folder" of other keys, not an object.
            raise ObjectNotFound(key, self.url) from None
        except OSError as exc:
            raise StoreError(f"cannot read {key!r} from {self.url}: {exc}") from exc

    def exists(self, key: str) -> bool:
        """Return whether an object is stored under ``key``."""
        return self._path(key).is_file()

    def list(self, prefix: str) -> builtins.list[str]:
        """Return every key starting with ``prefix``, sorted; temp files are skipped."""
        _validate_prefix(prefix)
        # Only walk the deepest directory the prefix pins down, not the whole store.
        directory, _, _ = prefix.rpartition("/")
        base = self.root.joinpath(*directory.split("/")) if directory else self.root
        keys: builtins.list[str] = []
        if not base.is_dir():
            return keys

        def fail(exc: OSError) -> None:
            if isinstance(exc, FileNotFoundError):
                return  # removed while we walked: nothing to list there
            raise StoreError(f"cannot list {prefix!r} in {self.url}: {exc}") from exc

        for dirpath, dirnames, filenames in os.walk(base, onerror=fail):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            head = "" if rel == "." else rel + "/"
            # Prune subtrees that cannot contain a match to keep listing cheap.
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(_TMP_PREFIX)
                and ((head + d + "/").startswith(prefix) or prefix.startswith(head + d + "/"))
            ]
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = head + name
                if key.startswith(prefix):
                    keys.append(key)
        keys.sort()
        return keys

    def list_page(self, prefix: str, *, start_after: str = "", limit: int = 1000) -> builtins.list[str]:
        """A page of list(prefix): at most ``limit`` keys after ``start_after``, sorted.

        Walks directories in key order and stops once the page is full; a directory whose keys all
        sort before ``start_after`` (or cannot match ``prefix``) is not entered, and of a directory
        holding only objects just the first ``limit`` names after the cursor are picked (no full sort).
        """
        _check_page(prefix, start_after, limit)
        return list(itertools.islice(self._walk_sorted(self.root, "", prefix, start_after, limit), limit))

    def _walk_sorted(self, directory: Path, head: str, prefix: str, start_after: str, limit: int) -> Iterator[str]:
        """Keys under ``directory`` (whose keys start with ``head``) matching ``prefix``, after ``start_after``,
        in key order. The caller only prunes: every key here starts with ``head``."""
        try:
            with os.scandir(directory) as listing:
                entries = [(e.name, e.is_dir()) for e in listing if not e.name.startswith(_TMP_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return  # removed while we walked
        except OSError as exc:
            raise StoreError(f"cannot list {prefix!r} in {self.url}: {exc}") from exc
        # Relative to this directory: what a name must start with, and what it must sort after.
        want = prefix[len(head) :] if prefix.startswith(head) else ""
        after = start_after[len(head) :] if start_after.startswith(head) else ""
        files = [name for name, is_dir in entries if not is_dir and name.startswith(want) and name > after]
        # A directory's keys sort as "name/...": it is entered in that place, if it can hold a match after the cursor.
        folders = [
            name + "/"
            for name, is_dir in entries
            if is_dir
            and ((name + "/").startswith(want) or want.startswith(name + "/"))
            and (name + "/" >= after or after.startswith(name + "/"))
        ]
        if not folders:
            chosen = heapq.nsmallest(limit, files) if len(files) > 4 * limit else sorted(files)
            for name in chosen:
                yield head + name
            return
        for name in sorted(files + folders):
            if name.endswith("/"):
                yield from self._walk_sorted(directory / name[:-1], head + name, prefix, start_after, limit)
            else:
                yield head + name


class S3Store(_JsonMixin):
    """An object store in an S3 bucket (AWS, MinIO, moto...), optionally under a prefix.

    S3 PUTs are atomic by nature. Create-only writes send ``If-None-Match: *`` so the
    server decides the race; a 412 means another writer got there first.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        prefix: str = "",
        access_key: str,
        secret_key: str,
        secure: bool,
        region: str | None = None,
        create_bucket: bool = True,
        http_client: urllib3.PoolManager | None = None,
    ) -> None:
        """Connect to ``endpoint`` ('host:port', or a URL whose scheme matches ``secure``).

        ``http_client`` overrides the MinIO client's pool (timeouts, retries, TLS).
        """
        host = endpoint
        if "://" in endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or (parts.scheme == "https") != secure:
                raise StoreConfigError(
                    f"S3 endpoint {endpoint!r} does not match secure={secure} "
                    "(use http:// for secure=False, https:// for secure=True)"
                )
            if parts.path not in ("", "/") or parts.query or parts.username:
                raise StoreConfigError(
                    f"S3 endpoint {parts.scheme}://{parts.hostname} must be scheme://host[:port] only"
                )
            host = parts.netloc
        self.endpoint = ("https://" if secure else "http://") + host
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.region = region
        query = {"endpoint": self.endpoint}
        if region:
            query["region"] = region
        path = f"/{quote(self.prefix)}" if self.prefix else ""
        self.url = f"s3://{bucket}{path}?{urlencode(query, safe=':/')}"
        try:
            self._client = Minio(
                host,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=http_client,
            )
        except ValueError as exc:
            raise StoreConfigError(f"invalid S3 endpoint {self.endpoint!r}: {exc}") from exc
        if create_bucket:
            self._ensure_bucket()

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"

    def _error(self, action: str, what: str, exc: Exception) -> StoreError:
        # MinIO's messages carry codes, resources and request ids, never credentials.
        message = f"cannot {action} {what} in {self._where()}: {type(exc).__name__}: {exc}"
        transient = isinstance(exc, (HTTPError, ConnectionError, TimeoutError)) or (
            isinstance(exc, ServerError) and exc.status_code >= 500
        )
        return StoreUnavailable(message) if transient else StoreError(message)

    def _ensure_bucket(self) -> None:
        try:
            if self._client.bucket_exists(self.bucket):
                return
            self._client.make_bucket(self.bucket)
        except S3Error as exc:
            # Another process may have created it between the check and the create.
            if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            raise self._error("create", "the bucket", exc) from exc
        except _S3_FAILURES as exc:
            raise self._error("create", "the bucket", exc) from exc

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _put_if_absent(self, key: str, name: str, data: bytes) -> bool:
        headers: DictType = {
            "If-None-Match": "*",
            "Content-Type": "application/octet-stream",
        }
        for attempt in range(_CONDITIONAL_CONFLICT_RETRIES + 1):
            try:
                # Minio.put_object turns unknown entries of `metadata` into
                # x-amz-meta-* user metadata, so it cannot send If-None-Match; the
                # single-PUT primitive under it sends headers verbatim (minio<8, pinned).
                self._client._put_object(self.bucket, name, data, headers=headers)
                return True
            except S3Error as exc:
                if exc.code == "PreconditionFailed" or exc.response.status == 412:
                    return False
                if exc.code == "ConditionalRequestConflict" and attempt < _CONDITIONAL_CONFLICT_RETRIES:
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise self._error("write", repr(key), exc) from exc
            except ServerError as exc:
                if exc.status_code == 412:  # a 412 without an XML body
                    return False
                raise self._error("write", repr(key), exc) from exc
            except _S3_FAILURES as exc:
                raise self._error("write", repr(key), exc) from exc
        raise AssertionError("unreachable")  # the loop either returns or raises

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store ``data`` under ``key``; see ObjectStore.put.

        Create-only writes are a single PUT, so they are limited to S3's 5 GiB. If the
        response to one is lost and the HTTP layer retries it, the retry sees the
        object and reports False although this writer's bytes were stored.
        """
        name = self._name(key)
        data = bytes(data)
        if if_absent:
            return self._put_if_absent(key, name, data)
        try:
            self._client.put_object(self.bucket, name, io.BytesIO(data), len(data))
        except _S3_FAILURES as exc:
            raise self._error("write", repr(key), exc) from exc
        return True

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``; raise ObjectNotFound if there are none."""
        name = self._name(key)
        try:
            response = self._client.get_object(self.bucket, name)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise ObjectNotFound(key, self.url) from None
            raise self._error("read", repr(key), exc) from exc
        except _S3_FAILURES as exc:
            raise self._error("read", repr(key), exc) from exc

    def exists(self, key: str) -> bool:
        """Return whether an object is stored under ``key``."""
        name = self._name(key)
        try:
            self._client.stat_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                return False
            raise self._error("check", repr(key), exc) from exc
        except _S3_FAILURES as exc:
            raise self._error("check", repr(key), exc) from exc
        return True

    def list(self, prefix: str) -> builtins.list[str]:
        """Return every key starting with ``prefix``, sorted (the store prefix stripped)."""
        _validate_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        keys: builtins.list[str] = []
        try:
            for obj in self._client.list_objects(self.bucket, prefix=base + prefix, recursive=True):
                name = obj.object_name
                if name is None or obj.is_dir or not name.startswith(base):
                    continue
                keys.append(name[len(base) :])
        except _S3_FAILURES as exc:
            raise self._error("list", repr(prefix), exc) from exc
        # S3 lists in UTF-8 byte order, which can differ from Python's code-point order.
        keys.sort()
        return keys

    def list_page(self, prefix: str, *, start_after: str = "", limit: int = 1000) -> builtins.list[str]:
        """A page of list(prefix): at most ``limit`` keys after ``start_after``, sorted.

        One listing request (S3's ``start-after``) per 1000 keys of the page, never the whole prefix.
        UTF-8 byte order, in which S3 lists, is the code-point order list() sorts by.
        """
        _check_page(prefix, start_after, limit)
        base = f"{self.prefix}/" if self.prefix else ""
        after = base + start_after if start_after else None
        keys: builtins.list[str] = []
        try:
            objects = self._client.list_objects(self.bucket, prefix=base + prefix, recursive=True, start_after=after)
            for obj in objects:
                name = obj.object_name
                if name is None or obj.is_dir or not name.startswith(base):
                    continue
                keys.append(name[len(base) :])
                if len(keys) >= limit:
                    break
        except _S3_FAILURES as exc:
            raise self._error("list", repr(prefix), exc) from exc
        return keys


def s3_credentials() -> tuple[str, str]:
    """The S3 keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the files their ``*_FILE`` twins name.

    The ``*_FILE`` form reads a mounted Secret; giving both forms of one key is ambiguous and refused.
    Messages name the variables, never the values.
    """
    values = []
    missing = []
    for var in (_ACCESS_KEY_ENV, _SECRET_KEY_ENV):
        direct = os.environ.get(var, "")
        path = os.environ.get(f"{var}_FILE", "").strip()
        if direct and path:
            raise StoreConfigError(f"both {var} and {var}_FILE are set: use one")
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    direct = handle.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise StoreConfigError(f"{var}_FILE={path}: cannot read the file ({exc})") from None
            if not direct:
                raise StoreConfigError(f"{var}_FILE={path}: the file is empty")
        if not direct:
            missing.append(f"{var} (or {var}_FILE)")
        values.append(direct)
    if missing:
        raise StoreConfigError(f"an s3 store needs credentials in the environment; missing: {', '.join(missing)}")
    return values[0], values[1]


def _shown(parts: Any) -> str:
    """An s3:// URL for messages: scheme, bucket, path, endpoint and region; other parameters only as "...".

    A malformed or unknown parameter may be a key pasted in the wrong place, so its value (and a name
    that does not look like one) is never echoed.
    """
    try:
        query = parse_qs(parts.query, keep_blank_values=True)
    except ValueError:
        query = {}
    known = [f"{name}={query[name][0]}" for name in ("endpoint", "region") if query.get(name)]
    if parts.query and len(known) < len(parts.query.split("&")):
        known.append("...")
    return redact_url(f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{'&'.join(known)}" if known else ""))


def _param_names(names: builtins.list[str]) -> builtins.list[str]:
    return [name if _PARAM_NAME.fullmatch(name) else "(unreadable)" for name in names]


def _open_s3(raw_url: str) -> S3Store:
    parts = urlsplit(raw_url)
    if redact_url(raw_url) != raw_url or parts.username or parts.password:
        # Not even the redacted URL: its other parts may hold the rest of a credential.
        raise StoreConfigError(
            f"the store URL ({_STORE_URL_ENV}) may not carry credentials; "
            f"give them in {_ACCESS_KEY_ENV} / {_SECRET_KEY_ENV} (or their *_FILE variables)"
        )
    url = _shown(parts)
    bucket = parts.netloc
    if not bucket:
        raise StoreConfigError(f"s3 store URL {url!r} names no bucket (expected s3://bucket/prefix?endpoint=...)")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise StoreConfigError(f"s3 store URL {url!r} has a malformed query") from None
    unknown = sorted(set(query) - {"endpoint", "region"})
    if unknown:
        raise StoreConfigError(
            f"s3 store URL {url!r} has unknown parameters {_param_names(unknown)} (known: endpoint, region)"
        )
    for name, values in query.items():
        if len(values) != 1 or not values[0]:
            raise StoreConfigError(f"s3 store URL {url!r} needs exactly one non-empty {name}=")
    if "endpoint" not in query:
        raise StoreConfigError(
            f"s3 store URL {url!r} needs an endpoint= parameter, e.g. ?endpoint=http://127.0.0.1:9000"
        )
    endpoint = query["endpoint"][0]
    scheme = urlsplit(endpoint).scheme
    if scheme not in ("http", "https"):
        raise StoreConfigError(f"s3 endpoint {endpoint!r} in {url!r} must start with http:// or https://")
    access_key, secret_key = s3_credentials()
    return S3Store(
        endpoint=endpoint,
        bucket=bucket,
        prefix=unquote(parts.path).strip("/"),
        access_key=access_key,
        secret_key=secret_key,
        secure=scheme == "https",
        region=query["region"][0] if "region" in query else None,
    )


def open_store(url: str) -> ObjectStore:
    """Open the store a URL names: ``file://``/plain path -> LocalStore, ``s3://`` -> S3Store.

    S3 credentials come only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or their ``*_FILE``
    variables); a URL carrying credentials is refused.
    """
    if not url:
        raise StoreConfigError("empty store url")
    if "://" not in url:
        if _SCHEME_LIKE.match(url):
            scheme = url.split(":", 1)[0].lower()
            raise StoreConfigError(f"unsupported store url scheme {scheme!r} (expected file://, s3:// or a path)")
        return LocalStore(Path(url))
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        parts = urlsplit(url)
        url = redact_url(url)
        if "@" in parts.netloc:
            raise StoreConfigError(f"the store URL ({_STORE_URL_ENV}) may not carry credentials: {url!r}")
        if parts.netloc not in ("", "localhost"):
            raise StoreConfigError(
                f"file store URL {url!r} must be file:///absolute/path (got host {parts.hostname!r})"
            )
        if parts.query or parts.fragment:
            raise StoreConfigError(f"file store URL {url!r} may not have a query or fragment")
        return LocalStore(Path(unquote(parts.path)))
    if scheme == "s3":
        return _open_s3(url)
    # Only the scheme is named: the rest of an unknown URL may hold secrets.
    raise StoreConfigError(f"unsupported store url scheme {scheme!r} (expected file://, s3:// or a path)")
