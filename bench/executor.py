"""Sandbox throughput: sandboxed runs per second of a short program, and what each layer costs.

    python bench/executor.py [--runs 80] [--json bench/results/executor.json]

- throughput: LocalExecutor with 1 thread and with N threads (N: the CPUs this process may use) on
  a batch of `--runs` copies of a short program (`assert sum(range(10)) == 45`), after a warm-up.
- layers: the same program run one at a time with every layer on, and with one layer off at a time
  (the audit hook; the kernel confinement, seccomp and Landlock; the network namespace), the
  configurations interleaved so that other load on the machine falls on each alike. A layer's cost
  is the median run with it on minus the median run with it off.
- floor: a bare interpreter start (`python -I -S -B -c pass`), under every run.

Wall times follow whatever else the machine runs (the load average is recorded); CPU milliseconds
per run (the caller's plus the program's process) do much less, and N / CPU per run is the rate N
idle cores would allow. Prints tables; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "assert sum(range(10)) == 45\n"
LAYERS: dict[str, dict[str, bool]] = {
    "all layers": {},
    "audit hook off": {"audit_hook": False},
    "kernel confinement off": {"kernel_confinement": False},
    "network namespace off": {"isolate_network": False},
}


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that were waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def throughput(threads: int, runs: int) -> dict[str, Any]:
    from warrior.executor.runner import LocalExecutor, Program

    programs = [Program(PROGRAM, timeout_s=10.0)] * runs
    with LocalExecutor(workers=threads) as executor:
        executor.run_many(programs[: 2 * threads])  # warm-up: threads started, caches filled
        cpu, started = _cpu_s(), time.perf_counter()
        results = executor.run_many(programs)
        seconds, cpu = time.perf_counter() - started, _cpu_s() - cpu
    failed = [r for r in results if not r.passed]
    if failed:
        raise SystemExit(f"a benchmark run did not pass: {failed[0]}")
    return {
        "threads": threads,
        "runs": runs,
        "seconds": round(seconds, 3),
        "runs_per_s": round(runs / seconds, 1),
        "cpu_ms_per_run": round(1000 * cpu / runs, 1),
        "median_run_ms": round(1000 * statistics.median(r.duration_s for r in results), 1),
    }


def _timed(call: Callable[[], object]) -> tuple[float, float]:
    cpu, started = _cpu_s(), time.perf_counter()
    call()
    return time.perf_counter() - started, _cpu_s() - cpu


def layers(rounds: int) -> list[dict[str, Any]]:
    from warrior.executor import sandbox

    walls: dict[str, list[float]] = {name: [] for name in LAYERS}
    cpus: dict[str, list[float]] = {name: [] for name in LAYERS}
    floor_wall: list[float] = []
    floor_cpu: list[float] = []

    def bare() -> None:
        subprocess.run([sys.executable, "-I", "-S", "-B", "-c", "pass"], check=True)

    for flags in LAYERS.values():  # warm-up
        sandbox.run(PROGRAM, **flags)
    for _ in range(rounds):
        for name, flags in LAYERS.items():
            result: list[Any] = []
            wall, cpu = _timed(lambda flags=flags, result=result: result.append(sandbox.run(PROGRAM, **flags)))
            if not result[0].passed:
                raise SystemExit(f"a benchmark run did not pass ({name}): {result[0]}")
            walls[name].append(wall)
            cpus[name].append(cpu)
        wall, cpu = _timed(bare)
        floor_wall.append(wall)
        floor_cpu.append(cpu)
    full = statistics.median(walls["all layers"])
    rows = []
    for name in LAYERS:
        median = statistics.median(walls[name])
        rows.append({
            "configuration": name,
            "median_ms": round(1000 * median, 1),
            "layer_cost_ms": None if name == "all layers" else round(1000 * (full - median), 1),
            "cpu_ms_per_run": round(1000 * statistics.median(cpus[name]), 1),
        })  # fmt: skip
    rows.append({
        "configuration": "bare interpreter start",
        "median_ms": round(1000 * statistics.median(floor_wall), 1),
        "layer_cost_ms": None,
        "cpu_ms_per_run": round(1000 * statistics.median(floor_cpu), 1),
    })  # fmt: skip
    return rows


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("-" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from warrior.executor.confinement import available
    from warrior.executor.runner import cpu_budget

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=80, help="programs per throughput batch")
    parser.add_argument("--rounds", type=int, default=25, help="runs of each configuration in the layer table")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "executor.json"), help="where to write")
    args = parser.parse_args(argv)
    cpus = cpu_budget()
    load_before = os.getloadavg()
    layer_info = available()
    print(f"{cpus} CPUs, caller uid {os.geteuid()}; sandbox: {layer_info.describe()}", file=sys.stderr)
    rates = []
    for threads in sorted({1, cpus}):
        print(f"throughput: {args.runs} runs on {threads} thread(s) ...", file=sys.stderr, flush=True)
        rates.append(throughput(threads, args.runs))
    for row in rates:
        row["cpu_bound_runs_per_s"] = round(min(row["threads"], cpus) * 1000 / row["cpu_ms_per_run"], 1)
    print(f"layers: {args.rounds} rounds of {len(LAYERS)} configurations ...", file=sys.stderr, flush=True)
    costs = layers(args.rounds)
    load_after = os.getloadavg()

    print(f"\nSandboxed runs of `{PROGRAM.strip()}` (LocalExecutor)")
    print(_table(rates, ["threads", "runs", "seconds", "runs_per_s", "median_run_ms", "cpu_ms_per_run",
                         "cpu_bound_runs_per_s"]))  # fmt: skip
    print("\nWhat each layer costs (one run at a time; cost = median with every layer minus median without it)")
    print(_table(costs, ["configuration", "median_ms", "layer_cost_ms", "cpu_ms_per_run"]))
    print(
        f"\nload average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs; "
        f"niceness {os.nice(0)}"
    )
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "program": PROGRAM,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_budget": cpus,
            "python": platform.python_version(),
            "kernel": platform.release(),
            "root": os.geteuid() == 0,
            "layers": asdict(layer_info),
            "nice": os.nice(0),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "throughput": rates,
        "layers": costs,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
