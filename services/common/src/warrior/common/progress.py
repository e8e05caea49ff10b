"""Progress a person can read: a live bar on a terminal, plain lines everywhere else.

On a terminal (stderr is a TTY) :class:`ProgressBar` draws tqdm's bar: count, percentage, elapsed
time, ETA and rate. Anywhere else (a log file, CI, a pod) it writes one plain line when the work
starts, every ``every_percent`` percent, at most every ``every_s`` seconds while something moves
(a heartbeat every ``heartbeat_s`` when nothing does) and when it ends::

    campaign demo: 12/40 instructions (30%) [00:21<00:49, 0.57 instructions/s] kept 9 battles 14

In a process that logs JSON (the services, see :mod:`warrior.common.logs`) those lines are log
records of the ``warrior.progress`` logger, with ``done`` and ``total`` fields.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from types import TracebackType
from typing import IO, Any

from tqdm import tqdm  # type: ignore[import-untyped]

from warrior.common.logs import json_active

__all__ = ["ProgressBar", "ProgressCallback", "rate_text"]

log = logging.getLogger("warrior.progress")

# tqdm's own layout (the postfix carries its leading comma), with a rate that reads well when slow.
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_text}{postfix}]"
_BAR_NO_TOTAL = "{desc}: {n_fmt} {unit} [{elapsed}, {rate_text}{postfix}]"
_LINE = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_text}{postfix}]"
_LINE_NO_TOTAL = "{desc}: {n_fmt} {unit} [{elapsed}, {rate_text}{postfix}]"


def rate_text(rate: float | None, unit: str) -> str:
    """``2.50 steps/s``, ``12.0 steps/min`` or ``3.0 steps/h``: per second unless that rounds to nothing."""
    if not rate:
        return f"? {unit}/s"
    if rate >= 1:
        return f"{rate:.2f} {unit}/s"
    if rate * 60 >= 1:
        return f"{rate * 60:.1f} {unit}/min"
    return f"{rate * 3600:.1f} {unit}/h"


def _columns(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return 0


class _Bar(tqdm):  # type: ignore[misc]
    @property
    def format_dict(self) -> dict[str, Any]:
        d = dict(super().format_dict)
        rate = d.get("rate")
        if rate is None and d.get("elapsed") and d["n"] > d.get("initial", 0):
            rate = (d["n"] - d.get("initial", 0)) / d["elapsed"]
        d["rate_text"] = rate_text(rate, self.unit)
        return d


class ProgressBar:
    """Progress of `total` units of work (None: not known yet), shown as a bar or as plain lines.

    `terminal`: force the bar (True) or the lines (False); by default, the bar when `stream` (stderr)
    is a TTY. Use :meth:`update_to` with the count done so far, :meth:`write` for a message (above
    the bar on a terminal), and :meth:`close` (or a ``with`` block) at the end.
    """

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        unit: str = "it",
        initial: int = 0,
        stream: IO[str] | None = None,
        terminal: bool | None = None,
        every_s: float = 5.0,
        every_percent: float = 10.0,
        heartbeat_s: float = 60.0,
    ) -> None:
        self.description, self.unit = description, unit
        self.total = total if total else None
        self.done = self._initial = initial
        self.postfix: str | None = None
        self._stream = stream if stream is not None else sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self.terminal = bool(isatty and isatty()) if terminal is None else terminal
        self._every_s, self._every_percent, self._heartbeat_s = every_s, every_percent, heartbeat_s
        self._started = time.monotonic()
        self._last_line: tuple[float, int, float] | None = None  # (when, count, percent) of the last plain line
        self._closed = False
        self._bar: _Bar | None = None
        if self.terminal:
            # Follow the terminal's width; one that reports none (a fresh pseudo-terminal) gets 100 columns.
            sized = _columns(self._stream) > 0
            self._bar = _Bar(
                total=self.total, initial=initial, desc=description, unit=unit, file=self._stream,
                dynamic_ncols=sized, ncols=None if sized else 100, smoothing=0.1, mininterval=0.2,
                bar_format=_BAR if self.total else _BAR_NO_TOTAL,
            )  # fmt: skip

    # -- the caller's side ---------------------------------------------------------------------
    def update_to(self, done: int, total: int | None = None, postfix: str | None = None) -> None:
        """`done` units of work finished so far (of `total`, when it changed); `postfix` follows the counts."""
        if total and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.bar_format = _BAR
        self.done = done
        self.postfix = postfix
        if self._bar is not None:
            self._bar.set_postfix_str(postfix or "", refresh=False)
            self._bar.n = done
            self._bar.refresh()
        elif self._due():
            self._line()

    def write(self, text: str, *, file: IO[str] | None = None) -> None:
        """A message of its own: above the bar on a terminal, a line (or a log record) otherwise."""
        if self._bar is not None:
            self._bar.write(text, file=file or self._stream)
        elif json_active() and file is None:
            log.info("%s", text)
        else:
            out = file or self._stream
            out.write(text + "\n")
            out.flush()

    def close(self) -> None:
        """The last word: the bar left at its final count, or a final plain line."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.n = self.done
            self._bar.close()
        elif self._last_line is None or self._last_line[1] != self.done:
            self._line()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- plain lines ---------------------------------------------------------------------------
    def _percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0

    def _due(self) -> bool:
        if self._last_line is None:
            return True
        when, count, percent = self._last_line
        waited = time.monotonic() - when
        if count == self.done:
            return waited >= self._heartbeat_s
        crossed = self.total is not None and int(self._percent() // self._every_percent) > int(
            percent // self._every_percent
        )
        return crossed or waited >= self._every_s or (self.total is not None and self.done >= self.total)

    def text(self) -> str:
        """The plain line for the progress so far."""
        elapsed = time.monotonic() - self._started
        rate = (self.done - self._initial) / elapsed if elapsed > 0 and self.done > self._initial else None
        total = self.total if self.total else None
        line = tqdm.format_meter(
            self.done, total, elapsed, unit=self.unit, rate=rate, initial=self._initial, prefix=self.description,
            postfix=self.postfix, bar_format=_LINE if total else _LINE_NO_TOTAL, rate_text=rate_text(rate, self.unit),
        )  # fmt: skip
        return str(line)

    def _line(self) -> None:
        line = self.text()
        self._last_line = (time.monotonic(), self.done, self._percent())
        if json_active():
            log.info("%s", line, extra={"done": self.done, "total": self.total})
        else:
            self._stream.write(line + "\n")
            self._stream.flush()


class ProgressCallback:
    """A ``progress(done, total)`` callback whose ProgressBar appears at the first call (work that turns
    out to be done already shows nothing); a ``with`` block closes it."""

    def __init__(self, description: str, *, unit: str = "it", **options: Any) -> None:
        self.description, self.unit, self.options = description, unit, options
        self.bar: ProgressBar | None = None

    def __call__(self, done: int, total: int | None = None, postfix: str | None = None) -> None:
        if self.bar is None:
            self.bar = ProgressBar(self.description, total, unit=self.unit, **self.options)
        self.bar.update_to(done, total, postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> ProgressCallback:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
