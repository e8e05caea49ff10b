"""`warrior flywheel`: campaign -> dataset -> train -> export -> evaluate -> register -> follow-up battles.

Each step records its outcome under `flywheel/<id>/<step>.json` in the object store, written once
when the step is complete; a rerun of the same file skips every recorded step and continues the
first unfinished one (the campaign from its Redis state, training from its last complete
checkpoint, evaluation per model and benchmark). The trained model and its base are both served
from GGUF files made by the same converter at the same precision, so the comparison of their
pass@1 and of their ratings is like for like.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from warrior.cli import campaign as ops
from warrior.cli.flywheel_config import Flywheel
from warrior.cli.stack import LocalStack
from warrior.cli.tables import table
from warrior.common.campaign_config import CampaignConfig, ExpertConfig
from warrior.common.celery_app import make_celery
from warrior.common.ids import file_sha256
from warrior.common.model_info import expert_model
from warrior.common.runtime import get_runtime
from warrior.common.settings import Settings
from warrior.common.store import ObjectNotFound, ObjectStore, open_store
from warrior.trainer import evaluation
from warrior.trainer.checkpoints import read_marker
from warrior.trainer.export import export_gguf, export_run

Echo = Callable[[str], None]


class FlywheelError(RuntimeError):
    """A step that cannot go on; the message names the step and what to look at."""


class Records:
    """Write-once step records of one flywheel in the object store."""

    def __init__(self, store: ObjectStore, flywheel: str) -> None:
        self._store = store
        self.prefix = f"flywheel/{flywheel}/"

    def get(self, step: str) -> dict[str, Any] | None:
        try:
            return dict(self._store.get_json(self.prefix + f"{step}.json"))
        except ObjectNotFound:
            return None

    def put(self, step: str, data: dict[str, Any]) -> dict[str, Any]:
        self._store.put_json(self.prefix + f"{step}.json", data | {"completed_at": time.time()}, if_absent=True)
        return self.get(step) or data


class FlywheelRun:
    """One flywheel file run to its report; see the module docstring."""

    def __init__(self, flywheel: Flywheel, *, echo: Echo, timeout_s: float = 7200.0) -> None:
        self.fw = flywheel
        self.cfg = flywheel.config
        self.echo = echo
        self.timeout_s = timeout_s
        self.settings = Settings.from_env()
        self.store = open_store(self.settings.store_url)
        self.records = Records(self.store, flywheel.id)
        self.work = self.settings.home / "flywheel" / flywheel.id
        self.base_name = f"{self.cfg.target.base_expert}-{self.cfg.gguf_type}"

    # -- steps ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.work.mkdir(parents=True, exist_ok=True)
        campaign = self._step("campaign", self._campaign)
        training = self._step("train", lambda: self._train(campaign))
        exported = self._step("export", lambda: self._export(training))
        followup_config = self._followup_config(exported)
        stack = LocalStack()
        if stack.running():
            self.echo("a local stack is already up; stopping it first")
            stack.down(echo=self.echo)
        needed = self.records.get("evaluate") is None or self.records.get("followup") is None
        if needed:
            self.echo(f"registering {self.cfg.target.name} and {self.base_name} as experts")
            stack.up(followup_config, echo=self.echo)
        try:
            evaluated = self._step("evaluate", lambda: self._evaluate(exported))
            followup = self._step("followup", lambda: self._followup(followup_config))
        finally:
            if needed:
                stack.down(echo=self.echo)
        report = self._report(campaign, training, evaluated, followup)
        self.store.put_json(self.records.prefix + "report.json", report, if_absent=False)
        return report

    def _step(self, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        done = self.records.get(name)
        if done is not None:
            self.echo(f"[{name}] already done ({self.records.prefix}{name}.json)")
            return done
        self.echo(f"[{name}] starting")
        started = time.monotonic()
        record = self.records.put(name, work() | {"seconds": round(time.monotonic() - started, 1)})
        self.echo(f"[{name}] done in {record['seconds']:.0f}s")
        return record

    def _campaign(self) -> dict[str, Any]:
        config = self.fw.campaign
        stack = LocalStack()
        if stack.running():
            self.echo("a local stack is already up; stopping it first")
            stack.down(echo=self.echo)
        stack.up(config, echo=self.echo)
        try:
            rt, app = get_runtime(), make_celery("cli")
            campaign = config.campaign_id()
            if not ops.CampaignState(rt.redis, campaign).exists():
                ops.start(rt, app, config)
            else:
                self.echo(f"campaign {campaign} exists: following it to the end")
            snap = ops.wait(rt, campaign, timeout_s=self.timeout_s)
            manifest = ops.build_dataset(app, campaign, config.dataset.name)
            final = ops.finalize(app, campaign)
            app.close()
        finally:
            stack.down(echo=self.echo)
        if manifest["rows"] == 0:
            raise FlywheelError(
                f"[campaign] campaign {campaign} produced no dataset rows (kept {snap['instructions']['kept']}, "
                f"dropped {snap['instructions']['dropped']}): nothing to train on"
            )
        return {
            "campaign": campaign,
            "instructions": snap["instructions"],
            "battles": snap["battles"],
            "votes": snap["votes"],
            "dataset": {"name": manifest["name"], "version": manifest["version"], "rows": manifest["rows"]},
            "leaderboard": final["leaderboard"],
        }

    def _train(self, campaign: dict[str, Any]) -> dict[str, Any]:
        dataset = campaign["dataset"]
        train_config = self.cfg.train_config(dataset["name"], dataset["version"])
        path = self.work / "train.yaml"
        path.write_text(yaml.safe_dump(train_config.model_dump(mode="json"), sort_keys=False))
        self.echo(f"[train] {train_config.method} fine-tuning of {train_config.base_model} on "
                  f"{dataset['name']}@{dataset['version']} ({dataset['rows']} rows)")  # fmt: skip
        # Its own process: torch's memory is given back, and a crash leaves checkpoints to resume from.
        summary = self.work / "train-summary.json"
        summary.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "warrior.trainer.main", "--config", str(path),
                "--work-dir", str(self.work / "train"), "--summary", str(summary)]  # fmt: skip
        done = subprocess.run(argv, check=False)
        if done.returncode != 0 or not summary.exists():
            raise FlywheelError(f"[train] training exited with code {done.returncode}; rerun to resume from its "
                                "last complete checkpoint")  # fmt: skip
        result = json.loads(summary.read_text())
        if read_marker(self.store, result["final_key"]) is None:
            raise FlywheelError(f"[train] training finished but {result['final_key']} has no completion marker")
        return {"run": result["run"], "final_key": result["final_key"], "config": train_config.model_dump(mode="json"),
                "result": result}  # fmt: skip

    def _export(self, training: dict[str, Any]) -> dict[str, Any]:
        gguf_type = self.cfg.gguf_type
        trained = export_run(self.store, training["final_key"], ["gguf"], self.work / "trained", gguf_type=gguf_type)
        trained_path = trained.local["gguf"]
        self.echo(f"[export] {self.cfg.target.base_model} -> {gguf_type} GGUF (the base, for a like-for-like match)")
        base_path = export_gguf(Path(self.cfg.target.base_model), self.work / "base" / f"base-{gguf_type}.gguf",
                                outtype=gguf_type)  # fmt: skip
        return {
            "trained": {"gguf": str(trained_path), "sha256": file_sha256(trained_path), "keys": trained.keys},
            "base": {"gguf": str(base_path), "sha256": file_sha256(base_path)},
        }

    def _followup_config(self, exported: dict[str, Any]) -> CampaignConfig:
        """The roster again, with the base expert's model replaced by its GGUF twin and the trained model added."""
        source = self.fw.campaign
        base = next(e for e in source.experts if e.name == self.cfg.target.base_expert)
        others = [e for e in source.experts if e.name != base.name]
        served = {"engine": "llamacpp", "chat_template": "auto", "parallel": base.parallel,
                  "context_length": base.context_length, "threads": base.threads}  # fmt: skip
        experts = [
            *others,
            ExpertConfig(name=self.base_name, model=exported["base"]["gguf"], **served),
            ExpertConfig(name=self.cfg.target.name, model=exported["trained"]["gguf"], **served),
        ]
        data = source.model_dump(mode="json") | {
            "campaign": f"{source.campaign_id()}-followup"[:63],
            "experts": [e.model_dump(mode="json") for e in experts],
        }
        data["mining"] = data["mining"] | {"per_expert": self.cfg.followup.per_expert}
        data["matchmaking"] = data["matchmaking"] | {"open_roster": False}
        data["dataset"] = data["dataset"] | {"name": f"{source.dataset.name}-followup"[:63]}
        return CampaignConfig.model_validate(data)

    def _evaluate(self, exported: dict[str, Any]) -> dict[str, Any]:
        rt = get_runtime()
        ev = self.cfg.evaluate
        out: dict[str, Any] = {}
        for benchmark in ev.benchmarks:
            out[benchmark] = {}
            for role, expert in (("base", self.base_name), ("trained", self.cfg.target.name)):
                revision = expert_model(rt.client, expert).revision
                self.echo(f"[evaluate] {benchmark}: {expert} ({role}), greedy")
                stored = evaluation.evaluate_expert(
                    rt.client, self.store, expert, revision, benchmark,
                    cache_dir=self.settings.cache_dir, limit=ev.limit, max_tokens=ev.max_tokens, workers=ev.workers,
                    timeout_s=ev.timeout_s, memory_mb=ev.memory_mb,
                    progress=lambda done, total: self.echo(f"[evaluate]   {done}/{total}") if done % 10 == 0 else None,
                )  # fmt: skip
                out[benchmark][role] = {"expert": expert, "revision": revision, "result": stored["key"]} | {
                    k: stored[k] for k in ("pass_at_1", "passed", "total")
                }
                self.echo(f"[evaluate] {benchmark}: {expert} pass@1 {stored['pass_at_1']:.3f} "
                          f"({stored['passed']}/{stored['total']})")  # fmt: skip
        return {"benchmarks": out}

    def _followup(self, config: CampaignConfig) -> dict[str, Any]:
        rt, app = get_runtime(), make_celery("cli")
        campaign = config.campaign_id()
        if not ops.CampaignState(rt.redis, campaign).exists():
            ops.start(rt, app, config)
        snap = ops.wait(rt, campaign, timeout_s=self.timeout_s)
        final = ops.finalize(app, campaign)
        app.close()
        return {"campaign": campaign, "instructions": snap["instructions"], "battles": snap["battles"],
                "votes": snap["votes"], "leaderboard": final["leaderboard"], "judges": final["judges"]}  # fmt: skip

    # -- report --------------------------------------------------------------------------------
    def _report(
        self, campaign: dict[str, Any], training: dict[str, Any], evaluated: dict[str, Any], followup: dict[str, Any]
    ) -> dict[str, Any]:
        board = {row["expert"]: row for row in followup["leaderboard"]}
        pick = ("rating", "ci_low", "ci_high", "battles", "win_rate")
        result = training.get("result", {})
        return {
            "flywheel": self.fw.id,
            "campaign": {k: campaign[k] for k in ("campaign", "instructions", "battles", "votes")},
            "dataset": campaign["dataset"],
            "training": {
                "base_model": self.cfg.target.base_model,
                "method": training["config"]["method"],
                "run": training["run"],
                "final": training["final_key"],
                "steps": result.get("steps"),
                "losses": result.get("losses"),
            },
            "evaluation": evaluated["benchmarks"],
            "ratings": {
                "campaign": followup["campaign"],
                "battles": followup["battles"],
                "votes": followup["votes"],
                "base": {"expert": self.base_name} | {k: board.get(self.base_name, {}).get(k) for k in pick},
                "trained": {"expert": self.cfg.target.name}
                | {k: board.get(self.cfg.target.name, {}).get(k) for k in pick},
                "leaderboard": followup["leaderboard"],
            },
        }


def render_report(report: dict[str, Any]) -> str:
    """The report as text: pass@1 of base vs trained per benchmark, and the follow-up ratings."""
    rows = []
    for benchmark, roles in report["evaluation"].items():
        for role in ("base", "trained"):
            r = roles[role]
            rows.append({"benchmark": benchmark, "model": f"{r['expert']} ({role})", "pass@1": f"{r['pass_at_1']:.3f}",
                         "passed": f"{r['passed']}/{r['total']}"})  # fmt: skip
    ratings = report["ratings"]
    board = [
        {"expert": r["expert"], "rating": r["rating"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
         "battles": r["battles"], "win_rate": r["win_rate"]}
        for r in ratings["leaderboard"]
    ]  # fmt: skip
    data = report["dataset"]
    losses = report["training"].get("losses") or []
    loss_text = f", loss {losses[0][1]:.3f} -> {losses[-1][1]:.3f}" if losses else ""
    return "\n".join(
        [
            f"flywheel {report['flywheel']}",
            f"campaign {report['campaign']['campaign']}: {report['campaign']['battles']} battles, "
            f"{report['campaign']['votes']} votes -> dataset {data['name']}@{data['version']} ({data['rows']} rows)",
            f"training {report['training']['method']} on {report['training']['base_model']}: "
            f"{report['training'].get('steps')} steps{loss_text}",
            "",
            "pass@1 (greedy, sandboxed)",
            table(rows, ["benchmark", "model", "pass@1", "passed"]),
            "",
            f"follow-up campaign {ratings['campaign']}: {ratings['battles']} battles, {ratings['votes']} votes",
            table(board, ["expert", "rating", "ci_low", "ci_high", "battles", "win_rate"]),
        ]
    )
