"""Celery worker of the trainer service: queue `train`.

Run: celery -A warrior.trainer.worker worker -Q train -P solo

The task takes a training config (a dict, or the store key of a YAML file), trains, and returns
the store prefix of the final model. A task whose worker died is delivered again
(``acks_late``) and continues from the run's last complete checkpoint, so a redelivery costs at
most ``save_steps`` steps. A run that already finished returns at once. Training that can last
longer than the broker's visibility timeout (WARRIOR_VISIBILITY_TIMEOUT_S, one hour by default)
needs a larger one for the whole stack, or else a second worker gets the task while the first
still trains; long runs belong in the Kubernetes Job (``warrior-train``) instead.

Evaluation (``warrior.evaluate``) generates the answers here but never runs them here: the programs
go to the executor service (``QueueExecutor``, queue ``execute``), so no model-generated code runs in
the trainer's pod, next to its credentials and checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import Task

from warrior.common import queues
from warrior.common.celery_app import make_celery
from warrior.common.runtime import get_runtime
from warrior.common.store import ObjectStore
from warrior.trainer.config import TrainConfig, parse_train_config, parse_train_yaml

log = logging.getLogger("warrior.trainer")
app = make_celery("trainer")


def resolve_config(config: dict[str, Any] | str, store: ObjectStore) -> TrainConfig:
    """A config given inline (a dict) or by the store key of its YAML file."""
    if isinstance(config, dict):
        return parse_train_config(config, "<task config>")
    text = store.get(config).decode("utf-8")
    return parse_train_yaml(text, f"{store.url}/{config}")


@app.task(name=queues.TASK_TRAIN, bind=True)
def train(self: Task, config: dict[str, Any] | str, export: list[str] | None = None) -> str:
    """Train (or resume, or recognise as done) and return the final model's prefix; optionally export it."""
    rt = get_runtime()
    if not rt.admit(self.request.id, queues.TASK_TRAIN, attempt=self.request.retries or 0):
        raise RuntimeError(f"{queues.TASK_TRAIN} {self.request.id}: dead-lettered after repeated deliveries")
    parsed = resolve_config(config, rt.store)
    # torch and transformers load in the task, not when the worker starts.
    from warrior.trainer.export import export_run, parse_formats
    from warrior.trainer.sft import quiet_libraries
    from warrior.trainer.sft import train as run_training

    quiet_libraries()
    work_dir = Path(rt.settings.home) / "trainer"
    result = run_training(parsed, rt.store, work_dir=work_dir)
    if export:
        formats = parse_formats(",".join(export))
        export_run(rt.store, result.final_key, formats, work_dir / "exports" / parsed.output / result.run)
    return result.final_key


@app.task(name=queues.TASK_EVALUATE, bind=True)
def evaluate(
    self: Task, expert: str, benchmark: str, limit: int | None = None, max_tokens: int = 512
) -> dict[str, Any]:
    """pass@1 of a registered expert (greedy; the programs run in the executor service); returns the
    stored result's summary."""
    from warrior.common.model_info import expert_model
    from warrior.executor.runner import QueueExecutor
    from warrior.trainer.evaluation import evaluate_expert

    rt = get_runtime()
    if not rt.admit(self.request.id, queues.TASK_EVALUATE, attempt=self.request.retries or 0):
        raise RuntimeError(f"{queues.TASK_EVALUATE} {self.request.id}: dead-lettered after repeated deliveries")
    if benchmark not in ("humaneval", "mbpp"):
        raise ValueError(f"unknown benchmark {benchmark!r} (expected 'humaneval' or 'mbpp')")
    revision = expert_model(rt.client, expert).revision
    stored = evaluate_expert(
        rt.client, rt.store, expert, revision, benchmark,  # type: ignore[arg-type]
        cache_dir=rt.settings.cache_dir, limit=limit, max_tokens=max_tokens, executor=QueueExecutor(app),
    )  # fmt: skip
    return {k: stored[k] for k in ("key", "pass_at_1", "passed", "total", "reused")}
