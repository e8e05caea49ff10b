"""Decontamination of finished rows: every row's request and target checked again against the
evaluation sets, the way screening checks a request, so that a report can list the proof.

Three checks per row, each with the campaign's own settings:

* 13-gram: a word n-gram shared with a benchmark problem (statement or reference code), in the
  request or in the winning answer (an answer that copies a reference solution is as contaminating
  as a request that copies a statement);
* embedding: the request's cosine similarity to the nearest benchmark statement, against the
  screening threshold;
* rewording: the nearest candidates judged by an expert's log-probabilities (see rewording.py),
  against the screening threshold; skipped (and said so) without a scoring function.

Besides the hits, the report keeps each check's closest call (the highest similarity and evidence
and the problem it points at), so a reader sees how far the rows stayed from the thresholds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from warrior.common.campaign_config import DecontaminationConfig
from warrior.instruction_miner.benchmark_index import candidate_finder, contamination_index, embedding_index
from warrior.instruction_miner.rewording import ScoreFn, judge, verdict


def _text(row: Mapping[str, Any], role: str) -> str:
    messages = [m for m in row["messages"] if m["role"] == role]
    return str((messages[0] if role == "user" else messages[-1])["content"]) if messages else ""


def _row_id(row: Mapping[str, Any]) -> str:
    return str(row.get("lineage", {}).get("instruction_id", ""))


def audit_rows(
    rows: Iterable[Mapping[str, Any]],
    config: DecontaminationConfig,
    cache: Path,
    score: ScoreFn | None = None,
    *,
    judge_name: str | None = None,
) -> dict[str, Any]:
    """Run the three checks over chat rows (`messages`, `lineage.instruction_id`); returns the listing."""
    rows = list(rows)
    ngrams = contamination_index(config, cache)
    embeddings = embedding_index(config, cache)
    rewording = config.rewording
    finder = candidate_finder(config, cache) if score is not None and rewording.enabled else None
    ngram_hits: list[dict[str, Any]] = []
    embedding_hits: list[dict[str, Any]] = []
    rewording_hits: list[dict[str, Any]] = []
    nearest: dict[str, Any] = {"similarity": None}
    strongest: dict[str, Any] = {"evidence": None}
    judged_rows = 0
    for row in rows:
        iid, request, answer = _row_id(row), _text(row, "user"), _text(row, "assistant")
        for part, text in (("request", request), ("answer", answer)):
            hit = ngrams.match(text)
            if hit is not None:
                ngram_hits.append({"row": iid, "in": part} | hit.record())
        found = embeddings.nearest(request)
        if found is not None:
            item, similarity = found
            if nearest["similarity"] is None or similarity > nearest["similarity"]:
                problem = f"{item.benchmark}/{item.task_id}"
                nearest = {"similarity": round(similarity, 4), "row": iid, "problem": problem}
            if similarity >= embeddings.threshold:
                embedding_hits.append({"row": iid, "benchmark": item.benchmark, "task_id": item.task_id,
                                       "similarity": round(similarity, 4)})  # fmt: skip
        if finder is None or score is None:
            continue
        candidates = finder.find(request, top=rewording.candidates, min_similarity=rewording.min_similarity)
        if not candidates:
            continue
        judged_rows += 1
        judged = judge(request, candidates, score, code_weight=rewording.code_weight)
        best = max(judged, key=lambda j: j.evidence)
        if strongest["evidence"] is None or best.evidence > strongest["evidence"]:
            strongest = {"evidence": round(best.evidence, 4), "row": iid,
                         "problem": f"{best.candidate.item.benchmark}/{best.candidate.item.task_id}"}  # fmt: skip
        hit = verdict(judged, rewording.threshold)
        if hit is not None:
            rewording_hits.append({"row": iid} | hit.record())
    return {
        "rows": len(rows),
        "benchmarks": sorted(config.benchmarks),
        "ngram": {"n": config.ngram, "checked": "request and answer", "hits": ngram_hits},
        "embedding": {
            "threshold": embeddings.threshold,
            "model": config.embedding.model,
            "hits": embedding_hits,
            "nearest": nearest,
        },  # fmt: skip
        "rewording": {
            "ran": finder is not None,
            "judge": judge_name,
            "threshold": rewording.threshold,
            "judged_rows": judged_rows,
            "hits": rewording_hits,
            "strongest": strongest,
        },
        "overlap": len({h["row"] for h in (*ngram_hits, *embedding_hits, *rewording_hits)}),
    }
