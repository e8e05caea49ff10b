"""Fetch llama.cpp's Hugging Face -> GGUF converter and verify it, for the trainer's GGUF export.

The `gguf` package on PyPI reads and writes GGUF files but cannot convert a model; the converter
(`convert_hf_to_gguf.py` with its `conversion/` package) lives in llama.cpp's source tree, and it
needs the `gguf-py` of that same tree (the PyPI release lags behind it). The tree ships inside the
llama-cpp-python source distribution, pinned here to the version the Makefile builds, so the
converter matches the llama.cpp that loads its output.

The sdist is downloaded with pip (which caches it), checked against a pinned sha256, and only the
converter, its `conversion/` package, `gguf-py/gguf/` and the licence are extracted into the
destination (default `.cache/gguf-converter/`). A destination whose recorded digest matches is
left alone, so a second run changes nothing. The trainer finds the converter there, or wherever
the environment variable WARRIOR_GGUF_CONVERTER points.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

REQUIREMENT = "llama-cpp-python==0.3.36"
SDIST = "llama_cpp_python-0.3.36.tar.gz"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
TREE = PurePosixPath("llama_cpp_python-0.3.36/vendor/llama.cpp")
# Paths under the llama.cpp tree to extract: files, or folders (everything below them).
WANTED = ("convert_hf_to_gguf.py", "conversion", "gguf-py/gguf", "gguf-py/LICENSE", "LICENSE")
MARKER = "warrior-source.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(sdist_dir: Path) -> Path:
    """The verified sdist, downloaded with pip unless a copy with the right digest is already there."""
    target = sdist_dir / SDIST
    if not (target.is_file() and sha256_of(target) == SHA256):
        sdist_dir.mkdir(parents=True, exist_ok=True)
        print(f"  downloading {REQUIREMENT} (source distribution)", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                # The sdist of this one package; its build backend's own requirements may come as
                # wheels (":all:" would build them from source too, in chains, for many minutes).
                "--no-binary",
                REQUIREMENT.split("==")[0],
                "--dest",
                str(sdist_dir),
                REQUIREMENT,
            ],
            check=True,
        )
        if not target.is_file():
            raise SystemExit(f"error: pip did not download {SDIST}")
    actual = sha256_of(target)
    if actual != SHA256:
        raise SystemExit(f"error: {SDIST}: sha256 {actual} does not match the pinned {SHA256}")
    return target


def _wanted(relative: PurePosixPath) -> bool:
    text = relative.as_posix()
    return any(text == w or text.startswith(w + "/") for w in WANTED)


def extract(sdist: Path, dest: Path) -> None:
    """Extract the converter's files from ``sdist`` into ``dest`` (replaced as a whole)."""
    partial = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        count = 0
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive.getmembers():
                path = PurePosixPath(member.name)
                if not member.isfile() or TREE not in path.parents:
                    continue
                relative = path.relative_to(TREE)
                if not _wanted(relative) or "__pycache__" in relative.parts:
                    continue
                source = archive.extractfile(member)
                if source is None:
                    continue
                target = partial.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                count += 1
        if not (partial / "convert_hf_to_gguf.py").is_file() or not (partial / "gguf-py" / "gguf").is_dir():
            raise SystemExit(f"error: {SDIST} does not hold the converter where expected ({TREE})")
        (partial / MARKER).write_text(json.dumps({"source": SDIST, "sha256": SHA256, "files": count}) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        partial.rename(dest)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


def is_current(dest: Path) -> bool:
    """Whether ``dest`` already holds the converter of the pinned sdist."""
    try:
        recorded = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("sha256") == SHA256 and (dest / "convert_hf_to_gguf.py").is_file()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=".cache/gguf-converter", help="where the converter goes")
    parser.add_argument("--sdists", default=".cache/sdists", help="where the downloaded sdist is kept")
    args = parser.parse_args()
    dest = Path(args.dest)
    if is_current(dest):
        print(f"gguf converter: {dest}/ present, sha256 ok", flush=True)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    sdist = download_sdist(Path(args.sdists))
    extract(sdist, dest)
    print(f"gguf converter -> {dest}/ (from {SDIST}, sha256 ok)", flush=True)


if __name__ == "__main__":
    main()
