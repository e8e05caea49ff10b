"""Decontamination against reworded benchmark problems: recall on paraphrases, false alarms on novel requests.

    python bench/rewording.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--out bench/results/rewording.json]

Two labelled sets, written by hand for this measurement and used for nothing else:

* development (bench/data/decontam_dev.jsonl): paraphrases of MBPP's training and validation problems
  (task ids 1-10 and 511-974, never its test split, never HumanEval), novel requests on their themes
  and general requests. The threshold is chosen here: the lowest evidence at which at most 2% of the
  novel requests are flagged.
* held out (bench/data/decontam_heldout.jsonl): paraphrases of HumanEval problems and of MBPP test
  problems that share no run of six words with their source, novel requests near their themes, and
  verbatim copies. Nothing is tuned on it; it is scored once with the development's choices.

The judge's evidence for a candidate is the statement's evidence plus a weight times the reference
solution's (see warrior.instruction_miner.rewording). The weight (among WEIGHTS) and the threshold
are chosen on the development set: the weight whose threshold, the lowest at which at most 2% of
the novel requests are flagged, catches the most paraphrases.

For each set the table reports what screening caught before this stage (13-gram overlap, embedding
similarity at the configured threshold) and with it: recall on paraphrases and copies, false alarms
on novel requests, and whether the flagged problem is the right one. The judge is the expert's own
engine and chat template, in process (the same ScoreCandidates path a campaign calls through gRPC).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "bench" / "data" / "decontam_dev.jsonl"
HELDOUT = ROOT / "bench" / "data" / "decontam_heldout.jsonl"
MAX_FALSE_ALARMS = 0.02
WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0)


def load(path: Path) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        if row.get("kind") not in ("paraphrase", "verbatim", "novel") or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}: bad row {row.get('id')!r}")
    return rows


class Judge:
    """An expert's engine and chat template in process, with the baseline calls cached (as the ledger does)."""

    def __init__(self, model: str) -> None:
        from warrior.expert_inference.llamacpp_engine import LlamaCppEngine
        from warrior.expert_inference.server import ExpertInferenceServicer

        self.engine = LlamaCppEngine(model, parallel=1, context_length=2048)
        self.servicer = ExpertInferenceServicer("judge", self.engine)
        self.loop = asyncio.new_event_loop()
        self.cache: dict[str, dict[str, float]] = {}
        self.calls = 0

    def score(self, messages: list[dict[str, str]], candidates: list[str]) -> dict[str, float]:
        from warrior.common.chat_template import Message

        key = json.dumps([messages, candidates])
        if key not in self.cache:
            prompt, _ = self.servicer._render([Message(m["role"], m["content"]) for m in messages])
            scores = self.loop.run_until_complete(self.engine.score(prompt, candidates))
            self.cache[key] = {c: lp for c, (lp, _) in zip(candidates, scores, strict=True)}
            self.calls += 1
        return self.cache[key]


def score_rows(rows: list[dict[str, str]], judge: Judge, settings: Any) -> list[dict[str, Any]]:
    from warrior.instruction_miner.benchmark_index import candidate_finder, contamination_index, embedding_index
    from warrior.instruction_miner.rewording import judge as judge_candidates

    cache = Path(os.environ.get("WARRIOR_CACHE_DIR", Path.home() / ".cache" / "warrior"))
    ngrams = contamination_index(settings, cache)
    embedding = embedding_index(settings, cache)
    finder = candidate_finder(settings, cache)
    rewording = settings.rewording
    out = []
    for row in rows:
        text = row["text"]
        started = time.perf_counter()
        candidates = finder.find(text, top=rewording.candidates, min_similarity=rewording.min_similarity)
        judged = judge_candidates(text, candidates, judge.score, code_weight=1.0)
        hit_ngram, hit_embedding = ngrams.match(text), embedding.match(text)
        out.append({
            "id": row["id"], "kind": row["kind"], "source": f"{row.get('benchmark', '')}/{row.get('task_id', '')}",
            "ngram": hit_ngram is not None, "embedding": hit_embedding is not None,
            "candidates": [f"{c.item.benchmark}/{c.item.task_id}" for c in candidates],
            "judged": [(f"{j.candidate.item.benchmark}/{j.candidate.item.task_id}", round(j.statement, 4),
                        None if j.code is None else round(j.code, 4)) for j in judged],
            "seconds": round(time.perf_counter() - started, 3),
        })  # fmt: skip
    return out


def with_weight(rows: list[dict[str, Any]], weight: float) -> list[dict[str, Any]]:
    """Each row's strongest candidate and its evidence at a code weight."""
    out = []
    for row in rows:
        scored = [(name, s + weight * (c or 0.0)) for name, s, c in row["judged"]]
        best = max(scored, key=lambda x: x[1], default=(None, None))
        out.append(row | {"best": best[0], "evidence": None if best[1] is None else round(best[1], 4)})
    return out


def threshold_for(rows: list[dict[str, Any]], max_false_alarms: float) -> float:
    """The lowest evidence that flags at most `max_false_alarms` of the novel rows (ties flagged)."""
    novel = sorted((r["evidence"] for r in rows if r["kind"] == "novel" and r["evidence"] is not None), reverse=True)
    allowed = math.floor(max_false_alarms * sum(r["kind"] == "novel" for r in rows))
    if len(novel) <= allowed:
        return -math.inf
    return round(novel[allowed] + 1e-4, 4)  # just above the first novel request it must not flag


def summarise(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    def flagged(r: dict[str, Any], stage: bool) -> bool:
        judged = stage and r["evidence"] is not None and r["evidence"] >= threshold
        return bool(r["ngram"] or r["embedding"] or judged)

    out: dict[str, Any] = {}
    for kind in ("paraphrase", "verbatim", "novel"):
        group = [r for r in rows if r["kind"] == kind]
        if not group:
            continue
        before = sum(flagged(r, False) for r in group)
        after = sum(flagged(r, True) for r in group)
        right = sum(flagged(r, True) and (r["ngram"] or r["embedding"] or r["best"] == r["source"]) for r in group)
        out[kind] = {"rows": len(group), "caught_before": before, "caught": after, "right_problem": right,
                     "share_before": round(before / len(group), 4), "share": round(after / len(group), 4)}  # fmt: skip
    out["missed"] = [r["id"] for r in rows if r["kind"] != "novel" and not flagged(r, True)]
    out["false_alarms"] = [r["id"] for r in rows if r["kind"] == "novel" and flagged(r, True)]
    out["seconds_per_request"] = round(sum(r["seconds"] for r in rows) / max(1, len(rows)), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"),
                        help="the judging expert's GGUF file (default: SmolLM2-135M-Instruct)")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "rewording.json"))
    parser.add_argument("--limit", type=int, default=None, help="rows per set (a quick look; default all)")
    args = parser.parse_args(argv)

    from warrior.common.campaign_config import DecontaminationConfig

    settings = DecontaminationConfig(mbpp_path=os.environ.get("WARRIOR_MBPP_PATH"))
    judge = Judge(args.model)
    sets = {"development": load(DEV)[: args.limit], "held out": load(HELDOUT)[: args.limit]}
    scored = {name: score_rows(rows, judge, settings) for name, rows in sets.items()}
    choices = []
    for weight in WEIGHTS:
        rows = with_weight(scored["development"], weight)
        threshold = threshold_for(rows, MAX_FALSE_ALARMS)
        choices.append({"code_weight": weight, "threshold": threshold,
                        "development_recall": summarise(rows, threshold)["paraphrase"]["share"]})  # fmt: skip
    chosen = max(choices, key=lambda c: (c["development_recall"], -c["code_weight"]))
    weight, threshold = chosen["code_weight"], chosen["threshold"]
    scored = {name: with_weight(rows, weight) for name, rows in scored.items()}
    summary = {name: summarise(rows, threshold) for name, rows in scored.items()}

    print(
        "development set, by code weight: "
        + "; ".join(
            f"{c['code_weight']:g}: threshold {c['threshold']}, recall {c['development_recall']:.0%}" for c in choices
        )
    )
    print(f"judge: {Path(args.model).name}; code weight {weight:g}, threshold {threshold} (chosen on the development "
          f"set: at most {MAX_FALSE_ALARMS:.0%} of its novel requests flagged)")  # fmt: skip
    print(
        f"{'set':<12} {'kind':<11} {'rows':>5} {'13-gram+embedding':>18} {'with rewording':>15} {'right problem':>14}"
    )
    for name, groups in summary.items():
        for kind in ("paraphrase", "verbatim", "novel"):
            g = groups.get(kind)
            if g:
                print(f"{name:<12} {kind:<11} {g['rows']:>5} {g['share_before']:>18.0%} {g['share']:>15.0%} "
                      f"{g['right_problem']:>14}")  # fmt: skip
    for name, groups in summary.items():
        print(f"{name}: missed {groups['missed']}; false alarms {groups['false_alarms']}; "
              f"{groups['seconds_per_request']} s per request")  # fmt: skip
    result = {
        "judge_model": Path(args.model).name, "code_weight": weight, "threshold": threshold,
        "choices": choices, "max_false_alarms": MAX_FALSE_ALARMS,
        "candidates": settings.rewording.candidates, "min_similarity": settings.rewording.min_similarity,
        "summary": summary, "rows": scored, "engine_calls": judge.calls,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
