"""distilabel's side of bench/distilabel_side_by_side.py; runs in the bench virtualenv (distilabel 1.5.3).

    .cache/bench-distilabel-venv/bin/python bench/distilabel_zlt.py --rows 5000 --batch-size 50 --out r.json

Three TextGeneration "experts" answer every row, GroupColumns gathers the answers, an UltraFeedback
judge rates them in one call per row; every LLM is ZeroLatencyLLM (instant, hash-derived text). The
LLM classes live at module level: distilabel pickles steps into its worker processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from distilabel.models.llms.base import LLM  # type: ignore[import-not-found]


class ZeroLatencyLLM(LLM):  # type: ignore[misc,valid-type]
    """Instant, hash-derived outputs (as our zero-latency-test engine); logs how many it made."""

    expert: str
    calls_log: str

    @property
    def model_name(self) -> str:
        return f"zero-latency-test/{self.expert}"

    def generate(self, inputs: list[Any], num_generations: int = 1) -> list[dict[str, Any]]:
        out = []
        for conversation in inputs:
            prompt = "\n".join(m["content"] for m in conversation)
            d = hashlib.sha256(f"{self.expert}\x00{prompt}".encode()).digest()
            texts = [int(n) for n in re.findall(r"<text (\d+)>", prompt)]
            if texts:  # an UltraFeedback judge prompt: one rating per text, in its format
                text = "\n\n".join(
                    f"Rating: {d[i] % 5 + 1}\nRationale: approach {d[i : i + 3].hex()} is sound."
                    for i in range(max(texts))
                )
            else:
                text = (
                    f"Here is a solution.\n\n```python\ndef solve(data):\n    # approach {d[:3].hex()}\n"
                    f"    return sorted(data)[: {d[3] % 7 + 1}]\n```\n\nIt runs in O(n log n)."
                )
            out.append(
                {
                    "generations": [text] * num_generations,
                    "statistics": {
                        "input_tokens": [len(prompt.split())] * num_generations,
                        "output_tokens": [len(text.split())] * num_generations,
                    },
                }
            )
        line = f"{self.expert} {len(inputs) * num_generations} {time.time():.6f}\n".encode()
        fd = os.open(self.calls_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one small O_APPEND write: whole lines from every step's process
        finally:
            os.close(fd)
        return out


def _instructions(rows: int) -> list[dict[str, str]]:
    topics = ("merges two sorted lists", "validates a binary search tree", "computes the edit distance")
    variant = [hashlib.sha256(str(i).encode()).hexdigest()[:12] for i in range(rows)]
    return [
        {"instruction": f"Write a Python function that {topics[i % 3]} (variant {variant[i]})."} for i in range(rows)
    ]


def distilabel_run(rows: int, batch: int) -> dict[str, Any]:
    from distilabel.pipeline import Pipeline
    from distilabel.steps import GroupColumns, LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration, UltraFeedback

    llm = ZeroLatencyLLM
    work = Path(tempfile.mkdtemp(prefix="distilabel-bench-"))
    log = str(work / "calls.log")
    with Pipeline(name=f"zlt-battle-{batch}", cache_dir=work / "cache") as pipeline:
        load = LoadDataFromDicts(data=_instructions(rows), batch_size=batch)
        experts = [
            TextGeneration(name=f"expert_{i}", llm=llm(expert=f"zlt-{i}", calls_log=log), input_batch_size=batch)
            for i in range(3)
        ]
        group = GroupColumns(
            columns=["generation", "model_name"],
            output_columns=["generations", "generation_models"],
            input_batch_size=batch,
        )
        judge = UltraFeedback(llm=llm(expert="judge", calls_log=log), aspect="overall-rating", input_batch_size=batch)
        load >> experts >> group >> judge
    started = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    seconds = time.perf_counter() - started
    data = distiset["default"]["train"]
    by_llm: dict[str, int] = {}
    stamps: list[float] = []
    for line in Path(log).read_text().splitlines():
        name, count, stamp = line.split()
        by_llm[name] = by_llm.get(name, 0) + int(count)
        stamps.append(float(stamp))
    rated = sum(1 for r in data["ratings"] if r and all(x is not None for x in r))
    calls = sum(by_llm.values())
    return {
        "batch_size": batch,
        "rows": rows,
        "rows_out": len(data),
        "rows_rated": rated,
        "model_calls": calls,
        "calls_by_llm": by_llm,
        "seconds": round(seconds, 2),
        "calls_per_s": round(calls / seconds, 1),
        # From the first LLM batch to the last: the pipeline's start-up and shutdown left out.
        "llm_span_s": round(max(stamps) - min(stamps), 2) if stamps else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    Path(args.out).write_text(json.dumps(distilabel_run(args.rows, args.batch_size)))


if __name__ == "__main__":
    main()
