"""The `warrior` command line: local stack, campaigns, status, leaderboard, experts and datasets."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from warrior.cli import campaign as ops
from warrior.cli.stack import LocalStack, StackError
from warrior.cli.tables import table
from warrior.common.benchmarks import BenchmarkDataError
from warrior.common.campaign_config import ConfigError, load_campaign_config
from warrior.common.celery_app import make_celery
from warrior.common.logs import configure_logging
from warrior.common.progress import ProgressCallback
from warrior.common.registry import summarize
from warrior.common.runtime import Runtime, get_runtime
from warrior.common.security import SecurityConfigError, redact_url
from warrior.common.settings import Settings, SettingsError
from warrior.common.store import StoreConfigError
from warrior.dataset_builder.versions import DatasetNotFound, list_versions, read_manifest
from warrior.web.main import add_arguments as web_arguments

EXIT_BAD_INPUT = 2
_STORE_URL_ENV = "WARRIOR_STORE_URL"


def _emit(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def _rt() -> Runtime:
    return get_runtime()


# -- commands ---------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    config = load_campaign_config(args.config)
    info = LocalStack().up(
        config, timeout_s=args.timeout, echo=lambda m: print(m, file=sys.stderr), worker_replicas=args.worker_replicas
    )
    print(
        f"stack up: redis {redact_url(info['redis_url'])}, store {redact_url(info['store_url'])}, "
        f"logs in {LocalStack().logs}/",
        file=sys.stderr,
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    LocalStack().down(echo=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_campaign_start(args: argparse.Namespace) -> int:
    config = load_campaign_config(args.config)  # validated before anything is enqueued
    rt = _rt()
    app = make_celery("cli")
    campaign = ops.start(rt, app, config, experts_timeout_s=args.experts_timeout)
    print(f"campaign {campaign} started", file=sys.stderr)
    if args.wait:
        snap = ops.wait(rt, campaign, timeout_s=args.timeout, until="finished")
        _emit(snap, args.json, _finished_line(snap))
    else:
        print(campaign)
    return 0


def _finished_line(snap: dict[str, Any]) -> str:
    line = (f"campaign {snap['campaign']} finished: {snap['instructions']['kept']} kept, {snap['battles']} battles, "
            f"{snap['votes']} votes")  # fmt: skip
    dataset = snap["controller"].get("dataset")
    if dataset:
        line += f"; dataset {dataset['name']} version {dataset['version']} ({dataset['rows']} rows)"
    return line


def cmd_campaign_resume(args: argparse.Namespace) -> int:
    rt = _rt()
    app = make_celery("cli")
    sent = ops.resume(rt, app, args.campaign, experts_timeout_s=args.experts_timeout)
    print(f"campaign {args.campaign} resumed: re-sent " + ", ".join(f"{k} {v}" for k, v in sent.items()),
          file=sys.stderr)  # fmt: skip
    if args.wait:
        snap = ops.wait(rt, args.campaign, timeout_s=args.timeout, until="finished")
        _emit(snap, args.json, _finished_line(snap))
    else:
        _emit({"campaign": args.campaign, "sent": sent}, args.json, args.campaign)
    return 0


def cmd_campaign_watch(args: argparse.Namespace) -> int:
    rt = _rt()
    campaign = ops.resolve_campaign(rt, args.campaign)
    snap = ops.wait(rt, campaign, timeout_s=args.timeout, until="finished")
    _emit(snap, args.json, _finished_line(snap))
    return 0


def cmd_campaign_cancel(args: argparse.Namespace) -> int:
    ops.cancel(_rt(), args.campaign)
    print(f"campaign {args.campaign} cancelled: queued work ends without running; "
          f"`warrior campaign resume {args.campaign}` continues it")  # fmt: skip
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rt = _rt()
    campaign = ops.resolve_campaign(rt, args.campaign)
    snap = ops.status(rt, campaign)
    ins = snap["instructions"]
    lines = [
        f"campaign     {campaign} ({'done' if snap['done'] else snap['status']})",
        f"mining       {snap['mine']['done']}/{snap['mine']['expected']} units",
        f"instructions mined {ins['mined']}, screened {ins['screened']}, kept {ins['kept']}",
        f"dropped      {', '.join(f'{k}: {v}' for k, v in ins['dropped'].items()) or 'none'}",
        f"battles      {snap['battles']} pairs over {snap['battled']} instructions; votes {snap['votes']}, "
        f"ties {snap['ties']}",
        f"execution    {_execution_line(snap['execution'])}",
        f"finished     {snap['finished']}/{ins['kept']} kept instructions",
        f"failures     {', '.join(f'{k}: {v}' for k, v in snap['failures'].items()) or 'none'}",
        f"model calls  {snap['counters'].get('engine_calls', 0)} paid, "
        f"{snap['counters'].get('ledger_reused', 0)} reused from the ledger",
    ]
    lines.append(f"controller   {_controller_line(snap)}")
    for item, reason in snap["failure_examples"].items():
        lines.append(f"  {item}: {reason}")
    for item, reason in snap["dead_lettered"].items():
        lines.append(f"  dead-lettered {item}: {reason}")
    _emit(snap, args.json, "\n".join(lines))
    return 0


def _controller_line(snap: dict[str, Any]) -> str:
    """What the campaign controller did for the campaign: re-sends, and the dataset it built (or why not)."""
    ctl = snap["controller"]
    parts = [f"re-sent stalled stages {len(ctl.get('resends', []))} times"]
    if ctl.get("waiting_for"):
        parts.append(f"waiting for experts {', '.join(ctl['waiting_for']['experts'])}")
    if ctl.get("dataset"):
        d = ctl["dataset"]
        parts.append(f"built dataset {d['name']} version {d['version']} ({d['rows']} rows)")
    elif snap["status"] == "building":
        parts.append(f"building the dataset ({ctl.get('build', {}).get('step', 'starting')})")
    elif ctl.get("build", {}).get("error"):
        parts.append(f"dataset build failed: {ctl['build']['error']}")
    return "; ".join(parts)


def _execution_line(e: dict[str, Any]) -> str:
    rates = ", ".join(
        f"{name} {row['passed']}/{row['trusted_tests']}" for name, row in e["pass_rate"].items() if row["trusted_tests"]
    )
    votes = ", ".join(f"{k} {v}" for k, v in e["votes_by_source"].items()) or "none"
    return (
        f"{e['battles_executed']} battles run ({e['battles_llm_only']} by LLM judges alone), "
        f"{e['answers_run']} answers run; tests trusted {e['tests_trusted']}/{e['tests_written']}; "
        f"passed {rates or 'none'}; votes by {votes}"
    )


def _category_cell(row: dict[str, Any], category: str) -> str:
    """Win rate in one category, with the decisive votes it rests on."""
    found = row.get("categories", {}).get(category)
    return "-" if found is None else f"{found['win_rate']:.2f} ({found['wins'] + found['losses']})"


def cmd_leaderboard(args: argparse.Namespace) -> int:
    rt = _rt()
    campaign = ops.resolve_campaign(rt, args.campaign)
    final = ops.finalize(make_celery("cli"), campaign)
    categories = sorted({c for row in final["leaderboard"] for c in row.get("categories", {})})
    rows = [
        {k: v for k, v in row.items() if k != "categories"} | {c: _category_cell(row, c) for c in categories}
        for row in final["leaderboard"]
    ]
    columns = ["expert", "rating", "ci_low", "ci_high", "battles", "wins", "losses", "win_rate", *categories]
    note = "\nper-category columns: win rate (decisive votes)" if categories else ""
    _emit(
        {"campaign": campaign, **final},
        args.json,
        f"campaign {campaign}: {final['battles']} battles, {final['votes']} votes\n" + table(rows, columns) + note,
    )
    return 0


def cmd_judges(args: argparse.Namespace) -> int:
    rt = _rt()
    campaign = ops.resolve_campaign(rt, args.campaign)
    final = ops.finalize(make_celery("cli"), campaign)
    rows = [{"judge": name, **row} for name, row in final["judges"].items()]
    columns = ["judge", "judgments", "flip_rate", "first_position_rate", "longer_answer_rate", "kappa", "trusted",
               "reason"]  # fmt: skip
    text = f"campaign {campaign}: judge-quality panel\n" + (table(rows, columns) if rows else "no judgments yet")
    _emit({"campaign": campaign, "judges": final["judges"]}, args.json, text)
    return 0


def cmd_experts(args: argparse.Namespace) -> int:
    rows = summarize(_rt().registry.replicas())
    columns = ["expert", "state", "engine", "model", "replicas", "capacity", "in_flight", "load", "endpoints",
               "last_heartbeat_s"]  # fmt: skip
    _emit(rows, args.json, table(rows, columns) if rows else "no experts registered")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    endpoints = LocalStack().metrics_endpoints()
    if args.file_sd:
        # Prometheus' file-based service discovery: one target per process, its name as a label.
        targets = [{"targets": [url.split("/")[2]], "labels": {"process": name}} for name, url in endpoints.items()]
        tmp = args.file_sd.with_name(args.file_sd.name + ".tmp")
        tmp.write_text(json.dumps(targets, indent=2) + "\n", encoding="utf-8")
        tmp.replace(args.file_sd)
        print(f"{len(targets)} targets written to {args.file_sd}", file=sys.stderr)
        return 0
    rows = [{"process": name, "metrics": url} for name, url in endpoints.items()]
    _emit(rows, args.json, table(rows, ["process", "metrics"]) if rows else "the local stack is not running")
    return 0


def cmd_dataset_build(args: argparse.Namespace) -> int:
    rt = _rt()
    campaign = ops.resolve_campaign(rt, args.campaign)
    name = args.name or ops.CampaignState(rt.redis, campaign).config()["dataset"]["name"]
    manifest = ops.build_dataset(make_celery("cli"), campaign, name)
    manifest["uri"] = rt.store.url.rstrip("/") + "/" + manifest["uri"]
    _emit(
        manifest,
        args.json,
        f"dataset {name} version {manifest['version']}: {manifest['rows']} rows at {manifest['uri']}",
    )
    return 0


def cmd_dataset_show(args: argparse.Namespace) -> int:
    store = _rt().store
    manifest = read_manifest(store, args.name, args.version)
    versions = [v["version"] for v in list_versions(store, args.name)]
    text = "\n".join(
        [
            f"dataset {manifest['name']} version {manifest['version']} "
            f"({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(manifest['created_at']))} UTC)",
            f"rows         {manifest['rows']} in {len(manifest['shards'])} shard(s)",
            f"campaigns    {', '.join(manifest['campaigns'])}",
            f"ratings      {manifest['ratings']}",
            f"versions     {', '.join(versions)}",
        ]
    )
    _emit(manifest | {"versions": versions}, args.json, text)
    return 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    from warrior.dataset_builder.export import export_version

    dest = export_version(_rt().store, args.name, args.version, args.dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    text = (
        f"dataset {args.name} exported to {dest}: {len(files)} files\n"
        f"load it with: datasets.load_dataset('parquet', data_files='{dest}/parquet/*.parquet')"
    )
    _emit({"name": args.name, "dest": str(dest), "files": files}, args.json, text)
    return 0


def cmd_dataset_diff(args: argparse.Namespace) -> int:
    from warrior.dataset_builder.diff import diff_versions, render_diff

    store = _rt().store
    a, b = args.a, args.b
    if a is None or b is None:
        versions = [v["version"] for v in list_versions(store, args.name)]
        if len(versions) < 2:
            raise DatasetNotFound(f"dataset {args.name!r} has {len(versions)} version(s); name two to compare")
        a, b = versions[-2], versions[-1]
    diff = diff_versions(store, args.name, a, b)
    _emit(diff, args.json, render_diff(diff))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from warrior.common.model_info import expert_model
    from warrior.trainer.evaluation import evaluate_expert

    rt = _rt()
    if not rt.registry.resolve(args.expert):
        raise ops.CampaignError(f"expert {args.expert!r} is not registered (see `warrior experts`)")
    revision = expert_model(rt.client, args.expert).revision
    with ProgressCallback(f"eval {args.expert} on {args.benchmark}", unit="problems") as progress:
        stored = evaluate_expert(
            rt.client, rt.store, args.expert, revision, args.benchmark,
            cache_dir=rt.settings.cache_dir, limit=args.limit, max_tokens=args.max_tokens, workers=args.workers,
            timeout_s=args.timeout, progress=progress,
        )  # fmt: skip
    failures = [o for o in stored["outcomes"] if not o["passed"]]
    text = (
        f"{args.expert} ({revision}) on {args.benchmark}: pass@1 {stored['pass_at_1']:.3f} "
        f"({stored['passed']}/{stored['total']}){' [stored earlier]' if stored['reused'] else ''}\n"
        f"per-problem outcomes: {stored['key']}; failures by status: "
        + ", ".join(f"{s} {n}" for s, n in sorted(Counter(o["status"] for o in failures).items()))
    )
    _emit(stored, args.json, text)
    return 0


def _write_report(path: Path, report: dict[str, Any], text: str) -> None:
    """A report as JSON at `path` and as its text in a Markdown code block beside it (`.md`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".md").write_text("```\n" + text + "\n```\n")


def cmd_flywheel(args: argparse.Namespace) -> int:
    from warrior.cli.flywheel import FlywheelRun, render_report
    from warrior.cli.flywheel_config import load_flywheel

    flywheel = load_flywheel(args.config, local_model=args.stack == "local")
    report = FlywheelRun(
        flywheel, echo=lambda m: print(m, file=sys.stderr, flush=True), timeout_s=args.timeout, stack=args.stack
    ).run()
    text = render_report(report)
    if args.report:
        _write_report(Path(args.report), report, text)
    _emit(report, args.json, text)
    return 0


def cmd_flywheel_offline(args: argparse.Namespace) -> int:
    from warrior.cli.offline import OfflineRun, load_offline_config, render_offline_report

    config = load_offline_config(args.config)
    if args.dry_run:
        config = config.dry_run()
    report = OfflineRun(config, echo=lambda m: print(m, file=sys.stderr, flush=True)).run()
    text = render_offline_report(report)
    if args.report:
        _write_report(Path(args.report), report, text)
    _emit(report, args.json, text)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from warrior.cli.calibrate import load_set, render, run_calibration

    config = load_campaign_config(args.config)
    rt = _rt()
    items, info = load_set(args.set, size=args.size, seed=args.seed, cache_dir=rt.settings.cache_dir)
    ops.wait_for_experts(rt.registry, config.expert_names, args.experts_timeout)
    report = run_calibration(rt, config, items, set_info=info, max_tokens=args.max_tokens, parallel=args.parallel)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"report written to {args.out}", file=sys.stderr)
    _emit(report, args.json, render(report))
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from warrior.web.main import BindRefused, serve

    try:
        serve(args.host, args.port, insecure=args.insecure_no_token)
    except BindRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from warrior.cli.demo import run_demo

    summary = run_demo(args.config, summary_path=args.summary, timeout_s=args.timeout)
    print(json.dumps(summary, sort_keys=False))
    return 0


# -- parser -----------------------------------------------------------------------------------
def _add_wait_options(p: argparse.ArgumentParser) -> None:
    """What `campaign start` and `campaign resume` share: returning at once, or watching to the end."""
    p.add_argument(
        "--wait", action="store_true",
        help="watch progress until the campaign controller marks the campaign finished (its dataset built, unless "
        "the config's controller.build_dataset is false); the controller, not this command, re-sends stalled "
        "stages and builds the dataset, so interrupting --wait stops nothing",
    )  # fmt: skip
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait with --wait")
    p.add_argument("--experts-timeout", type=float, default=60, help="seconds to wait for the roster to register")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warrior",
        description="An arena where code models battle to make training data. Start a local stack with "
        "`warrior up --config FILE`, run a campaign with `warrior campaign start --config FILE --wait`, "
        "then `warrior leaderboard` and `warrior dataset build`.",
        epilog="Environment: REDIS_URL (default: embedded Redis under WARRIOR_HOME), WARRIOR_STORE_URL "
        "(file:///path or s3://bucket/prefix?endpoint=URL; default: WARRIOR_HOME/store), WARRIOR_HOME "
        "(default: ./.warrior; logs in WARRIOR_HOME/logs).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="start the local stack for a config's experts")
    p.add_argument("--config", required=True, help="campaign YAML whose experts to serve")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for experts to register")
    p.add_argument("--worker-replicas", type=int, default=1, help="Celery workers per service (default 1)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop exactly what `up` started")
    p.set_defaults(func=cmd_down)

    camp = sub.add_parser("campaign", help="campaigns").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = camp.add_parser("start", help="validate a campaign config and enqueue its mining")
    p.add_argument("--config", required=True, help="campaign YAML file")
    _add_wait_options(p)
    p.set_defaults(func=cmd_campaign_start)

    p = camp.add_parser("resume", help="continue a stopped, crashed or cancelled campaign, reusing recorded calls")
    p.add_argument("campaign", help="campaign id")
    _add_wait_options(p)
    p.set_defaults(func=cmd_campaign_resume)
    p = camp.add_parser(
        "watch", help="follow a campaign until the controller marks it finished (what `start --wait` does)"
    )
    p.add_argument("campaign", nargs="?", help="campaign id (default: the newest)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_campaign_watch)
    p = camp.add_parser("cancel", help="stop a campaign cleanly (queued tasks end without work)")
    p.add_argument("campaign", help="campaign id")
    p.set_defaults(func=cmd_campaign_cancel)

    p = sub.add_parser("status", help="progress, drops by reason and failures of a campaign")
    p.add_argument("campaign", nargs="?", help="campaign id (default: the newest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("leaderboard", help="ratings with 95%% intervals (provisional while running)")
    p.add_argument("campaign", nargs="?", help="campaign id (default: the newest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("judges", help="the judge-quality panel: flip rate, position and length bias, kappa, trust")
    p.add_argument("campaign", nargs="?", help="campaign id (default: the newest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_judges)

    p = sub.add_parser("experts", help="live experts in the registry")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_experts)
    p = sub.add_parser("metrics", help="the Prometheus endpoint of each process of the local stack")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--file-sd", type=Path, metavar="FILE",
        help="write them as a Prometheus file_sd_configs target file (rewrite it after each `warrior up`)",
    )  # fmt: skip
    p.set_defaults(func=cmd_metrics)

    ds = sub.add_parser("dataset", help="datasets").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ds.add_parser("build", help="final ratings and winners -> an immutable dataset version")
    p.add_argument("--campaign", help="campaign id (default: the newest)")
    p.add_argument("--name", help="dataset name (default: the campaign config's dataset.name)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_dataset_build)
    p = ds.add_parser("show", help="a dataset version's manifest")
    p.add_argument("name", help="dataset name")
    p.add_argument("--version", help="version id (default: the newest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_dataset_show)
    p = ds.add_parser("export", help="write a version's Parquet + JSONL files and card to a folder for load_dataset")
    p.add_argument("name", help="dataset name")
    p.add_argument("dest", help="destination folder (missing or empty)")
    p.add_argument("--version", help="version id (default: the latest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_dataset_export)
    p = ds.add_parser("diff", help="what changed between two versions: rows, winners, categories, settings")
    p.add_argument("name", help="dataset name")
    p.add_argument("a", nargs="?", help="older version (default: the one before the newest)")
    p.add_argument("b", nargs="?", help="newer version (default: the newest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_dataset_diff)

    p = sub.add_parser("eval", help="pass@1 of a registered expert on HumanEval or MBPP (greedy, sandboxed)")
    p.add_argument("--expert", required=True, help="a registered expert (see `warrior experts`)")
    p.add_argument("--benchmark", choices=["humaneval", "mbpp"], default="humaneval")
    p.add_argument("--limit", type=int, help="the first N problems only (stored under its own name)")
    p.add_argument("--max-tokens", type=int, default=512, help="generation budget per problem")
    p.add_argument("--workers", type=int, default=2, help="problems in flight at once")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds each program may run")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "flywheel",
        help="campaign -> dataset -> train -> evaluate -> register -> follow-up battles, resumable",
        description="Run the whole loop for a flywheel file; a rerun skips every step already recorded in the "
        "object store (flywheel/<id>/) and resumes training from its last complete checkpoint. Every step is a "
        "task on the stack's queues (training, export and evaluation on the trainer's); a local stack already "
        "running is used and left running.",
    )
    p.add_argument("--config", required=True, help="flywheel YAML (see configs/flywheel-demo.yaml)")
    p.add_argument(
        "--stack",
        choices=["local", "cluster"],
        default="local",
        help="local: the local stack (started, and stopped at the end, only when none is running); cluster: the "
        "stack REDIS_URL points at, where trained models join through a chart values file (extraExperts)",
    )
    p.add_argument("--report", default="flywheel-report.json", help="where to write the report (JSON, and .md)")
    p.add_argument("--timeout", type=float, default=7200, help="seconds each campaign or task may take")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_flywheel)

    p = sub.add_parser(
        "flywheel-offline",
        help="train a target on dataset versions copied in and evaluate it with transformers: no stack, no "
        "network (a GPU machine without vLLM)",
        description="The flywheel's training and evaluation from files copied in: an object-store folder with "
        "the campaign's dataset versions (the arena's and its ablations') and a Hugging Face model folder. Trains "
        "the target on each (on the GPU when there is one), evaluates base and trained greedily with transformers "
        "in batches, and reports pass@1 and the paired differences. Resumable: a rerun reuses every recorded step.",
    )
    p.add_argument("--config", required=True, help="offline flywheel YAML (see configs/flywheel-gpu.yaml)")
    p.add_argument("--dry-run", action="store_true", help="the same steps at the smallest size (one training "
                   "step, two problems per benchmark), under <flywheel>-dry-run: checks a config on a CPU")  # fmt: skip
    p.add_argument("--report", default="flywheel-offline-report.json", help="where to write the report (JSON, and .md)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_flywheel_offline)

    p = sub.add_parser(
        "calibrate",
        help="how right the verdicts are: each judge, the LLM panel, execution and both, against ground-truth tests",
        description="Run a labelled set through the live experts of a config as battles do (answers, the experts' "
        "tests, execution, every uninvolved judge on every pair in both orders), then run every answer against the "
        "set's ground-truth tests, which no expert sees. Reports, per verdict source, pairs decided, accuracy on the "
        "separable pairs it decided and coverage, and per expert the ground-truth pass rate. The experts must be "
        "registered (`warrior up --config FILE`). Every model call is recorded, so a rerun pays for nothing; no "
        "campaign is created and nothing enters a dataset. See docs/calibration.md.",
    )
    p.add_argument("--config", required=True, help="campaign YAML: its experts and battle settings")
    p.add_argument(
        "--set", metavar="FILE",
        help='labelled set, JSONL: {"id": str (optional), "request": str, "tests": str (asserts, optional setup '
        'before them), "language": "Python"} (default: MBPP prompt, validation and train splits, task ids 1-10 '
        "and 511-974; its test split and HumanEval never)",
    )  # fmt: skip
    p.add_argument("--size", type=int, metavar="N", help="a seeded random subset of N items (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset (default 0)")
    p.add_argument(
        "--max-tokens", type=int, metavar="N",
        help="answer budget for calibration only, in place of the config's battle.answer_sampling.max_tokens",
    )  # fmt: skip
    p.add_argument("--parallel", type=int, default=4, help="items in flight at once (default 4)")
    p.add_argument("--out", metavar="FILE", help="also write the JSON report here")
    p.add_argument("--experts-timeout", type=float, default=60, help="seconds to wait for the experts to register")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the tables")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "web",
        help="the read-only web viewer: campaigns, leaderboards, battles, datasets, flywheel reports",
        description="Serve the viewer against this stack's Redis and store (see docs/viewer.md). With "
        "WARRIOR_GRPC_TOKEN or WARRIOR_GRPC_TOKEN_FILE set, every page needs that token; without one, only a "
        "loopback address is served unless --insecure-no-token.",
    )
    web_arguments(p)
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("demo", help="up, run a campaign, build the dataset, print the leaderboard, down")
    p.add_argument("--config", default="configs/demo.yaml", help="campaign YAML (default: configs/demo.yaml)")
    p.add_argument("--summary", default="demo-summary.json", help="where to write the JSON summary")
    p.add_argument("--timeout", type=float, default=1800, help="seconds the campaign may take")
    p.set_defaults(func=cmd_demo)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # SIGTERM (a supervisor, `kill`) stops a command as Ctrl-C does: what it started is torn down on the way
    # out (a flywheel's local stack, say). SIGINT is restored too, since a shell's background job starts
    # with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # What the libraries warn about, readable on a terminal (WARRIOR_LOG_FORMAT=json for JSON lines).
        configure_logging("cli", default_format="text", default_level="WARNING")
        code = args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except (SettingsError, SecurityConfigError) as exc:
        # An environment variable or the file it names; the message names it.
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except StoreConfigError as exc:
        print(f"error: object store ({_STORE_URL_ENV}): {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except (ops.CampaignError, DatasetNotFound, FileExistsError, BenchmarkDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except redis.exceptions.ConnectionError as exc:  # AuthenticationError too
        where = redact_url(Settings.from_env().redis_url)
        print(
            f"error: cannot reach Redis at {where}: {exc}\n"
            "start the local stack with `warrior up` (or `make demo`), or point REDIS_URL at a running Redis",
            file=sys.stderr,
        )
        code = 1
    except RuntimeError as exc:
        # Flywheel steps, exports and evaluations name the step and what to do; no traceback needed.
        if type(exc).__name__ not in {"FlywheelError", "ExportError", "CheckpointError"}:
            raise
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
