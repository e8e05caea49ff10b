"""The chart's metrics: every expert, worker and controller pod serves /metrics (port, env, prometheus.io
annotations, the label the metrics Service selects), a ServiceMonitor only when asked, a NetworkPolicy that opens
the metrics port alone, and the Grafana dashboard in a ConfigMap for Grafana's sidecar."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import CHART, HelmError, by_name, containers, of_kind, render, render_scenario  # noqa: E402

from warrior.common import metrics  # noqa: E402

MINIMAL = CHART / "ci" / "minimal-cpu-values.yaml"
KEDA = CHART / "ci" / "keda-values.yaml"
PORT = 9100  # values.yaml metrics.port


def _env(container: dict[str, object]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}  # type: ignore[attr-defined,index]


def test_every_long_running_pod_serves_its_metrics() -> None:
    deployments = of_kind(render_scenario(MINIMAL), "Deployment")
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} >= {
        "expert", "judge", "executor", "controller"
    }  # fmt: skip
    for doc in deployments:
        pod = doc["spec"]["template"]
        assert pod["metadata"]["labels"]["warrior/metrics"] == "true"
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(PORT)
        assert annotations["prometheus.io/path"] == metrics.PATH
        container = containers(doc)[0]
        assert {"name": "metrics", "containerPort": PORT, "protocol": "TCP"} in container["ports"]
        assert _env(container)[metrics.PORT_ENV] == str(PORT)
    # Nothing extra by default: no ServiceMonitor (its CRD may be absent), the dashboard for the sidecar.
    docs = render_scenario(MINIMAL)
    assert not of_kind(docs, "ServiceMonitor")
    dashboard = by_name(docs, "ConfigMap", "arena-warrior-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["warrior.json"]) == shipped


def test_own_pod_annotations_win_and_metrics_can_be_turned_off() -> None:
    docs = render(MINIMAL, {"services": {"judge": {"podAnnotations": {"prometheus.io/scrape": "false", "team": "a"}}}})
    judge = by_name(docs, "Deployment", "arena-warrior-judge")["spec"]["template"]["metadata"]["annotations"]
    assert judge["prometheus.io/scrape"] == "false" and judge["team"] == "a" and judge["prometheus.io/port"] == "9100"

    off = render(MINIMAL, {"metrics": {"enabled": False}})
    for doc in of_kind(off, "Deployment"):
        pod = doc["spec"]["template"]
        assert "warrior/metrics" not in pod["metadata"]["labels"]
        assert not any(k.startswith("prometheus.io/") for k in pod["metadata"].get("annotations", {}))
        assert metrics.PORT_ENV not in _env(containers(doc)[0])
        assert all(p["name"] != "metrics" for p in containers(doc)[0].get("ports", []))
    assert not [d for d in off if d["metadata"]["name"].endswith(("-metrics", "-dashboard"))]


def test_service_monitor_scrapes_the_metrics_port_of_every_metrics_pod() -> None:
    docs = render_scenario(KEDA)
    monitor = by_name(docs, "ServiceMonitor", "arena-warrior-metrics")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = by_name(docs, "Service", "arena-warrior-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["warrior"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == metrics.PATH
    assert re.fullmatch(r"\d+s", endpoint["interval"])
    assert service["spec"]["clusterIP"] == "None"
    [port] = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"
    # The Service selects exactly the pods that serve metrics, each with a container port named `metrics`.
    selector = service["spec"]["selector"].items()
    deployments = of_kind(docs, "Deployment")
    selected = [d for d in deployments if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert selected == deployments
    for doc in selected:
        assert any(p["name"] == "metrics" for p in containers(doc)[0]["ports"])
    for doc in of_kind(docs, "Job"):
        assert not selector <= doc["spec"]["template"]["metadata"]["labels"].items()
    dashboard = by_name(docs, "ConfigMap", "arena-warrior-dashboard")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Warrior"}


def test_the_metrics_network_policy_opens_the_metrics_port_only() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    docs = render(MINIMAL, {"metrics": {"ingressFrom": peers}})
    policy = by_name(docs, "NetworkPolicy", "arena-warrior-metrics")
    assert policy["spec"]["podSelector"]["matchLabels"]["warrior/metrics"] == "true"
    assert policy["spec"]["ingress"] == [{"ports": [{"port": PORT, "protocol": "TCP"}], "from": peers}]
    # The workers' own policy still admits nothing: the metrics port is the one way in.
    workers = by_name(docs, "NetworkPolicy", "arena-warrior-workers")
    assert workers["spec"]["ingress"] == []


def test_a_prefork_worker_writes_its_childrens_samples_to_a_writable_folder() -> None:
    docs = render(MINIMAL, {"services": {"executor": {"pool": "prefork"}}})
    executor = containers(by_name(docs, "Deployment", "arena-warrior-executor"))[0]
    folder = _env(executor)[metrics.MULTIPROC_ENV]
    assert any(folder.startswith(m["mountPath"] + "/") for m in executor["volumeMounts"])
    judge = containers(by_name(docs, "Deployment", "arena-warrior-judge"))[0]
    assert metrics.MULTIPROC_ENV not in _env(judge)  # threads: one process, no folder needed


@pytest.mark.parametrize(
    "values",
    [{"metrics": {"prot": 9100}}, {"metrics": {"serviceMonitor": {"interval": "often"}}}, {"metrics": {"port": 0}}],
    ids=["unknown-key", "bad-interval", "bad-port"],
)
def test_schema_refuses_bad_metrics_values(values: dict[str, object]) -> None:
    with pytest.raises(HelmError):
        render(MINIMAL, values)
