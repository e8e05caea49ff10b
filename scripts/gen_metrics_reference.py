"""Write the table of Prometheus series in docs/observability.md from warrior.common.metrics.

The table (between the `metrics-reference` markers) lists every series of `metrics.ALL` with its type, labels,
the processes that export it and its help text. tests/test_metrics_reference.py fails when the committed table
differs from the code.

    python scripts/gen_metrics_reference.py           # rewrite the table (`make docs`)
    python scripts/gen_metrics_reference.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from warrior.common import metrics

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "observability.md"
START = "<!-- metrics-reference:start -->"
END = "<!-- metrics-reference:end -->"

# Which processes export a series, by the start of its name (first match wins).
SOURCES = (
    ("warrior_expert_", "experts (`warrior-expert`)"),
    ("warrior_executor_", "executor worker"),
    ("warrior_task", "every Celery worker"),
    ("warrior_dead_letters", "every Celery worker"),
    ("warrior_consumer_", "every Celery worker"),
    ("warrior_ledger_", "workers that call experts"),
    ("warrior_controller_", "controller (every replica)"),
    ("warrior_campaign_", "controller (the leader)"),
    ("warrior_queue_", "controller (the leader)"),
)


def _source(name: str) -> str:
    return next(source for prefix, source in SOURCES if name.startswith(prefix))


def _series(metric: metrics.Counter | metrics.Gauge | metrics.Histogram) -> str:
    name = metric._name
    if metric._type == "counter":
        return f"`{name}_total`"
    if metric._type == "histogram":
        return f"`{name}_bucket`, `_sum`, `_count`"
    return f"`{name}`"


def render_table() -> str:
    rows = ["| series | type | labels | exported by | meaning |", "| --- | --- | --- | --- | --- |"]
    for metric in metrics.ALL:
        labels = ", ".join(f"`{label}`" for label in metric._labelnames) or "none"
        meaning = metric._documentation.replace("|", "\\|")
        rows.append(f"| {_series(metric)} | {metric._type} | {labels} | {_source(metric._name)} | {meaning} |")
    return "\n".join(rows) + "\n"


def render_doc(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render_table()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/observability.md is out of date")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    wanted = render_doc(text)
    if args.check:
        if wanted != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
