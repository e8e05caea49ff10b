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
        snap = ops.wait(rt, campaign, timeout_s=timeout_s)
        _say("building the dataset (final ratings, winners, immutable version)")
        manifest = ops.build_dataset(app, campaign, config.dataset.name)
        final = ops.finalize(app, campaign)
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
        "seconds": round(time.monotonic() - started, 1),
    }
    Path(summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    _say(f"summary written to {summary_path}")
    return summary
