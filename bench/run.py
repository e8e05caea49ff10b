"""Benchmarks: engine saturation, orchestration overhead and worker scaling. Prints tables, writes JSON.

    python bench/run.py [--quick] [--out bench/results]

- saturation: one real expert (SmolLM2 on llama.cpp) battles two instances of the zero-latency
  test engine, so it bounds the campaign. Every call the pipeline made to it is then replayed on
  the same engine driven directly, with the same concurrency, in the same run: the ratio of the two
  times says how full the pipeline kept the engine.
- orchestration: the zero-latency test engine only (instant fake outputs, not a model), 3 and 8
  experts: instructions per second through mine -> screen -> battle -> score -> dataset, and the
  busy time of each stage, which names the stage that bounds the pipeline.
- scaling: the orchestration run again with 2 Celery worker replicas per service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
STAGES = ("warrior.mine", "warrior.screen", "warrior.battle", "warrior.score", "warrior.collect")


def _fresh_env(tag: str) -> Path:
    """Point this process (and the stack it starts) at a new home, an embedded Redis and a local store."""
    home = Path(tempfile.mkdtemp(prefix=f"warrior-bench-{tag}-"))
    os.environ["WARRIOR_HOME"] = str(home)
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("WARRIOR_STORE_URL", None)
    from warrior.common.runtime import get_runtime

    get_runtime.cache_clear()
    return home


def _run_campaign(data: dict[str, Any], *, replicas: int = 1, timeout_s: float = 1800) -> dict[str, Any]:
    from warrior.cli import campaign as ops
    from warrior.cli.stack import LocalStack
    from warrior.common.campaign_config import parse_campaign_config
    from warrior.common.celery_app import make_celery
    from warrior.common.runtime import get_runtime

    config = parse_campaign_config(data)
    stack = LocalStack()
    stack.up(config, echo=lambda *_: None, worker_replicas=replicas)
    try:
        rt, app = get_runtime(), make_celery("bench")
        started = time.perf_counter()
        campaign = ops.start(rt, app, config)
        snap = ops.wait(rt, campaign, timeout_s=timeout_s, interval_s=0.2)
        seconds = time.perf_counter() - started
        calls = [rt.store.get_json(k) for k in rt.store.list(f"runs/{campaign}/calls/")]
        app.close()
    finally:
        stack.down(echo=lambda *_: None)
    return {"snapshot": snap, "seconds": seconds, "calls": calls}


# -- orchestration -----------------------------------------------------------------------------
def orchestration(experts: int, per_expert: int, replicas: int) -> dict[str, Any]:
    _fresh_env(f"orch{experts}x{replicas}")
    names = [f"zlt-{i}" for i in range(experts)]
    data = {
        "campaign": f"bench-orch-{experts}-{replicas}",
        "experts": [{"name": n, "engine": "zero-latency-test", "parallel": 64} for n in names],
        "mining": {"per_expert": per_expert},
        # The test engine's ratings are hash-random near 5.5: keep most, as the earlier figures did.
        "screening": {"rating": {"min_score": 4.0}},
        "scoring": {"bootstrap_rounds": 0},
        "matchmaking": {"open_roster": False},
    }
    run = _run_campaign(data, replicas=replicas)
    snap, seconds = run["snapshot"], run["seconds"]
    from warrior.cli.stack import WORKER_CONCURRENCY
    from warrior.common import queues

    service_of = {
        "warrior.mine": "instruction_miner",
        "warrior.screen": "instruction_miner",
        "warrior.battle": "judge",
        "warrior.score": "scorer",
        "warrior.collect": "dataset_builder",
    }
    busy = {s: snap["timing"].get(f"{s}.seconds", 0.0) for s in STAGES}
    tasks = {s: int(snap["timing"].get(f"{s}.tasks", 0)) for s in STAGES}
    # A service's capacity is its threads over all replicas; the miner's are shared by two stages.
    per_service: dict[str, float] = {}
    for stage, secs in busy.items():
        per_service[service_of[stage]] = per_service.get(service_of[stage], 0.0) + secs
    utilisation = {svc: secs / (WORKER_CONCURRENCY[svc] * replicas * seconds) for svc, secs in per_service.items()}
    bound = max(utilisation, key=lambda k: utilisation[k])
    finished = snap["finished"]
    return {
        "experts": experts,
        "worker_replicas": replicas,
        "mined": snap["instructions"]["mined"],
        "kept": snap["instructions"]["kept"],
        "battles": snap["battles"],
        "model_calls": len(run["calls"]),
        "seconds": round(seconds, 2),
        "instructions_per_s": round(finished / seconds, 1),
        "mined_per_s": round(snap["instructions"]["mined"] / seconds, 1),
        "stage_busy_s": {s.split(".")[1]: round(v, 2) for s, v in busy.items()},
        "stage_ms_per_task": {
            s.split(".")[1]: round(1000 * busy[s] / tasks[s], 1) if tasks[s] else None for s in STAGES
        },
        "service_utilisation": {k: round(v, 2) for k, v in utilisation.items()},
        "bound_by": bound,
        "queues": list(queues.QUEUES),
    }


# -- saturation --------------------------------------------------------------------------------
def saturation(per_expert: int, parallel: int, max_tokens: int) -> dict[str, Any]:
    _fresh_env("sat")
    data = {
        "campaign": "bench-saturation",
        "experts": [
            {"name": "smol", "model": str(SMOLLM2), "parallel": parallel, "threads": 1},
            {"name": "zlt-a", "engine": "zero-latency-test", "parallel": 64},
            {"name": "zlt-b", "engine": "zero-latency-test", "parallel": 64},
        ],
        "mining": {
            "per_expert": per_expert,
            "sampling": {"max_tokens": max_tokens},
            "grid": [{"temperature": 1.0, "top_p": 0.99}],
        },
        "screening": {"min_words": 3, "rating": {"min_score": 1.0}},
        "battle": {"answer_sampling": {"temperature": 1.0, "top_p": 0.95, "max_tokens": max_tokens}},
        "scoring": {"bootstrap_rounds": 0},
        "matchmaking": {"open_roster": False},
    }
    run = _run_campaign(data)
    calls = [c for c in run["calls"] if c["expert"] == "smol"]
    pipeline_tokens = sum(c["response"].get("completion_tokens", 0) for c in calls)
    raw_seconds, raw_tokens = asyncio.run(_replay(calls, parallel))
    return {
        "model": SMOLLM2.name,
        "parallel": parallel,
        "calls": len(calls),
        "calls_by_kind": {k: sum(1 for c in calls if c["kind"] == k) for k in sorted({c["kind"] for c in calls})},
        "pipeline_seconds": round(run["seconds"], 2),
        "pipeline_tokens": pipeline_tokens,
        "pipeline_tokens_per_s": round(pipeline_tokens / run["seconds"], 1),
        "raw_seconds": round(raw_seconds, 2),
        "raw_tokens": raw_tokens,
        "raw_tokens_per_s": round(raw_tokens / raw_seconds, 1),
        # Same calls, same engine settings: the share of the engine's own speed the pipeline kept.
        "pipeline_over_raw": round(raw_seconds / run["seconds"], 3),
    }


async def _replay(calls: list[dict[str, Any]], parallel: int) -> tuple[float, int]:
    """Every recorded call again, on the engine driven directly with the pipeline's concurrency."""
    from warrior.common.chat_template import Message
    from warrior.expert_inference.engine import SamplingSpec
    from warrior.expert_inference.llamacpp_engine import LlamaCppEngine
    from warrior.expert_inference.server import ExpertInferenceServicer

    engine = LlamaCppEngine(SMOLLM2, parallel=parallel, threads=1, max_waiting=10_000)
    render = ExpertInferenceServicer("smol", engine)._render

    def spec(sampling: dict[str, Any], extra_stops: tuple[str, ...] = ()) -> SamplingSpec:
        return SamplingSpec(
            temperature=float(sampling.get("temperature", 0.0)),
            top_p=float(sampling.get("top_p", 1.0)),
            max_tokens=int(sampling.get("max_tokens", 256)),
            stop=tuple(sampling.get("stop", ())) + extra_stops,
            seed=int(sampling.get("seed", 0)),
        )

    async def one(call: dict[str, Any]) -> int:
        request = call["request"]
        if call["kind"] == "complete":
            return (await engine.generate(request["prompt"], spec(request["sampling"]))).completion_tokens
        messages = [Message(m["role"], m["content"]) for m in request["messages"]]
        if call["kind"] == "chat":
            prompt, stops = render(messages)
            return (await engine.generate(prompt, spec(request["sampling"], stops))).completion_tokens
        prompt, _ = render(messages, request["assistant_prefix"])
        await engine.score(prompt, list(request["candidates"]))
        return 0

    started = time.perf_counter()
    tokens = await asyncio.gather(*(one(c) for c in calls))
    seconds = time.perf_counter() - started
    engine.close()
    return seconds, sum(tokens)


# -- report ------------------------------------------------------------------------------------
def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    from warrior.cli.tables import table

    return table(rows, columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the harness)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON results")
    parser.add_argument("--skip-saturation", action="store_true", help="only the zero-latency runs")
    args = parser.parse_args()
    if not SMOLLM2.is_file() and not args.skip_saturation:
        sys.exit(f"error: {SMOLLM2} is missing; run `make install`")
    per3, per8, sat = (20, 4, 6) if args.quick else (80, 10, 12)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
    }
    orch = []
    for experts, per in ((3, per3), (8, per8)):
        for replicas in (1, 2):
            print(f"orchestration: {experts} experts, {replicas} worker replica(s) ...", file=sys.stderr, flush=True)
            orch.append(orchestration(experts, per, replicas))
    results["orchestration"] = orch
    if not args.skip_saturation:
        print("saturation: SmolLM2 on llama.cpp, pipeline then direct replay ...", file=sys.stderr, flush=True)
        results["saturation"] = saturation(sat, parallel=2, max_tokens=64)

    print("\nOrchestration (zero-latency test engine; instructions through every stage)")
    print(
        _table(
            [r | {f"{k}_ms": v for k, v in r["stage_ms_per_task"].items()} for r in orch],
            ["experts", "worker_replicas", "kept", "battles", "model_calls", "seconds", "instructions_per_s",
             "mine_ms", "screen_ms", "battle_ms", "score_ms", "collect_ms", "bound_by"],
        )
    )  # fmt: skip
    if "saturation" in results:
        s = results["saturation"]
        print("\nEngine saturation (same calls: through the pipeline vs the engine driven directly)")
        print(
            _table(
                [s],
                ["model", "parallel", "calls", "pipeline_seconds", "pipeline_tokens_per_s", "raw_seconds",
                 "raw_tokens_per_s", "pipeline_over_raw"],
            )
        )  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (out / name).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out / f'bench-{stamp}.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
