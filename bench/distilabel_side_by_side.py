"""Model calls per second, side by side: distilabel's pipeline and our campaign, on instant fake models.

    python bench/distilabel_side_by_side.py [--rows 5000] [--batch-sizes 50,500] [--per-expert 80]

Both sides run in one invocation on the same machine, against engines that answer instantly from a
hash of the prompt, so what is measured is each framework's own cost per model call.

- distilabel (1.5.3, in its own virtualenv, `make bench-distilabel` builds it from
  bench/requirements-distilabel.txt; nothing is installed into the project's): the natural
  equivalent of our battle. Three "expert" TextGeneration steps answer every input row, GroupColumns
  gathers the three answers, and an UltraFeedback judge (aspect overall-rating) rates them in one
  call per row. Every LLM is `ZeroLatencyLLM` below, hash-derived text like our `zero-latency-test`
  engine; each generate() appends the number of outputs it made to a log, so calls are counted
  exactly (3 answers + 1 judge call per row). Run at distilabel's default batch size (50) and at 500.
- ours: the campaign bench/run.py runs for its orchestration table (3 `zero-latency-test` experts,
  mine -> screen -> battle -> score -> dataset on the local stack). Its model calls are the records
  in the campaign's call ledger (`runs/<campaign>/calls/`: each distinct call paid once, durably
  written to the store): pre-query mining, the screening's ratings, the battle's answers and the
  judges' verdicts. Seconds are from start to the campaign's end. The screening's cost per instruction
  (the screen stage's busy seconds over its tasks, from the campaign timing hash celery_app records) is
  reported on its own line.

The two sides do different work per call (see `differences` in the JSON): the ratio is of framework
throughput on instant models, not of which one makes better data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".cache" / "bench-distilabel-venv"
DISTILABEL_DEFAULT_BATCH = 50  # distilabel's default input_batch_size for tasks and batch_size for loaders

DIFFERENCES = {
    "ours_only": [
        "every model call is recorded durably in the call ledger (one object per call in the store, "
        "content-hashed, reused on retry or redelivery) before its result is used",
        "instructions are mined from the experts themselves (pre-query completions), not given as input rows",
        "screening: decontamination (n-gram and embedding against benchmarks), near-duplicate search and "
        "on-topic ratings by the other experts, before any battle",
        "answers' code is executed in the sandboxed executor as tests",
        "pairwise battles judged by every other expert in both orders, then Elo/Bradley-Terry scoring "
        "and the dataset build",
        "every stage is a Celery task on Redis, experts are gRPC servers: work survives worker and expert restarts",
    ],
    "distilabel_only": [
        "input rows are given (no mining or screening)",
        "one judge call per row rates all three answers together (UltraFeedback), not pairwise calls",
        "batches travel between steps in memory (multiprocessing queues) and are cached to local disk by "
        "batch; calls are not recorded one by one",
    ],
}


# -- our side (runs in the project's virtualenv) ------------------------------------------------
def ours_run(per_expert: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    import run as bench_run  # bench/run.py: the same stack bring-up and campaign as its orchestration table

    bench_run._fresh_env("vs-distilabel")
    data = {
        "campaign": "bench-vs-distilabel",
        "experts": [{"name": f"zlt-{i}", "engine": "zero-latency-test", "parallel": 64} for i in range(3)],
        "mining": {"per_expert": per_expert},
        "screening": {"rating": {"min_score": 4.0}},
        "scoring": {"bootstrap_rounds": 0},
        "matchmaking": {"open_roster": False},
    }
    run = bench_run._run_campaign(data)
    snap, seconds, calls = run["snapshot"], run["seconds"], run["calls"]
    if not snap["battles"]:  # a campaign that battled nothing measures nothing (e.g. MBPP unreachable)
        sys.exit(f"error: our campaign battled nothing: {json.dumps(snap.get('failure_examples', {}), indent=1)}")
    timing = snap["timing"]
    screen_s, screen_tasks = timing.get("warrior.screen.seconds", 0.0), int(timing.get("warrior.screen.tasks", 0))
    kinds = sorted({c["kind"] for c in calls})
    return {
        "experts": 3,
        "per_expert": per_expert,
        "mined": snap["instructions"]["mined"],
        "kept": snap["instructions"]["kept"],
        "battles": snap["battles"],
        "failures": snap["failures"],
        "failure_examples": snap.get("failure_examples", {}),
        "model_calls": len(calls),
        "calls_by_kind": {k: sum(1 for c in calls if c["kind"] == k) for k in kinds},
        "seconds": round(seconds, 2),
        "calls_per_s": round(len(calls) / seconds, 1),
        "screen_busy_s": round(screen_s, 2),
        "screen_tasks": screen_tasks,
        # Screen tasks carry batches: the cost per instruction is over the instructions screened.
        "screen_s_per_instruction": round(screen_s / snap["instructions"]["screened"], 4)
        if snap["instructions"]["screened"]
        else None,
        "stage_busy_s": {k.split(".")[1]: round(v, 2) for k, v in timing.items() if k.endswith(".seconds")},
    }


# -- driver ---------------------------------------------------------------------------------------
def _distilabel_subprocess(venv: Path, rows: int, batch: int, timeout_s: float = 900) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="distilabel-result-")) / "result.json"
    script = ROOT / "bench" / "distilabel_zlt.py"
    cmd = [
        str(venv / "bin" / "python"),
        str(script),
        "--rows",
        str(rows),
        "--batch-size",
        str(batch),
        "--out",
        str(out),
    ]
    env = os.environ | {"PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        sys.exit(f"distilabel run (batch {batch}) did not finish in {timeout_s} s:\n{str(e.stderr)[-4000:]}")
    if done.returncode != 0 or not out.is_file():
        sys.exit(f"distilabel run (batch {batch}) failed:\n{(done.stdout + done.stderr)[-4000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="distilabel input rows per run")
    parser.add_argument("--batch-sizes", default=f"{DISTILABEL_DEFAULT_BATCH},500", help="distilabel batch sizes")
    parser.add_argument("--per-expert", type=int, default=80, help="our campaign's instructions mined per expert")
    parser.add_argument("--venv", default=str(VENV), help="the virtualenv holding distilabel")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "distilabel.json"), help="JSON results")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]

    venv = Path(args.venv)
    if not (venv / "bin" / "python").is_file():
        sys.exit(f"error: {venv} is missing; run `make bench-distilabel`")
    load_before = os.getloadavg()
    dl = []
    for batch in batches:
        print(f"distilabel: {args.rows} rows, batch size {batch} ...", file=sys.stderr, flush=True)
        dl.append(_distilabel_subprocess(venv, args.rows, batch))
    print(f"ours: campaign with 3 zero-latency experts, {args.per_expert} per expert ...", file=sys.stderr, flush=True)
    ours = ours_run(args.per_expert)
    load_after = os.getloadavg()

    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import distilabel; print(distilabel.__version__)"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    best = max(dl, key=lambda r: r["calls_per_s"])
    default = next((r for r in dl if r["batch_size"] == DISTILABEL_DEFAULT_BATCH), dl[0])
    ratios = {
        "ours_over_distilabel_best": round(ours["calls_per_s"] / best["calls_per_s"], 4),
        "ours_over_distilabel_default": round(ours["calls_per_s"] / default["calls_per_s"], 4),
    }
    rows = [
        {
            "system": f"distilabel {version}",
            "configuration": f"3 experts + UltraFeedback judge, batch {r['batch_size']}",
            "rows": r["rows"],
            "model_calls": r["model_calls"],
            "seconds": r["seconds"],
            "calls_per_s": r["calls_per_s"],
        }
        for r in dl
    ]
    rows.append(
        {
            "system": "warrior",
            "configuration": f"3 zero-latency experts, campaign (per_expert {ours['per_expert']})",
            "rows": ours["mined"],
            "model_calls": ours["model_calls"],
            "seconds": ours["seconds"],
            "calls_per_s": ours["calls_per_s"],
        }
    )
    sys.path.insert(0, str(ROOT / "bench"))
    from warrior.cli.tables import table

    print("\nModel calls per second on instant fake models (rows: input rows / instructions mined)")
    print(table(rows, ["system", "configuration", "rows", "model_calls", "seconds", "calls_per_s"]))
    print(
        f"\nours / distilabel-best (batch {best['batch_size']}): {ratios['ours_over_distilabel_best']}   "
        f"ours / distilabel-default (batch {default['batch_size']}): {ratios['ours_over_distilabel_default']}"
    )
    print(
        f"our screening cost: {ours['screen_s_per_instruction']} s per instruction "
        f"({ours['screen_busy_s']} busy s over {ours['screen_tasks']} screen tasks)"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")

    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "distilabel_version": version,
        "distilabel": dl,
        "ours": ours,
        "ratios": ratios,
        "counted": {
            "distilabel": "outputs made by the ZeroLatencyLLM instances (3 expert answers + 1 UltraFeedback "
            "judge call per row), logged by each generate(); seconds: Pipeline.run() wall clock",
            "ours": "records in the campaign's call ledger (runs/<campaign>/calls/): mining completions, "
            "screening ratings, battle answers, judge verdicts, each paid once; seconds: campaign start to "
            "finished",
        },
        "differences": DIFFERENCES,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
