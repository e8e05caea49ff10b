"""Checkpoints in the store count only once their _COMPLETE marker exists, and only for the current attempt."""

from __future__ import annotations

from pathlib import Path

import pytest

from warrior.common.store import LocalStore
from warrior.trainer.checkpoints import (
    MARKER,
    CheckpointError,
    RunCheckpoints,
    download_folder,
    read_marker,
    upload_folder,
)


def _folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = root / name
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


@pytest.fixture()
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_upload_writes_every_file_then_a_marker_with_digests(store: LocalStore, tmp_path: Path) -> None:
    folder = _folder(tmp_path, "ckpt", {"model.safetensors": b"weights", "sub/state.json": b"{}", "README.md": b"x"})
    marker = upload_folder(store, "checkpoints/m/r/step-2/", folder, {"step": 2})
    assert store.list("checkpoints/m/r/step-2/") == [
        "checkpoints/m/r/step-2/" + MARKER,
        "checkpoints/m/r/step-2/model.safetensors",
        "checkpoints/m/r/step-2/sub/state.json",
    ]
    assert marker["step"] == 2 and set(marker["files"]) == {"model.safetensors", "sub/state.json"}
    assert read_marker(store, "checkpoints/m/r/step-2/") == marker

    out = download_folder(store, "checkpoints/m/r/step-2/", tmp_path / "back")
    assert out == marker
    assert (tmp_path / "back" / "sub" / "state.json").read_bytes() == b"{}"


def test_download_refuses_a_folder_without_marker_or_with_a_changed_file(store: LocalStore, tmp_path: Path) -> None:
    store.put("checkpoints/m/r/step-4/model.safetensors", b"half written")
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        download_folder(store, "checkpoints/m/r/step-4/", tmp_path / "a")

    upload_folder(store, "checkpoints/m/r/step-6/", _folder(tmp_path, "c", {"w.bin": b"good"}), {})
    store.put("checkpoints/m/r/step-6/w.bin", b"tampered")
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        download_folder(store, "checkpoints/m/r/step-6/", tmp_path / "b")


def test_latest_step_ignores_steps_without_marker(store: LocalStore, tmp_path: Path) -> None:
    run = RunCheckpoints(store, "m", "r-1")
    run.begin(fresh=False)
    assert run.latest_step() is None
    run.save_step(2, _folder(tmp_path, "s2", {"w.bin": b"2"}))
    run.save_step(10, _folder(tmp_path, "s10", {"w.bin": b"10"}))
    # A writer killed while uploading step 12 left files but no marker.
    store.put(run.step_prefix(12) + "w.bin", b"partial")
    assert run.complete_steps() == [2, 10]  # numeric order, not string order
    assert run.latest_step() == 10

    dest = run.download_step(10, tmp_path / "resume" / "checkpoint-10")
    assert (dest / "w.bin").read_bytes() == b"10"
    with pytest.raises(CheckpointError):
        run.download_step(12, tmp_path / "resume" / "checkpoint-12")


def test_a_rerun_joins_the_attempt_and_a_fresh_start_hides_it(store: LocalStore, tmp_path: Path) -> None:
    first = RunCheckpoints(store, "m", "r-1")
    attempt = first.begin(fresh=False)
    first.save_step(4, _folder(tmp_path, "s4", {"w.bin": b"4"}))
    first.save_final(_folder(tmp_path, "final", {"config.json": b"{}"}), {"steps": 4})

    rerun = RunCheckpoints(store, "m", "r-1")
    assert rerun.begin(fresh=False) == attempt
    assert rerun.latest_step() == 4
    assert rerun.final_marker() is not None and rerun.final_marker()["steps"] == 4  # type: ignore[index]

    fresh = RunCheckpoints(store, "m", "r-1")
    assert fresh.begin(fresh=True) != attempt
    assert fresh.latest_step() is None  # step 4 belongs to the discarded attempt
    assert fresh.final_marker() is None

    # Another process of the same (multi-GPU) run adopts the attempt the main process began.
    other = RunCheckpoints(store, "m", "r-1")
    assert other.join() == fresh.attempt


def test_reading_before_begin_is_refused(store: LocalStore) -> None:
    with pytest.raises(CheckpointError, match="begin"):
        RunCheckpoints(store, "m", "r-1").complete_steps()
    with pytest.raises(CheckpointError, match="not begun"):
        RunCheckpoints(store, "m", "r-2").join()


def test_resume_falls_back_to_the_last_step_that_arrives_intact(store: LocalStore, tmp_path: Path) -> None:
    run = RunCheckpoints(store, "m", "r-1")
    run.begin(fresh=False)
    for step in (2, 4, 6):
        run.save_step(step, _folder(tmp_path, f"s{step}", {"a.bin": b"a%d" % step, "trainer_state.json": b"{}"}))
    # Step 6 was overwritten by a second writer after its marker went up; step 4 lost a file.
    store.put(run.step_prefix(6) + "a.bin", b"other bytes")
    (store.root / run.step_prefix(4) / "trainer_state.json").unlink()
    skipped: list[int] = []
    dest = tmp_path / "resume"
    assert run.download_latest(dest, on_skip=lambda step, reason: skipped.append(step)) == 2
    assert skipped == [6, 4]
    assert (dest / "a.bin").read_bytes() == b"a2"

    store.put(run.step_prefix(2) + "a.bin", b"gone bad too")
    assert run.download_latest(dest) is None
    assert not dest.exists()  # nothing half-downloaded is left to resume from
