"""Dataset rows: the instruction, every answer and the battle's lineage; the winner's answer becomes the target."""

from __future__ import annotations

from typing import Any

from warrior.common.verification import row_verification

# Labels the screening stage gives an instruction; rows from before it did are simply without them.
TAGS = ("category", "language")


def candidate_row(instruction: dict[str, Any], battle: dict[str, Any], score: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to emit the training row once the final winner is known.

    The instruction's category and language are carried along when it has them.
    """
    row = {
        "id": instruction["id"],
        "campaign": instruction["campaign"],
        "instruction": instruction["text"],
        "attacker": instruction["attacker"],
        "attacker_revision": instruction["attacker_revision"],
        "provisional": {"winner": score["winner"], "scores": score["scores"]},
    }
    row |= {tag: instruction[tag] for tag in TAGS if instruction.get(tag) is not None}
    return with_battle(row, battle)


def with_battle(candidate: dict[str, Any], battle: dict[str, Any]) -> dict[str, Any]:
    """The candidate with the answers, pairs and judges of a (merged) battle, e.g. after newcomers joined it."""
    return candidate | {
        "answers": {
            name: {"text": a["text"], "revision": a["revision"], "finish_reason": a["finish_reason"]}
            for name, a in battle["answers"].items()
        },
        "pairs": battle["pairs"],
        "judges": sorted({j["judge"] for j in battle["judgments"] if j.get("source", "llm") == "llm"}),
        "execution": battle.get("execution"),
        "verdicts": [{"source": j.get("source", "llm"), "votes": j.get("votes", 1)} for j in battle["judgments"]],
    }


def training_row(candidate: dict[str, Any], winner: str, scores: dict[str, float], ratings_key: str) -> dict[str, Any]:
    """A chat record (`messages`) with its lineage, ready for an SFT trainer.

    The lineage has `category` and `language` when the candidate has them (readers treat an absent
    one as "unknown").
    """
    answer = candidate["answers"][winner]
    row: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": candidate["instruction"]},
            {"role": "assistant", "content": answer["text"]},
        ],
        "lineage": {
            "campaign": candidate["campaign"],
            "instruction_id": candidate["id"],
            "attacker": candidate["attacker"],
            "attacker_revision": candidate["attacker_revision"],
            "winner": winner,
            "winner_revision": answer["revision"],
            "scores": scores,
            "votes": [
                {
                    "a": p["a"],
                    "b": p["b"],
                    "votes_a": p["votes_a"],
                    "votes_b": p["votes_b"],
                    "ties": p["ties"],
                    "source": p.get("source", "llm"),
                }
                for p in candidate["pairs"]
            ],
            "judges": candidate["judges"],
            "model_revisions": {name: a["revision"] for name, a in candidate["answers"].items()},
            "ratings": ratings_key,
            "verification": row_verification(candidate.get("execution"), winner, candidate.get("verdicts", [])),
        },
    }
    row["lineage"] |= {tag: candidate[tag] for tag in TAGS if candidate.get(tag) is not None}
    return row
