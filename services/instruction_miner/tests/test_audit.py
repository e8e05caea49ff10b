"""The final rows' decontamination: every check over every row, with the real benchmark indexes.

The rewording judge's scoring is a stand-in here (its own tests run it on SmolLM2): it makes the
request that names HumanEval/0's function predict that problem's texts, and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from warrior.common.campaign_config import DecontaminationConfig
from warrior.instruction_miner.audit import audit_rows

CACHE = Path(os.environ.get("WARRIOR_CACHE_DIR", Path.home() / ".cache" / "warrior"))
# MBPP 11's reference solution, as a winner that copied it would answer.
MBPP_11 = (
    "def remove_Occ(s,ch): \n    for i in range(len(s)): \n        if (s[i] == ch): \n"
    "            s = s[0 : i] + s[i + 1:] \n            break\n    for i in range(len(s) - 1,-1,-1):  \n"
    "        if (s[i] == ch): \n            s = s[0 : i] + s[i + 1:] \n            break\n    return s "
)


def _row(iid: str, request: str, answer: str = "Here is the code.") -> dict[str, Any]:
    messages = [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "lineage": {"instruction_id": iid}}


def test_every_row_is_checked_and_each_overlap_is_listed_with_its_problem() -> None:
    rows = [
        _row(
            "copy", "Check if in given list of numbers, are any two numbers closer to each other than given threshold."
        ),
        _row(
            "answer", "Remove the first and the last time a character shows up in a text.", f"```python\n{MBPP_11}\n```"
        ),
        _row("novel", "Write a Flask endpoint that returns the server's uptime as JSON."),
        _row("reword", "Implement has_close_elements: do any two of the floats lie nearer than a limit?"),
    ]

    def score(messages: list[dict[str, str]], candidates: list[str]) -> dict[str, float]:
        named = any("has_close_elements" in m["content"] for m in messages)
        return {c: -1.0 if named else -40.0 for c in candidates}

    config = DecontaminationConfig(mbpp_path=os.environ["WARRIOR_MBPP_PATH"])
    audit = audit_rows(rows, config, CACHE, score, judge_name="smol")
    assert audit["rows"] == 4 and audit["benchmarks"] == ["humaneval", "mbpp"]
    ngram = {(h["row"], h["in"]): f"{h['benchmark']}/{h['task_id']}" for h in audit["ngram"]["hits"]}
    assert ngram == {("copy", "request"): "humaneval/HumanEval/0", ("answer", "answer"): "mbpp/11"}
    assert [(h["row"], h["task_id"]) for h in audit["embedding"]["hits"]] == [("copy", "HumanEval/0")]
    assert audit["embedding"]["nearest"]["row"] == "copy"
    rewording = audit["rewording"]
    assert rewording["ran"] and rewording["judge"] == "smol" and rewording["judged_rows"] >= 2
    assert [(h["row"], h["task_id"], h["method"]) for h in rewording["hits"]] == [
        ("reword", "HumanEval/0", "rewording")
    ]
    assert audit["overlap"] == 3  # every row but the novel one
    # Without a judge the rewording check says it did not run; the others still do.
    unjudged = audit_rows(rows[2:3], config, CACHE)
    assert unjudged["rewording"]["ran"] is False and unjudged["overlap"] == 0
