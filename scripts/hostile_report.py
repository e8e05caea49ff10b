"""Run the hostile programs through the executor's sandbox; print the table and write it as JSON.

    python scripts/hostile_report.py [--json bench/results/hostile.json] [--only NAME ...]

Exit status 0 when every program was contained, 1 otherwise. As root every run gets an identity and
a network namespace of its own; as any user it gets the seccomp filter and the Landlock ruleset
where the kernel offers them; a program whose layers are missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from warrior.executor.confinement import available

ROOT = Path(__file__).resolve().parents[1]
# The hostile programs are test data of the executor service, beside its tests.
sys.path.insert(0, str(ROOT / "services" / "executor" / "tests"))
from hostile_programs import HOSTILE, render_table, run_hostile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "hostile.json"), help="where to write the rows"
    )
    parser.add_argument("--only", nargs="+", choices=[p.name for p in HOSTILE], help="run these programs only")
    args = parser.parse_args(argv)
    started = time.monotonic()
    layers = available()
    print(f"caller uid {os.geteuid()}; kernel layers: {layers.describe()}\n")
    rows = run_hostile(only=args.only)
    print(render_table(rows))
    failed = [r for r in rows if r.contained is False]
    skipped = [r for r in rows if r.contained is None]
    seconds = time.monotonic() - started
    print(
        f"\n{len(rows) - len(failed) - len(skipped)}/{len(rows)} contained, {len(failed)} not contained, "
        f"{len(skipped)} skipped, {seconds:.1f} s"
    )
    for row in failed:
        print(f"NOT CONTAINED {row.program}: {row.detail}", file=sys.stderr)
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "python": platform.python_version(),
            "kernel": platform.release(),
            "root": os.geteuid() == 0,
            "uid": os.geteuid(),
            "layers": asdict(layers),
        },
        "seconds": round(seconds, 2),
        "rows": [r.to_dict() for r in rows],
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
