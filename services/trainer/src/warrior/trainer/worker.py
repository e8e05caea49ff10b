"""Celery worker of the trainer service: queue `train`.

Run: celery -A warrior.trainer.worker worker -Q train -P solo

The task takes a training config (a dict, or the store key of a YAML file), trains, and returns
the store prefix of the final model. A task whose worker died is delivered again
(``acks_late``) and continues from the run's last complete checkpoint, so a redelivery costs at
most ``save_steps`` steps. A run that already finished returns at once. Training that can last
longer than the broker's visibility timeout (WARRIOR_VISIBILITY_TIMEOUT_S, one hour by default)
needs a larger one for the whole stack, or else a second worker gets the task while the first
still trains; long runs belong in the Kubernetes Job (``warrior-train``) instead.

A training config's ``base_model`` may also be the store prefix of another run's final model
(``checkpoints/<model>/<run>/final/``): it is downloaded into the worker's home first, so a model
trained here can be trained again (the flywheel's later turns).

Export (``warrior.export``) converts a run's final model, or a base model's folder, to GGUF and puts
it in the object store under ``exports/``, where a chart's expert fetches it (``model.objectStore``).

Evaluation (``warrior.evaluate``) generates the answers here but never runs them here: the programs
go to the executor service (``QueueExecutor``, queue ``execute``), so no model-generated code runs in
the trainer's pod, next to its credentials and checkpoints.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any, cast

from celery import Task

from warrior.common import queues
from warrior.common.celery_app import make_celery
from warrior.common.progress import ProgressCallback
from warrior.common.runtime import get_runtime
from warrior.common.store import ObjectStore
from warrior.trainer.config import TrainConfig, parse_train_config, parse_train_yaml

log = logging.getLogger("warrior.trainer")
app = make_celery("trainer")


# The store prefix of a run's final model: checkpoints/<model>/<run>/final/
_FINAL_KEY = re.compile(r"^checkpoints/([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)/final/$")


def resolve_config(config: dict[str, Any] | str, store: ObjectStore) -> TrainConfig:
    """A config given inline (a dict) or by the store key of its YAML file."""
    if isinstance(config, dict):
        return parse_train_config(config, "<task config>")
    text = store.get(config).decode("utf-8")
    return parse_train_yaml(text, f"{store.url}/{config}")


def local_model(source: str, store: ObjectStore, work_dir: Path) -> Path:
    """A model folder on this machine: `source` itself, or, for a run's final model in the store
    (``checkpoints/<model>/<run>/final/``), its copy under ``work_dir/models/<model>/<run>/``
    (downloaded once, every file checked against its sha256)."""
    found = _FINAL_KEY.match(source)
    if found is None or Path(source).is_dir():
        return Path(source)
    from warrior.trainer.export import export_hf

    dest = work_dir / "models" / found[1] / found[2]
    if not (dest / "config.json").is_file():
        export_hf(store, source, dest)
    return dest


@app.task(name=queues.TASK_TRAIN, bind=True)
def train(
    self: Task, config: dict[str, Any] | str, export: list[str] | None = None, details: bool = False
) -> str | dict[str, Any]:
    """Train (or resume, or recognise as done) and return the final model's prefix (with `details`,
    the whole result: run, steps, losses, final_key); optionally export it."""
    rt = get_runtime()
    if not rt.admit(self.request.id, queues.TASK_TRAIN, attempt=self.request.retries or 0):
        raise RuntimeError(f"{queues.TASK_TRAIN} {self.request.id}: dead-lettered after repeated deliveries")
    parsed = resolve_config(config, rt.store)
    work_dir = Path(rt.settings.home) / "trainer"
    base = local_model(parsed.base_model, rt.store, work_dir)
    if str(base) != parsed.base_model:
        parsed = parsed.model_copy(update={"base_model": str(base)})
    # torch and transformers load in the task, not when the worker starts.
    from warrior.trainer.export import export_run, parse_formats
    from warrior.trainer.sft import quiet_libraries
    from warrior.trainer.sft import train as run_training

    quiet_libraries()
    result = run_training(parsed, rt.store, work_dir=work_dir)
    if export:
        formats = parse_formats(",".join(export))
        export_run(rt.store, result.final_key, formats, work_dir / "exports" / parsed.output / result.run)
    return result.to_dict() if details else result.final_key


@app.task(name=queues.TASK_EXPORT, bind=True)
def export(self: Task, source: str, name: str, gguf_type: str = "f16") -> dict[str, Any]:
    """Convert a model to one GGUF file and put it in the store; returns where it is.

    `source` is a run's final model (``checkpoints/<model>/<run>/final/``: the file, named
    ``<model>-<type>.gguf``, goes to ``exports/<model>/<run>/gguf/``) or a model folder on this
    machine (a base model: ``<name>-<type>.gguf`` goes to ``exports/<name>/base-<sha256 prefix>/gguf/``).
    The result says: the store prefix (``key``), the file name, its local path here, its sha256
    and the ``revision`` an expert serving it reports (the first 16 hex digits of the sha256).
    """
    from warrior.trainer.checkpoints import read_marker, upload_files
    from warrior.trainer.export import GGUF_TYPES, GgufType, export_gguf, export_run

    rt = get_runtime()
    if not rt.admit(self.request.id, queues.TASK_EXPORT, attempt=self.request.retries or 0):
        raise RuntimeError(f"{queues.TASK_EXPORT} {self.request.id}: dead-lettered after repeated deliveries")
    if gguf_type not in GGUF_TYPES:
        raise ValueError(f"GGUF type {gguf_type!r} is not one of {', '.join(GGUF_TYPES)}")
    outtype = cast(GgufType, gguf_type)
    work_dir = Path(rt.settings.home) / "trainer" / "exports"
    found = _FINAL_KEY.match(source)
    if found is not None:
        model, run = found[1], found[2]
        done = export_run(rt.store, source, ["gguf"], work_dir / model / run, gguf_type=outtype)
        path, key = done.local["gguf"], done.keys["gguf"]
    else:
        path = export_gguf(Path(source), work_dir / name / "base" / f"{name}-{gguf_type}.gguf", outtype=outtype)
        key = f"exports/{name}/base-{_sha256(path)[:12]}/gguf/"
        if read_marker(rt.store, key) is None:
            upload_files(rt.store, key, [(path.name, path)], {"model": name, "format": "gguf", "type": gguf_type,
                                                            "file": path.name, "source": source})  # fmt: skip
    digest = _sha256(path)
    return {"key": key, "file": path.name, "path": str(path), "sha256": digest, "revision": digest[:16]}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


@app.task(name=queues.TASK_EVALUATE, bind=True)
def evaluate(
    self: Task,
    expert: str,
    benchmark: str,
    limit: int | None = None,
    max_tokens: int = 512,
    workers: int = 2,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
) -> dict[str, Any]:
    """pass@1 of a registered expert (greedy; the programs run in the executor service); returns the
    stored result's summary, with the revision evaluated. Its model calls go through the call ledger,
    so a redelivered evaluation asks only for the answers the first delivery had not got."""
    from warrior.common.model_info import expert_model
    from warrior.executor.runner import QueueExecutor
    from warrior.trainer.evaluation import evaluate_expert

    rt = get_runtime()
    if not rt.admit(self.request.id, queues.TASK_EVALUATE, attempt=self.request.retries or 0):
        raise RuntimeError(f"{queues.TASK_EVALUATE} {self.request.id}: dead-lettered after repeated deliveries")
    if benchmark not in ("humaneval", "mbpp"):
        raise ValueError(f"unknown benchmark {benchmark!r} (expected 'humaneval' or 'mbpp')")
    revision = expert_model(rt.client, expert).revision
    with ProgressCallback(f"eval {expert} on {benchmark}", unit="problems") as progress:
        stored = evaluate_expert(
            rt.client, rt.store, expert, revision, benchmark,  # type: ignore[arg-type]
            cache_dir=rt.settings.cache_dir, limit=limit, max_tokens=max_tokens, workers=workers,
            timeout_s=timeout_s, memory_mb=memory_mb, executor=QueueExecutor(app), progress=progress,
        )  # fmt: skip
    return {k: stored[k] for k in ("key", "pass_at_1", "passed", "total", "reused")} | {
        "expert": expert,
        "revision": revision,
    }
