"""The chart's locked doors, rendered offline: gRPC TLS / mutual TLS / token and the Redis password come
from existing Secrets (mounted files or secretKeyRef), never from values; experts probe on the plain
health port when the gRPC port is locked; what the pods get is what warrior.common.security reads."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import (  # noqa: E402
    CHART,
    SCENARIOS,
    Doc,
    HelmError,
    by_name,
    containers,
    is_expert,
    keda_crd_errors,
    of_kind,
    render,
)

from warrior.common import queues  # noqa: E402
from warrior.common.security import ClientSecurity, ServerSecurity  # noqa: E402

MINIMAL = CHART / "ci" / "minimal-cpu-values.yaml"
SECURE = CHART / "ci" / "secure-values.yaml"
GRPC_PORT, HEALTH_PORT = queues.DEFAULT_GRPC_PORT, queues.DEFAULT_HEALTH_PORT
TLS = {"enabled": True, "existingSecret": "expert-tls"}
MTLS = {**TLS, "clientAuth": {"enabled": True, "existingSecret": "client-tls"}}
TOKEN = {"existingSecret": "grpc-token", "key": "token"}
SECURITY_VARS = ("WARRIOR_GRPC_TLS_", "WARRIOR_GRPC_TOKEN")


def _experts(docs: list[Doc]) -> list[Doc]:
    return [d for d in of_kind(docs, "Deployment") if is_expert(d)]


def _component(doc: Doc) -> str:
    return str(doc["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def _callers(docs: list[Doc]) -> list[Doc]:
    """The pods that call experts: every Deployment and Job but the experts and the campaign controller."""
    return [
        d for d in docs if d["kind"] in ("Deployment", "Job") and not is_expert(d) and _component(d) != "controller"
    ]


def test_the_controller_holds_no_grpc_credential() -> None:
    """The campaign controller calls no expert: it gets neither the token nor the client certificate."""
    docs = render(MINIMAL, {"grpc": {"tls": {**MTLS, "serverName": "warrior-expert"}, "token": TOKEN}})
    (controller,) = [d for d in docs if d["kind"] == "Deployment" and _component(d) == "controller"]
    env = _env(containers(controller)[0])
    assert not [name for name in env if name.startswith(SECURITY_VARS)]
    assert not _secret_files(controller, containers(controller)[0])


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def _probe_ports(container: Doc) -> set[int]:
    return {container[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}


def _secret_files(doc: Doc, container: Doc) -> dict[str, tuple[str, str]]:
    """Mounted path of every Secret item in the container -> (Secret name, key)."""
    volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
    files = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret:
            for item in secret["items"]:
                files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


# -- probes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("grpc", "locked"),
    [
        ({}, False),
        ({"tls": TLS}, True),
        ({"tls": MTLS}, True),
        ({"token": TOKEN}, True),
        ({"tls": MTLS, "token": TOKEN}, True),
    ],
    ids=["open", "tls", "mtls", "token", "mtls-token"],
)
def test_probes_use_the_plain_health_port_when_the_grpc_port_is_locked(grpc: dict[str, Any], locked: bool) -> None:
    from warrior.expert_inference.server import parse_args

    docs = render(MINIMAL, {"grpc": grpc})
    for doc in _experts(docs):
        container = containers(doc)[0]
        args = parse_args(container["command"][1:])
        # The metrics port (tests/test_chart_metrics.py) aside.
        ports = {p["name"]: p["containerPort"] for p in container["ports"] if p["name"] != "metrics"}
        if locked:
            # Kubernetes' gRPC probes speak neither TLS nor tokens: health alone, in plain text, on its own port.
            assert args.health_port == HEALTH_PORT and args.port == GRPC_PORT
            assert ports == {"grpc": GRPC_PORT, "health": HEALTH_PORT}
            assert _probe_ports(container) == {HEALTH_PORT}
        else:
            assert args.health_port is None and ports == {"grpc": GRPC_PORT}
            assert _probe_ports(container) == {GRPC_PORT}
    # Other pods reach the experts on the gRPC port only: the health port is for the kubelet.
    for policy in of_kind(docs, "NetworkPolicy"):
        if policy["metadata"]["name"].endswith("-metrics"):  # the metrics port only (tests/test_chart_metrics.py)
            continue
        for rule in policy["spec"].get("ingress", []):
            assert [p["port"] for p in rule["ports"]] == [GRPC_PORT]


# -- what the pods get is what the code reads ----------------------------------------------------
def _materialise(
    env: dict[str, Doc], files: dict[str, tuple[str, str]], pki: dict[str, Path], root: Path
) -> dict[str, str]:
    """The env of a container with its Secret files written from the test PKI under `root`."""
    contents = {
        ("expert-tls", "tls.crt"): pki["server_crt"], ("expert-tls", "tls.key"): pki["server_key"],
        ("expert-tls", "ca.crt"): pki["ca_crt"], ("client-tls", "tls.crt"): pki["client_crt"],
        ("client-tls", "tls.key"): pki["client_key"],
    }  # fmt: skip
    out = {}
    for name, entry in env.items():
        value = entry.get("value")
        if value is None:
            continue
        if name.startswith("WARRIOR_GRPC_") and value.startswith("/"):
            assert value in files, f"{name}={value} is not a mounted Secret file"
            local = root / value.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            source = contents.get(files[value])
            if source is not None:
                shutil.copyfile(source, local)
            else:
                local.write_text("token-from-the-secret\n")
            value = str(local)
        out[name] = value
    return out


def test_the_pods_environment_configures_warrior_security(test_pki: dict[str, Path], tmp_path: Path) -> None:
    docs = render(MINIMAL, {"grpc": {"tls": {**MTLS, "serverName": "warrior-expert"}, "token": TOKEN}})
    expert_doc = _experts(docs)[0]
    expert = containers(expert_doc)[0]
    server = ServerSecurity.from_env(
        _materialise(_env(expert), _secret_files(expert_doc, expert), test_pki, tmp_path / "expert")
    )
    assert server.tls and server.mutual_tls and server.token is not None
    assert server.token.accepted() == ("token-from-the-secret",)
    for doc in _callers(docs):
        for container in containers(doc):
            files = _secret_files(doc, container)
            client = ClientSecurity.from_env(_materialise(_env(container), files, test_pki, tmp_path / doc["kind"]))
            assert client.tls_required and client.cert_chain and client.server_name == "warrior-expert"
            assert client.token is not None and client.token.send() == "token-from-the-secret"
            # Callers never get the experts' private key: only ca.crt of the experts' Secret.
            assert ("expert-tls", "tls.key") not in files.values()
            assert {v for v in files.values() if v[0] == "expert-tls"} == {("expert-tls", "ca.crt")}


def test_token_only_and_tls_only() -> None:
    docs = render(MINIMAL, {"grpc": {"token": TOKEN}})
    for doc in [*_experts(docs), *_callers(docs)]:
        env = _env(containers(doc)[0])
        assert env["WARRIOR_GRPC_TOKEN_FILE"]["value"] == "/etc/warrior-grpc/token/token"
        assert not [name for name in env if name.startswith("WARRIOR_GRPC_TLS")]
    docs = render(MINIMAL, {"grpc": {"tls": TLS}})
    expert = _env(containers(_experts(docs)[0])[0])
    assert {n for n in expert if n.startswith(SECURITY_VARS)} == {"WARRIOR_GRPC_TLS_CERT", "WARRIOR_GRPC_TLS_KEY"}
    caller = _env(containers(_callers(docs)[0])[0])
    assert {n for n in caller if n.startswith(SECURITY_VARS)} == {
        "WARRIOR_GRPC_TLS_CA",
        "WARRIOR_GRPC_TLS_SERVER_NAME",
    }


# -- Redis ----------------------------------------------------------------------------------------
def test_redis_password_is_a_secret_ref_and_the_url_never_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from warrior.common.settings import Settings

    docs = render(SECURE)
    for doc in (d for d in docs if d["kind"] in ("Deployment", "Job")):
        for container in containers(doc, init=True):
            env = _env(container)
            assert env["REDIS_URL"]["value"] == "redis://warrior@redis.warrior.svc.cluster.local:6379/0"
            assert env["REDIS_PASSWORD"]["valueFrom"] == {
                "secretKeyRef": {"name": "warrior-redis-auth", "key": "redis-password"}
            }
    # What the processes make of it: the password joins the ACL user, percent-encoded.
    monkeypatch.setenv("REDIS_URL", "redis://warrior@redis.warrior.svc.cluster.local:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss/w:rd")
    monkeypatch.delenv("REDIS_PASSWORD_FILE", raising=False)
    assert Settings.from_env().redis_url == "redis://warrior:p%40ss%2Fw%3Ard@redis.warrior.svc.cluster.local:6379/0"
    scaled = of_kind(docs, "ScaledObject")
    assert scaled and all(t["metadata"]["username"] == "warrior" for s in scaled for t in s["spec"]["triggers"])
    auth = of_kind(docs, "TriggerAuthentication")[0]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "warrior-redis-auth", "key": "redis-password"}
    ]


def test_redis_tls_with_a_private_ca_reaches_every_pod_and_kedas_scaler() -> None:
    docs = render(SECURE, {"redis": {"tls": True, "tlsCa": {"existingSecret": "warrior-redis-ca"}}})
    pods = [d for d in docs if d["kind"] in ("Deployment", "Job")]
    assert pods
    for doc in pods:
        for container in containers(doc, init=True):
            env = _env(container)
            assert env["REDIS_URL"]["value"] == (
                "rediss://warrior@redis.warrior.svc.cluster.local:6379/0?ssl_cert_reqs=required"
            )
            ca_file = env["REDIS_TLS_CA_FILE"]["value"]
            assert _secret_files(doc, container)[ca_file] == ("warrior-redis-ca", "ca.crt")
    # KEDA verifies Redis with the same CA: TLS comes from the TriggerAuthentication, never enableTLS.
    scaled = of_kind(docs, "ScaledObject")
    assert scaled
    for trigger in (t for s in scaled for t in s["spec"]["triggers"]):
        assert "enableTLS" not in trigger["metadata"] and "unsafeSsl" not in trigger["metadata"]
        assert trigger["authenticationRef"]["name"] == of_kind(docs, "TriggerAuthentication")[0]["metadata"]["name"]
    auth = of_kind(docs, "TriggerAuthentication")[0]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["password"] == ("warrior-redis-auth", "redis-password")
    assert refs["ca"] == ("warrior-redis-ca", "ca.crt")
    switch = by_name(docs, "Secret", refs["tls"][0])
    assert switch["stringData"] == {refs["tls"][1]: "enable"}
    assert keda_crd_errors([d for d in docs if d["kind"] in ("ScaledObject", "TriggerAuthentication")]) == []


def test_a_redis_ca_without_tls_is_refused() -> None:
    with pytest.raises(HelmError, match=r"redis.tlsCa.existingSecret needs redis.tls: true"):
        render(SECURE, {"redis": {"tlsCa": {"existingSecret": "warrior-redis-ca"}}})


# -- never a secret value -------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name.removesuffix("-values.yaml") for p in SCENARIOS])
def test_secret_files_are_mounted_secrets_and_manifests_hold_no_key(scenario: Path) -> None:
    docs = render(scenario)
    text = yaml.safe_dump_all(docs)
    assert "BEGIN" not in text and "PRIVATE KEY" not in text
    for doc in (d for d in docs if d["kind"] in ("Deployment", "Job")):
        for container in containers(doc, init=True):
            files = _secret_files(doc, container)
            for name, entry in _env(container).items():
                if name.endswith("_FILE") or (name.startswith("WARRIOR_GRPC_TLS_") and "value" in entry
                                              and entry["value"].startswith("/")):  # fmt: skip
                    assert entry["value"] in files, f"{doc['metadata']['name']}: {name} is not a mounted Secret"
            for mount in container.get("volumeMounts", []):
                if mount["name"].startswith("grpc-"):
                    assert mount["readOnly"] is True


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"grpc": {"tls": {"enable": True}}}, "enable"),
        ({"grpc": {"token": {"value": "s3cret"}}}, "value"),
        ({"grpc": {"tls": {"clientAuth": {"cert": "x"}}}}, "cert"),
        ({"redis": {"auth": {"password": "s3cret"}}}, "password"),
        ({"grpc": {"healthPort": 9000}}, "healthPort"),
    ],
)
def test_schema_has_no_place_for_secrets_or_typos(values: dict[str, Any], key: str) -> None:
    with pytest.raises(HelmError) as info:
        render(MINIMAL, values)
    assert re.search(rf"additional propert(y|ies) '?{key}'? (is )?not allowed", str(info.value), re.I)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("grpc", "message"),
    [
        ({"tls": {"enabled": True}}, "grpc.tls.existingSecret is required"),
        ({"tls": {"clientAuth": {"enabled": True, "existingSecret": "c"}}}, "needs grpc.tls.enabled"),
        ({"tls": {**TLS, "clientAuth": {"enabled": True}}}, "grpc.tls.clientAuth.existingSecret is required"),
    ],
)
def test_incomplete_grpc_values_are_refused(grpc: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=re.escape(message)):
        render(MINIMAL, {"grpc": grpc})


def test_secure_scenario_experts_and_notes() -> None:
    docs = render(SECURE)
    expert = by_name(docs, "Deployment", "arena-warrior-expert-test-zero-a")
    assert _probe_ports(containers(expert)[0]) == {HEALTH_PORT}
    env = _env(containers(by_name(docs, "Deployment", "arena-warrior-judge"))[0])
    assert env["WARRIOR_GRPC_TLS_SERVER_NAME"]["value"] == "warrior-expert.warrior.svc"
    from chart_helpers import helm

    out = helm("install", "arena", str(CHART), "--namespace", "warrior", "--dry-run=client", values=[SECURE])
    notes = out[out.index("NOTES:") :]
    assert "(mutual TLS), bearer token required; probes on the plain-text health port 50052" in notes
    assert "REDIS_PASSWORD_FILE" in notes
