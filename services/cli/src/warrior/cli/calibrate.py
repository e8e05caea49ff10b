"""`warrior calibrate`: how right the arena's verdicts are, on a labelled set the arena never sees.

Every item of the set is a request with ground-truth tests. The live experts of a config treat it
as a battle does: each answers, each writes tests, the answers run against the experts' tests
(the execution record: trust and pass matrix), and every expert outside a pair judges the pair in
both orders, even a pair execution decides, so the LLM judges can be scored on their own. Then every
answer runs against the ground-truth tests, which no expert ever sees.

Ground truth for a pair: the answer passing more ground-truth tests is better; a pair is separable
when the counts differ. For each verdict source (each judge, the LLM panel, execution, and the
combination battles use with `battle.verdict: execution-first`) the report gives the pairs it
decided, its accuracy on the separable pairs it decided and its coverage of the separable pairs;
for each expert, the share of items whose answer passes every ground-truth test.

The default set is MBPP's prompt, validation and train splits (task ids 1-10 and 511-974); its test
split (11-510) and HumanEval are evaluation sets and never calibrate anything. Items whose request
shares a word 13-gram with a problem of an evaluation set are left out of any set (MBPP's train
split repeats a few test-split problems almost word for word).

Every model call goes through a ledger under the calibration's id (a content hash of the set, the
subset, the experts and their revisions and the battle settings), so a rerun pays for nothing. The
calibration creates no campaign: nothing it does is screened, scored or collected into a dataset.
"""

from __future__ import annotations

import ast
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from warrior.cli.tables import table
from warrior.common import benchmarks
from warrior.common.campaign_config import BattleConfig, CampaignConfig, ConfigError
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import ServiceUnavailable
from warrior.common.expert_client import ExpertRequestError, ExpertUnavailable
from warrior.common.ids import content_hash
from warrior.common.ledger import CallLedger
from warrior.common.model_info import expert_model
from warrior.common.programs import UnitTest, called_names
from warrior.common.runtime import Runtime
from warrior.common.store import ObjectNotFound, ObjectStore
from warrior.common.verification import TRUST_RULES, crosscheck, pair_verdict, passes, trust_tests
from warrior.instruction_miner.decontamination import BenchmarkItem, ContaminationIndex
from warrior.judge.battle import BattleContext, answer, judge_pair, schedule, write_tests
from warrior.judge.execution import execution_record, run_answers, unit_test_records
from warrior.judge.testgen import collect_tests
from warrior.judge.verdicts import VerdictParseError
from warrior.scorer.judge_panel import panel

__all__ = [
    "CalibrationItem",
    "SetFileError",
    "calibration_id",
    "combined_verdict",
    "evaluation_overlaps",
    "ground_truth_tests",
    "judge_behaviour",
    "latest_calibration",
    "load_set",
    "mbpp_items",
    "mbpp_request",
    "pair_record",
    "panel_verdict",
    "read_set",
    "render",
    "run_calibration",
    "subset",
    "summarize",
    "verdict_stats",
]

SET_KEYS = ("id", "request", "tests", "language")
GROUND_TRUTH = "ground-truth"
# Answers shorter than this many tokens are often cut off before their code ends.
MIN_CODE_TOKENS = 256
_CALL_ERRORS = (ExpertUnavailable, ExpertRequestError)
# One evaluation run of an item is retried this often when the executor service does not answer in time.
_EXECUTOR_ATTEMPTS = 3


class SetFileError(ConfigError):
    """A labelled set that cannot be used; the message names the file, the line and the key."""


@dataclass(frozen=True)
class CalibrationItem:
    """One labelled problem: the request the experts see and the tests they never see."""

    id: str
    request: str
    tests: str
    language: str = "Python"


# -- the labelled set -------------------------------------------------------------------------
def ground_truth_tests(tests: str) -> list[UnitTest]:
    """Each assert of `tests` as one test, with every other statement (setup) as its preamble."""
    tree = ast.parse(tests)
    preamble = "\n".join(ast.unparse(n) for n in tree.body if not isinstance(n, ast.Assert))
    out: list[UnitTest] = []
    for node in tree.body:
        if isinstance(node, ast.Assert):
            assertion = ast.unparse(node)
            out.append(
                UnitTest(
                    id=f"gt{len(out)}",
                    writer=GROUND_TRUTH,
                    assertion=assertion,
                    preamble=preamble,
                    calls=called_names(assertion, preamble),
                )
            )
    return out


def _line_error(path: Path, lineno: int, message: str) -> SetFileError:
    return SetFileError(f"{path}:{lineno}: {message}")


def read_set(path: str | Path) -> list[CalibrationItem]:
    """A labelled set in JSONL, one item a line:
    {"id": str (optional), "request": str, "tests": str, "language": "Python"}.

    `tests` is Python code: assert statements, optionally setup code before them. Blank lines are
    skipped; anything else that does not fit is refused with the line and the key it concerns.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SetFileError(f"cannot read the labelled set {path}: {exc}") from None
    items: list[CalibrationItem] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise _line_error(path, lineno, f"not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise _line_error(path, lineno, f"an item is a JSON object, got {type(record).__name__}")
        unknown = sorted(set(record) - set(SET_KEYS))
        if unknown:
            raise _line_error(path, lineno, f"unknown key {unknown[0]!r} (keys: {', '.join(SET_KEYS)})")
        for key in ("request", "tests", "language"):
            if key not in record:
                raise _line_error(path, lineno, f"missing key {key!r}")
        for key in SET_KEYS:
            if key in record and not isinstance(record[key], str):
                raise _line_error(path, lineno, f"key {key!r} must be a string, got {type(record[key]).__name__}")
        if not record["request"].strip():
            raise _line_error(path, lineno, "key 'request' is empty")
        if record["language"].strip().lower() not in ("python", "python3", "py"):
            raise _line_error(path, lineno, f"key 'language': only Python can be run, got {record['language']!r}")
        try:
            tests = ground_truth_tests(record["tests"])
        except (SyntaxError, ValueError) as exc:
            raise _line_error(path, lineno, f"key 'tests' is not Python code ({exc})") from None
        if not tests:
            raise _line_error(path, lineno, "key 'tests' holds no assert statement")
        item_id = record.get("id") or f"line-{lineno}"
        if not item_id.strip():
            raise _line_error(path, lineno, "key 'id' is empty")
        if item_id in seen:
            raise _line_error(path, lineno, f"key 'id': {item_id!r} is already the id of line {seen[item_id]}")
        seen[item_id] = lineno
        items.append(CalibrationItem(item_id, record["request"], record["tests"], "Python"))
    if not items:
        raise SetFileError(f"the labelled set {path} holds no item")
    return items


def mbpp_request(statement: str, tests: str) -> str:
    """The request an expert sees for an MBPP problem: its statement and the name its tests call."""
    unit = ground_truth_tests(tests)
    names = unit[0].calls if unit else ()
    return f"{statement.strip()} Name the function `{names[0]}`." if names else statement.strip()


def mbpp_items(path: str | None, cache_dir: Path) -> list[CalibrationItem]:
    """MBPP's prompt, validation and train splits (task ids 1-10, 511-974); never its test split."""
    try:
        problems = benchmarks.mbpp(path, cache_dir)
    except benchmarks.BenchmarkDataError as exc:
        raise SetFileError(str(exc)) from None
    return [
        CalibrationItem(f"mbpp/{p.task_id}", mbpp_request(p.prompt, p.tests), p.tests)
        for p in problems
        if int(p.task_id) not in benchmarks.MBPP_TEST_IDS
    ]


def evaluation_overlaps(items: Sequence[CalibrationItem], mbpp_path: str | None, cache_dir: Path) -> dict[str, str]:
    """Items whose request shares a word 13-gram with an evaluation problem (HumanEval, MBPP's test
    split), mapped to that problem ("mbpp/217")."""
    try:
        evaluation = benchmarks.humaneval() + benchmarks.mbpp(mbpp_path, cache_dir, test_split=True)
    except benchmarks.BenchmarkDataError as exc:
        raise SetFileError(f"cannot check the set against the evaluation sets: {exc}") from None
    index = ContaminationIndex(BenchmarkItem(p.benchmark, p.task_id, p.statement) for p in evaluation)
    out = {}
    for item in items:
        hit = index.match(item.request)
        if hit is not None:
            out[item.id] = hit.task_id if hit.benchmark == "humaneval" else f"{hit.benchmark}/{hit.task_id}"
    return out


def subset(items: Sequence[CalibrationItem], size: int | None, seed: int) -> list[CalibrationItem]:
    """A seeded random subset of `size` items (all of them when size is None or not smaller), in set order."""
    if size is None or size >= len(items):
        return list(items)
    if size < 1:
        raise SetFileError(f"--size must be at least 1, got {size}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    chosen = set(order[:size])  # a larger size extends a smaller one of the same seed
    return [item for i, item in enumerate(items) if i in chosen]


def set_digest(items: Sequence[CalibrationItem]) -> str:
    return content_hash([(i.id, i.request, i.tests, i.language) for i in items], length=32)


def load_set(
    path: str | None, *, size: int | None, seed: int, cache_dir: Path
) -> tuple[list[CalibrationItem], dict[str, Any]]:
    """The items to run (the set, less its overlaps with evaluation sets, then the seeded subset) and
    what the report says of them."""
    benchmark_cache = cache_dir / "benchmarks"
    if path:
        items, name = read_set(path), Path(path).name
    else:
        items, name = mbpp_items(None, benchmark_cache), "mbpp prompt+validation+train (task ids 1-10, 511-974)"
    overlaps = evaluation_overlaps(items, None, benchmark_cache)
    kept = [item for item in items if item.id not in overlaps]
    if not kept:
        raise SetFileError(f"every item of {name} overlaps an evaluation set (HumanEval or MBPP's test split)")
    chosen = subset(kept, size, seed)
    info = {
        "name": name,
        "source": str(path) if path else "mbpp",
        "sha256": set_digest(items),
        "items": len(items),
        "excluded": dict(sorted(overlaps.items())),
        "available": len(kept),
        "seed": seed,
        "ids": [item.id for item in chosen],
    }
    return chosen, info


def calibration_id(set_sha: str, ids: Sequence[str], experts: Mapping[str, str], battle: Mapping[str, Any]) -> str:
    """`calibration-<hash>` of the set, the subset, the experts with their revisions and the battle settings."""
    return "calibration-" + content_hash(set_sha, list(ids), dict(sorted(experts.items())), battle, length=16)


# -- the arithmetic of the report -------------------------------------------------------------
def panel_verdict(votes: Iterable[str | None], a: str, b: str) -> str | None:
    """The LLM panel on a pair: the side most judges' final votes went to (a tie when even)."""
    counted = Counter(v for v in votes if v is not None)
    if counted[a] == counted[b]:
        return None
    return a if counted[a] > counted[b] else b


def combined_verdict(execution: str | None, panel_winner: str | None) -> str | None:
    """What a battle with `battle.verdict: execution-first` decides: execution where it decides, else the panel."""
    return execution if execution is not None else panel_winner


def _longer(lengths: Mapping[str, int], a: str, b: str) -> str | None:
    if lengths[a] == lengths[b]:
        return None
    return a if lengths[a] > lengths[b] else b


def pair_record(
    item: str,
    a: str,
    b: str,
    gt_passed: Mapping[str, int],
    execution: Mapping[str, Any] | None,
    judgments: Sequence[Mapping[str, Any]],
    lengths: Mapping[str, int],
) -> dict[str, Any]:
    """Everything the report needs of one pair: ground truth and each source's verdict (None: a tie)."""
    better = None if gt_passed[a] == gt_passed[b] else (a if gt_passed[a] > gt_passed[b] else b)
    judges = {str(j["judge"]): j["winner"] for j in judgments if j["a"] == a and j["b"] == b}
    decided = execution.get("winner") if execution else None
    panel_winner = panel_verdict(judges.values(), a, b) if judges else None
    return {
        "item": item,
        "a": a,
        "b": b,
        "gt_passed": {a: gt_passed[a], b: gt_passed[b]},
        "separable": better is not None,
        "better": better,
        "execution": decided,
        "execution_reason": execution.get("reason") if execution else None,
        "judges": dict(sorted(judges.items())),
        "panel": panel_winner,
        "combined": combined_verdict(decided, panel_winner),
        "longer": _longer(lengths, a, b),
    }


def verdict_stats(outcomes: Iterable[tuple[str | None, str | None]]) -> dict[str, Any]:
    """One source's figures from (its verdict, the better answer) per pair it ruled on; None is a tie.

    decided: non-tie verdicts; separable: pairs whose ground truth prefers one answer; accuracy:
    correct / decided separable pairs; coverage: decided separable / separable pairs.
    """
    pairs = decided = separable = decided_separable = correct = 0
    for verdict, better in outcomes:
        pairs += 1
        decided += verdict is not None
        separable += better is not None
        if verdict is not None and better is not None:
            decided_separable += 1
            correct += verdict == better
    return {
        "pairs": pairs,
        "decided": decided,
        "separable": separable,
        "decided_separable": decided_separable,
        "correct": correct,
        "accuracy": round(correct / decided_separable, 3) if decided_separable else None,
        "coverage": round(decided_separable / separable, 3) if separable else None,
    }


def judge_behaviour(items: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each judge's flip rate, first-position and longer-answer rates and kappa (the judge panel's
    definitions), over the LLM judgments of the items."""
    battles = [
        {
            "id": item["id"],
            "answers": item["answers"],
            "judgments": [dict(j) | {"source": "llm"} for j in item["judgments"]],
        }
        for item in items
    ]
    keep = ("judgments", "flip_rate", "first_position_rate", "longer_answer_rate", "kappa")
    return {judge: {k: row[k] for k in keep} for judge, row in panel(battles, max_flip_rate=1.0).items()}


def trusted_judges(items: Sequence[Mapping[str, Any]], max_flip_rate: float, min_judgments: int) -> set[str]:
    """The judges the campaign's judge panel would keep (the scoring section's limits)."""
    battles = [
        {
            "id": item["id"],
            "answers": item["answers"],
            "judgments": [dict(j) | {"source": "llm"} for j in item["judgments"]],
        }
        for item in items
    ]
    rows = panel(battles, max_flip_rate=max_flip_rate, min_judgments=min_judgments)
    return {judge for judge, row in rows.items() if row["trusted"]}


def summarize(
    items: Sequence[Mapping[str, Any]],
    experts: Sequence[str],
    *,
    max_flip_rate: float = 0.5,
    min_judge_judgments: int = 5,
) -> dict[str, Any]:
    """The report's figures from the item records (`pairs`, `answers`, `judgments`, `ground_truth`).

    Besides each source alone, "combined, trusted judges" is what a campaign's final ratings and
    winners rest on: execution where it decides, else the judges the judge panel keeps.
    """
    pairs = [p for item in items for p in item["pairs"]]
    judges = sorted({j for p in pairs for j in p["judges"]})
    behaviour = judge_behaviour(items)
    kept = trusted_judges(items, max_flip_rate, min_judge_judgments)
    for p in pairs:
        votes = [v for judge, v in p["judges"].items() if judge in kept]
        p["combined_trusted"] = combined_verdict(
            p["execution"], panel_verdict(votes, p["a"], p["b"]) if votes else None
        )
    sources: dict[str, Any] = {}
    for judge in judges:
        stats = verdict_stats((p["judges"][judge], p["better"]) for p in pairs if judge in p["judges"])
        sources[f"judge {judge}"] = {"kind": "judge", "judge": judge, **stats, **behaviour.get(judge, {})}
    sources["llm panel"] = {"kind": "panel", **verdict_stats((p["panel"], p["better"]) for p in pairs if p["judges"])}
    sources["execution"] = {"kind": "execution", **verdict_stats((p["execution"], p["better"]) for p in pairs)}
    sources["combined"] = {"kind": "combined", **verdict_stats((p["combined"], p["better"]) for p in pairs)}
    sources["combined, trusted judges"] = {
        "kind": "combined",
        "judges_kept": sorted(kept),
        **verdict_stats((p["combined_trusted"], p["better"]) for p in pairs),
    }
    sources["longer answer"] = {"kind": "baseline", **verdict_stats((p["longer"], p["better"]) for p in pairs)}
    per_expert: dict[str, dict[str, Any]] = {}
    for name in experts:
        mine = [item for item in items if name in item["answers"]]
        passed_all = sum(1 for item in mine if _passes_all(item["ground_truth"], name))
        truncated = sum(1 for item in mine if item["answers"][name].get("finish_reason") == "length")
        gt_wins = sum(1 for p in pairs if p["better"] == name)
        gt_losses = sum(1 for p in pairs if p["separable"] and name in (p["a"], p["b"]) and p["better"] != name)
        wins = sum(1 for p in pairs if p["combined"] == name)
        losses = sum(
            1 for p in pairs if p["combined"] is not None and name in (p["a"], p["b"]) and p["combined"] != name
        )
        per_expert[name] = {
            "items": len(mine),
            "passed_all": passed_all,
            "pass_rate": round(passed_all / len(mine), 3) if mine else None,
            "gt_tests_passed": sum(item["ground_truth"]["passed"].get(name, 0) for item in mine),
            "gt_tests": sum(len(item["ground_truth"]["tests"]) for item in mine),
            "truncated": truncated,
            "gt_win_rate": round(gt_wins / (gt_wins + gt_losses), 3) if gt_wins + gt_losses else None,
            "combined_win_rate": round(wins / (wins + losses), 3) if wins + losses else None,
        }
    return {
        "pairs": len(pairs),
        "separable": sum(1 for p in pairs if p["separable"]),
        "verdicts": sources,
        "rows": row_precision(items),
        "per_expert": per_expert,
        "ranking": {
            "ground_truth": _ranking(per_expert, "pass_rate", "gt_tests_passed"),
            "combined": _ranking(per_expert, "combined_win_rate"),
        },
    }


def row_precision(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """How correct the rows would be: under each trust rule (`battle.tests.trust`), and needing one or
    two trusted tests, the answers a dataset would take as verified (every trusted test passed, at
    least `min_trusted` of them) and how many of those pass every ground-truth test.

    A row's winner is one of its request's verified answers (the ratings pick which), so `precision`
    (correct / verified answers) is the chance that a verified row is right; `rows_all_correct` counts
    the requests whose every verified answer is right, whichever wins; `recall` is the share of requests
    with a right answer that yield a right verified one. The first line, every answer with no test, is
    the rate to beat."""
    executed = [item for item in items if (item.get("execution") or {}).get("executable")]
    right = {item["id"]: {n for n in item["answers"] if _passes_all(item["ground_truth"], n)} for item in executed}
    answerable = sum(1 for item in executed if right[item["id"]])

    def line(rule: str, min_trusted: int, verified: Mapping[str, set[str]]) -> dict[str, Any]:
        """One line from each request's verified answers (requests without one yield no row)."""
        total = sum(len(v) for v in verified.values())
        good = {iid: v & right[iid] for iid, v in verified.items()}
        correct = sum(len(g) for g in good.values())
        return {
            "rule": rule,
            "min_trusted": min_trusted,
            "items": len(executed),
            "items_with_row": len(verified),
            "verified_answers": total,
            "correct": correct,
            "precision": round(correct / total, 3) if total else None,
            "rows_all_correct": sum(1 for iid, g in good.items() if g == verified[iid]),
            "recall": round(sum(1 for g in good.values() if g) / answerable, 3) if answerable else None,
        }

    lines = [line("every answer (no test)", 0, {item["id"]: set(item["answers"]) for item in executed})]
    for rule in TRUST_RULES:
        trusted = {
            item["id"]: trust_tests(item["execution"]["matrix"], item["execution"]["tests"], rule)["trusted"]
            for item in executed
        }
        for min_trusted in (1, 2):
            verified: dict[str, set[str]] = {}
            for item in executed:
                tests = trusted[item["id"]]
                if len(tests) < min_trusted:
                    continue
                counts = passes(item["execution"]["matrix"], tests)
                mine = {n for n in item["answers"] if counts.get(n, 0) == len(tests)}
                if mine:
                    verified[item["id"]] = mine
            lines.append(line(rule, min_trusted, verified))
    return lines


def _passes_all(ground_truth: Mapping[str, Any], name: str) -> bool:
    total = len(ground_truth["tests"])
    return total > 0 and ground_truth["passed"].get(name, 0) == total


def _ranking(per_expert: Mapping[str, Mapping[str, Any]], *keys: str) -> list[str]:
    """Best first by the keys in turn (a missing figure counts as 0), then by name."""
    return sorted(per_expert, key=lambda n: (*(-(per_expert[n][k] or 0.0) for k in keys), n))


# -- running it -------------------------------------------------------------------------------
class _Tally(CampaignState):
    """The battle code's campaign state, kept in this process: a calibration creates no campaign in
    Redis, so it never shows in `warrior status` and nothing of it is ever collected."""

    def __init__(self, client: redis.Redis, campaign: str) -> None:
        super().__init__(client, campaign)
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.failures: dict[str, str] = {}

    def fail(self, item: str, reason: str) -> None:
        with self._lock:
            self.failures[item] = reason[:500]

    def incr(self, counter: str, by: int = 1) -> None:
        with self._lock:
            self.counters[counter] += by


def _slug(item_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", item_id).strip("-.")[:80] or "item"
    return f"{safe}-{content_hash(item_id, length=8)}"


@dataclass
class _Run:
    rt: Runtime
    calibration: str
    experts: list[str]
    config: BattleConfig
    state: _Tally
    ledger: CallLedger
    pool: ThreadPoolExecutor
    done: list[dict[str, Any]] = field(default_factory=list)

    def context(self, item: CalibrationItem) -> BattleContext:
        return BattleContext(
            self.rt, self.calibration, _slug(item.id), item.request, self.config, self.state, self.ledger
        )

    def _gather(self, ctx: BattleContext, futures: Mapping[str, Future[Any]], kind: str) -> dict[str, Any]:
        out = {}
        for name, future in futures.items():
            try:
                out[name] = future.result()
            except _CALL_ERRORS as exc:
                self.state.fail(f"{kind}:{ctx.iid}:{name}", f"{type(exc).__name__}: {exc}")
        return out

    def _run(self, answers: Mapping[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
        for attempt in range(_EXECUTOR_ATTEMPTS):
            try:
                return run_answers(self.rt, answers, records, self.config.tests)
            except ServiceUnavailable:
                if attempt == _EXECUTOR_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def item(self, item: CalibrationItem) -> dict[str, Any] | None:
        """One item end to end; None (with the failure recorded) when fewer than two experts answered."""
        ctx = self.context(item)
        answering = {name: self.pool.submit(answer, ctx, name) for name in self.experts}
        writing = {name: self.pool.submit(write_tests, ctx, name) for name in self.experts}
        answers = self._gather(ctx, answering, "answer")
        replies = self._gather(ctx, writing, "tests")
        if len(answers) < 2:
            self.state.fail(f"item:{ctx.iid}", f"{item.id}: {len(answers)} answer(s), a pair needs two")
            return None
        plan = schedule(list(answers), self.experts)
        judging = [
            ((a, b, judge), self.pool.submit(judge_pair, ctx, judge, a, b, answers))
            for a, b, judges in plan
            for judge in judges
        ]
        tests, writers = collect_tests(replies, self.config.tests.per_writer)
        records = unit_test_records(tests)
        execution = execution_record(
            self._run(answers, records), records, writers, item.language, self.config.tests.trust
        )
        gt_records = unit_test_records(ground_truth_tests(item.tests))
        gt_run = self._run(answers, gt_records)
        gt_ids = [t["id"] for t in gt_records]
        gt_passed = {n: sum(1 for t in gt_ids if row.get(t) == "passed") for n, row in gt_run["matrix"].items()}
        judgments = []
        for (a, b, judge), future in judging:
            try:
                judgments.append(future.result())
            except (*_CALL_ERRORS, VerdictParseError) as exc:
                self.state.fail(f"judge:{ctx.iid}:{a}|{b}:{judge}", f"{type(exc).__name__}: {exc}")
        lengths = {name: len(str(a["text"])) for name, a in answers.items()}
        pairs = [
            pair_record(item.id, a, b, gt_passed, pair_verdict(execution, a, b), judgments, lengths) for a, b, _ in plan
        ]
        record = {
            "id": item.id,
            "key": ctx.iid,
            "request": item.request,
            "answers": answers,
            "execution": execution,
            "ground_truth": {
                "tests": gt_records,
                "matrix": gt_run["matrix"],
                "code": gt_run["code"],
                "bindings": gt_run["bindings"],
                "passed": gt_passed,
                "trust": crosscheck(gt_run["matrix"], gt_ids),
            },
            "judgments": judgments,
            "pairs": pairs,
        }
        self.rt.store.put_json(f"runs/{self.calibration}/items/{ctx.iid}.json", record)
        return record


def _progress(started: float, done: int, total: int, items: Sequence[Mapping[str, Any]], state: _Tally) -> str:
    pairs = [p for item in items for p in item["pairs"]]
    return (
        f"[{time.monotonic() - started:5.0f}s] items {done}/{total}  pairs {len(pairs)}  "
        f"separable {sum(1 for p in pairs if p['separable'])}  "
        f"calls {state.counters['engine_calls']} paid, {state.counters['ledger_reused']} reused  "
        f"failures {len(state.failures)}"
    )


def _compact_item(item: Mapping[str, Any]) -> dict[str, Any]:
    execution = item["execution"]
    return {
        "id": item["id"],
        "key": item["key"],
        "gt_tests": len(item["ground_truth"]["tests"]),
        "gt_passed": dict(sorted(item["ground_truth"]["passed"].items())),
        "tests_written": len(execution.get("tests", [])),
        "tests_trusted": len(execution.get("trust", {}).get("trusted", [])),
        "finish_reasons": {n: a.get("finish_reason") for n, a in sorted(item["answers"].items())},
    }


def run_calibration(
    rt: Runtime,
    config: CampaignConfig,
    items: Sequence[CalibrationItem],
    *,
    set_info: Mapping[str, Any],
    max_tokens: int | None = None,
    parallel: int = 4,
    echo: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run every item with the config's experts (registered already) and return the report; the report
    and each item's record are stored under `runs/<calibration id>/`, and the report as the latest."""
    started_wall, started = time.time(), time.monotonic()
    battle = config.battle
    if max_tokens is not None:
        battle = battle.model_copy(update={"answer_sampling": battle.answer_sampling.model_copy(
            update={"max_tokens": max_tokens})})  # fmt: skip
    if battle.answer_sampling.max_tokens < MIN_CODE_TOKENS:
        echo(f"warning: answers get {battle.answer_sampling.max_tokens} tokens (battle.answer_sampling.max_tokens); "
             f"code is often cut off below {MIN_CODE_TOKENS}: see --max-tokens")  # fmt: skip
    experts = config.expert_names
    revisions = {name: expert_model(rt.client, name).revision for name in experts}
    settings = battle.model_dump(mode="json")
    calibration = calibration_id(set_info["sha256"], [i.id for i in items], revisions, settings)
    state = _Tally(rt.redis, calibration)
    echo(f"calibration {calibration}: {len(items)} items of {set_info['name']}, experts {', '.join(experts)}, "
         f"answers up to {battle.answer_sampling.max_tokens} tokens")  # fmt: skip
    records: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="calibrate-call") as calls:
        run = _Run(rt, calibration, experts, battle, state, rt.ledger(calibration), calls)
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="calibrate-item") as pool:
            futures = {pool.submit(run.item, item): item for item in items}
            for done, future in enumerate(as_completed(futures), start=1):
                item = futures[future]
                try:
                    record = future.result()
                except (*_CALL_ERRORS, ServiceUnavailable) as exc:
                    state.fail(f"item:{_slug(item.id)}", f"{item.id}: {type(exc).__name__}: {exc}")
                    record = None
                if record is not None:
                    records.append(record)
                echo(_progress(started, done, len(items), records, state))
    order = {item.id: i for i, item in enumerate(items)}
    records.sort(key=lambda r: order[r["id"]])
    seconds = time.monotonic() - started
    report: dict[str, Any] = {
        "calibration": calibration,
        "set": dict(set_info) | {"size": len(items), "items_run": len(records)},
        "experts": [{"name": name, "revision": revisions[name]} for name in experts],
        "battle": {
            "answer_sampling": battle.answer_sampling.model_dump(mode="json"),
            "max_tokens_override": max_tokens,
            "judge_mode": battle.judge_mode,
            "tie_margin": battle.tie_margin,
            "tests": battle.tests.model_dump(mode="json"),
        },
        **summarize(
            records,
            experts,
            max_flip_rate=config.scoring.max_flip_rate,
            min_judge_judgments=config.scoring.min_judge_judgments,
        ),
        "items": [_compact_item(r) for r in records],
        "pairs_detail": [p for r in records for p in r["pairs"]],
        "failures": dict(sorted(state.failures.items())),
        "calls": {"paid": state.counters["engine_calls"], "reused": state.counters["ledger_reused"]},
        "timings": {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_wall)),
            "seconds": round(seconds, 1),
            "seconds_per_item": round(seconds / len(items), 1) if items else None,
            "parallel": parallel,
        },
    }
    store_report(rt.store, report)
    return report


# -- the report in the store ------------------------------------------------------------------
LATEST_KEY = "calibration/latest.json"


def _roster_key(experts: Iterable[str]) -> str:
    return f"calibration/experts-{content_hash(sorted(experts), length=16)}.json"


def store_report(store: ObjectStore, report: Mapping[str, Any]) -> None:
    """The report under its calibration (`runs/<id>/calibration.json`), as the latest for its roster of
    experts and as `calibration/latest.json`. A rerun of the same calibration writes the same figures."""
    store.put_json(f"runs/{report['calibration']}/calibration.json", report)
    store.put_json(_roster_key(e["name"] for e in report["experts"]), report)
    store.put_json(LATEST_KEY, report)


def latest_calibration(store: ObjectStore, experts: list[str]) -> dict[str, Any] | None:
    """The newest calibration report of exactly these experts (any order), or None if none was run."""
    for key in (_roster_key(experts), LATEST_KEY):
        try:
            report = store.get_json(key)
        except ObjectNotFound:
            continue
        if isinstance(report, dict) and sorted(e["name"] for e in report.get("experts", [])) == sorted(experts):
            return report
    return None


# -- the table --------------------------------------------------------------------------------
_VERDICT_COLUMNS = ["verdict", "pairs", "decided", "separable", "decided_separable", "correct", "accuracy",
                    "coverage", "flip_rate", "first_position_rate", "longer_answer_rate"]  # fmt: skip
_ROW_COLUMNS = ["rule", "min_trusted", "items", "items_with_row", "verified_answers", "correct", "precision",
                "rows_all_correct", "recall"]  # fmt: skip
_EXPERT_COLUMNS = ["expert", "revision", "items", "passed_all", "pass_rate", "gt_tests_passed", "truncated",
                   "gt_win_rate", "combined_win_rate"]  # fmt: skip


def render(report: Mapping[str, Any]) -> str:
    """The report as the terminal shows it."""
    s = report["set"]
    head = (
        f"calibration {report['calibration']}: {s['items_run']}/{s['size']} items of {s['name']} (seed {s['seed']}), "
        f"{report['pairs']} pairs, {report['separable']} separable by the ground-truth tests; "
        f"{report['timings']['seconds']:.0f}s"
    )
    verdicts = [{"verdict": name, **row} for name, row in report["verdicts"].items()]
    revisions = {e["name"]: e["revision"][:12] for e in report["experts"]}
    experts = [{"expert": name, "revision": revisions.get(name), **row} for name, row in report["per_expert"].items()]
    ranking = report["ranking"]
    lines = [
        head,
        "",
        table(verdicts, _VERDICT_COLUMNS),
        "accuracy: correct / decided separable pairs; coverage: decided separable / separable pairs; "
        "combined: execution where it decides, else the llm panel (battle.verdict: execution-first)",
        "",
        table(report.get("rows") or [], _ROW_COLUMNS),
        "precision: verified answers (every trusted test passed, at least min_trusted) that pass every ground-truth "
        "test; recall: requests with a right answer that yield a right verified one (rule: battle.tests.trust)",
        "",
        table(experts, _EXPERT_COLUMNS),
        "pass_rate: items whose answer passes every ground-truth test; the ranking the arena should reproduce",
        f"ranking by ground truth: {' > '.join(ranking['ground_truth'])}; "
        f"by combined verdicts: {' > '.join(ranking['combined'])}",
    ]
    if report["failures"]:
        lines.append(f"failures: {len(report['failures'])} (see the JSON report)")
    return "\n".join(lines)
