"""The service images, without building them (`make images-check` builds and runs them).

Each image installs its service's local `warrior-*` dependencies, followed recursively through the
pyproject.toml files as they are when the test runs, from the tree: copied into the build stage and
installed by the same or an earlier `pip install`, never looked up by name on the public index.
The image list follows services/*/Dockerfile*, torch's source is a build argument, and every image
has the checks `make images-check` runs inside it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("warrior_images_script", ROOT / "scripts" / "images.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


images = _load()
IMAGES = images.discover()
IDS = [i.name for i in IMAGES]


def test_every_dockerfile_is_an_image() -> None:
    dockerfiles = sorted(ROOT.glob("services/*/Dockerfile*"))
    assert [i.dockerfile for i in IMAGES] == dockerfiles
    assert len(set(IDS)) == len(IDS)
    assert "warrior-scorer" in IDS and "warrior-cli" in IDS
    for image in IMAGES:
        assert (image.dockerfile.parent / "pyproject.toml").is_file(), image.name


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_local_dependencies_are_closed(image: Any) -> None:
    assert images.closure_problems(image) == []


def test_the_cli_installs_what_its_pyproject_needs() -> None:
    """The CLI pulls most services in; whatever its pyproject.toml lists today is installed from the tree."""
    cli = ROOT / "services" / "cli"
    needed = images.local_requirements(cli)
    assert {"warrior-common", "warrior-dataset-builder"} <= needed
    text = (cli / "Dockerfile").read_text(encoding="utf-8")
    folders = {path.name: name for name, path in images.local_packages().items()}
    for folder, name in folders.items():
        if name in needed:
            assert f"COPY services/{folder}/ services/{folder}/" in text
            assert f"./services/{folder}" in text


def _tree(tmp_path: Path, dockerfile: str) -> tuple[Path, Any]:
    packages = {
        "a": ('"warrior-b", "requests>=2"', ""),
        "b": ('"warrior-c[extra]"', ""),
        "c": ('"numpy"', 'extra = ["warrior-d"]'),
        "d": ("", ""),
    }
    for folder, (deps, extras) in packages.items():
        (tmp_path / "services" / folder).mkdir(parents=True)
        (tmp_path / "services" / folder / "pyproject.toml").write_text(
            f'[project]\nname = "warrior-{folder}"\ndependencies = [{deps}]\n'
            + (f"[project.optional-dependencies]\n{extras}\n" if extras else ""),
            encoding="utf-8",
        )
    path = tmp_path / "services" / "a" / "Dockerfile"
    path.write_text(dockerfile, encoding="utf-8")
    return tmp_path, images.discover(tmp_path)[0]


HEADER = "ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE} AS build\n"
FINAL = "FROM ${PYTHON_IMAGE}\nCOPY --from=build /opt/venv /opt/venv\n"


def test_closure_follows_dependencies_and_extras(tmp_path: Path) -> None:
    root, image = _tree(
        tmp_path,
        HEADER
        + "COPY services/a/ services/a/\nCOPY services/b/ services/b/\nCOPY services/c/ services/c/\n"
        + "RUN pip install ./services/c \\\n && /opt/venv/bin/pip install ./services/b ./services/a\n"
        + FINAL,
    )
    assert images.local_requirements(root / "services" / "a", root=root) == {"warrior-b", "warrior-c", "warrior-d"}
    # c is installed without its extra, first; b asks for c[extra], which needs d: so do b and a.
    assert images.closure_problems(image, root) == [
        "warrior-a needs warrior-d (services/d), not installed with it or before it",
        "warrior-b needs warrior-d (services/d), not installed with it or before it",
    ]


def test_closure_complete_and_order(tmp_path: Path) -> None:
    copies = "".join(f"COPY services/{f}/ services/{f}/\n" for f in "abcd")
    install = "RUN pip install ./services/d ./services/c ./services/b ./services/a\n"
    root, image = _tree(tmp_path, HEADER + copies + install + FINAL)
    assert images.closure_problems(image, root) == []
    # b installed after a: pip would look warrior-b up on the index while installing a.
    (root / "services" / "a" / "Dockerfile").write_text(
        HEADER
        + copies
        + "RUN pip install ./services/d ./services/c ./services/a\nRUN pip install ./services/b\n"
        + FINAL,
        encoding="utf-8",
    )
    assert any("warrior-a needs warrior-b" in p for p in images.closure_problems(image, root))
    # installed but never copied, and a package never installed at all
    (root / "services" / "a" / "Dockerfile").write_text(
        HEADER + "COPY services/a/ services/a/\nRUN pip install ./services/b\n" + FINAL, encoding="utf-8"
    )
    problems = images.closure_problems(image, root)
    assert "pip installs ./services/b before copying it" in problems
    assert any("never installs its own package warrior-a" in p for p in problems)


TORCH = [i for i in IMAGES if not i.gpu and "torch==" in i.dockerfile.read_text(encoding="utf-8")]


def test_images_needing_torch_install_it_first() -> None:
    """Every CPU image whose packages need torch (directly or via sentence-transformers) installs it itself."""
    for image in IMAGES:
        if image.gpu:
            continue
        needs = images.requirements(image.dockerfile.parent)
        names = {images._normal(m.group(1)) for m in map(images._NAME.match, needs) if m}
        if names & {"torch", "sentence-transformers"}:
            assert image in TORCH, f"{image.name} needs torch: install its CPU build before the services"
        else:
            assert image not in TORCH, f"{image.name} installs torch it does not need"


@pytest.mark.parametrize("image", TORCH, ids=[i.name for i in TORCH])
def test_torch_source_is_a_build_argument(image: Any) -> None:
    text = image.dockerfile.read_text(encoding="utf-8")
    assert f"ARG TORCH_INDEX_URL={images.PYTORCH_CPU_INDEX}" in text
    assert "ARG TORCH_FIND_LINKS=\n" in text
    assert "${TORCH_INDEX_URL:+--index-url=$TORCH_INDEX_URL}" in text
    assert "${TORCH_FIND_LINKS:+--find-links=$TORCH_FIND_LINKS}" in text
    assert "download.pytorch.org" not in text.replace(f"ARG TORCH_INDEX_URL={images.PYTORCH_CPU_INDEX}", "")
    # torch==X without a local label: +cpu from the CPU index or a wheel folder, PyPI's build otherwise.
    assert re.search(r"\btorch==\d+\.\d+\.\d+\s", text)
    assert text.index("torch==") < text.index("./services/")


def test_torch_options() -> None:
    cli = next(i for i in IMAGES if i.name == "warrior-cli")
    scorer = next(i for i in IMAGES if i.name == "warrior-scorer")
    wheels = Path("/opt/wheels")
    assert images.torch_options(scorer, "buildah", "", wheels) == []
    assert images.torch_options(cli, "buildah", "", wheels) == [
        "--build-arg",
        "TORCH_INDEX_URL=",
        "--volume",
        "/opt/wheels:/wheels:ro",
        "--build-arg",
        "TORCH_FIND_LINKS=/wheels",
    ]
    assert images.torch_options(cli, "docker", None, wheels) == []  # docker build mounts no host folder


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_each_image_has_its_checks(image: Any) -> None:
    checks = images.plan_checks(image.dockerfile)
    assert [c.name for c in checks] == ["pip check", "entry point", "healthcheck"]
    _, cmd, health = images.image_commands(image.dockerfile)
    app = images._celery_app(cmd)
    if app:
        assert checks[1].argv == ["python", "-c", f"import {app}"]
    # The HEALTHCHECK runs as written, alone or once a worker or server it asks is up.
    assert checks[2].argv == health or images.shlex.join(health) in checks[2].argv[-1]


def test_make_targets_use_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("images", "images-check"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe, target
        assert "scripts/images.py" in recipe.group(1)
    assert "images-check" in makefile and "bench/results/images.json" in makefile
