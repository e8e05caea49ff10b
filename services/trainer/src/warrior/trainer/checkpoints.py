"""Training checkpoints in the object store, each one committed by a ``_COMPLETE`` marker written last.

Layout::

    checkpoints/<model>/<run>/attempt.json              the attempt the run's checkpoints belong to
    checkpoints/<model>/<run>/step-<n>/<files>          what the trainer saved at optimizer step n
    checkpoints/<model>/<run>/step-<n>/_COMPLETE        {"attempt", "step", "files": {path: {sha256, bytes}}}
    checkpoints/<model>/<run>/final/<files>             the trained model as full weights (LoRA merged)
    checkpoints/<model>/<run>/final/_COMPLETE

A folder is uploaded file by file and its marker goes up only after every file is stored, so a
writer killed half way leaves a folder without a marker, which every reader ignores. The marker
lists each file's sha256, and downloads are checked against it.

``attempt.json`` separates a fresh start (``--no-resume``) from what an earlier attempt left
behind: the store cannot delete, so a fresh attempt writes a new attempt id, and only markers
carrying the current id count. A plain rerun keeps the id and picks up the highest complete step.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from warrior.common.store import ObjectNotFound, ObjectStore, validate_key

__all__ = [
    "MARKER",
    "CheckpointError",
    "RunCheckpoints",
    "download_folder",
    "read_marker",
    "upload_files",
    "upload_folder",
]

MARKER = "_COMPLETE"
_STEP = re.compile(r"^step-(\d+)$")
# Files the trainer writes that a resumed run or a server never reads.
_SKIP_NAMES = frozenset({"README.md"})


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not match its marker."""


def _folder_files(local_dir: Path) -> list[tuple[str, Path]]:
    """(relative key, path) of every regular file under ``local_dir``, sorted; hidden names skipped."""
    found: list[tuple[str, Path]] = []
    for path in sorted(local_dir.rglob("*")):
        rel = path.relative_to(local_dir)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts) or rel.name in _SKIP_NAMES:
            continue
        found.append((rel.as_posix(), path))
    return found


def upload_files(
    store: ObjectStore, prefix: str, files: Iterable[tuple[str, Path]], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """Upload ``files`` ((relative key, local path) pairs) under ``prefix`` (ending in '/'), then the marker.

    ``meta`` is stored in the ``_COMPLETE`` marker beside the file list. Returns the marker.
    """
    if not prefix.endswith("/"):
        raise ValueError(f"prefix {prefix!r} must end with '/'")
    listed: dict[str, dict[str, Any]] = {}
    for rel, path in files:
        data = path.read_bytes()
        store.put(validate_key(prefix + rel), data)
        listed[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if not listed:
        raise CheckpointError(f"nothing to upload under {prefix}")
    marker = {**meta, "files": listed, "completed_at": time.time()}
    store.put_json(prefix + MARKER, marker)
    return marker


def upload_folder(store: ObjectStore, prefix: str, local_dir: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Upload every file of ``local_dir`` under ``prefix`` (ending in '/'), then its ``_COMPLETE`` marker."""
    if not local_dir.is_dir():
        raise CheckpointError(f"nothing to upload: {local_dir} is not a folder")
    return upload_files(store, prefix, _folder_files(local_dir), meta)


def read_marker(store: ObjectStore, prefix: str) -> dict[str, Any] | None:
    """The ``_COMPLETE`` marker of the folder at ``prefix``, or None while the folder is not complete."""
    try:
        marker = store.get_json(prefix + MARKER)
    except ObjectNotFound:
        return None
    return dict(marker) if isinstance(marker, dict) else None


def download_folder(store: ObjectStore, prefix: str, dest: Path) -> dict[str, Any]:
    """Download a complete folder into ``dest`` (created), checking every file's sha256; returns its marker."""
    marker = read_marker(store, prefix)
    if marker is None:
        raise CheckpointError(f"{prefix} in {store.url} is not a complete checkpoint (no {MARKER})")
    dest.mkdir(parents=True, exist_ok=True)
    for rel, entry in sorted(marker["files"].items()):
        data = store.get(prefix + rel)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(f"{prefix}{rel} does not match the sha256 in its {MARKER} marker")
        target = dest.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, target)
    return marker


class RunCheckpoints:
    """The checkpoints of one training run: ``checkpoints/<model>/<run>/``.

    Call :meth:`begin` (one process of a run) or :meth:`join` (the others) before anything else.
    """

    def __init__(self, store: ObjectStore, model: str, run: str) -> None:
        self.store = store
        self.model = model
        self.run = run
        self.prefix = validate_key(f"checkpoints/{model}/{run}") + "/"
        self.attempt: str | None = None

    @property
    def attempt_key(self) -> str:
        return self.prefix + "attempt.json"

    @property
    def final_prefix(self) -> str:
        """Where the final model goes: ``checkpoints/<model>/<run>/final/``."""
        return self.prefix + "final/"

    def step_prefix(self, step: int) -> str:
        return f"{self.prefix}step-{step}/"

    def begin(self, *, fresh: bool) -> str:
        """Join the run's current attempt, or with ``fresh`` start a new one that hides all earlier checkpoints."""
        record = {"attempt": uuid.uuid4().hex, "started_at": time.time()}
        if fresh:
            self.store.put_json(self.attempt_key, record)
        else:
            self.store.put_json(self.attempt_key, record, if_absent=True)
        return self.join()

    def join(self) -> str:
        """Adopt the attempt that :meth:`begin` recorded (the other processes of a multi-GPU run)."""
        try:
            self.attempt = str(self.store.get_json(self.attempt_key)["attempt"])
        except ObjectNotFound:
            raise CheckpointError(f"{self.attempt_key} is missing: the run was not begun") from None
        return self.attempt

    def _current_attempt(self) -> str:
        if self.attempt is None:
            raise CheckpointError("begin() or join() the run before using its checkpoints")
        return self.attempt

    def _current(self, marker: Mapping[str, Any] | None) -> bool:
        return marker is not None and marker.get("attempt") == self._current_attempt()

    def complete_steps(self) -> list[int]:
        """Steps of the current attempt whose ``_COMPLETE`` marker exists, ascending."""
        self._current_attempt()
        steps: list[int] = []
        for key in self.store.list(self.prefix + "step-"):
            folder, _, name = key[len(self.prefix) :].partition("/")
            match = _STEP.match(folder)
            if name != MARKER or match is None:
                continue
            if self._current(read_marker(self.store, self.prefix + folder + "/")):
                steps.append(int(match.group(1)))
        return sorted(steps)

    def latest_step(self) -> int | None:
        """The highest complete step of the current attempt, or None when there is none."""
        steps = self.complete_steps()
        return steps[-1] if steps else None

    def save_step(self, step: int, local_dir: Path) -> dict[str, Any]:
        """Upload the trainer's checkpoint folder of ``step``, marker last."""
        meta = {"attempt": self._current_attempt(), "step": step, "model": self.model, "run": self.run}
        return upload_folder(self.store, self.step_prefix(step), local_dir, meta)

    def download_step(self, step: int, dest: Path) -> Path:
        """Download a complete step into ``dest`` and return it."""
        marker = read_marker(self.store, self.step_prefix(step))
        if not self._current(marker):
            raise CheckpointError(f"{self.step_prefix(step)} is not a complete checkpoint of the current attempt")
        download_folder(self.store, self.step_prefix(step), dest)
        return dest

    def download_latest(self, dest: Path, on_skip: Callable[[int, str], None] | None = None) -> int | None:
        """Download the highest complete step that arrives intact into ``dest``; None when there is none.

        A step whose files no longer match its marker (overwritten by a second writer of the same
        run, say) is skipped, ``on_skip(step, reason)`` is told, and the next lower one is tried.
        """
        for step in reversed(self.complete_steps()):
            if dest.exists():
                shutil.rmtree(dest)
            try:
                self.download_step(step, dest)
            except (CheckpointError, ObjectNotFound) as exc:
                shutil.rmtree(dest, ignore_errors=True)  # never resume from half a download
                if on_skip is not None:
                    on_skip(step, str(exc))
                continue
            return step
        return None

    def final_marker(self) -> dict[str, Any] | None:
        """The final model's marker when the current attempt finished, else None."""
        marker = read_marker(self.store, self.final_prefix)
        return marker if self._current(marker) else None

    def save_final(self, local_dir: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Upload the final model folder, marker last."""
        record = {**meta, "attempt": self._current_attempt(), "model": self.model, "run": self.run}
        return upload_folder(self.store, self.final_prefix, local_dir, record)
