"""How much memory this process can still commit, for Region(..., populate=True).

Committing shared memory past the limit of a memory cgroup (a container's memory
limit) does not fail the allocation: the kernel's OOM killer ends the process. So
before committing, cowbuf compares the request with what the system and every memory
cgroup above this process have left, and raises MemoryError instead.
"""

from __future__ import annotations

import os

_UNLIMITED = 1 << 62


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return _UNLIMITED
    try:
        return int(text)
    except ValueError:
        return None


def _stat_field(path: str, names: tuple[str, ...]) -> int:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key in names:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_dirs() -> list[tuple[str, int]]:
    """(directory, cgroup version) of this process's memory cgroup and its parents,
    innermost first."""
    try:
        with open("/proc/self/cgroup") as f:
            memberships = [line.rstrip("\n").split(":", 2) for line in f]
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return []
    dirs: list[tuple[str, int]] = []
    for fields in mounts:
        if "-" not in fields:
            continue
        tail = fields[fields.index("-") + 1:]
        fstype, options = tail[0], tail[2] if len(tail) > 2 else ""
        root, mount_point = fields[3], fields[4]
        if fstype == "cgroup2":
            version, wanted = 2, ""
        elif fstype == "cgroup" and "memory" in options.split(","):
            version, wanted = 1, "memory"
        else:
            continue
        for membership in memberships:
            if len(membership) != 3:
                continue
            controllers, path = membership[1], membership[2]
            if (version == 2 and controllers == "") or (
                    version == 1 and wanted in controllers.split(",")):
                relative = os.path.relpath(path, root) if path.startswith(root) else None
                if relative is None or relative.startswith(".."):
                    continue
                here = os.path.normpath(os.path.join(mount_point, relative))
                while True:
                    dirs.append((here, version))
                    if here == mount_point or len(here) <= len(mount_point):
                        break
                    here = os.path.dirname(here)
    return dirs


def available_memory() -> int | None:
    """Bytes this process can still commit, or None where it cannot be told."""
    available = _mem_available()
    for directory, version in _cgroup_dirs():
        if version == 2:
            limit = _read_int(os.path.join(directory, "memory.max"))
            usage = _read_int(os.path.join(directory, "memory.current"))
        else:
            limit = _read_int(os.path.join(directory, "memory.limit_in_bytes"))
            usage = _read_int(os.path.join(directory, "memory.usage_in_bytes"))
        if limit is None or usage is None or limit >= _UNLIMITED:
            continue
        # page cache the kernel would reclaim first counts as free
        reclaimable = _stat_field(os.path.join(directory, "memory.stat"),
                                  ("inactive_file", "total_inactive_file"))
        room = max(0, limit - usage + reclaimable)
        available = room if available is None else min(available, room)
    return available


def check_commit(nbytes: int) -> None:
    """MemoryError if committing `nbytes` now would exceed what is left."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise MemoryError(
            f"cannot commit {nbytes} bytes of shared memory: {available} bytes are "
            "available to this process (system and memory cgroup limits)")
