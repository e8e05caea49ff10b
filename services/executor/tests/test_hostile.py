"""The whole hostile set runs through the sandbox: every program is contained and scored as a
failure, the worker (this test process) is unharmed, and nothing is left behind."""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hostile_programs import HOSTILE, HostileRow, render_table, run_hostile, stray_identity_objects

SECRET = "fake-secret-4b1d0c7e-never-seen-by-a-program"


def _children() -> list[int]:
    """Live child processes of this test process."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                status = Path(f"/proc/{name}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields["PPid"]) == os.getpid() and fields.get("State", "").split()[:1] not in (["Z"], ["X"]):
                found.append(int(name))
    return found


def _hostile_names() -> set[str]:
    """Entries named by a hostile program in the shared places."""
    names = set()
    for folder in (tempfile.gettempdir(), "/dev/shm", "/var/tmp"):
        try:
            names |= {os.path.join(folder, n) for n in os.listdir(folder) if "hostile" in n}
        except OSError:
            pass
    return names


@pytest.fixture()
def worker_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return SECRET


def test_every_hostile_program_is_contained_and_scored_as_a_failure(worker_secret: str, tmp_path: Path) -> None:
    limits = {
        name: resource.getrlimit(getattr(resource, name)) for name in ("RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_AS")
    }
    before, children = _hostile_names(), set(_children())  # a session's Redis may be a child already
    rows = run_hostile(secret=worker_secret)
    table = render_table(rows)
    assert [r.program for r in rows] == [p.name for p in HOSTILE]
    ran = [r for r in rows if r.contained is not None]
    if os.geteuid() == 0:
        assert ran == rows, "as root every program runs, the kernel-layer ones included"
    for row in ran:
        assert row.contained, f"{row.program}: {row.detail}\n{table}"
        assert row.status not in ("passed", "error"), row
        assert row.limit or row.status == "failed", row  # what stopped it is named, but for a plain failure
    # The credential never reached a program's output, and the worker still holds it.
    assert all(worker_secret not in r.evidence for r in rows)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == worker_secret
    # The worker is unharmed: alive (this line runs), its limits as they were.
    assert limits == {name: resource.getrlimit(getattr(resource, name)) for name in limits}
    # Nothing is left: no new child of this process, no process or file of a sandbox identity no run holds,
    # nothing a hostile program named in /tmp, /dev/shm or /var/tmp.
    assert not set(_children()) - children
    assert not stray_identity_objects()
    assert not _hostile_names() - before
    # The rows serialise for the report.
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps([r.to_dict() for r in rows]))
    assert HostileRow(**json.loads(path.read_text())[0]) == rows[0]


def test_a_program_that_escaped_would_be_reported_as_not_contained() -> None:
    """The checks can fail: a harmless program that passes, or one whose outcome is not the expected one."""
    from hostile_programs import Hostile

    passes = Hostile("passes", "does nothing", "print('ok')\n", ("blocked no_network",))
    leaves = Hostile("leaves", "writes its folder", "open('x', 'w').write('y')\nraise SystemExit(3)\n", ("timeout",))
    rows = run_hostile([passes, leaves])
    assert [r.contained for r in rows] == [False, False]
    assert "its attack worked" in rows[0].detail and "expected 'timeout'" in rows[1].detail


UNPRIVILEGED_UID = 10001  # the uid the service images run as


def _passable_mounts(target: str, stash: Path) -> list[str]:
    """Shell commands that make every folder on the way to `target` passable for other users, in a
    private mount namespace: a root-only folder (an interpreter under /root, say) gets a tmpfs over
    it holding only the one entry on the way, bound back in from where it really is."""
    commands = ["mount --make-rprivate /"]
    parts = Path(target).parts
    for depth in range(1, len(parts) - 1):
        folder = Path(*parts[: depth + 1])
        if os.stat(folder).st_mode & 0o001:
            continue
        entry = folder / parts[depth + 1]
        kept = stash / str(depth)
        kept.mkdir()
        make = "mkdir" if entry.is_dir() else "touch"
        commands += [
            f"mount --bind {shlex.quote(str(entry))} {shlex.quote(str(kept))}",
            f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(str(folder))}",
            f"{make} {shlex.quote(str(entry))}",
            f"mount --bind {shlex.quote(str(kept))} {shlex.quote(str(entry))}",
        ]
    return commands


def test_the_hostile_set_is_contained_for_a_caller_that_is_not_root() -> None:
    """As deployed (uid 10001, no identity or network namespace to give a run), the seccomp filter and
    the Landlock ruleset contain every program whose layers the host offers, the audit hook off."""
    root = Path(__file__).resolve().parents[3]
    out = Path(tempfile.mkdtemp(prefix="warrior-hostile-report-"))
    try:
        out.chmod(0o777)
        report = out / "hostile.json"
        command = [sys.executable, str(root / "scripts" / "hostile_report.py"), "--json", str(report)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(out), "LANG": "C.UTF-8"}
        if os.geteuid() == 0:
            setpriv, unshare = shutil.which("setpriv"), shutil.which("unshare")
            assert setpriv and unshare, "setpriv and unshare (util-linux) run the caller as another user"
            drop = [setpriv, f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}", "--clear-groups", "--"]
            stash = Path(tempfile.mkdtemp(prefix="warrior-stash-", dir=out))
            script = _passable_mounts(os.path.realpath(sys.base_prefix), stash)
            script.append("exec " + shlex.join([*drop, *command]))
            command = [unshare, "--mount", "sh", "-c", " && ".join(script)]
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert report.exists(), done.stdout + done.stderr
        written = json.loads(report.read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    host = written["host"]
    assert host["uid"] != 0 and not host["root"]
    rows = written["rows"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert [r["program"] for r in rows] == [p.name for p in HOSTILE]
    assert not [r for r in rows if r["contained"] is False]
    layers = host["layers"]
    offered = {"seccomp": layers["seccomp"], "landlock": layers["landlock_abi"] > 0}
    for row, program in zip(rows, HOSTILE, strict=True):
        if row["contained"] is None:  # skipped: only for a layer this host lacks
            assert not all(offered[name] for name in program.needs), row
    if all(offered.values()):
        assert all(r["contained"] for r in rows), done.stdout
