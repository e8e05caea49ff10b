"""Chaos suite: a real campaign while a seeded driver kills workers, experts and Redis and cuts the store.

    python bench/chaos.py [--size ci|large] [--seed N] [--out bench/results]

The campaign runs on the local stack with the zero-latency test engine (instant fake outputs, not a
model), Redis with its append-only file, and an S3 store (moto's server on loopback) reached through
a TCP proxy the driver can cut. While it runs, the driver repeatedly, at seeded random moments:
SIGKILLs a random Celery worker or expert-inference process and starts it again (as a Kubernetes
controller would), SIGKILLs the Redis server and restarts it on its data, and makes the object store
unreachable for a few seconds. At the end it checks, from the durable records only: every kept
instruction has exactly one final set of votes and exactly one dataset row; no model call was paid
twice beyond what a kill can cost (engine executions, logged by the engines, against the ledger's
records; experts share their answers in Redis, so a killed expert's answers outlive it); no task is stuck
(queues and unacknowledged messages empty); the run finished. The same campaign also runs without
faults, for the wall-time comparison. Prints a table, writes JSON, exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES: dict[str, dict[str, Any]] = {
    # faults: how many to inject; gap_s: seconds between them.
    "ci": {"experts": 3, "per_expert": 8, "faults": 6, "gap_s": (1.0, 2.5)},
    "large": {"experts": 4, "per_expert": 60, "faults": 40, "gap_s": (1.5, 4.0)},
}
FAULTS = ("kill_worker", "kill_expert", "kill_redis", "store_outage")


class Proxy:
    """A TCP proxy to the object store that can be cut: open connections are dropped, new ones refused."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut_until = 0.0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, seconds: float) -> None:
        with self._lock:
            self._cut_until = time.monotonic() + seconds
            for conn in list(self._open):
                _close(conn)
            self._open.clear()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            if time.monotonic() < self._cut_until:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (source, sink):
                _close(conn)
                with self._lock:
                    self._open.discard(conn)


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


def _environment(tag: str) -> tuple[Path, Any, Proxy]:
    """A fresh home and an S3 store behind a proxy; the stack's processes inherit this environment."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    home = Path(tempfile.mkdtemp(prefix=f"warrior-chaos-{tag}-"))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    proxy = Proxy((host, port))
    os.environ.update(
        {
            "WARRIOR_HOME": str(home),
            # moto keeps its buckets per process: one bucket per run keeps the runs apart.
            "WARRIOR_STORE_URL": f"s3://{tag}/runs?endpoint=http://127.0.0.1:{proxy.port}&region=us-east-1",
            "AWS_ACCESS_KEY_ID": "chaos-test-key",
            "AWS_SECRET_ACCESS_KEY": "chaos-test-secret",
            "WARRIOR_REGISTRY_TTL_S": "5",
            "WARRIOR_VISIBILITY_TIMEOUT_S": "15",
            "WARRIOR_GRPC_DEADLINE_S": "20",
            # A worker whose consumer wedged after Redis came back starts itself afresh after this long.
            "WARRIOR_CONSUMER_STALL_S": "10",
            "WARRIOR_ZLT_CALL_LOG": str(home / "engine-calls.log"),
        }
    )
    os.environ.pop("REDIS_URL", None)
    from warrior.common.runtime import get_runtime

    get_runtime.cache_clear()
    return home, moto, proxy


def _config(tag: str, size: dict[str, Any]) -> dict[str, Any]:
    return {
        "campaign": f"chaos-{tag}",
        "experts": [{"name": f"zlt-{i}", "engine": "zero-latency-test"} for i in range(size["experts"])],
        "mining": {"per_expert": size["per_expert"]},
        # The test engine's ratings are hash-random near 5.5; the embedding check is not what is tested.
        "screening": {
            "rating": {"min_score": 4.0},
            "decontamination": {"benchmarks": ["humaneval"], "embedding": {"enabled": False}},
        },
        "scoring": {"bootstrap_rounds": 0, "max_flip_rate": 1.0},
        "matchmaking": {"open_roster": False},
        "dataset": {"name": f"chaos-{tag}"},
    }


def _inject(stack: Any, proxy: Proxy, rng: random.Random, kind: str) -> str:
    procs = stack.running()
    if kind == "store_outage":
        seconds = rng.uniform(2.0, 5.0)
        proxy.cut(seconds)
        return f"store unreachable for {seconds:.1f}s"
    pool = {"kill_worker": "worker", "kill_expert": "expert", "kill_redis": "redis"}[kind]
    candidates = sorted((p for p in procs if p.kind == pool), key=lambda p: p.name)
    if not candidates:
        return "nothing to kill"
    victim = rng.choice(candidates)
    os.kill(victim.pid, signal.SIGKILL)
    time.sleep(rng.uniform(0.3, 1.5))
    stack.restart(victim.name)
    return f"SIGKILL {victim.name}, restarted"


def _supervise(stack: Any) -> list[str]:
    """Start again any process of the stack that died on its own (a Celery worker whose broker
    connection broke beyond repair exits), as Kubernetes restarts a crashed container."""
    from warrior.cli.stack import _alive

    restarted = []
    for proc in (stack.read() or {}).get("processes", []):
        if not _alive(proc["pid"]):
            stack.restart(proc["name"])
            restarted.append(proc["name"])
            print(f"  {proc['name']} had exited: restarted", file=sys.stderr, flush=True)
    return restarted


def _stuck_messages(client: Any) -> dict[str, int]:
    """Messages still waiting (by queue list) or in a worker's hands (by task name); empty when drained."""
    from warrior.common import queues

    stuck: dict[str, int] = {}
    for key in client.keys("*"):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if any(name.startswith(q) for q in queues.QUEUES) and client.type(key) in ("list", b"list"):
            if waiting := int(client.llen(key)):
                stuck[f"waiting {name!r}"] = waiting
    for entry in client.hvals("unacked"):
        try:
            message = json.loads(entry)[0]
            task = message["headers"]["task"]
        except (ValueError, KeyError, IndexError, TypeError):
            task = "unreadable"
        stuck[f"unacked {task}"] = stuck.get(f"unacked {task}", 0) + 1
    return stuck


def run_campaign(tag: str, size: dict[str, Any], *, faults: bool, seed: int, timeout_s: float) -> dict[str, Any]:
    from warrior.cli import campaign as ops
    from warrior.cli.stack import LocalStack
    from warrior.common.campaign_config import parse_campaign_config
    from warrior.common.celery_app import make_celery
    from warrior.common.runtime import get_runtime
    from warrior.dataset_builder.versions import read_manifest, read_rows

    home, moto, proxy = _environment(f"{tag}-{'faults' if faults else 'calm'}")
    config = parse_campaign_config(_config(tag, size))  # the same campaign in both runs
    stack = LocalStack()
    stack.up(config, echo=lambda *_: None)
    injected: list[dict[str, Any]] = []
    crashed: list[str] = []
    rng = random.Random(seed)
    try:
        rt, app = get_runtime(), make_celery("chaos")
        started = time.monotonic()
        campaign = ops.start(rt, app, config)
        state = ops.CampaignState(rt.redis, campaign)
        # The stack's campaign controller re-sends the unfinished stages when nothing moves for twice the
        # visibility timeout (a message lost for good), and builds the dataset once the work is done.
        remaining = size["faults"] if faults else 0
        # Every kind of fault at least once, in a seeded order.
        schedule = [FAULTS[i % len(FAULTS)] for i in range(remaining)]
        rng.shuffle(schedule)
        next_fault = started + rng.uniform(*size["gap_s"])
        done = False
        while time.monotonic() - started < timeout_s:
            try:
                snap = state.snapshot()
                done = snap["done"]
            except Exception:  # noqa: BLE001 - Redis may be down right now: the campaign is not done
                done = False
            if done and remaining == 0:
                break
            crashed.extend(_supervise(stack))
            if remaining and time.monotonic() >= next_fault:
                kind = schedule[size["faults"] - remaining]
                what = _inject(stack, proxy, rng, kind)
                injected.append({"kind": kind, "at_s": round(time.monotonic() - started, 1), "what": what})
                print(f"[{time.monotonic() - started:6.1f}s] {kind}: {what}", file=sys.stderr, flush=True)
                remaining -= 1
                next_fault = time.monotonic() + rng.uniform(*size["gap_s"])
            time.sleep(0.2)
        seconds = time.monotonic() - started
        snap = state.snapshot()
        finished = bool(snap["done"])
        # Once the work is done the controller builds the dataset (tasks of its own): a message is stuck
        # only if it is still there after that build ended and the queues had time to drain.
        settle = time.monotonic() + 120
        while time.monotonic() < settle and (state.status() == "building" or _stuck_messages(rt.redis)):
            crashed.extend(_supervise(stack))
            time.sleep(0.5)
        stuck_queues = _stuck_messages(rt.redis)
        manifest = ops.build_dataset(app, campaign, config.dataset.name) if finished else None
        rows = read_rows(rt.store, read_manifest(rt.store, config.dataset.name)) if manifest else []
        checks = _checks(rt, campaign, snap, rows, home)
        redelivered = sum(1 for k in rt.redis.scan_iter("warrior:deliveries:*") if int(rt.redis.get(k) or 0) > 1)
        app.close()
    finally:
        stack.down(echo=lambda *_: None)
        moto.stop()
    return {
        "faults": injected,
        "seconds": round(seconds, 1),
        "finished": finished,
        "stuck_queues": stuck_queues,
        "snapshot": {k: snap[k] for k in ("instructions", "battles", "votes", "failures", "counters")},
        "redelivered": redelivered,
        "resumed_after_stall": snap["counters"].get("controller_resends", 0),
        "crashed_and_restarted": crashed,
        **checks,
    }


def _checks(rt: Any, campaign: str, snap: dict[str, Any], rows: list[dict[str, Any]], home: Path) -> dict[str, Any]:
    """Rows lost / duplicated and calls paid twice, from the durable records."""
    from warrior.common.campaign_state import CampaignState

    state = CampaignState(rt.redis, campaign)
    battled = {k.rsplit("/", 1)[1].removesuffix(".json") for k in rt.store.list(f"runs/{campaign}/battles/")}
    votes = state.table("votes")
    row_ids = Counter(r["lineage"]["instruction_id"] for r in rows)
    ledger = sum(1 for _ in rt.store.list(f"runs/{campaign}/calls/"))
    log = home / "engine-calls.log"
    executions = log.read_text().splitlines() if log.exists() else []
    by_hash = Counter(executions)
    # Repeats an expert answered from the answer cache its replicas share in Redis (it logs each).
    shared = sum(p.read_text(errors="replace").count("answered from Redis") for p in (home / "logs").glob("expert-*"))
    # Workers that found their broker consumer wedged (a Redis restart can leave one so) and started afresh.
    wedged = sum(p.read_text(errors="replace").count("consumer is wedged") for p in (home / "logs").glob("worker-*"))
    return {
        "kept": snap["instructions"]["kept"],
        "battled": len(battled),
        "votes_missing": len(battled - set(votes)),
        "rows_lost": len(battled - set(row_ids)),
        "rows_duplicated": sum(n - 1 for n in row_ids.values() if n > 1),
        "engine_executions": len(executions),
        "ledger_records": ledger,
        "calls_paid_twice": sum(n - 1 for n in by_hash.values() if n > 1),
        "answers_shared": shared,
        "consumers_restarted": wedged,
        "ledger_reused": int(snap["counters"].get("ledger_reused", 0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="ci")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each campaign may take")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    print(f"chaos ({args.size}, seed {args.seed}): fault-free run first", file=sys.stderr)
    calm = run_campaign(args.size, size, faults=False, seed=args.seed, timeout_s=args.timeout)
    print("now with faults", file=sys.stderr)
    rough = run_campaign(args.size, size, faults=True, seed=args.seed, timeout_s=args.timeout)
    report = {"size": args.size, "seed": args.seed, "calm": calm, "chaos": rough}
    by_kind = Counter(f["kind"] for f in rough["faults"])
    lines = [
        f"{'faults injected':<38}" + ", ".join(f"{k} {by_kind.get(k, 0)}" for k in FAULTS),
        f"{'finished':<38}{rough['finished']} (fault-free: {calm['finished']})",
        f"{'wall time':<38}{rough['seconds']}s (fault-free: {calm['seconds']}s)",
        f"{'kept / battled instructions':<38}{rough['kept']} / {rough['battled']}",
        f"{'tasks redelivered':<38}{rough['redelivered']}",
        f"{'stalls resumed (lost messages)':<38}{rough['resumed_after_stall']}",
        f"{'processes restarted after exiting':<38}{len(rough['crashed_and_restarted'])}",
        f"{'wedged consumers started afresh':<38}{rough['consumers_restarted']}",
        f"{'calls reused from the ledger':<38}{rough['ledger_reused']}",
        f"{'engine executions / ledger records':<38}{rough['engine_executions']} / {rough['ledger_records']}",
        f"{'calls answered from the shared cache':<38}{rough['answers_shared']}",
        f"{'calls paid twice':<38}{rough['calls_paid_twice']} (experts killed: {by_kind.get('kill_expert', 0)})",
        f"{'votes missing':<38}{rough['votes_missing']}",
        f"{'rows lost (must be 0)':<38}{rough['rows_lost']}",
        f"{'rows duplicated (must be 0)':<38}{rough['rows_duplicated']}",
        f"{'messages stuck (must be none)':<38}"
        f"{', '.join(f'{k}: {v}' for k, v in rough['stuck_queues'].items()) or 'none'}",
    ]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"chaos-{args.size}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {path}", file=sys.stderr)
    ok = rough["finished"] and not rough["stuck_queues"] and rough["rows_lost"] == 0 and rough["rows_duplicated"] == 0
    # An expert writes each answer to the answer cache its replicas share in Redis before replying, so
    # its restarted self answers a repeat without the engine. A call can still be paid twice when the
    # expert was killed in the moment between its engine answering and that write, or while Redis was
    # down (the answer then lived in the killed process alone) before the caller recorded it: at most
    # the calls in flight at a kill, in practice never more often than experts were killed.
    ok = ok and rough["votes_missing"] == 0 and rough["calls_paid_twice"] <= by_kind.get("kill_expert", 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
