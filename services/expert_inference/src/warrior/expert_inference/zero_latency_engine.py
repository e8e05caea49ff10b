"""ZeroLatencyTestEngine: a deterministic engine that answers instantly, for orchestration tests and benchmarks.

It is not a model. Its outputs are derived from a hash of the prompt, so a campaign run on it
exercises every queue, store and gRPC path at full speed without paying for inference. It is
never a default: it is chosen only by naming the engine `zero-latency-test`.
"""

from __future__ import annotations

import hashlib
import math
import os

from warrior.expert_inference.engine import EngineInfo, Generated, SamplingSpec

# A ChatML template, so pre-query mining exercises the template path as with a real chat model.
_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_TOPICS = (
    "merges two sorted lists into one sorted list",
    "parses an ISO 8601 date string and returns the weekday",
    "finds the longest palindromic substring of a string",
    "counts word frequencies in a text file and prints the top ten",
    "validates a binary search tree",
    "implements an LRU cache with get and put in constant time",
    "flattens an arbitrarily nested list of integers",
    "computes the edit distance between two strings",
    "detects a cycle in a directed graph given as an adjacency list",
    "serialises a binary tree to a string and back",
)


# Inputs and constraints multiply the topics, so hash-chosen requests are rarely near-duplicates.
_INPUTS = (
    "a list of customer orders read from a JSON file",
    "a stream of sensor readings arriving over a socket",
    "a pandas DataFrame of daily stock prices",
    "a nested dictionary loaded from a YAML configuration",
    "lines of an Apache access log",
    "rows fetched from a SQLite table of employees",
    "a binary file of little-endian 32-bit integers",
    "a Unicode string typed by a user in a web form",
)
_CONSTRAINTS = (
    "without importing any third-party library",
    "using only constant extra memory",
    "with type hints and a docstring",
    "so that it can be unit tested with pytest",
    "handling malformed input by raising a ValueError",
    "as a generator that yields results lazily",
    "in a thread-safe way",
    "optimised for inputs of ten million elements",
)


def _log_call(name: str, kind: str, *parts: str) -> None:
    """With WARRIOR_ZLT_CALL_LOG set, append one line per executed call (the chaos suite counts them)."""
    path = os.environ.get("WARRIOR_ZLT_CALL_LOG")
    if path:
        line = f"{name} {kind} {_digest(*parts).hex()[:32]}\n".encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one small O_APPEND write: whole lines even from many processes
        finally:
            os.close(fd)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()


class ZeroLatencyTestEngine:
    """Instant, deterministic, hash-derived outputs; see the module docstring."""

    def __init__(self, name: str, capacity: int = 64) -> None:
        self.info = EngineInfo(
            model=f"zero-latency-test/{name}",
            revision="zlt-" + hashlib.sha256(name.encode()).hexdigest()[:12],
            engine="zero-latency-test",
            chat_template=_TEMPLATE,
            bos_token="",
            eos_token="<|im_end|>",
            stop_strings=("<|im_end|>", "<|im_start|>"),
            context_length=32768,
            capacity=capacity,
            capabilities={"raw_completion": True, "chat": True, "candidate_logprobs": True, "chat_template": True},
        )
        self._name = name

    async def generate(self, prompt: str, sampling: SamplingSpec) -> Generated:
        d = _digest(self._name, prompt, str(sampling.seed), str(sampling.temperature), str(sampling.top_p))
        _log_call(self._name, "generate", prompt, repr(sampling))
        if prompt.rstrip().endswith("user"):  # a pre-query prefix: write a request
            topic = _TOPICS[d[0] % len(_TOPICS)]
            source = _INPUTS[d[1] % len(_INPUTS)]
            constraint = _CONSTRAINTS[d[2] % len(_CONSTRAINTS)]
            # Hash-derived field names make requests from different seeds unlike each other, as real ones are.
            fields = ", ".join(f"f{d[i : i + 2].hex()}" for i in range(4, 28, 2))
            text = (
                f"Given {source}, write a Python function that {topic}, {constraint}. "
                f"The records carry the fields {fields}. Why does it work?"
            )
        else:
            text = (
                f"Here is a solution.\n\n```python\ndef solve(data):\n    # approach {d[:3].hex()}\n"
                f"    return sorted(data)[: {d[3] % 7 + 1}]\n```\n\nIt runs in O(n log n)."
            )
        words = text.split()
        if len(words) > sampling.max_tokens:
            return Generated(" ".join(words[: sampling.max_tokens]), "length", len(prompt.split()), sampling.max_tokens)
        return Generated(text, "stop", len(prompt.split()), len(words))

    async def score(self, context: str, candidates: list[str]) -> list[tuple[float, int]]:
        _log_call(self._name, "score", context, *candidates)
        out = []
        for candidate in candidates:
            u = int.from_bytes(_digest(self._name, context, candidate)[:4], "big") / 2**32
            out.append((math.log(0.05 + 0.9 * u), 1))
        return out

    def close(self) -> None:
        return None
