"""docs/observability.md's table of series is generated from warrior.common.metrics: a series added, renamed or
re-described without `make docs` fails here."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
try:
    import gen_metrics_reference as gen
finally:
    sys.path.remove(str(ROOT / "scripts"))

from warrior.common import metrics  # noqa: E402


def test_the_table_of_series_is_generated_from_the_code() -> None:
    committed = gen.DOC.read_text(encoding="utf-8")
    assert committed == gen.render_doc(committed), "docs/observability.md is out of date: run `make docs`"


def test_the_table_lists_every_series_once() -> None:
    table = gen.render_table()
    for metric in metrics.ALL:
        assert table.count(f"`{metric._name}") == 1, metric._name
    assert len(table.splitlines()) == len(metrics.ALL) + 2
