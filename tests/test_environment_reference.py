"""docs/environment.md lists every environment variable the services read.

The names are taken from the code itself (any `WARRIOR_*`, `REDIS_*` or `AWS_*` name quoted in a
service's source), so a new variable without a line in the reference fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "environment.md"
NAME = re.compile(r"\b((?:WARRIOR|REDIS|AWS)_[A-Z0-9_]*[A-Z0-9])\b")
# Prefixes and names quoted in code that are not variables anyone sets.
NOT_VARIABLES = {
    "WARRIOR_",  # a prefix, e.g. in f"WARRIOR_{name}"
}


def variables_in_code() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for source in sorted((ROOT / "services").glob("*/src/warrior/**/*.py")):
        if "_pb2" in source.name:
            continue
        for name in NAME.findall(source.read_text(encoding="utf-8")):
            found.setdefault(name, source.relative_to(ROOT))
    return {name: path for name, path in found.items() if name not in NOT_VARIABLES}


def test_every_variable_the_code_reads_is_documented() -> None:
    documented = set(re.findall(r"`((?:WARRIOR|REDIS|AWS)_[A-Z0-9_]+)`", REFERENCE.read_text(encoding="utf-8")))
    missing = {name: str(path) for name, path in variables_in_code().items() if name not in documented}
    assert not missing, f"docs/environment.md does not list these variables (first seen in): {missing}"


def test_the_scan_finds_the_variables_it_must() -> None:
    # Guards the scan itself: were the pattern or the glob broken, the test above would pass on nothing.
    names = variables_in_code()
    assert {"WARRIOR_HOME", "REDIS_URL", "WARRIOR_STORE_URL", "AWS_SECRET_ACCESS_KEY"} <= set(names)
