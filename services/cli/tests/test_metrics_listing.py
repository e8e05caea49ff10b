"""`warrior metrics` finds every metrics endpoint of the local stack in its state file (stack.json): as a table,
as JSON, and as a Prometheus file_sd target file; a process that is gone is not listed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from warrior.cli.main import main


def warrior(*argv: str) -> int | str | None:
    """Run the `warrior` command in this process; its exit status."""
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return done.value.code


def _stack_file(home: Path) -> None:
    alive, gone = os.getpid(), 2**22 + 12345  # this test's own process, and a pid no process has
    processes = [
        {"name": "expert-alpha", "kind": "expert", "pid": alive, "log": "", "argv": [], "metrics_port": 41001},
        {"name": "worker-judge", "kind": "worker", "pid": alive, "log": "", "argv": [], "metrics_port": 41002},
        {"name": "controller", "kind": "controller", "pid": gone, "log": "", "argv": [], "metrics_port": 41003},
        {"name": "redis", "kind": "redis", "pid": alive, "log": "", "argv": []},  # no metrics_port: none served
    ]
    home.mkdir(parents=True)
    (home / "stack.json").write_text(json.dumps({"processes": processes}))


def test_warrior_metrics_lists_the_endpoints_of_the_running_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("WARRIOR_HOME", str(home))
    assert warrior("metrics") == 0
    assert "the local stack is not running" in capsys.readouterr().out
    _stack_file(home)

    assert warrior("metrics", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [
        {"process": "expert-alpha", "metrics": "http://127.0.0.1:41001/metrics"},
        {"process": "worker-judge", "metrics": "http://127.0.0.1:41002/metrics"},
    ]
    assert warrior("metrics") == 0
    assert "worker-judge  http://127.0.0.1:41002/metrics" in capsys.readouterr().out

    targets = tmp_path / "warrior-targets.json"
    assert warrior("metrics", "--file-sd", str(targets)) == 0
    assert json.loads(targets.read_text()) == [
        {"targets": ["127.0.0.1:41001"], "labels": {"process": "expert-alpha"}},
        {"targets": ["127.0.0.1:41002"], "labels": {"process": "worker-judge"}},
    ]
