"""The kernel confinement for sandboxed programs: the seccomp filter decides what the table says on
every architecture it supports (checked by evaluating the BPF program here), and on this host the
filter and the Landlock rules stop what the audit hook would otherwise be alone to stop."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from warrior.executor import confinement
from warrior.executor.sandbox import run

ALLOW, KILL = 0x7FFF0000, 0x80000000
PID = 4242


# Prints "<name>: done" or "<name>: refused" for each operation a sandboxed program attempts.
ATTEMPT = (
    "def attempt(name, action):\n"
    "    try:\n"
    "        action()\n"
    "        print(name + ': done')\n"
    "    except OSError:\n"
    "        print(name + ': refused')\n"
)


def _errno(value: int) -> int:
    return 0x00050000 | value


def _evaluate(program: list[list[object]], arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """Run a classic-BPF seccomp program over one system call, as the kernel would."""
    raw = confinement.pack_filter(program, PID)
    instructions = [struct.unpack("=HBBI", raw[i : i + 8]) for i in range(0, len(raw), 8)]
    words = [0] * 6
    for index, value in enumerate(args):
        words[index] = value & 0xFFFFFFFFFFFFFFFF
    data = struct.pack("=iIQ6Q", nr, arch, 0, *words)
    accumulator, pc = 0, 0
    for _ in range(10_000):
        code, jt, jf, k = instructions[pc]
        if code == 0x20:  # ld [k]
            accumulator = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == 0x15:  # jeq
            pc += 1 + (jt if accumulator == k else jf)
        elif code == 0x35:  # jge
            pc += 1 + (jt if accumulator >= k else jf)
        elif code == 0x45:  # jset
            pc += 1 + (jt if accumulator & k else jf)
        elif code == 0x06:  # ret
            return int(k)
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")
        assert 0 <= pc < len(instructions), "a jump leaves the program"
    raise AssertionError("the program does not end")


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_seccomp_filter_decides_as_its_table_says(machine: str) -> None:
    program = confinement.seccomp_filter(machine)
    assert program is not None and len(program) < 4096
    arch, numbers = confinement._ARCHES[machine]
    own, own_group, other = PID, -PID, PID + 1
    eperm = _errno(errno.EPERM)

    def decide(name: str, *args: int) -> int:
        return _evaluate(program, arch, numbers[name], args)

    # Signals: to itself and its own group only; never to everyone, never to another process.
    assert decide("kill", own, 9) == ALLOW
    assert decide("kill", own_group, 9) == ALLOW
    assert decide("kill", 0, 9) == ALLOW
    assert decide("kill", other, 9) == eperm
    assert decide("kill", -1, 9) == eperm
    assert decide("kill", -other, 9) == eperm
    assert decide("tgkill", own, own, 6) == ALLOW
    assert decide("tgkill", other, other, 6) == eperm
    assert decide("tkill", own, 9) == eperm
    assert decide("rt_sigqueueinfo", other, 9, 0) == eperm
    # Limits, priority, affinity: its own, not another process's.
    assert decide("prlimit64", 0, 0) == ALLOW
    assert decide("prlimit64", own, 0) == ALLOW
    assert decide("prlimit64", other, 0) == eperm
    assert decide("setpriority", 0, 0, 10) == ALLOW
    assert decide("setpriority", 0, other, 10) == eperm
    assert decide("setpriority", 2, 0, 10) == eperm  # PRIO_USER: every process of the user
    assert decide("sched_setaffinity", other, 8, 0) == eperm
    # Staying in the group, no sockets, no tracing, no namespaces, no io_uring.
    for name in ("setsid", "setpgid", "socket", "ptrace", "process_vm_readv", "unshare", "io_uring_setup",
                 "memfd_create", "mknodat", "bpf", "pidfd_open", "keyctl"):  # fmt: skip
        assert decide(name, 0, 0) == eperm, name
    assert decide("clone", 0x01200011) == ALLOW  # what fork() passes
    assert decide("clone", 0x003D0F00) == ALLOW  # what pthread_create() passes
    assert decide("clone", 0x10000000 | 0x11) == eperm  # CLONE_NEWUSER
    assert decide("clone", 0x40000000) == eperm  # CLONE_NEWNET
    assert decide("clone3", 0, 88) == _errno(errno.ENOSYS)  # the C library falls back to clone
    # Everything else passes, and another architecture's calls are killed.
    assert _evaluate(program, arch, 0, (0, 0, 0)) == ALLOW  # read / io_setup
    assert _evaluate(program, arch ^ 0x1, 0) == KILL
    if machine == "x86_64":
        assert _evaluate(program, arch, 0x40000000 | numbers["kill"], (other, 9)) == eperm  # x32


def test_an_unknown_architecture_gets_no_filter() -> None:
    assert confinement.seccomp_filter("sparc64") is None


def test_the_kernel_layers_stop_a_program_that_has_no_audit_hook(tmp_path: Path) -> None:
    layers = confinement.available()
    if not layers.seccomp:
        pytest.fail("this Linux host offers no seccomp, which the sandbox relies on when not root")
    code = (
        "import os, signal, socket, sys\n" + ATTEMPT + "attempt('signal parent', lambda: os.kill(os.getppid(), 0))\n"
        "attempt('signal self', lambda: os.kill(os.getpid(), 0))\n"
        "attempt('signal own group', lambda: os.killpg(os.getpgrp(), 0))\n"
        "attempt('socket', lambda: socket.socket(socket.AF_UNIX))\n"
        "attempt('setsid', os.setsid)\n"
        "attempt('own file', lambda: open('mine.txt', 'w').write('x'))\n"
        "attempt('stdlib', lambda: __import__('json').dumps([1]))\n"
    )
    result = run(code, audit_hook=False)
    assert result.status == "passed", result
    assert dict(line.split(": ") for line in result.stdout.splitlines()) == {
        "signal parent": "refused", "signal self": "done", "signal own group": "done", "socket": "refused",
        "setsid": "refused", "own file": "done", "stdlib": "done",
    }  # fmt: skip


def test_landlock_confines_reads_and_writes_to_the_sandbox_and_the_system(tmp_path: Path) -> None:
    if not confinement.landlock_abi():
        pytest.skip("this kernel offers no Landlock (Linux 5.13+ with Landlock enabled)")
    private = tmp_path / "worker-file.txt"
    private.write_text("the worker's")
    os.chmod(tmp_path, 0o755)
    private.chmod(0o644)  # readable by anyone: only Landlock stands in the way
    drop = tmp_path / "drop"
    drop.mkdir(mode=0o777)
    drop.chmod(0o1777)
    code = (
        "import os, sys\n" + ATTEMPT + f"attempt('read outside', lambda: open({str(private)!r}).read())\n"
        f"attempt('write outside', lambda: open({str(drop / 'x')!r}, 'w').write('x'))\n"
        "attempt('read proc', lambda: open('/proc/self/status').read())\n"
        "attempt('own folder', lambda: (open('a', 'w').write('x'), os.rename('a', 'b'), os.mkdir('d'),\n"
        "                               os.remove('b')))\n"
        "attempt('dev null', lambda: open('/dev/null', 'w').write('x'))\n"
        "attempt('stdlib', lambda: __import__('decimal').Decimal('1.5'))\n"
    )
    result = run(code, audit_hook=False)
    assert result.status == "passed", result
    assert dict(line.split(": ") for line in result.stdout.splitlines()) == {
        "read outside": "refused", "write outside": "refused", "read proc": "refused", "own folder": "done",
        "dev null": "done", "stdlib": "done",
    }  # fmt: skip
    assert os.listdir(drop) == []


def test_a_sandboxing_caller_becomes_non_dumpable() -> None:
    run("pass")
    assert confinement.protect_caller()
    # Non-dumpable: /proc/<pid> of this process belongs to root, whoever runs it.
    assert os.stat(f"/proc/{os.getpid()}/environ").st_uid == 0
