"""`warrior demo`: up, one campaign, the dataset, the leaderboard, down; one JSON summary at the end."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from warrior.cli import campaign as ops
from warrior.cli.stack import LocalStack
from warrior.cli.tables import table
from warrior.common.campaign_config import load_campaign_config
from warrior.common.celery_app import make_celery
from warrior.common.runtime import get_runtime


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_demo(config_path: str, *, summary_path: str, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    config = load_campaign_config(config_path)
    stack = LocalStack()
    if stack.running():
        _say("a local stack is already up; stopping it first")
        stack.down(echo=_say)
    stack.up(config, echo=_say)
    try:
        rt = get_runtime()
        app = make_celery("cli")
        campaign = config.campaign_id()
        if ops.CampaignState(rt.redis, campaign).exists():
            campaign = f"{campaign}-{time.strftime('%Y%m%d-%H%M%S')}"
            config = config.model_copy(update={"campaign": campaign})
        _say(
            f"campaign {campaign}: mining {config.mining.per_expert} instructions per expert from "
            f"{len(config.experts)} experts"
        )
        ops.start(rt, app, config)
        # The campaign controller finishes it: final ratings, winners, the immutable dataset version.
        snap = ops.wait(rt, campaign, timeout_s=timeout_s, until="finished")
        manifest = snap["controller"]["dataset"]
        final = rt.store.get_json(manifest["ratings_key"])
        categories = Counter(ops.CampaignState(rt.redis, campaign).table("categories").values())
    finally:
        stack.down(echo=_say)
    leaderboard = [
        {k: row[k] for k in ("expert", "rating", "ci_low", "ci_high", "battles", "win_rate", "categories")}
        for row in final["leaderboard"]
    ]
    _say(
        "\nleaderboard\n"
        + table(
            final["leaderboard"], ["expert", "rating", "ci_low", "ci_high", "battles", "wins", "losses", "win_rate"]
        )
    )
    summary = {
        "campaign": campaign,
        "experts": config.expert_names,
        "instructions": {
            "mined": snap["instructions"]["mined"],
            "kept": snap["instructions"]["kept"],
            "dropped": snap["instructions"]["dropped"],
            "categories": dict(categories.most_common()),
        },
        "failures": snap["failures"],
        "failure_examples": snap["failure_examples"],
        "battles": snap["battles"],
        "votes": snap["votes"],
        "leaderboard": leaderboard,
        "dataset": {
            "uri": rt.store.url.rstrip("/") + "/" + manifest["uri"],
            "version": manifest["version"],
            "rows": manifest["rows"],
        },
        "judges": final["judges"],
        "execution": snap["execution"],
        "calibration": _calibration(rt.store, config.expert_names),
        "ranking_check": ranking_check(final["leaderboard"], snap["execution"]),
        "seconds": round(time.monotonic() - started, 1),
    }
    check = summary["ranking_check"]
    _say(f"ranking check: {check['verdict']}")
    Path(summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    _say(f"summary written to {summary_path}")
    return summary


# The committed calibration of the demo's experts (`make calibrate`), read when this machine has run none.
COMMITTED_CALIBRATION = Path("bench/results/calibration.json")


def _calibration(store: Any, experts: list[str]) -> dict[str, Any]:
    """The headline figures of the latest calibration of these experts: from this store, else the
    committed report; how right each verdict source was on held-out problems with ground-truth tests."""
    from warrior.cli.calibrate import latest_calibration

    report, source = latest_calibration(store, experts), "this machine's store"
    if report is None and COMMITTED_CALIBRATION.is_file():
        committed = json.loads(COMMITTED_CALIBRATION.read_text())
        if sorted(e["name"] for e in committed.get("experts", [])) == sorted(experts):
            report, source = committed, str(COMMITTED_CALIBRATION)
    if report is None:
        return {"note": "no calibration of these experts yet: `make calibrate` measures the verdicts"}
    verdicts = {
        name: {k: row.get(k) for k in ("accuracy", "coverage", "decided_separable", "separable")}
        for name, row in report.get("verdicts", {}).items()
        if name in ("combined", "combined, trusted judges", "execution", "llm panel", "longer answer")
    }
    return {
        "source": source,
        "calibration": report.get("calibration"),
        "items": report.get("set", {}).get("items_run"),
        "set": report.get("set", {}).get("name"),
        "verdicts": verdicts,
        "ranking": report.get("ranking"),
    }


def ranking_check(leaderboard: list[dict[str, Any]], execution: dict[str, Any]) -> dict[str, Any]:
    """Does the arena's order agree with how often each expert's code passed the trusted tests?

    The leaderboard's first expert should be the one whose answers pass most, with its rating
    interval above the last expert's. The check reports; it does not change anything.
    """
    rates = {n: r["rate"] for n, r in execution.get("pass_rate", {}).items() if r.get("rate") is not None}
    board = sorted(leaderboard, key=lambda r: -r["rating"])
    if len(board) < 2:
        return {"verdict": "not enough experts to compare", "ok": None}
    first, last = board[0], board[-1]
    best = max(rates, key=lambda n: rates[n]) if rates else None
    separated = first["ci_low"] > last["ci_high"]
    ok = best is not None and first["expert"] == best and separated
    verdict = (
        f"first {first['expert']} (rating {first['rating']}, interval {first['ci_low']}..{first['ci_high']}); "
        f"most tests passed: {best or 'unknown'} ({rates.get(best or '', 0):.0%}); "
        f"interval {'above' if separated else 'overlaps'} the last expert's ({last['expert']}, "
        f"{last['ci_low']}..{last['ci_high']})"
    )
    return {"verdict": verdict, "ok": ok, "first": first["expert"], "most_passed": best, "pass_rates": rates}
