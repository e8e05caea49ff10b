"""The command line: help that helps, tables, and a stack that stops exactly what it started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from warrior.cli.main import build_parser, main
from warrior.cli.stack import LocalStack, _alive
from warrior.cli.tables import table
from warrior.common.campaign_config import parse_campaign_config


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for command in ("up", "down", "campaign", "status", "leaderboard", "experts", "dataset", "demo"):
        assert command in text
    assert "REDIS_URL" in text and "WARRIOR_STORE_URL" in text


def test_subcommand_help_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", "campaign", "start", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--config" in result.stdout and "--wait" in result.stdout


def test_missing_config_file_exits_2_with_its_path(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", "campaign", "start", "--config", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        env=os.environ | {"WARRIOR_HOME": str(tmp_path)},
    )
    assert result.returncode == 2 and "none.yaml" in result.stderr and "cannot read" in result.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_PASSWORD_FILE": "/nonexistent"},
         "REDIS_PASSWORD_FILE=/nonexistent: cannot read the file"),
        ({"REDIS_URL": "rediss://127.0.0.1:1/0", "REDIS_TLS_CA_FILE": "/nonexistent"},
         "REDIS_TLS_CA_FILE=/nonexistent: cannot read the file"),
        ({"WARRIOR_GRPC_DEADLINE_S": "soon"}, "WARRIOR_GRPC_DEADLINE_S='soon' is not a number"),
        ({"WARRIOR_INFLIGHT_PER_EXPERT": "-1"}, "WARRIOR_INFLIGHT_PER_EXPERT='-1'"),
        ({"WARRIOR_GRPC_TOKEN_FILE": "/nonexistent"}, "WARRIOR_GRPC_TOKEN_FILE=/nonexistent: cannot read the file"),
        ({"WARRIOR_STORE_URL": "s3:/typo"}, "WARRIOR_STORE_URL"),
        ({"WARRIOR_STORE_URL": "s3://b?endpoint=http://127.0.0.1:1", "AWS_ACCESS_KEY_ID_FILE": "/nonexistent"},
         "AWS_ACCESS_KEY_ID_FILE=/nonexistent"),
        ({"WARRIOR_LOG_FORMAT": "xml"}, "WARRIOR_LOG_FORMAT='xml' must be one of json, text"),
    ],
)  # fmt: skip
def test_a_bad_setting_exits_2_with_one_line_naming_it(tmp_path: Path, env: dict[str, str], named: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "WARRIOR_", "AWS_"))}
    result = subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", "status"],
        capture_output=True,
        text=True,
        env=clean | {"WARRIOR_HOME": str(tmp_path)} | env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["status"], ["experts"]])
def test_no_reachable_redis_is_one_clear_error(tmp_path: Path, command: list[str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "WARRIOR_", "AWS_"))}
    env = clean | {"WARRIOR_HOME": str(tmp_path), "REDIS_URL": "redis://:not-this-password@127.0.0.1:1"}
    result = subprocess.run(
        [sys.executable, "-m", "warrior.cli.main", *command], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: cannot reach Redis at redis://:***@127.0.0.1:1"), result.stderr
    assert "warrior up" in result.stderr and "Traceback" not in result.stderr
    assert "not-this-password" not in result.stderr + result.stdout


def test_a_bad_setting_in_main_prints_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("WARRIOR_HOME", str(tmp_path))
    monkeypatch.setenv("WARRIOR_REGISTRY_TTL_S", "0")
    with pytest.raises(SystemExit) as info:
        main(["down"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: environment variable WARRIOR_REGISTRY_TTL_S='0' must be positive\n"


def test_table_aligns_numbers_right() -> None:
    out = table([{"expert": "a", "rating": 10.5}, {"expert": "bbb", "rating": -3.0}], ["expert", "rating"])
    assert out.splitlines() == ["expert  rating", "------  ------", "a         10.5", "bbb       -3.0"]
    listed = table([{"endpoints": ["h:1", "h:2"], "x": None}], ["endpoints", "x"])
    assert listed.splitlines()[-1] == "h:1, h:2"


@pytest.mark.stack
def test_up_then_down_stops_exactly_what_it_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARRIOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("WARRIOR_STORE_URL", raising=False)
    monkeypatch.setenv("WARRIOR_REGISTRY_TTL_S", "3")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    config = parse_campaign_config({"experts": [{"name": "a", "engine": "zero-latency-test"},
                                                {"name": "b", "engine": "zero-latency-test"}]})  # fmt: skip
    stack = LocalStack()
    try:
        stack.up(config, timeout_s=60, echo=lambda *_: None)
        procs = stack.running()
        assert sorted(p.kind for p in procs) == ["controller", "expert", "expert", "redis"] + ["worker"] * 5
        assert "worker-executor" in {p.name for p in procs}  # the one worker that runs model-generated code
        assert all(Path(p.log).exists() for p in procs)
        with pytest.raises(Exception, match="already up"):
            stack.up(config, timeout_s=60, echo=lambda *_: None)
        stopped = stack.down(echo=lambda *_: None)
        assert sorted(stopped) == sorted(p.name for p in procs)
        assert not any(_alive(p.pid) for p in procs)
        assert not stack.state_file.exists()
        assert bystander.poll() is None  # nothing else was touched
    finally:
        stack.down(echo=lambda *_: None)
        bystander.kill()
        bystander.wait()


def test_the_demo_ranking_check_compares_the_leaderboard_with_the_pass_rates() -> None:
    from warrior.cli.demo import ranking_check

    board = [
        {"expert": "coder", "rating": 400.0, "ci_low": 200.0, "ci_high": 550.0},
        {"expert": "tiny", "rating": 0.0, "ci_low": -200.0, "ci_high": 250.0},
        {"expert": "base", "rating": -400.0, "ci_low": -560.0, "ci_high": -280.0},
    ]
    rates = {"pass_rate": {"coder": {"rate": 1.0}, "tiny": {"rate": 0.0}, "base": {"rate": None}}}
    good = ranking_check(board, rates)
    assert good["ok"] is True and good["first"] == "coder" and "above" in good["verdict"]
    board[2]["ci_high"] = 250.0  # the last expert's interval reaches the first's
    assert ranking_check(board, rates)["ok"] is False
    flipped = {"pass_rate": {"coder": {"rate": 0.0}, "tiny": {"rate": 1.0}}}
    assert ranking_check(board, flipped)["most_passed"] == "tiny"
    assert ranking_check(board, flipped)["ok"] is False
