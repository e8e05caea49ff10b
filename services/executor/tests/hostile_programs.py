"""Hostile programs for the executor's sandbox, each with the containment it must meet (test data:
imported by the tests beside it and by ``scripts/hostile_report.py``, never installed).

Every program attacks the sandbox the way a generated solution could: a fork bomb, an infinite
loop, a memory hog, writes outside its directory, reads of the worker's environment and files
(credentials), network access, signals to the worker, and more. Each is written so that it exits
0 only when its attack worked: a contained program is scored as a failure (failed, timeout,
memory, blocked or killed) with the limit that stopped it, and nothing it did outlives it.

:func:`run_hostile` runs them all through :func:`warrior.executor.sandbox.run` and checks, after
each one, what a status cannot show: the worker's environment secret is not in the output, no
file appeared outside the sandbox (a canary in a folder of the worker's, a world-writable drop
folder, /tmp, /dev/shm), no connection reached a listener, no process of the run is left, and the
worker's own limits, priority and CPU affinity are unchanged. ``scripts/hostile_report.py`` prints
the table and writes it as JSON.

Programs with ``needs`` test the kernel-enforced layers with the audit hook off. A caller that is
root gives every run an unprivileged uid of its own and a network namespace, so they all run then;
a caller that is not root (the images run as uid 10001) relies on the seccomp filter and the
Landlock ruleset (see :mod:`warrior.executor.confinement`), and a program whose layers the host lacks
is reported as skipped, naming them.
"""

from __future__ import annotations

import fcntl
import os
import resource
import secrets
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from warrior.executor.confinement import available
from warrior.executor.sandbox import _UID_BASE, _UID_COUNT, _lock_directory, run

__all__ = ["HOSTILE", "Hostile", "HostileRow", "render_table", "run_hostile", "stray_identity_objects"]

# The sandbox's pool of unprivileged uids: a process or file of one that no run holds now is a stray.
_SANDBOX_UIDS = range(_UID_BASE, _UID_BASE + _UID_COUNT)
_SHARED_PLACES = ("/dev/shm", "/var/tmp")
_SECRET_VARIABLE = "AWS_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class Hostile:
    """One hostile program.

    `code` may use these placeholders: @CANARY@ (a file path in a folder only the worker may write),
    @SECRET_FILE@ (a file of the worker's, mode 0600, holding the secret), @DROP@ (a world-writable
    folder outside the sandbox), @TMP@ (the system's temporary folder), @NONCE@ (unique to the
    run; files named with it are looked for afterwards) and @PORT@ (a TCP listener on 127.0.0.1).
    `expected` lists the acceptable outcomes, "status" or "status limit" (a prefix of the
    sandbox's limit: "timeout" accepts "timeout wall_time 1s" and "timeout cpu_time").
    """

    name: str
    attack: str
    code: str
    expected: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    # Kernel layers that contain it when the caller is not root ("seccomp", "landlock"); a root
    # caller's own-uid and network-namespace layers contain every program.
    needs: tuple[str, ...] = ()
    # Whether a root caller's layers contain it without those (False: it needs them from root too).
    root_suffices: bool = True
    # Seconds to wait after the run before looking for its effects (a child that acts late).
    settle_s: float = 0.0


@dataclass(frozen=True)
class HostileRow:
    """What became of one hostile program."""

    program: str
    attack: str
    expected: str
    status: str
    limit: str | None
    contained: bool | None  # None: skipped
    seconds: float
    detail: str = ""  # why it is not contained (or why skipped)
    evidence: str = ""  # the last line the program wrote (stderr, else stdout)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Disarming the audit hook: a signal handler receives the interrupted frame, which is sometimes the
# hook's own; its locals hold the table of checks. Cleared, the hook lets files, signals and
# processes through, and only the kernel-enforced layers are left.
_DISARM = """
import os, signal, sys
disarmed = []

def handler(signum, frame):
    while frame is not None and not disarmed:
        table = frame.f_locals.get("checks")
        if isinstance(table, dict):
            table.clear()
            disarmed.append(True)
        frame = frame.f_back

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
for _ in range(200_000):
    if disarmed:
        break
    open("main.py").close()  # an audited operation: the hook runs Python code for it
signal.setitimer(signal.ITIMER_REAL, 0)
print("hook disarmed" if disarmed else "hook still armed", flush=True)
"""

HOSTILE: tuple[Hostile, ...] = (
    # Processes.
    Hostile("fork_bomb", "os.fork() in an endless loop", "import os\nwhile True:\n    os.fork()\n",
            ("blocked no_subprocess",)),
    Hostile("fork_bomb_kernel", "fork bomb with the audit hook off; children leave the process group",
            "import os\nwhile True:\n    try:\n        child = os.fork()\n    except OSError:\n        continue\n"
            "    if child == 0:\n        os.setsid()\n",
            ("timeout",), {"timeout_s": 1.5, "max_processes": 12, "audit_hook": False}, needs=("seccomp",)),
    Hostile("subprocess_shell", "a shell command through subprocess",
            "import subprocess\nsubprocess.run('id > @DROP@/shell-@NONCE@', shell=True)\n", ("blocked no_subprocess",)),
    Hostile("posix_spawn", "os.posix_spawn of /bin/sh",
            "import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'id'], {})\n", ("blocked no_subprocess",)),
    Hostile("reload_posixsubprocess", "re-import the spawn helper to get the unwrapped fork_exec",
            "import importlib, _posixsubprocess, subprocess\nimportlib.reload(_posixsubprocess)\n"
            "subprocess.run(['id'])\n", ("blocked no_subprocess",)),
    Hostile("lingering_child", "a double-forked child that sleeps past the deadline, then writes a file",
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1.5)\n"
            "    open('@DROP@/late-@NONCE@', 'w').write('still here')\n", ("blocked no_subprocess",)),
    Hostile("lingering_child_kernel", "the same with the audit hook off: exits at once, the child lives on",
            "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        time.sleep(1.5)\n"
            "        open('@DROP@/late-@NONCE@', 'w').write('still here')\n    os._exit(0)\nsys.exit(1)\n",
            ("failed",), {"audit_hook": False}, needs=("seccomp",), settle_s=2.5),
    Hostile("thread_bomb", "threads until the system says no",
            "import threading, time\nwhile True:\n"
            "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n",
            ("failed processes", "memory")),
    # CPU, memory, output, files.
    Hostile("infinite_loop", "while True: pass", "while True:\n    pass\n", ("timeout",), {"timeout_s": 1}),
    Hostile("sleep_forever", "time.sleep past the deadline", "import time\ntime.sleep(3600)\n", ("timeout",),
            {"timeout_s": 1}),
    Hostile("signal_ignore", "ignores SIGTERM, SIGINT, SIGHUP, SIGXCPU, SIGALRM and spins",
            "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGALRM):\n"
            "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n", ("timeout",), {"timeout_s": 1}),
    Hostile("catch_everything", "catches every exception (KeyboardInterrupt, SystemExit) and goes on",
            "import time\nwhile True:\n    try:\n        time.sleep(0.01)\n    except BaseException:\n        pass\n",
            ("timeout",), {"timeout_s": 1}),
    Hostile("memory_hog", "one 8 GiB allocation", "hog = bytearray(8 * 1024 ** 3)\n", ("memory",),
            {"memory_mb": 256}),
    Hostile("memory_creep", "16 MiB at a time until it runs out",
            "hog = []\nwhile True:\n    hog.append(bytearray(16 * 1024 ** 2))\n", ("memory",), {"memory_mb": 256}),
    Hostile("mmap_hog", "an 8 GiB anonymous mapping", "import mmap\nm = mmap.mmap(-1, 8 << 30)\nm[-1] = 1\n",
            ("failed", "memory"), {"memory_mb": 256}),
    Hostile("memfd_hog", "memory-backed files, which the address-space limit does not count",
            "import os\nwhile True:\n    fd = os.memfd_create('hog')\n    os.write(fd, b'x' * (16 << 20))\n",
            ("blocked no_special_files",)),
    Hostile("raise_own_limits", "raises its own memory limit, then hogs",
            "import resource\ntry:\n    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n"
            "except (ValueError, OSError):\n"
            "    pass\nhog = bytearray(8 * 1024 ** 3)\n", ("memory",), {"memory_mb": 256}),
    Hostile("deep_recursion", "unbounded recursion with the recursion limit lifted",
            "import sys\nsys.setrecursionlimit(10 ** 7)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n",
            ("failed", "memory", "timeout", "killed signal"), {"memory_mb": 128, "timeout_s": 3}),
    Hostile("huge_output", "prints without end", "while True:\n    print('spam' * 100)\n", ("killed output cap",)),
    Hostile("fd_exhaustion", "pipes until no descriptor is left",
            "import os\nfds = []\nwhile True:\n    fds.extend(os.pipe())\n", ("failed open_files",)),
    Hostile("disk_filler", "one file as large as it can write", "with open('filler.bin', 'wb') as f:\n"
            "    while True:\n        f.write(b'x' * 2 ** 20)\n", ("failed file_size",)),
    Hostile("many_files", "small files in its own folder until the deadline",
            "i = 0\nwhile True:\n    open('f%d' % i, 'w').close()\n    i += 1\n", ("timeout",), {"timeout_s": 1}),
    # Files outside its folder.
    Hostile("write_outside", "writes a file in the worker's folder", "open('@CANARY@', 'w').write('pwned')\n",
            ("blocked write_outside_dir",)),
    Hostile("write_outside_relative", "writes next to its folder through '..'",
            "open('../hostile-@NONCE@', 'w').write('pwned')\n", ("blocked write_outside_dir",)),
    Hostile("symlink_escape", "a symlink to a folder outside, then a write through it",
            "import os\nos.symlink(os.path.dirname('@CANARY@'), 'link')\nopen('link/canary.txt', 'w').write('pwned')\n",
            ("blocked write_outside_dir",)),
    Hostile("delete_outside", "removes the worker's folder",
            "import os, shutil\nshutil.rmtree(os.path.dirname('@CANARY@'))\n", ("blocked write_outside_dir",)),
    Hostile("world_writable_drop", "writes into a world-writable folder outside (/tmp)",
            "open('@DROP@/drop-@NONCE@', 'w').write('pwned')\n", ("blocked write_outside_dir",)),
    Hostile("fifo_in_tmp", "a FIFO in /tmp (os.mkfifo raises no audit event)",
            "import os\nos.mkfifo('@TMP@/hostile-fifo-@NONCE@')\n", ("blocked no_special_files",)),
    Hostile("mknod_in_tmp", "a file in /tmp through os.mknod",
            "import os, stat\nos.mknod('@TMP@/hostile-node-@NONCE@', stat.S_IFREG | 0o644)\n",
            ("blocked no_special_files",)),
    Hostile("shared_memory", "a POSIX shared-memory object in /dev/shm",
            "from multiprocessing import shared_memory\nshared_memory.SharedMemory(create=True, size=4096, "
            "name='hostile-@NONCE@')\n", ("blocked no_special_files",)),
    Hostile("stray_fifo_kernel", "a FIFO in /tmp with the audit hook off",
            "import os, sys\nos.mkfifo('@TMP@/hostile-kfifo-@NONCE@')\nos.mkfifo('@DROP@/kfifo-@NONCE@')\n"
            "sys.exit(1)\n",
            ("failed",), {"audit_hook": False}, needs=("seccomp",)),
    # Credentials and other processes.
    Hostile("env_credentials", "looks for credentials in its environment",
            "import os, sys\nprint(dict(os.environ))\nfound = [k for k in os.environ if 'SECRET' in k or 'AWS' in k "
            "or 'TOKEN' in k]\nsys.exit(0 if found else 1)\n", ("failed",)),
    Hostile("parent_environ", "reads the worker's environment from /proc",
            "import os, sys\ndata = open(f'/proc/{os.getppid()}/environ', 'rb').read()\nprint(data)\n"
            "sys.exit(0 if b'SECRET' in data else 1)\n", ("blocked no_process_info",)),
    Hostile("proc_snoop", "reads every process's environment and command line",
            "import os\nfor pid in os.listdir('/proc'):\n    if pid.isdigit() and int(pid) != os.getpid():\n"
            "        print(open(f'/proc/{pid}/environ', 'rb').read())\n",
            ("blocked no_process_info", "failed")),  # Landlock refuses listing /proc before the hook sees a read
    Hostile("secret_file", "reads a file only the worker may read",
            "print(open('@SECRET_FILE@').read())\n", ("failed",), needs=("landlock",)),
    Hostile("kill_parent", "SIGKILL to the worker", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
            ("blocked no_signals",)),
    Hostile("killpg_parent", "SIGKILL to the worker's process group",
            "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n", ("blocked no_signals",)),
    Hostile("kill_everything", "kill(-1, SIGKILL): every process it may signal",
            "import os, signal\nos.kill(-1, signal.SIGKILL)\n", ("blocked no_signals",)),
    Hostile("prlimit_parent", "sets the worker's CPU limit to 1 s",
            "import os, resource\nresource.prlimit(os.getppid(), resource.RLIMIT_CPU, (1, 1))\n",
            ("blocked no_signals",)),
    Hostile("ctypes_kill", "native code: libc kill() of the worker",
            "import ctypes, os\nctypes.CDLL(None).kill(os.getppid(), 9)\n", ("blocked no_native_code",)),
    Hostile("gc_introspection", "looks for the audit hook's state through the garbage collector",
            "import gc\nprint(len(gc.get_objects()))\n", ("blocked no_introspection",)),
    Hostile("audit_hook_disarm", "clears the audit hook's checks from a signal handler, then writes outside, "
            "reads the worker's environment and secret file and signals it",
            _DISARM + "done = []\nfor attempt in (\n    lambda: open('@CANARY@', 'w').write('pwned'),\n"
            "    lambda: open(f'/proc/{os.getppid()}/environ', 'rb').read(),\n"
            "    lambda: open('@SECRET_FILE@').read(),\n"
            "    lambda: os.kill(os.getppid(), 0),\n):\n    try:\n        done.append(attempt())\n"
            "    except OSError as exc:\n"
            "        print(type(exc).__name__, exc.errno)\nsys.exit(0 if done else 1)\n",
            ("failed", "blocked"), {"timeout_s": 5}, needs=("landlock", "seccomp")),
    # Network.
    Hostile("network_tcp", "a TCP connection to a listener on the worker's loopback",
            "import socket\nsocket.create_connection(('127.0.0.1', @PORT@), timeout=2).sendall(b'hi')\n",
            ("blocked no_network",)),
    Hostile("network_dns", "a DNS lookup", "import socket\nsocket.getaddrinfo('example.com', 443)\n",
            ("blocked no_network",)),
    Hostile("network_unix", "a Unix socket (Redis, Docker)",
            "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/var/run/docker.sock')\n",
            ("blocked no_network",)),
    Hostile("network_kernel", "a TCP connection with the audit hook off",
            "import socket\nsocket.create_connection(('127.0.0.1', @PORT@), timeout=2).sendall(b'hi')\n",
            ("failed",), {"audit_hook": False}, needs=("seccomp",)),
    # The same attacks with the audit hook off: only the kernel-enforced layers stand.
    Hostile("kill_parent_kernel", "SIGKILL to the worker with the audit hook off",
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", ("failed",), {"audit_hook": False},
            needs=("seccomp",)),
    Hostile("ctypes_kill_kernel", "native code: libc kill() of the worker's process group, audit hook off",
            "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "sys.exit(0 if libc.kill(-os.getpgid(os.getppid()), 9) == 0 else 1)\n", ("failed",),
            {"audit_hook": False}, needs=("seccomp",)),
    Hostile("parent_environ_kernel", "reads the worker's environment from /proc with the audit hook off",
            "import os, sys\ndata = open(f'/proc/{os.getppid()}/environ', 'rb').read()\nprint(data)\n"
            "sys.exit(0 if b'SECRET' in data else 1)\n", ("failed",), {"audit_hook": False}),
    Hostile("write_outside_kernel", "writes into the worker's folder and /tmp with the audit hook off",
            "import sys\nwritten = 0\nfor path in ('@CANARY@', '@DROP@/drop-@NONCE@', '@TMP@/hostile-@NONCE@'):\n"
            "    try:\n        open(path, 'w').write('pwned')\n        written += 1\n    except OSError as exc:\n"
            "        print(path, exc.errno)\nsys.exit(0 if written else 1)\n", ("failed",), {"audit_hook": False},
            needs=("landlock",)),
    Hostile("unshare_kernel", "a user and network namespace of its own (root inside), audit hook off",
            "import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "sys.exit(0 if libc.unshare(0x10000000 | 0x40000000) == 0 else 1)\n", ("failed",),
            {"audit_hook": False}, needs=("seccomp",), root_suffices=False),
    # The verdict itself.
    Hostile("forged_verdict", "prints the sandbox's own 'blocked' marker and exit code",
            "import os, sys\nsys.stderr.write('\\n[warrior-sandbox 0123456789abcdef] blocked no_network: forged\\n')\n"
            "sys.stderr.flush()\nos._exit(86)\n", ("failed",)),
)  # fmt: skip


def _offered(layer: str) -> bool:
    layers = available()
    return {"seccomp": layers.seccomp, "landlock": layers.landlock_abi > 0}[layer]


def _outcome(status: str, limit: str | None) -> str:
    return status if limit is None else f"{status} {limit}"


def _matches(outcome: str, expected: Iterable[str]) -> bool:
    return any(outcome == e or outcome.startswith(e + " ") for e in expected)


def _live_processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, real uid) of every live process (zombies excluded)."""
    found: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as handle:
                fields = dict(line.split(b":", 1) for line in handle.read().splitlines() if b":" in line)
        except OSError:
            continue
        if fields.get(b"State", b"").split()[:1] in ([b"Z"], [b"X"]):
            continue
        try:
            found[int(name)] = (int(fields[b"PPid"].split()[0]), int(fields[b"Uid"].split()[0]))
        except (KeyError, ValueError, IndexError):
            continue
    return found


def _worker_state() -> dict[str, Any]:
    """What a program might change about the worker: its limits, priority, CPU affinity, folder."""
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_CORE")
    }
    return {
        "limits": limits,
        "priority": os.getpriority(os.PRIO_PROCESS, 0),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cwd": os.getcwd(),
    }


@contextmanager
def _listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def _accepted(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def _stray_files(places: Iterable[str], nonce: str) -> list[str]:
    found: list[str] = []
    for folder in places:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        found.extend(os.path.join(folder, n) for n in names if nonce in n)
    return found


def _idle(uid: int) -> bool:
    """Whether no run on this host holds sandbox identity `uid` now (its lock file is free)."""
    try:
        fd = os.open(os.path.join(_lock_directory(), f"uid-{uid}.lock"), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return True  # never used
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # and with it the lock, if taken
    return True


def stray_identity_objects() -> list[str]:
    """Processes and files of sandbox identities that no run holds: what a finished run left behind.
    Runs of other processes on the host hold their identities, so theirs are not counted."""
    if os.geteuid() != 0:
        return []
    found: list[str] = [
        f"process {pid}" for pid, (_, uid) in _live_processes().items() if uid in _SANDBOX_UIDS and _idle(uid)
    ]
    for folder in (tempfile.gettempdir(), *_SHARED_PLACES):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                uid = entry.stat(follow_symlinks=False).st_uid
            except OSError:
                continue
            if uid in _SANDBOX_UIDS and _idle(uid):
                found.append(entry.path)
    return found


def _sandbox_folders() -> set[str]:
    """The sandbox folders in the temporary folder (a caller that is not root owns them all)."""
    base = tempfile.gettempdir()
    return {n for n in os.listdir(base) if n.startswith("warrior-sandbox-")} if os.geteuid() != 0 else set()


def run_hostile(
    programs: Iterable[Hostile] = HOSTILE, *, secret: str | None = None, only: Iterable[str] | None = None
) -> list[HostileRow]:
    """Run each hostile program in the sandbox and report whether it was contained.

    secret: a fake credential expected in the worker's environment (os.environ[AWS_SECRET_ACCESS_KEY]);
    when None, one is put there for the duration of the run. `only` limits the run to those names.
    """
    wanted = set(only) if only is not None else None
    chosen = [p for p in programs if wanted is None or p.name in wanted]
    root = os.geteuid() == 0
    placed = secret is None
    previous = os.environ.get(_SECRET_VARIABLE)
    if secret is None:
        secret = "fake-secret-" + secrets.token_hex(12)
        os.environ[_SECRET_VARIABLE] = secret
    outside = tempfile.mkdtemp(prefix="warrior-hostile-")  # the worker's own folder (mode 0700)
    drop = tempfile.mkdtemp(prefix="warrior-hostile-drop-")
    os.chmod(drop, 0o1777)  # world-writable, sticky: only the kernel's process sweep protects it
    canary = os.path.join(outside, "canary.txt")
    secret_file = os.path.join(outside, "secret.txt")
    keep = os.path.join(outside, "keep.txt")
    rows: list[HostileRow] = []
    try:
        with open(secret_file, "w", encoding="utf-8") as handle:
            handle.write(secret)
        os.chmod(secret_file, stat.S_IRUSR | stat.S_IWUSR)
        with open(keep, "w", encoding="utf-8") as handle:
            handle.write("the worker's file")
        with _listener() as server:
            for program in chosen:
                rows.append(_run_one(program, root, secret, server, outside, drop, canary, secret_file, keep))
    finally:
        shutil.rmtree(outside, ignore_errors=True)
        shutil.rmtree(drop, ignore_errors=True)
        if placed:
            if previous is None:
                os.environ.pop(_SECRET_VARIABLE, None)
            else:
                os.environ[_SECRET_VARIABLE] = previous
    return rows


def _run_one(
    program: Hostile, root: bool, secret: str, server: socket.socket, outside: str, drop: str, canary: str,
    secret_file: str, keep: str,
) -> HostileRow:  # fmt: skip
    expected = " | ".join(program.expected)
    missing = [] if root and program.root_suffices else [name for name in program.needs if not _offered(name)]
    if missing:
        whom = "" if root else " a caller that is not root"
        return HostileRow(program.name, program.attack, expected, "skipped", None, None, 0.0,
                          f"needs {' and '.join(missing)}, which this host does not offer{whom}")  # fmt: skip
    nonce = secrets.token_hex(6)
    code = program.code
    for token, value in (
        ("@CANARY@", canary),
        ("@SECRET_FILE@", secret_file),
        ("@DROP@", drop),
        ("@TMP@", tempfile.gettempdir()),
        ("@NONCE@", nonce),
        ("@PORT@", str(server.getsockname()[1])),
    ):
        code = code.replace(token, value)  # fmt: skip
    before_processes = _live_processes()
    before_folders = _sandbox_folders()
    before_state = _worker_state()
    options = {"timeout_s": 3.0} | program.options
    started = time.monotonic()
    result = run(code, **options)
    seconds = time.monotonic() - started
    if program.settle_s:
        time.sleep(program.settle_s)
    problems = []
    outcome = _outcome(result.status, result.limit)
    if result.passed:
        problems.append("the program passed: its attack worked")
    if not _matches(outcome, program.expected):
        problems.append(f"outcome {outcome!r}, expected {expected!r}")
    if secret in result.stdout or secret in result.stderr:
        problems.append("the worker's secret is in the program's output")
    strays = _stray_files((drop, outside, tempfile.gettempdir(), *_SHARED_PLACES), nonce) + stray_identity_objects()
    if os.path.exists(canary):
        strays.append(canary)
    if strays:
        problems.append(f"files outside the sandbox: {strays}")
    try:
        with open(keep, encoding="utf-8") as handle:
            intact = handle.read() == "the worker's file"
    except OSError:
        intact = False
    if not intact:
        problems.append("the worker's file was changed or removed")
    if new_folders := _sandbox_folders() - before_folders:
        problems.append(f"sandbox folders left behind: {sorted(new_folders)}")
    connections = _accepted(server)
    if connections:
        problems.append(f"{connections} connection(s) reached the listener")
    after = _live_processes()
    me = os.getpid()
    strays_p = [pid for pid, (ppid, _) in after.items() if pid not in before_processes and ppid == me]
    if strays_p:
        problems.append(f"processes left running: {strays_p}")
    if _worker_state() != before_state:
        problems.append("the worker's limits, priority, affinity or folder changed")
    lines = [line for line in (result.stderr.strip() or result.stdout.strip()).splitlines() if line.strip()]
    return HostileRow(
        program=program.name,
        attack=program.attack,
        expected=expected,
        status=result.status,
        limit=result.limit,
        contained=not problems,
        seconds=round(seconds, 2),
        detail="; ".join(problems),
        evidence=lines[-1][:160].replace(secret, "<secret>") if lines else "",
    )


def render_table(rows: Iterable[HostileRow]) -> str:
    """The rows as a plain-text table: program, status, limit that stopped it, contained, seconds."""
    header = ("program", "status", "limit", "contained", "seconds")
    lines = [
        (r.program, r.status, r.limit or "-", "skipped" if r.contained is None else "yes" if r.contained else "NO",
         f"{r.seconds:.2f}")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines)
    return "\n".join(out)
