"""Which scored rows make it into a dataset version: duplicates out, then a spread-out subset.

Three stages, each recorded with a per-row reason:

1. exact duplicates: rows whose instruction *and* winning answer are equal once normalised
   (Unicode NFKC, case-folded, runs of whitespace collapsed) keep only their first row;
2. near duplicates: a row whose instruction embedding has a cosine similarity of at least
   ``near_dup_threshold`` with an earlier kept row is dropped (off when the threshold is None);
3. KCenterGreedy: down to ``target_rows`` rows, each new row being the one farthest from every row
   chosen so far, so the subset covers the instruction space instead of its dense regions
   (off when ``target_rows`` is None or not below the remaining count).

"Earlier" and every tie-break follow the instruction id, and the first centre is drawn from the
seed, so the same rows, embeddings and settings always select the same subset whatever order the
rows come in. The stages are pure functions of an embedding matrix; :func:`select_rows` is the one
place that embeds instructions with the shared sentence embedder.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from warrior.common.campaign_config import DatasetConfig
from warrior.common.embeddings import DEFAULT_MODEL, embedder

EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"
NOT_SELECTED = "not_selected"
NOT_VERIFIED = "not_verified"
DROP_REASONS = (NOT_VERIFIED, EXACT_DUPLICATE, NEAR_DUPLICATE, NOT_SELECTED)

# Cosine similarities of identical unit vectors can round to just under 1.0 in float32.
_COSINE_SLACK = 1e-6
_WHITESPACE = re.compile(r"\s+")

Matrix = npt.NDArray[np.floating[Any]]


class SelectionConfig(BaseModel):
    """Build-time selection settings; the campaign file's `dataset` section carries the same keys.

    target_rows: rows to keep after deduplication (None keeps every row that is not a duplicate).
    seed: draws KCenterGreedy's first centre; the same seed gives the same subset.
    near_dup_threshold: instruction-embedding cosine at or above which a later row is a near
    duplicate of an earlier one (None: no embedding-based deduplication; the campaign's screening
    already removes near-duplicate instructions by MinHash).
    require_verified: drop every row whose winner does not pass all of its trusted tests (rows
    judged by LLMs alone included), before anything else.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_rows: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    near_dup_threshold: float | None = Field(None, gt=0.0, le=1.0)
    require_verified: bool = False

    @classmethod
    def from_dataset_config(cls, dataset: DatasetConfig) -> SelectionConfig:
        """The selection settings of a campaign's `dataset` section."""
        return cls(
            target_rows=dataset.target_rows,
            seed=dataset.seed,
            near_dup_threshold=dataset.near_dup_threshold,
            require_verified=dataset.require_verified,
        )

    def needs_embeddings(self, rows: int) -> bool:
        """Whether selecting from this many rows compares instructions by embedding at all."""
        return self.near_dup_threshold is not None or (self.target_rows is not None and self.target_rows < rows)


@dataclass(frozen=True)
class Selection:
    """The outcome of a selection: kept rows, and for every dropped row why (and which row it duplicates)."""

    rows: list[dict[str, Any]]
    config: SelectionConfig
    input_rows: int
    dropped: dict[str, dict[str, Any]] = field(default_factory=dict)
    """instruction id -> {"reason": one of DROP_REASONS, "of": the kept instruction id it duplicates, or None}."""
    embedding_model: dict[str, str] | None = None
    """{"name", "revision"} of the embedder, when instructions were compared by embedding."""

    @property
    def drop_counts(self) -> dict[str, int]:
        """Rows dropped per reason; every reason is present, zero or not."""
        counts = Counter(d["reason"] for d in self.dropped.values())
        return {reason: counts.get(reason, 0) for reason in DROP_REASONS}

    def record(self) -> dict[str, Any]:
        """The summary a manifest keeps: settings, seed, embedder, row counts and drops per reason."""
        return {
            "config": self.config.model_dump(mode="json"),
            "seed": self.config.seed,
            "embedding_model": self.embedding_model,
            "input_rows": self.input_rows,
            "kept_rows": len(self.rows),
            "dropped": self.drop_counts,
        }


def instruction_text(row: Mapping[str, Any]) -> str:
    """The row's instruction: its first user message."""
    return next(str(m["content"]) for m in row["messages"] if m["role"] == "user")


def answer_text(row: Mapping[str, Any]) -> str:
    """The row's target: its last assistant message (the winner's answer)."""
    return next(str(m["content"]) for m in reversed(row["messages"]) if m["role"] == "assistant")


def normalise_text(text: str) -> str:
    """Text as compared for exact duplicates: NFKC, case-folded, whitespace runs collapsed, ends stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def exact_duplicates(rows: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """For each row, None when kept, else the index of the first row with the same normalised instruction and answer."""
    first: dict[tuple[str, str], int] = {}
    out: list[int | None] = []
    for i, row in enumerate(rows):
        key = (normalise_text(instruction_text(row)), normalise_text(answer_text(row)))
        out.append(first.get(key))
        first.setdefault(key, i)
    return out


def _unit_rows(embeddings: Matrix) -> npt.NDArray[np.float32]:
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return unit


def near_duplicates(embeddings: Matrix, threshold: float, *, block: int = 512) -> list[int | None]:
    """For each row, None when kept, else the index of the most similar earlier *kept* row it duplicates.

    Row j is a near duplicate when its cosine similarity with some earlier kept row is at least
    `threshold`; rows are visited in order, so of a group of near duplicates the first one stays.
    Similarities are computed a block of rows at a time, so memory stays at block x rows.
    """
    x = _unit_rows(embeddings)
    n = len(x)
    kept = np.zeros(n, dtype=bool)
    out: list[int | None] = [None] * n
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = x[start:stop] @ x[:stop].T
        for j in range(start, stop):
            earlier = sims[j - start, :j]
            hits = np.flatnonzero((earlier >= threshold - _COSINE_SLACK) & kept[:j])
            if hits.size:
                out[j] = int(hits[np.argmax(earlier[hits])])
            else:
                kept[j] = True
    return out


def k_center_greedy(embeddings: Matrix, k: int, seed: int) -> list[int]:
    """Indices of k rows chosen by KCenterGreedy, in the order they were chosen.

    The first centre is drawn with `seed`; each next one is the row farthest (Euclidean) from its
    nearest chosen centre, the lowest index winning a tie. When clusters lie farther apart than
    they are wide, every cluster therefore gets a row before any cluster gets a second.
    k >= rows returns every row in index order. Cost: k passes over the matrix.
    """
    n = len(embeddings)
    if k >= n:
        return list(range(n))
    if k <= 0:
        return []
    x = np.asarray(embeddings, dtype=np.float32)
    squared = np.einsum("ij,ij->i", x, x).astype(np.float64)
    nearest = np.full(n, np.inf)
    centre = int(np.random.default_rng(seed).integers(n))
    chosen: list[int] = []
    for _ in range(k):
        chosen.append(centre)
        distance = np.maximum(squared + squared[centre] - 2.0 * (x @ x[centre]).astype(np.float64), 0.0)
        np.minimum(nearest, distance, out=nearest)
        nearest[centre] = -np.inf  # stays -inf through np.minimum: never chosen twice, even among equal points
        centre = int(np.argmax(nearest))
    return chosen


def _instruction_id(row: Mapping[str, Any]) -> str:
    return str(row["lineage"]["instruction_id"])


def select(
    rows: Sequence[dict[str, Any]],
    embeddings: Matrix | None,
    config: SelectionConfig,
    *,
    embedding_model: dict[str, str] | None = None,
) -> Selection:
    """Deduplicate and subsample rows; `embeddings[i]` is the instruction embedding of `rows[i]`.

    Rows are processed in instruction-id order and kept rows come back in that order, so the
    result does not depend on the order of `rows`. `embeddings` may be None only when the config
    needs none (see SelectionConfig.needs_embeddings).
    """
    if embeddings is not None and len(embeddings) != len(rows):
        raise ValueError(f"{len(embeddings)} embeddings for {len(rows)} rows")
    order = sorted(range(len(rows)), key=lambda i: _instruction_id(rows[i]))
    ids = [_instruction_id(rows[i]) for i in order]
    if len(set(ids)) != len(ids):
        raise ValueError("rows must have distinct lineage.instruction_id values")
    dropped: dict[str, dict[str, Any]] = {}
    if config.require_verified:
        for pos, i in enumerate(order):
            status = rows[i].get("lineage", {}).get("verification", {}).get("status")
            if status != "verified":
                dropped[ids[pos]] = {"reason": NOT_VERIFIED, "of": None, "status": status}

    exact = exact_duplicates([rows[i] for i in order])
    for pos, of in enumerate(exact):
        if of is not None and ids[pos] not in dropped:
            dropped[ids[pos]] = {"reason": EXACT_DUPLICATE, "of": ids[of]}
    alive = [pos for pos, of in enumerate(exact) if of is None and ids[pos] not in dropped]

    compared = config.needs_embeddings(len(alive))
    if compared:
        if embeddings is None:
            raise ValueError("this selection compares instructions by embedding: pass their embeddings")
        matrix = np.asarray(embeddings)[[order[pos] for pos in alive]]
        if config.near_dup_threshold is not None:
            near = near_duplicates(matrix, config.near_dup_threshold)
            for local, of in enumerate(near):
                if of is not None:
                    dropped[ids[alive[local]]] = {"reason": NEAR_DUPLICATE, "of": ids[alive[of]]}
            keep = [local for local, of in enumerate(near) if of is None]
            alive, matrix = [alive[local] for local in keep], matrix[keep]
        if config.target_rows is not None and config.target_rows < len(alive):
            chosen = set(k_center_greedy(matrix, config.target_rows, config.seed))
            for local, pos in enumerate(alive):
                if local not in chosen:
                    dropped[ids[pos]] = {"reason": NOT_SELECTED, "of": None}
            alive = [pos for local, pos in enumerate(alive) if local in chosen]

    return Selection(
        rows=[rows[order[pos]] for pos in alive],
        config=config,
        input_rows=len(rows),
        dropped=dict(sorted(dropped.items())),
        embedding_model=embedding_model if compared else None,
    )


def embed_instructions(rows: Sequence[Mapping[str, Any]], model: str = DEFAULT_MODEL) -> npt.NDArray[np.float32]:
    """Unit-length embeddings of the rows' instructions with the process's shared embedder."""
    return embedder(model).encode([instruction_text(r) for r in rows])


def select_rows(rows: Sequence[dict[str, Any]], config: SelectionConfig, model: str = DEFAULT_MODEL) -> Selection:
    """:func:`select` with instruction embeddings from the shared embedder, loaded only when the config needs them."""
    if not config.needs_embeddings(len(rows)):
        return select(rows, None, config)
    model_ = embedder(model)
    embeddings = model_.encode([instruction_text(r) for r in rows])
    return select(rows, embeddings, config, embedding_model={"name": model_.name, "revision": model_.revision})
