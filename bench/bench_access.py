"""Element access: cowbuf Array against pure-Python mmap, array.array, list and numpy.

The same int64 values (10 M by default) held as a cowbuf Array, an mmap read through
memoryview.cast('q') and through struct.unpack_from, an array.array, a list and a
numpy array; every operation is timed for each of them, in rounds that interleave
the arms, and the medians are compared as ratios measured in the same run.
"""

from __future__ import annotations

import array as _array
import mmap
import random
import struct
from collections.abc import Callable
from typing import Any

from _common import (
    bench_main,
    fmt_time,
    format_targets,
    interleaved,
    median,
    progress,
    table,
    target,
)

ARMS = ["cowbuf", "memoryview", "memoryview (same memory)", "struct", "array.array", "list",
        "numpy"]
ARM_TITLES = {
    "cowbuf": "cowbuf Array",
    "memoryview": "mmap + memoryview.cast('q')",
    # the same reads on cowbuf's own pages: what is left of a difference in a[i] or
    # sum(a) once where the memory lies (its pages, caches and TLB) is the same
    "memoryview (same memory)": "memoryview of the cowbuf Array",
    "struct": "mmap + struct.unpack_from",
    "array.array": "array.array('q')",
    "list": "list",
    "numpy": "numpy",
}


def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    import numpy as np

    import cowbuf

    n = 100_000 if smoke else 10_000_000
    # Many short rounds: on a shared machine a round's ratio is only as good as the
    # load was steady while it ran.
    reads = 20_000 if smoke else (200_000 if quick else 300_000)
    rounds = 2 if smoke else (5 if quick else 21)
    slow_rounds = 1 if smoke else (1 if quick else 3)  # struct iteration: ~2 s a round
    progress(f"access: preparing {n:,} int64 values in each container")

    src = np.arange(n, dtype=np.int64)
    a = cowbuf.array("q", src)
    m = mmap.mmap(-1, n * 8)
    np.frombuffer(m, dtype=np.int64)[:] = src
    mv = memoryview(m).cast("q")
    unpack_from = struct.Struct("q").unpack_from
    arr = _array.array("q")
    arr.frombytes(src.tobytes())
    lst = src.tolist()
    npa = src.copy()
    same = np.asarray(a)  # numpy on the cowbuf memory itself
    same_mv = memoryview(a)
    rng = random.Random(42)
    idx = [rng.randrange(n) for _ in range(reads)]
    offs = [i * 8 for i in idx]
    hot = [rng.randrange(1000) for _ in range(reads)]
    hot_offs = [i * 8 for i in hot]
    containers = {"cowbuf": a, "memoryview": mv, "memoryview (same memory)": same_mv,
                  "array.array": arr, "list": lst, "numpy": npa}

    ops: dict[str, dict[str, Any]] = {}

    def record(op: str, title: str, samples: dict[str, list[float]], **extra: Any) -> None:
        ops[op] = {"title": title, "samples": samples,
                   "median": {k: median(v) for k, v in samples.items()}, **extra}

    # -- random reads ------------------------------------------------------------------
    def reader(x: Any, indices: list[int]) -> Callable[[], None]:
        def read() -> None:
            for i in indices:
                x[i]
        return read

    def struct_reader(offsets: list[int]) -> Callable[[], None]:
        def read() -> None:
            for o in offsets:
                unpack_from(m, o)[0]
        return read

    def loop_only() -> None:
        for _ in idx:
            pass

    progress(f"access: {reads:,} random a[i] reads x {rounds} rounds")
    arms = {k: reader(v, idx) for k, v in containers.items()}
    arms["struct"] = struct_reader(offs)
    arms["empty loop"] = loop_only
    record("getitem", f"{reads:,} random reads over all items", interleaved(arms, rounds))

    arms = {k: reader(v, hot) for k, v in containers.items()}
    arms["struct"] = struct_reader(hot_offs)
    arms["empty loop"] = loop_only
    record("getitem_hot", f"{reads:,} reads of 1,000 hot items (in cache)",
           interleaved(arms, rounds))

    # -- full iteration ----------------------------------------------------------------
    def struct_sum() -> int:
        total = 0
        for o in range(0, n * 8, 8):
            total += unpack_from(m, o)[0]
        return total

    progress(f"access: full iteration sum(a) x {rounds} rounds")
    arms = {k: (lambda x=v: sum(x)) for k, v in containers.items()}
    samples = interleaved(arms, rounds)
    progress(f"access: full iteration with struct.unpack_from x {slow_rounds}")
    samples.update(interleaved({"struct": struct_sum}, slow_rounds))
    record("iterate", "iterate every item in Python", samples)

    # -- C reductions ------------------------------------------------------------------
    progress(f"access: a.sum() x {rounds * 2} rounds")
    expected = int(src.sum())
    assert a.sum() == expected and int(same.sum()) == expected
    record("sum", "the sum in C", interleaved(
        {"cowbuf": a.sum, "numpy (same memory)": same.sum, "numpy": npa.sum}, rounds * 2))

    # -- construction ------------------------------------------------------------------
    def fresh_mmap_floor() -> mmap.mmap:
        fresh = mmap.mmap(-1, n * 8)
        np.frombuffer(fresh, dtype=np.int64)[:] = src
        return fresh

    def array_array() -> _array.array:
        out = _array.array("q")
        out.frombytes(memoryview(src).cast("B"))
        return out

    progress(f"access: construction from numpy x {rounds} rounds")
    record("construct", "a new array of all items from a numpy array", interleaved({
        "cowbuf": lambda: cowbuf.array("q", src),
        "fresh mmap + numpy (floor)": fresh_mmap_floor,
        "numpy": src.copy,
        "array.array": array_array,
        "list": src.tolist,
    }, rounds))

    # -- fill (last: it overwrites the values) -------------------------------------------
    pattern = _array.array("q", [7]) * n
    pattern_mv = memoryview(pattern)

    def fill_mv() -> None:
        mv[:] = pattern_mv

    def fill_arr() -> None:
        arr[:] = pattern

    progress(f"access: fill x {rounds} rounds")
    record("fill", "slice assignment from a prepared buffer where there is no fill()",
           interleaved({
               "cowbuf": lambda: a.fill(7),
               "numpy (same memory)": lambda: same.fill(7),
               "memoryview": fill_mv,
               "array.array": fill_arr,
               "numpy": lambda: npa.fill(7),
           }, rounds))
    assert a[n - 1] == 7 and mv[n - 1] == 7

    med = {op: ops[op]["median"] for op in ops}
    smp = {op: ops[op]["samples"] for op in ops}
    targets = [
        target("a[i] <= 0.9x memoryview", smp["getitem"]["cowbuf"],
               smp["getitem"]["memoryview"], 0.9, "time", "random reads over all items"),
        target("iteration <= 1.0x memoryview", smp["iterate"]["cowbuf"],
               smp["iterate"]["memoryview"], 1.0, "time", "sum(a)"),
        target("a.sum() <= 1.5x numpy sum, same memory", smp["sum"]["cowbuf"],
               smp["sum"]["numpy (same memory)"], 1.5, "time", ""),
        target("construction <= 1.3x fresh-mmap floor", smp["construct"]["cowbuf"],
               smp["construct"]["fresh mmap + numpy (floor)"], 1.3, "time",
               "cowbuf.array('q', numpy_array)"),
    ]
    m_loop = med["getitem"]["empty loop"]
    hot_loop = med["getitem_hot"]["empty loop"]
    notes = {
        # per-read cost net of the loop: the call itself, and the memory behind it
        "ns_per_read": {arm: (med["getitem"][arm] - m_loop) / reads * 1e9 for arm in ARMS},
        "ns_per_hot_read": {arm: (med["getitem_hot"][arm] - hot_loop) / reads * 1e9
                            for arm in ARMS},
    }
    mv.release()
    same_mv.release()
    m.close()
    return {"name": "access", "title": "Element access on the same int64 values",
            "config": {"items": n, "reads": reads, "rounds": rounds,
                       "slow_rounds": slow_rounds},
            "ops": ops, "targets": targets, "notes": notes}


OP_HEADERS = {"getitem": "a[i] random", "getitem_hot": "a[i] hot", "iterate": "sum(a)",
              "sum": "a.sum()", "construct": "construct", "fill": "fill(7)"}


def format_result(result: dict[str, Any]) -> str:
    ops = result["ops"]
    rows_order: list[str] = []
    for op in ops.values():
        for arm in op["median"]:
            if arm not in rows_order:
                rows_order.append(arm)
    # cowbuf first, then the peers in the order of ARMS, then the references
    rows_order = [a for a in ARMS if a in rows_order] + [a for a in rows_order if a not in ARMS]
    rows = []
    for arm in rows_order:
        cells = [ARM_TITLES.get(arm, arm)]
        for op in ops.values():
            t = op["median"].get(arm)
            cow = op["median"].get("cowbuf")
            if t is None:
                cells.append("—")
            elif arm in ("cowbuf", "empty loop") or not cow:
                cells.append(fmt_time(t))
            else:
                cells.append(f"{fmt_time(t)} ({cow / t:.2f}x)")
        rows.append(cells)
    headers = ["data held as"] + [OP_HEADERS.get(k, k) for k in ops]
    n = result["config"]["items"]
    notes = result["notes"]
    per_read = ", ".join(f"{arm} {notes['ns_per_read'][arm]:.0f}" for arm in ARMS)
    per_hot = ", ".join(f"{arm} {notes['ns_per_hot_read'][arm]:.0f}" for arm in ARMS)
    legend = "; ".join(f"{OP_HEADERS.get(k, k)}: {op['title']}" for k, op in ops.items())
    return "\n".join([
        f"### {result['title']} ({n:,} int64)",
        "",
        "Median time of each operation; in brackets, cowbuf's time as a ratio of that "
        "row's (below 1.00x: cowbuf is faster). " + legend + ".",
        "",
        table(headers, rows),
        "",
        f"Net ns per read (the empty loop subtracted), random over all items: {per_read}; "
        f"hot items: {per_hot}.",
        "",
        format_targets(result["targets"]),
    ])


if __name__ == "__main__":
    bench_main(run, format_result)
