"""The experts' init container script (charts/warrior/files/fetch_model.py) against a real S3 server (moto)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "charts" / "warrior" / "files" / "fetch_model.py"


@pytest.fixture(scope="module")
def fetch_model() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_copies_a_model_folder_and_skips_what_is_there(
    fetch_model: ModuleType,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    from minio import Minio

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    client = Minio(s3_endpoint.removeprefix("http://"), access_key="test", secret_key="test", secure=False)
    client.make_bucket("arena")
    files = {
        "store/models/qwen/config.json": b"{}",
        "store/models/qwen/model.safetensors": b"w" * 70_000,
        "store/models/qwen/sub/tokenizer.json": b"[]",
        "store/models/qwen-other/x.bin": b"no",
    }
    for key, data in files.items():
        client.put_object("arena", key, io.BytesIO(data), len(data))
    url = f"s3://arena/store?endpoint={s3_endpoint}"
    dest = tmp_path / "models"

    assert fetch_model.main(["--url", url, "--prefix", "models/qwen/", "--dest", str(dest)]) == 0
    got = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert got == {"config.json": b"{}", "model.safetensors": b"w" * 70_000, "sub/tokenizer.json": b"[]"}

    capsys.readouterr()
    assert fetch_model.main(["--url", url, "--prefix", "models/qwen", "--dest", str(dest)]) == 0
    assert capsys.readouterr().out.count("have ") == 3

    assert fetch_model.main(["--url", url, "--prefix", "models/none/", "--dest", str(tmp_path / "x")]) == 1
    assert "nothing under" in capsys.readouterr().err


def test_refuses_without_credentials_or_endpoint(
    fetch_model: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    assert (
        fetch_model.main(["--url", "s3://b/p?endpoint=http://127.0.0.1:1", "--prefix", "m", "--dest", str(tmp_path)])
        == 1
    )
    assert "AWS_ACCESS_KEY_ID" in capsys.readouterr().err
    assert fetch_model.main(["--url", "s3://b/p", "--prefix", "m", "--dest", str(tmp_path)]) == 1
    assert "endpoint" in capsys.readouterr().err


def test_copies_from_a_mounted_folder(fetch_model: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "store" / "models" / "smol"
    source.mkdir(parents=True)
    (source / "model.gguf").write_bytes(b"gguf")
    dest = tmp_path / "dest"
    assert (
        fetch_model.main(["--url", f"file://{tmp_path / 'store'}", "--prefix", "models/smol", "--dest", str(dest)]) == 0
    )
    assert (dest / "model.gguf").read_bytes() == b"gguf"


def test_script_needs_nothing_beyond_the_images() -> None:
    """It runs in the expert image: only the standard library and minio (a warrior-common dependency)."""
    import ast

    tree = ast.parse(SCRIPT.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - set(sys.stdlib_module_names) <= {"minio", "urllib3", "__future__"}


def test_credentials_from_mounted_files_never_from_the_url(
    fetch_model: ModuleType,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    from minio import Minio

    client = Minio(s3_endpoint.removeprefix("http://"), access_key="test", secret_key="test", secure=False)
    client.make_bucket("filekeys")
    client.put_object("filekeys", "models/m/w.bin", io.BytesIO(b"w"), 1)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
        (tmp_path / name).write_text("test\n")
        monkeypatch.setenv(f"{name}_FILE", str(tmp_path / name))
    url = f"s3://filekeys?endpoint={s3_endpoint}"
    assert fetch_model.main(["--url", url, "--prefix", "models/m/", "--dest", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "w.bin").read_bytes() == b"w"
    capsys.readouterr()
    secret_url = f"s3://filekeys?endpoint=http://AKIA:sup3rs3cret@{s3_endpoint.removeprefix('http://')}"
    assert fetch_model.main(["--url", secret_url, "--prefix", "models/m/", "--dest", str(tmp_path / "e")]) == 1
    out = capsys.readouterr()
    assert "may not carry credentials" in out.err and "sup3rs3cret" not in out.out + out.err
