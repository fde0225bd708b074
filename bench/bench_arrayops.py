"""array.array's operations and N-d indexing: cowbuf Array against array.array and numpy.

The same int64 values (10 M by default) as a cowbuf Array, an array.array and a numpy
array: comparison, count, index, reverse, byteswap, concatenation, repetition and
tofile, each timed for every container in rounds that interleave them; then the same
values as a (n/2, 2) array: items a[i, j], rows a[i] and a column sum, against numpy
and against the flat 1-d reads. Every result is checked against the others'.
"""

from __future__ import annotations

import array as _array
import mmap
import os
import random
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

ARMS = ["cowbuf", "array.array", "numpy"]
ARM_TITLES = {"cowbuf": "cowbuf Array", "array.array": "array.array('q')", "numpy": "numpy"}


def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    import numpy as np

    import cowbuf

    n = 20_000 if smoke else (2_000_000 if quick else 10_000_000)
    rounds = 2 if smoke else (5 if quick else 15)
    reads = 20_000 if smoke else 200_000
    progress(f"arrayops: preparing {n:,} int64 values in each container")
    src = np.arange(n, dtype=np.int64)
    containers: dict[str, dict[str, Any]] = {}
    for name, make in (("cowbuf", lambda: cowbuf.array("q", src)),
                       ("array.array", lambda: _array.array("q", src.tobytes())),
                       ("numpy", src.copy)):
        # two equal arrays, and a third that differs in its last item
        x, y, z = make(), make(), make()
        z[n - 1] = -1
        containers[name] = {"x": x, "y": y, "z": z}
    last = n - 1
    devnull = open(os.devnull, "wb")  # noqa: SIM115 (closed at the end of the run)

    ops: dict[str, dict[str, Any]] = {}
    checks: dict[str, bool] = {}

    def measure(op: str, title: str, arms: dict[str, Callable[[], Any]],
                agree: Callable[[dict[str, Any]], bool] | None = None) -> None:
        progress(f"arrayops: {op} x {rounds} rounds")
        results = {name: fn() for name, fn in arms.items()}  # once, to check them
        checks[op] = agree(results) if agree else len(set(map(repr, results.values()))) == 1
        samples = interleaved(arms, rounds)
        ops[op] = {"title": title, "samples": samples,
                   "median": {k: median(v) for k, v in samples.items()}}

    c, a, m = containers["cowbuf"], containers["array.array"], containers["numpy"]
    measure("eq", "x == y, equal arrays (every item compared)", {
        "cowbuf": lambda: c["x"] == c["y"],
        "array.array": lambda: a["x"] == a["y"],
        "numpy": lambda: bool(np.array_equal(m["x"], m["y"])),
    })
    measure("lt", "x < z, differing in the last item (lexicographic)", {
        "cowbuf": lambda: c["z"] < c["x"],
        "array.array": lambda: a["z"] < a["x"],
    })
    measure("count", "x.count(v): how many items equal v", {
        "cowbuf": lambda: c["x"].count(7),
        "array.array": lambda: a["x"].count(7),
        "numpy": lambda: int(np.count_nonzero(m["x"] == 7)),
    })
    measure("index", "x.index(v) of the last item", {
        "cowbuf": lambda: c["x"].index(last),
        "array.array": lambda: a["x"].index(last),
        "numpy": lambda: int(np.flatnonzero(m["x"] == last)[0]),
    })

    def twice(fn: Callable[[Any], Any], x: Any) -> Callable[[], Any]:
        # in place: done twice per round, so that every round starts from the same items
        def run_it() -> int:
            fn(x)
            fn(x)
            return int(x[0])
        return run_it

    def np_reverse(x: Any) -> None:
        x[:] = x[::-1]  # numpy copies the overlapping source first

    measure("reverse", "x.reverse() in place, twice", {
        "cowbuf": twice(lambda x: x.reverse(), c["y"]),
        "array.array": twice(lambda x: x.reverse(), a["y"]),
        "numpy": twice(np_reverse, m["y"]),
    })
    measure("byteswap", "x.byteswap() in place, twice", {
        "cowbuf": twice(lambda x: x.byteswap(), c["y"]),
        "array.array": twice(lambda x: x.byteswap(), a["y"]),
        "numpy": twice(lambda x: x.byteswap(inplace=True), m["y"]),
    })
    nbytes = 8 * n

    def fresh(size: int, *parts: Any) -> Any:
        # the floor of a new array on fresh memory: a new anonymous shared mapping,
        # filled by numpy (cowbuf cannot reuse pages freed earlier, as malloc does)
        memory = mmap.mmap(-1, size)
        out = np.frombuffer(memory, dtype=np.int64)
        start = 0
        for part in parts:
            out[start:start + len(part)] = part
            start += len(part)
        return out

    measure("concat", "x + y: a new array", {
        "cowbuf": lambda: c["x"] + c["y"],
        "array.array": lambda: a["x"] + a["y"],
        "numpy": lambda: np.concatenate([m["x"], m["y"]]),
        "fresh mmap floor": lambda: fresh(2 * nbytes, m["x"], m["y"]),
    }, agree=lambda r: all(len(v) == 2 * n and v[n] == 0 and v[-1] == last
                           for v in r.values()))
    measure("repeat", "3 * x: a new array", {
        "cowbuf": lambda: 3 * c["x"],
        "array.array": lambda: 3 * a["x"],
        "numpy": lambda: np.tile(m["x"], 3),
        "fresh mmap floor": lambda: fresh(3 * nbytes, m["x"], m["x"], m["x"]),
    }, agree=lambda r: all(len(v) == 3 * n and v[2 * n + 1] == 1 for v in r.values()))
    measure("tofile", "x.tofile(f) to /dev/null", {
        "cowbuf": lambda: c["x"].tofile(devnull),
        "array.array": lambda: a["x"].tofile(devnull),
        "numpy": lambda: m["x"].tofile(devnull),
    })

    # -- N-d: the same values as (n/2, 2) ----------------------------------------------
    rows = n // 2
    c2 = c["x"].reshape(rows, 2)
    m2 = m["x"].reshape(rows, 2)
    flat = c["x"]
    rng = random.Random(42)
    cells = [(rng.randrange(rows), rng.randrange(2)) for _ in range(reads)]
    flat_cells = [2 * i + j for i, j in cells]
    row_indices = [i for i, _ in cells]

    def items_2d(x: Any) -> Callable[[], int]:
        def read() -> int:
            total = 0
            for i, j in cells:
                total += x[i, j]
            return int(total)
        return read

    def items_flat() -> int:
        total = 0
        for k in flat_cells:
            total += flat[k]
        return total

    def rows_of(x: Any) -> Callable[[], int]:
        def read() -> int:
            total = 0
            for i in row_indices:
                total += len(x[i])
            return total
        return read

    # numpy on the very pages of the cowbuf array too: random reads of a large array
    # cost a cache and TLB miss each, which depends on where the memory lies (numpy's
    # own may sit on huge pages), not on the access path
    same = np.asarray(c2)
    measure("item_2d", f"{reads:,} random items a[i, j] of a ({rows:,}, 2) array", {
        "cowbuf": items_2d(c2), "numpy": items_2d(m2), "numpy (same memory)": items_2d(same),
        "cowbuf flat a[2*i + j]": items_flat,
    })
    measure("row_2d", f"{reads:,} random rows a[i] (views) of a ({rows:,}, 2) array", {
        "cowbuf": rows_of(c2), "numpy": rows_of(m2), "numpy (same memory)": rows_of(same),
    })
    measure("column_sum", "a[:, 1].sum(): a column, strided, summed in C", {
        "cowbuf": lambda: c2[:, 1].sum(), "numpy": lambda: int(m2[:, 1].sum()),
    })
    measure("construct_2d", "cowbuf.array('q', ndarray_2d): a new (n/2, 2) array", {
        "cowbuf": lambda: cowbuf.array("q", m2).shape, "numpy": lambda: m2.copy().shape,
        "fresh mmap floor": lambda: fresh(nbytes, m["x"]).reshape(rows, 2).shape,
    })
    del same
    devnull.close()

    smp = {op: ops[op]["samples"] for op in ops}

    def vs(op: str, peer: str, limit: float, name: str, kind: str = "time",
           detail: str = "") -> dict[str, Any]:
        return target(name, smp[op]["cowbuf"], smp[op][peer], limit, kind, detail)

    targets = [
        vs("eq", "array.array", 1.1, "x == y <= 1.1x array.array", "time", "both memcmp"),
        vs("lt", "array.array", 1.1, "x < z <= 1.1x array.array", "time", "both memcmp"),
        vs("count", "array.array", 10.0, "count(v) >= 10x array.array", "rate"),
        vs("index", "array.array", 10.0, "index(v) >= 10x array.array", "rate"),
        vs("count", "numpy", 1.0, "count(v) <= 1.0x numpy count_nonzero(x == v)"),
        vs("reverse", "array.array", 1.2, "reverse() <= 1.2x array.array"),
        vs("byteswap", "array.array", 1.2, "byteswap() <= 1.2x array.array"),
        vs("concat", "fresh mmap floor", 1.3, "x + y <= 1.3x fresh-mmap floor"),
        vs("repeat", "fresh mmap floor", 1.3, "3 * x <= 1.3x fresh-mmap floor"),
        vs("tofile", "array.array", 1.2, "tofile() <= 1.2x array.array"),
        vs("item_2d", "numpy (same memory)", 1.0, "a[i, j] <= 1.0x numpy a[i, j]", "time",
           "same memory"),
        vs("row_2d", "numpy (same memory)", 1.0, "a[i] row view <= 1.0x numpy", "time",
           "same memory"),
        vs("column_sum", "numpy", 1.5, "a[:, 1].sum() <= 1.5x numpy"),
        vs("construct_2d", "fresh mmap floor", 1.3, "2-d construction <= 1.3x fresh-mmap floor"),
    ]
    return {"name": "arrayops", "title": "array.array's operations and N-d indexing",
            "config": {"items": n, "rounds": rounds, "reads": reads},
            "ops": ops, "checks": checks, "targets": targets}


def format_result(result: dict[str, Any]) -> str:
    rows = []
    for op in result["ops"].values():
        med = op["median"]
        cow = med["cowbuf"]
        cells = [op["title"], fmt_time(cow)]
        for arm in ARMS[1:]:
            t = med.get(arm)
            cells.append("—" if t is None else f"{fmt_time(t)} ({cow / t:.2f}x)")
        others = [k for k in med if k not in ARMS]
        cells.append(", ".join(f"{k}: {fmt_time(med[k])}" for k in others))
        rows.append(cells)
    checks = result["checks"]
    wrong = [op for op, ok in checks.items() if not ok]
    n = result["config"]["items"]
    return "\n".join([
        f"### {result['title']} ({n:,} int64)",
        "",
        "Median time of each operation; in brackets, cowbuf's time as a ratio of that "
        "column's (below 1.00x: cowbuf is faster). Every container's result was checked "
        "against the others': " + ("all agree." if not wrong else
                                   f"DISAGREE in {', '.join(wrong)}."),
        "",
        table(["operation", "cowbuf Array", ARM_TITLES["array.array"], ARM_TITLES["numpy"],
               "other"], rows),
        "",
        format_targets(result["targets"]),
    ])


if __name__ == "__main__":
    bench_main(run, format_result)
