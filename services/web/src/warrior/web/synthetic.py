"""A synthetic campaign written the way the pipeline writes one, for the viewer's tests and page benchmark.

Everything goes through the same records and functions the stages use: campaign state in Redis
(CampaignState), battle, screening and score records in the object store, the scorer's ``finalize``
for the ratings snapshot and the dataset builder's ``build_version`` for dataset versions. Only the
texts are made up (short and deterministic), so a campaign of 100,000 instructions fits on a laptop.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from warrior.common.campaign_state import CampaignState
from warrior.common.store import LocalStore, ObjectStore
from warrior.common.verification import execution_stats

EXPERTS = ("alpha-coder", "beta-coder", "gamma-coder", "delta-coder")
# How often each expert's answer passes a test: the leaderboard's order follows from it.
SKILL = {"alpha-coder": 0.85, "beta-coder": 0.6, "gamma-coder": 0.4, "delta-coder": 0.2}
CATEGORIES = ("generation", "debugging", "explanation", "refactoring")
DROP_REASONS = ("too_short", "not_a_request", "near_duplicate", "off_topic")
TASKS = (
    ("add_numbers", "a + b", [("1, 2", "3"), ("-4, 4", "0"), ("10, 5", "15")]),
    ("max_of_list", "max(a)", [("[1, 5, 2]", "5"), ("[-3, -1]", "-1"), ("[7]", "7")]),
    ("reverse_text", "a[::-1]", [("'abc'", "'cba'"), ("''", "''"), ("'xy'", "'yx'")]),
    ("count_vowels", "sum(c in 'aeiou' for c in a)", [("'hello'", "2"), ("'xyz'", "0"), ("'aeiou'", "5")]),
)


@dataclass
class Synthetic:
    campaign: str
    instructions: list[str]  # ids of the battled instructions, sorted
    dropped: int
    ratings_key: str
    dataset: str | None
    versions: list[str]


def _iid(campaign: str, n: int) -> str:
    return hashlib.sha256(f"{campaign}:{n}".encode()).hexdigest()[:16]


def _put(store: ObjectStore, key: str, obj: Any) -> None:
    """A JSON object as the store writes it; a local store's files are written without fsync (speed only)."""
    if isinstance(store, LocalStore):
        path = store.root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    else:
        store.put_json(key, obj)


def _answer(name: str, fn: str, body: str, good: bool, n: int) -> str:
    code = f"def {fn}(a, b=None):\n    return {body if good else 'None'}\n"
    if fn == "add_numbers":
        code = f"def {fn}(a, b):\n    return {'a + b' if good else 'a - b'}\n"
    return f"Here is {fn} ({name}, #{n}):\n\n```python\n{code}```\n\nIt returns the result directly."


def _battle(campaign: str, iid: str, n: int, experts: Sequence[str], rng: random.Random) -> dict[str, Any]:
    fn, body, cases = TASKS[n % len(TASKS)]
    passing = {name: rng.random() < SKILL.get(name, 0.5) for name in experts}
    answers = {
        name: {
            "finish_reason": "stop",
            "revision": f"rev-{name}",
            "text": _answer(name, fn, body, passing[name], n),
            "tokens": 40,
        }
        for name in experts
    }
    tests = [
        {
            "assertion": f"assert {fn}({args}) == {want}",
            "calls": [fn],
            "id": f"t{i}",
            "preamble": "",
            "source": f"assert {fn}({args}) == {want}\n",
            "writer": experts[i % len(experts)],
        }
        for i, (args, want) in enumerate(cases)
    ]
    matrix = {name: {t["id"]: "passed" if passing[name] else "failed" for t in tests} for name in experts}
    runs = [
        {
            "answer": name,
            "limit": None,
            "outcome": matrix[name][t["id"]],
            "seconds": 0.04,
            "status": "passed" if matrix[name][t["id"]] == "passed" else "failed",
            "stderr": "" if passing[name] else f"AssertionError: {t['assertion']}\n",
            "test": t["id"],
        }
        for name in experts
        for t in tests
    ]
    trusted = [t["id"] for t in tests] if any(passing.values()) else []
    judgments: list[dict[str, Any]] = []
    pairs = []
    for i, a in enumerate(experts):
        for b in experts[i + 1 :]:
            judges = [j for j in experts if j not in (a, b)]
            if passing[a] != passing[b]:
                winner = a if passing[a] else b
                judgments.append({"a": a, "b": b, "judge": "execution", "source": "execution", "votes": len(judges),
                                  "winner": winner,
                                  "reason": f"{winner} passes {len(tests)} trusted tests, the other none"})  # fmt: skip
                votes = (len(judges), 0) if winner == a else (0, len(judges))
                pairs.append({"a": a, "b": b, "judges": ["execution"], "judges_planned": judges, "source": "execution",
                              "ties": 0, "votes_a": votes[0], "votes_b": votes[1]})  # fmt: skip
                continue
            tally = [0, 0, 0]
            for judge in judges:
                pick = rng.choice(("A", "B", "tie")) if rng.random() < 0.3 else ("A" if SKILL[a] > SKILL[b] else "B")
                mirrored = {"A": "B", "B": "A", "tie": "tie"}[pick]
                if rng.random() < 0.1:
                    mirrored = pick  # an order flip: the judge followed position
                verdict: str | None = None
                if (pick, mirrored) in (("A", "B"), ("B", "A")):
                    verdict = a if pick == "A" else b
                tally[0 if verdict == a else 1 if verdict == b else 2] += 1
                judgments.append({"a": a, "b": b, "judge": judge, "judge_revision": f"rev-{judge}", "source": "llm",
                                  "votes": 1, "winner": verdict, "mode": "text",
                                  "forward": {"verdict": pick, "text": f"[[{pick}]]"},
                                  "backward": {"verdict": mirrored, "text": f"[[{mirrored}]]"}})  # fmt: skip
            pairs.append({"a": a, "b": b, "judges": judges, "judges_planned": judges, "source": "llm",
                          "ties": tally[2], "votes_a": tally[0], "votes_b": tally[1]})  # fmt: skip
    return {
        "answers": answers,
        "campaign": campaign,
        "competitors": sorted(experts),
        "id": iid,
        "instruction": f"Write a Python function `{fn}` (task {n}) and make it pass these checks: "
        + "; ".join(f"{fn}({a}) -> {w}" for a, w in cases),
        "judgments": judgments,
        "pairs": pairs,
        "execution": {
            "bindings": {},
            "code": {name: {"load": "passed", "reason": "fenced"} for name in experts},
            "executable": True,
            "language": "Python",
            "matrix": matrix,
            "passes": {name: sum(v == "passed" for v in matrix[name].values()) for name in experts},
            "reason": None,
            "runs": runs,
            "tests": tests,
            "trust": {
                "ambiguous": False,
                "consensus": [],
                "trusted": trusted,
                "untrusted": {} if trusted else {t["id"]: "no answer passes it" for t in tests},
            },  # fmt: skip
            "writers": sorted({t["writer"] for t in tests}),
        },
    }


class _Rt:
    """What the scorer's finalize reads of a runtime: Redis and the store."""

    def __init__(self, client: redis.Redis, store: ObjectStore) -> None:
        self.redis = client
        self.store = store


def write_campaign(
    client: redis.Redis,
    store: ObjectStore,
    campaign: str,
    instructions: int,
    *,
    experts: Sequence[str] = EXPERTS,
    dropped_every: int = 10,
    bootstrap_rounds: int = 200,
    dataset: str | None = "arena",
    second_version: bool = True,
    finished: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> Synthetic:
    """A campaign of `instructions` mined instructions: every `dropped_every`-th one dropped at screening, the
    others battled, scored and finalized; with `dataset`, a dataset version of its winners (and with
    `second_version`, a later version with some rows removed and some winners changed, for the diff)."""
    from warrior.dataset_builder.rows import candidate_row, training_row
    from warrior.dataset_builder.versions import build_version
    from warrior.scorer.tasks import finalize

    rng = random.Random(seed)
    state = CampaignState(client, campaign)
    config = {
        "campaign": campaign,
        "experts": [{"name": name, "engine": "zero-latency-test"} for name in experts],
        "scoring": {"bootstrap_rounds": bootstrap_rounds},
        "dataset": {"name": dataset or "arena"},
    }
    state.create(config, expected_mine=max(1, instructions // 100))
    prefix = f"warrior:campaign:{campaign}:"
    kept: list[str] = []
    candidates = []
    n_dropped = 0
    pipe = client.pipeline(transaction=False)
    pipe.sadd(prefix + "roster", *experts)
    for unit in range(max(1, instructions // 100)):
        pipe.sadd(prefix + "mine_done", f"unit-{unit}")
    for n in range(instructions):
        iid = _iid(campaign, n)
        category = CATEGORIES[n % len(CATEGORIES)]
        pipe.sadd(prefix + "mined", iid)
        pipe.sadd(prefix + "screened", iid)
        attacker = experts[n % len(experts)]
        instruction = {"attacker": attacker, "attacker_revision": f"rev-{attacker}", "campaign": campaign,
                       "id": iid, "index": n, "language": "Python", "category": category}  # fmt: skip
        if dropped_every and n % dropped_every == dropped_every - 1:
            pipe.hset(prefix + "dropped", iid, DROP_REASONS[n % len(DROP_REASONS)])
            n_dropped += 1
        else:
            battle = _battle(campaign, iid, n, experts, rng)
            instruction["text"] = battle["instruction"]
            _put(store, f"runs/{campaign}/battles/{iid}.json", battle)
            _put(store, f"runs/{campaign}/screening/{iid}.json",
                 {"id": iid, "category": category, "language": "Python"})  # fmt: skip
            pipe.sadd(prefix + "kept", iid)
            pipe.hset(prefix + "categories", iid, json.dumps(category))
            for stage in ("battled", "scored", "collected", "finished"):
                pipe.sadd(prefix + stage, iid)
            pipe.hset(prefix + "votes", iid, json.dumps([[j["a"], j["b"], "tie" if j["winner"] is None else
                      ("a" if j["winner"] == j["a"] else "b")] for j in battle["judgments"]]))  # fmt: skip
            pairs = battle["pairs"]
            pipe.hset(prefix + "battle_stats", iid, json.dumps({
                "battles": len(pairs), "votes": sum(p["votes_a"] + p["votes_b"] for p in pairs),
                "ties": sum(p["ties"] for p in pairs), "judgments": len(battle["judgments"]),
                "execution": execution_stats(battle)}, sort_keys=True))  # fmt: skip
            score = {"winner": max(experts, key=lambda e: battle["execution"]["passes"][e]), "scores": {}}
            _put(store, f"runs/{campaign}/scores/{iid}.json", score | {"id": iid, "provisional": True})
            kept.append(iid)
            if dataset:
                candidates.append(candidate_row(instruction, battle, score))
        if n % 5000 == 4999:
            pipe.execute()
            progress(f"{n + 1}/{instructions} instructions written")
    timing: dict[FieldT, EncodableT] = {"warrior.mine.seconds": 12.5, "warrior.mine.tasks": 10,
                                        "warrior.battle.seconds": 80.25, "warrior.battle.tasks": len(kept)}  # fmt: skip
    pipe.hset(prefix + "timing", mapping=timing)
    pipe.hset(prefix + "counters", mapping={"engine_calls": 9 * len(kept), "ledger_reused": 0})
    pipe.hset(prefix + "failures", "judge:example", "judge beta-coder answered without a verdict")
    pipe.execute()
    progress("finalizing the ratings")
    started = time.perf_counter()
    final = finalize(_Rt(client, store), campaign)  # type: ignore[arg-type]
    progress(f"ratings snapshot {final['ratings_key']} in {time.perf_counter() - started:.1f}s")
    versions = []
    if dataset:
        snapshot = store.get_json(final["ratings_key"])
        winners = snapshot["winners"]
        rows = [training_row(c, winners[c["id"]]["winner"], winners[c["id"]]["scores"], final["ratings_key"])
                for c in candidates if c["id"] in winners]  # fmt: skip
        progress(f"building dataset {dataset} ({len(rows)} rows)")
        manifest = build_version(store, dataset, rows, campaigns=[campaign], ratings_key=final["ratings_key"],
                                 leaderboard=final["leaderboard"], screening={"too_short": n_dropped})  # fmt: skip
        versions.append(manifest["version"])
        if second_version:
            later = []
            for i, c in enumerate(candidates):
                if i % 50 == 7 or c["id"] not in winners:
                    continue  # removed in the later version
                winner = winners[c["id"]]["winner"]
                if i % 40 == 3:
                    winner = next(e for e in sorted(c["answers"]) if e != winner)  # its winner changed
                later.append(training_row(c, winner, winners[c["id"]]["scores"], final["ratings_key"]))
            time.sleep(0.01)  # created_at orders versions
            manifest = build_version(store, dataset, later, campaigns=[campaign],
                                     ratings_key=final["ratings_key"], leaderboard=final["leaderboard"],
                                     screening={"too_short": n_dropped + 1})  # fmt: skip
            versions.append(manifest["version"])
    if finished:
        state.put("controller", "dataset", {"name": dataset, "version": versions[-1], "rows": 0} if versions else {})
        state.set_status("finished")
    return Synthetic(campaign, sorted(kept), n_dropped, final["ratings_key"], dataset, versions)


def write_flywheel(store: ObjectStore, flywheel: str, campaign: str) -> dict[str, Any]:
    """A one-turn flywheel report in the shape `warrior flywheel` writes (flywheel/<id>/report.json)."""

    def ev(expert: str, passed: int, total: int) -> dict[str, Any]:
        return {"expert": expert, "pass_at_1": round(passed / total, 3), "passed": passed, "total": total,
                "result": f"evals/{expert}/rev/humaneval.json", "revision": f"rev-{expert}"}  # fmt: skip

    board = [{"expert": "alpha-coder-t1", "rating": 40.0, "ci_low": 10.0, "ci_high": 70.0, "battles": 30,
              "win_rate": 0.6},
             {"expert": "alpha-coder", "rating": -40.0, "ci_low": -70.0, "ci_high": -10.0, "battles": 30,
              "win_rate": 0.4}]  # fmt: skip
    turn = {
        "flywheel": flywheel,
        "turn": 1,
        "campaign": {"campaign": campaign, "instructions": 30, "battles": 27, "votes": 120},
        "dataset": {"name": "arena", "version": "v1", "rows": 27},
        "training": {
            "base_model": "alpha-coder",
            "output": "alpha-coder-t1",
            "method": "lora",
            "run": "r1",
            "final": "checkpoints/x/final",
            "steps": 20,
            "losses": [[1, 1.9], [20, 0.7]],
        },  # fmt: skip
        "registered": ["alpha-coder-t1"],
        "evaluation": {
            "humaneval": {"base": ev("alpha-coder", 41, 164), "trained": ev("alpha-coder-t1", 49, 164)},
            "mbpp": {"base": ev("alpha-coder", 180, 500), "trained": ev("alpha-coder-t1", 171, 500)},
        },
        "ratings": {
            "campaign": f"{campaign}-followup",
            "battles": 30,
            "votes": 60,
            "base": board[1],
            "trained": board[0],
            "leaderboard": board,
        },  # fmt: skip
    }

    def paired(problems: int, difference: float, low: float, high: float, gained: int, lost: int) -> dict[str, Any]:
        return {"problems": problems, "difference": difference, "interval_95": [low, high], "above_zero": low > 0,
                "gained": [f"p{i}" for i in range(gained)], "lost": [f"q{i}" for i in range(lost)]}  # fmt: skip

    turn["paired"] = {"benchmarks": {"humaneval": paired(164, 0.049, 0.006, 0.091, 10, 2),
                                     "mbpp": paired(500, -0.018, -0.04, 0.004, 12, 21)},
                      "combined": paired(664, -0.002, -0.021, 0.017, 22, 23)}  # fmt: skip
    turn["ablations"] = {
        "random": {"expert": "alpha-coder-random", "paired": {"trained_minus_ablation": {
            "benchmarks": {"humaneval": paired(164, 0.03, -0.01, 0.07, 8, 3)}, "combined": None}}},
    }  # fmt: skip
    nothing: dict[str, Any] = {"hits": []}
    turn["data"] = {"rows": 27, "winners": {"alpha-coder": 20, "beta-coder": 7},
                    "decontamination": {"benchmarks": ["humaneval", "mbpp"], "overlap": 0, "ngram": nothing | {"n": 13},
                                        "embedding": nothing, "rewording": nothing | {"ran": True}}}  # fmt: skip
    report = turn | {"turns": [turn]}
    store.put_json(f"flywheel/{flywheel}/report.json", report)
    return report
