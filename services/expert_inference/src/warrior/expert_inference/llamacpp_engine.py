"""The llama.cpp engine: a GGUF model served by a pool of contexts, one request per context at a time.

llama-cpp-python's `Llama` object is not thread-safe and serves one sequence at a time, so the
engine keeps `parallel` of them over the same memory-mapped weights (the OS shares the pages) and
hands each request to a free one on a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from warrior.expert_inference.engine import EngineBusy, EngineRequestError, Generated, SamplingSpec, local_model_info


def file_revision(path: Path) -> str:
    """sha256 of the weights (first 16 hex digits), cached beside nothing: hashing 0.5 GB takes about a second."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class LlamaCppEngine:
    """A GGUF model on llama.cpp; see the module docstring."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        parallel: int = 2,
        context_length: int = 2048,
        threads: int = 0,
        use_chat_template: bool = True,
        max_waiting: int | None = None,
    ) -> None:
        import llama_cpp  # imported here so the rest of the service loads without the native library

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        n_threads = threads or max(1, os.cpu_count() or 1)
        self._llama_cpp = llama_cpp
        self._pool: list[Any] = [
            llama_cpp.Llama(
                model_path=str(path),
                n_ctx=context_length,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_batch=512,
                verbose=False,
            )
            for _ in range(parallel)
        ]
        self._free: list[Any] = list(self._pool)
        self._free_lock = threading.Lock()
        self._slots = asyncio.Semaphore(parallel)
        self._waiting = 0
        self._max_waiting = max_waiting if max_waiting is not None else parallel * 16
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="llama")

        first = self._pool[0]
        template = str(first.metadata.get("tokenizer.chat_template", "")) if use_chat_template else ""
        self._bos_id = int(first.token_bos())
        self._eos_id = int(first.token_eos())
        bos = self._piece(first, self._bos_id)
        eos = self._piece(first, self._eos_id)
        self._add_bos = bool(first.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false")
        self.info = local_model_info(
            model=path.name,
            revision=file_revision(path),
            engine="llamacpp",
            chat_template=template,
            bos_token=bos,
            eos_token=eos,
            eot_token=self._eot_piece(first),
            context_length=context_length,
            capacity=parallel,
        )

    @staticmethod
    def _piece(llm: Any, token: int) -> str:
        if token < 0:
            return ""
        return str(llm.detokenize([token], special=True).decode("utf-8", errors="replace"))

    def _eot_piece(self, llm: Any) -> str:
        eot = int(self._llama_cpp.llama_vocab_eot(llm._model.vocab))
        return self._piece(llm, eot) if eot >= 0 else ""

    # -- pool ------------------------------------------------------------------------------
    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._waiting >= self._max_waiting:
            raise EngineBusy(f"{self._waiting} requests already waiting (limit {self._max_waiting})")
        self._waiting += 1
        try:
            async with self._slots:
                with self._free_lock:
                    llm = self._free.pop()
                try:
                    loop = asyncio.get_running_loop()
                    return await loop.run_in_executor(self._executor, fn, llm, *args)
                finally:
                    with self._free_lock:
                        self._free.append(llm)
        finally:
            self._waiting -= 1

    def _tokens(self, llm: Any, text: str) -> list[int]:
        # Templates often start with the BOS text already; never add a second one.
        starts_with_bos = bool(self.info.bos_token) and text.startswith(self.info.bos_token)
        return list(llm.tokenize(text.encode("utf-8"), add_bos=self._add_bos and not starts_with_bos, special=True))

    # -- generation ------------------------------------------------------------------------
    async def generate(self, prompt: str, sampling: SamplingSpec) -> Generated:
        result: Generated = await self._run(self._generate_sync, prompt, sampling)
        return result

    def _generate_sync(self, llm: Any, prompt: str, sampling: SamplingSpec) -> Generated:
        tokens = self._tokens(llm, prompt)
        room = self.info.context_length - len(tokens)
        if room < 1:
            raise EngineRequestError(
                f"prompt of {len(tokens)} tokens does not fit the context of {self.info.context_length} tokens"
            )
        max_tokens = min(sampling.max_tokens, room)
        greedy = sampling.temperature <= 0.0
        out = llm.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else (sampling.top_p or 1.0),
            top_k=1 if greedy else 0,
            min_p=0.0,
            repeat_penalty=1.0,
            stop=list(sampling.stop) or None,
            seed=sampling.seed or random.randrange(1, 2**31),
        )
        choice = out["choices"][0]
        usage = out["usage"]
        return Generated(
            text=str(choice["text"]),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
        )

    # -- candidate scoring -----------------------------------------------------------------
    async def score(self, context: str, candidates: list[str]) -> list[tuple[float, int]]:
        result: list[tuple[float, int]] = await self._run(self._score_sync, context, candidates)
        return result

    def _last_logprobs(self, llm: Any) -> np.ndarray:
        ptr = self._llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)
        shifted = logits - logits.max()
        return shifted - np.log(np.exp(shifted).sum())  # type: ignore[no-any-return]

    def _score_sync(self, llm: Any, context: str, candidates: list[str]) -> list[tuple[float, int]]:
        context_tokens = self._tokens(llm, context)
        candidate_tokens = [list(llm.tokenize(c.encode("utf-8"), add_bos=False, special=False)) for c in candidates]
        longest = max((len(t) for t in candidate_tokens), default=0)
        if len(context_tokens) + longest > self.info.context_length:
            raise EngineRequestError(
                f"context of {len(context_tokens)} tokens plus a candidate does not fit "
                f"the context of {self.info.context_length} tokens"
            )
        llm.reset()
        llm.eval(context_tokens)
        base = self._last_logprobs(llm)
        base_len = llm.n_tokens
        results: list[tuple[float, int]] = []
        for tokens in candidate_tokens:
            if not tokens:
                results.append((0.0, 0))
                continue
            llm.n_tokens = base_len
            total = float(base[tokens[0]])
            if len(tokens) > 1:  # the rest in one pass: every position's logits at once
                total += self._continuation_logprob(llm, tokens)
            results.append((total, len(tokens)))
        llm.n_tokens = base_len
        return results

    def _continuation_logprob(self, llm: Any, tokens: list[int]) -> float:
        """log P(tokens[1:] | context, tokens[0]): tokens[:-1] evaluated after the context in batches of
        n_batch, with logits kept for every position (the high-level `eval` keeps only the last one's
        unless the whole context was made with logits_all, which costs n_ctx x vocab floats)."""
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        feed, targets, total = tokens[:-1], tokens[1:], 0.0
        for start in range(0, len(feed), llm.n_batch):
            chunk = feed[start : start + llm.n_batch]
            llm._batch.set_batch(batch=chunk, n_past=llm.n_tokens, logits_all=True)
            llm._ctx.decode(llm._batch)
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(chunk), llm.n_vocab()))
            top = logits.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
            wanted = np.asarray(targets[start : start + len(chunk)])
            total += float((logits[np.arange(len(chunk)), wanted] - log_norm).sum())
            llm.n_tokens += len(chunk)
        return total

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for llm in self._pool:
            llm.close()
        self._pool.clear()
