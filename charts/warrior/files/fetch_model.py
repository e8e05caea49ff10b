"""Copy a model from the object store into a local folder: the experts' init container.

    python fetch_model.py --url s3://bucket/prefix?endpoint=https://host:9000 --prefix models/qwen/ --dest /models

Every object under ``<store prefix>/<prefix>`` is written to ``<dest>/<its key relative to prefix>``,
streamed to a temporary file and renamed into place, so a restarted init container never sees half a
file; a file already there with the object's size is skipped. A ``file://`` URL copies from a mounted
folder. Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or files named by
AWS_ACCESS_KEY_ID_FILE / AWS_SECRET_ACCESS_KEY_FILE), as for every warrior process, never from the URL.
Needs only the ``minio`` client, which every warrior image has (warrior-common depends on it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class FetchError(Exception):
    pass


def _target(dest: Path, relative: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise FetchError(f"refusing object path {relative!r}")
    return dest.joinpath(*parts)


def _credential(name: str) -> str:
    """The variable's value, or the content of the file `<name>_FILE` names (a mounted Secret)."""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if not path:
        return os.environ.get(name, "")
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FetchError(f"{name}_FILE={path}: cannot read the file ({exc.strerror})") from None


def fetch_s3(url: str, prefix: str, dest: Path) -> int:
    from minio.error import MinioException
    from urllib3.exceptions import HTTPError

    try:
        return _fetch_s3(url, prefix, dest)
    except (MinioException, HTTPError) as exc:
        raise FetchError(f"object store: {exc}") from exc


def _fetch_s3(url: str, prefix: str, dest: Path) -> int:
    import urllib3
    from minio import Minio

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if "endpoint" not in query:
        raise FetchError(f"{url!r} needs an endpoint= parameter")
    endpoint = urlsplit(query["endpoint"][0])
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
        raise FetchError(f"endpoint {query['endpoint'][0]!r} must be http(s)://host[:port]")
    access, secret = _credential("AWS_ACCESS_KEY_ID"), _credential("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        raise FetchError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their *_FILE variables) must be set")
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=300),
        retries=urllib3.Retry(total=5, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]),
    )
    client = Minio(
        endpoint.netloc,
        access_key=access,
        secret_key=secret,
        secure=endpoint.scheme == "https",
        region=query["region"][0] if "region" in query else None,
        http_client=http,
    )
    try:
        return _copy_all(client, parts.netloc, unquote(parts.path), prefix, dest)
    finally:
        http.clear()


def _copy_all(client: Any, bucket: str, store_prefix: str, prefix: str, dest: Path) -> int:
    base = "/".join(p for p in (store_prefix.strip("/"), prefix.strip("/")) if p)
    start = f"{base}/" if base else ""
    count = 0
    for obj in client.list_objects(bucket, prefix=start, recursive=True):
        name = obj.object_name
        if name.endswith("/"):
            continue
        final = _target(dest, name[len(start) :])
        if final.is_file() and final.stat().st_size == obj.size:
            print(f"have {final}", flush=True)
            count += 1
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.partial")
        print(f"fetch s3://{bucket}/{name} ({obj.size} bytes) -> {final}", flush=True)
        client.fget_object(bucket, name, str(tmp))
        os.replace(tmp, final)
        count += 1
    return count


def fetch_local(url: str, prefix: str, dest: Path) -> int:
    root = Path(unquote(urlsplit(url).path)) / prefix.strip("/")
    if not root.is_dir():
        raise FetchError(f"{root} is not a folder")
    count = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        final = _target(dest, path.relative_to(root).as_posix())
        count += 1
        if final.is_file() and final.stat().st_size == path.stat().st_size:
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.partial")
        shutil.copyfile(path, tmp)
        os.replace(tmp, final)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="store URL: s3://bucket/prefix?endpoint=... or file:///path")
    parser.add_argument("--prefix", required=True, help="the model's key prefix inside the store")
    parser.add_argument("--dest", required=True, type=Path, help="local folder to fill")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    try:
        scheme = urlsplit(args.url).scheme
        if "@" in urlsplit(args.url).netloc or "@" in args.url.partition("?")[2]:
            raise FetchError("the store URL may not carry credentials: give them in AWS_ACCESS_KEY_ID / ..._FILE")
        if scheme == "s3":
            count = fetch_s3(args.url, args.prefix, args.dest)
        elif scheme == "file":
            count = fetch_local(args.url, args.prefix, args.dest)
        else:
            raise FetchError(f"unsupported store URL scheme {scheme!r} (s3:// or file://)")
    except (FetchError, OSError) as exc:
        print(f"fetch_model: {exc}", file=sys.stderr)
        return 1
    if count == 0:
        print(f"fetch_model: nothing under {args.prefix!r} in the store", file=sys.stderr)
        return 1
    print(f"fetch_model: {count} files in {args.dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
