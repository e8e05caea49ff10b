"""The judge-quality panel: how each judge behaves, and which judges are trusted to decide winners.

Per judge, over all its judgments (each one pair on one instruction, asked in both orders):
- flip rate: share of judgments whose two orders disagree (a judge that answers by position flips
  every time);
- first-position preference: share of single-order verdicts that chose the answer shown first;
- longer-answer preference: share of its decisive votes that went to the longer answer;
- agreement: Cohen's kappa between its final votes and other judges' votes on the same pair and
  instruction (None when no other judge saw the same items).
A judge whose flip rate exceeds the limit is excluded once there are enough judgments to tell
(`min_judgments`), or before that when the evidence is already conclusive (the lower end of the
95% Wilson interval of its flip rate is above the limit: 4 flips in 4 judgments is): its votes no
longer count towards ratings or winners, and the panel says why.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

LABELS = ("first", "second", "tie")


def order_verdict(order: Mapping[str, Any]) -> str:
    """One order's verdict as "A", "B" or "tie", from the parsed text or from the probabilities."""
    if "verdict" in order:
        return str(order["verdict"])
    probs = order["probs"]
    return max(("A", "B", "tie"), key=lambda k: float(probs.get(k, 0.0)))


def final_label(judgment: Mapping[str, Any]) -> str:
    if judgment["winner"] is None:
        return "tie"
    return "first" if judgment["winner"] == judgment["a"] else "second"


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of paired labels; None when undefined (no pairs, or chance agreement is total)."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(1 for x, y in pairs if x == y) / n
    left, right = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(left[label] * right[label] for label in LABELS) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float:
    """The lower end of the Wilson score interval of a proportion (0 for no trials)."""
    if n <= 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def panel(
    battles: Sequence[Mapping[str, Any]], *, max_flip_rate: float = 0.5, min_judgments: int = 5
) -> dict[str, dict[str, Any]]:
    """Statistics and the trust decision for every judge that judged any of the battles."""
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"judgments": 0, "flips": 0, "first": 0, "orders": 0,
                                                            "decisive": 0, "longer": 0})  # fmt: skip
    votes_by_item: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
    for battle in battles:
        lengths = {name: len(a["text"]) for name, a in battle["answers"].items()}
        for j in battle["judgments"]:
            if j.get("source", "llm") != "llm":
                continue  # execution's verdicts are not a judge's: they have no order to flip
            s = stats[j["judge"]]
            s["judgments"] += 1
            forward, backward = order_verdict(j["forward"]), order_verdict(j["backward"])
            # Consistent means mirrored: A then B (first wins), B then A (second wins), or tie twice.
            if (forward, backward) not in (("A", "B"), ("B", "A"), ("tie", "tie")):
                s["flips"] += 1
            s["orders"] += 2
            s["first"] += (forward == "A") + (backward == "A")
            if j["winner"] is not None:
                s["decisive"] += 1
                loser = j["b"] if j["winner"] == j["a"] else j["a"]
                s["longer"] += lengths.get(j["winner"], 0) > lengths.get(loser, 0)
            votes_by_item[(battle["id"], j["a"], j["b"])][j["judge"]] = final_label(j)
    out: dict[str, dict[str, Any]] = {}
    for judge, s in sorted(stats.items()):
        agreement = [
            (labels[judge], other_label)
            for labels in votes_by_item.values()
            if judge in labels
            for other, other_label in labels.items()
            if other != judge
        ]
        flip_rate = s["flips"] / s["judgments"] if s["judgments"] else 0.0
        # Enough judgments to tell, or fewer whose evidence is already conclusive: even the lower
        # end of the 95% Wilson interval of its flip rate is above the limit (4 flips in 4 is).
        excluded = flip_rate > max_flip_rate and (
            s["judgments"] >= min_judgments or wilson_lower(s["flips"], s["judgments"]) > max_flip_rate
        )
        kappa = cohen_kappa(agreement)
        out[judge] = {
            "judgments": s["judgments"],
            "flip_rate": round(flip_rate, 3),
            "first_position_rate": round(s["first"] / s["orders"], 3) if s["orders"] else None,
            "longer_answer_rate": round(s["longer"] / s["decisive"], 3) if s["decisive"] else None,
            "kappa": None if kappa is None else round(kappa, 3),
            "trusted": not excluded,
            "reason": (
                f"flip rate {flip_rate:.2f} above {max_flip_rate:.2f}: its verdicts follow position, not answers"
                if excluded
                else None
            ),
        }
    return out


def excluded(panel_result: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {judge for judge, row in panel_result.items() if not row["trusted"]}
