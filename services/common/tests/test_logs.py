"""The services' logs: JSON lines with the fields and ids an operator filters on, text on request, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from warrior.common import logs
from warrior.common.settings import SettingsError


@pytest.fixture()
def out(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What the process logs, after configure_logging; the root logger's set-up is restored afterwards."""
    for name in (logs.FORMAT_ENV, logs.LEVEL_ENV):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_a_line_with_time_level_service_logger_message(out: io.StringIO) -> None:
    logs.configure_logging("scorer", stream=out)
    log = logging.getLogger("warrior.scorer")
    log.info("scored %d battles", 3, extra={"expert": "alpha"})
    log.debug("not shown at the default level")
    try:
        raise ValueError("bad vote")
    except ValueError:
        log.exception("scoring failed")
    first, second = _records(out)
    assert first["level"] == "INFO" and first["service"] == "scorer" and first["logger"] == "warrior.scorer"
    assert first["message"] == "scored 3 battles" and first["expert"] == "alpha"
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "campaign" not in first and "task" not in first and "exception" not in first
    assert second["level"] == "ERROR" and "ValueError: bad vote" in second["exception"]
    assert "Traceback" in second["exception"]


def test_a_tasks_records_carry_its_campaign_instruction_and_task_ids(out: io.StringIO) -> None:
    logs.configure_logging("judge", stream=out)

    class Battle:
        name = "warrior.battle"

        def run(self, campaign: str, iid: str) -> None: ...

    log = logging.getLogger("warrior.judge")
    logs._on_task_prerun(task_id="battle-c1-i7", task=Battle(), args=["c1"], kwargs={"iid": "i7"})
    log.info("battle decided")
    logs._on_task_postrun(task_id="battle-c1-i7")
    log.info("between tasks")
    inside, outside = _records(out)
    assert (inside["campaign"], inside["instruction"], inside["task"]) == ("c1", "i7", "battle-c1-i7")
    assert not {"campaign", "instruction", "task"} & outside.keys()


def test_a_batchs_units_log_their_own_instruction_under_the_tasks_ids(out: io.StringIO) -> None:
    from warrior.common.batches import run_each

    logs.configure_logging("judge", stream=out)

    class Battle:
        name = "warrior.battle"

        def run(self, campaign: str, iids: list[str]) -> None: ...

    log = logging.getLogger("warrior.judge")
    logs._on_task_prerun(task_id="battle-c1-abc", task=Battle(), args=["c1", ["i1", "i2", "i3"]], kwargs={})
    run_each(lambda iid: log.info("battle %s decided", iid), ["i1", "i2", "i3"], concurrency=3, instruction=str)
    log.info("batch done")
    logs._on_task_postrun(task_id="battle-c1-abc")
    *units, after = _records(out)
    assert sorted((r["message"], r["instruction"]) for r in units) == [
        ("battle i1 decided", "i1"), ("battle i2 decided", "i2"), ("battle i3 decided", "i3")
    ]  # fmt: skip
    assert {(r["campaign"], r["task"]) for r in units} == {("c1", "battle-c1-abc")}  # worker threads included
    assert after["task"] == "battle-c1-abc" and "instruction" not in after  # the unit's id ends with the unit


def test_text_format_and_level_from_the_environment(out: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.FORMAT_ENV, "text")
    monkeypatch.setenv(logs.LEVEL_ENV, "warning")
    logs.configure_logging("controller", stream=out)
    log = logging.getLogger("warrior.controller")
    log.info("hidden")
    with logs.log_context(campaign="c1", task="t9"):
        log.warning("Redis unreachable")
    (line,) = out.getvalue().splitlines()
    assert " WARNING controller warrior.controller [campaign=c1 task=t9]: Redis unreachable" in line
    # An explicit level (the controller's --log-level) wins over the variable.
    logs.configure_logging("controller", level="INFO", stream=out)
    log.info("shown now")
    assert out.getvalue().splitlines()[-1].endswith("shown now")
    monkeypatch.setenv(logs.FORMAT_ENV, "xml")
    with pytest.raises(SettingsError, match="WARRIOR_LOG_FORMAT='xml' must be one of json, text"):
        logs.configure_logging("controller", stream=out)
    monkeypatch.setenv(logs.FORMAT_ENV, "text")
    monkeypatch.setenv(logs.LEVEL_ENV, "loud")
    with pytest.raises(SettingsError, match="'loud'"):
        logs.configure_logging("controller", stream=out)


def test_no_secret_reaches_the_log(out: io.StringIO, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-old-0123456789\ntok-new-9876543210\n")
    monkeypatch.setenv("WARRIOR_GRPC_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-aws-key")
    monkeypatch.setenv("REDIS_PASSWORD", "fake/secret redis")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-secret")
    monkeypatch.setenv("WARRIOR_MAX_TOKENS", "512")  # not a secret: left alone
    secrets = ["tok-old-0123456789", "tok-new-9876543210", "fake-secret-aws-key", "fake/secret redis",
               "fake%2Fsecret%20redis", "sk-fake-secret", "pw-in-url", "bearer-abc123"]  # fmt: skip
    monkeypatch.setattr(logs, "_secrets", logs._Secrets())
    for fmt in ("json", "text"):
        monkeypatch.setenv(logs.FORMAT_ENV, fmt)
        logs.configure_logging("expert", stream=out)
        log = logging.getLogger("warrior.expert")
        log.info("connecting to %s", "redis://warrior:pw-in-url@redis:6379/0")
        log.warning("header was authorization: Bearer bearer-abc123; token %s", "tok-new-9876543210")
        log.info("store key fake-secret-aws-key, password %s, max tokens 512", "fake%2Fsecret%20redis")
        log.info({"event": "dict message", "key": "sk-fake-secret"})
        log.info("task done", extra={"data": {"args": ["c1", "fake-secret-aws-key"], "kwargs": {}}})
        log.info("a bearer token is required")
        try:
            raise RuntimeError("auth failed with tok-old-0123456789 and fake/secret redis")
        except RuntimeError:
            log.exception("call failed")
    text = out.getvalue()
    assert [s for s in secrets if s in text] == []
    assert "redis://warrior:***@redis:6379/0" in text and "Bearer ***" in text and "max tokens 512" in text
    assert "a bearer token is required" in text  # prose about tokens stays readable
    assert text.count("***") >= 12


def test_celery_worker_logging_is_ours(out: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.signals import setup_logging

    monkeypatch.setitem(logs._state, "celery_service", "dataset_builder")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setattr("sys.stderr", out)  # the handler writes to sys.stderr as it is when a record comes
    logs.install_celery_logging("dataset_builder")
    logs.install_celery_logging("dataset_builder")  # twice: still one receiver each
    receivers = setup_logging.send(sender=None, loglevel=logging.INFO, logfile=None, format="", colorize=False)
    assert len(receivers) == 1  # Celery leaves the logging set-up to us
    logging.getLogger("celery.worker").info("dataset_builder@host ready.")
    print("step 3/10")  # what a task prints becomes a record too
    first, second = _records(out)
    assert first["service"] == "dataset_builder" and first["message"] == "dataset_builder@host ready."
    assert second["message"] == "step 3/10" and second["logger"] == "warrior.dataset_builder.stdout"
