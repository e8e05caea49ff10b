"""How a campaign's cost grows with its size: zero-latency experts at 1k, 10k and 100k instructions.

    python bench/scaling.py [--sizes 1000,10000,100000] [--out bench/results/scaling.json]

Each size is one campaign of 3 `zero-latency-test` experts (per_expert = size / 3 mining units) on a
fresh local stack (embedded Redis, local store), run until the controller marks it finished and has
compacted its state. For each size:

- wall seconds and instructions mined / kept;
- CPU seconds per instruction: user + system of every process of the stack (workers, experts,
  controller, Redis) and of this process (the CLI), read once the campaign is finished, before shutdown;
- Redis: used_memory at the end (the campaign finished and compacted), its peak (used_memory_peak), and
  the number of keys left;
- the store: objects and bytes, per instruction;
- the largest RSS any one worker process reached (sampled every second).

The last table says, for each per-instruction figure, the ratio of its value at the largest size to
its value at the smallest: linear growth (or better) keeps it near 1 (`ok` when <= 1.3). With four
sizes or more, CPU seconds and store objects and bytes are also fitted as `fixed + a x mined + b x
kept` (least squares); the fit's largest relative miss says whether they grow linearly in the work.
The figures per kept request are judged by that fit, not by their ratio: the test engine repeats
itself at scale, so the share kept falls, and each dropped request still costs its mining and screening.

Each size's result is written to the JSON as soon as it is measured, and a size already in the JSON
is not run again (`--again` to rerun): an interrupted run of the large sizes continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import _fresh_env  # noqa: E402 - bench/run.py: a new home, embedded Redis, local store

ROOT = Path(__file__).resolve().parents[1]
EXPERTS = 3
LINEAR_RATIO = 1.3  # per-instruction cost at the largest size over the smallest: at most this is "linear or better"
PER_INSTRUCTION = ("cpu_s_per_instruction", "store_objects_per_instruction", "store_bytes_per_instruction",
                   "redis_used_bytes_per_instruction", "redis_peak_bytes_per_instruction",
                   "redis_keys_per_instruction")  # fmt: skip
# The same per kept instruction (battled and made a row): the zero-latency engine's hash-derived
# instructions collide more as a campaign grows, so the kept share falls and per-mined figures flatter
# the larger sizes; per kept, the work that grows with battles shows.
PER_KEPT = ("cpu_s_per_kept", "store_objects_per_kept", "store_bytes_per_kept")


def _per_kept(result: dict[str, Any]) -> dict[str, Any]:
    kept = max(1, int(result["kept"]))
    return result | {
        "cpu_s_per_kept": round(float(result["cpu_s"]) / kept, 4),
        "store_objects_per_kept": round(int(result["store_objects"]) / kept, 2),
        "store_bytes_per_kept": round(int(result["store_bytes"]) / kept, 1),
    }


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class StackSampler:
    """Every second: the stack's processes (and their children), each one's RSS; the largest kept by kind."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.max_rss: dict[str, int] = {}  # by kind of process (worker, expert, redis, controller)
        self.max_rss_by_name: dict[str, int] = {}  # by process of the stack (its children included)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cli_start = self._cli_cpu()

    @staticmethod
    def _cli_cpu() -> float:
        import psutil

        times = psutil.Process().cpu_times()
        return float(times.user + times.system)

    def processes(self, named: bool = False) -> list[tuple[str, Any]]:
        """(kind, psutil.Process) for each process of the stack and its descendants (name, with `named`)."""
        import psutil

        out = []
        for proc in self.stack.running():
            label = proc.name if named else proc.kind
            try:
                root = psutil.Process(proc.pid)
                out.append((label, root))
                out.extend((label, child) for child in root.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return out

    def sample(self) -> None:
        import psutil

        kinds = {proc.name: proc.kind for proc in self.stack.running()}
        for name, proc in self.processes(named=True):
            try:
                rss = proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            kind = kinds.get(name, "other")
            self.max_rss[kind] = max(self.max_rss.get(kind, 0), rss)
            self.max_rss_by_name[name] = max(self.max_rss_by_name.get(name, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a missed sample must not end the run
                _log(f"sampler: {type(exc).__name__}: {exc}")

    def __enter__(self) -> StackSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def cpu_seconds(self) -> dict[str, float]:
        """user + system seconds so far, by kind of process, this process included as `cli`."""
        import psutil

        # This process since the size began, its own threads only: its reaped children are the stacks of
        # the sizes before (their processes were started from here).
        by_kind: dict[str, float] = {"cli": self._cli_cpu() - self._cli_start}
        for kind, proc in self.processes():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            # children_user/system: processes a worker started and already reaped (executor sandboxes).
            spent = times.user + times.system + times.children_user + times.children_system
            by_kind[kind] = by_kind.get(kind, 0.0) + spent
        return by_kind


def _store_usage(store_url: str) -> tuple[int, int]:
    """(objects, bytes) under the local store's folder."""
    if not store_url.startswith("file://"):
        raise SystemExit(f"error: the scaling bench reads a local store; got {store_url}")
    objects = size = 0
    for dirpath, _, files in os.walk(store_url.removeprefix("file://")):
        for name in files:
            try:
                size += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                continue
            objects += 1
    return objects, size


def _key_kinds(client: Any) -> dict[str, int]:
    """Redis keys by kind: the key with its ids left out (a campaign's tables keep their names)."""
    kinds: dict[str, int] = {}
    for key in client.scan_iter(count=1000):
        key = key.decode() if isinstance(key, bytes) else str(key)
        if key.startswith("celery-task-meta-"):
            kind = "celery-task-meta-*"
        elif key.startswith("warrior:campaign:"):
            parts = key.split(":")
            kind = "warrior:campaign:*:" + ":".join(parts[3:])
        elif key.startswith("warrior:"):
            kind = ":".join(key.split(":")[:2]) + ":*"
        else:
            kind = key
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


def run_size(size: int, timeout_s: float, keep: bool = False) -> dict[str, Any]:
    from warrior.cli import campaign as ops
    from warrior.cli.stack import LocalStack
    from warrior.common.campaign_config import parse_campaign_config
    from warrior.common.campaign_state import CampaignState
    from warrior.common.celery_app import make_celery
    from warrior.common.runtime import get_runtime
    from warrior.common.settings import Settings

    per_expert = max(1, size // EXPERTS)
    home = _fresh_env(f"scaling{size}")
    data = {
        "campaign": f"bench-scaling-{size}",
        "experts": [{"name": f"zlt-{i}", "engine": "zero-latency-test", "parallel": 64} for i in range(EXPERTS)],
        "mining": {"per_expert": per_expert},
        # As bench/run.py: the test engine's ratings are hash-random near 5.5, keep most of them.
        "screening": {"rating": {"min_score": 4.0}},
        "scoring": {"bootstrap_rounds": 0},
        "matchmaking": {"open_roster": False},
    }
    config = parse_campaign_config(data)
    stack = LocalStack()
    _log(f"size {size}: starting the stack in {home}")
    stack.up(config, echo=lambda *_: None)
    try:
        rt, app = get_runtime(), make_celery("bench")
        with StackSampler(stack) as sampler:
            started = time.perf_counter()
            campaign = ops.start(rt, app, config)
            state = CampaignState(rt.redis, campaign, rt.store)
            last = 0.0
            while True:
                snap = state.snapshot()
                elapsed = time.perf_counter() - started
                if snap["status"] == "finished" and state.compaction_complete():
                    break
                if snap["status"] in ("build_failed", "cancelled"):
                    raise SystemExit(f"error: campaign {campaign} ended {snap['status']}")
                if elapsed > timeout_s:
                    raise SystemExit(f"error: campaign {campaign} not finished after {timeout_s:.0f}s")
                if elapsed - last >= 10:
                    last = elapsed
                    _log(f"size {size}: {elapsed:6.0f}s  " + ops.progress_postfix(snap))
                time.sleep(0.5)
            seconds = time.perf_counter() - started
            sampler.sample()
            cpu = sampler.cpu_seconds()
            max_rss, max_rss_by_name = dict(sampler.max_rss), dict(sampler.max_rss_by_name)
        info = rt.redis.info("memory")
        keys = int(rt.redis.dbsize())
        key_kinds = _key_kinds(rt.redis)
        archive = state.archive_key()
        archive_bytes = len(rt.store.get(archive)) if archive else 0
        objects, size_bytes = _store_usage(Settings.from_env().store_url)
        app.close()
    finally:
        stack.down(echo=lambda *_: None)
    if not keep:  # a 100k campaign's store and logs take gigabytes: gone once measured
        shutil.rmtree(home, ignore_errors=True)
    mined, kept = snap["instructions"]["mined"], snap["instructions"]["kept"]
    n = max(1, mined)
    total_cpu = sum(cpu.values())
    result = {
        "size": size,
        "per_expert": per_expert,
        "experts": EXPERTS,
        "seconds": round(seconds, 1),
        "mined": mined,
        "kept": kept,
        "finished": snap["finished"],
        "instructions_per_s": round(snap["finished"] / seconds, 2),
        "cpu_s": round(total_cpu, 1),
        "cpu_s_by_kind": {k: round(v, 1) for k, v in sorted(cpu.items())},
        "cpu_s_per_instruction": round(total_cpu / n, 4),
        "redis_used_bytes": int(info["used_memory"]),
        "redis_peak_bytes": int(info["used_memory_peak"]),
        "redis_keys": keys,
        "redis_keys_by_kind": key_kinds,
        # The campaign's own keys (bounded once compacted) and the experts' shared answer cache (a key per
        # model call answered, kept for its TTL), the two that could grow with the campaign.
        "redis_keys_campaign": sum(n for k, n in key_kinds.items() if k.startswith("warrior:campaign:")),
        "redis_keys_answer_cache": key_kinds.get("warrior:answer:*", 0),
        "archive_bytes": archive_bytes,
        "redis_used_bytes_per_instruction": round(int(info["used_memory"]) / n, 1),
        "redis_peak_bytes_per_instruction": round(int(info["used_memory_peak"]) / n, 1),
        "redis_keys_per_instruction": round(keys / n, 4),
        "store_objects": objects,
        "store_bytes": size_bytes,
        "store_objects_per_instruction": round(objects / n, 2),
        "store_bytes_per_instruction": round(size_bytes / n, 1),
        "max_worker_rss_mb": round(max_rss.get("worker", 0) / 2**20, 1),
        "max_rss_mb_by_kind": {k: round(v / 2**20, 1) for k, v in sorted(max_rss.items())},
        "max_rss_mb_by_process": {k: round(v / 2**20, 1) for k, v in sorted(max_rss_by_name.items())},
    }
    _log(f"size {size}: done in {seconds:.0f}s")
    return _per_kept(result)


def growth(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each per-instruction figure at the largest size over the smallest (and worker RSS, a whole-run
    figure), and each total fitted as linear in the work (see linear_fit)."""
    if len(results) < 2:
        return {}
    small, large = results[0], results[-1]
    out: dict[str, Any] = {"from": small["size"], "to": large["size"]}
    for name in (*PER_INSTRUCTION, *PER_KEPT, "max_worker_rss_mb"):
        a, b = float(small[name]), float(large[name])
        ratio = round(b / a, 2) if a else None
        out[name] = {"ratio": ratio, "linear_or_better": ratio is not None and ratio <= LINEAR_RATIO}
    if len(results) >= 4:
        out["linear_fit"] = {total: linear_fit(results, total) for total in FITTED}
        # Per kept request a figure rises when the share kept falls (the test engine repeats itself at
        # scale, and a dropped request still costs its mining and screening): the fit decides instead.
        for name, total in zip(PER_KEPT, FITTED, strict=True):
            out[name]["linear_or_better"] = out["linear_fit"][total]["linear"]
    return out


# Totals fitted as fixed + per mined + per kept; the per-kept figures (PER_KEPT) are judged by these fits.
FITTED = ("cpu_s", "store_objects", "store_bytes")
FIT_TOLERANCE = 0.15  # the largest relative miss of the linear fit over the sizes that still counts as linear


def linear_fit(results: list[dict[str, Any]], total: str) -> dict[str, Any]:
    """Least squares `total ~ fixed + a * mined + b * kept` over the sizes, its largest relative miss,
    and whether the miss is within FIT_TOLERANCE (a cost growing faster than the work misses the
    largest size). Needs more sizes than the fit's 3 terms."""
    import numpy as np

    work = np.array([[1.0, float(r["mined"]), float(r["kept"])] for r in results])
    values = np.array([float(r[total]) for r in results])
    coef, *_ = np.linalg.lstsq(work, values, rcond=None)
    miss = float(np.max(np.abs(work @ coef - values) / np.maximum(values, 1e-9)))
    return {"fixed": round(float(coef[0]), 3), "per_mined": round(float(coef[1]), 5),
            "per_kept": round(float(coef[2]), 5), "largest_miss": round(miss, 3),
            "linear": bool(miss <= FIT_TOLERANCE and coef[1] >= 0 and coef[2] >= 0)}  # fmt: skip


def report(results: list[dict[str, Any]]) -> str:
    from warrior.cli.tables import table

    rows = [r | {"redis_used_mb": round(r["redis_used_bytes"] / 2**20, 2),
                 "redis_peak_mb": round(r["redis_peak_bytes"] / 2**20, 2)} for r in results]  # fmt: skip
    text = table(rows, ["size", "mined", "kept", "seconds", "instructions_per_s", "cpu_s_per_instruction",
                        "redis_used_mb", "redis_peak_mb", "redis_keys", "redis_keys_campaign",
                        "redis_keys_answer_cache", "store_objects_per_instruction", "store_bytes_per_instruction",
                        "max_worker_rss_mb"])  # fmt: skip
    g = growth(results)
    if g:
        lines = [f"\nGrowth from {g['from']} to {g['to']} instructions (per-instruction figure, largest / smallest; "
                 f"linear or better when <= {LINEAR_RATIO}):"]  # fmt: skip
        for name in (*PER_INSTRUCTION, *PER_KEPT, "max_worker_rss_mb"):
            ratio = g[name]["ratio"]
            lines.append(f"  {name:36s} {ratio if ratio is not None else '-':>6}  "
                         f"{'ok' if g[name]['linear_or_better'] else 'GROWS FASTER THAN LINEAR'}")  # fmt: skip
        for total, fit in g.get("linear_fit", {}).items():
            verdict = "linear" if fit["linear"] else "NOT LINEAR"
            lines.append(f"  {total:>13} ~ {fit['fixed']:g} + {fit['per_mined']:g} x mined + {fit['per_kept']:g} x kept"
                         f"  (largest miss {fit['largest_miss']:.1%}: {verdict})")  # fmt: skip
        text += "\n".join(lines)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="instructions mined in total, comma-separated")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scaling.json"), help="JSON results")
    parser.add_argument("--timeout", type=float, default=48 * 3600, help="seconds one size may take")
    parser.add_argument("--again", action="store_true", help="rerun sizes already in --out")
    parser.add_argument("--keep", action="store_true", help="keep each size's stack folder (store, Redis, logs)")
    args = parser.parse_args()
    if not os.environ.get("WARRIOR_MBPP_PATH"):
        # Screening decontaminates against MBPP: without a local copy every instruction fails there.
        parser.error("set WARRIOR_MBPP_PATH to a local MBPP copy (make bench-scaling sets it)")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or min(sizes) < EXPERTS:
        parser.error(f"--sizes: at least {EXPERTS} instructions each")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    done = {int(r["size"]): _per_kept(r) for r in previous.get("sizes", [])}
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "engine": "zero-latency-test",
        "experts": EXPERTS,
    }

    def save() -> None:
        ordered = [done[s] for s in sorted(done)]
        results["sizes"] = ordered
        results["growth"] = growth(ordered)
        results["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out.write_text(json.dumps(results, indent=2) + "\n")

    for size in sizes:
        if size in done and not args.again:
            _log(f"size {size}: already in {out} (--again to rerun)")
            continue
        done[size] = run_size(size, args.timeout, keep=args.keep)
        save()
    save()
    print(f"\nScaling (zero-latency test engine, {EXPERTS} experts; figures at the end of each campaign)")
    print(report([done[s] for s in sorted(done) if s in sizes]))
    print(f"\nresults: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
