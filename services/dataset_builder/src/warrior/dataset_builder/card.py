"""The dataset card: a Markdown page that says what a version holds and how it was made.

It lists the version's size and files, its rows by winner, attacker, category and language
(rows without a category or language count as "unknown"), the instruction and answer length
distributions in characters, every row removed on the way (screening before battles, selection at
build time) and the leaderboard of the ratings snapshot the winners were decided by.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from warrior.dataset_builder.selection import DROP_REASONS, answer_text, instruction_text

UNKNOWN = "unknown"


def lineage_field(row: Mapping[str, Any], key: str) -> str:
    """A lineage field as a label: absent or empty values read as "unknown"."""
    value = row.get("lineage", {}).get(key)
    return str(value) if value not in (None, "") else UNKNOWN


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    """min, median, p90 (nearest rank) and max of a list of lengths; zeros for an empty list."""
    if not lengths:
        return {"min": 0, "median": 0, "p90": 0, "max": 0}
    ordered = sorted(lengths)
    n = len(ordered)
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {
        "min": ordered[0],
        "median": median,
        "p90": ordered[max(0, math.ceil(0.9 * n) - 1)],
        "max": ordered[-1],
    }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _counts_table(title: str, counts: Counter[str], total: int) -> list[str]:
    lines = [f"### By {title}", "", f"| {title} | rows | share |", "| --- | ---: | ---: |"]
    for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {key} | {count} | {100 * count / max(total, 1):.1f}% |")
    if not counts:
        lines.append("| (none) | 0 | |")
    return [*lines, ""]


def _drops_table(drops: Mapping[str, int]) -> list[str]:
    lines = ["| reason | rows |", "| --- | ---: |"]
    lines += [f"| {reason} | {count} |" for reason, count in sorted(drops.items())]
    lines.append(f"| **total** | {sum(drops.values())} |")
    return lines


def _leaderboard(leaderboard: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| expert | rating | 95% interval | battles | win rate |", "| --- | ---: | --- | ---: | ---: |"]
    for r in leaderboard:
        win_rate = r.get("win_rate")
        shown = f"{100 * float(win_rate):.1f}%" if win_rate is not None else "n/a"
        lines.append(
            f"| {r['expert']} | {r['rating']} | {r.get('ci_low', 'n/a')} .. {r.get('ci_high', 'n/a')} "
            f"| {r.get('battles', 'n/a')} | {shown} |"
        )
    if not leaderboard:
        lines.append("| (no ratings) | | | | |")
    return lines


def render_card(
    name: str,
    version: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    campaigns: Sequence[str],
    ratings_key: str,
    leaderboard: Sequence[Mapping[str, Any]],
    selection: Mapping[str, Any] | None = None,
    screening: Mapping[str, int] | None = None,
    files: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """The card of a version.

    selection: the manifest's selection record (config, embedder, drops per reason), if any.
    screening: instructions dropped before battles, reason -> count, if known.
    files: format name -> that format's shards ({"key", "rows", "bytes"?}), for the size table.
    """
    total = len(rows)
    instruction_lengths = [len(instruction_text(r)) for r in rows]
    answer_lengths = [len(answer_text(r)) for r in rows]
    lines = [
        f"# Dataset `{name}` version `{version}`",
        "",
        f"{total} chat rows (`messages`: a user instruction and the assistant answer that won its battle), "
        "each with its lineage (attacker, winner, judges' votes, scores, model revisions, ratings snapshot).",
        "",
        f"- campaigns: {', '.join(f'`{c}`' for c in campaigns) or '(none)'}",
        f"- winners decided by the ratings snapshot `{ratings_key}`",
        "",
        "## Size",
        "",
        f"- rows: {total}",
        f"- instruction characters: {sum(instruction_lengths)}",
        f"- answer characters: {sum(answer_lengths)}",
        "",
    ]
    if files:
        lines += ["| format | files | rows | bytes |", "| --- | ---: | ---: | ---: |"]
        for fmt, shards in files.items():
            size = sum(int(s.get("bytes", 0)) for s in shards)
            lines.append(f"| {fmt} | {len(shards)} | {sum(int(s['rows']) for s in shards)} | {size} |")
        lines.append("")
    lines += [
        "## Loading",
        "",
        "In a folder written by `export_version`:",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("parquet", data_files="parquet/*.parquet", split="train")  # lineage: a dict',
        'ds = load_dataset("json", data_files="jsonl/*.jsonl", split="train")  # lineage: a JSON string',
        "```",
        "",
        "Both give a `messages` column that TRL's `SFTTrainer` takes as is.",
        "",
        "## Rows",
        "",
    ]
    for key in ("winner", "attacker", "category", "language"):
        lines += _counts_table(key, Counter(lineage_field(r, key) for r in rows), total)
    lines += [
        "## Lengths (characters)",
        "",
        "| text | min | median | p90 | max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, lengths in (("instruction", instruction_lengths), ("answer", answer_lengths)):
        stats = length_stats(lengths)
        lines.append(f"| {label} | " + " | ".join(_number(stats[k]) for k in ("min", "median", "p90", "max")) + " |")
    lines += ["", "## Rows removed", "", "### Screening (decontamination, filters, deduplication before battles)", ""]
    lines += _drops_table(screening) if screening is not None else ["Not recorded for this version."]
    lines += ["", "### Selection (at build time)", ""]
    if selection is not None:
        config = selection.get("config", {})
        model = selection.get("embedding_model")
        lines += [
            f"- input rows: {selection.get('input_rows', 'n/a')}, kept: {selection.get('kept_rows', 'n/a')}",
            f"- target rows: {config.get('target_rows')}, seed: {config.get('seed')}, "
            f"near-duplicate cosine threshold: {config.get('near_dup_threshold')}",
            f"- instruction embeddings: {model['name']} ({model['revision']})" if model else "- no embeddings used",
            "",
        ]
        dropped = selection.get("dropped", {})
        lines += _drops_table({reason: int(dropped.get(reason, 0)) for reason in DROP_REASONS})
    else:
        lines.append("No selection was applied.")
    lines += ["", "## Leaderboard at build time", "", *_leaderboard(leaderboard), ""]
    return "\n".join(lines)
