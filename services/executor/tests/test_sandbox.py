"""The sandbox contains hostile programs: each is stopped, reported with the limit that stopped it,
and leaves nothing behind (no file outside its directory, no process, no connection, no signal).

Most tests run with every layer on. The `hook off` tests switch the audit hook off to show that
the kernel-enforced layers (an unprivileged uid of its own, resource limits, a network namespace,
a process-group and uid sweep) contain the same programs on their own; those layers need the
caller to be root, as the executor runs in these tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from warrior.executor import sandbox
from warrior.executor.sandbox import STATUSES, SandboxResult, run

SECRET = "fake-secret-7f3a9c1e-do-not-leak"


def _require_root() -> None:
    assert os.geteuid() == 0, "the kernel-enforced layers (a uid of the sandbox's own) need the tests to run as root"


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"State:"):
                    return line.split()[1] not in (b"Z", b"X")
    except OSError:
        return False
    return False


def _group_members(pgid: int) -> set[int]:
    """The live processes of this test's process group."""
    members = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid and _alive(int(name)):
                    members.add(int(name))
            except OSError:
                pass
    return members


@pytest.fixture()
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return SECRET


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    """A TCP listener on loopback; a test asserts that it never receives a connection."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    yield server
    server.close()


def _assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        connection, _ = server.accept()
        connection.close()


def _assert_excerpts_clean(result: SandboxResult, secret: str) -> None:
    assert secret not in result.stdout and secret not in result.stderr


def test_a_correct_program_passes_and_a_wrong_one_fails() -> None:
    ok = run("import json, math, collections\nprint(json.dumps({'x': math.floor(2.5)}))")
    assert (ok.passed, ok.status, ok.limit, ok.returncode) == (True, "passed", None, 0)
    assert ok.stdout.strip() == '{"x": 2}'

    wrong = run("def add(a, b):\n    return a - b\n\nassert add(2, 2) == 4\n")
    assert (wrong.passed, wrong.status, wrong.limit, wrong.returncode) == (False, "failed", None, 1)
    assert "AssertionError" in wrong.stderr and "add(2, 2)" in wrong.stderr
    assert wrong.status in STATUSES


def test_an_infinite_loop_is_stopped_at_the_wall_clock_limit() -> None:
    started = time.monotonic()
    result = run("while True:\n    pass\n", timeout_s=1.0)
    assert (result.passed, result.status, result.limit) == (False, "timeout", "wall_time 1s")
    assert time.monotonic() - started < 5


def test_a_program_that_closes_its_output_still_times_out() -> None:
    result = run("import os, time\nos.close(1)\nos.close(2)\nwhile True:\n    time.sleep(0.05)\n", timeout_s=1.0)
    assert (result.status, result.limit) == ("timeout", "wall_time 1s")


def test_a_memory_hog_is_stopped_by_the_memory_limit() -> None:
    at_once = run("hog = bytearray(6 * 1024 ** 3)\n", memory_mb=256)
    assert (at_once.passed, at_once.status, at_once.limit) == (False, "memory", "memory 256MB")
    gradual = run("hog = []\nwhile True:\n    hog.append(bytearray(16 * 1024 ** 2))\n", memory_mb=256)
    assert (gradual.status, gradual.limit) == ("memory", "memory 256MB")


@pytest.mark.parametrize(
    "code",
    [
        "import os\nwhile True:\n    os.fork()\n",
        "import subprocess, sys\nwhile True:\n    subprocess.Popen([sys.executable, '-c', 'pass'])\n",
        "import os\nos.system('sleep 30 &')\n",
        "import os\nos.execv('/bin/sh', ['sh', '-c', 'sleep 30'])\n",
        "import multiprocessing as mp\nmp.set_start_method('spawn')\nmp.Process(target=print).start()\n",
        "import _posixsubprocess\n_posixsubprocess.fork_exec()\n",
    ],
    ids=["fork-loop", "popen-loop", "system", "exec", "multiprocessing-spawn", "fork_exec"],
)
def test_process_creation_is_refused(code: str) -> None:
    group = _group_members(os.getpgrp())
    result = run(code, timeout_s=5.0)
    assert (result.passed, result.status, result.limit) == (False, "blocked", "no_subprocess")
    assert "blocked no_subprocess" in result.stderr
    assert _group_members(os.getpgrp()) <= group


def test_a_refused_operation_cannot_be_caught_and_hidden() -> None:
    code = "import socket\ntry:\n    socket.socket()\nexcept BaseException:\n    pass\nprint('carried on')\n"
    result = run(code)
    assert (result.status, result.limit) == ("blocked", "no_network")
    assert "carried on" not in result.stdout


def test_writes_outside_the_directory_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    kept = tmp_path / "kept.txt"
    kept.write_text("mine")
    escaped = Path(tempfile.gettempdir(), f"warrior-escape-{uuid.uuid4().hex}.txt")
    attempts = [
        f"open({str(target)!r}, 'w').write('pwned')",
        f"import os\nos.remove({str(kept)!r})",
        f"import os\nos.rename({str(kept)!r}, 'stolen.txt')",
        f"import os\nos.symlink({str(tmp_path)!r}, 'link')\nopen('link/outside.txt', 'w').write('pwned')",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        # Relative paths out of the directory (into the world-writable temp directory above it).
        f"open('../{escaped.name}', 'w').write('pwned')",
        f"import os\nos.chdir('..')\nopen({escaped.name!r}, 'a').write('pwned')",
    ]
    for code in attempts:
        result = run(code)
        assert (result.status, result.limit) == ("blocked", "write_outside_dir"), (code, result)
    assert not target.exists()
    assert not escaped.exists()
    assert kept.read_text() == "mine"


def test_files_in_its_own_directory_are_fine() -> None:
    code = (
        "import os, shutil, tempfile\n"
        "with open('data.txt', 'w') as f:\n    f.write('x' * 1000)\n"
        "os.makedirs('sub/deeper')\n"
        "os.rename('data.txt', 'sub/data.txt')\n"
        "os.chmod('sub/data.txt', 0o600)\n"
        "assert open('sub/data.txt').read() == 'x' * 1000\n"
        "os.remove('sub/data.txt')\n"
        "shutil.rmtree('sub')\n"
        "with tempfile.NamedTemporaryFile() as t:\n    t.write(b'scratch')\n"
        "os.remove('main.py')\n"
        "print(sorted(os.listdir('.')), os.environ['HOME'] == os.getcwd())\n"
    )
    result = run(code)
    assert result.passed, result.stderr
    assert result.stdout.strip() == "[] True"


def test_the_parent_environment_is_invisible(secret_env: str) -> None:
    shown = run("import os\nprint(dict(os.environ))\n")
    assert shown.passed
    assert "AWS_SECRET_ACCESS_KEY" not in shown.stdout
    _assert_excerpts_clean(shown, secret_env)

    read = run("import os\nprint(open(f'/proc/{os.getppid()}/environ', 'rb').read())\n")
    assert (read.status, read.limit) == ("blocked", "no_process_info")
    _assert_excerpts_clean(read, secret_env)


def test_network_access_is_refused(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n")
    assert (result.passed, result.status, result.limit) == (False, "blocked", "no_network")
    _assert_no_connection(listener)


def test_signals_to_other_processes_are_refused() -> None:
    result = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    assert (result.passed, result.status, result.limit) == (False, "blocked", "no_signals")
    group = run("import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n")
    assert (group.status, group.limit) == ("blocked", "no_signals")
    # This test process is still here to assert it; a program may still signal itself.
    own = run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert (own.status, own.limit) == ("killed", "signal SIGKILL")


def test_native_code_is_refused() -> None:
    result = run("import ctypes\nctypes.CDLL(None).kill(1, 9)\n")
    assert (result.status, result.limit) == ("blocked", "no_native_code")


def test_output_is_capped() -> None:
    result = run("while True:\n    print('spam' * 100)\n", max_output_bytes=10_000, excerpt_chars=500)
    assert (result.passed, result.status, result.limit) == (False, "killed", "output cap")
    assert len(result.stdout) <= 500


def test_many_threads_can_run_programs_at_once() -> None:
    codes = [f"import os\nprint({i}, os.getuid())\nassert {i} % 5 != 4\n" for i in range(10)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(run, codes))
    assert [r.passed for r in results] == [i % 5 != 4 for i in range(10)]
    assert [int(r.stdout.split()[0]) for r in results] == list(range(10))
    if os.geteuid() == 0:
        assert all(int(r.stdout.split()[1]) != 0 for r in results)


def test_a_uid_whose_last_run_was_cut_short_is_swept_before_it_is_used_again() -> None:
    """A run that ends normally leaves its uid marked clean, so the next run of it skips the sweep
    before it starts; a uid whose holder died mid-run is left dirty, and the next run that takes it
    first kills what that run left running and removes its files."""
    _require_root()
    used = int(run("import os\nprint(os.getuid())\n", audit_hook=False).stdout)
    # Take that same uid again (the pool rotates, and other uids of this host may be left dirty by
    # runs that were killed, in other sessions).
    identities = sandbox._IDENTITIES
    candidates, _ = identities._setup()
    identities._next = candidates.index(used)
    uid, clean = identities.acquire()
    assert uid == used and clean, "a uid released after a normal run is clean"
    leftover = subprocess.Popen(["sleep", "60"], user=uid, group=uid, start_new_session=True)
    stray = Path(tempfile.gettempdir()) / f"warrior-stray-{uuid.uuid4().hex}"
    stray.write_text("left behind")
    os.chown(stray, uid, uid)
    try:
        sandbox._IDENTITIES.release(uid, clean=False)  # as if its holder had died mid-run
        # The next acquisition takes this uid again.
        identities._next = candidates.index(uid)
        # What the program sees (layers that would hide /proc and the file off): the sweep came first.
        probe = (
            "import os\n"
            "def state(pid):\n"
            "    try:\n"
            "        with open(f'/proc/{pid}/status') as handle:\n"
            "            return next(line.split()[1] for line in handle if line.startswith('State:'))\n"
            "    except OSError:\n"
            "        return 'gone'\n"
            f"print(os.getuid(), state({leftover.pid}), os.path.exists({str(stray)!r}))\n"
        )
        result = run(probe, audit_hook=False, kernel_confinement=False)
        seen_uid, seen_state, seen_file = result.stdout.split()
        assert int(seen_uid) == uid and seen_state in ("Z", "gone") and seen_file == "False", result
        leftover.wait(timeout=5)
        assert leftover.returncode == -signal.SIGKILL
        assert not stray.exists()
        identities._next = candidates.index(uid)
        assert identities.acquire() == (uid, True)
        identities.release(uid, clean=True)
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()
        stray.unlink(missing_ok=True)


# The kernel-enforced layers on their own (audit hook off).


def test_hook_off_a_fork_bomb_is_bounded_and_leaves_no_process() -> None:
    _require_root()
    code = (
        "import os\n"
        "while True:\n"
        "    try:\n"
        "        child = os.fork()\n"
        "    except OSError:\n"
        "        continue\n"
        "    if child == 0:\n"
        "        try:\n"
        "            os.setsid()  # leaving the process group: refused by seccomp, found by the uid sweep\n"
        "        except OSError:\n"
        "            pass\n"
        "        print(os.getpid(), flush=True)\n"
    )
    group = _group_members(os.getpgrp())
    result = run(code, timeout_s=2.0, max_processes=12, audit_hook=False)
    assert (result.passed, result.status) == (False, "timeout")
    children = [int(line) for line in result.stdout.split() if line.isdigit()]
    assert 0 < len(children) < 12  # RLIMIT_NPROC held the bomb to a handful
    time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]
    assert _group_members(os.getpgrp()) <= group


def test_hook_off_the_kernel_still_contains_the_other_attacks(
    tmp_path: Path, secret_env: str, listener: socket.socket
) -> None:
    _require_root()
    target = tmp_path / "outside.txt"
    port = listener.getsockname()[1]
    attacks = {
        "write": f"open({str(target)!r}, 'w').write('pwned')",
        "environ": "import os\nprint(open(f'/proc/{os.getppid()}/environ', 'rb').read())",
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
        "kill": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    }
    for name, code in attacks.items():
        result = run(code, audit_hook=False)
        assert (result.passed, result.status) == (False, "failed"), (name, result)
        _assert_excerpts_clean(result, secret_env)
    assert not target.exists()
    _assert_no_connection(listener)
    # And this process, the sandbox's parent, was not killed: the test got here.
