"""The judge panel detects judges that answer by position and takes their votes out of the decision."""

from __future__ import annotations

from typing import Any

from warrior.scorer.judge_panel import cohen_kappa, excluded, panel
from warrior.scorer.tasks import outcomes_of, winner_of


def _judgment(judge: str, a: str, b: str, forward: str, backward: str) -> dict[str, Any]:
    probs = {"A": {"A": 0.8, "B": 0.1, "tie": 0.1}, "B": {"A": 0.1, "B": 0.8, "tie": 0.1}}
    side = {("A", "B"): a, ("B", "A"): b}.get((forward, backward))
    return {"judge": judge, "a": a, "b": b, "forward": {"probs": probs[forward]},
            "backward": {"probs": probs[backward]}, "winner": side}  # fmt: skip


def _battles(n: int) -> list[dict[str, Any]]:
    """n instructions, experts x (good, long answers) and y (poor, short); judge `fair` sees x better
    in both orders, judge `lazy` says "A" whatever it is shown."""
    out = []
    for i in range(n):
        out.append(
            {
                "id": f"i{i}",
                "competitors": ["x", "y"],
                "answers": {"x": {"text": "a careful, longer answer"}, "y": {"text": "short"}},
                "pairs": [{"a": "x", "b": "y"}],
                "judgments": [_judgment("fair", "x", "y", "A", "B"), _judgment("lazy", "x", "y", "A", "A")],
            }
        )
    return out


def test_position_judge_is_flagged_and_excluded_with_a_reason() -> None:
    result = panel(_battles(8), max_flip_rate=0.5, min_judgments=5)
    assert result["lazy"]["flip_rate"] == 1.0 and result["lazy"]["first_position_rate"] == 1.0
    assert not result["lazy"]["trusted"] and "flip rate 1.00" in result["lazy"]["reason"]
    assert result["fair"]["flip_rate"] == 0.0 and result["fair"]["trusted"]
    assert result["fair"]["first_position_rate"] == 0.5
    assert result["fair"]["longer_answer_rate"] == 1.0
    assert excluded(result) == {"lazy"}


def test_too_few_judgments_do_not_exclude() -> None:
    assert excluded(panel(_battles(2), min_judgments=5)) == set()


def test_excluded_votes_stop_deciding_winners() -> None:
    battle = {
        "id": "i0",
        "competitors": ["x", "y"],
        "answers": {"x": {"text": "x"}, "y": {"text": "y"}},
        "pairs": [{"a": "x", "b": "y"}],
        # `lazy` gives y a decisive vote (a consistent-looking one), `fair` gives x one: without lazy, x wins.
        "judgments": [_judgment("fair", "x", "y", "A", "B"), _judgment("lazy", "x", "y", "B", "A"),
                      _judgment("lazy", "x", "y", "B", "A")],
    }  # fmt: skip
    ratings = {"x": 0.0, "y": 0.0}
    assert winner_of(battle, ratings, 0.7)["winner"] == "y"
    assert winner_of(battle, ratings, 0.7, {"lazy"})["winner"] == "x"
    assert [o.winner for o in outcomes_of(battle, {"lazy"})] == ["a"]


def test_kappa() -> None:
    assert cohen_kappa([("first", "first"), ("second", "second"), ("tie", "tie")]) == 1.0
    assert cohen_kappa([]) is None
    assert cohen_kappa([("first", "first"), ("first", "first")]) is None  # chance agreement is total
    value = cohen_kappa([("first", "second"), ("second", "first")])
    assert value is not None and value < 0


def test_a_small_but_conclusive_sample_of_flips_excludes_a_judge() -> None:
    from warrior.scorer.judge_panel import panel, wilson_lower

    assert wilson_lower(4, 4) > 0.5 > wilson_lower(3, 3)

    def battle(i: int, judged: int) -> dict:
        return {
            "id": f"i{i}",
            "answers": {"x": {"text": "a"}, "y": {"text": "bb"}},
            "judgments": [
                {
                    "a": "x",
                    "b": "y",
                    "judge": f"j{judged}",
                    "winner": None,
                    "forward": {"verdict": "A"},
                    "backward": {"verdict": "A"},
                }  # fmt: skip
            ],
        }

    four = panel([battle(i, 4) for i in range(4)], max_flip_rate=0.5, min_judgments=5)
    assert four["j4"]["trusted"] is False and "flip rate 1.00" in four["j4"]["reason"]
    three = panel([battle(i, 3) for i in range(3)], max_flip_rate=0.5, min_judgments=5)
    assert three["j3"]["trusted"] is True  # 3 in 3 could still be chance
