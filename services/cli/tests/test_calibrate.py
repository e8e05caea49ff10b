"""`warrior calibrate`: the report's arithmetic, the labelled set's reader, the MBPP subset, the stored report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from warrior.cli.calibrate import (
    SetFileError,
    combined_verdict,
    ground_truth_tests,
    latest_calibration,
    load_set,
    mbpp_items,
    pair_record,
    panel_verdict,
    read_set,
    render,
    store_report,
    subset,
    summarize,
    verdict_stats,
)
from warrior.common import benchmarks
from warrior.common.campaign_state import CampaignState
from warrior.common.runtime import get_runtime
from warrior.common.store import LocalStore


@pytest.fixture(scope="module")
def mbpp_path() -> str:
    path = os.environ.get("WARRIOR_MBPP_PATH")
    if not path:
        pytest.fail("WARRIOR_MBPP_PATH is not set and no MBPP copy was found at ../shared/data/mbpp.jsonl")
    return path


# -- arithmetic ---------------------------------------------------------------------------------
def test_verdict_stats_count_accuracy_on_decided_separable_pairs_and_coverage() -> None:
    outcomes: list[tuple[str | None, str | None]] = [
        ("a", "a"),  # decided, separable, right
        ("b", "a"),  # decided, separable, wrong
        (None, "b"),  # a tie on a separable pair: not decided, lowers coverage
        ("a", None),  # decided, but the ground truth cannot tell: not scored
        (None, None),
    ]
    assert verdict_stats(outcomes) == {
        "pairs": 5,
        "decided": 3,
        "separable": 3,
        "decided_separable": 2,
        "correct": 1,
        "accuracy": 0.5,
        "coverage": 0.667,
    }
    assert verdict_stats([]) == {"pairs": 0, "decided": 0, "separable": 0, "decided_separable": 0,
                                       "correct": 0, "accuracy": None, "coverage": None}  # fmt: skip


def test_panel_majority_and_the_combined_verdict() -> None:
    assert panel_verdict(["a", "a", "b"], "a", "b") == "a"
    assert panel_verdict(["a", "b"], "a", "b") is None
    assert panel_verdict([None, None, "b"], "a", "b") == "b"
    assert combined_verdict("a", "b") == "a"  # execution decides where it can
    assert combined_verdict(None, "b") == "b"  # else the panel
    assert combined_verdict(None, None) is None


def _judgment(judge: str, a: str, b: str, forward: str, backward: str) -> dict[str, Any]:
    """A text-mode judgment: `forward` shows a first, `backward` shows b first; the winner as battles combine them."""
    winner = {("A", "B"): a, ("B", "A"): b}.get((forward, backward))
    return {"judge": judge, "a": a, "b": b, "winner": winner,
            "forward": {"verdict": forward}, "backward": {"verdict": backward}}  # fmt: skip


def _item(
    item_id: str,
    texts: dict[str, str],
    gt_passed: dict[str, int],
    execution: dict[tuple[str, str], str | None],
    judgments: list[dict[str, Any]],
) -> dict[str, Any]:
    lengths = {n: len(t) for n, t in texts.items()}
    pairs = []
    for (a, b), winner in execution.items():
        decided = {"winner": winner, "reason": "test"} if winner else None
        pairs.append(pair_record(item_id, a, b, gt_passed, decided, judgments, lengths))
    return {
        "id": item_id,
        "answers": {n: {"text": t, "finish_reason": "stop"} for n, t in texts.items()},
        "judgments": judgments,
        "pairs": pairs,
        "ground_truth": {"tests": [{"id": f"gt{i}"} for i in range(3)], "passed": gt_passed},
    }


def _hand_made() -> list[dict[str, Any]]:
    # Item 1: x passes all 3 ground-truth tests, y 1, z 0. Execution decides x>y rightly and x-z wrongly;
    # the judges: z judges x|y forward A / backward B (consistent, x: right); y judges x|z A, A (a flip: tie);
    # x judges y|z B, A (consistent, z: wrong).
    one = _item(
        "one",
        {"x": "x" * 30, "y": "y" * 20, "z": "z" * 10},
        {"x": 3, "y": 1, "z": 0},
        {("x", "y"): "x", ("x", "z"): "z", ("y", "z"): None},
        [_judgment("z", "x", "y", "A", "B"), _judgment("y", "x", "z", "A", "A"), _judgment("x", "y", "z", "B", "A")],
    )
    # Item 2: nothing separates x and y (both 3), z passes 2. Execution decides nothing;
    # judges: z picks y on x|y (not scored), y picks x on x|z (right), x picks y on y|z (right).
    two = _item(
        "two",
        {"x": "x" * 5, "y": "y" * 50, "z": "z" * 5},
        {"x": 3, "y": 3, "z": 2},
        {("x", "y"): None, ("x", "z"): None, ("y", "z"): None},
        [_judgment("z", "x", "y", "B", "A"), _judgment("y", "x", "z", "A", "B"), _judgment("x", "y", "z", "A", "B")],
    )
    return [one, two]


def test_separable_pairs_and_the_better_answer() -> None:
    pairs = [p for item in _hand_made() for p in item["pairs"]]
    assert [(p["item"], p["a"], p["b"], p["better"]) for p in pairs if p["separable"]] == [
        ("one", "x", "y", "x"), ("one", "x", "z", "x"), ("one", "y", "z", "y"),
        ("two", "x", "z", "x"), ("two", "y", "z", "y"),
    ]  # fmt: skip
    first = pairs[0]
    assert first["gt_passed"] == {"x": 3, "y": 1} and first["judges"] == {"z": "x"} and first["panel"] == "x"
    assert pairs[1]["execution"] == "z" and pairs[1]["panel"] is None and pairs[1]["combined"] == "z"
    assert pairs[2]["execution"] is None and pairs[2]["combined"] == pairs[2]["panel"] == "z"


def test_summary_of_hand_made_judgments_and_matrices() -> None:
    summary = summarize(_hand_made(), ["x", "y", "z"])
    assert (summary["pairs"], summary["separable"]) == (6, 5)
    v = summary["verdicts"]
    # Execution: decided 2 (both separable), 1 right; 5 separable pairs.
    assert (v["execution"]["decided"], v["execution"]["correct"], v["execution"]["accuracy"]) == (2, 1, 0.5)
    assert v["execution"]["coverage"] == 0.4
    # The panel (one judge per pair here): decided 5 of 6, 4 of them separable, 3 right.
    assert (v["llm panel"]["decided"], v["llm panel"]["decided_separable"], v["llm panel"]["correct"]) == (5, 4, 3)
    assert (v["llm panel"]["accuracy"], v["llm panel"]["coverage"]) == (0.75, 0.8)
    # Combined: execution on one/x|y (right) and one/x|z (wrong), the panel elsewhere: one/y|z z (wrong),
    # two/x|z x (right), two/y|z y (right); two/x|y y is not separable.
    assert (v["combined"]["decided_separable"], v["combined"]["correct"], v["combined"]["coverage"]) == (5, 3, 1.0)
    assert v["combined"]["accuracy"] == 0.6
    # Judge y: x|z on item one flipped (A, A): a tie; on item two right.
    y = v["judge y"]
    assert (y["pairs"], y["decided"], y["correct"], y["accuracy"]) == (2, 1, 1, 1.0)
    assert y["flip_rate"] == 0.5
    assert y["first_position_rate"] == 0.75  # A, A, A, B
    judge_x = v["judge x"]
    assert (judge_x["accuracy"], judge_x["flip_rate"], judge_x["first_position_rate"]) == (0.5, 0.0, 0.5)
    # Judge z decided both x|y pairs for the longer answer: one is x (30 vs 20), two is y (50 vs 5).
    assert v["judge z"]["longer_answer_rate"] == 1.0
    # The longer-answer baseline: right on every pair of item one and on two/y|z; two/x|z (equal lengths) is a
    # tie and two/x|y is not separable.
    assert (v["longer answer"]["decided_separable"], v["longer answer"]["correct"]) == (4, 4)
    experts = summary["per_expert"]
    assert experts["x"]["pass_rate"] == 1.0 and experts["y"]["pass_rate"] == 0.5 and experts["z"]["pass_rate"] == 0.0
    assert experts["x"]["gt_tests_passed"] == 6 and experts["x"]["gt_tests"] == 6
    assert summary["ranking"]["ground_truth"] == ["x", "y", "z"]
    report = {
        "calibration": "calibration-test", "set": {"name": "hand", "seed": 0, "size": 2, "items_run": 2},
        "experts": [{"name": n, "revision": "r"} for n in "xyz"], "timings": {"seconds": 1.0}, "failures": {},
        **summary,
    }  # fmt: skip
    text = render(report)
    assert "judge x" in text and "combined" in text and "llm panel" in text and "pass_rate" in text
    assert "every answer (no test)" in text and "min_trusted" in text  # the rows table


def test_row_precision_counts_verified_answers_that_pass_the_ground_truth() -> None:
    # One item, three answers; ground truth: x right (3/3), y and z wrong. The experts' tests: t0 (by x)
    # passed by x and y, t1 (by y) passed by y alone. Consensus: groups {x: t0} and {y: t0, t1}; y's group has
    # the most support, so both tests are trusted and y alone is verified: a wrong row. Independent: t1 is
    # only y's, so t0 alone decides and x and y are both verified, one of them right.
    items = _hand_made()[:1]
    items[0]["execution"] = {
        "executable": True,
        "tests": [{"id": "t0", "writer": "x"}, {"id": "t1", "writer": "y"}],
        "matrix": {"x": {"t0": "passed", "t1": "failed"}, "y": {"t0": "passed", "t1": "passed"},
                   "z": {"t0": "failed", "t1": "failed"}},
    }  # fmt: skip
    rows = {(r["rule"], r["min_trusted"]): r for r in summarize(items, ["x", "y", "z"])["rows"]}
    base = rows[("every answer (no test)", 0)]
    assert (base["verified_answers"], base["correct"], base["precision"]) == (3, 1, 0.333)
    consensus = rows[("consensus", 1)]
    assert (consensus["items_with_row"], consensus["verified_answers"], consensus["correct"]) == (1, 1, 0)
    assert (consensus["precision"], consensus["recall"]) == (0.0, 0.0)
    assert rows[("consensus", 2)]["items_with_row"] == 1
    independent = rows[("independent", 1)]
    assert (independent["verified_answers"], independent["correct"], independent["precision"]) == (2, 1, 0.5)
    assert (independent["rows_all_correct"], independent["recall"]) == (0, 1.0)
    assert rows[("independent", 2)]["items_with_row"] == 0  # one trusted test is not enough


# -- the labelled set -------------------------------------------------------------------------
GOOD = {"id": "p1", "request": "Write add(a, b).", "tests": "import math\nassert add(1, 2) == 3\nassert add(0, 0) == 0",
        "language": "Python"}  # fmt: skip


def _write(tmp_path: Path, *lines: Any) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_a_good_set_reads_with_setup_as_preamble(tmp_path: Path) -> None:
    items = read_set(_write(tmp_path, GOOD, "", {k: v for k, v in GOOD.items() if k != "id"}))
    assert [i.id for i in items] == ["p1", "line-3"]
    tests = ground_truth_tests(items[0].tests)
    assert [t.assertion for t in tests] == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    assert tests[0].preamble == "import math" and tests[0].calls == ("add",)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "2: not valid JSON"),
        ("[1, 2]", "2: an item is a JSON object"),
        ({"request": "r", "language": "Python"}, "2: missing key 'tests'"),
        ({"tests": "assert f() == 1", "language": "Python"}, "2: missing key 'request'"),
        (GOOD | {"id": "p2", "answer": "x"}, "2: unknown key 'answer'"),
        (GOOD | {"id": "p2", "tests": 3}, "2: key 'tests' must be a string"),
        (GOOD | {"id": "p2", "tests": "assert f(("}, "2: key 'tests' is not Python code"),
        (GOOD | {"id": "p2", "tests": "x = 1"}, "2: key 'tests' holds no assert"),
        (GOOD | {"id": "p2", "language": "Rust"}, "2: key 'language'"),
        (GOOD | {"id": "p2", "request": "  "}, "2: key 'request' is empty"),
        (GOOD, "2: key 'id': 'p1' is already the id of line 1"),
    ],
)
def test_malformed_lines_are_refused_naming_the_line_and_key(tmp_path: Path, line: Any, expected: str) -> None:
    path = _write(tmp_path, GOOD, line)
    with pytest.raises(SetFileError) as caught:
        read_set(path)
    assert f"{path}:{expected}" in str(caught.value)


def test_missing_or_empty_set_file(tmp_path: Path) -> None:
    with pytest.raises(SetFileError, match="cannot read"):
        read_set(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SetFileError, match="no item"):
        read_set(tmp_path / "empty.jsonl")


def test_calibrate_refuses_a_bad_set_with_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text("experts: [{name: a}, {name: b}]\n")
    path = _write(tmp_path, GOOD | {"tests": 7})
    result = subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", "calibrate", "--config", str(config), "--set", str(path)],
        capture_output=True, text=True, env=os.environ | {"WARRIOR_HOME": str(tmp_path / "home")}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and f"{path}:1: key 'tests' must be a string" in result.stderr


# -- MBPP ---------------------------------------------------------------------------------------
def test_mbpp_set_never_holds_the_test_split(mbpp_path: str, tmp_path: Path) -> None:
    items = mbpp_items(mbpp_path, tmp_path)
    ids = [int(i.id.split("/")[1]) for i in items]
    assert len(items) == 474 and set(ids) == set(range(1, 11)) | set(range(511, 975))
    assert items[1].request == (
        "Write a function to find the similar elements from the given two tuple lists. "
        "Name the function `similar_elements`."
    )
    assert "assert" not in " ".join(i.request for i in items)  # ground-truth tests are never shown
    for size, seed in ((None, 0), (1000, 0), (30, 0), (30, 1), (5, 7)):
        chosen, info = load_set(None, size=size, seed=seed, cache_dir=tmp_path)
        assert not any(int(i.id.split("/")[1]) in benchmarks.MBPP_TEST_IDS for i in chosen)
        assert info["ids"] == [i.id for i in chosen] and len(chosen) == min(size or 10**6, info["available"])
    # Train-split problems that repeat a test-split problem are left out too (e.g. 602 is test problem 217).
    assert info["excluded"]["mbpp/602"] == "mbpp/217" and info["available"] == 474 - len(info["excluded"])
    again, _ = load_set(None, size=5, seed=7, cache_dir=tmp_path)
    assert again == chosen  # seeded
    assert subset(chosen, 2, 0) == subset(chosen, 2, 0) != subset(chosen, 2, 3)
    assert set(subset(chosen, 2, 1)) < set(subset(chosen, 4, 1))  # a larger subset extends a smaller one


def test_a_calibration_request_is_dropped_by_decontamination(warrior_env: dict[str, str], mbpp_path: str) -> None:
    """Were a calibration item (MBPP train split) ever to reach screening, decontamination would drop it."""
    from warrior.instruction_miner import tasks

    rt = get_runtime()
    state = CampaignState(rt.redis, "calib-decon")
    state.create({"campaign": "calib-decon", "experts": [{"name": "a"}, {"name": "b"}],
                  "screening": {"rating": {"enabled": False}}}, expected_mine=2)  # fmt: skip
    request = next(i.request for i in mbpp_items(mbpp_path, rt.settings.cache_dir / "benchmarks") if i.id == "mbpp/700")
    rt.store.put_json("runs/calib-decon/instructions/700.json", {"id": "700", "text": request, "finish_reason": "stop"})
    assert tasks.screen(rt, "calib-decon", "700") is False
    found = state.table("contamination")["700"]
    assert (found["benchmark"], found["task_id"], found["method"]) == ("mbpp", "700", "ngram")


# -- the stored report --------------------------------------------------------------------------
def test_latest_calibration_is_the_newest_of_the_same_experts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    assert latest_calibration(store, ["a", "b"]) is None

    def report(cid: str, names: list[str]) -> dict[str, Any]:
        return {"calibration": cid, "experts": [{"name": n, "revision": "r"} for n in names]}

    store_report(store, report("calibration-1", ["a", "b"]))
    assert store.exists("runs/calibration-1/calibration.json")
    store_report(store, report("calibration-2", ["a", "b", "c"]))
    found = latest_calibration(store, ["b", "a"])
    assert found is not None and found["calibration"] == "calibration-1"
    newest = latest_calibration(store, ["c", "b", "a"])
    assert newest is not None and newest["calibration"] == "calibration-2"
    assert latest_calibration(store, ["a"]) is None
