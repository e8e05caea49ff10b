"""Progress output: a live bar with rate and ETA on a terminal, plain counted lines in logs and CI."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import select
from collections.abc import Iterator

import pytest

from warrior.common import logs
from warrior.common.progress import ProgressBar, rate_text


@pytest.fixture()
def text_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process that does not log JSON (the CLI's default)."""
    monkeypatch.setitem(logs._state, "format", "text")
    yield


def _drain(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        chunks.append(os.read(fd, 65536))
    return b"".join(chunks).decode("utf-8", "replace")


def test_on_a_pseudo_terminal_a_bar_with_rate_and_eta(text_logs: None) -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "w", encoding="utf-8", closefd=False) as tty:
            assert tty.isatty()
            with ProgressBar("train", 20, unit="steps", stream=tty) as bar:
                for step in range(1, 21):
                    bar.update_to(step, postfix="loss 1.2345")
                    if step == 10:
                        bar.write("checkpoint step 10")
        output = _drain(master)
    finally:
        os.close(master)
        os.close(slave)
    assert "\r" in output  # drawn in place
    assert re.search(r"train: +50%\|.*\| 10/20 \[\d\d:\d\d<\d\d:\d\d, [\d.]+ steps/s, loss 1\.2345\]", output), output
    assert re.search(r"train: 100%\|.*\| 20/20 ", output), output
    assert "checkpoint step 10\r\n" in output  # a message goes above the bar, not through it


def test_off_a_terminal_plain_lines_with_counts_every_ten_percent(text_logs: None) -> None:
    out = io.StringIO()
    with ProgressBar("evaluate alpha on mbpp", 50, unit="problems", stream=out, every_s=3600) as bar:
        for done in range(1, 51):
            bar.update_to(done, postfix=f"passed {done // 2}")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "|" not in out.getvalue()  # no bar in a log file
    assert len(lines) == 11, lines  # the first, then one each 10%
    assert lines[0].startswith("evaluate alpha on mbpp: 1/50 problems (2%) [")
    assert re.fullmatch(
        r"evaluate alpha on mbpp: 25/50 problems \(50%\) \[\d\d:\d\d<\d\d:\d\d, .+, passed 12\]", lines[5]
    )
    assert lines[-1].startswith("evaluate alpha on mbpp: 50/50 problems (100%)")


def test_off_a_terminal_the_total_may_come_later_and_the_end_is_said(text_logs: None) -> None:
    out = io.StringIO()
    bar = ProgressBar("dataset demo", None, unit="rows", stream=out)
    bar.update_to(3)
    bar.update_to(4)  # within the interval: no line
    bar.write("reading rows")
    bar.update_to(4, total=8)
    bar.close()
    bar.close()
    assert out.getvalue().splitlines()[0].startswith("dataset demo: 3 rows [")
    assert "reading rows" in out.getvalue().splitlines()[1]
    assert out.getvalue().splitlines()[-1].startswith("dataset demo: 4/8 rows (50%)")
    assert len(out.getvalue().splitlines()) == 3


def test_in_a_service_that_logs_json_the_lines_are_log_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    try:
        logs.configure_logging("trainer", stream=out)
        with ProgressBar("train", 4, unit="steps", stream=io.StringIO()) as bar:
            bar.update_to(4)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logs._state["format"] = None
    (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert record["logger"] == "warrior.progress" and record["done"] == 4 and record["total"] == 4
    assert record["message"].startswith("train: 4/4 steps (100%)")


def test_slow_rates_read_per_minute_or_hour() -> None:
    assert rate_text(2.5, "steps") == "2.50 steps/s"
    assert rate_text(0.2, "battles") == "12.0 battles/min"
    assert rate_text(1 / 1200, "campaigns") == "3.0 campaigns/h"
    assert rate_text(None, "rows") == "? rows/s"
