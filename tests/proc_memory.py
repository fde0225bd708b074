"""The system's shared memory, as the memory tests read it (Linux: /proc/meminfo)."""

from __future__ import annotations

import time


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
