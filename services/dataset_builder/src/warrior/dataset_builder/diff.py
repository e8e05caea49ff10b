"""What changed between two versions of a dataset: rows, winners, categories and build settings.

Rows are matched by their instruction id. A row present only in the newer version is *added*, one
present only in the older is *removed*, and one in both whose winner or answer differs is
*changed* (an instruction whose winner flipped after new ratings, for instance).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from warrior.common.store import ObjectStore
from warrior.dataset_builder.card import lineage_field
from warrior.dataset_builder.selection import answer_text
from warrior.dataset_builder.versions import read_manifest, read_rows

# Manifest fields compared, with how each is read; the selection is compared by its settings and counts.
_MANIFEST_FIELDS = ("ratings", "campaigns", "selection_config", "selection_dropped", "screening", "rows")


def _manifest_view(manifest: Mapping[str, Any]) -> dict[str, Any]:
    selection = manifest.get("selection") or {}
    return {
        "ratings": manifest.get("ratings"),
        "campaigns": manifest.get("campaigns"),
        "selection_config": selection.get("config"),
        "selection_dropped": selection.get("dropped"),
        "screening": manifest.get("screening"),
        "rows": manifest.get("rows"),
    }


def _count_changes(a: Counter[str], b: Counter[str]) -> dict[str, dict[str, int]]:
    return {
        key: {"a": a.get(key, 0), "b": b.get(key, 0), "delta": b.get(key, 0) - a.get(key, 0)}
        for key in sorted(set(a) | set(b))
        if a.get(key, 0) != b.get(key, 0)
    }


def diff_versions(store: ObjectStore, name: str, a: str, b: str) -> dict[str, Any]:
    """Differences from version `a` (older) to version `b` (newer) of dataset `name`.

    Returns a JSON-ready dict:
      name, a, b: what was compared;
      rows: {"a": count, "b": count};
      added, removed: instruction ids, sorted;
      changed: [{"instruction_id", "winner": {"a", "b"}, "answer_changed": bool}], sorted by id;
      winners, categories: label -> {"a", "b", "delta"} for each label whose row count changed;
      manifest: field -> {"a", "b"} for each differing field among the ratings snapshot key,
      campaigns, selection settings, selection drop counts, screening drop counts and row count.
    Raises DatasetNotFound when either version is not committed.
    """
    manifest_a, manifest_b = read_manifest(store, name, a), read_manifest(store, name, b)
    rows_a = {r["lineage"]["instruction_id"]: r for r in read_rows(store, manifest_a)}
    rows_b = {r["lineage"]["instruction_id"]: r for r in read_rows(store, manifest_b)}
    changed = []
    for iid in sorted(set(rows_a) & set(rows_b)):
        old, new = rows_a[iid], rows_b[iid]
        winner_a, winner_b = old["lineage"]["winner"], new["lineage"]["winner"]
        answer_changed = answer_text(old) != answer_text(new)
        if winner_a != winner_b or answer_changed:
            changed.append(
                {"instruction_id": iid, "winner": {"a": winner_a, "b": winner_b}, "answer_changed": answer_changed}
            )
    view_a, view_b = _manifest_view(manifest_a), _manifest_view(manifest_b)
    return {
        "name": name,
        "a": manifest_a["version"],
        "b": manifest_b["version"],
        "rows": {"a": len(rows_a), "b": len(rows_b)},
        "added": sorted(set(rows_b) - set(rows_a)),
        "removed": sorted(set(rows_a) - set(rows_b)),
        "changed": changed,
        "winners": _count_changes(
            Counter(lineage_field(r, "winner") for r in rows_a.values()),
            Counter(lineage_field(r, "winner") for r in rows_b.values()),
        ),
        "categories": _count_changes(
            Counter(lineage_field(r, "category") for r in rows_a.values()),
            Counter(lineage_field(r, "category") for r in rows_b.values()),
        ),
        "manifest": {
            key: {"a": view_a[key], "b": view_b[key]} for key in _MANIFEST_FIELDS if view_a[key] != view_b[key]
        },
    }


def _listed(title: str, items: list[str], limit: int) -> list[str]:
    lines = [f"{title} ({len(items)})"]
    lines += [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return lines


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def render_diff(diff: Mapping[str, Any], limit: int = 20) -> str:
    """A plain-text report of :func:`diff_versions`' result; at most `limit` rows listed per section."""
    lines = [
        f"dataset {diff['name']}: {diff['a']} -> {diff['b']}",
        f"rows {diff['rows']['a']} -> {diff['rows']['b']}",
        *_listed("added", list(diff["added"]), limit),
        *_listed("removed", list(diff["removed"]), limit),
    ]
    changed = [
        f"{c['instruction_id']}: winner {c['winner']['a']} -> {c['winner']['b']}"
        + (", answer changed" if c["answer_changed"] else "")
        for c in diff["changed"]
    ]
    lines += _listed("changed", changed, limit)
    for title in ("winners", "categories"):
        counts = diff[title]
        lines.append(f"{title}: " + ("no change" if not counts else ""))
        lines += [f"  {k}: {v['a']} -> {v['b']} ({v['delta']:+d})" for k, v in counts.items()]
    lines.append("manifest: " + ("no change" if not diff["manifest"] else ""))
    lines += [f"  {k}: {_value(v['a'])} -> {_value(v['b'])}" for k, v in diff["manifest"].items()]
    return "\n".join(line.rstrip() for line in lines)
