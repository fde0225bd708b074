"""Region(..., populate=True) commits its memory at creation, and a request beyond what
the system or the process's memory cgroup has left raises MemoryError there, instead
of the OOM killer ending the process later."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import shmem_kib

import cowbuf
from cowbuf import _memory

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="reads /proc/meminfo")



@linux_only
def test_populate_commits_the_memory_at_once() -> None:
    size = 256 << 20
    before = shmem_kib()
    lazy = cowbuf.Region(size)
    assert shmem_kib() - before < 64 * 1024  # nothing touched, nothing committed
    committed = cowbuf.Region(size, populate=True)
    assert shmem_kib() - before >= 250 * 1024
    assert memoryview(committed)[size - 1] == 0
    lazy.close()
    committed.close()


def test_sizes_that_cannot_be_mapped_raise_memory_error() -> None:
    for nbytes in (1 << 50, 1 << 62, sys.maxsize, 1 << 80):
        with pytest.raises(MemoryError):
            cowbuf.Region(nbytes)
    with pytest.raises(MemoryError):
        cowbuf.Region(1 << 50, populate=True)


@linux_only
def test_available_memory_is_bounded_by_the_system() -> None:
    available = _memory.available_memory()
    assert available is not None and 0 < available <= os.sysconf("SC_PAGE_SIZE") * os.sysconf(
        "SC_PHYS_PAGES")


def _memory_cgroup(limit: int) -> Iterator[Path]:
    """A new memory cgroup limited to `limit` bytes, removed afterwards."""
    name = f"cowbuf-test-{uuid.uuid4().hex[:8]}"
    v1 = Path("/sys/fs/cgroup/memory")
    candidates = [(v1, "memory.limit_in_bytes")] if v1.is_dir() else []
    candidates.append((Path("/sys/fs/cgroup"), "memory.max"))
    for parent, limit_file in candidates:
        group = parent / name
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            (group / limit_file).write_text(str(limit))
        except OSError:
            group.rmdir()
            continue
        try:
            yield group
        finally:
            group.rmdir()
        return
    pytest.skip("no writable memory cgroup here (needs root and the memory controller)")


@pytest.fixture
def small_cgroup() -> Iterator[Path]:
    yield from _memory_cgroup(256 << 20)


@linux_only
def test_populate_beyond_the_cgroup_limit_is_a_memory_error(small_cgroup: Path) -> None:
    program = (
        "import cowbuf\n"
        "try:\n"
        "    cowbuf.Region(1 << 30, populate=True)\n"
        "except MemoryError as exc:\n"
        "    print('MemoryError', 'cgroup' in str(exc))\n"
        "region = cowbuf.Region(64 << 20, populate=True)\n"
        "region.view('q').fill(7)\n"
        "print(region.view('q').sum() == 7 * (8 << 20))\n")
    done = subprocess.run(
        ["sh", "-c", f'echo $$ > {small_cgroup / "cgroup.procs"} && exec "$0" -W error -c "$1"',
         sys.executable, program], capture_output=True, text=True, timeout=120)
    # without the check, the kernel's OOM killer would end the program (-9)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["MemoryError", "True", "True"]


@linux_only
def test_not_bound_by_the_size_of_dev_shm() -> None:
    # Docker gives containers a 64 MB /dev/shm: multiprocessing.shared_memory, which
    # lives there, dies of SIGBUS past it; cowbuf's memfds live outside any tmpfs.
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/unshare"):
        pytest.skip("needs root and unshare(1) to mount a small /dev/shm privately")
    program = (
        "import cowbuf, subprocess, sys\n"
        "r = cowbuf.Region(256 << 20)\n"
        "r.view('q').fill(1)\n"
        "print(r.view('q').sum())\n"
        "stdlib = ('from multiprocessing import shared_memory as s; '\n"
        "          'm = s.SharedMemory(create=True, size=256 << 20); '\n"
        "          'm.buf[:] = bytes(256 << 20)')\n"
        "print(subprocess.run([sys.executable, '-c', stdlib], capture_output=True).returncode)\n")
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         'mount -t tmpfs -o size=64m tmpfs /dev/shm && exec "$0" -W error -c "$1"',
         sys.executable, program], capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a private /dev/shm here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(32 << 20), str(-7)]  # -7: killed by SIGBUS
