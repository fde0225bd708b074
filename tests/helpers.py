"""Helpers shared by the tests: value ranges, argument objects that run code at the
wrong moment, waiting, running a program in its own interpreter, and readers of
/proc (Linux) for memory, mappings and fds."""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

LINUX = sys.platform.startswith("linux")
TESTS = os.path.dirname(os.path.abspath(__file__))


# -- values --------------------------------------------------------------------------

def int_range(tc: str) -> tuple[int, int]:
    """The smallest and largest value of an integer typecode."""
    bits = 8 * struct.calcsize(tc)
    if tc.isupper():
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def wrap(tc: str, value: int) -> int:
    """value wrapped into the range of typecode tc, as C and numpy do."""
    low, high = int_range(tc)
    return (value - low) % (high - low + 1) + low


class Sneaky:
    """An integer whose __index__ runs `action` first: code that can close or freeze
    the region in the middle of the call that converts it."""

    def __init__(self, value: int, action: Callable[[], object]) -> None:
        self.value = value
        self.action = action

    def __index__(self) -> int:
        self.action()
        return self.value

    def __float__(self) -> float:
        self.action()
        return float(self.value)


def address(buffer: Any) -> int:
    """The address of the first byte of a buffer."""
    import numpy as np

    return int(np.frombuffer(buffer, dtype=np.uint8).ctypes.data)


# -- waiting and other programs --------------------------------------------------------

def wait_until(predicate: Callable[[], object], timeout: float = 60.0,
               what: str = "the other processes") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not get there in {timeout} s")
        time.sleep(0.0005)


def python_env() -> dict[str, str]:
    """The environment for another interpreter: it imports this cowbuf and the tests'
    helper modules."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [TESTS, os.environ.get("PYTHONPATH", "")]))


def close_while_running(region: Any, loops: Callable[[], None]) -> str:
    """Run `loops` in another thread while this one closes `region` over and over
    (refused with BufferError while a GIL-free loop holds it) until it is closed or the
    loops are done; then close it for sure. "finished" if the loops ran to their end,
    "closed" if one of them met the closed region (ValueError)."""
    outcome: list[str] = []

    def work() -> None:
        try:
            loops()
            outcome.append("finished")
        except ValueError:
            outcome.append("closed")

    thread = threading.Thread(target=work)
    thread.start()
    try:
        while thread.is_alive() and not region.closed:
            with contextlib.suppress(BufferError):
                region.close()
    finally:
        thread.join()
    region.close()
    assert len(outcome) == 1, outcome
    return outcome[0]


def run_python(source: str, *args: str, timeout: float = 120, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `source` in a new interpreter with -W error and faulthandler on, from the
    tests' folder, with `env` added to the environment; return the completed process.
    With `check`, a crash (a signal), a hang or a non-zero exit fails with its output."""
    argv = [sys.executable, "-X", "faulthandler", "-W", "error", "-c",
            textwrap.dedent(source), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**python_env(), **(env or {})}, cwd=TESTS)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the program hung for {timeout} s:\n{exc.stdout}\n"
                             f"{exc.stderr}") from None
    if check and done.returncode != 0:
        raise AssertionError(f"the program exited with {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


# -- /proc (Linux) ----------------------------------------------------------------------

def shmem_kib() -> int:
    """`Shmem` of /proc/meminfo: every shared memory page the system holds, in KiB."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    raise AssertionError("no Shmem line in /proc/meminfo")


def shmem_growth_settled(baseline: int, slack_kib: int = 1024, timeout: float = 20) -> int:
    """KiB of Shmem above baseline, once it is back within slack_kib of it or timeout
    seconds have passed (the kernel frees a region's pages shortly after its last user
    is gone)."""
    deadline = time.monotonic() + timeout
    while shmem_kib() - baseline > slack_kib and time.monotonic() < deadline:
        time.sleep(0.05)
    return shmem_kib() - baseline


def rollup(pid: int | str = "self") -> dict[str, int]:
    """The fields of /proc/PID/smaps_rollup, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def uss_kib(pid: int | str = "self") -> int:
    """The unique set size of a process (its private memory), in KiB."""
    fields = rollup(pid)
    return fields["Private_Clean"] + fields["Private_Dirty"]


def memory_counters() -> tuple[int, int]:
    """(unique set size, resident set size) of this process, in bytes."""
    fields = rollup()
    return uss_kib() * 1024, fields["Rss"] * 1024


def mapping_of(addr: int) -> dict[str, Any]:
    """The /proc/self/smaps entry of the mapping holding `addr`: 'start', 'end',
    'perms', 'inode', 'path' and the size fields (Rss, ...) in bytes."""
    entry: dict[str, Any] | None = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if not head.endswith(":"):
                if entry is not None:
                    break
                start, end = (int(x, 16) for x in head.split("-"))
                if start <= addr < end:
                    fields = line.split(None, 5)
                    entry = {"start": start, "end": end, "perms": fields[1],
                             "inode": int(fields[4]),
                             "path": fields[5].strip() if len(fields) > 5 else ""}
            elif entry is not None and line.rstrip().endswith(" kB"):
                key, value = line.split(":", 1)
                entry[key] = int(value.split()[0]) * 1024
    if entry is None:
        raise LookupError(f"no mapping holds address {addr:#x}")
    return entry


def cowbuf_mappings() -> list[str]:
    """The lines of /proc/self/maps that map cowbuf memory."""
    with open("/proc/self/maps") as maps:
        return [line for line in maps if "memfd:cowbuf" in line]


def open_fds() -> list[str]:
    """This process's open fds and what they point to, sorted."""
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the fd of the listing itself
            fds.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
    return sorted(fds)


def mapping_count() -> int:
    """How many mappings this process has."""
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def fd_of_inode(inode: int) -> int:
    """An fd of this process open on `inode`."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.fstat(int(name)).st_ino == inode:
                return int(name)
        except OSError:
            continue
    raise LookupError(f"no fd is open on inode {inode}")
