"""Greedy replies from a Hugging Face model folder through transformers: the generation path where vLLM
is absent (a GPU machine with torch and nothing else served), and for dry runs on a CPU.

Conversations are rendered with the tokenizer's chat template, padded on the left and decoded greedily
in batches (`batch_size` at a time, longest prompts together so that padding is small); a reply is the
new tokens only, special tokens dropped. On CUDA the weights load in bfloat16 where the GPU supports it,
else float16; on a CPU in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

Conversation = Sequence[dict[str, str]]


class HFGenerator:
    """A model folder ready to answer conversations greedily (see the module docstring)."""

    def __init__(self, model_dir: str | Path, *, device: str = "auto", batch_size: int = 8, max_tokens: int = 512):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1 or max_tokens < 1:
            raise ValueError(f"batch_size and max_tokens must be >= 1, got {batch_size} and {max_tokens}")
        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} is not a Hugging Face model folder (no config.json)")
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        dtype = torch.float32
        if self.device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.name = folder.name

    def _prompt(self, conversation: Conversation) -> str:
        text: Any = self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        return str(text)

    def replies(self, conversations: Sequence[Conversation]) -> list[str]:
        """One greedy reply per conversation, in order."""
        import torch

        prompts = [self._prompt(c) for c in conversations]
        lengths = [len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        out: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                                   add_special_tokens=False).to(self.device)  # fmt: skip
            with torch.inference_mode():
                generated = self.model.generate(
                    **batch, do_sample=False, max_new_tokens=self.max_tokens, pad_token_id=self.tokenizer.pad_token_id
                )
            new = generated[:, batch["input_ids"].shape[1] :]
            for i, tokens in zip(chunk, new, strict=True):
                out[i] = str(self.tokenizer.decode(tokens, skip_special_tokens=True))
        return out

    def close(self) -> None:
        del self.model
