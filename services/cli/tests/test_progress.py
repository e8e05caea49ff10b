"""`warrior campaign watch` / `start --wait` off a terminal: plain progress lines with counts, rate and ETA."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
import redis

from warrior.cli import campaign as ops
from warrior.cli.main import main
from warrior.common.campaign_state import CampaignState
from warrior.common.runtime import get_runtime


def _campaign(url: str, name: str, expected: int) -> CampaignState:
    state = CampaignState(redis.Redis.from_url(url, decode_responses=True), name)
    assert state.create({"campaign": name, "experts": []}, expected)
    return state


def _work(state: CampaignState, upto: int) -> None:
    """Instructions mined, screened, kept (every third dropped) and battled to the end, one at a time."""
    for i in range(upto):
        iid = f"i{i}"
        for stage in ("mine_done", "mined", "screened"):
            state.mark(stage, iid)
        if i % 3 != 2:
            state.mark("kept", iid)
            state.mark("battled", iid)
            state.mark("finished", iid)


def test_watch_off_a_terminal_prints_plain_lines_with_counts(
    warrior_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state = _campaign(warrior_env["REDIS_URL"], "watched", 6)
    _work(state, 6)
    state.set_status("finished")
    with pytest.raises(SystemExit) as exited:
        main(["campaign", "watch", "watched", "--timeout", "30"])
    assert exited.value.code == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    line = err.splitlines()[0]
    # Watched once finished: nothing moved while watching, so no rate and no ETA to give.
    assert line.startswith("campaign watched: 6/6 instructions (100%) [00:00<?, ? instructions/s, mined 6/6 "), line
    assert "kept 4 battled 4 done 4/4" in line


def test_wait_follows_the_campaign_to_its_end(warrior_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    state = _campaign(warrior_env["REDIS_URL"], "followed", 30)

    def advance() -> None:
        for upto in range(0, 31, 3):
            _work(state, upto)
            time.sleep(0.02)

    worker = threading.Thread(target=advance)
    worker.start()
    try:
        snap: dict[str, Any] = ops.wait(get_runtime(), "followed", timeout_s=30, interval_s=0.01, until="done")
    finally:
        worker.join()
    assert snap["done"]
    lines = capsys.readouterr().err.splitlines()
    counts = [int(m.group(1)) for m in (re.match(r"campaign followed: (\d+)/30 instructions", x) for x in lines) if m]
    assert counts == sorted(counts) and counts[-1] == 30 and len(counts) >= 3, lines
    assert all(re.search(r"\(\d+%\) \[\d\d:\d\d<(\d\d:\d\d|\?), ", x) for x in lines), lines


class _Build:
    """A build task as its AsyncResult shows it: PROGRESS states, then its manifest."""

    def __init__(self) -> None:
        self.polls = 0
        self.infos = [{"done": d, "total": 40, "step": "reading rows"} for d in range(0, 41, 8)]

    def ready(self) -> bool:
        self.polls += 1
        return self.polls > len(self.infos)

    @property
    def state(self) -> str:
        return "PROGRESS"

    @property
    def info(self) -> dict[str, Any]:
        return self.infos[self.polls - 1]

    def get(self, timeout: float) -> dict[str, Any]:
        return {"name": "ds", "rows": 40}


def test_dataset_build_follows_the_tasks_progress(capsys: pytest.CaptureFixture[str]) -> None:
    manifest = ops.follow(_Build(), "dataset ds", "rows", timeout_s=30, interval_s=0)  # type: ignore[arg-type]
    assert manifest == {"name": "ds", "rows": 40}
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("dataset ds: 0/40 rows (0%) [") and lines[0].endswith(", reading rows]")
    assert lines[-1].startswith("dataset ds: 40/40 rows (100%) [")
