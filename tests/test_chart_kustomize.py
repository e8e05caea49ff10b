"""k8s/: the dev infrastructure the chart does not own renders with kustomize and validates offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import CHART, KUBE_VERSIONS, KUBECTL, ROOT, require_tool  # noqa: E402

MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"


def kustomize(path: str) -> list[dict[str, Any]]:
    kubectl = require_tool(KUBECTL)
    proc = subprocess.run([str(kubectl), "kustomize", str(ROOT / path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def dev() -> list[dict[str, Any]]:
    return kustomize("k8s/overlays/dev")


def _containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for d in docs if d["kind"] == "StatefulSet" for c in d["spec"]["template"]["spec"]["containers"]]


def test_dev_overlay_renders_and_validates(dev: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in dev)
    assert kinds == ["Namespace", "Secret", "Secret", "Service", "Service", "StatefulSet", "StatefulSet"]
    for version in KUBE_VERSIONS:
        for doc in dev:
            kubernetes_validate.validate(doc, version, strict=True)
    assert {d["metadata"].get("namespace") for d in dev if d["kind"] != "Namespace"} == {"warrior"}


def test_images_are_pinned(dev: list[dict[str, Any]]) -> None:
    images = {c["name"]: c["image"] for c in _containers(dev)}
    assert images["minio"] == MINIO_IMAGE
    for image in images.values():
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")


def test_redis_and_minio_persist(dev: list[dict[str, Any]]) -> None:
    for doc in (d for d in dev if d["kind"] == "StatefulSet"):
        claims = doc["spec"]["volumeClaimTemplates"]
        mounts = doc["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert claims[0]["metadata"]["name"] == "data"
        assert {"name": "data", "mountPath": "/data"} in mounts
    redis = next(c for c in _containers(dev) if c["name"] == "redis")
    assert redis["args"][redis["args"].index("--appendonly") + 1] == "yes"
    assert redis["args"][redis["args"].index("--maxmemory-policy") + 1] == "noeviction"


def test_secrets_are_dev_only_placeholders_in_the_dev_overlay_alone(dev: list[dict[str, Any]]) -> None:
    assert not [d for d in kustomize("k8s/base") if d["kind"] == "Secret"], "the base ships no credentials"
    secrets = {d["metadata"]["name"]: d for d in dev if d["kind"] == "Secret"}
    assert set(secrets) == {"warrior-dev-redis", "warrior-dev-s3"}
    for secret in secrets.values():
        assert secret["metadata"]["labels"]["warrior/dev-only"] == "true"
    # Every workload reads its credentials from those Secrets, never from a literal.
    refs = set()
    for container in _containers(dev):
        for env in container.get("env", []):
            if "valueFrom" in env:
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["key"] in _secret_keys(secrets[ref["name"]])
                refs.add(ref["name"])
            else:
                assert env["name"] == "HOME"
    assert refs == set(secrets)


def _secret_keys(secret: dict[str, Any]) -> set[str]:
    return set(secret.get("data", {})) | set(secret.get("stringData", {}))


def test_the_chart_s_dev_scenario_points_at_this_infrastructure(dev: list[dict[str, Any]]) -> None:
    values = yaml.safe_load((CHART / "ci" / "minimal-cpu-values.yaml").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    secrets = {d["metadata"]["name"]: d for d in dev if d["kind"] == "Secret"}
    services = {d["metadata"]["name"]: d for d in dev if d["kind"] == "Service"}
    assert values["redis"]["host"] == "redis.warrior.svc.cluster.local" and "redis" in services
    assert values["redis"]["auth"]["passwordKey"] in _secret_keys(secrets[values["redis"]["auth"]["existingSecret"]])
    s3 = secrets[values["objectStore"]["existingSecret"]]
    store = defaults["objectStore"]
    assert {store["accessKeyIdKey"], store["secretAccessKeyKey"]} <= _secret_keys(s3)
    assert "endpoint=http://minio.warrior.svc.cluster.local:9000" in values["objectStore"]["url"]
    assert [p["port"] for p in services["minio"]["spec"]["ports"]][0] == 9000
