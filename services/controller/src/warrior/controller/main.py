"""`warrior-controller`: the campaign controller's process.

Every replica loops: take or renew the leader lock, and, while leading, reconcile every running
campaign (see warrior.controller.reconcile). Run two replicas for a quick takeover; only the leader
acts. SIGTERM releases the lock, so the standby takes over at once.

    warrior-controller                 # run (REDIS_URL, WARRIOR_STORE_URL from the environment)
    warrior-controller --health        # exit 0 when this pod's loop ran recently (liveness probe)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from redis import exceptions as redis_errors

from warrior.common import metrics
from warrior.common.celery_app import make_celery
from warrior.common.logs import configure_logging
from warrior.common.runtime import get_runtime
from warrior.controller.leader import Leadership
from warrior.controller.reconcile import CampaignController

log = logging.getLogger("warrior.controller")


def alive_file() -> Path:
    """Touched on every pass of the loop; `--health` reads its age."""
    return Path(
        os.environ.get("WARRIOR_CONTROLLER_ALIVE_PATH", Path(tempfile.gettempdir()) / "warrior-controller.alive")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warrior-controller",
        description="Drive every running campaign to its end: re-send stages that stopped moving, mark campaigns "
        "finished, finalize the ratings and build the dataset. Leader-elected through Redis: run one or two replicas.",
    )
    interval = float(os.environ.get("WARRIOR_CONTROLLER_INTERVAL_S", "2"))
    parser.add_argument(
        "--interval", type=float, default=interval,
        help="seconds between passes (default: %(default)s; env WARRIOR_CONTROLLER_INTERVAL_S)",
    )  # fmt: skip
    parser.add_argument(
        "--lock-ttl", type=float, default=15.0,
        help="seconds the leader lock outlives a leader that stopped renewing it (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--identity", default=f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's name in the leader lock (default: host-pid)",
    )  # fmt: skip
    parser.add_argument("--once", action="store_true", help="one pass (if this replica can lead), then exit")
    parser.add_argument(
        "--health", action="store_true",
        help="exit 0 when this machine's controller loop ran within the last --max-age seconds",
    )  # fmt: skip
    parser.add_argument("--max-age", type=float, default=60.0, help="for --health (default: %(default)s)")
    parser.add_argument(
        "--metrics-port", type=int, default=metrics.port_from_env(),
        help=f"serve Prometheus metrics on this port at /metrics (default ${metrics.PORT_ENV}; 0: off): the "
        "leader reports every campaign's progress, drops, stage busy seconds and the queue depths",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-interval", type=float, default=5.0,
        help="seconds between two readings of the campaigns for the metrics (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: $WARRIOR_LOG_LEVEL, else INFO)")
    return parser


def health(max_age_s: float) -> int:
    path = alive_file()
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: {path} does not exist (the controller loop has not run)", file=sys.stderr)
        return 1
    if age > max_age_s:
        print(f"unhealthy: the controller loop last ran {age:.0f}s ago (limit {max_age_s:.0f}s)", file=sys.stderr)
        return 1
    print(f"healthy: the controller loop ran {age:.1f}s ago")
    return 0


def run(args: argparse.Namespace) -> int:
    rt = get_runtime()
    app = make_celery("controller")
    leadership = Leadership(rt.redis, args.identity, ttl_s=args.lock_ttl)
    controller = CampaignController(rt, app, background=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    leading = False
    metrics_port = metrics.serve(args.metrics_port)
    reported_at = float("-inf")
    leader_gauge = metrics.CONTROLLER_LEADER.labels(args.identity)
    leader_gauge.set(0)
    log.info("controller %s started (pass every %.1fs)", args.identity, args.interval)
    try:
        while not stop.is_set():
            try:
                now_leading = leadership.hold()
                if now_leading != leading:
                    log.info("controller %s %s", args.identity, "leads" if now_leading else "stands by")
                    leading = now_leading
                    leader_gauge.set(1 if leading else 0)
                    if not leading:
                        metrics.clear_campaign_gauges()
                if leading:
                    for campaign, action in controller.reconcile_all(still_leader=leadership.hold).items():
                        if action not in ("progressing", "waiting") and not action.endswith("-pending"):
                            log.info("campaign %s: %s", campaign, action)
                            metrics.CONTROLLER_ACTIONS.labels(action).inc()
                    if metrics_port is not None and time.monotonic() - reported_at >= args.metrics_interval:
                        reported_at = time.monotonic()
                        try:
                            controller.report_metrics()
                        except (redis_errors.ConnectionError, redis_errors.TimeoutError):
                            raise
                        except Exception:  # the metrics must never stop the controller
                            log.exception("metrics: could not read the campaigns")
            except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
                log.warning("Redis unreachable (%s); retrying", exc)
            alive_file().touch()
            if args.once:
                break
            stop.wait(args.interval)
    finally:
        controller.close()  # a compaction cut short is redone by the next leader
        leadership.release()
        app.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.health:
        return health(args.max_age)
    configure_logging("controller", level=args.log_level)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
