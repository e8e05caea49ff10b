"""The flywheel file: which campaign to run, which model to train on its winners, how to evaluate it.

    flywheel: demo-flywheel                # id; names the records under flywheel/<id>/ in the store
    campaign: demo.yaml                    # the campaign config (relative to this file)
    target:
      name: smollm2-135m-arena             # the trained model's expert name
      base_expert: smollm2-135m            # the campaign's expert whose model is trained
      base_model: ../models/hf/SmolLM2-135M-Instruct   # its Hugging Face folder (relative to this file)
    train: {method: lora, training: {max_steps: 30}}    # any training-file keys but base_model/output/dataset
    evaluate: {benchmarks: [humaneval], limit: 20}
    followup: {per_expert: 2}
    turns: 1                               # turns of the loop; each trains the previous turn's model
    ablations: [llm-only, random]          # turn 1's target also trained on the same rows, other winners

Every key is checked before anything starts, the campaign file and the training keys included.

Turn 1 trains `target.base_model` on the campaign's dataset into `target.name`; turn k > 1 trains
turn k-1's model on the dataset of turn k-1's follow-up campaign into `<target.name>-t<k>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from warrior.common.campaign_config import (
    CampaignConfig,
    ConfigError,
    describe_errors,
    load_campaign_config,
    read_text,
    read_yaml,
)
from warrior.trainer.config import TrainConfig, parse_train_config

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _path(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a path cannot contain a NUL character")
    return value


class TargetConfig(_Strict):
    name: str = Field(pattern=_NAME)
    base_expert: str = Field(pattern=_NAME)
    base_model: str = Field(min_length=1)

    _base_model_path = field_validator("base_model")(_path)


class EvaluateConfig(_Strict):
    benchmarks: list[Literal["humaneval", "mbpp"]] = Field(["humaneval"], min_length=1)
    limit: int | None = Field(20, ge=1, le=1_000_000)  # problems per benchmark (None: all)
    max_tokens: int = Field(384, ge=16, le=8192)
    timeout_s: float = Field(10.0, gt=0.0, le=600.0)
    memory_mb: int = Field(512, ge=64, le=65536)
    workers: int = Field(2, ge=1, le=64)


class FollowupConfig(_Strict):
    per_expert: int = Field(2, ge=1, le=100_000)


class FlywheelConfig(_Strict):
    flywheel: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    campaign: str = Field(min_length=1)
    target: TargetConfig
    train: dict[str, Any] = Field(default_factory=dict)
    gguf_type: Literal["f16", "bf16", "f32", "q8_0"] = "f16"
    evaluate: EvaluateConfig = EvaluateConfig()
    followup: FollowupConfig = FollowupConfig()
    turns: int = Field(1, ge=1, le=50)
    # Turn 1's target trained again on the same rows with other winners, to show what the verdicts add:
    # `llm-only` (winners from the LLM judges alone; needs battle.shadow_judging) and `random`.
    ablations: list[Literal["llm-only", "random"]] = Field(default_factory=list)

    _campaign_path = field_validator("campaign")(_path)

    @model_validator(mode="after")
    def _train_keys_are_ours(self) -> FlywheelConfig:
        taken = sorted({"base_model", "output", "dataset"} & set(self.train))
        if taken:
            raise ValueError(f"train.{taken[0]} is set by the flywheel (target and campaign); remove it")
        return self

    @field_validator("ablations")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"ablations must be distinct, got {value}")
        return value

    def ablation_name(self, kind: str) -> str:
        """The expert name of turn 1's target trained on an ablation's rows: `<target.name>-<kind>`."""
        return f"{self.target.name}-{kind}"

    def trained_name(self, turn: int) -> str:
        """The expert name of the model trained in a turn (1-based): `target.name`, then `<name>-t<k>`."""
        return self.target.name if turn == 1 else f"{self.target.name}-t{turn}"

    def train_config(
        self, dataset: str, version: str, *, base_model: str | None = None, output: str | None = None
    ) -> TrainConfig:
        """The training file for the target (or, in a later turn, `base_model` into `output`) on a dataset version."""
        data = dict(self.train) | {
            "base_model": base_model or self.target.base_model,
            "output": output or self.target.name,
            "dataset": {"name": dataset, "version": version},
        }
        return parse_train_config(data, "flywheel train")


class Flywheel:
    """A validated flywheel file with its campaign config loaded."""

    def __init__(self, config: FlywheelConfig, campaign: CampaignConfig, source: Path) -> None:
        self.config = config
        self.campaign = campaign
        self.source = source

    @property
    def id(self) -> str:
        return self.config.flywheel


def load_flywheel(path: str | Path, *, local_model: bool = True) -> Flywheel:
    """Read and validate a flywheel file, its campaign file and its training keys. `local_model`:
    target.base_model must be a folder here (it is elsewhere when the trainer runs on a cluster)."""
    path = Path(path)
    data = read_yaml(read_text(path, "flywheel config"), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a flywheel config is a mapping of keys, got {type(data).__name__}")
    try:
        config = FlywheelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc)}") from None
    here = path.parent
    config = config.model_copy(
        update={
            "campaign": str((here / config.campaign).resolve()),
            "target": config.target.model_copy(update={"base_model": str((here / config.target.base_model).resolve())}),
        }
    )
    try:
        campaign = load_campaign_config(config.campaign)
    except ConfigError as exc:  # names the campaign file and its key; this says which flywheel key led there
        raise ConfigError(f"{path}: campaign: {exc}") from None
    if config.target.base_expert not in campaign.expert_names:
        raise ConfigError(
            f"{path}: target.base_expert {config.target.base_expert!r} is not an expert of {config.campaign} "
            f"({', '.join(campaign.expert_names)})"
        )
    names = [config.trained_name(turn) for turn in range(1, config.turns + 1)]
    names += [config.ablation_name(kind) for kind in config.ablations]
    if config.target.name in campaign.expert_names:
        raise ConfigError(f"{path}: target.name {config.target.name!r} is already an expert of the campaign")
    taken = [name for name in names[1:] if name in campaign.expert_names or len(name) > 63]
    if taken:
        raise ConfigError(f"{path}: turn model name {taken[0]!r} is taken by the campaign or too long: shorten "
                          "target.name")  # fmt: skip
    battle = campaign.battle
    if "llm-only" in config.ablations and (battle.verdict != "execution-first" or not battle.shadow_judging):
        raise ConfigError(
            f"{path}: ablations: llm-only needs the campaign's battle.verdict execution-first and "
            "battle.shadow_judging true (so that the LLM judges also rule the pairs execution decides)"
        )
    if local_model and not Path(config.target.base_model).is_dir():
        raise ConfigError(f"{path}: target.base_model {config.target.base_model} is not a folder (run `make install`)")
    try:
        config.train_config(campaign.dataset.name, "latest")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Flywheel(config, campaign, path)
