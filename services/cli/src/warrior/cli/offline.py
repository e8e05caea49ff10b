"""`warrior flywheel-offline`: the flywheel's training and evaluation on one machine, from files copied in.

For a GPU machine that has torch (and transformers, TRL, PEFT) but no vLLM, no stack and no network:
the campaign ran elsewhere, and its dataset versions arrive in an object-store folder (`store`, the
`datasets/` of a local stack's store, copied as it is). The target model arrives as a Hugging Face
folder. Then, with nothing served:

1. train: the target on the arena's dataset (`datasets.arena`), and on every other dataset named
   (the flywheel's ablations, e.g. `llm-only` and `random`), each into `<target.name>[-<role>]`, with
   the trainer (`warrior.trainer.sft`; on the GPU when there is one; resumable from its checkpoints);
2. evaluate: the base and every trained model, greedily, on the configured benchmarks, generating
   with transformers in batches (`warrior.trainer.hf_generation`) and running the programs in this
   machine's sandbox; each result is stored once per model and revision, so a rerun reuses it;
3. report: pass@1 of each, trained - base and arena - each ablation paired over problems with
   bootstrap 95% intervals, as JSON and Markdown.

Every key is checked before anything is loaded. `--dry-run` runs the same steps at the smallest size
(one training step, two problems per benchmark, a few tokens) under another flywheel id, so a CPU
can check that a config renders and its steps wire up before the GPU time is spent.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from warrior.cli.evidence import PAIRED_COLUMNS, paired_difference, paired_rows
from warrior.cli.tables import table
from warrior.common.benchmarks import Problem
from warrior.common.campaign_config import ConfigError, describe_errors, read_text, read_yaml
from warrior.common.store import ObjectNotFound, ObjectStore, open_store
from warrior.dataset_builder.versions import read_manifest
from warrior.trainer.config import TrainConfig, parse_train_config

Echo = Callable[[str], None]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
ARENA = "arena"
MBPP_ENV = "WARRIOR_MBPP_PATH"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetConfig(_Strict):
    name: str = Field(pattern=_NAME)
    base_model: str = Field(min_length=1)


class DatasetConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    version: str = Field("latest", pattern=r"^(latest|[A-Za-z0-9][A-Za-z0-9._-]{0,62})$")


class EvaluateConfig(_Strict):
    benchmarks: list[Literal["humaneval", "mbpp"]] = Field(["humaneval", "mbpp"], min_length=1)
    limit: int | None = Field(None, ge=1, le=1_000_000)  # problems per benchmark (None: all)
    max_tokens: int = Field(512, ge=16, le=8192)
    batch_size: int = Field(32, ge=1, le=4096)  # conversations generated at once
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    timeout_s: float = Field(10.0, gt=0.0, le=600.0)
    memory_mb: int = Field(1024, ge=64, le=65536)
    # MBPP's file (relative to the config); none: WARRIOR_MBPP_PATH. Offline, it cannot be fetched.
    mbpp_path: str | None = None


class OfflineConfig(_Strict):
    flywheel: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    store: str = Field(min_length=1)  # a folder: the object store copied in (relative to the file)
    target: TargetConfig
    # role -> dataset version; `arena` is required, every other role is an ablation on the same rows.
    datasets: dict[str, DatasetConfig]
    train: dict[str, Any] = Field(default_factory=dict)
    evaluate: EvaluateConfig = EvaluateConfig()
    work_dir: str = "offline-work"  # checkpoints and downloaded models on this machine (relative to the file)

    @field_validator("datasets")
    @classmethod
    def _arena_first(cls, value: dict[str, DatasetConfig]) -> dict[str, DatasetConfig]:
        if ARENA not in value:
            raise ValueError(f"datasets needs an {ARENA!r} entry (the arena's dataset); got {sorted(value)}")
        bad = [role for role in value if not role.replace("-", "").isalnum() or len(role) > 20]
        if bad:
            raise ValueError(f"dataset roles are short names of letters, digits and '-'; got {bad[0]!r}")
        return {ARENA: value[ARENA]} | {k: v for k, v in value.items() if k != ARENA}

    def model_name(self, role: str) -> str:
        return self.target.name if role == ARENA else f"{self.target.name}-{role}"

    def train_config(self, role: str) -> TrainConfig:
        taken = sorted({"base_model", "output", "dataset"} & set(self.train))
        if taken:
            raise ConfigError(f"train.{taken[0]} is set from target and datasets; remove it")
        dataset = self.datasets[role]
        data = dict(self.train) | {
            "base_model": self.target.base_model,
            "output": self.model_name(role),
            "dataset": {"name": dataset.name, "version": dataset.version},
        }
        return parse_train_config(data, f"train ({role})")

    def dry_run(self) -> OfflineConfig:
        """The same steps at the smallest size, under `<flywheel>-dry-run`."""
        # One step, and no checkpoint before the final model (a full one carries the optimizer's state).
        smallest = {"max_steps": 1, "save_steps": 1000, "logging_steps": 1, "per_device_batch_size": 1,
                    "max_seq_length": 256}  # fmt: skip
        training = dict(self.train.get("training") or {}) | smallest
        evaluate = self.evaluate.model_copy(update={"limit": 2, "max_tokens": 32, "batch_size": 2})
        return self.model_copy(update={"flywheel": f"{self.flywheel}-dry-run"[:63], "evaluate": evaluate,
                                       "train": dict(self.train) | {"training": training}})  # fmt: skip


def load_offline_config(path: str | Path, *, need_model: bool = True) -> OfflineConfig:
    """Read and check an offline flywheel file, its training keys included; paths resolve against the file."""
    path = Path(path)
    data = read_yaml(read_text(path, "offline flywheel config"), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an offline flywheel config is a mapping of keys, got {type(data).__name__}")
    try:
        config = OfflineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc)}") from None
    here = path.parent
    config = config.model_copy(
        update={
            "store": str((here / config.store).resolve()),
            "work_dir": str((here / config.work_dir).resolve()),
            "target": config.target.model_copy(update={"base_model": str((here / config.target.base_model).resolve())}),
        }
    )
    evaluate = config.evaluate
    if "mbpp" in evaluate.benchmarks:
        mbpp = str((here / evaluate.mbpp_path).resolve()) if evaluate.mbpp_path else os.environ.get(MBPP_ENV)
        if not mbpp or not Path(mbpp).is_file():
            raise ConfigError(
                f"{path}: evaluate.mbpp_path: MBPP's mbpp.jsonl is needed on this machine (it cannot be fetched "
                f"offline): name it here or in {MBPP_ENV}; got {mbpp or 'nothing'}"
            )
        config = config.model_copy(update={"evaluate": evaluate.model_copy(update={"mbpp_path": mbpp})})
    for role in config.datasets:
        try:
            config.train_config(role)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if not Path(config.store).is_dir():
        raise ConfigError(f"{path}: store {config.store} is not a folder (copy the campaign's object store there)")
    if need_model and not (Path(config.target.base_model) / "config.json").is_file():
        raise ConfigError(f"{path}: target.base_model {config.target.base_model} is not a Hugging Face model folder")
    return config


def folder_revision(folder: Path) -> str:
    """A base model's revision: a hash of its files' names, sizes and its config (cheap on many GB)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(folder)}:{file.stat().st_size}\n".encode())
    digest.update((folder / "config.json").read_bytes())
    return "base-" + digest.hexdigest()[:12]


class OfflineRun:
    """One offline flywheel file run to its report; see the module docstring."""

    def __init__(self, config: OfflineConfig, *, echo: Echo) -> None:
        self.cfg = config
        self.echo = echo
        self.store: ObjectStore = open_store(f"file://{config.store}")
        self.work = Path(config.work_dir) / config.flywheel
        self.prefix = f"flywheel/{config.flywheel}/offline/"

    def _record(self, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = f"{self.prefix}{name}.json"
        try:
            done = dict(self.store.get_json(key))
            self.echo(f"[{name}] already done ({key})")
            return done
        except ObjectNotFound:
            pass
        self.echo(f"[{name}] starting")
        started = time.monotonic()
        record = work() | {"seconds": round(time.monotonic() - started, 1)}
        self.store.put_json(key, record, if_absent=True)
        self.echo(f"[{name}] done in {record['seconds']:.0f}s")
        return record

    def run(self) -> dict[str, Any]:
        self.work.mkdir(parents=True, exist_ok=True)
        trained = {
            role: self._record(f"train-{role}", functools.partial(self._train, role)) for role in self.cfg.datasets
        }
        base = Path(self.cfg.target.base_model)
        models = {"base": (base.name, folder_revision(base), None)} | {
            role: (t["model"], t["run"], t["final_key"]) for role, t in trained.items()
        }
        evaluation = {role: self._record(f"evaluate-{role}", self._evaluation(role, *m)) for role, m in models.items()}
        report = {
            "flywheel": self.cfg.flywheel,
            "target": self.cfg.target.model_dump(),
            "datasets": {
                role: {"name": t["dataset"], "version": t["dataset_version"], "rows": t["rows"]}
                for role, t in trained.items()
            },  # fmt: skip
            "training": {
                role: {k: t.get(k) for k in ("model", "run", "steps", "losses", "seconds")}
                for role, t in trained.items()
            },  # fmt: skip
            "evaluation": {role: e["benchmarks"] for role, e in evaluation.items()},
            "paired": {
                "trained_minus_base": self._paired(evaluation, "base", ARENA),
                **{
                    f"{ARENA}_minus_{role}": self._paired(evaluation, role, ARENA)
                    for role in self.cfg.datasets
                    if role != ARENA
                },
            },  # fmt: skip
        }
        self.store.put_json(f"{self.prefix}report.json", report, if_absent=False)
        return report

    def _train(self, role: str) -> dict[str, Any]:
        from warrior.trainer.sft import quiet_libraries
        from warrior.trainer.sft import train as run_training

        config = self.cfg.train_config(role)
        self.echo(f"[train-{role}] {config.method} fine-tuning of {config.base_model} on "
                  f"{config.dataset.name}@{config.dataset.version} -> {config.output}")  # fmt: skip
        quiet_libraries()
        result = run_training(config, self.store, work_dir=self.work / "trainer", progress=self.echo).to_dict()
        manifest = read_manifest(self.store, result["dataset"], result["dataset_version"])
        return result | {"rows": manifest["rows"]}

    def _evaluation(self, role: str, model: str, revision: str, final_key: str | None) -> Callable[[], dict[str, Any]]:
        return lambda: self._evaluate(role, model, revision, final_key)

    def _evaluate(self, role: str, model: str, revision: str, final_key: str | None) -> dict[str, Any]:
        from warrior.trainer.evaluation import evaluate, load_problems, prompt_messages, result_key, store_result
        from warrior.trainer.export import export_hf
        from warrior.trainer.hf_generation import HFGenerator

        ev = self.cfg.evaluate
        folder = Path(self.cfg.target.base_model)
        if final_key is not None:
            folder = self.work / "models" / model / revision
            if not (folder / "config.json").is_file():
                export_hf(self.store, final_key, folder)
        generator: HFGenerator | None = None
        out: dict[str, Any] = {}
        try:
            for benchmark in ev.benchmarks:
                label = benchmark if ev.limit is None else f"{benchmark}-first{ev.limit}"
                key = result_key(model=model, revision=revision, benchmark=label)
                if not self.store.exists(key):
                    problems = load_problems(benchmark, ev.limit, ev.mbpp_path, cache_dir=self.work / "cache")
                    if generator is None:
                        generator = HFGenerator(folder, device=ev.device, batch_size=ev.batch_size,
                                                max_tokens=ev.max_tokens)  # fmt: skip
                    self.echo(f"[evaluate-{role}] {model}: {len(problems)} {benchmark} problems, greedy, batches of "
                              f"{ev.batch_size} on {generator.device}")  # fmt: skip
                    answers = generator.replies([prompt_messages(p) for p in problems])
                    replies = {p.task_id: a for p, a in zip(problems, answers, strict=True)}
                    result = evaluate(problems, _reply_of(replies), workers=1, timeout_s=ev.timeout_s,
                                      memory_mb=ev.memory_mb)  # fmt: skip
                    store_result(self.store, result, model=model, revision=revision, benchmark=label)
                stored = self.store.get_json(key)
                out[benchmark] = {"model": model, "revision": revision, "result": key} | {
                    k: stored[k] for k in ("pass_at_1", "passed", "total")
                }
                self.echo(f"[evaluate-{role}] {model} on {benchmark}: pass@1 {stored['pass_at_1']:.3f} "
                          f"({stored['passed']}/{stored['total']})")  # fmt: skip
        finally:
            if generator is not None:
                generator.close()
        return {"benchmarks": out}

    def _paired(self, evaluation: dict[str, Any], a: str, b: str) -> dict[str, Any]:
        """Role `b` - role `a`, over the same problems, per benchmark and (with more than one) all together."""

        def outcomes(role: str, benchmark: str) -> dict[str, bool]:
            stored = self.store.get_json(evaluation[role]["benchmarks"][benchmark]["result"])
            return {f"{benchmark}:{o['task_id']}": bool(o["passed"]) for o in stored["outcomes"]}

        per: dict[str, Any] = {}
        first: dict[str, bool] = {}
        second: dict[str, bool] = {}
        for benchmark in self.cfg.evaluate.benchmarks:
            x, y = outcomes(a, benchmark), outcomes(b, benchmark)
            per[benchmark] = paired_difference(x, y)
            first |= x
            second |= y
        return {"benchmarks": per, "combined": paired_difference(first, second) if len(per) > 1 else None}


def _reply_of(replies: dict[str, str]) -> Callable[[Problem], str]:
    return lambda problem: replies[problem.task_id]


def render_offline_report(report: dict[str, Any]) -> str:
    rows = [
        {"model": f"{r['model']} ({role})", "benchmark": benchmark, "pass@1": f"{r['pass_at_1']:.3f}",
         "passed": f"{r['passed']}/{r['total']}"}
        for role, benchmarks in report["evaluation"].items() for benchmark, r in benchmarks.items()
    ]  # fmt: skip
    compared = [row for label, p in report["paired"].items() for row in paired_rows(p, label.replace("_", " "))]
    data = ", ".join(f"{role}: {d['name']}@{d['version']} ({d['rows']} rows)" for role, d in report["datasets"].items())
    return "\n".join(
        [
            f"offline flywheel {report['flywheel']}: {report['target']['name']} from {report['target']['base_model']}",
            f"datasets: {data}",
            "",
            "pass@1 (greedy, transformers, sandboxed)",
            table(rows, ["model", "benchmark", "pass@1", "passed"]),
            "",
            "paired over problems (bootstrap 95% interval)",
            table(compared, ["compared", *PAIRED_COLUMNS]),
        ]
    )
