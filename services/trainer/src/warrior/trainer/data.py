"""Training examples from a dataset version, in TRL's conversational prompt-completion format.

A dataset row holds ``messages`` (a user instruction and the assistant answer that won its battle)
and ``lineage``. The trainer turns it into ``{"prompt": [<every turn but the last>], "completion":
[<the assistant turn>]}``: TRL renders both with the chat template and masks the prompt's tokens
out of the loss (``completion_only_loss``), so the model learns to write answers, not to repeat
instructions. That works with any chat template, including ones without ``{% generation %}``
markers, which TRL's ``assistant_only_loss`` would need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from warrior.common.store import ObjectStore
from warrior.dataset_builder.versions import DatasetCorrupt, read_manifest, read_rows

__all__ = ["DatasetVersion", "TrainingDataError", "load_version", "to_prompt_completion"]

_ROLES = frozenset({"system", "user", "assistant"})


class TrainingDataError(ValueError):
    """A dataset row that cannot be trained on; the message names the row."""


@dataclass(frozen=True)
class DatasetVersion:
    """A committed dataset version and its rows."""

    name: str
    version: str
    manifest: dict[str, Any]
    rows: list[dict[str, Any]]


def load_version(store: ObjectStore, name: str, version: str | None) -> DatasetVersion:
    """Read a dataset version (the latest committed one for None), each shard checked against its sha256.

    Raises DatasetNotFound when there is no such committed version, TrainingDataError when what is
    stored does not hold together (a tampered manifest or shard), StoreError when the store fails.
    """
    try:
        manifest = read_manifest(store, name, version)
        rows = read_rows(store, manifest)
    except DatasetCorrupt as exc:
        raise TrainingDataError(f"dataset {name!r} version {version or 'latest'!r}: {exc}") from None
    return DatasetVersion(name=name, version=str(manifest["version"]), manifest=manifest, rows=rows)


def _row_name(row: Mapping[str, Any], index: int) -> str:
    lineage = row.get("lineage")
    if isinstance(lineage, Mapping) and lineage.get("instruction_id"):
        return f"row {index} (instruction {lineage['instruction_id']})"
    return f"row {index}"


def to_prompt_completion(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, list[dict[str, str]]]]:
    """Every row as ``{"prompt": [...], "completion": [assistant turn]}``; a malformed row raises.

    The last message must be the assistant's answer and at least one turn must precede it.
    """
    examples: list[dict[str, list[dict[str, str]]]] = []
    for index, row in enumerate(rows):
        messages = row.get("messages")
        where = _row_name(row, index)
        if not isinstance(messages, list) or len(messages) < 2:
            raise TrainingDataError(f"{where}: 'messages' must list at least a user turn and an assistant turn")
        turns: list[dict[str, str]] = []
        for turn in messages:
            valid = isinstance(turn, Mapping) and turn.get("role") in _ROLES and isinstance(turn.get("content"), str)
            if not valid:
                raise TrainingDataError(f"{where}: every message needs a role ({sorted(_ROLES)}) and text content")
            turns.append({"role": str(turn["role"]), "content": str(turn["content"])})
        if turns[-1]["role"] != "assistant":
            raise TrainingDataError(f"{where}: the last message must be the assistant's answer")
        examples.append({"prompt": turns[:-1], "completion": turns[-1:]})
    return examples
