"""A cluster in miniature: the chart's workloads as separate processes, wired only through what the chart
gives each pod (Redis URL and ACL password, S3 store and keys, the gRPC token, mutual TLS).

Two replicas of every worker, of the controller and of one expert (the zero-latency test engine: instant
fake outputs, not a model). The chart's campaign Job enqueues a campaign and exits; mid-campaign an expert
replica and a worker are SIGKILLed and nobody restarts them. The campaign must still finish, with its
dataset built, through the controller alone: no CLI waits on it, nothing is re-sent by hand.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from warrior.common.campaign_state import CampaignState
from warrior.common.registry import Registry
from warrior.common.store import open_store
from warrior.dataset_builder.versions import read_manifest, read_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import render  # noqa: E402
from minicluster import MiniCluster  # noqa: E402

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "miniature"
WORKERS = ("instruction-miner", "judge", "scorer", "dataset-builder", "executor")


@pytest.fixture()
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _values(password_redis: dict[str, str], store_url: str) -> dict[str, Any]:
    # A local MBPP copy for decontamination, as a cluster without internet gives it: a file on the
    # shared cache volume, named by settings.extraEnv.
    mbpp = [{"name": "WARRIOR_MBPP_PATH", "value": "/var/cache/warrior/mbpp.jsonl"}]
    return {
        "redis": {"host": "127.0.0.1", "port": int(password_redis["port"]),
                  "auth": {"username": "warrior", "existingSecret": "mini-redis", "passwordKey": "redis-password"}},
        "objectStore": {"url": store_url, "existingSecret": "mini-s3"},
        "grpc": {
            "tls": {"enabled": True, "existingSecret": "mini-expert-tls", "serverName": "warrior-expert",
                    "clientAuth": {"enabled": True, "existingSecret": "mini-client-tls"}},
            "token": {"existingSecret": "mini-token", "key": "token"},
        },
        # A killed worker's message comes back after the visibility timeout: keep it short here.
        "settings": {"registryTtlSeconds": 3, "visibilityTimeoutSeconds": 20, "cacheClaimName": "mini-cache",
                     "extraEnv": mbpp},
        "services": {name: {"replicas": 2} for name in ("instruction_miner", "judge", "scorer", "dataset_builder",
                                                         "executor")},
        "controller": {"replicas": 2, "intervalSeconds": 1, "lockTtlSeconds": 5},
        "experts": [
            {"name": "alpha", "engine": "zero-latency-test", "replicas": 2},
            {"name": "beta", "engine": "zero-latency-test"},
            {"name": "gamma", "engine": "zero-latency-test"},
        ],
        "campaignJob": {"enabled": True, "config": {
            "campaign": CAMPAIGN,
            "experts": [{"name": n} for n in ("alpha", "beta", "gamma")],
            "mining": {"per_expert": 4},
            "screening": {"rating": {"min_score": 4.0}},
            "scoring": {"bootstrap_rounds": 20},
            "dataset": {"name": CAMPAIGN},
            "controller": {"stall_s": 30},
        }},
    }  # fmt: skip


def _cache_volume(folder: Path) -> Path:
    """The shared cache volume: the MBPP copy, and the benchmark embeddings other tests already computed
    (content-addressed, so reusing them only saves time)."""
    (folder / "benchmarks").mkdir(parents=True)
    shutil.copyfile(os.environ["WARRIOR_MBPP_PATH"], folder / "mbpp.jsonl")
    for saved in (ROOT / ".cache" / "warrior" / "benchmarks").glob("embeddings-*.npy"):
        shutil.copyfile(saved, folder / "benchmarks" / saved.name)
    return folder


def test_the_chart_s_pods_finish_a_campaign_through_the_controller_alone_when_replicas_die(
    tmp_path: Path,
    password_redis: dict[str, str],
    moto_endpoint: str,
    test_pki: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store_url = f"s3://mini/arena?endpoint={moto_endpoint}"
    access, secret = "AKIA" + secrets.token_hex(8).upper(), secrets.token_hex(20)
    pem = {name: path.read_text() for name, path in test_pki.items()}
    cluster = MiniCluster(
        render(_values(password_redis, store_url)),
        secrets={
            "mini-redis": {"redis-password": password_redis["password"]},
            "mini-s3": {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret},
            "mini-token": {"token": "tok-" + secrets.token_hex(16)},
            "mini-expert-tls": {"tls.crt": pem["server_crt"], "tls.key": pem["server_key"], "ca.crt": pem["ca_crt"]},
            "mini-client-tls": {"tls.crt": pem["client_crt"], "tls.key": pem["client_key"]},
        },
        root=tmp_path / "pods",
        shared={"mini-cache": _cache_volume(tmp_path / "pvc-cache")},
    )
    assert len(cluster.of("expert")) == 4 and len(cluster.of("controller")) == 2
    assert all(len([p for p in cluster.pods if p.component == w]) == 2 for w in WORKERS)
    client = redis.Redis.from_url(password_redis["url"], decode_responses=True)
    client.flushdb()
    try:
        cluster.start("expert", *WORKERS, "controller")
        cluster.wait_for(lambda: len(client.smembers("warrior:experts")) >= 4, 120, "four expert replicas registered")
        records = Registry(client).replicas()
        assert all(r.tls for r in records) and len({r.endpoint for r in records}) == 4  # mutual TLS, own ports
        (job,) = [p for p in cluster.pods if p.component == "campaign-job"]
        job.start()
        assert job.proc is not None and job.proc.wait(180) == 0, job.log.read_text()[-3000:]
        assert CAMPAIGN in job.log.read_text()  # the Job enqueued the campaign and ended: nobody waits on it

        state = CampaignState(client, CAMPAIGN)
        cluster.wait_for(lambda: state.count("battled") >= 1, 180, "the first battle", lambda: state.snapshot())
        victims = [cluster.of("expert")[0], cluster.of("judge")[0]]
        assert victims[0].name.startswith("arena-warrior-expert-alpha")  # alpha keeps one replica
        for pod in victims:
            pod.kill()
        cluster.wait_for(lambda: len(Registry(client).resolve("alpha")) == 1, 30, "the dead alpha replica expired")

        cluster.wait_for(lambda: state.status() in ("finished", "build_failed"), 420, "the campaign finished")
        snap = state.snapshot()
        assert snap["status"] == "finished", json.dumps(snap["controller"])[:2000]
        assert snap["mine"]["done"] == snap["mine"]["expected"] == 12
        assert not [p.name for p in cluster.pods if p not in victims and p.proc and p.proc.poll() not in (None, 0)]

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        store = open_store(store_url)
        manifest = read_manifest(store, CAMPAIGN)
        assert snap["controller"]["dataset"]["version"] == manifest["version"]
        rows = read_rows(store, manifest)
        # A finished campaign's per-instruction sets are compacted into the cluster's store: read them there.
        state = CampaignState(client, CAMPAIGN, store=store)
        kept_and_battled = state.members("kept") & state.members("battled")
        # No row lost, none twice: one row per instruction that was kept and battled.
        ids = [r["lineage"]["instruction_id"] for r in rows]
        assert len(ids) == len(set(ids)) and set(ids) == kept_and_battled and ids
    finally:
        cluster.stop()
        client.close()
