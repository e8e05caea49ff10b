"""One logging set-up for every process of the arena: JSON lines (or text), campaign and task ids, no secrets.

Every entry point calls :func:`configure_logging` once (Celery workers through Celery's own
``setup_logging`` signal, hooked by :func:`install_celery_logging` from ``make_celery``).

* ``WARRIOR_LOG_FORMAT``: ``json`` (default for services) writes one JSON object per line with ``time``
  (UTC, ISO 8601), ``level``, ``service``, ``logger``, ``message``, the ``campaign``, ``instruction``
  and ``task`` ids of the Celery task being run when known, ``exception`` (the traceback) when there
  is one, and any ``extra=`` fields; ``text`` writes ``time level service logger [ids]: message``.
* ``WARRIOR_LOG_LEVEL``: ``DEBUG``, ``INFO`` (default), ``WARNING``, ``ERROR``; an explicit level
  (e.g. the controller's ``--log-level``) wins over it, and it wins over Celery's ``--loglevel``.

Credentials never reach the output: every record's message, arguments and traceback pass through
:func:`scrub`, which masks passwords in URLs (:func:`warrior.common.security.redact_url`), bearer
tokens, and the values of the secret variables of the environment (``AWS_SECRET_ACCESS_KEY``,
``REDIS_PASSWORD``, ``WARRIOR_GRPC_TOKEN``, any ``*_PASSWORD``, ``*_SECRET``, ``*_TOKEN``, ``*_API_KEY``
variable) and the contents of the files their ``*_FILE`` variants name.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from warrior.common.security import redact_url
from warrior.common.settings import SettingsError

__all__ = [
    "FORMAT_ENV",
    "LEVEL_ENV",
    "configure_logging",
    "install_celery_logging",
    "json_active",
    "log_context",
    "scrub",
]

FORMAT_ENV = "WARRIOR_LOG_FORMAT"
LEVEL_ENV = "WARRIOR_LOG_LEVEL"
FORMATS = ("json", "text")
MASK = "***"

# Ids of the work in hand, set around each Celery task (threads and processes each have their own).
_campaign: ContextVar[str | None] = ContextVar("warrior_campaign", default=None)
_instruction: ContextVar[str | None] = ContextVar("warrior_instruction", default=None)
_task: ContextVar[str | None] = ContextVar("warrior_task", default=None)
_CONTEXT_FIELDS = ("campaign", "instruction", "task")


# -- secrets ----------------------------------------------------------------------------------------
SECRET_VARIABLES = frozenset({"AWS_SECRET_ACCESS_KEY", "REDIS_PASSWORD", "WARRIOR_GRPC_TOKEN"})
_SECRET_NAME = re.compile(r"(?:^|_)(?:PASSWORD|PASSWD|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|TOKEN|API_KEY)$")
# Shorter values are not masked: a two-letter "secret" would blank that pair of letters everywhere.
MIN_SECRET_LENGTH = 4
# A token after the scheme as a header spells it ("Bearer x", "authorization: bearer x"); prose such as
# "bearer token required" is left alone.
_BEARER = re.compile(r"((?:\bBearer|\bBEARER|(?i:authorization\W{1,4}bearer))\s+)[^\s\"',;]+")
_RECHECK_S = 1.0


def _is_secret_variable(name: str) -> bool:
    return name in SECRET_VARIABLES or bool(_SECRET_NAME.search(name))


def _file_values(path: str) -> list[str]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(65536)
    except OSError:
        return []
    text = raw.decode("utf-8", "replace")
    # The whole content as a mounted Secret holds it, and each line (a token file holds one token a line).
    return [text.strip(), *(line.strip() for line in text.splitlines())]


def secret_values(env: Mapping[str, str] | None = None) -> set[str]:
    """The secret values of the environment (and of the files its ``*_FILE`` variables name), each also
    percent-encoded as a URL carries it."""
    env = os.environ if env is None else env
    found: set[str] = set()
    for name, value in env.items():
        if name.endswith("_FILE") and _is_secret_variable(name[: -len("_FILE")]):
            found.update(_file_values(value.strip()) if value.strip() else [])
        elif _is_secret_variable(name):
            found.add(value.strip())
    values = {v for v in found if len(v) >= MIN_SECRET_LENGTH}
    return values | {quote(v, safe="") for v in values}


class _Secrets:
    """The environment's secrets as one pattern, looked at again at most once a second (rotated files)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked = -_RECHECK_S
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def pattern(self) -> re.Pattern[str] | None:
        now = time.monotonic()
        if now - self._checked >= _RECHECK_S:
            with self._lock:
                if now - self._checked >= _RECHECK_S:
                    values = frozenset(secret_values())
                    if values != self._values:
                        self._values = values
                        ordered = sorted(values, key=len, reverse=True)  # the longest first
                        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
                    self._checked = now
        return self._pattern


_secrets = _Secrets()


def scrub(text: str) -> str:
    """`text` without credentials: secret variables' values, bearer tokens and URL passwords masked."""
    pattern = _secrets.pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return redact_url(_BEARER.sub(r"\1" + MASK, text))


# -- filters and formatters -------------------------------------------------------------------------
class ContextFilter(logging.Filter):
    """Stamps each record with the service and the ids of the task in hand."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        ids = []
        for field, var in zip(_CONTEXT_FIELDS, (_campaign, _instruction, _task), strict=True):
            if getattr(record, field, None) is None:
                setattr(record, field, var.get())
            if getattr(record, field):
                ids.append(f"{field}={getattr(record, field)}")
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return True


class RedactFilter(logging.Filter):
    """Masks credentials in a record's message and arguments (the formatters mask its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a bad format string: keep what was given
            message = f"{record.msg} {record.args}"
        record.msg, record.args = scrub(message), None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(service)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonLineFormatter(JsonFormatter):
    """One JSON object a line: time, level, service, logger, message, ids when known, exception, extras."""

    _OWN = ("service", "context", *_CONTEXT_FIELDS)

    def __init__(self) -> None:
        super().__init__(reserved_attrs=[*RESERVED_ATTRS, "taskName", *self._OWN])

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["service"] = getattr(record, "service", None)
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for field in _CONTEXT_FIELDS:
            if getattr(record, field, None):
                log_data[field] = getattr(record, field)
        if message_dict.get("exc_info"):
            log_data["exception"] = message_dict.pop("exc_info")
        if message_dict.get("stack_info"):
            log_data["stack"] = message_dict.pop("stack_info")
        for key, value in message_dict.items():
            log_data.setdefault(key, value)
        for key, value in record.__dict__.items():
            if key not in self._skip_fields and not key.startswith("_") and key not in log_data:
                log_data[key] = value

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {k: _scrub_value(v) for k, v in log_data.items()}


def _scrub_value(value: Any) -> Any:
    """Strings masked wherever they sit: Celery's task records carry the task's arguments in `data`."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


# -- set-up -----------------------------------------------------------------------------------------
_state: dict[str, Any] = {"format": None, "service": None}


class _WarriorHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure_logging installs (so a second call replaces it rather than adding one).

    Without a stream of its own it writes to whatever sys.stderr is at the time, as logging's last resort does.
    """

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow:
            self.stream = sys.stderr
        super().emit(record)


def log_format(default: str = "json") -> str:
    value = os.environ.get(FORMAT_ENV, "").strip().lower() or default
    if value not in FORMATS:
        raise SettingsError(f"environment variable {FORMAT_ENV}={value!r} must be one of {', '.join(FORMATS)}")
    return value


def _level(level: str | int | None, default: str | int) -> int:
    chosen: str | int = level if level not in (None, "") else (os.environ.get(LEVEL_ENV, "").strip() or default)
    if isinstance(chosen, int):
        return chosen
    number = logging.getLevelName(chosen.upper())
    if not isinstance(number, int):
        levels = "DEBUG, INFO, WARNING, ERROR"
        raise SettingsError(f"log level {chosen!r} ({LEVEL_ENV} or --log-level) is not one of {levels}")
    return number


def configure_logging(
    service: str,
    *,
    level: str | int | None = None,
    default_level: str | int = "INFO",
    default_format: str = "json",
    stream: IO[str] | None = None,
) -> None:
    """Send every log record of this process (the root logger's) to `stream` (stderr) in the format of
    WARRIOR_LOG_FORMAT (else `default_format`), stamped with `service`, with credentials masked.

    Level: `level` when given, else WARRIOR_LOG_LEVEL, else `default_level`. Calling it again replaces
    the set-up (and leaves handlers others installed alone)."""
    fmt = log_format(default_format)
    handler = _WarriorHandler(stream)
    handler.addFilter(ContextFilter(service))
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WarriorHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level(level, default_level))
    logging.captureWarnings(True)
    _state.update(format=fmt, service=service)


def json_active() -> bool:
    """Whether this process logs JSON lines (its plain progress lines then go through the log too)."""
    return bool(_state["format"] == "json")


class log_context:  # noqa: N801 - used like a function: `with log_context(campaign=..., task=...):`
    """The ids stamped on the records logged inside the block (what Celery tasks get automatically);
    an id not given keeps the value it had (a batch's unit names its instruction, the task's stay)."""

    def __init__(self, *, campaign: str | None = None, instruction: str | None = None, task: str | None = None):
        self._values = (campaign, instruction, task)
        self._tokens: list[tuple[ContextVar[str | None], Any]] = []

    def __enter__(self) -> log_context:
        pairs = zip((_campaign, _instruction, _task), self._values, strict=True)
        self._tokens = [(var, var.set(value)) for var, value in pairs if value is not None]
        return self

    def __exit__(self, *_: object) -> None:
        for var, token in reversed(self._tokens):
            var.reset(token)


# -- Celery ------------------------------------------------------------------------------------------
_signatures: dict[str, inspect.Signature | None] = {}


def task_ids(task: Any, args: Any, kwargs: Any) -> tuple[str | None, str | None]:
    """(campaign, instruction) of a task call: its arguments named `campaign` and `iid`."""
    name = str(getattr(task, "name", ""))
    if name not in _signatures:
        try:
            _signatures[name] = inspect.signature(task.run)
        except (AttributeError, TypeError, ValueError):
            _signatures[name] = None
    signature = _signatures[name]
    if signature is None:
        return None, None
    try:
        bound = signature.bind_partial(*(args or ()), **(kwargs or {})).arguments
    except TypeError:
        return None, None
    campaign, iid = bound.get("campaign"), bound.get("iid")
    return (campaign if isinstance(campaign, str) else None, iid if isinstance(iid, str) else None)


def _on_task_prerun(
    task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    campaign, iid = task_ids(task, args, kwargs)
    _campaign.set(campaign)
    _instruction.set(iid)
    _task.set(task_id)


def _on_task_postrun(**_: Any) -> None:
    _campaign.set(None)
    _instruction.set(None)
    _task.set(None)


def _on_worker_init(instance: Any = None, **_: Any) -> None:
    """The worker's own service: its app is named ``warrior.<service>`` (make_celery)."""
    name = str(getattr(getattr(instance, "app", None), "main", "") or "")
    if name.startswith("warrior."):
        _state["celery_service"] = name.removeprefix("warrior.")


def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    """A worker's logging: ours, at WARRIOR_LOG_LEVEL or else the worker's --loglevel."""
    service = _state.get("celery_service") or "worker"
    configure_logging(service, default_level=loglevel or "INFO")
    if json_active():
        # What tasks print (progress lines) becomes log records too, with the task's ids.
        from celery.utils.log import LoggingProxy

        sys.stdout = LoggingProxy(logging.getLogger(f"warrior.{service}.stdout"), logging.INFO)


def install_celery_logging(service: str) -> None:
    """Hook Celery's signals: the worker's logging set-up is :func:`configure_logging`, and every task's
    records carry its campaign, instruction and task ids. Safe to call more than once."""
    from celery.signals import celeryd_init, setup_logging, task_postrun, task_prerun

    _state.setdefault("celery_service", service)
    celeryd_init.connect(_on_worker_init, weak=False, dispatch_uid="warrior.logs.worker")
    setup_logging.connect(_on_setup_logging, weak=False, dispatch_uid="warrior.logs.setup")
    task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="warrior.logs.prerun")
    task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid="warrior.logs.postrun")
