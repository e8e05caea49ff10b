"""On-topic screening: how well the classifier keeps programming requests and drops the rest.

    python bench/topic.py [--min-score 0.4] [--out bench/results/topic.json]

Scores the held-out set (bench/data/topic_heldout.jsonl, hand-labelled "coding" / "other", never
used to choose the classifier's prototypes, keywords, weights or threshold) and the development set
it was tuned on (services/instruction_miner/tests/data/topic_dev.jsonl). For each it prints, for the
"coding" class: precision (of the requests kept, the share that are coding), recall (of the coding
requests, the share kept), F1, the off-topic recall (of the other requests, the share dropped), the
confusion matrix and every misclassified request with its score; then writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "bench" / "data" / "topic_heldout.jsonl"
DEV = ROOT / "services" / "instruction_miner" / "tests" / "data" / "topic_dev.jsonl"
LABELS = ("coding", "other")


def load(path: Path) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        if row.get("label") not in LABELS or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}: bad row {row!r}")
    return rows


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def auc(scores: list[float], positive: list[bool]) -> float | None:
    """Area under the ROC curve: the chance that a coding request outscores an other one (ties count half)."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return round(wins / (len(pos) * len(neg)), 4)


def evaluate(rows: list[dict[str, str]], min_score: float) -> dict[str, Any]:
    from warrior.instruction_miner.topic import classifier

    clf = classifier()
    started = time.perf_counter()
    scored = clf.scores([row["text"] for row in rows])
    batch_ms = (time.perf_counter() - started) * 1000 / max(len(rows), 1)
    started = time.perf_counter()
    for row in rows[:50]:
        clf.score(row["text"])  # one at a time, as screening calls it
    single_ms = (time.perf_counter() - started) * 1000 / max(min(len(rows), 50), 1)
    coding = [row["label"] == "coding" for row in rows]
    kept = [s.score >= min_score for s in scored]
    tp = sum(c and k for c, k in zip(coding, kept, strict=True))
    fp = sum(not c and k for c, k in zip(coding, kept, strict=True))
    fn = sum(c and not k for c, k in zip(coding, kept, strict=True))
    tn = sum(not c and not k for c, k in zip(coding, kept, strict=True))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision and recall else None
    errors = [
        {"text": row["text"], "label": row["label"], "decision": "kept" if k else "dropped"} | s.record()
        for row, s, k, c in zip(rows, scored, kept, coding, strict=True)
        if k != c
    ]
    return {
        "rows": len(rows),
        "coding": sum(coding),
        "other": len(rows) - sum(coding),
        "min_score": min_score,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "off_topic_recall": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, len(rows)),
        "auc": auc([s.score for s in scored], coding),
        "confusion": {"coding": {"kept": tp, "dropped": fn}, "other": {"kept": fp, "dropped": tn}},
        "ms_per_request_batched": round(batch_ms, 2),
        "ms_per_request_single": round(single_ms, 2),
        "misclassified": sorted(errors, key=lambda e: e["score"]),
    }


def report(name: str, result: dict[str, Any]) -> str:
    from warrior.cli.tables import table

    c = result["confusion"]
    lines = [
        f"\n{name}: {result['rows']} requests ({result['coding']} coding, {result['other']} other), "
        f"kept when score >= {result['min_score']}",
        table([result], ["precision", "recall", "f1", "off_topic_recall", "accuracy", "auc",
                         "ms_per_request_single"]),
        "",
        table(
            [{"label": label, "kept": c[label]["kept"], "dropped": c[label]["dropped"]} for label in LABELS],
            ["label", "kept", "dropped"],
        ),
    ]  # fmt: skip
    if result["misclassified"]:
        lines.append("\nmisclassified (score, label, decision, text):")
        for e in result["misclassified"]:
            text = " ".join(e["text"].split())
            lines.append(f"  {e['score']:.3f}  {e['label']:<6}  {e['decision']:<7}  {text[:100]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from warrior.instruction_miner.topic import DEFAULT_MIN_SCORE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE, help="keep at or above this score")
    parser.add_argument("--heldout", type=Path, default=HELDOUT)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "topic.json")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },  # the timings depend on it
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classifier": "warrior.instruction_miner.topic (all-MiniLM-L6-v2 prototypes + lexical signal)",
    }
    for name, path in (("heldout", args.heldout), ("dev", args.dev)):
        print(f"scoring {path} ...", file=sys.stderr, flush=True)
        results[name] = {"path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)}
        results[name] |= evaluate(load(path), args.min_score)
    print(report("held-out set", results["heldout"]))
    print(report("development set (the classifier was tuned on it)", results["dev"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nresults: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
