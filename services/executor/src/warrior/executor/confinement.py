"""Kernel-enforced confinement for sandboxed programs that needs no privileges: seccomp and Landlock.

Both are installed by the sandbox's child on itself, after PR_SET_NO_NEW_PRIVS and before the
program runs; neither can be removed afterwards, and both are inherited by every descendant. They
are what contains a program when the caller is not root (no identity of its own to drop to, no
network namespace), and they stay on top of those layers when it is.

* seccomp (Linux 3.5+, x86_64 and aarch64; a container runtime's default profile allows it):
  a filter that refuses, with EPERM, signals to any process but the program's own (kill, tkill,
  tgkill, sigqueue, pidfd), tracing and reading other processes (ptrace, process_vm_*, kcmp),
  changing other processes' limits, priority or CPU affinity, leaving the process group (setsid,
  setpgid: the caller kills the whole group, so every descendant is found), creating sockets of
  any family, io_uring (which would bypass this filter), new namespaces, mounts, FIFOs and device
  nodes, memory-backed files (which the address-space limit does not count), BPF, perf events,
  userfaultfd and the kernel keyring. Any other architecture than the kernel's own is killed.
* Landlock (Linux 5.13+, when the kernel enables it): the program may write, create and remove
  only inside its own directory; it may read only the interpreter's installation and the system's
  libraries (/usr, /lib...), a few device files and nothing else (not /proc, not the worker's
  files, not a mounted Secret); from ABI 4 it may not bind or connect TCP sockets, from ABI 6 it
  may not signal processes outside its own domain nor reach abstract Unix sockets.

`available()` says which of them this host offers; `protect_caller()` makes the calling process
non-dumpable, so that even a program outside these layers cannot read its /proc entries
(environment, memory) or trace it as the same user.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct
import sys
import sysconfig
import threading
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Layers",
    "PackedFilter",
    "available",
    "landlock_abi",
    "landlock_ruleset",
    "packed_filter",
    "protect_caller",
    "seccomp_filter",
]

# --- seccomp -------------------------------------------------------------------------------------

_BPF_LD_W_ABS = 0x20
_BPF_JEQ = 0x15
_BPF_JGE = 0x35
_BPF_JSET = 0x45
_BPF_RET = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_X32_SYSCALL_BIT = 0x40000000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
_CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80

_ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {
        "socket": 41, "kill": 62, "ptrace": 101, "setpgid": 109, "setsid": 112, "mknod": 133, "mknodat": 259,
        "sched_setparam": 142, "sched_setscheduler": 144, "setpriority": 141, "chroot": 161, "mount": 165,
        "umount2": 166, "tkill": 200, "tgkill": 234, "sched_setaffinity": 203, "rt_sigqueueinfo": 129,
        "rt_tgsigqueueinfo": 297, "migrate_pages": 256, "unshare": 272, "move_pages": 279, "perf_event_open": 298,
        "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "sched_setattr": 314,
        "memfd_create": 319, "bpf": 321, "userfaultfd": 323, "add_key": 248, "request_key": 249, "keyctl": 250,
        "ioprio_set": 251, "pivot_root": 155, "prlimit64": 302, "clone": 56, "clone3": 435,
        "pidfd_send_signal": 424, "pidfd_open": 434, "pidfd_getfd": 438, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "process_madvise": 440,
    }),
    # The generic table (asm-generic/unistd.h); aarch64 has no mknod, only mknodat.
    "aarch64": (0xC00000B7, {
        "socket": 198, "kill": 129, "ptrace": 117, "setpgid": 154, "setsid": 157, "mknodat": 33,
        "sched_setparam": 118, "sched_setscheduler": 119, "setpriority": 140, "chroot": 51, "mount": 40,
        "umount2": 39, "tkill": 130, "tgkill": 131, "sched_setaffinity": 122, "rt_sigqueueinfo": 138,
        "rt_tgsigqueueinfo": 240, "migrate_pages": 238, "unshare": 97, "move_pages": 239, "perf_event_open": 241,
        "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "sched_setattr": 274,
        "memfd_create": 279, "bpf": 280, "userfaultfd": 282, "add_key": 217, "request_key": 218, "keyctl": 219,
        "ioprio_set": 30, "pivot_root": 41, "prlimit64": 261, "clone": 220, "clone3": 435,
        "pidfd_send_signal": 424, "pidfd_open": 434, "pidfd_getfd": 438, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "process_madvise": 440,
    }),
}  # fmt: skip

# The program's own pid, filled in by the child when it installs the filter (its process group and
# session have the same number: the sandbox starts it in a new session).
PID = "pid"
NEG_PID = "-pid"

# Refused outright.
_DENIED = (
    "tkill", "pidfd_send_signal", "pidfd_open", "pidfd_getfd", "ptrace", "process_vm_readv", "process_vm_writev",
    "kcmp", "setsid", "setpgid", "socket", "io_uring_setup", "io_uring_enter", "io_uring_register", "unshare",
    "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "mknod", "mknodat", "memfd_create", "bpf", "perf_event_open",
    "userfaultfd", "add_key", "request_key", "keyctl", "process_madvise", "ioprio_set",
)  # fmt: skip
# Allowed only when each argument check holds: ("in", argument, values) or ("clear", argument, mask).
_CONDITIONAL: dict[str, tuple[tuple[str, int, Any], ...]] = {
    "kill": (("in", 0, (PID, NEG_PID, 0)),),  # itself or its own process group
    "tgkill": (("in", 0, (PID,)),),
    "rt_sigqueueinfo": (("in", 0, (PID,)),),
    "rt_tgsigqueueinfo": (("in", 0, (PID,)),),
    "prlimit64": (("in", 0, (0, PID)),),
    "setpriority": (("in", 0, (0, 1)), ("in", 1, (0, PID))),  # PRIO_PROCESS or PRIO_PGRP of its own
    "sched_setaffinity": (("in", 0, (0, PID)),),
    "sched_setscheduler": (("in", 0, (0, PID)),),
    "sched_setparam": (("in", 0, (0, PID)),),
    "sched_setattr": (("in", 0, (0, PID)),),
    "migrate_pages": (("in", 0, (0, PID)),),
    "move_pages": (("in", 0, (0, PID)),),
    "clone": (("clear", 0, _CLONE_NAMESPACES),),
}
# clone3 passes its flags in memory the filter cannot read: ENOSYS makes the C library use clone.
_ENOSYS = ("clone3",)


def _arg_low(index: int) -> int:
    """Offset of the low 32 bits of argument `index` in struct seccomp_data (little-endian)."""
    return 16 + 8 * index


def seccomp_filter(machine: str | None = None) -> list[list[Any]] | None:
    """The filter as [code, jt, jf, k] instructions, k possibly PID or NEG_PID for the child to fill
    in; None on an architecture this module has no system call table for."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        return None
    arch, numbers = _ARCHES[machine]
    eperm = _RET_ERRNO | errno.EPERM
    program: list[list[Any]] = [
        [_BPF_LD_W_ABS, 0, 0, 4],  # seccomp_data.arch
        [_BPF_JEQ, 1, 0, arch],
        [_BPF_RET, 0, 0, _RET_KILL_PROCESS],
        [_BPF_LD_W_ABS, 0, 0, 0],  # seccomp_data.nr
    ]
    if machine == "x86_64":  # the x32 ABI reaches the same calls under other numbers
        program += [[_BPF_JGE, 0, 1, _X32_SYSCALL_BIT], [_BPF_RET, 0, 0, eperm]]
    for name in _DENIED:
        if name in numbers:
            program += [[_BPF_JEQ, 0, 1, numbers[name]], [_BPF_RET, 0, 0, eperm]]
    for name in _ENOSYS:
        program += [[_BPF_JEQ, 0, 1, numbers[name]], [_BPF_RET, 0, 0, _RET_ERRNO | errno.ENOSYS]]
    for name, checks in _CONDITIONAL.items():
        body = _conditional_body(checks, eperm)
        program += [[_BPF_JEQ, 0, len(body), numbers[name]], *body]
    program.append([_BPF_RET, 0, 0, _RET_ALLOW])
    return program


def _conditional_body(checks: tuple[tuple[str, int, Any], ...], refuse: int) -> list[list[Any]]:
    """Instructions that return ALLOW when every check holds and `refuse` otherwise (A is clobbered)."""
    body: list[list[Any]] = []
    for kind, argument, operand in checks:
        body.append([_BPF_LD_W_ABS, 0, 0, _arg_low(argument)])
        if kind == "in":
            values = list(operand)
            # Each match jumps over the remaining comparisons and the refusal to the next check.
            for position, value in enumerate(values):
                body.append([_BPF_JEQ, len(values) - position, 0, value])
            body.append([_BPF_RET, 0, 0, refuse])
        elif kind == "clear":
            body.append([_BPF_JSET, 0, 1, operand])
            body.append([_BPF_RET, 0, 0, refuse])
        else:  # pragma: no cover - the table above is all there is
            raise ValueError(f"unknown seccomp check {kind!r}")
    body.append([_BPF_RET, 0, 0, _RET_ALLOW])
    return body


def pack_filter(program: list[list[Any]], pid: int) -> bytes:
    """struct sock_filter[] for `program` with the placeholders filled in for `pid`."""
    fill = {PID: pid & 0xFFFFFFFF, NEG_PID: (-pid) & 0xFFFFFFFF}
    return b"".join(struct.pack("=HBBI", code, jt, jf, fill.get(k, k)) for code, jt, jf, k in program)


@dataclass(frozen=True)
class PackedFilter:
    """This host's filter as struct sock_filter[], with zeros where the program's pid (`pid_offsets`)
    and its negation (`neg_pid_offsets`) go: 4 bytes each, in native byte order."""

    raw: bytes
    pid_offsets: tuple[int, ...]
    neg_pid_offsets: tuple[int, ...]


@functools.cache
def packed_filter() -> PackedFilter | None:
    """The filter for this machine, packed once: the sandbox's child fills in its pid without
    importing anything. None on an architecture this module has no system call table for."""
    program = seccomp_filter()
    if program is None:
        return None
    # k is the last field of each 8-byte instruction (=HBBI: 2 + 1 + 1 bytes before it).
    offsets: dict[str, list[int]] = {PID: [], NEG_PID: []}
    for index, (_, _, _, k) in enumerate(program):
        if k in offsets:
            offsets[k].append(8 * index + 4)
    return PackedFilter(pack_filter(program, 0), tuple(offsets[PID]), tuple(offsets[NEG_PID]))


# --- Landlock ------------------------------------------------------------------------------------

_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
_SYS_LANDLOCK_ADD_RULE = 445
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_NET_ALL = 0b11  # BIND_TCP | CONNECT_TCP, ABI 4
_SCOPE_ALL = 0b11  # ABSTRACT_UNIX_SOCKET | SIGNAL, ABI 6
_READ_ONLY = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR

# Readable by every program: the system's libraries and tools (never secrets), and the few files
# the C library and the interpreter look at. Paths missing on a host are skipped.
_SYSTEM_READABLE = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/localtime",
                    "/sys/devices/system/cpu")  # fmt: skip
_DEVICES_READABLE = ("/dev/zero", "/dev/urandom", "/dev/random")
_DEVICES_WRITABLE = ("/dev/null",)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]  # fmt: skip


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc_lock = threading.Lock()
_libc: Any = None


def _syscalls() -> Any:
    global _libc
    with _libc_lock:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.syscall.restype = ctypes.c_long
        return _libc


_abi: int | None = None


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers; 0 when it has none (too old, or not enabled)."""
    global _abi
    if _abi is None:
        try:
            version = _syscalls().syscall(
                ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
            )  # fmt: skip
        except (OSError, AttributeError):
            version = -1
        _abi = max(0, int(version))
    return _abi


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # EXECUTE .. MAKE_SYM: every right of ABI 1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def _file_rights(abi: int, wanted: int) -> int:
    """`wanted`, limited to the rights a rule on a single file may carry on this ABI."""
    allowed = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (_FS_TRUNCATE if abi >= 3 else 0)
    allowed |= _FS_IOCTL_DEV if abi >= 5 else 0
    return wanted & allowed


@functools.cache
def _interpreter_paths() -> tuple[str, ...]:
    """The interpreter's own installation: where the standard library and its extensions live."""
    found = [sys.base_prefix, sys.base_exec_prefix]
    paths = sysconfig.get_paths()
    found += [paths[key] for key in ("stdlib", "platstdlib") if key in paths]
    found.append(os.path.dirname(os.path.realpath(sys.executable)))
    return tuple(found)


def landlock_ruleset(directory: str) -> int | None:
    """A Landlock ruleset (its file descriptor, which the caller closes) that confines a program to
    writing in `directory` and reading the system and the interpreter; None without Landlock."""
    abi = landlock_abi()
    if abi < 1:
        return None
    libc = _syscalls()
    fs_rights = _fs_rights(abi)
    attr = _RulesetAttr(fs_rights, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = int(libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                               ctypes.c_size_t(size), ctypes.c_uint32(0)))  # fmt: skip
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for path, rights in _system_rules(abi):
            _add_rule(libc, ruleset, path, rights)
        _add_rule(libc, ruleset, os.path.realpath(directory), fs_rights)
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


@functools.cache
def _system_rules(abi: int) -> tuple[tuple[str, int], ...]:
    """The rules every ruleset holds (the system, the interpreter, a few devices), resolved once per
    process: each existing path with the rights a rule on it may carry. Only the directory differs."""
    fs_rights = _fs_rights(abi)
    wanted: dict[str, int] = {}
    for path in (*_SYSTEM_READABLE, *_interpreter_paths()):
        resolved = os.path.realpath(path)
        wanted[resolved] = wanted.get(resolved, 0) | _READ_ONLY
    for path in _DEVICES_READABLE:
        wanted[path] = _FS_READ_FILE
    for path in _DEVICES_WRITABLE:
        wanted[path] = _FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
    rules = []
    for path, rights in wanted.items():
        if not os.path.exists(path):
            continue  # not on this host
        rights &= fs_rights if os.path.isdir(path) else _file_rights(abi, fs_rights)
        if rights:
            rules.append((path, rights))
    return tuple(rules)


def _add_rule(libc: Any, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this host (any more)
    try:
        rule = _PathBeneathAttr(rights, fd)
        result = libc.syscall(
            ctypes.c_long(_SYS_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset), ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
            ctypes.byref(rule), ctypes.c_uint32(0),
        )  # fmt: skip
        if result != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"landlock_add_rule({path}): {os.strerror(code)}")
    finally:
        os.close(fd)


# --- the caller and the report -------------------------------------------------------------------

_PR_SET_DUMPABLE = 4
_protected = False


def protect_caller() -> bool:
    """Make this process non-dumpable: its /proc entries (environment, memory, descriptors) become
    root's, and processes of the same user can no longer trace it. Idempotent; False where refused."""
    global _protected
    if not _protected:
        try:
            _protected = _syscalls().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _protected = False
    return _protected


@dataclass(frozen=True)
class Layers:
    """The kernel-enforced layers a sandboxed program gets on this host."""

    identity: bool  # an unprivileged uid of its own (the caller is root)
    network_namespace: bool  # a network namespace with no way out (the caller is root)
    seccomp: bool
    landlock_abi: int

    def describe(self) -> str:
        parts = [
            "own identity" if self.identity else "caller's identity",
            "network namespace" if self.network_namespace else "no network namespace",
            "seccomp" if self.seccomp else "no seccomp",
            f"Landlock ABI {self.landlock_abi}" if self.landlock_abi else "no Landlock",
        ]
        return ", ".join(parts)


def available() -> Layers:
    root = os.geteuid() == 0
    return Layers(identity=root, network_namespace=root, seccomp=_seccomp_supported(), landlock_abi=landlock_abi())


@functools.cache
def _seccomp_supported() -> bool:
    if seccomp_filter() is None:
        return False
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            return any(line.startswith("Seccomp:") for line in handle)
    except OSError:
        return False
