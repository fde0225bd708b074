"""The copy-on-write experiment in one command: python -m cowbuf.demo

Builds ten million integers as a Python list and as a cowbuf array, forks workers
that each read every value once in Python, and prints for each way of holding the
data how much private memory (USS) every worker gained, the total memory of all
processes (PSS), and how long a full read took.

A list is copied into every worker as it is read, because each read writes the
reference count in the header of the int it touches; gc.freeze() does not change
that. A cowbuf array holds raw numbers in shared memory: reading it writes nothing
there, so the workers keep sharing it.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

import cowbuf


def _rollup(pid: int | str = "self") -> dict[str, int] | None:
    """Fields of /proc/PID/smaps_rollup in KiB, or None where there is none."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            lines = rollup.read().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def _uss_kib(pid: int | str = "self") -> int | None:
    fields = _rollup(pid)
    return None if fields is None else fields["Private_Clean"] + fields["Private_Dirty"]


def _pss_kib(pid: int) -> int | None:
    fields = _rollup(pid)
    return None if fields is None else fields["Pss"]


def _worker(data: Iterable[int], conn: Connection) -> None:
    before = _uss_kib()
    start = time.perf_counter()
    total = 0
    for value in data:  # a read in Python, as a request handler would do it
        total += value
    seconds = time.perf_counter() - start
    conn.send((before, _uss_kib(), seconds, total))
    conn.recv()  # stay alive until the parent has measured everyone's PSS
    conn.close()


def _measure(data: Iterable[int], workers: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")  # the point: workers inherit the parent's memory
    pipes, procs = [], []
    for _ in range(workers):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(data, theirs))
        proc.start()
        theirs.close()
        pipes.append(mine)
        procs.append(proc)
    results = [conn.recv() for conn in pipes]
    pids = [os.getpid()] + [proc.pid for proc in procs if proc.pid is not None]
    pss = [_pss_kib(pid) for pid in pids]
    for conn in pipes:
        conn.send(None)
        conn.close()
    for proc in procs:
        proc.join()
    growth = [None if b is None or a is None else a - b for b, a, _, _ in results]
    return {
        "growth_kib": growth,
        "total_pss_kib": None if None in pss else sum(p for p in pss if p is not None),
        "read_seconds": statistics.median(r[2] for r in results),
        "sums": {r[3] for r in results},
    }


def _as_list(items: int) -> Any:
    return list(range(items))


def _as_frozen_list(items: int) -> Any:
    data = list(range(items))
    gc.freeze()  # moves everything to a permanent generation: the GC stops touching it
    return data


def _as_cowbuf(items: int) -> Any:
    data = cowbuf.array("q", range(items))
    data.freeze()
    return data


STRATEGIES: list[tuple[str, Callable[[int], Any]]] = [
    ("list", _as_list),
    ("list + gc.freeze()", _as_frozen_list),
    ("cowbuf.array('q')", _as_cowbuf),
]


def _mb(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


def table(result: dict[str, Any]) -> str:
    """The table of a run (the `--json` output), as the demo prints it."""
    header = (f"{'data held as':<22} {'USS growth per worker (MB)':>28} "
              f"{'total PSS (MB)':>15} {'read (s)':>9}")
    lines = [header, "-" * len(header)]
    for row in result["rows"]:
        growth = ", ".join(_mb(g) for g in row["growth_kib"])
        lines.append(f"{row['name']:<22} {growth:>28} {_mb(row['total_pss_kib']):>15} "
                     f"{row['read_seconds']:>9.2f}")
    return "\n".join(lines)


def run(items: int, workers: int) -> dict[str, Any]:
    """Measure every way of holding the data; raises if a worker's sum is wrong."""
    expected = items * (items - 1) // 2
    rows = []
    for name, build in STRATEGIES:
        data = build(items)
        row = _measure(data, workers)
        del data
        gc.unfreeze()
        gc.collect()
        if row["sums"] != {expected}:
            raise RuntimeError(f"{name}: wrong sum {row['sums']}")
        rows.append({"name": name, "growth_kib": row["growth_kib"],
                     "total_pss_kib": row["total_pss_kib"],
                     "read_seconds": row["read_seconds"]})
    return {"items": items, "workers": workers, "rows": rows,
            "python": platform.python_version(), "system": platform.system(),
            "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cowbuf.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000_000, help="integers to share")
    parser.add_argument("--workers", type=int, default=3, help="forked readers")
    parser.add_argument("--json", action="store_true",
                        help="print the figures as JSON instead of the table")
    args = parser.parse_args(argv)
    if args.items < 1 or args.workers < 1:
        parser.error("--items and --workers must be positive")
    if "fork" not in mp.get_all_start_methods():
        print("this demo forks workers, which this platform cannot do", file=sys.stderr)
        return 1

    if not args.json:
        print(f"{args.items:,} integers, {args.workers} forked workers, each reads every "
              "value once in Python\n", flush=True)
    try:
        result = run(args.items, args.workers)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    print(table(result))
    if _uss_kib() is None:
        print("\n(memory figures need Linux's /proc/PID/smaps_rollup)")
    print("\nUSS: memory private to a worker (what copy-on-write costs). PSS: each process's"
          "\nshare of its memory, shared pages split between their users; the total counts"
          "\nthe parent and all workers.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
