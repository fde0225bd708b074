"""Shared counters: cowbuf Counter.add against multiprocessing.Value, atomics, atomicshm.

Increments per second from Python, in one process and in two processes contending
for the same counter (forked, started together, exact total checked), and bulk atomic
adds: Array.atomic_add_at against a Python loop of Array.atomic_add.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

from _common import (
    bench_main,
    fmt_rate,
    format_targets,
    interleaved,
    median,
    na_target,
    progress,
    table,
    target,
)

# -- the peers: each makes an increment function on memory that forked children share --

# histogram sizes of the atomic_add_at benchmark
BULK_BINS = (1024, 65_537, 1_048_576)

# a peer: makes (increment function, load function) on fresh shared memory
Factory = Callable[[], tuple[Callable[..., Any], Callable[[], int]]]
_open_contexts: list[Any] = []


def _close_contexts() -> None:
    while _open_contexts:
        _open_contexts.pop().__exit__(None, None, None)



def _cowbuf() -> tuple[Callable[..., Any], Callable[[], int]]:
    import cowbuf
    counter = cowbuf.Counter(0)
    return counter.add, counter.load


def _cowbuf_padded() -> tuple[Callable[..., Any], Callable[[], int]]:
    import cowbuf
    counter = cowbuf.Counter(0, padded=True)
    return counter.add, counter.load


def _value_lock() -> tuple[Callable[..., Any], Callable[[], int]]:
    # multiprocessing.Value at its best: its lock taken once per add, around the raw
    # ctypes value (`value.value += n` under the lock takes the lock twice more, since
    # every read and write of value.value locks on its own)
    value = multiprocessing.get_context("fork").Value("q", 0)
    lock, raw = value.get_lock(), value.get_obj()

    def add(n: int = 1) -> None:
        with lock:
            raw.value += n
    return add, lambda: int(raw.value)


def _value_nolock() -> tuple[Callable[..., Any], Callable[[], int]]:
    value = multiprocessing.get_context("fork").Value("q", 0, lock=False)

    def add(n: int = 1) -> None:
        value.value += n  # not atomic: read, add, write
    return add, lambda: value.value


def _atomics() -> tuple[Callable[..., Any], Callable[[], int]]:
    import atomics
    m = mmap.mmap(-1, mmap.PAGESIZE)
    buf = memoryview(m)[:8]
    view = atomics.atomicview(buffer=buf, atype=atomics.INT)
    counter = view.__enter__()
    _open_contexts.append(view)  # exited by _close_contexts(), before the mmap goes
    return counter.fetch_add, counter.load


def _atomicshm_view() -> tuple[Callable[..., Any], Callable[[], int]]:
    import atomicshm
    m = mmap.mmap(-1, mmap.PAGESIZE)
    view = atomicshm.AtomicView(m)
    fetch_add = view.fetch_add_u64

    def add(n: int = 1) -> int:
        return fetch_add(0, n)
    add.direct = (fetch_add, 0)  # type: ignore[attr-defined]
    return add, lambda: view.load_u64(0)


def _atomicshm_cell() -> tuple[Callable[..., Any], Callable[[], int]]:
    import atomicshm
    m = mmap.mmap(-1, mmap.PAGESIZE)
    view = atomicshm.AtomicView(m)
    cell = view.cell_u64(0)
    return cell.fetch_add, cell.load


PEERS: dict[str, tuple[str, Factory, str | None]] = {
    # name: (title, factory, module it needs)
    "cowbuf": ("cowbuf Counter.add(1)", _cowbuf, "cowbuf"),
    "cowbuf padded": ("cowbuf Counter(padded=True).add(1)", _cowbuf_padded, "cowbuf"),
    "Value+lock": ("multiprocessing.Value('q'), its lock taken once", _value_lock, None),
    "Value no lock": ("multiprocessing.Value('q', lock=False) (not atomic)", _value_nolock, None),
    "atomics": ("atomics atomicview(...).fetch_add(1)", _atomics, "atomics"),
    "atomicshm view": ("atomicshm AtomicView.fetch_add_u64(0, 1)", _atomicshm_view, "atomicshm"),
    "atomicshm cell": ("atomicshm cell_u64(0).fetch_add(1)", _atomicshm_cell, "atomicshm"),
}


def _available(module: str | None) -> str | None:
    """None if the module imports, else why not."""
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError as exc:
        return f"not installed ({exc.name})"
    return None


def _loop(add: Callable[..., Any], n: int) -> Callable[[], None]:
    direct = getattr(add, "direct", None)
    if direct is not None:  # atomicshm's view method with its offset, not via a wrapper
        fn, offset = direct

        def run_direct() -> None:
            for _ in range(n):
                fn(offset, 1)
        return run_direct

    def run() -> None:
        for _ in range(n):
            add(1)
    return run


def _contend(factory: Factory, n: int, procs: int) -> dict[str, Any]:
    """`procs` forked processes each add 1 `n` times to one counter, released together.
    Returns the aggregate rate over the wall time from release to the last finish."""
    add, load = factory()
    # go flag and per-child (start, end) times, in memory shared with the children
    board = mmap.mmap(-1, mmap.PAGESIZE)
    times = memoryview(board).cast("d")
    pids = []
    for k in range(procs):
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                loop = _loop(add, n)
                while times[0] == 0.0:
                    pass
                start = time.perf_counter()
                loop()
                times[2 + 2 * k] = start
                times[3 + 2 * k] = time.perf_counter()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    time.sleep(0.05)  # let every child reach its spin
    times[0] = 1.0
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    if failed:
        raise RuntimeError(f"{failed} counting processes failed")
    starts = [times[2 + 2 * k] for k in range(procs)]
    ends = [times[3 + 2 * k] for k in range(procs)]
    wall = max(ends) - min(starts)
    total = load()
    del add, load
    result = {"ops": n * procs, "seconds": wall, "rate": n * procs / wall,
              "final": total, "expected": n * procs, "exact": total == n * procs}
    times.release()
    board.close()
    return result


def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    # Many short interleaved rounds: on a shared machine the median then comes from
    # the quiet moments rather than from whichever arm ran during a burst of load.
    n1 = 20_000 if smoke else 200_000
    n2 = 20_000 if smoke else (200_000 if quick else 500_000)
    rounds = 2 if smoke else (11 if quick else 25)
    rounds2 = 1 if smoke else (3 if quick else 9)
    peers: dict[str, dict[str, Any]] = {}
    factories = {}
    for name, (title, factory, module) in PEERS.items():
        why = _available(module)
        peers[name] = {"title": title, "missing": why}
        if why is None:
            factories[name] = factory
    slow = {"atomics"}  # ~3 us an increment: a tenth as many

    progress(f"counters: 1 process, {n1:,} increments x {rounds} rounds")
    arms = {}
    for name, factory in factories.items():
        add, _ = factory()
        arms[name] = _loop(add, n1 // 10 if name in slow else n1)
    samples = interleaved(arms, rounds)
    del arms
    _close_contexts()
    for name, s in samples.items():
        ops = n1 // 10 if name in slow else n1
        peers[name]["one"] = {"ops": ops, "samples": s, "rate": ops / median(s)}

    progress(f"counters: 2 processes contending, {n2:,} increments each x {rounds2} rounds")
    for _ in range(rounds2):
        for name, factory in factories.items():
            ops = n2 // 10 if name in slow else n2
            res = _contend(factory, ops, 2)
            _close_contexts()
            peers[name].setdefault("two_runs", []).append(res)
    for name in factories:
        runs = peers[name]["two_runs"]
        peers[name]["two"] = {
            "rate": median([r["rate"] for r in runs]),
            "exact": all(r["exact"] for r in runs),
            "lost": max(r["expected"] - r["final"] for r in runs),
            "expected": runs[0]["expected"],
        }

    # -- bulk: atomic_add_at ------------------------------------------------------------
    # At three sizes of histogram: 1,024 bins (the combining path, for which it was
    # made), 65,537 (just past it: one atomic add per update) and 1,048,576 (and the
    # bins no longer fit the caches).
    bulk: dict[str, Any] = {}
    why = _available("numpy") or _available("cowbuf")
    if why is None:
        import numpy as np

        import cowbuf
        updates = 100_000 if smoke else 10_000_000
        loop_updates = 20_000 if smoke else (300_000 if quick else 1_000_000)
        rng = np.random.default_rng(7)
        for bins in BULK_BINS:
            indices = rng.integers(0, bins, updates, dtype=np.int64)
            hist = cowbuf.array("q", bins)
            loop_indices = indices[:loop_updates].tolist()
            atomic_add = hist.atomic_add
            private = np.zeros(bins, dtype=np.int64)

            def python_loop(loop_indices: list[int] = loop_indices,
                            atomic_add: Callable[..., Any] = atomic_add) -> None:
                for i in loop_indices:
                    atomic_add(i, 1)

            progress(f"counters: atomic_add_at, {updates:,} updates into {bins:,} bins "
                     f"x {rounds} rounds")
            s = interleaved({
                "atomic_add_at": lambda hist=hist, indices=indices: hist.atomic_add_at(indices, 1),
                "numpy.add.at": lambda private=private, indices=indices: np.add.at(
                    private, indices, 1),
                "python loop": python_loop,
            }, rounds)
            per_update = {
                "atomic_add_at": median(s["atomic_add_at"]) / updates,
                "numpy.add.at": median(s["numpy.add.at"]) / updates,
                "python loop": median(s["python loop"]) / loop_updates,
            }
            expect = np.bincount(indices, minlength=bins) * rounds
            expect_loop = np.bincount(indices[:loop_updates], minlength=bins) * rounds
            exact = bool((np.asarray(hist) == expect + expect_loop).all())
            bulk[str(bins)] = {"updates": updates, "loop_updates": loop_updates,
                               "bins": bins, "samples": s, "seconds_per_update": per_update,
                               "exact": exact}
            del hist, indices, private
    else:
        bulk = {"missing": why}

    def rate(name: str, key: str) -> float | None:
        return peers.get(name, {}).get(key, {}).get("rate")

    def one(name: str) -> list[float]:  # seconds per round of n1 increments
        return peers.get(name, {}).get("one", {}).get("samples", [])

    def two(name: str) -> list[float]:  # seconds per increment, per round
        return [1 / r["rate"] for r in peers.get(name, {}).get("two_runs", [])]

    targets = []
    shm = [n for n in ("atomicshm view", "atomicshm cell") if rate(n, "one")]
    if rate("cowbuf", "one") and shm:
        best = max(shm, key=lambda n: rate(n, "one") or 0.0)
        targets.append(target("1 process: Counter.add >= 1.0x atomicshm",
                              one("cowbuf"), one(best), 1.0, "rate",
                              f"its faster API: {PEERS[best][0]}"))
    else:
        targets.append(na_target("1 process: Counter.add >= 1.0x atomicshm", 1.0, "rate",
                                 "atomicshm not installed"))
    if rate("cowbuf", "one") and rate("Value+lock", "one"):
        targets.append(target("1 process: Counter.add >= 8x Value+lock",
                              one("cowbuf"), one("Value+lock"), 8.0, "rate"))
    if rate("cowbuf", "two") and rate("Value+lock", "two"):
        targets.append(target("2 processes: aggregate >= 15x Value+lock",
                              two("cowbuf"), two("Value+lock"), 15.0, "rate",
                              "exact" if peers["cowbuf"]["two"]["exact"] else "NOT EXACT"))
    for b in bulk.values():
        if not isinstance(b, dict):
            continue
        s = b["samples"]
        targets.append(target(f"atomic_add_at >= 15x a Python loop, {b['bins']:,} bins",
                              s["atomic_add_at"], s["python loop"], 15.0, "rate",
                              f"{b['updates']:,} updates into {b['bins']:,} bins"
                              + ("" if b["exact"] else ", NOT EXACT"),
                              scale=b["updates"] / b["loop_updates"]))
    return {"name": "counters", "title": "Shared counters: increments per second",
            "config": {"ops_one": n1, "ops_two": n2, "rounds": rounds, "rounds_two": rounds2},
            "peers": peers, "bulk": bulk, "targets": targets}


def format_result(result: dict[str, Any]) -> str:
    peers = result["peers"]
    cow1 = peers.get("cowbuf", {}).get("one", {}).get("rate")
    cow2 = peers.get("cowbuf", {}).get("two", {}).get("rate")
    rows = []
    for p in peers.values():
        if p.get("missing"):
            rows.append([p["title"], "n/a", "", "n/a", "", "", p["missing"]])
            continue
        one, two = p["one"]["rate"], p["two"]["rate"]
        two_run = p["two"]
        exact = ("yes" if two_run["exact"] else
                 f"no: lost {two_run['lost']:,} of {two_run['expected']:,}")
        rows.append([p["title"], fmt_rate(one), f"{cow1 / one:.2f}x" if cow1 else "",
                     fmt_rate(two), f"{cow2 / two:.2f}x" if cow2 else "", exact, ""])
    out = [f"### {result['title']}", "",
           "Median increments per second; cowbuf's rate as a multiple of each row's "
           "(above 1.00x: cowbuf is faster). Two processes: aggregate rate of two forked "
           "processes adding to one counter at once.", "",
           table(["peer", "1 process", "cowbuf is", "2 processes", "cowbuf is", "exact",
                  "note"], rows)]
    bulk = result["bulk"]
    sizes = [b for b in bulk.values() if isinstance(b, dict)]
    if sizes:
        methods = list(sizes[0]["seconds_per_update"])
        brow = []
        for name in methods:
            cells = [name]
            for b in sizes:
                spu = b["seconds_per_update"]
                ref = spu["atomic_add_at"]
                times = spu[name] / ref
                cells.append(f"{spu[name] * 1e9:.1f} ns" + (
                    "" if name == "atomic_add_at" else
                    f" ({times:.1f}x)" if times >= 1 else f" ({times:.2f}x)"))
            brow.append(cells)
        first = sizes[0]
        exact = all(b["exact"] for b in sizes)
        out += ["", f"Bulk adds: {first['updates']:,} random updates into histograms of "
                "each size (the Python loop over the first "
                f"{first['loop_updates']:,}), time per update and, in brackets, how many "
                f"times atomic_add_at's; histograms exact: {'yes' if exact else 'NO'}. "
                "numpy.add.at is single-process (not atomic), for scale.", "",
                table(["method", *(f"{b['bins']:,} bins" for b in sizes)], brow)]
    out += ["", format_targets(result["targets"])]
    return "\n".join(out)


if __name__ == "__main__":
    bench_main(run, format_result)
