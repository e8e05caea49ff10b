"""Verdicts from execution: which tests to trust, which pairs they decide, what a row's winner passed.

Every answer runs against every test the experts wrote (the pass matrix). Tests are cross-checked
against the answers in the spirit of CodeT (dual execution agreement): answers that pass the same
set of tests form a group, and a group's support is its size times the number of tests it passes.
The best-supported group is the consensus. A test that no answer passes, or that the consensus
fails while another answer passes it, is not trusted. When two groups tie for support, the
consensus is ambiguous and every passable test stays trusted (the counts then rarely separate
the answers, and LLM judges decide). Under the `independent` rule (`battle.tests.trust`), a test
must also be passed by an answer of an expert other than its writer.

A pair of answers is decided by execution when the trusted tests separate them (one passes
strictly more), or, failing that, when one answer's code does not parse, crashes as it loads or is
missing (where the experts wrote tests for the request, so it asks for code) while the other's
runs. Everything else goes to the LLM judges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from warrior.common.programs import DONE_MARKER

__all__ = [
    "OUTCOMES",
    "SHADOW",
    "TRUST_RULES",
    "TrustRule",
    "answer_verification",
    "shadow_agreement",
    "Outcome",
    "crosscheck",
    "execution_stats",
    "summarize_stats",
    "merge_executions",
    "outcome_of",
    "pair_verdict",
    "passes",
    "row_verification",
    "trust_tests",
]

# The source of an LLM judgment of a pair that execution decided (shadow judging): kept, never counted.
SHADOW: Final = "llm-shadow"

Outcome = Literal["passed", "failed", "error", "timeout", "refused"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("passed", "failed", "error", "timeout", "refused")


def outcome_of(result: Mapping[str, Any]) -> Outcome:
    """One run's outcome from the sandbox's result (`SandboxResult.to_dict()`).

    passed: it ran to its end; failed: an assertion did not hold; timeout: the time limit;
    refused: the sandbox stopped an operation it does not allow; error: anything else (an
    exception, the memory limit, a signal, an early exit).
    """
    status = result.get("status")
    if status == "passed":
        return "passed" if DONE_MARKER in str(result.get("stdout", "")) else "error"
    if status == "timeout":
        return "timeout"
    if status == "blocked":
        return "refused"
    if status == "failed" and _last_exception(str(result.get("stderr", ""))).startswith("AssertionError"):
        return "failed"
    return "error"


def _last_exception(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line and not line.startswith((" ", "\t"))]
    return lines[-1] if lines else ""


def passes(matrix: Mapping[str, Mapping[str, str]], trusted: Iterable[str]) -> dict[str, int]:
    """How many trusted tests each answer passes."""
    keep = set(trusted)
    return {name: sum(1 for t, o in row.items() if t in keep and o == "passed") for name, row in matrix.items()}


def crosscheck(
    matrix: Mapping[str, Mapping[str, str]], tests: Iterable[str], writers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Which tests are trusted, and why the others are not.

    `matrix[answer][test]` is an outcome, an answer named after the expert that wrote it. With
    `writers` ({test: the expert that wrote it}, the `independent` rule), a test must also be passed by
    an answer of another expert than its writer: a writer's test that only its own answer passes is
    one model agreeing with itself, and shares its mistakes. Returns {"trusted": [...], "untrusted":
    {test: reason}, "consensus": [answers], "ambiguous": bool, "rule": "consensus" | "independent"}.
    """
    test_ids = list(tests)
    passed_by: dict[str, frozenset[str]] = {
        name: frozenset(t for t in test_ids if row.get(t) == "passed") for name, row in matrix.items()
    }
    groups: dict[frozenset[str], list[str]] = defaultdict(list)
    for name, passed in sorted(passed_by.items()):
        if passed:
            groups[passed].append(name)
    untrusted: dict[str, str] = {}
    passable = set().union(*passed_by.values()) if passed_by else set()
    for t in test_ids:
        if t not in passable:
            untrusted[t] = "no answer passes it"
    consensus: list[str] = []
    ambiguous = False
    if groups:
        support = {passed: len(names) * len(passed) for passed, names in groups.items()}
        best = max(support.values())
        top = [passed for passed, s in support.items() if s == best]
        if len(top) == 1:
            consensus = groups[top[0]]
            for t in sorted(passable - top[0]):
                untrusted[t] = f"contradicts the consensus of {', '.join(consensus)}"
        else:
            ambiguous = True
    if writers is not None:
        for t in test_ids:
            others = (passed for name, passed in passed_by.items() if name != writers.get(t))
            if t not in untrusted and not any(t in passed for passed in others):
                untrusted[t] = "only its writer's answer passes it"
    return {
        "trusted": [t for t in test_ids if t not in untrusted],
        "untrusted": {t: untrusted[t] for t in test_ids if t in untrusted},
        "consensus": consensus,
        "ambiguous": ambiguous,
        "rule": "consensus" if writers is None else "independent",
    }


TrustRule = Literal["consensus", "independent"]
TRUST_RULES: Final[tuple[TrustRule, ...]] = ("consensus", "independent")


def trust_tests(
    matrix: Mapping[str, Mapping[str, str]], tests: Iterable[Mapping[str, Any]], rule: TrustRule
) -> dict[str, Any]:
    """`crosscheck` under a named rule, from test records ({"id", "writer", ...})."""
    records = list(tests)
    ids = [t["id"] for t in records]
    if rule == "consensus":
        return crosscheck(matrix, ids)
    return crosscheck(matrix, ids, {t["id"]: str(t.get("writer", "")) for t in records})


def pair_verdict(execution: Mapping[str, Any], a: str, b: str) -> dict[str, Any] | None:
    """Execution's decision on one pair: {"winner", "reason"}, or None when it does not separate them."""
    if not execution.get("executable"):
        return None
    code = execution.get("code", {})
    if a not in code or b not in code:
        return None
    trusted = execution["trust"]["trusted"]
    if trusted:
        counts = passes({n: execution["matrix"].get(n, {}) for n in (a, b)}, trusted)
        if counts[a] != counts[b]:
            winner = a if counts[a] > counts[b] else b
            loser = b if winner == a else a
            return {
                "winner": winner,
                "reason": f"passes {counts[winner]}/{len(trusted)} trusted tests, {loser} {counts[loser]}",
            }
    runs = {n: code[n].get("load") == "passed" for n in (a, b)}
    # Code that does not parse or crashes against code that runs. An answer without any code is
    # judged this way only when the request asks for code: the experts wrote tests that call a
    # function for it (a request answered in prose gets no tests, and its category is not run).
    has_code = {n: code[n].get("reason") != "no_code" for n in (a, b)}
    wants_code = bool(trusted or execution.get("tests"))
    if runs[a] != runs[b] and (wants_code or (has_code[a] and has_code[b])):
        winner = a if runs[a] else b
        loser = b if winner == a else a
        return {"winner": winner, "reason": f"{loser}'s code {_load_failure(code[loser])}; {winner}'s runs"}
    return None


def _load_failure(entry: Mapping[str, Any]) -> str:
    reason = str(entry.get("reason", ""))
    if reason == "no_code":
        return "is missing"
    if reason.startswith("syntax_error"):
        return "does not parse"
    return {"timeout": "times out as it loads", "refused": "is refused by the sandbox"}.get(
        str(entry.get("load")), "crashes as it loads"
    )


def merge_executions(parts: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One instruction's execution over its base record and the newcomers' addenda, trust recomputed."""
    base = next((p for p in parts if p.get("executable") is not None), None)
    if base is None:
        return None
    merged: dict[str, Any] = dict(base)
    if not base.get("executable"):
        return merged
    for key in ("code", "matrix", "bindings"):
        merged[key] = {}
        for part in parts:
            merged[key].update(part.get(key) or {})
    merged["trust"] = trust_tests(merged["matrix"], base["tests"], base.get("trust", {}).get("rule", "consensus"))
    merged["passes"] = passes(merged["matrix"], merged["trust"]["trusted"])
    return merged


def row_verification(
    execution: Mapping[str, Any] | None, winner: str, votes: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """What a dataset row says of its winner: the tests, who passed them, and where its votes came from.

    status: "verified" (the winner passes every trusted test), "partial" (some), "unverified" (none:
    no trusted test, or every answer fails every test), "not_executed" (the request was judged by
    LLMs alone; `reason` says why: a non-code request, a language without a runner, llm-only).
    """
    sources: dict[str, int] = defaultdict(int)
    for j in votes:
        sources[str(j.get("source", "llm"))] += int(j.get("votes", 1))
    out: dict[str, Any] = {"vote_sources": dict(sorted(sources.items()))}
    if not execution or not execution.get("executable"):
        reason = (execution or {}).get("reason") or "no execution record"
        return out | {"status": "not_executed", "reason": reason}
    trusted = execution["trust"]["trusted"]
    counts = passes(execution["matrix"], trusted)
    tests = {t["id"]: t for t in execution["tests"]}
    won = counts.get(winner, 0)
    if not trusted or won == 0:
        status = "unverified"
    elif won == len(trusted):
        status = "verified"
    else:
        status = "partial"
    return out | {
        "status": status,
        "reason": None
        if trusted
        else ("no test was trusted: every answer fails every test" if tests else "no usable test was written"),
        "tests": [{"id": t, "writer": tests[t]["writer"], "source": tests[t]["source"]} for t in trusted],
        "untrusted": len(execution["trust"]["untrusted"]),
        "winner_passed": won,
        "passed": dict(sorted(counts.items())),
        "matrix": {name: dict(row) for name, row in sorted(execution["matrix"].items())},
    }


def answer_verification(candidates: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How each expert's answers fared against the trusted tests, over a campaign's battled requests
    (its candidate rows: `answers` and `execution`). An answer is verified when it passes every trusted
    test of its request; `tested` counts the answers to requests with at least one trusted test."""
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"answers": 0, "tested": 0, "verified": 0})
    requests = tested = 0
    for candidate in candidates:
        requests += 1
        execution = candidate.get("execution") or {}
        trusted = list((execution.get("trust") or {}).get("trusted") or []) if execution.get("executable") else []
        counts = passes(execution.get("matrix") or {}, trusted) if trusted else {}
        tested += bool(trusted)
        for name in candidate.get("answers") or {}:
            per[name]["answers"] += 1
            if trusted:
                per[name]["tested"] += 1
                per[name]["verified"] += counts.get(name, 0) == len(trusted)
    experts = {
        name: counts | {"verified_rate": round(counts["verified"] / counts["tested"], 3) if counts["tested"] else None}
        for name, counts in sorted(per.items())
    }
    return {"requests": requests, "with_trusted_tests": tested, "experts": experts}


def shadow_agreement(battles: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """How often each LLM judge agreed with execution on the pairs execution decided (shadow judging):
    judge -> decided (pairs it ruled that the tests had decided), agreed (same winner), tie (it saw none)."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"decided": 0, "agreed": 0, "tie": 0})
    for battle in battles:
        judgments = battle.get("judgments") or []
        decided = {(j["a"], j["b"]): j["winner"] for j in judgments if j.get("source") == "execution" and j["winner"]}
        for j in judgments:
            if j.get("source") != SHADOW or (j["a"], j["b"]) not in decided:
                continue
            counts = per[j["judge"]]
            counts["decided"] += 1
            counts["agreed"] += j["winner"] == decided[(j["a"], j["b"])]
            counts["tie"] += j["winner"] is None
    return {
        judge: counts | {"agreement": round(counts["agreed"] / counts["decided"], 3) if counts["decided"] else None}
        for judge, counts in sorted(per.items())
    }


def execution_stats(record: Mapping[str, Any]) -> dict[str, Any]:
    """One battle part's execution figures, for the campaign's status and the demo's summary."""
    execution = record.get("execution") or {}
    votes: dict[str, int] = defaultdict(int)
    for j in record.get("judgments", []):
        votes[str(j.get("source", "llm"))] += int(j.get("votes", 1))
    out: dict[str, Any] = {"executable": bool(execution.get("executable")), "votes": dict(votes)}
    if not execution.get("executable"):
        return out
    trust = execution.get("trust") or {"trusted": [], "untrusted": {}}
    trusted = trust["trusted"]
    outcomes: dict[str, int] = defaultdict(int)
    for run in execution.get("runs", []):
        if run.get("test") != "load":
            outcomes[str(run["outcome"])] += 1
    own = execution.get("matrix", {})
    return out | {
        "answers_run": sum(1 for c in execution.get("code", {}).values() if c.get("load") is not None),
        "tests": len(execution.get("tests", [])) if not record.get("newcomer") else 0,
        "trusted": len(trusted) if not record.get("newcomer") else 0,
        "untrusted": len(trust["untrusted"]) if not record.get("newcomer") else 0,
        "outcomes": dict(outcomes),
        # Per expert: trusted tests passed, trusted tests faced (its own answers only).
        "passed": {name: [passes({name: row}, trusted)[name], len(trusted)] for name, row in own.items()},
    }


def summarize_stats(stats: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Execution figures over a campaign's battles: answers run, pass rates per expert, test trust, vote sources."""
    total: dict[str, Any] = {
        "battles_executed": 0,
        "battles_llm_only": 0,
        "answers_run": 0,
        "tests_written": 0,
        "tests_trusted": 0,
        "tests_untrusted": 0,
        "runs": defaultdict(int),
        "votes_by_source": defaultdict(int),
    }
    per_expert: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in stats:
        e = s.get("execution") or {}
        for source, n in (e.get("votes") or {}).items():
            total["votes_by_source"][source] += int(n)
        if not e.get("executable"):
            total["battles_llm_only"] += 1
            continue
        total["battles_executed"] += 1
        total["answers_run"] += int(e.get("answers_run", 0))
        total["tests_written"] += int(e.get("tests", 0))
        total["tests_trusted"] += int(e.get("trusted", 0))
        total["tests_untrusted"] += int(e.get("untrusted", 0))
        for outcome, n in (e.get("outcomes") or {}).items():
            total["runs"][outcome] += int(n)
        for name, (won, faced) in (e.get("passed") or {}).items():
            per_expert[name][0] += int(won)
            per_expert[name][1] += int(faced)
    total["runs"] = dict(sorted(total["runs"].items()))
    total["votes_by_source"] = dict(sorted(total["votes_by_source"].items()))
    total["pass_rate"] = {
        name: {"passed": won, "trusted_tests": faced, "rate": round(won / faced, 3) if faced else None}
        for name, (won, faced) in sorted(per_expert.items())
    }
    return total
