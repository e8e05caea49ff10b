"""Render the Helm chart and the kustomize overlays offline and validate what comes out.

The pattern of the Airflow chart's tests: `helm template` into YAML documents, then assertions on the
objects. The binaries come from `make install` (scripts/fetch_helm.py) under .cache/.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "warrior"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
CACHE = ROOT / ".cache"
HELM = CACHE / "bin" / "helm"
KUBECTL = CACHE / "bin" / "kubectl"
KEDA_VALIDATOR = CACHE / "keda-validator"
KEDA_SCHEMAS = CHART / "schemas"
RELEASE = "arena"
NAMESPACE = "warrior"
# The oldest Kubernetes the chart supports (native gRPC probes are GA from 1.27) and the newest
# kubernetes-validate knows.
KUBE_VERSIONS = ("1.27.0", "1.37.0")

Doc = dict[str, Any]


def require_tool(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run `make install` (it runs scripts/fetch_helm.py)")
    return path


class HelmError(Exception):
    pass


def _values_args(values: Sequence[Path | dict[str, Any]], tmp: Path) -> list[str]:
    args: list[str] = []
    for index, item in enumerate(values):
        if isinstance(item, dict):
            path = tmp / f"values-{index}.yaml"
            path.write_text(yaml.safe_dump(item), encoding="utf-8")
            item = path
        args += ["-f", str(item)]
    return args


def helm(*args: str, values: Sequence[Path | dict[str, Any]] = ()) -> str:
    """Run helm; return stdout, raise HelmError with stderr on failure."""
    binary = require_tool(HELM)
    with tempfile.TemporaryDirectory(prefix="chart-values-") as tmp:
        proc = subprocess.run(
            [str(binary), *args, *_values_args(values, Path(tmp))],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if proc.returncode != 0:
        raise HelmError("\n".join(part for part in (proc.stdout.strip(), proc.stderr.strip()) if part))
    return proc.stdout


def render(*values: Path | dict[str, Any], kube_version: str | None = None) -> list[Doc]:
    """`helm template` of the chart with these values files/dicts, as a list of objects."""
    extra = ["--kube-version", kube_version] if kube_version else []
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra, values=values)
    return [doc for doc in yaml.safe_load_all(out) if doc]


@functools.cache
def render_scenario(path: Path) -> tuple[Doc, ...]:
    return tuple(render(path))


def of_kind(docs: Iterable[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def by_name(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def containers(doc: Doc, init: bool = False) -> list[Doc]:
    spec = doc["spec"]["template"]["spec"]
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def is_expert(doc: Doc) -> bool:
    return bool(doc["metadata"]["labels"].get("app.kubernetes.io/component") == "expert")


def celery_queues(deployment: Doc) -> list[str]:
    command = containers(deployment)[0]["command"]
    return list(command[command.index("-Q") + 1].split(","))


@functools.cache
def keda_schema(kind: str) -> dict[str, Any]:
    return dict(json.loads((KEDA_SCHEMAS / f"keda.sh_v1alpha1_{kind}.json").read_text(encoding="utf-8")))


def keda_errors(doc: Doc) -> list[str]:
    """Errors of a KEDA object against the vendored schema of its kind."""
    validator = jsonschema.Draft7Validator(keda_schema(doc["kind"]))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


_KEDA_NODE_SCRIPT = """
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import { readFileSync } from "node:fs";
const kinds = { ScaledObject, TriggerAuthentication };
const docs = JSON.parse(readFileSync(0, "utf8"));
const errors = [];
for (const doc of docs) {
  try { new kinds[doc.kind](doc).validate(); }
  catch (e) { errors.push(`${doc.kind}/${doc.metadata.name}: ${e.message}`); }
}
process.stdout.write(JSON.stringify(errors));
"""


def keda_crd_errors(docs: Sequence[Doc]) -> list[str]:
    """Errors of KEDA objects against KEDA's own CRD schemas (compiled in @kubernetes-models/keda)."""
    require_tool(KEDA_VALIDATOR / "node_modules" / "@kubernetes-models" / "keda" / "package.json")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js, then `make install`")
    script = KEDA_VALIDATOR / "validate.mjs"
    if not script.is_file() or script.read_text(encoding="utf-8") != _KEDA_NODE_SCRIPT:
        script.write_text(_KEDA_NODE_SCRIPT, encoding="utf-8")
    proc = subprocess.run(
        [node, str(script)], input=json.dumps(list(docs)), capture_output=True, text=True, timeout=60, check=True
    )
    return list(json.loads(proc.stdout))
