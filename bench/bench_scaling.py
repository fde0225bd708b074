"""Scaling: total memory and read time as workers and data grow, per strategy.

For each strategy (strategies.py) and data size, a fresh process builds the data and
then, for each worker count, forks that many workers at once; each reads every value
in Python once and waits. When all have read, the PSS of the parent and all workers
is summed (the real total: shared pages are split between the processes mapping
them), then the workers exit. Workers run concurrently: beyond the number of CPUs,
the per-worker read time grows with the competition for them.

Configurations whose estimated memory exceeds 40% of what is available are skipped.
"""

from __future__ import annotations

import contextlib
import gc
import json
import mmap
import os
import subprocess
import sys
import time
from typing import Any

import strategies
from _common import (
    available_memory,
    bench_main,
    fmt_mb,
    fmt_time,
    memory_of,
    progress,
    table,
)

# bytes per item one full copy of the data costs (a list: 8-byte pointer + 32-byte int)
_COPY_BYTES = {"list": 40, "list-gcfreeze": 40, "joblib": 40}


def estimate(name: str, items: int, workers: int) -> int:
    per = _COPY_BYTES.get(name)
    if per is not None:  # the parent's copy plus one per worker that reads it
        return per * items * (workers + 1)
    return 8 * items * 2


def measure(name: str, items: int, worker_counts: list[int]) -> dict[str, Any]:
    """Runs in a fresh process: build once, then fork each worker count in turn."""
    strategy = strategies.STRATEGIES[name]
    t0 = time.perf_counter()
    data = strategy.build(items)
    build = time.perf_counter() - t0
    gc.collect()
    me = os.getpid()
    parent = memory_of(me)
    runs = []
    for workers in worker_counts:
        board = mmap.mmap(-1, mmap.PAGESIZE)
        slots = memoryview(board).cast("d")  # [2k+1] read seconds, [2k+2] end time
        r, w = os.pipe()
        start = time.perf_counter()
        pids = []
        for k in range(workers):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.close(w)
                    t = time.perf_counter()
                    strategy.read_all(data)
                    end = time.perf_counter()
                    slots[2 * k + 1] = end - t
                    slots[2 * k + 2] = end
                    os.read(r, 1)  # until the parent has measured and closes its end
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        os.close(r)
        failed = None
        while any(slots[2 * k + 2] == 0.0 for k in range(workers)):
            for pid in pids:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    failed = f"worker {pid} exited early with status {status}"
            if failed:
                break
            time.sleep(0.005)
        mems = [memory_of(pid) for pid in pids]
        total = memory_of(me)
        os.close(w)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if failed:
            raise RuntimeError(failed)
        reads = sorted(slots[2 * k + 1] for k in range(workers))
        wall = max(slots[2 * k + 2] for k in range(workers)) - start
        slots.release()
        board.close()
        runs.append({
            "workers": workers,
            "read_seconds": reads,
            "read_median": reads[len(reads) // 2],
            "wall_seconds": wall,
            "worker_uss": [m["uss"] for m in mems if m],
            "total_pss": (total["pss"] if total else 0) + sum(m["pss"] for m in mems if m),
        })
    return {"strategy": name, "items": items, "build_seconds": build,
            "parent": parent, "runs": runs}


def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    if smoke:
        names, sizes, counts = ["list", "cowbuf"], [20_000], [1, 2]
    elif quick:
        names = ["list", "mmap-memoryview", "cowbuf"]
        sizes, counts = [1_000_000, 10_000_000], [1, 2, 4]
    else:
        names = ["list", "numpy", "mmap-memoryview", "shared_memory", "cowbuf"]
        sizes, counts = [1_000_000, 10_000_000, 50_000_000], [1, 2, 4, 8]
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    budget = (available_memory() or 0) * 0.4
    for name in names:
        strategy = strategies.STRATEGIES[name]
        why = strategies.missing(strategy)
        if why:
            skipped.append({"strategy": name, "why": why})
            continue
        for items in sizes:
            fits = [w for w in counts if not budget or estimate(name, items, w) <= budget]
            for w in counts:
                if w not in fits:
                    skipped.append({"strategy": name, "items": items, "workers": w,
                                    "why": f"needs ~{estimate(name, items, w) / 1e9:.0f} GB"})
            if not fits:
                continue
            progress(f"scaling: {strategy.title}, {items:,} items, workers {fits}")
            proc = subprocess.run(
                [sys.executable, __file__, "--one", name, str(items), ",".join(map(str, fits))],
                capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                skipped.append({"strategy": name, "items": items,
                                "why": f"failed: {proc.stderr.strip()[-500:]}"})
                continue
            results.append(json.loads(proc.stdout))
    return {"name": "scaling", "title": "Scaling with workers and data",
            "config": {"strategies": names, "items": sizes, "workers": counts},
            "results": results, "skipped": skipped}


def format_result(result: dict[str, Any]) -> str:
    counts = result["config"]["workers"]
    rows = []
    for res in result["results"]:
        title = strategies.STRATEGIES[res["strategy"]].title
        by_w = {r["workers"]: r for r in res["runs"]}
        cells = [title, f"{res['items'] / 1e6:g} M"]
        for w in counts:
            r = by_w.get(w)
            cells.append("skipped" if r is None else
                         f"{fmt_mb(r['total_pss'])}, {fmt_time(r['read_median'])}")
        rows.append(cells)
    lines = [f"### {result['title']}", "",
             "Each cell: total PSS of the parent and all workers after every worker has "
             "read all values once in Python, and the median time of one worker's read "
             "(workers read at the same time, so beyond the CPU count they wait for "
             "each other).", "",
             table(["data held as", "items"] + [f"{w} worker{'s' if w > 1 else ''}"
                                                for w in counts], rows)]
    for s in result["skipped"]:
        where = f"{s.get('items', 0):,} items, {s.get('workers', 'all')} workers: " if (
            "items" in s) else ""
        lines.append(f"\nSkipped {s['strategy']}: {where}{s['why']}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]),
                                 [int(w) for w in sys.argv[4].split(",")])))
    else:
        bench_main(run, format_result)
