"""The chart's web viewer: off by default; on, a Deployment serving HTTP with the experts' token mounted as a file,
/healthz probes, a ClusterIP Service and (with NetworkPolicies) a policy opening its port alone; refused without a
token unless web.insecureNoToken says so."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import CHART, HelmError, by_name, containers, of_kind, render, render_scenario  # noqa: E402

MINIMAL = CHART / "ci" / "minimal-cpu-values.yaml"
WEB = CHART / "ci" / "web-values.yaml"


def _web(docs: tuple[dict, ...] | list[dict]) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "web"]


def test_off_by_default() -> None:
    assert _web(render_scenario(MINIMAL)) == []


def test_viewer_needs_the_experts_token() -> None:
    docs = render_scenario(WEB)
    deployment = by_name(docs, "Deployment", "arena-warrior-web")
    container = containers(deployment)[0]
    assert container["command"][:5] == ["warrior-web", "--host", "0.0.0.0", "--port", "8080"]
    assert "--insecure-no-token" not in container["command"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WARRIOR_GRPC_TOKEN_FILE"] == "/etc/warrior-web/token/token"
    assert "REDIS_URL" in env and "WARRIOR_STORE_URL" in env
    mount = next(m for m in container["volumeMounts"] if m["name"] == "web-token")
    assert mount["mountPath"] == "/etc/warrior-web/token" and mount["readOnly"] is True
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "web-token")
    assert volume["secret"]["secretName"] == "warrior-grpc-token"
    assert volume["secret"]["items"] == [{"key": "token", "path": "token"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    service = by_name(docs, "Service", "arena-warrior-web")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "web"
    policy = by_name(docs, "NetworkPolicy", "arena-warrior-web")
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]


def test_without_a_token_the_viewer_is_refused_unless_asked() -> None:
    with pytest.raises(HelmError, match="web.enabled needs grpc.token.existingSecret"):
        render(MINIMAL, {"web": {"enabled": True}})
    docs = render(MINIMAL, {"web": {"enabled": True, "insecureNoToken": True}})
    container = containers(by_name(docs, "Deployment", "arena-warrior-web"))[0]
    assert container["command"][-1] == "--insecure-no-token"
    assert "WARRIOR_GRPC_TOKEN_FILE" not in {e["name"] for e in container["env"]}
    assert len(of_kind(_web(docs), "Service")) == 1


def test_schema_refuses_unknown_web_keys() -> None:
    with pytest.raises(HelmError, match="(?i)additional propert"):
        render(MINIMAL, {"web": {"enabeld": True}})
