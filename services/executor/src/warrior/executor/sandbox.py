"""Running untrusted, model-generated Python code in a contained child process.

`run(code)` never executes the code in the calling process. Each call starts a fresh interpreter
(`sys.executable -I -S -B -u`: isolated mode, the standard library only, no bytecode written) in
its own session and process group, with a throw-away temporary directory as working directory,
HOME and TMPDIR, a minimal environment (nothing of the caller's), stdin on /dev/null and the
output read through pipes and capped. Layers, outermost first:

* Wall clock: the caller kills the whole process group with SIGKILL at the deadline, and always
  once the program is over, so no descendant outlives a call.
* Identity (when the caller is root): the child drops to an unprivileged uid/gid of its own, taken
  from a pool (uids 61000-61255 that name no user or group; a flock per uid makes them exclusive
  across every process on the host) so that concurrent runs never share one; the temporary
  directory is owned by it. The kernel then enforces file permissions, refuses signals to other
  users' processes (the caller included) and counts RLIMIT_NPROC per run. After the run every
  process of that uid is killed, catching anything that left the process group, and every file it
  owns in the world-writable directories (/tmp, /var/tmp, /dev/shm...) is removed. A caller that is
  not root (the service images run as uid 10001) gets every other layer.
* Kernel confinement that needs no privileges (`warrior.executor.confinement`), installed by the
  child on itself and inherited by all it starts: a seccomp filter (no signals, tracing, limits or
  priority changes for any process outside its own group, no leaving that group, no sockets, no
  io_uring, namespaces, mounts, FIFOs, device nodes or memory-backed files) and, where the kernel
  offers Landlock, a ruleset that lets it write only in its directory and read only the system's
  libraries and the interpreter (not /proc, not the worker's files or mounted Secrets), with TCP
  and signals outside its domain refused on newer kernels. The caller also makes itself
  non-dumpable, so that its /proc entries (environment, memory) are closed to its own user.
* Network namespace (when the caller may create one): the child gets a namespace with only a
  loopback interface that is down, so no connection reaches any host, the caller's loopback
  included. Where namespaces are not permitted this layer is skipped silently.
* Resource limits set in the child before the program runs: CPU time, address space, file size,
  open files, processes (threads count too), no core dumps; PR_SET_NO_NEW_PRIVS, so that no
  set-uid binary can raise privileges, and a parent-death signal.
* An audit hook (`sys.addaudithook`) refusing sockets, process creation (fork, exec, spawn,
  subprocess, subinterpreters), signals to other processes and changes to their resource limits,
  writes, removals, renames and mode changes outside the sandbox directory, handles on directories
  elsewhere (whose `dir_fd=` calls the hook could not follow), reads of other processes' /proc
  entries, special files (FIFOs, device nodes, POSIX shared memory, memfd), native code loading
  (ctypes, sqlite extensions) and object-graph introspection (gc). A refused operation
  ends the program at once with a marker on stderr and a distinct exit code, so it is reported
  as `status="blocked"` with the refused `limit` and cannot be caught and hidden by the program.

An audit hook is a tripwire, not a boundary (CPython documents it as such): the kernel-enforced
layers above are what contain a program that gets around it. `run` is safe to call from many
threads at once.
"""

from __future__ import annotations

import fcntl
import grp
import marshal
import math
import os
import pwd
import re
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from warrior.executor import confinement

__all__ = ["STATUSES", "SandboxResult", "Status", "run"]

Status = Literal["passed", "failed", "timeout", "memory", "blocked", "killed", "error"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "timeout", "memory", "blocked", "killed", "error")

# Exit codes the child uses for its own verdicts; the program can also exit with them, but then
# the marker line (which carries a per-run nonce) is missing and it reads as a plain failure.
_BLOCKED_EXIT = 86
_SETUP_EXIT = 87
# Unprivileged identities for runs started by root: one uid (and gid of the same number) per
# concurrent run. Ids that name an existing user or group are skipped.
_UID_BASE = 61000
_UID_COUNT = 256
# Seconds to wait for the pipes to drain once every process of a run has been killed.
_DRAIN_S = 1.0
_FALLBACK_POLL_S = 0.02

# The child's bootstrap: run as `python -I -S -B -u -c _BOOTSTRAP <config>`, the config marshalled and
# hex-encoded (marshal is built into the interpreter: importing json would cost more than the rest of
# the bootstrap). It isolates the network, sets the limits, drops privileges, installs the kernel
# confinement and the audit hook, and only then compiles and executes the program in a fresh
# `__main__` module.
_BOOTSTRAP = r"""
import os
import sys


def _boot():
    import marshal
    import resource

    cfg = marshal.loads(bytes.fromhex(sys.argv[1]))
    tag = cfg["tag"].encode()
    directory = cfg["dir"]

    def setup_failed(detail):
        os.write(2, b"\n" + tag + b"error sandbox_setup: " + str(detail).encode("utf-8", "replace") + b"\n")
        os._exit(cfg["setup_exit"])

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except Exception:
        libc = None

    if libc is not None and cfg["isolate_network"] and os.geteuid() == 0:
        libc.unshare(0x40000000 | 0x08000000)  # CLONE_NEWNET | CLONE_NEWIPC, best effort

    # Loaded now, while its directory is readable; wrapped below so that it cannot spawn.
    import _posixsubprocess

    try:  # the same, so that it cannot create POSIX shared memory (multiprocessing imports it)
        import _posixshmem  # noqa: F401
    except ImportError:
        pass

    def limit(which, soft, hard):
        current = resource.getrlimit(which)[1]
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(which, (soft, hard))

    try:
        limit(resource.RLIMIT_CORE, 0, 0)
        limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)
        limit(resource.RLIMIT_FSIZE, cfg["file_size"], cfg["file_size"])
        limit(resource.RLIMIT_NOFILE, cfg["open_files"], cfg["open_files"])
        limit(resource.RLIMIT_NPROC, cfg["processes"], cfg["processes"])
    except (OSError, ValueError) as exc:
        setup_failed("cannot set resource limits: %s" % exc)

    uid, gid = cfg["uid"], cfg["gid"]
    if uid is not None and libc is None:
        setup_failed("ctypes is needed to drop privileges safely")
    if uid is not None:
        # The interpreter's library may sit where the unprivileged identity cannot look (under
        # /root, say): directories opened now stay readable through /proc/self/fd afterwards.
        held = []
        for entry in sys.path:
            try:
                held.append((entry, os.open(entry, os.O_RDONLY | os.O_DIRECTORY)))
            except OSError:
                pass
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        except OSError as exc:
            setup_failed("cannot drop privileges: %s" % exc)
        if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) != (uid, uid, gid, gid) or os.getgroups():
            setup_failed("privileges were not dropped")
        try:
            os.setuid(0)
        except OSError:
            pass
        else:
            setup_failed("root could be regained")
        if libc.prctl(4, 1, 0, 0, 0) != 0:  # PR_SET_DUMPABLE: /proc/self stays this identity's own
            setup_failed("prctl(PR_SET_DUMPABLE) failed")
        remapped = {}
        for entry, fd in held:
            if os.access(entry, os.R_OK | os.X_OK):
                os.close(fd)
            else:
                remapped[entry] = "/proc/self/fd/%d" % fd
        sys.path[:] = [remapped.get(entry, entry) for entry in sys.path]
        sys.path_importer_cache.clear()
        # Packages imported already (collections, encodings...) look for submodules on their own path.
        for loaded in list(sys.modules.values()):
            search = getattr(loaded, "__path__", None)
            if not isinstance(search, list):
                continue
            for index, folder in enumerate(search):
                for entry, alias in remapped.items():
                    if folder == entry or folder.startswith(entry + "/"):
                        search[index] = alias + folder[len(entry):]
                        break

    if libc is not None:
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            setup_failed("prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.prctl(1, 9, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG = SIGKILL
            setup_failed("prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != cfg["parent"]:
        os._exit(cfg["setup_exit"])  # the caller is gone already
    if (cfg["landlock_fd"] is not None or cfg["seccomp"] is not None) and libc is None:
        setup_failed("ctypes is needed to install the kernel confinement")
    if cfg["landlock_fd"] is not None:
        # landlock_restrict_self(ruleset, 0): the same number on every architecture.
        if libc.syscall(ctypes.c_long(446), ctypes.c_int(cfg["landlock_fd"]), ctypes.c_uint32(0)) != 0:
            setup_failed("landlock_restrict_self: %s" % os.strerror(ctypes.get_errno()))
        os.close(cfg["landlock_fd"])
    if cfg["seccomp"] is not None:
        # The packed filter with this process's pid written where the parent left room for it.
        raw = bytearray(bytes.fromhex(cfg["seccomp"]))
        pid = os.getpid()
        for key, value in (("seccomp_pid", pid), ("seccomp_neg_pid", -pid)):
            for offset in cfg[key]:
                raw[offset:offset + 4] = (value & 0xFFFFFFFF).to_bytes(4, sys.byteorder)
        buffer = ctypes.create_string_buffer(bytes(raw), len(raw))

        class Program(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        program = Program(len(raw) // 8, ctypes.cast(buffer, ctypes.c_void_p))
        # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        if libc.prctl(ctypes.c_int(22), ctypes.c_ulong(2), ctypes.byref(program), ctypes.c_ulong(0),
                      ctypes.c_ulong(0)) != 0:
            setup_failed("prctl(PR_SET_SECCOMP): %s" % os.strerror(ctypes.get_errno()))
    del libc
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith("ctypes.") or m == "_ctypes"]:
        del sys.modules[name]

    try:
        limit(resource.RLIMIT_AS, cfg["memory"], cfg["memory"])
    except (OSError, ValueError) as exc:
        setup_failed("cannot set the memory limit: %s" % exc)

    if cfg["audit"]:
        _guard(cfg, _posixsubprocess)

    path = os.path.join(directory, "main.py")
    with open(path, "rb") as handle:
        source = handle.read()
    module = type(sys)("__main__")
    module.__file__ = path
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    sys.argv[:] = [path]
    return source, module.__dict__


def _guard(cfg, posixsubprocess):
    tag = cfg["tag"].encode()
    blocked_exit = cfg["blocked_exit"]
    root = os.path.realpath(cfg["dir"])
    prefix = root + "/"
    own_pid = os.getpid()
    own_pgid = os.getpgrp()
    write_mask = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    devices = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})
    write, exit_now, fspath = os.write, os._exit, os.fspath
    realpath, join, dirname, basename, readlink, getcwd = (
        os.path.realpath, os.path.join, os.path.dirname, os.path.basename, os.readlink, os.getcwd
    )
    normpath, isabs, isdir = os.path.normpath, os.path.isabs, os.path.isdir

    def block(limit, event, detail):
        line = "blocked %s: %s %s" % (limit, event, detail)
        try:
            write(2, b"\n" + tag + line[:300].encode("utf-8", "replace") + b"\n")
        finally:
            exit_now(blocked_exit)
        raise PermissionError(line)

    def plain(path):
        # The characters the system call will get, as an exact str: a str or bytes subclass cannot
        # answer differently here (its methods are never called), and a path-like object is asked
        # once.
        if type(path) is not str and type(path) is not bytes:
            path = fspath(path)
        if isinstance(path, bytes):
            return bytes.decode(path, "utf-8", "surrogateescape")
        return str.__add__("", path)

    def text(path, dir_fd):
        if isinstance(path, int):
            return readlink("/proc/self/fd/%d" % int.__index__(path))
        name = plain(path)
        if dir_fd is not None and dir_fd >= 0 and not isabs(name):
            name = join(readlink("/proc/self/fd/%d" % dir_fd), name)
        return name

    def describe(args):
        shown = []
        for arg in args:
            shown.append(repr(arg) if type(arg) in (str, bytes, int, bool, type(None)) else "<object>")
        return "(" + ", ".join(shown) + ")"

    def inside(path, dir_fd, entry):
        name = text(path, dir_fd)
        if name in devices:
            return True
        last = basename(name.rstrip("/"))
        if entry and last not in ("", ".", ".."):
            # The directory entry itself (a symlink is removed or renamed, not its target).
            resolved = join(realpath(dirname(name.rstrip("/")) or "."), last)
        else:
            resolved = realpath(name)
        return resolved == root or resolved.startswith(prefix)

    def on_read(path):
        name = plain(path)
        name = normpath(name if isabs(name) else join(getcwd(), name))
        if not name.startswith("/proc/"):
            name = realpath(name)
        if name.startswith("/proc/"):
            first = name[6:].split("/", 1)[0]
            if first.isdigit() and int(first) != own_pid:
                return "no_process_info"
        if name != root and not name.startswith(prefix) and isdir(name):
            # A descriptor of a directory elsewhere would let `dir_fd=` calls write there unseen
            # (the "open" event does not carry dir_fd).
            return "dir_handle_outside"
        return None

    # Each check returns None to allow the operation, or the limit that refuses it.
    write_limit = "write_outside_dir"

    def on_open(args):
        path, _mode, flags = args
        if isinstance(path, int):
            return None
        if flags is not None and flags & write_mask:
            return None if inside(path, None, False) else write_limit
        return on_read(path)

    def paths(*specs):
        def check(args):
            for index, fd_index, entry in specs:
                fd = args[fd_index] if fd_index is not None else None
                if not inside(args[index], fd, entry):
                    return write_limit
            return None

        return check

    def on_kill(args):
        return None if args[0] == own_pid else "no_signals"

    def on_prlimit(args):
        # Another process's limits (the caller's RLIMIT_CPU, say) are as much a weapon as a signal.
        return None if args[0] in (0, own_pid) else "no_signals"

    def on_killpg(args):
        return None if args[0] == own_pgid == own_pid else "no_signals"

    def on_sqlite(args):
        database = args[0]
        name = plain(database)
        if name in ("", ":memory:"):
            return None
        if name.startswith("file:"):
            return write_limit
        return None if inside(name, None, False) else write_limit

    def refuse(limit):
        return lambda args: limit

    import _signal  # so that a later `import signal` finds it loaded and imports nothing guarded

    # Modules whose functions were wrapped or removed: importing them afresh would restore those.
    guarded_modules = {"_posixsubprocess": "no_subprocess", "posix": "no_subprocess", "_signal": "no_signals",
                       "_posixshmem": "no_special_files"}

    def on_import(args):
        return guarded_modules.get(plain(args[0]))

    checks = {
        "open": on_open,
        "os.remove": paths((0, 1, True)),
        "os.rmdir": paths((0, 1, True)),
        "os.mkdir": paths((0, 2, True)),
        "os.rename": paths((0, 2, True), (1, 3, True)),
        "os.link": paths((0, 2, False), (1, 3, True)),
        "os.symlink": paths((1, 2, True)),
        "os.chmod": paths((0, 2, False)),
        "os.chown": paths((0, 3, False)),
        "os.utime": paths((0, 3, False)),
        "os.truncate": paths((0, None, False)),
        "os.chflags": paths((0, None, False)),
        "os.lchflags": paths((0, None, False)),
        "os.setxattr": paths((0, None, False)),
        "os.removexattr": paths((0, None, False)),
        "shutil.rmtree": paths((0, 1, True)),
        "sqlite3.connect": on_sqlite,
        "os.kill": on_kill,
        "os.killpg": on_killpg,
        "resource.prlimit": on_prlimit,
        "sandbox.special_file": refuse("no_special_files"),
        "import": on_import,
        "cpython.PyInterpreterState_New": refuse("no_subinterpreters"),
        "sqlite3.enable_load_extension": refuse("no_native_code"),
        "sqlite3.load_extension": refuse("no_native_code"),
        "gc.get_objects": refuse("no_introspection"),
        "gc.get_referrers": refuse("no_introspection"),
        "gc.get_referents": refuse("no_introspection"),
        "_posixsubprocess.fork_exec": refuse("no_subprocess"),
    }
    for name in ("os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
                 "os.startfile", "subprocess.Popen", "pty.spawn"):
        checks[name] = refuse("no_subprocess")
    fallback_limits = {"import": "no_subprocess", "os.kill": "no_signals", "os.killpg": "no_signals"}

    def hook(event, args):
        check = checks.get(event)
        if check is not None:
            try:
                limit = check(args)
            except Exception as exc:  # a check that cannot decide refuses
                block(fallback_limits.get(event, write_limit), event, "(%s: %s)" % (type(exc).__name__, exc))
            if limit is not None:
                block(limit, event, describe(args))
        elif event.startswith("socket."):
            block("no_network", event, describe(args))
        elif event.startswith("ctypes."):
            block("no_native_code", event, describe(args))

    # Spawning through the C helper directly raises no audit event of its own: route it to one.
    def fork_exec(*args, **kwargs):
        __import__("sys").audit("_posixsubprocess.fork_exec")
        raise PermissionError("process creation is not allowed here")

    posixsubprocess.fork_exec = fork_exec
    # FIFOs, device nodes, POSIX shared memory and memory-backed files raise no audit event:
    # os.mkfifo, os.mknod and shm_open would leave objects in world-writable directories (/tmp,
    # /dev/shm) that outlive the run, and os.memfd_create holds memory that the address-space limit
    # does not count. Programs under evaluation need none of them (re-importing the modules is refused).
    audit = sys.audit

    def special_file(name):
        def refused(*args, **kwargs):
            audit("sandbox.special_file", name)
            raise PermissionError("%s is not allowed here" % name)

        return refused

    for module_name, attributes in (("posix", ("mkfifo", "mknod", "memfd_create")),
                                    ("os", ("mkfifo", "mknod", "memfd_create")),
                                    ("_posixshmem", ("shm_open", "shm_unlink"))):
        module = sys.modules.get(module_name)
        for attribute in attributes:
            if module is not None and hasattr(module, attribute):
                setattr(module, attribute, special_file(module_name + "." + attribute))
    # pidfd signals raise no audit event either: remove them (re-importing the modules is refused).
    for module_name, attribute in (("posix", "pidfd_open"), ("os", "pidfd_open"), ("_signal", "pidfd_send_signal"),
                                   ("signal", "pidfd_send_signal")):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            delattr(module, attribute)
    sys.addaudithook(hook)


_source, _namespace = _boot()
del _boot, _guard
try:
    exec(compile(_source, _namespace["__file__"], "exec"), _namespace)
except SystemExit:
    raise
except BaseException as _error:
    # The program's traceback, without this bootstrap's frame.
    _error.__traceback__ = _error.__traceback__.tb_next
    sys.excepthook(type(_error), _error, _error.__traceback__)
    raise SystemExit(1) from None
"""


@dataclass(frozen=True)
class SandboxResult:
    """What became of one program.

    `status` is "passed" (exit code 0), "failed" (a non-zero exit: a failed assertion, an
    exception), "timeout" (the wall-clock or CPU-time limit), "memory" (the address-space limit),
    "blocked" (the program attempted an operation the sandbox refuses), "killed" (stopped by a
    signal, or for exceeding the output cap) or "error" (the sandbox itself could not run it).
    `limit` names what stopped it, None when nothing did:

    * timeout: "wall_time 10s", "cpu_time"; memory: "memory 512MB";
    * killed: "output cap", "signal SIGSEGV" (any signal but the sandbox's own);
    * blocked: "no_network", "no_subprocess", "no_subinterpreters", "no_signals",
      "write_outside_dir", "dir_handle_outside", "no_process_info", "no_special_files",
      "no_native_code", "no_introspection";
    * failed, when a limit shows in the error: "file_size", "open_files", "processes";
    * error: "sandbox setup".

    `stdout` and `stderr` are the last characters of each stream; a refused operation appears in
    stderr as a line "[sandbox] blocked <limit>: <event> <arguments>".
    """

    passed: bool
    status: Status
    limit: str | None
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "status": self.status,
            "limit": self.limit,
            "returncode": self.returncode,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxResult:
        """The result `to_dict` gave (after a trip through JSON); ValueError when it is not one."""
        try:
            status = data["status"]
            returncode = data["returncode"]
            limit = data["limit"]
            fields = (data["passed"], data["stdout"], data["stderr"], data["duration_s"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a sandbox result: {exc!r}") from None
        passed, stdout, stderr, duration_s = fields
        if status not in STATUSES:
            raise ValueError(f"not a sandbox result: status {status!r}")
        if not isinstance(passed, bool) or passed != (status == "passed"):
            raise ValueError(f"not a sandbox result: passed {passed!r} with status {status!r}")
        if returncode is not None and (isinstance(returncode, bool) or not isinstance(returncode, int)):
            raise ValueError(f"not a sandbox result: returncode {returncode!r}")
        if limit is not None and not isinstance(limit, str):
            raise ValueError(f"not a sandbox result: limit {limit!r}")
        if not isinstance(stdout, str) or not isinstance(stderr, str):
            raise ValueError("not a sandbox result: stdout and stderr must be text")
        if isinstance(duration_s, bool) or not isinstance(duration_s, int | float):
            raise ValueError(f"not a sandbox result: duration_s {duration_s!r}")
        return cls(passed, status, limit, returncode, stdout, stderr, float(duration_s))


class _Identities:
    """A pool of unprivileged uids, one per concurrent run, so that runs cannot touch each other.

    A uid is held through an exclusive flock on a lock file of its own, in a directory only root
    can write to, so that runs in other processes on the host (several workers, several test
    sessions) never share one either; the kernel releases the lock if its holder dies. Uids are
    tried in rotation: the processes of a finished run are killed, but zombies count against
    RLIMIT_NPROC until init reaps them, so a uid rests before it is used again.

    The lock file also says whether the uid was left clean: its holder writes "clean" there only
    after it saw no process of the uid left and removed the uid's files, and "dirty" as it takes it.
    A uid found clean needs no sweep before its next run; one whose holder died mid-run does.
    """

    def __init__(self, base: int, count: int) -> None:
        self._base = base
        self._count = count
        self._candidates: list[int] | None = None
        self._directory: str | None = None
        self._next = 0
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()

    def _setup(self) -> tuple[list[int], str]:
        if self._candidates is None or self._directory is None:
            candidates = []
            for uid in range(self._base, self._base + self._count):
                try:
                    pwd.getpwuid(uid)
                    continue
                except KeyError:
                    pass
                try:
                    grp.getgrgid(uid)
                    continue
                except KeyError:
                    pass
                candidates.append(uid)
            if not candidates:
                raise RuntimeError(f"no unused uid in {self._base}..{self._base + self._count - 1} for the sandbox")
            self._directory = _lock_directory()
            self._candidates = candidates
        return self._candidates, self._directory

    def _try(self, uid: int, directory: str) -> bool | None:
        """Whether the uid was left clean, once it is held; None when another run holds it."""
        path = os.path.join(directory, f"uid-{uid}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            clean = os.pread(fd, len(_CLEAN), 0) == _CLEAN
            os.pwrite(fd, _DIRTY, 0)
        except OSError:
            os.close(fd)
            return None
        self._held[uid] = fd
        return clean

    def acquire(self) -> tuple[int, bool]:
        """A uid no other run on this host is using (waits while all of them are), and whether its
        last holder left it clean."""
        while True:
            with self._lock:
                candidates, directory = self._setup()
                for step in range(len(candidates)):
                    uid = candidates[(self._next + step) % len(candidates)]
                    if uid in self._held:
                        continue
                    clean = self._try(uid, directory)
                    if clean is not None:
                        self._next = (self._next + step + 1) % len(candidates)
                        return uid, clean
            time.sleep(0.05)

    def release(self, uid: int, *, clean: bool) -> None:
        """Let the uid go; `clean` when no process or file of it is left."""
        with self._lock:
            fd = self._held.pop(uid)
        try:
            if clean:
                os.pwrite(fd, _CLEAN, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the descriptor drops the flock


def _lock_directory() -> str:
    """A directory for the uid lock files that only this (root) process's user can write to."""
    base = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    directory = os.path.join(base, f"warrior-sandbox-{os.geteuid()}")
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise RuntimeError(f"{directory} is not a private directory of uid {os.geteuid()}; remove it")
    return directory


_CLEAN = b"clean"
_DIRTY = b"dirty"
_IDENTITIES = _Identities(_UID_BASE, _UID_COUNT)


def _status_field(status: bytes, name: bytes) -> bytes:
    start = status.find(b"\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 2
    end = status.find(b"\n", start)
    return status[start : end if end >= 0 else len(status)]


def _live_statuses() -> Iterator[tuple[str, bytes]]:
    """(pid, /proc/<pid>/status) of every live process (not a zombie) this process can see."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as handle:
                status = handle.read()
        except OSError:
            continue
        state = _status_field(status, b"State").split()
        if state and state[0] in (b"Z", b"X"):
            continue
        yield name, status


def _processes(uid: int) -> dict[int, int]:
    """The live processes (not zombies) running as `uid` (real, effective, saved or filesystem
    uid), each with its number of threads."""
    found: dict[int, int] = {}
    wanted = str(uid).encode()
    for name, status in _live_statuses():
        if wanted not in _status_field(status, b"Uid").split():
            continue
        threads = _status_field(status, b"Threads").strip()
        found[int(name)] = int(threads) if threads.isdigit() else 1
    return found


def _live(pgid: int | None, uid: int | None) -> tuple[bool, list[int]]:
    """One pass over /proc: whether a live process (not a zombie) of group `pgid` or running as
    `uid` (real, effective, saved or filesystem uid) is there, and the pids of those running as `uid`."""
    found, by_uid = False, list[int]()
    wanted_uid = str(uid).encode() if uid is not None else None
    wanted_group = str(pgid).encode() if pgid is not None else None
    for name, status in _live_statuses():
        if wanted_uid is not None and wanted_uid in _status_field(status, b"Uid").split():
            found = True
            by_uid.append(int(name))
        elif wanted_group is not None and _group_of(name, status) == wanted_group:
            found = True
    return found, by_uid


def _group_of(pid: str, status: bytes) -> bytes:
    """The process group of a process, from its status (NSpgid, Linux 4.1+) or else its stat."""
    group = _status_field(status, b"NSpgid").split()
    if group:
        return group[0]
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return b""
    return fields[2] if len(fields) > 2 else b""


def _sweep(pgid: int | None, uid: int | None) -> bool:
    """SIGKILL process group `pgid` and every process running as `uid` (either may be None) until no
    live one is left; True once none is. A member forking while the group is killed cannot leave a
    child behind (with the seccomp filter no member can leave the group), nor can a fork loop of the
    uid outrun it. Processes are killed by pid only when they run as the run's own uid, so a reused
    pid is never someone else's process; the group is killed as a whole."""
    for _ in range(100):
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                if uid is None:
                    return True  # nothing left in the group, not even its unreaped leader
        alive, pids = _live(pgid, uid)
        if not alive:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.005)
    return False


# World-writable directories where a program running as the run's uid can leave files that outlive
# the run (through calls the audit hook does not see); world-writable folders in them are searched too.
_SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue")


def _remove_identity_files(uid: int) -> None:
    """Remove every file and folder `uid` owns in the shared directories (its processes are gone)."""
    pending = [(base, 0) for base in dict.fromkeys((*_SHARED_DIRS, tempfile.gettempdir()))]
    while pending:
        folder, depth = pending.pop()
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
        except OSError:
            continue
        for entry in found:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid == uid:
                if stat.S_ISDIR(info.st_mode):
                    _remove_tree(entry.path)
                else:
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass
            elif stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH and depth < 3:
                pending.append((entry.path, depth + 1))


def _remove_tree(path: str) -> None:
    """Remove the sandbox directory, whatever modes the program left on what it created."""
    top = os.path.normpath(path)

    def retry(func: Callable[..., Any], target: str, _exc: Any) -> None:
        try:
            parent = os.path.dirname(os.path.normpath(target))
            if parent == top or parent.startswith(top + os.sep):
                os.chmod(parent, stat.S_IRWXU)  # never a folder above the tree (the temp directory)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, stat.S_IRWXU)
            func(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)


class _Tail:
    """The last `keep` bytes of a stream, and how many bytes it carried in all."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.keep:
            del self.data[: len(self.data) - self.keep]

    def text(self, chars: int) -> str:
        return bytes(self.data[-self.keep :]).decode("utf-8", "replace")[-chars:]


def _minimal_env(directory: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": directory,
        "TMPDIR": directory,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # Fewer malloc arenas: each reserves address space that the memory limit counts.
        "MALLOC_ARENA_MAX": "2",
    }


def _collect(
    proc: subprocess.Popen[bytes],
    deadline: float,
    out: _Tail,
    err: _Tail,
    max_output_bytes: int,
) -> str | None:
    """Read the program's output until it exits; "timeout" or "output" when it had to be stopped."""
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    pidfd = -1
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = -1
    exited = False
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        if pidfd >= 0:
            selector.register(pidfd, selectors.EVENT_READ)
        try:
            while streams or not exited:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                wait = remaining if pidfd >= 0 else min(remaining, _FALLBACK_POLL_S)
                for key, _ in selector.select(wait):
                    fd = int(key.fd)
                    if fd == pidfd:
                        exited = True
                        selector.unregister(fd)
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        selector.unregister(fd)
                        del streams[fd]
                        continue
                    streams[fd].add(chunk)
                    if out.total + err.total > max_output_bytes:
                        return "output"
                if pidfd < 0 and not exited:
                    exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
                if exited and streams:
                    # Something still holds the pipes after the program ended (a descendant that
                    # escaped, or nothing yet drained): kill the rest and read what is left.
                    return None
        finally:
            if pidfd >= 0:
                os.close(pidfd)
    return None


def _drain(proc: subprocess.Popen[bytes], out: _Tail, err: _Tail, max_output_bytes: int) -> None:
    """Read what is left in the pipes once every writer has been killed."""
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    deadline = time.monotonic() + _DRAIN_S
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        while streams and time.monotonic() < deadline:
            for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk or out.total + err.total > max_output_bytes:
                    selector.unregister(fd)
                    del streams[fd]
                    continue
                streams[fd].add(chunk)


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int | None, float]:
    """Wait for the (killed) child; its exit code as Popen reports it, and its CPU seconds."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return proc.returncode, 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


_MEMORY_ERROR = re.compile(r"^MemoryError\b", re.MULTILINE)
_FILE_TOO_LARGE = re.compile(r"\[Errno 27\] File too large")
_TOO_MANY_FILES = re.compile(r"\[Errno 24\] Too many open files")
_NO_THREADS = re.compile(r"can't start new thread|\[Errno 11\] Resource temporarily unavailable")


def _classify(
    *,
    stopped: str | None,
    returncode: int | None,
    cpu_s: float,
    cpu_limit_s: int,
    stderr: str,
    tag: str,
    timeout_s: float,
    memory_mb: int,
) -> tuple[Status, str | None]:
    if stopped == "timeout":
        return "timeout", f"wall_time {timeout_s:g}s"
    if stopped == "output":
        return "killed", "output cap"
    if returncode == _BLOCKED_EXIT:
        found = re.findall(re.escape(tag) + r"blocked (\S+):", stderr)
        if found:
            return "blocked", found[-1]
    if returncode == _SETUP_EXIT and tag + "error sandbox_setup" in stderr:
        return "error", "sandbox setup"
    if returncode is None:
        return "error", "lost the child process"
    if returncode == 0:
        return "passed", None
    if returncode < 0:
        signum = -returncode
        if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_s >= cpu_limit_s):
            return "timeout", "cpu_time"
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        return "killed", f"signal {name}"
    if _MEMORY_ERROR.search(stderr):
        return "memory", f"memory {memory_mb}MB"
    if _FILE_TOO_LARGE.search(stderr):
        return "failed", "file_size"
    if _TOO_MANY_FILES.search(stderr):
        return "failed", "open_files"
    if _NO_THREADS.search(stderr):
        return "failed", "processes"
    return "failed", None


def run(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_output_bytes: int = 64_000,
    file_size_mb: int = 16,
    max_open_files: int = 64,
    max_processes: int = 16,
    excerpt_chars: int = 4_000,
    isolate_network: bool = True,
    audit_hook: bool = True,
    kernel_confinement: bool = True,
) -> SandboxResult:
    """Run `code` as a Python program in a contained child process and report what became of it.

    timeout_s: wall-clock limit; the CPU-time limit is the same number of seconds, rounded up.
    memory_mb: address-space limit (RLIMIT_AS); allocations beyond it raise MemoryError.
    max_output_bytes: stdout and stderr together; a program printing more is killed.
    file_size_mb: largest file the program may write (RLIMIT_FSIZE).
    max_open_files: RLIMIT_NOFILE.
    max_processes: RLIMIT_NPROC for the run's own identity (threads count); when the caller is
        not root the limit counts the caller's other processes too, so it is raised by their number.
    excerpt_chars: how much of the end of each stream the result keeps.
    isolate_network: put the child in a network namespace of its own where permitted.
    audit_hook: install the audit hook; turning it off leaves only the kernel-enforced layers
        (for checking those on their own, never for untrusted code).
    kernel_confinement: install the seccomp filter and the Landlock ruleset where the host offers
        them (see `warrior.executor.confinement`); off only to show what they stop.
    """
    if timeout_s <= 0 or memory_mb <= 0 or max_output_bytes <= 0:
        raise ValueError("timeout_s, memory_mb and max_output_bytes must be positive")
    started = time.monotonic()
    tag = f"[warrior-sandbox {secrets.token_hex(8)}] "
    confinement.protect_caller()
    layers = confinement.available()
    # `clean`: no process or file of the run's uid is left (as its last holder left it, at first).
    uid, clean = _IDENTITIES.acquire() if os.geteuid() == 0 else (None, False)
    swept = False
    directory: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    ruleset: int | None = None
    out, err = _Tail(max(4 * excerpt_chars, 8192)), _Tail(max(4 * excerpt_chars, 8192))
    try:
        directory = tempfile.mkdtemp(prefix="warrior-sandbox-")
        if uid is not None:
            if not clean:  # leftovers of an earlier caller that died mid-run
                clean = _sweep(None, uid)
                _remove_identity_files(uid)
            os.chown(directory, uid, uid)
            processes = max_processes
        else:
            processes = sum(_processes(os.getuid()).values()) + max_processes
        program = os.path.join(directory, "main.py")
        fd = os.open(program, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, code.encode("utf-8", "surrogatepass"))
            if uid is not None:
                os.fchown(fd, uid, uid)
        finally:
            os.close(fd)
        cpu_limit_s = max(1, math.ceil(timeout_s))
        if kernel_confinement:
            try:
                ruleset = confinement.landlock_ruleset(directory)
            except OSError as exc:
                detail = f"cannot build the Landlock rules: {exc}"
                return SandboxResult(False, "error", "sandbox setup", None, "", detail, 0.0)
        seccomp = confinement.packed_filter() if kernel_confinement and layers.seccomp else None
        config = {
            "tag": tag,
            "dir": directory,
            "uid": uid,
            "gid": uid,
            "parent": os.getpid(),
            "cpu_s": cpu_limit_s,
            "memory": memory_mb * 1024 * 1024,
            "file_size": file_size_mb * 1024 * 1024,
            "open_files": max_open_files,
            "processes": processes,
            "isolate_network": isolate_network,
            "audit": audit_hook,
            "landlock_fd": ruleset,
            "seccomp": seccomp.raw.hex() if seccomp is not None else None,
            "seccomp_pid": list(seccomp.pid_offsets) if seccomp is not None else [],
            "seccomp_neg_pid": list(seccomp.neg_pid_offsets) if seccomp is not None else [],
            "blocked_exit": _BLOCKED_EXIT,
            "setup_exit": _SETUP_EXIT,
        }
        argv = [sys.executable, "-I", "-S", "-B", "-u", "-X", "utf8", "-c", _BOOTSTRAP, marshal.dumps(config).hex()]
        clean = False  # from here on a process of the uid may run
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=directory,
                env=_minimal_env(directory),
                start_new_session=True,
                close_fds=True,
                pass_fds=() if ruleset is None else (ruleset,),
            )
        except OSError as exc:
            return SandboxResult(False, "error", "sandbox setup", None, "", f"cannot start: {exc}", 0.0)
        finally:
            if ruleset is not None:
                os.close(ruleset)
                ruleset = None
        try:
            stopped = _collect(proc, started + timeout_s, out, err, max_output_bytes)
        finally:
            # The leader is not reaped yet, so its pid still names this group and nothing else.
            swept = _sweep(proc.pid, uid)
        _drain(proc, out, err, max_output_bytes)
        returncode, cpu_s = _reap(proc)
        duration = time.monotonic() - started
        stderr = err.text(excerpt_chars)
        status, limit = _classify(
            stopped=stopped,
            returncode=returncode,
            cpu_s=cpu_s,
            cpu_limit_s=cpu_limit_s,
            stderr=stderr,
            tag=tag,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
        )
        return SandboxResult(
            passed=status == "passed",
            status=status,
            limit=limit,
            returncode=returncode,
            stdout=out.text(excerpt_chars),
            stderr=stderr.replace(tag, "[sandbox] "),
            duration_s=round(duration, 3),
        )
    finally:
        if ruleset is not None:
            os.close(ruleset)
        if proc is not None:
            if proc.returncode is None:  # interrupted before the normal end: stop everything anyway
                swept = _sweep(proc.pid, uid)
                _reap(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        if uid is not None and proc is not None:
            _remove_identity_files(uid)  # the run's own directory among them
            clean = swept
        if directory is not None:
            _remove_tree(directory)
        if uid is not None:
            _IDENTITIES.release(uid, clean=clean)
