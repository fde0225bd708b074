"""Functions that run in worker processes of the sharing tests: importable by name, so
that spawn and forkserver workers can find them."""

from __future__ import annotations

import os
from typing import Any

import cowbuf
from cowbuf import _core

_kept: list[Any] = []


def write_all(a: cowbuf.Array, c: cowbuf.Counter, r: cowbuf.Region, s: cowbuf.Array) -> None:
    a[0] = -1
    c.add(7)
    memoryview(r)[:3] = b"abc"
    s[:] = [-x for x in s]


def negate_and_sum(a: cowbuf.Array) -> int:
    total = a.sum()
    for i in range(len(a)):
        a[i] = -a[i]
    return total


def total(a: cowbuf.Array) -> int:
    return a.sum()


def make_array(n: int) -> cowbuf.Array:
    return cowbuf.array("q", range(n))


def make_and_keep(n: int) -> cowbuf.Array:
    a = cowbuf.array("q", range(n))
    _kept.append(a)
    return a


def first_of_kept() -> int:
    return _kept[-1][0]


def mappings_of(*objects: Any) -> tuple[int, int]:
    """(distinct _Mapping objects behind `objects` and everything kept so far, lines of
    /proc/self/maps for the inode of the first one's memory)."""
    _kept.extend(objects)
    mappings = {id(_mapping_of(o)) for o in _kept}
    lines = -1
    if os.path.exists("/proc/self/maps"):
        ino = os.fstat(_mapping_of(objects[0]).fd).st_ino
        with open("/proc/self/maps") as maps:
            lines = sum(1 for line in maps if line.split()[4:5] == [str(ino)])
    return len(mappings), lines


def _mapping_of(o: Any) -> Any:
    region = o if isinstance(o, cowbuf.Region) else o.region
    return _core._region_state(region)[0]


def try_write(a: cowbuf.Array) -> tuple[str, bool]:
    try:
        a[0] = 1
    except TypeError:
        outcome = "TypeError"
    else:
        outcome = "written"
    return outcome, a.readonly


def try_map_writable(pid: int, fd: int, size: int) -> str:
    import mmap

    try:
        handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)
    except OSError as exc:
        return f"open: {exc.errno}"
    try:
        with mmap.mmap(handle, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE):
            return "mapped writable"
    except OSError as exc:
        return f"mmap: {exc.errno}"
    finally:
        os.close(handle)


def from_queue(q: Any, out: Any) -> None:
    a = q.get()
    a[0] = 5
    out.put(a.sum())


def from_pipe(conn: Any) -> None:
    a = conn.recv()
    a[1] = 6
    conn.send(a.sum())
    conn.close()


def send_and_exit(conn: Any, n: int) -> None:
    conn.send(cowbuf.array("q", range(n)))


def registry_view(name: str) -> tuple[list[str], int]:
    value = cowbuf.registry[name]
    assert isinstance(value, cowbuf.Array)
    value[0] += 1000
    return sorted(cowbuf.registry), value.sum()


_initialized: list[Any] = []


def user_initializer(*args: Any) -> None:
    _initialized.append(args)


def initializer_calls() -> list[Any]:
    return _initialized


def add_to_all(*counters: cowbuf.Counter) -> None:
    for c in counters:
        c.add(1)


def put_and_return(q: Any) -> None:
    """Put a big first message (the feeder thread is still busy with it when this
    returns) and then an array: the array is pickled while the process exits."""
    q.put(b"x" * (16 << 20))
    q.put(cowbuf.array("q", range(1000)))


def identity(x: Any) -> Any:
    return x


def limit_fds(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def first_items(arrays: list[cowbuf.Array]) -> int:
    return sum(a[0] for a in arrays)


def registry_firsts(n: int) -> int:
    return sum(cowbuf.registry[f"a{i}"][0] for i in range(n))


def mark_and_sum(a: cowbuf.Array, counter: cowbuf.Counter, i: int) -> int:
    a[i] = 100 + i
    counter.add(1)
    return int(a.sum())


def set_row(view: Any, i: int) -> None:
    view[i] = i + 1


def writeable_and_sum(view: Any) -> tuple[bool, int]:
    return bool(view.flags.writeable), int(view.sum())


def uss_growth_reading(a: cowbuf.Array) -> int:
    """KiB by which this process's private memory grows while it reads every item of
    `a` in Python."""
    from helpers import uss_kib

    before = uss_kib()
    total = 0
    for x in a:
        total += x
    assert total == a.sum()
    return uss_kib() - before


def zero_copy_total(a: cowbuf.Array) -> tuple[int, bool, bool]:
    """(sum, read-only?, on memory that is not cowbuf's own?) of an array received."""
    return int(a.sum()), a.readonly, _core._region_state(a.region)[0].fd == -1
