"""A small real campaign for the viewer: campaign state in the session's Redis, records in a local store,
the ratings snapshot from the scorer's finalize and two dataset versions from the dataset builder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from warrior.common.redis_client import connect
from warrior.common.store import LocalStore
from warrior.web.app import create_app
from warrior.web.data import Viewer
from warrior.web.synthetic import Synthetic, write_campaign, write_flywheel

CAMPAIGN = "webtest"


@pytest.fixture(scope="module")
def arena(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    client = connect(redis_server)
    for key in client.scan_iter(f"warrior:campaign:{CAMPAIGN}:*"):
        client.delete(key)
    client.zrem("warrior:campaigns", CAMPAIGN)
    store = LocalStore(tmp_path_factory.mktemp("web") / "store")
    synthetic: Synthetic = write_campaign(client, store, CAMPAIGN, 40, bootstrap_rounds=50)
    write_flywheel(store, "fw-test", CAMPAIGN)
    yield {"client": client, "store": store, "synthetic": synthetic, "viewer": Viewer(client, store)}
    client.close()


@pytest.fixture()
def web(arena: dict[str, Any]) -> TestClient:
    return TestClient(create_app(arena["viewer"]))


def store_root(arena: dict[str, Any]) -> Path:
    return Path(arena["store"].root)
