"""A long candidate is scored in one pass over its tokens, and its log-probability is the one a
token-by-token reading of the same model gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from warrior.expert_inference.llamacpp_engine import LlamaCppEngine

CONTEXT = "<|im_start|>user\nWrite a Python function that adds two numbers.<|im_end|>\n<|im_start|>assistant\n"
CANDIDATES = [
    "```python\ndef add(a, b):\n    return a + b\n```",
    "No",
    "```python\ndef add(a, b):\n    return a - b\n```",
]


def _reference(path: Path, context: str, candidate: str) -> float:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    try:
        context_tokens = list(llm.tokenize(context.encode(), add_bos=False, special=True))
        tokens = list(llm.tokenize(candidate.encode(), add_bos=False, special=False))
        llm.eval(context_tokens + tokens)
        rows = np.array(llm.scores[len(context_tokens) - 1 : len(context_tokens) + len(tokens) - 1], dtype=np.float64)
        top = rows.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(rows - top).sum(axis=1)) + top[:, 0]
        return float(sum(rows[i, t] - log_norm[i] for i, t in enumerate(tokens)))
    finally:
        llm.close()


def test_long_candidates_score_as_a_token_by_token_reading_would(smollm2_path: Path) -> None:
    engine = LlamaCppEngine(smollm2_path, parallel=1, context_length=512, use_chat_template=False)
    try:
        scores = asyncio.run(engine.score(CONTEXT, CANDIDATES))
    finally:
        engine.close()
    for candidate, (logprob, tokens) in zip(CANDIDATES, scores, strict=True):
        assert tokens >= 1
        assert logprob == pytest.approx(_reference(smollm2_path, CONTEXT, candidate), abs=0.05)
    right, wrong = scores[0][0], scores[2][0]
    assert right > wrong  # "a + b" is the likelier body for "adds"
