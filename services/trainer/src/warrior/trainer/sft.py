"""Supervised fine-tuning of a Hugging Face model on a dataset version, with resumable checkpoints.

:func:`train` is the whole run:

1. Resolve the dataset version (``latest`` -> the committed version it names) and derive the run id
   from the config and that version, so a rerun lands on the same ``checkpoints/<model>/<run>/``.
2. If the run already finished (its ``final/_COMPLETE`` exists), return it without training.
3. Build TRL's ``SFTTrainer``: rows become prompt-completion pairs, so only the assistant turn is
   in the loss; LoRA adapters (or all weights for ``method: full``) are trained.
4. Resume: download the highest complete ``step-<n>`` from the store and continue from it (model
   or adapter weights, optimizer, scheduler, RNG and data position), printing ``resumed from step n``.
5. Every ``save_steps`` steps (and at the last step) the trainer's checkpoint is uploaded, its
   ``_COMPLETE`` marker last.
6. At the end the LoRA adapters are merged into the base weights and the model, its tokenizer and
   chat template are uploaded as ``final/`` (an HF folder ready for export or serving).

Under ``accelerate launch`` (several GPUs on one machine) every process runs :func:`train`; only
the main process talks to the store and prints, and the others wait for it where that matters.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset  # type: ignore[import-untyped]
from peft import LoraConfig, PeftModel
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from trl.trainer.sft_config import SFTConfig
from trl.trainer.sft_trainer import SFTTrainer

from warrior.common.progress import ProgressBar
from warrior.common.store import ObjectStore
from warrior.trainer.checkpoints import RunCheckpoints
from warrior.trainer.config import TrainConfig
from warrior.trainer.data import TrainingDataError, load_version, to_prompt_completion
from warrior.trainer.templates import apply_chat_template_choice

__all__ = [
    "TRAIN_RECORD",
    "Progress",
    "TrainResult",
    "build_trainer",
    "quiet_libraries",
    "resolve_bf16",
    "train",
]

Progress = Callable[[str], None]
# What the final folder says about how it was made.
TRAIN_RECORD = "warrior-train.json"
# The trainer's own record in each checkpoint (step, log history).
TRAINER_STATE = "trainer_state.json"


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass
class TrainResult:
    """What a finished run produced."""

    model: str
    run: str
    dataset: str
    dataset_version: str
    final_key: str  # the store prefix of the final HF folder, ending in '/'
    steps: int
    resumed_from: int | None = None
    already_trained: bool = False
    train_loss: float | None = None  # mean loss over the steps this process ran
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, logged loss) of the whole run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quiet_libraries() -> None:
    """Silence the progress bars and info chatter of datasets/transformers; the run prints its own progress."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_warning()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def resolve_bf16(setting: bool | str) -> bool:
    """``auto``: bfloat16 mixed precision where CUDA supports it, float32 elsewhere (CPUs, older GPUs)."""
    if isinstance(setting, bool):
        return setting
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


class _StoreCheckpoints(TrainerCallback):
    """Upload each checkpoint the trainer saves to the store, ``_COMPLETE`` marker last."""

    def __init__(self, checkpoints: RunCheckpoints, progress: Progress) -> None:
        self.checkpoints = checkpoints
        self.progress = progress

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        # Every process wrote its RNG state into the folder before the main one uploads it.
        _barrier(args)
        if state.is_world_process_zero:
            folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
            marker = self.checkpoints.save_step(state.global_step, folder)
            size = sum(int(f["bytes"]) for f in marker["files"].values())
            self.progress(
                f"checkpoint step {state.global_step}: {len(marker['files'])} files, {size / 1e6:.1f} MB "
                f"-> {self.checkpoints.step_prefix(state.global_step)}"
            )
        _barrier(args)


class _PrintProgress(TrainerCallback):
    """One line per logged step: ``step 12/100 loss 1.2345 lr 2.00e-04 0.65 steps/s``."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._mark: tuple[int, float] = (0, time.perf_counter())

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        self._mark = (state.global_step, time.perf_counter())

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        step, now = state.global_step, time.perf_counter()
        last_step, last_time = self._mark
        rate = (step - last_step) / (now - last_time) if now > last_time and step > last_step else 0.0
        self._mark = (step, now)
        lr = logs.get("learning_rate")
        lr_text = f" lr {float(lr):.2e}" if isinstance(lr, int | float) else ""
        self.progress(f"step {step}/{state.max_steps} loss {float(logs['loss']):.4f}{lr_text} {rate:.2f} steps/s")


class _StepBar(TrainerCallback):
    """The steps as a live bar with rate and ETA on a terminal, plain lines every 10% elsewhere."""

    def __init__(self) -> None:
        self.bar: ProgressBar | None = None
        self._loss: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        if state.is_world_process_zero:
            self.bar = ProgressBar("train", state.max_steps, unit="steps", initial=state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if logs and isinstance(logs.get("loss"), int | float):
            self._loss = float(logs["loss"])

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        if self.bar is not None:
            self.bar.update_to(state.global_step, postfix=None if self._loss is None else f"loss {self._loss:.4f}")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _barrier(args: TrainingArguments) -> None:
    state = args.distributed_state
    if state is not None:
        state.wait_for_everyone()


def _is_main(args: TrainingArguments) -> bool:
    return bool(args.process_index == 0)


def _sft_args(config: TrainConfig, output_dir: Path) -> SFTConfig:
    t = config.training
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps if t.max_steps is not None else -1,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_length=t.max_seq_length,
        seed=t.seed,
        data_seed=t.seed,
        bf16=resolve_bf16(t.bf16),
        fp16=False,
        gradient_checkpointing=t.gradient_checkpointing,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=1,  # locally: the store keeps every checkpoint
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        packing=False,
        completion_only_loss=True,
        assistant_only_loss=False,
    )


def _load_model(config: TrainConfig, bf16: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[int]]:
    source = config.base_model
    if not (Path(source) / "config.json").is_file():
        raise FileNotFoundError(f"base_model {source!r} is not a Hugging Face model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(source)
    # LoRA leaves the base frozen, so it can sit in bfloat16; full fine-tuning keeps float32 master
    # weights and trains under bfloat16 autocast.
    dtype = torch.bfloat16 if bf16 and config.method == "lora" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    added = apply_chat_template_choice(model, tokenizer, config.chat_template, source)
    return model, tokenizer, added


def _lora_config(config: TrainConfig, added_tokens: list[int]) -> LoraConfig:
    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
        # Tokens new to the vocabulary (the ChatML markers of a base model) must be learnt: their embedding
        # rows (and, through the tie, output rows) train beside the adapters.
        trainable_token_indices=added_tokens or None,
    )


# The frozen (resized) matrix under PEFT's trainable-token wrappers, as named in the state dict.
_FROZEN_EMBEDDING = "token_adapter.base_layer.weight"


class _NewTokensSFTTrainer(SFTTrainer):
    """The SFTTrainer of a LoRA run whose vocabulary grew: PEFT trains the new tokens' rows.

    TRL computes the loss with a fused LM head that reads the head's weight matrix directly, which
    skips PEFT's trainable-token rows: tokens added to the vocabulary would never learn to be
    predicted. This trainer takes the ordinary causal-LM loss instead (the same masked labels,
    without TRL's extra entropy and accuracy metrics).

    Its checkpoints leave out the resized embedding matrix that PEFT would otherwise store in full
    (twice where input and output are tied): a resumed run rebuilds it identically (same added
    tokens, same starting rows), and the trained rows are in the adapter's own deltas.
    """

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        if state_dict is None and isinstance(self.model, PeftModel):
            state_dict = {k: v for k, v in self.model.state_dict().items() if not k.endswith(_FROZEN_EMBEDDING)}
        with warnings.catch_warnings():
            # PEFT announces it will save the resized matrix; the state dict above leaves it out.
            warnings.filterwarnings("ignore", message="Setting `save_embedding_layers`", category=UserWarning)
            super()._save(output_dir, state_dict)

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        inputs["use_cache"] = False
        return Trainer.compute_loss(
            self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )


def build_trainer(
    config: TrainConfig,
    examples: list[dict[str, list[dict[str, str]]]],
    output_dir: Path,
    callbacks: list[TrainerCallback] | None = None,
) -> SFTTrainer:
    """The SFTTrainer of a run: model, tokenizer with its chat template, LoRA (or not), prompt-masked data."""
    if not examples:
        raise TrainingDataError("the dataset version has no rows to train on")
    args = _sft_args(config, output_dir)
    model, tokenizer, added = _load_model(config, bool(args.bf16))
    trainer_class = _NewTokensSFTTrainer if added and config.method == "lora" else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=_lora_config(config, added) if config.method == "lora" else None,
        callbacks=callbacks,
    )
    # With tqdm off the trainer prints every log dict; the run prints its own progress lines.
    trainer.remove_callback(PrinterCallback)
    return trainer


def _published_dtype(source: str) -> torch.dtype | None:
    """The floating-point dtype a model folder's config.json declares (``dtype``, formerly ``torch_dtype``)."""
    try:
        declared = json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = declared.get("dtype") or declared.get("torch_dtype") if isinstance(declared, dict) else None
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else None


def _save_final(trainer: SFTTrainer, config: TrainConfig, folder: Path, record: dict[str, Any]) -> None:
    """Write the trained model as a self-contained HF folder: full weights, tokenizer, chat template.

    The weights are stored in the precision the base model was published in (bfloat16 for most):
    float32 training weights would double the size for no gain at inference.
    """
    model: Any = trainer.model
    if config.method == "lora":
        model = model.merge_and_unload()
    dtype = _published_dtype(config.base_model)
    if dtype is not None:
        model = model.to(dtype)
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(str(folder))
    tokenizer: Any = trainer.processing_class  # the tokenizer build_trainer passed in
    tokenizer.save_pretrained(str(folder))
    (folder / TRAIN_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _fetch_resume_point(trainer: SFTTrainer, checkpoints: RunCheckpoints, dest: Path, say: Progress) -> Path | None:
    """Download the latest intact checkpoint into ``dest`` (once per machine); None to start from step 0."""

    def skipped(step: int, reason: str) -> None:
        say(f"checkpoint step {step} is unusable ({reason}); trying an earlier one")

    with trainer.args.main_process_first(local=True, desc="download checkpoint"):
        if trainer.args.local_process_index == 0:
            checkpoints.download_latest(dest, on_skip=skipped)
    return dest if (dest / TRAINER_STATE).is_file() else None


def _checkpoint_step(folder: Path) -> int:
    return int(json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"])


def _logged_losses(state: TrainerState) -> list[tuple[int, float]]:
    return [(int(e["step"]), float(e["loss"])) for e in state.log_history if "loss" in e and "step" in e]


def train(
    config: TrainConfig,
    store: ObjectStore,
    *,
    work_dir: Path,
    resume: bool = True,
    progress: Progress = _print,
) -> TrainResult:
    """Run (or continue, or recognise as done) the training the config describes; see the module docstring.

    work_dir: local scratch space for the trainer's own checkpoints and the final folder; anything
    of this run already there is discarded, since the store is the record.
    resume: continue from the highest complete checkpoint; False starts over and hides the run's
    earlier checkpoints (a new attempt).
    """
    dataset = load_version(store, config.dataset.name, config.dataset.pinned)
    run = config.run_id(dataset.version)
    checkpoints = RunCheckpoints(store, config.output, run)
    run_dir = Path(work_dir) / config.output / run
    output_dir = run_dir / "trainer"

    args = _sft_args(config, output_dir)  # also sets up the distributed state under accelerate
    main = _is_main(args)
    say: Progress = progress if main else (lambda _line: None)
    if main:
        checkpoints.begin(fresh=not resume)
        if run_dir.exists():
            shutil.rmtree(run_dir)
    _barrier(args)
    if not main:
        checkpoints.join()

    final = checkpoints.final_marker()
    if final is not None:
        say(f"run {run} already trained: final model at {checkpoints.final_prefix}")
        return TrainResult(
            model=config.output,
            run=run,
            dataset=dataset.name,
            dataset_version=dataset.version,
            final_key=checkpoints.final_prefix,
            steps=int(final.get("steps", 0)),
            already_trained=True,
            losses=[(int(s), float(v)) for s, v in final.get("losses", [])],
        )

    examples = to_prompt_completion(dataset.rows)
    say(
        f"run {run}: {config.method} fine-tuning of {config.base_model} -> {config.output}, "
        f"dataset {dataset.name}@{dataset.version} ({len(examples)} rows)"
    )
    steps = _StepBar()

    def over_the_bar(line: str) -> None:
        """On a terminal the run's lines are written above the live bar, not through it."""
        if steps.bar is not None and steps.bar.terminal:
            steps.bar.write(line, file=sys.stdout)
        else:
            _print(line)

    if progress is _print and main:
        say = over_the_bar
    trainer = build_trainer(
        config, examples, output_dir, callbacks=[_StoreCheckpoints(checkpoints, say), _PrintProgress(say), steps]
    )
    prepared: Any = trainer.train_dataset  # a datasets.Dataset after TRL's preparation
    kept = len(prepared) if prepared is not None else 0
    if kept == 0:
        raise TrainingDataError(
            f"none of the {len(examples)} rows of {dataset.name}@{dataset.version} has an answer token within "
            f"training.max_seq_length={config.training.max_seq_length} tokens: raise it"
        )
    if kept < len(examples):
        say(f"{len(examples) - kept} rows left out: no answer token fits in max_seq_length")

    resume_from = _fetch_resume_point(trainer, checkpoints, run_dir / "resume", say) if resume else None
    resumed_step: int | None = None
    if resume_from is not None:
        resumed_step = _checkpoint_step(resume_from)
        say(f"resumed from step {resumed_step} ({checkpoints.step_prefix(resumed_step)})")

    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    elapsed = time.perf_counter() - started
    state = trainer.state
    losses = _logged_losses(state)
    if not losses or not all(math.isfinite(v) for _, v in losses):
        raise FloatingPointError(f"run {run}: the training loss is not finite: {losses[-5:]}")
    say(f"trained to step {state.global_step}/{state.max_steps} in {elapsed:.0f}s, final loss {losses[-1][1]:.4f}")

    record: dict[str, Any] = {
        "model": config.output,
        "run": run,
        "base_model": config.base_model,
        "method": config.method,
        "dataset": {"name": dataset.name, "version": dataset.version},
        "steps": state.global_step,
        "losses": losses,
        "config": config.model_dump(mode="json"),
    }
    _barrier(trainer.args)
    if main:
        folder = run_dir / "final"
        _save_final(trainer, config, folder, record)
        marker = checkpoints.save_final(folder, {"steps": state.global_step, "losses": losses})
        size = sum(int(f["bytes"]) for f in marker["files"].values())
        say(f"final model: {size / 1e6:.1f} MB -> {checkpoints.final_prefix}")
    _barrier(trainer.args)
    return TrainResult(
        model=config.output,
        run=run,
        dataset=dataset.name,
        dataset_version=dataset.version,
        final_key=checkpoints.final_prefix,
        steps=state.global_step,
        resumed_from=resumed_step,
        train_loss=float(output.training_loss),
        losses=losses,
    )
