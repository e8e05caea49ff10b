"""The Helm chart, rendered and validated offline: no cluster, no network.

Every scenario under charts/warrior/ci/ passes `helm lint --strict`, renders, and validates against
the Kubernetes OpenAPI schemas (kubernetes-validate) and, for KEDA objects, against the ScaledObject /
TriggerAuthentication schemas. The rest asserts on the rendered objects: the schema refuses typos,
one more expert is one more Deployment and Service, GPUs go to experts only, KEDA watches the queues
its workers consume, the chart's queues and gRPC port are the code's, and credentials only ever
appear as secretKeyRef.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import (  # noqa: E402
    CHART,
    KUBE_VERSIONS,
    ROOT,
    SCENARIOS,
    Doc,
    HelmError,
    by_name,
    celery_queues,
    containers,
    helm,
    is_expert,
    keda_crd_errors,
    keda_errors,
    of_kind,
    render,
    render_scenario,
)

from warrior.common import queues  # noqa: E402

SCENARIO_IDS = [p.name.removesuffix("-values.yaml") for p in SCENARIOS]
MINIMAL = CHART / "ci" / "minimal-cpu-values.yaml"
GPU = CHART / "ci" / "gpu-experts-values.yaml"
KEDA = CHART / "ci" / "keda-values.yaml"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
# The Prometheus Operator's ServiceMonitor (metrics.serviceMonitor.enabled) is a CRD kubernetes-validate does not
# know and whose schema is not vendored here: left out of schema validation, its fields are asserted by
# tests/test_chart_metrics.py.
CRD_KINDS_UNVALIDATED = {"ServiceMonitor"}


def test_scenarios_exist() -> None:
    assert {"minimal-cpu", "gpu-experts", "keda"} <= set(SCENARIO_IDS)


# -- lint, render, validate ---------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_lint_strict(scenario: Path) -> None:
    out = helm("lint", "--strict", str(CHART), values=[scenario])
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_renders_and_validates(scenario: Path) -> None:
    docs = render_scenario(scenario)
    assert of_kind(docs, "Deployment"), "nothing rendered"
    failures = []
    for version in KUBE_VERSIONS:
        for doc in (d for d in docs if d["kind"] not in KEDA_KINDS | CRD_KINDS_UNVALIDATED):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                failures.append(f"{version} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    for doc in (d for d in docs if d["kind"] in KEDA_KINDS):
        failures += [f"{doc['kind']}/{doc['metadata']['name']} {e}" for e in keda_errors(doc)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_renders_on_the_oldest_supported_kubernetes(scenario: Path) -> None:
    assert render(scenario, kube_version=KUBE_VERSIONS[0])


def test_keda_objects_match_kedas_own_crd_schema() -> None:
    docs = [d for d in render_scenario(KEDA) if d["kind"] in KEDA_KINDS]
    assert {d["kind"] for d in docs} == KEDA_KINDS
    assert keda_crd_errors(docs) == []


def test_keda_schemas_catch_mistakes() -> None:
    """The vendored schema and KEDA's own both refuse a bad ScaledObject (so a pass means something)."""
    good = next(d for d in render_scenario(KEDA) if d["kind"] == "ScaledObject")
    bad = copy.deepcopy(good)
    bad["spec"]["minReplicaCount"] = "1"
    bad["spec"]["triggers"][0]["metadata"]["listLength"] = 5
    assert keda_errors(good) == []
    assert len(keda_errors(bad)) == 2
    crd = keda_crd_errors([bad])
    assert len(crd) == 1 and "minReplicaCount" in crd[0] and "listLength" in crd[0]
    typo = copy.deepcopy(good)
    typo["spec"]["triggers"][0]["metdata"] = typo["spec"]["triggers"][0].pop("metadata")
    assert keda_errors(typo) and keda_crd_errors([typo])


# -- the values schema --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"services": {"judge": {"concurency": 4}}}, "concurency"),
        ({"expert": []}, "expert"),
        ({"experts": [{"name": "x", "engine": "llamacpp", "gpu": 1}]}, "gpu"),
        ({"experts": [{"name": "x", "engine": "llamacpp", "model": {"pvc": {"claim": "m"}}}]}, "claim"),
        ({"redis": {"hostname": "r"}}, "hostname"),
        ({"services": {"judge": {"autoscaling": {"maxReplica": 3}}}}, "maxReplica"),
        ({"services": {"ranker": {"enabled": True}}}, "ranker"),
    ],
    ids=["service-key", "top-level", "expert-entry", "expert-model", "redis", "autoscaling", "unknown-service"],
)
def test_schema_refuses_unknown_keys(values: dict[str, Any], key: str) -> None:
    with pytest.raises(HelmError) as lint:
        helm("lint", "--strict", str(CHART), values=[MINIMAL, values])
    with pytest.raises(HelmError) as template:
        render(MINIMAL, values)
    for error in (str(lint.value), str(template.value)):
        # Helm 4: "additional properties 'x' not allowed"; Helm 3: "Additional property x is not allowed".
        assert re.search(rf"additional propert(y|ies) '?{key}'? (is )?not allowed", error, re.I), error


def test_schema_refuses_bad_values() -> None:
    for values in (
        {"experts": [{"name": "bad name", "engine": "llamacpp"}]},
        {"experts": [{"name": "x", "engine": "tgi"}]},
        {"image": {"tag": "latest"}},
        {"services": {"judge": {"concurrency": 0}}},
    ):
        with pytest.raises(HelmError):
            render(MINIMAL, values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"host": ""}}, "redis.host is required"),
        ({"objectStore": {"existingSecret": ""}}, "objectStore.existingSecret is required"),
        ({"objectStore": {"url": "file:///store"}}, "objectStore.claimName is required"),
        ({"objectStore": {"url": "s3://b/p?endpoint=http://user:pw@h:9000"}}, "must not carry credentials"),
        ({"experts": [{"name": "x", "engine": "llamacpp"}]}, "needs exactly one model source"),
        ({"experts": [{"name": "x", "engine": "vllm", "model": {"pvc": {"claimName": "m"}}}]}, "needs gpus >= 1"),
        ({"experts": [{"name": "x", "engine": "openai"}]}, "needs openai.baseUrl"),
        (
            {"experts": [{"name": "x", "engine": "vllm", "gpus": 2, "model": {"pvc": {"claimName": "m"}}}]},
            "one GPU per replica",
        ),
        (
            {
                "experts": [
                    {"name": "a.b", "engine": "zero-latency-test"},
                    {"name": "a_b", "engine": "zero-latency-test"},
                ]
            },
            "both map to the object name",
        ),
    ],
)
def test_template_refuses_incomplete_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=re.escape(message)):
        render(MINIMAL, values)


# -- experts ------------------------------------------------------------------------------------
def test_one_more_expert_is_one_more_deployment_and_service() -> None:
    before = render_scenario(MINIMAL)
    experts = yaml.safe_load(MINIMAL.read_text())["experts"]
    new = {"name": "Qwen2.5-Coder-7B", "engine": "vllm", "gpus": 1, "model": {"pvc": {"claimName": "models"}}}
    after = render(MINIMAL, {"experts": [*experts, new]})

    def names(docs: Any, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in of_kind(docs, kind)}

    added_deployments = names(after, "Deployment") - names(before, "Deployment")
    added_services = names(after, "Service") - names(before, "Service")
    assert added_deployments == added_services == {"arena-warrior-expert-qwen2-5-coder-7b"}
    assert len(of_kind(after, "Deployment")) == len(of_kind(before, "Deployment")) + 1
    assert len(of_kind(after, "Service")) == len(of_kind(before, "Service")) + 1

    deployment = by_name(after, "Deployment", "arena-warrior-expert-qwen2-5-coder-7b")
    expert = containers(deployment)[0]
    assert expert["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert expert["command"][expert["command"].index("--name") + 1] == "Qwen2.5-Coder-7B"
    service = by_name(after, "Service", "arena-warrior-expert-qwen2-5-coder-7b")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert any(t["key"] == "nvidia.com/gpu" for t in deployment["spec"]["template"]["spec"]["tolerations"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_gpus_go_to_experts_only(scenario: Path) -> None:
    docs = render_scenario(scenario)
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(doc, init=True):
            resources = container.get("resources", {})
            gpu = any("nvidia.com/gpu" in resources.get(part, {}) for part in ("limits", "requests"))
            if gpu:
                assert is_expert(doc) and container["name"] == "expert", f"{doc['metadata']['name']} asks for GPUs"
    gpu_experts = [d for d in of_kind(docs, "Deployment") if is_expert(d) and "gpu" in containers(d)[0]["image"]]
    for doc in gpu_experts:
        assert containers(doc)[0]["resources"]["limits"]["nvidia.com/gpu"] >= 1


def test_expert_command_is_what_the_server_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rendered expert command parses with warrior-expert's own argument parser, and the pod IP
    (downward API) is what the expert advertises in the registry."""
    from warrior.expert_inference.server import parse_args

    monkeypatch.setenv("POD_IP", "10.1.2.3")
    seen = 0
    for scenario in SCENARIOS:
        for doc in of_kind(render_scenario(scenario), "Deployment"):
            if not is_expert(doc):
                continue
            container = containers(doc)[0]
            assert container["command"][0] == "warrior-expert"
            args = parse_args(container["command"][1:])
            assert args.host == "0.0.0.0" and args.port == queues.DEFAULT_GRPC_PORT
            assert args.advertise_host == "10.1.2.3"
            env = {e["name"]: e for e in container["env"]}
            assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            if args.engine in ("llamacpp", "vllm"):
                assert args.model.startswith("/models")
                mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
                assert mounts["/models"]["readOnly"] is True
            seen += 1
    assert seen >= 6


def test_expert_probes_are_grpc_with_a_long_startup_budget() -> None:
    docs = render(MINIMAL, {"expertDefaults": {"loadBudgetSeconds": 3600}})
    for doc in (d for d in of_kind(docs, "Deployment") if is_expert(d)):
        container = containers(doc)[0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == queues.DEFAULT_GRPC_PORT
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 3600


def test_model_from_the_object_store_is_fetched_by_an_init_container() -> None:
    docs = render_scenario(MINIMAL)
    fetcher = by_name(docs, "ConfigMap", "arena-warrior-fetch-model")
    assert fetcher["data"]["fetch_model.py"] == (CHART / "files" / "fetch_model.py").read_text()
    doc = by_name(docs, "Deployment", "arena-warrior-expert-smollm2-135m")
    init = doc["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][:2] == ["python", "/opt/warrior/fetch_model.py"]
    assert init["command"][init["command"].index("--prefix") + 1] == "models/smollm2-135m/"
    volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["models"]
    assert containers(doc)[0]["command"][containers(doc)[0]["command"].index("--model") + 1] == (
        "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    )


# -- workers and queues -------------------------------------------------------------------------
def test_pipeline_file_is_generated_from_the_code() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import chart_pipeline
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    committed = (CHART / "files" / "pipeline.json").read_text(encoding="utf-8")
    assert committed == chart_pipeline.render(), "run: python scripts/chart_pipeline.py"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_workers_consume_the_queues_the_code_assigns(scenario: Path) -> None:
    docs = render_scenario(scenario)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    enabled = {s for s, v in values["services"].items() if v["enabled"]}
    enabled |= {s for s, v in (yaml.safe_load(scenario.read_text()).get("services") or {}).items() if v.get("enabled")}
    workers = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in of_kind(docs, "Deployment")}
    for service in enabled:
        deployment = workers[service.replace("_", "-")]
        assert celery_queues(deployment) == list(queues.SERVICE_QUEUES[service])
        command = containers(deployment)[0]["command"]
        assert command[:4] == ["celery", "-A", f"warrior.{service}.worker", "worker"]
        assert command[command.index("-n") + 1] == f"{service}@%h"
        assert {"--without-gossip", "--without-mingle"} <= set(command)
        pool = command[command.index("-P") + 1]
        assert pool == ("solo" if service == "trainer" else "threads")
        if pool == "solo":  # busy in the main thread while it trains: no ping answers, no liveness probe
            assert "livenessProbe" not in containers(deployment)[0]
            continue
        probe = containers(deployment)[0]["livenessProbe"]["exec"]["command"]
        assert probe[:2] == ["sh", "-c"]
        assert f"celery -A warrior.{service}.worker inspect ping" in probe[2]
        assert probe[2].endswith(f"-d {service}@$HOSTNAME")


def test_every_queue_has_a_consumer() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["services"]) == set(queues.SERVICE_QUEUES)
    consumed = {q for qs in queues.SERVICE_QUEUES.values() for q in qs}
    assert consumed == set(queues.QUEUES)


def test_grpc_port_is_the_codes() -> None:
    for scenario in SCENARIOS:
        docs = render_scenario(scenario)
        grpc = yaml.safe_load(scenario.read_text()).get("grpc", {})
        locked = grpc.get("tls", {}).get("enabled") or grpc.get("token", {}).get("existingSecret")
        health = [{"name": "health", "containerPort": queues.DEFAULT_HEALTH_PORT, "protocol": "TCP"}]
        for doc in (d for d in of_kind(docs, "Deployment") if is_expert(d)):
            ports = [p for p in containers(doc)[0]["ports"] if p["name"] != "metrics"]  # see test_chart_metrics.py
            assert ports == [{"name": "grpc", "containerPort": queues.DEFAULT_GRPC_PORT, "protocol": "TCP"}] + (
                health if locked else []
            )
        # The metrics Service and NetworkPolicy (the metrics port alone) are asserted by test_chart_metrics.py,
        # the web viewer's (its HTTP port) by test_chart_web.py.
        others = [d for d in docs if not d["metadata"]["name"].endswith(("-metrics", "-web"))]
        for doc in of_kind(others, "Service"):
            assert [p["port"] for p in doc["spec"]["ports"]] == [queues.DEFAULT_GRPC_PORT]
        for doc in of_kind(others, "NetworkPolicy"):
            for rule in doc["spec"].get("ingress", []):
                assert [p["port"] for p in rule["ports"]] == [queues.DEFAULT_GRPC_PORT]


def test_every_keda_trigger_names_a_queue_its_worker_consumes() -> None:
    from kombu.transport.redis import Channel

    docs = render_scenario(KEDA)
    scaled = of_kind(docs, "ScaledObject")
    assert len(scaled) == 5  # dataset_builder uses an HPA in this scenario
    for obj in scaled:
        target = by_name(docs, "Deployment", obj["spec"]["scaleTargetRef"]["name"])
        consumed = celery_queues(target)
        lists = set()
        for trigger in obj["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            name = trigger["metadata"]["listName"]
            assert name.split(Channel.sep)[0] in consumed, f"{obj['metadata']['name']} watches {name!r}"
            lists.add(name)
        # Both the plain list (priority 0: newcomers' work) and the default priority's list are watched.
        assert lists == {q for q in consumed} | {f"{q}{Channel.sep}5" for q in consumed}
        assert "replicas" not in target["spec"], "an autoscaled Deployment must leave replicas to the autoscaler"
    assert of_kind(docs, "HorizontalPodAutoscaler")[0]["spec"]["scaleTargetRef"]["name"] == (
        "arena-warrior-dataset-builder"
    )
    auth = of_kind(docs, "TriggerAuthentication")
    assert len(auth) == 1
    assert auth[0]["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "warrior-dev-redis", "key": "redis-password"}
    ]


def test_keda_lists_are_where_celery_puts_the_messages(redis_url: str) -> None:
    """Send tasks the way the pipeline does (send_task by name, newcomers' work at PRIORITY_NEWCOMER,
    the rest at the default) and find every message in the lists KEDA watches for its queue."""
    import json

    import redis

    from warrior.common.celery_app import make_celery
    from warrior.common.settings import Settings

    pipeline = json.loads((CHART / "files" / "pipeline.json").read_text())
    settings = Settings.from_env()
    app = make_celery("chart-test", Settings(**{**settings.__dict__, "redis_url": redis_url}))
    app.send_task(queues.TASK_BATTLE, args=["c", "i"])
    app.send_task(queues.TASK_BATTLE, args=["c", "j"], priority=app.conf.task_default_priority)
    app.send_task(queues.TASK_BACKFILL, args=["c", "i", "n"], priority=queues.PRIORITY_NEWCOMER)
    app.send_task(queues.TASK_MINE, args=["c", "e", 0])
    app.send_task(queues.TASK_SCORE, args=["c", "i"])
    app.send_task(queues.TASK_RUN_PROGRAMS, args=[[{"source": "pass"}]])
    client = redis.Redis.from_url(redis_url)
    try:
        waiting = {q: sum(client.llen(name) for name in pipeline["redisLists"][q]) for q in queues.QUEUES}
    finally:
        client.close()
    assert waiting == {"mine": 1, "screen": 0, "battle": 3, "score": 1, "dataset": 0, "train": 0, "execute": 1}


# -- security -----------------------------------------------------------------------------------
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|API_KEY|TOKEN|CREDENTIAL", re.I)


def _all_env(doc: Doc) -> list[Doc]:
    return [e for c in containers(doc, init=True) for e in c.get("env", [])]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_credentials_only_as_secret_key_refs(scenario: Path) -> None:
    docs = render_scenario(scenario)
    assert not of_kind(docs, "Secret"), "the chart never creates Secrets: credentials come from existing ones"
    refs = 0
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for env in _all_env(doc):
            if SECRET_NAMES.search(env["name"]) and env["name"].endswith("_FILE"):
                continue  # a path to a mounted Secret: tests/test_chart_security.py checks where it points
            if SECRET_NAMES.search(env["name"]):
                assert "value" not in env, f"{doc['metadata']['name']}: {env['name']} has a literal value"
                assert set(env["valueFrom"]) == {"secretKeyRef"}
                refs += 1
            userinfo = re.search(r"://([^/@]*)@", env.get("value", ""))
            if userinfo:  # at most a user name (a Redis ACL user); passwords reach the pods as secretKeyRef only
                assert not re.search(r"[:$]", userinfo.group(1)), f"{env['name']} carries credentials"
    assert refs >= 3
    text = yaml.safe_dump_all(list(docs))
    for word in ("minioadmin", "dev-only", "changeme"):
        assert word not in text


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_notes_render(scenario: Path) -> None:
    out = helm("install", "arena", str(CHART), "--namespace", "warrior", "--dry-run=client", values=[scenario])
    notes = out[out.index("NOTES:") :]
    assert "Workers (Celery queue -> Deployment):" in notes
    for name in (e["name"] for e in yaml.safe_load(scenario.read_text()).get("experts", [])):
        assert name in notes


def test_a_shared_volume_can_be_the_store() -> None:
    docs = render(MINIMAL, {"objectStore": {"url": "file:///var/lib/warrior-store", "claimName": "arena-store"}})
    for doc in (d for d in docs if d["kind"] in ("Deployment", "Job")):
        pod = doc["spec"]["template"]["spec"]
        assert {"name": "store", "persistentVolumeClaim": {"claimName": "arena-store"}} in pod["volumes"]
        for container in containers(doc):
            assert {"name": "store", "mountPath": "/var/lib/warrior-store"} in container["volumeMounts"]


def test_pods_run_as_non_root_with_a_read_only_root() -> None:
    for scenario in SCENARIOS:
        for doc in render_scenario(scenario):
            if doc["kind"] not in ("Deployment", "Job"):
                continue
            pod = doc["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["automountServiceAccountToken"] is False
            for container in containers(doc, init=True):
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert not container["image"].endswith(":latest")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_standard_labels_everywhere(scenario: Path) -> None:
    for doc in render_scenario(scenario):
        labels = doc["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of", "component"):
            assert f"app.kubernetes.io/{key}" in labels, f"{doc['kind']}/{doc['metadata']['name']} lacks {key}"
        assert labels["app.kubernetes.io/instance"] == "arena"


def test_pdbs_select_their_pods() -> None:
    docs = render_scenario(GPU)
    pdbs = of_kind(docs, "PodDisruptionBudget")
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert len(pdbs) == len(deployments) - 1  # the trainer's PDB is off by default
    for pdb in pdbs:
        selected = deployments[pdb["metadata"]["name"]]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= selected.items()


# -- jobs ---------------------------------------------------------------------------------------
def test_trainer_job_runs_warrior_train_on_its_config_map() -> None:
    docs = render_scenario(GPU)
    job = of_kind(docs, "Job")[0]
    command = containers(job)[0]["command"]
    assert command == ["warrior-train", "--config", "/etc/warrior/train.yaml"]
    config_map = by_name(docs, "ConfigMap", job["metadata"]["name"])
    config = yaml.safe_load(config_map["data"]["train.yaml"])
    assert config == yaml.safe_load(GPU.read_text())["trainerJob"]["config"]
    # A new config is a new Job (Jobs are immutable); the same config keeps its name.
    changed = render(GPU, {"trainerJob": {"config": {**config, "output": "other"}}})
    assert of_kind(changed, "Job")[0]["metadata"]["name"] != job["metadata"]["name"]
    assert of_kind(render(GPU), "Job")[0]["metadata"]["name"] == job["metadata"]["name"]


def test_trainer_job_config_is_a_valid_training_file() -> None:
    trainer_config = pytest.importorskip("warrior.trainer.config")
    for scenario in SCENARIOS:
        for job in of_kind(render_scenario(scenario), "Job"):
            if job["metadata"]["labels"]["app.kubernetes.io/component"] != "trainer-job":
                continue
            text = by_name(render_scenario(scenario), "ConfigMap", job["metadata"]["name"])["data"]["train.yaml"]
            trainer_config.parse_train_config(yaml.safe_load(text))


def test_campaign_job_config_is_a_valid_campaign() -> None:
    from warrior.common.campaign_config import parse_campaign_config

    docs = render_scenario(KEDA)
    job = of_kind(docs, "Job")[0]
    command = containers(job)[0]["command"]
    assert command[:5] == ["warrior", "campaign", "start", "--config", "/etc/warrior/campaign.yaml"]
    text = by_name(docs, "ConfigMap", job["metadata"]["name"])["data"]["campaign.yaml"]
    config = parse_campaign_config(yaml.safe_load(text))
    deployed = {
        containers(d)[0]["command"][containers(d)[0]["command"].index("--name") + 1]
        for d in of_kind(docs, "Deployment")
        if is_expert(d)
    }
    assert set(config.expert_names) <= deployed


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in values if f"`{key}" not in readme]
    for section in ("expertDefaults", "trainerJob", "campaignJob"):
        missing += [f"{section}.{key}" for key in values[section] if key not in readme]
    missing += [f"services.<s>.{key}" for key in values["services"]["judge"] if key not in readme]
    assert not missing, f"charts/warrior/README.md does not mention {missing}"
