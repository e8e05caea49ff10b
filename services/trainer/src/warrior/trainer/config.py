"""The training file: one YAML document that says what to fine-tune on which dataset version, and how.

The same file drives a run on a laptop CPU (``warrior-train --config FILE``), on GPUs
(``accelerate launch -m warrior.trainer.main --config FILE``) and in the Celery worker. Every key is
checked before anything is loaded; an unknown key or a bad value is reported with its key path::

    base_model: models/hf/SmolLM2-135M-Instruct   # a Hugging Face model folder
    output: smollm2-arena                           # the trained model's name (object keys use it)
    dataset: {name: arena, version: latest}         # a committed dataset version in the object store
    method: lora                                    # lora | full
    lora: {r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}
    chat_template: auto                             # auto: the tokenizer's own | chatml
    training:
      epochs: 1                # ignored when max_steps is set
      max_steps: null
      learning_rate: 2.0e-4
      per_device_batch_size: 4
      gradient_accumulation_steps: 4
      max_seq_length: 1024
      save_steps: 100
      seed: 0
      bf16: auto               # on where CUDA supports bfloat16

The run id (see :meth:`TrainConfig.run_id`) is a hash of everything that changes what is trained,
so rerunning the same file on the same dataset version finds the checkpoints of the first attempt.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from warrior.common.campaign_config import MAX_INT, ConfigError, describe_errors, read_text, read_yaml
from warrior.common.ids import content_hash

__all__ = [
    "DatasetRef",
    "LoraSettings",
    "TrainConfig",
    "TrainConfigError",
    "TrainingSettings",
    "load_train_config",
    "parse_train_config",
]

# Names that end up in object keys: checkpoints/<output>/<run>/...
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_DATASET_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_VERSION = r"^(latest|[A-Za-z0-9][A-Za-z0-9._-]{0,62})$"
_MODULE = re.compile(r"[A-Za-z0-9_.]+")

# Keys that only change how a run reports and checkpoints, never what it trains.
_OPERATIONAL_KEYS = frozenset({"save_steps", "logging_steps"})


class TrainConfigError(ConfigError):
    """A training file that cannot be used; the message names the file and the offending key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetRef(_Strict):
    """A dataset version in the object store (``datasets/<name>/<version>/manifest.json``)."""

    name: str = Field(pattern=_DATASET_NAME)
    version: str = Field("latest", pattern=_VERSION)

    @property
    def pinned(self) -> str | None:
        """The version to read, or None for the latest committed one."""
        return None if self.version == "latest" else self.version


class LoraSettings(_Strict):
    """Low-rank adapters (PEFT LoRA); merged into full weights at the end of a run."""

    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1, le=4096)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    # "all-linear": every linear layer except the output head; or a list of module names.
    target_modules: Literal["all-linear"] | list[str] = "all-linear"

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one module name, or 'all-linear'")
            bad = [m for m in value if not _MODULE.fullmatch(m)]
            if bad:
                raise ValueError(f"module names are letters, digits, '_' and '.'; got {bad}")
            if len(set(value)) != len(value):
                raise ValueError("module names must be unique")
        return value


class TrainingSettings(_Strict):
    """Optimisation and checkpointing; batch sizes are per device (GPU or the CPU)."""

    epochs: float = Field(1.0, gt=0.0, le=1000.0)
    max_steps: int | None = Field(None, ge=1, le=MAX_INT)  # when set, wins over epochs
    learning_rate: float = Field(2e-4, gt=0.0, lt=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0, lt=1.0)
    per_device_batch_size: int = Field(4, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096)
    max_seq_length: int = Field(1024, ge=16, le=1_048_576)
    save_steps: int = Field(100, ge=1, le=MAX_INT)
    logging_steps: int = Field(10, ge=1, le=MAX_INT)
    # transformers' set_seed hands it to numpy, which takes 32-bit seeds only.
    seed: int = Field(0, ge=0, le=2**32 - 1)
    bf16: Literal["auto", True, False] = "auto"
    # Recompute activations in the backward pass: much less memory, about a fifth slower.
    gradient_checkpointing: bool = True


class TrainConfig(_Strict):
    """A whole training file; see the module docstring for an example."""

    base_model: str = Field(min_length=1)
    output: str = Field(pattern=_NAME)
    dataset: DatasetRef
    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    chat_template: Literal["auto", "chatml"] = "auto"
    training: TrainingSettings = TrainingSettings()

    @model_validator(mode="after")
    def _lora_only_with_lora(self) -> TrainConfig:
        if self.method == "full" and "lora" in self.model_fields_set:
            raise ValueError("'lora' settings apply to method 'lora' only; remove them for method 'full'")
        return self

    def to_file(self) -> dict[str, Any]:
        """The config as a training file's keys, which `parse_train_config` reads back to the same config
        (a full fine-tuning's file has no `lora` section: it would be refused)."""
        return self.model_dump(mode="json", exclude={"lora"} if self.method == "full" else None)

    def run_id(self, dataset_version: str) -> str:
        """The run's id: a hash of the settings that change what is trained and of the dataset version.

        ``dataset_version`` is the resolved version, never "latest": rerunning a file that says
        ``latest`` continues the earlier run while no newer version was published, and starts a new
        run on the new data once one was. Checkpoint cadence and logging do not count, so changing
        ``save_steps`` keeps the run.
        """
        data = self.model_dump(mode="json")
        data["dataset"] = {"name": self.dataset.name, "version": dataset_version}
        data["training"] = {k: v for k, v in data["training"].items() if k not in _OPERATIONAL_KEYS}
        if self.method == "full":
            data.pop("lora")
        return "r-" + content_hash(data, length=12)


def parse_train_config(data: Any, source: str = "<config>") -> TrainConfig:
    """Validate a loaded document; every problem is listed with its key path."""
    if not isinstance(data, dict):
        raise TrainConfigError(f"{source}: a training config is a mapping of keys, got {type(data).__name__}")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError(f"{source}: {describe_errors(exc)}") from None


def parse_train_yaml(text: str, source: str = "<config>") -> TrainConfig:
    """Validate a training config given as YAML text."""
    return parse_train_config(read_yaml(text, source, TrainConfigError), source)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML file."""
    path = Path(path)
    return parse_train_yaml(read_text(path, "training config", TrainConfigError), str(path))
