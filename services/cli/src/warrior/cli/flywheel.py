"""`warrior flywheel`: campaign -> dataset -> train -> export -> register -> evaluate -> follow-up battles, in turns.

The flywheel only drives a stack: every step is a task on the stack's queues. The campaign and its
dataset run on the arena's workers; training, the GGUF export and evaluation are the trainer's tasks
(`warrior.train`, `warrior.export`, `warrior.evaluate`, queue `train`), and evaluation runs its
programs in the executor service. Which stack (`--stack`):

* local (the default): the local stack. One already running is used as it is: what the flywheel
  needs is added to it (the campaign's experts, the trainer's worker, the trained models) and it is
  left running. With none running, the flywheel starts one and stops it at the end.
* cluster: the stack that REDIS_URL and WARRIOR_STORE_URL point at (a Helm release, its trainer
  worker enabled). Nothing is started or stopped. The trained models join the roster by a chart
  value: the flywheel writes a values file whose `extraExperts` fetch their GGUF files from the
  store (`helm upgrade --reuse-values -f` it), and waits until they serve the exported revision.

Turn 1 trains `target.base_model` on the campaign's dataset; turn k > 1 trains turn k-1's model on
the dataset of turn k-1's follow-up campaign (where that model battled the roster), into
`<target.name>-t<k>`, which then battles the roster of turn k-1 with it. Each step records its
outcome under `flywheel/<id>/turn-<k>/<step>.json` in the object store, written once when the step
is complete; a rerun of the same file skips every recorded step and continues the first unfinished
one (the campaign from its Redis state, training from its last complete checkpoint, evaluation from
its call ledger). The trained model and its base are both served from GGUF files made by the same
converter at the same precision, so the comparison of their pass@1 and of their ratings is like for like.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import celery.exceptions
import yaml
from celery import Celery

from warrior.cli import campaign as ops
from warrior.cli.evidence import PAIRED_COLUMNS, paired_difference, paired_rows
from warrior.cli.flywheel_config import Flywheel
from warrior.cli.stack import ARENA_SERVICES, LocalStack
from warrior.cli.tables import table
from warrior.common import queues
from warrior.common.battles import load_battles
from warrior.common.campaign_config import CampaignConfig, ExpertConfig
from warrior.common.campaign_state import CampaignState
from warrior.common.celery_app import make_celery
from warrior.common.model_info import expert_model
from warrior.common.runtime import Runtime, get_runtime
from warrior.common.security import redact_url
from warrior.common.settings import Settings
from warrior.common.store import ObjectNotFound, ObjectStore, open_store
from warrior.common.verification import answer_verification, shadow_agreement
from warrior.dataset_builder.versions import read_manifest, read_rows
from warrior.instruction_miner.audit import audit_rows
from warrior.instruction_miner.tasks import ledger_scorer, rewording_judge

Echo = Callable[[str], None]
STACKS = ("local", "cluster")
STEPS = ("campaign", "data", "train", "export", "register", "evaluate", "followup")
# An ablation's steps (turn 1 only), recorded as `ablation-<kind>-<step>`.
ABLATION_STEPS = ("dataset", "train", "export", "evaluate")
# The annotation a chart expert of the flywheel carries: the revision its GGUF file serves.
REVISION_ANNOTATION = "warrior.dev/revision"


class FlywheelError(RuntimeError):
    """A step that cannot go on; the message names the step and what to look at."""


class Records:
    """Write-once step records of one flywheel turn in the object store."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self._store = store
        self.prefix = prefix

    def get(self, step: str) -> dict[str, Any] | None:
        try:
            return dict(self._store.get_json(self.prefix + f"{step}.json"))
        except ObjectNotFound:
            return None

    def put(self, step: str, data: dict[str, Any]) -> dict[str, Any]:
        self._store.put_json(self.prefix + f"{step}.json", data | {"completed_at": time.time()}, if_absent=True)
        return self.get(step) or data


@dataclass
class Turn:
    """What a turn hands the next: its model and the follow-up campaign it battled in."""

    trained: str
    final_key: str
    followup: CampaignConfig
    served: list[dict[str, Any]] = field(default_factory=list)  # the experts the flywheel added so far


def chart_values(served: list[dict[str, Any]], like: ExpertConfig) -> dict[str, Any]:
    """The chart values that serve the flywheel's models on a cluster: one `extraExperts` entry per
    model, its GGUF file fetched from the store (`exports/...`), sized like the base expert."""
    return {
        "extraExperts": [
            {
                "name": entry["name"],
                "engine": "llamacpp",
                "parallel": like.parallel,
                "contextLength": like.context_length,
                "model": {"objectStore": {"prefix": entry["key"]}, "path": entry["file"]},
                "podAnnotations": {REVISION_ANNOTATION: entry["revision"]},
            }
            for entry in served
        ]
    }


class FlywheelRun:
    """One flywheel file run to its report; see the module docstring."""

    def __init__(self, flywheel: Flywheel, *, echo: Echo, timeout_s: float = 7200.0, stack: str = "local") -> None:
        if stack not in STACKS:
            raise ValueError(f"stack must be one of {', '.join(STACKS)}, got {stack!r}")
        self.fw = flywheel
        self.cfg = flywheel.config
        self.echo = echo
        self.timeout_s = timeout_s
        self.stack = stack
        self.settings = Settings.from_env()
        self.store = open_store(self.settings.store_url)
        self.prefix = f"flywheel/{flywheel.id}/"
        self.work = self.settings.home / "flywheel" / flywheel.id
        self._app: Celery | None = None
        self._local: LocalStack | None = None
        self._trainer_seen = False
        base = next(e for e in flywheel.campaign.experts if e.name == self.cfg.target.base_expert)
        self.base_expert: ExpertConfig = base

    def records(self, turn: int) -> Records:
        return Records(self.store, f"{self.prefix}turn-{turn}/")

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = make_celery("cli")
        return self._app

    @property
    def rt(self) -> Runtime:
        return get_runtime()

    # -- the stack -----------------------------------------------------------------------------
    def _open_stack(self) -> bool:
        """Make the stack ready for the campaign and training; True when this run started it."""
        if self.stack == "cluster":
            self.echo(f"sending the steps to the stack at {redact_url(self.settings.redis_url)} (nothing is started "
                      "or stopped)")  # fmt: skip
            return False
        self._local = LocalStack()
        services = (*ARENA_SERVICES, "trainer")
        if self._local.running():
            self.echo("a local stack is already up: using it, and leaving it running")
            self._local.add(list(self.fw.campaign.experts), services=services, echo=self.echo)
            return False
        self.echo("starting a local stack for the flywheel (it stops it when done)")
        self._local.up(self.fw.campaign, services=services, echo=self.echo)
        return True

    def _steps(self, turn: int) -> list[str]:
        ablations = self.cfg.ablations if turn == 1 else []
        return [*STEPS, *(f"ablation-{kind}-{step}" for kind in ablations for step in ABLATION_STEPS)]

    def _all_recorded(self) -> bool:
        turns = range(1, self.cfg.turns + 1)
        return all(self.records(k).get(step) is not None for k in turns for step in self._steps(k))

    # -- turns ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.work.mkdir(parents=True, exist_ok=True)
        started = False if self._all_recorded() else self._open_stack()
        try:
            reports: list[dict[str, Any]] = []
            previous: Turn | None = None
            for turn in range(1, self.cfg.turns + 1):
                if self.cfg.turns > 1:
                    self.echo(f"-- turn {turn}/{self.cfg.turns}")
                report, previous = self._turn(turn, previous)
                reports.append(report)
        finally:
            if started and self._local is not None:
                self._local.down(echo=self.echo)
            if self._app is not None:
                self._app.close()
        report = reports[-1] | {"turns": reports}
        self.store.put_json(self.prefix + "report.json", report, if_absent=False)
        return report

    def _turn(self, turn: int, previous: Turn | None) -> tuple[dict[str, Any], Turn]:
        rec = self.records(turn)
        trained = self.cfg.trained_name(turn)
        if previous is None:
            source_campaign, source = self.fw.campaign, self.cfg.target.base_model
            base = f"{self.cfg.target.base_expert}-{self.cfg.gguf_type}"
        else:  # the previous model, trained again on the battles it fought
            source_campaign, source, base = previous.followup, previous.final_key, previous.trained
        campaign = self._step(rec, "campaign", lambda: self._campaign(source_campaign))
        data = self._step(rec, "data", lambda: self._data(source_campaign, campaign))
        training = self._step(rec, "train", lambda: self._train(campaign, source, trained))
        exported = self._step(rec, "export", lambda: self._export(training, source, trained, first=previous is None))
        served = list(previous.served if previous else [])
        if previous is None:
            served.append({"name": base} | exported["base"])
        served.append({"name": trained} | exported["trained"])
        followup_config = self._followup_config(turn, served, previous)
        if rec.get("evaluate") is None or rec.get("followup") is None:
            self._serve(list(followup_config.experts), served)
        registered = self._step(rec, "register", lambda: self._register(served))
        evaluated = self._step(rec, "evaluate", lambda: self._evaluate(base, trained))
        followup = self._step(rec, "followup", lambda: self._followup(followup_config))
        ablations = {
            kind: self._ablation(rec, kind, campaign, source, evaluated, served) for kind in
            (self.cfg.ablations if previous is None else [])
        }  # fmt: skip
        report = self._report(turn, base, trained, campaign, training, registered, evaluated, followup)
        report |= {"data": data, "ablations": ablations}
        return report, Turn(trained, training["final_key"], followup_config, served)

    def _step(self, rec: Records, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        done = rec.get(name)
        if done is not None:
            self.echo(f"[{name}] already done ({rec.prefix}{name}.json)")
            return done
        self.echo(f"[{name}] starting")
        started = time.monotonic()
        record = rec.put(name, work() | {"seconds": round(time.monotonic() - started, 1)})
        self.echo(f"[{name}] done in {record['seconds']:.0f}s")
        return record

    def _require_worker(self, step: str, queue: str) -> None:
        """On a cluster, a worker must consume the queue (the chart's trainer is off by default): say so at once."""
        if self.stack != "cluster" or self._trainer_seen:
            return
        replies = self.app.control.inspect(timeout=5.0).active_queues() or {}
        if not any(q.get("name") == queue for consumed in replies.values() for q in consumed or []):
            raise FlywheelError(f"[{step}] no worker of the stack consumes queue {queue!r}: enable the trainer's "
                                "worker (chart value services.trainer.enabled) and rerun")  # fmt: skip
        self._trainer_seen = True

    def _task(self, step: str, name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a task to the stack and wait for its result."""
        self._require_worker(step, queues.TASK_QUEUES[name])
        result = self.app.send_task(name, args=args, kwargs=kwargs or {})
        try:
            return dict(result.get(timeout=self.timeout_s))
        except celery.exceptions.TimeoutError:
            raise FlywheelError(
                f"[{step}] no result from {name} after {self.timeout_s:.0f}s: is a trainer worker consuming queue "
                f"{queues.TASK_QUEUES[name]!r}? Rerun to resume"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the task's own error, named with the step
            raise FlywheelError(f"[{step}] {name} failed: {type(exc).__name__}: {exc}; rerun to resume") from exc

    # -- steps ---------------------------------------------------------------------------------
    def _campaign(self, config: CampaignConfig) -> dict[str, Any]:
        rt, app = self.rt, self.app
        campaign = config.campaign_id()
        if not ops.CampaignState(rt.redis, campaign).exists():
            ops.start(rt, app, config)
        else:
            self.echo(f"campaign {campaign} exists: following it to the end")
        snap = ops.wait(rt, campaign, timeout_s=self.timeout_s)
        manifest = ops.build_dataset(app, campaign, config.dataset.name)
        final = ops.finalize(app, campaign)
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
            "ratings_key": manifest["ratings"],
            "leaderboard": final["leaderboard"],
        }

    def _rows(self, dataset: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        manifest = read_manifest(self.store, dataset["name"], dataset["version"])
        return manifest, read_rows(self.store, manifest)

    def _data(self, config: CampaignConfig, campaign: dict[str, Any]) -> dict[str, Any]:
        """What the target is trained on: rows, winners by expert, how their answers fared against the tests,
        and the decontamination checks run again over the final rows (see audit.py)."""
        manifest, rows = self._rows(campaign["dataset"])
        statuses = Counter(str(r["lineage"].get("verification", {}).get("status", "unknown")) for r in rows)
        self.echo(f"[data] {len(rows)} rows; checking them against the evaluation sets (13-gram, embedding, "
                  "rewording)")  # fmt: skip
        settings = config.screening.decontamination
        judge = rewording_judge(self.rt, config) if settings.rewording.enabled else None
        state = CampaignState(self.rt.redis, campaign["campaign"])
        score = ledger_scorer(self.rt, state, judge) if judge else None
        audit = audit_rows(rows, settings, self.rt.settings.cache_dir, score, judge_name=judge)
        if audit["overlap"]:
            self.echo(f"[data] WARNING: {audit['overlap']} row(s) overlap an evaluation set: see the report's "
                      "data.decontamination")  # fmt: skip
        return {
            "rows": len(rows),
            "winners": dict(Counter(str(r["lineage"]["winner"]) for r in rows).most_common()),
            "verification": dict(statuses.most_common()),
            "selection": manifest.get("selection"),
            "screening": manifest.get("screening"),
            "answers": answer_verification(
                self.store.get_json(key) for key in self.store.list(f"runs/{campaign['campaign']}/rows/")
            ),
            "judges_vs_execution": shadow_agreement(load_battles(self.store, campaign["campaign"]).values()),
            "decontamination": audit,
        }

    def _ablation(
        self,
        rec: Records,
        kind: str,
        campaign: dict[str, Any],
        source: str,
        evaluated: dict[str, Any],
        served: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Turn 1's target trained on the same rows with other winners (`llm-only` or `random`), evaluated."""
        name = self.cfg.ablation_name(kind)
        step = f"ablation-{kind}-"
        dataset = self._step(rec, step + "dataset", lambda: self._ablation_dataset(kind, campaign))
        training = self._step(rec, step + "train", lambda: self._train({"dataset": dataset}, source, name))
        exported = self._step(rec, step + "export", lambda: self._export(training, source, name, first=False))
        entry = {"name": name} | exported["trained"]
        if rec.get(step + "evaluate") is None:
            self._serve([self._served_expert(entry)], [*served, entry])
        evaluation = self._step(rec, step + "evaluate", lambda: self._evaluate_ablation(kind, name, evaluated))
        result = training.get("result", {})
        return {
            "expert": name,
            "dataset": dataset,
            "training": {"run": training["run"], "steps": result.get("steps"), "losses": result.get("losses")},
            "evaluation": evaluation["benchmarks"],
            "paired": evaluation["paired"],
        }

    def _ablation_dataset(self, kind: str, campaign: dict[str, Any]) -> dict[str, Any]:
        main = campaign["dataset"]
        manifest, rows = self._rows(main)
        ids = [str(r["lineage"]["instruction_id"]) for r in rows]
        cid = campaign["campaign"]
        if kind == "llm-only":
            self.echo(f"[ablation {kind}] winners of the same {len(ids)} rows from the LLM judges alone")
            ratings_key, winners = ops.finalize(self.app, cid, verdicts="llm")["ratings_key"], "ratings"
        else:
            self.echo(f"[ablation {kind}] a random answer as the target of each of the same {len(ids)} rows")
            ratings_key, winners = str(campaign.get("ratings_key") or manifest["ratings"]), "random"
        name = f"{main['name']}-{kind}"[:63]
        built = ops.build_dataset(
            self.app, cid, name, self.timeout_s, ratings_key=ratings_key, winners=winners, instructions=ids
        )
        _, mine = self._rows({"name": built["name"], "version": built["version"]})
        same = sum(a["lineage"]["winner"] == b["lineage"]["winner"] for a, b in zip(rows, mine, strict=True))
        statuses = Counter(str(r["lineage"].get("verification", {}).get("status", "unknown")) for r in mine)
        return {
            "name": built["name"],
            "version": built["version"],
            "rows": built["rows"],
            "ratings_key": ratings_key,
            "winners": dict(Counter(str(r["lineage"]["winner"]) for r in mine).most_common()),
            "verification": dict(statuses.most_common()),
            "same_winner_as_arena": same,
        }

    def _evaluate_ablation(self, kind: str, name: str, evaluated: dict[str, Any]) -> dict[str, Any]:
        out = self._evaluate_models({kind: name})
        main = evaluated["benchmarks"]
        return {
            "benchmarks": out,
            "paired": {
                "trained_minus_ablation": self._paired(out, main, kind, "trained"),
                "ablation_minus_base": self._paired(main, out, "base", kind),
            },
        }

    def _train(self, campaign: dict[str, Any], source: str, output: str) -> dict[str, Any]:
        dataset = campaign["dataset"]
        config = self.cfg.train_config(dataset["name"], dataset["version"], base_model=source, output=output)
        self.echo(f"[train] {config.method} fine-tuning of {source} on {dataset['name']}@{dataset['version']} "
                  f"({dataset['rows']} rows) -> {output}, on the trainer's queue")  # fmt: skip
        # A redelivered or repeated task resumes from the run's last complete checkpoint.
        result = self._task("train", queues.TASK_TRAIN, [config.to_file()], {"details": True})
        return {"run": result["run"], "final_key": result["final_key"], "config": config.to_file(),
                "result": result}  # fmt: skip

    def _export(self, training: dict[str, Any], source: str, trained: str, *, first: bool) -> dict[str, Any]:
        gguf_type = self.cfg.gguf_type
        out = {"trained": self._task("export", queues.TASK_EXPORT, [training["final_key"], trained, gguf_type])}
        if first:  # the base's GGUF twin, for a like-for-like match; later turns' bases are earlier turns' models
            self.echo(f"[export] {source} -> {gguf_type} GGUF (the base, for a like-for-like match)")
            out["base"] = self._task("export", queues.TASK_EXPORT, [source, self.cfg.target.base_expert, gguf_type])
        return out

    def _served_expert(self, served: dict[str, Any]) -> ExpertConfig:
        """A model the flywheel exported, as an expert shaped like the base expert (its GGUF file, llama.cpp)."""
        base = self.base_expert
        return ExpertConfig(
            name=served["name"], model=served["path"] if self.stack == "local" else None, engine="llamacpp",
            chat_template="auto", parallel=base.parallel, context_length=base.context_length, threads=base.threads,
        )  # fmt: skip

    def _followup_config(self, turn: int, served: list[dict[str, Any]], previous: Turn | None) -> CampaignConfig:
        """The roster again, with the base expert replaced by its GGUF twin, and every trained model added."""
        source = self.fw.campaign
        others = [e for e in source.experts if e.name != self.base_expert.name]
        experts = [*others, *(self._served_expert(s) for s in served)]
        suffix = "-followup" if turn == 1 else f"-followup{turn}"
        data = source.model_dump(mode="json") | {
            "campaign": f"{source.campaign_id()}{suffix}"[:63],
            "experts": [e.model_dump(mode="json") for e in experts],
        }
        data["mining"] = data["mining"] | {"per_expert": self.cfg.followup.per_expert}
        data["matchmaking"] = data["matchmaking"] | {"open_roster": False}
        data["dataset"] = data["dataset"] | {"name": f"{source.dataset.name}{suffix}"[:63]}
        return CampaignConfig.model_validate(data)

    def _serve(self, experts: list[ExpertConfig], served: list[dict[str, Any]]) -> None:
        """Have the stack serve these experts, among them the flywheel's models (`served`)."""
        names = ", ".join(s["name"] for s in served)
        if self.stack == "local":
            assert self._local is not None
            self.echo(f"[register] serving {names} in the local stack")
            self._local.add(experts, echo=self.echo)
            return
        values = chart_values(served, self.base_expert)
        path = self.work / "chart-values.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        waiting = {s["name"]: s["revision"] for s in served}
        deadline = time.monotonic() + self.timeout_s
        told = False
        while True:
            waiting = {name: rev for name, rev in waiting.items() if not self._serves(name, rev)}
            if not waiting:
                return
            if not told:
                self.echo(f"[register] waiting for {', '.join(waiting)} to serve their exported revisions: add "
                          f"them with `helm upgrade <release> charts/warrior --reuse-values -f {path}`")  # fmt: skip
                told = True
            if time.monotonic() > deadline:
                raise FlywheelError(f"[register] {', '.join(waiting)} not serving after {self.timeout_s:.0f}s; "
                                    f"apply {path} to the release and rerun")  # fmt: skip
            time.sleep(5.0)

    def _serves(self, expert: str, revision: str) -> bool:
        rt = self.rt
        if not rt.registry.resolve(expert):
            return False
        try:
            return expert_model(rt.client, expert).revision == revision
        except Exception:  # noqa: BLE001 - not answering yet is not serving yet
            return False

    def _register(self, served: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "experts": [{k: s[k] for k in ("name", "key", "file", "revision", "sha256")} for s in served],
            "chart_values": chart_values(served, self.base_expert),
        }

    def _evaluate(self, base: str, trained: str) -> dict[str, Any]:
        out = self._evaluate_models({"base": base, "trained": trained})
        return {"benchmarks": out, "paired": self._paired(out, out, "base", "trained")}

    def _evaluate_models(self, models: dict[str, str]) -> dict[str, Any]:
        """pass@1 of each model (role -> expert) on every configured benchmark, on the trainer's queue."""
        ev = self.cfg.evaluate
        out: dict[str, Any] = {}
        for benchmark in ev.benchmarks:
            out[benchmark] = {}
            for role, expert in models.items():
                self.echo(f"[evaluate] {benchmark}: {expert} ({role}), greedy, on the trainer's queue")
                stored = self._task(
                    "evaluate", queues.TASK_EVALUATE, [expert, benchmark],
                    {"limit": ev.limit, "max_tokens": ev.max_tokens, "workers": ev.workers, "timeout_s": ev.timeout_s,
                     "memory_mb": ev.memory_mb},
                )  # fmt: skip
                out[benchmark][role] = {"expert": expert, "revision": stored["revision"], "result": stored["key"]} | {
                    k: stored[k] for k in ("pass_at_1", "passed", "total")
                }
                self.echo(f"[evaluate] {benchmark}: {expert} pass@1 {stored['pass_at_1']:.3f} "
                          f"({stored['passed']}/{stored['total']})")  # fmt: skip
        return out

    def _outcomes(self, evaluated: dict[str, Any], role: str) -> dict[str, dict[str, bool]]:
        """benchmark -> {"<benchmark>:<task id>": passed} of one role's stored evaluation results."""
        out = {}
        for benchmark, roles in evaluated.items():
            stored = self.store.get_json(roles[role]["result"])
            out[benchmark] = {f"{benchmark}:{o['task_id']}": bool(o["passed"]) for o in stored["outcomes"]}
        return out

    def _paired(self, first: dict[str, Any], second: dict[str, Any], a: str, b: str) -> dict[str, Any]:
        """Role `b` (of `second`) vs role `a` (of `first`) on the same problems, per benchmark and all
        together (see evidence.py)."""
        mine, theirs = self._outcomes(first, a), self._outcomes(second, b)
        per = {benchmark: paired_difference(mine[benchmark], theirs[benchmark]) for benchmark in mine}
        together = None
        if len(per) > 1:
            together = paired_difference(
                {k: v for outcomes in mine.values() for k, v in outcomes.items()},
                {k: v for outcomes in theirs.values() for k, v in outcomes.items()},
            )
        return {"benchmarks": per, "combined": together}

    def _followup(self, config: CampaignConfig) -> dict[str, Any]:
        rt, app = self.rt, self.app
        campaign = config.campaign_id()
        if not ops.CampaignState(rt.redis, campaign).exists():
            ops.start(rt, app, config)
        snap = ops.wait(rt, campaign, timeout_s=self.timeout_s)
        final = ops.finalize(app, campaign)
        return {"campaign": campaign, "instructions": snap["instructions"], "battles": snap["battles"],
                "votes": snap["votes"], "leaderboard": final["leaderboard"], "judges": final["judges"]}  # fmt: skip

    # -- report --------------------------------------------------------------------------------
    def _report(
        self,
        turn: int,
        base: str,
        trained: str,
        campaign: dict[str, Any],
        training: dict[str, Any],
        registered: dict[str, Any],
        evaluated: dict[str, Any],
        followup: dict[str, Any],
    ) -> dict[str, Any]:
        board = {row["expert"]: row for row in followup["leaderboard"]}
        pick = ("rating", "ci_low", "ci_high", "battles", "win_rate")
        result = training.get("result", {})
        return {
            "flywheel": self.fw.id,
            "turn": turn,
            "campaign": {k: campaign[k] for k in ("campaign", "instructions", "battles", "votes")},
            "dataset": campaign["dataset"],
            "training": {
                "base_model": training["config"]["base_model"],
                "output": trained,
                "method": training["config"]["method"],
                "run": training["run"],
                "final": training["final_key"],
                "steps": result.get("steps"),
                "losses": result.get("losses"),
            },
            "registered": registered["experts"],
            "evaluation": evaluated["benchmarks"],
            "paired": evaluated.get("paired"),
            "ratings": {
                "campaign": followup["campaign"],
                "battles": followup["battles"],
                "votes": followup["votes"],
                "base": {"expert": base} | {k: board.get(base, {}).get(k) for k in pick},
                "trained": {"expert": trained} | {k: board.get(trained, {}).get(k) for k in pick},
                "leaderboard": followup["leaderboard"],
            },
        }


def _render_data(data: dict[str, Any]) -> list[str]:
    answers = data.get("answers") or {}
    experts = [
        {"expert": name, "answers": v["answers"], "tested": v["tested"], "verified": v["verified"],
         "verified_rate": "" if v["verified_rate"] is None else f"{v['verified_rate']:.3f}",
         "rows_won": data["winners"].get(name, 0)}
        for name, v in (answers.get("experts") or {}).items()
    ]  # fmt: skip
    audit = data["decontamination"]
    rewording, nearest = audit["rewording"], audit["embedding"]["nearest"]
    checks: list[dict[str, Any]] = [
        {"check": f"{audit['ngram']['n']}-gram ({audit['ngram']['checked']})", "hits": len(audit["ngram"]["hits"]),
         "closest": ""},
        {"check": f"embedding >= {audit['embedding']['threshold']}", "hits": len(audit["embedding"]["hits"]),
         "closest": f"{nearest.get('similarity')} ({nearest.get('problem')})"},
        {"check": f"rewording >= {rewording['threshold']} (judge {rewording['judge']}, {rewording['judged_rows']} "
                  "rows with candidates)" if rewording["ran"] else "rewording (not run: no judge)",
         "hits": len(rewording["hits"]) if rewording["ran"] else "",
         "closest": f"{rewording['strongest'].get('evidence')} ({rewording['strongest'].get('problem')})"
         if rewording["ran"] else ""},
    ]  # fmt: skip
    hits = [*audit["ngram"]["hits"], *audit["embedding"]["hits"], *rewording["hits"]]
    shadow = [
        {"judge": name, "decided_pairs": v["decided"], "agreed": v["agreed"], "tie": v["tie"],
         "agreement": "" if v["agreement"] is None else f"{v['agreement']:.3f}"}
        for name, v in (data.get("judges_vs_execution") or {}).items()
    ]  # fmt: skip
    shadow_lines = [
        "",
        "LLM judges on the pairs the tests decided (shadow judging): how often they picked the same winner",
        table(shadow, ["judge", "decided_pairs", "agreed", "tie", "agreement"]),
    ]
    return [
        f"data: {data['rows']} rows; winner verification {data['verification']}; "
        f"{answers.get('with_trusted_tests')}/{answers.get('requests')} battled requests had trusted tests",
        table(experts, ["expert", "answers", "tested", "verified", "verified_rate", "rows_won"]),
        "",
        f"overlap of the final rows with {', '.join(audit['benchmarks'])}: {audit['overlap']} rows",
        table(checks, ["check", "hits", "closest"]),
        *(["hits:", *(f"  {h}" for h in hits)] if hits else []),
        *(shadow_lines if shadow else []),
    ]


def _render_ablations(report: dict[str, Any]) -> list[str]:
    ablations = report.get("ablations") or {}
    if not ablations:
        return []
    rows = []
    compared = []
    moved = []
    for kind, ab in ablations.items():
        data = ab["dataset"]
        for benchmark, roles in ab["evaluation"].items():
            r = roles[kind]
            rows.append({"ablation": kind, "benchmark": benchmark, "model": r["expert"],
                         "pass@1": f"{r['pass_at_1']:.3f}",
                         "passed": f"{r['passed']}/{r['total']}",
                         "rows": f"{data['rows']} ({data['same_winner_as_arena']} same winner)",
                         "verified": data["verification"].get("verified", 0)})  # fmt: skip
        compared += paired_rows(ab["paired"]["trained_minus_ablation"], f"trained - {kind}")
        moved += paired_rows(ab["paired"].get("ablation_minus_base") or {}, f"{kind} - base")
    return [
        "",
        "ablations: the same rows, other winners",
        table(rows, ["ablation", "benchmark", "model", "pass@1", "passed", "rows", "verified"]),
        "",
        "execution-first arena vs each ablation, paired over problems (bootstrap 95% interval)",
        table(compared, ["compared", *PAIRED_COLUMNS]),
        *(
            [
                "",
                "each ablation vs the base, paired over problems (bootstrap 95% interval)",
                table(moved, ["compared", *PAIRED_COLUMNS]),
            ]
            if moved
            else []
        ),
    ]


def _render_turn(report: dict[str, Any]) -> list[str]:
    rows = []
    for benchmark, roles in report["evaluation"].items():
        for role in ("base", "trained"):
            r = roles[role]
            rows.append({"benchmark": benchmark, "model": f"{r['expert']} ({role})", "pass@1": f"{r['pass_at_1']:.3f}",
                         "passed": f"{r['passed']}/{r['total']}"})  # fmt: skip
    compared = paired_rows(report.get("paired") or {})
    ratings = report["ratings"]
    board = [
        {"expert": r["expert"], "rating": r["rating"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
         "battles": r["battles"], "win_rate": r["win_rate"]}
        for r in ratings["leaderboard"]
    ]  # fmt: skip
    data = report["dataset"]
    losses = report["training"].get("losses") or []
    loss_text = f", loss {losses[0][1]:.3f} -> {losses[-1][1]:.3f}" if losses else ""
    return [
        f"campaign {report['campaign']['campaign']}: {report['campaign']['battles']} battles, "
        f"{report['campaign']['votes']} votes -> dataset {data['name']}@{data['version']} ({data['rows']} rows)",
        f"training {report['training']['method']} on {report['training']['base_model']}: "
        f"{report['training'].get('steps')} steps{loss_text}",
        *(["", *_render_data(report["data"])] if report.get("data") else []),
        "",
        "pass@1 (greedy, sandboxed)",
        table(rows, ["benchmark", "model", "pass@1", "passed"]),
        *(
            [
                "",
                "trained - base, paired over problems (bootstrap 95% interval)",
                table(compared, list(PAIRED_COLUMNS)),
            ]
            if compared
            else []
        ),
        "",
        f"follow-up campaign {ratings['campaign']}: {ratings['battles']} battles, {ratings['votes']} votes",
        table(board, ["expert", "rating", "ci_low", "ci_high", "battles", "win_rate"]),
        *_render_ablations(report),
    ]


def render_report(report: dict[str, Any]) -> str:
    """The report as text, per turn: pass@1 of base vs trained per benchmark, and the follow-up ratings."""
    turns = report.get("turns") or [report]
    lines = [f"flywheel {report['flywheel']}"]
    for index, turn in enumerate(turns):
        if len(turns) > 1:
            lines += ([""] if index else []) + [f"turn {turn.get('turn', index + 1)}: {turn['training']['output']}"]
        lines += _render_turn(turn)
    return "\n".join(lines)
