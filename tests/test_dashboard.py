"""The Grafana dashboard asks only for series the code exports.

Every PromQL expression of charts/warrior/files/grafana-dashboard.json (panels and template variables) is
parsed with a real PromQL parser; each metric name it selects must be a sample name that warrior.common.metrics
exposes. The exposed names are taken from prometheus-client's own text output (counters' `_total`, histograms'
`_bucket`/`_sum`/`_count`), so renaming a metric, or changing its type, fails here until the dashboard follows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from warrior.common import metrics

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "charts" / "warrior" / "files" / "grafana-dashboard.json"
# Grafana's variables, as a query would be sent.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def exposed_names() -> set[str]:
    """The sample names each metric of warrior.common.metrics puts in prometheus-client's exposition,
    from a twin of it (same name, type and labels) with one child observed in a private registry."""
    registry = CollectorRegistry()
    names: set[str] = set()
    for metric in metrics.ALL:
        labels = list(metric._labelnames)
        kind = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[metric._type]
        twin = kind(metric._name, metric._documentation, labels, registry=registry)
        child = twin.labels(*["x"] * len(labels)) if labels else twin
        child.observe(1) if isinstance(child, Histogram) else child.inc()  # type: ignore[union-attr]
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        names |= {sample.name for sample in family.samples}
    return names


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) of every target and query variable."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            yield f"variable {variable['name']!r}", found.group(1) if found else query


def selected_metrics(node: Any) -> Iterator[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        return
    for attribute in ("expr", "lhs", "rhs", "vector_selector", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, str | int | float):
            yield from selected_metrics(child)
    for arg in getattr(node, "args", None) or ():
        yield from selected_metrics(arg)


def parse(expr: str) -> Any:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql_parser.parse(expr)


def test_the_exposition_names_match_what_the_module_declares() -> None:
    assert exposed_names() - {n for n in exposed_names() if n.endswith("_created")} <= metrics.exported_series()
    assert {n for n in metrics.exported_series() if not n.endswith("_created")} <= exposed_names()


def test_every_dashboard_query_selects_series_the_code_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exposed_names()
    used: set[str] = set()
    unknown = []
    for where, expr in expressions(dashboard):
        names = set(selected_metrics(parse(expr)))
        assert names, f"{where}: {expr!r} selects no metric"
        used |= names
        unknown += [f"{where}: {name}" for name in sorted(names - exported)]
    assert not unknown, "the dashboard asks for series nothing exports:\n" + "\n".join(unknown)
    # What the dashboard is for: each of these families appears on it.
    for family in ("warrior_tasks_total", "warrior_queue_depth", "warrior_task_seconds_sum",
                   "warrior_expert_in_flight", "warrior_expert_waiting", "warrior_expert_completion_tokens_total",
                   "warrior_task_failures_total", "warrior_dead_letters_total", "warrior_expert_refusals_total",
                   "warrior_executor_runs_total", "warrior_campaign_dropped"):  # fmt: skip
        assert family in used, f"no panel shows {family}"


def test_a_renamed_metric_is_caught() -> None:
    """The check above is not vacuous: a dashboard query naming a series that does not exist is found."""
    exported = exposed_names()
    assert set(selected_metrics(parse("sum by (task) (rate(warrior_tasks_total[$__rate_interval]))"))) <= exported
    renamed = parse('histogram_quantile(0.9, sum by (le) (rate(warrior_task_duration_seconds_bucket{a="b"}[5m])))')
    assert set(selected_metrics(renamed)) - exported == {"warrior_task_duration_seconds_bucket"}
    nested = parse("max(warrior_queue_unacked) / on() group_left topk(1, -warrior_campaign_rows offset 5m)")
    assert set(selected_metrics(nested)) == {"warrior_queue_unacked", "warrior_campaign_rows"}
