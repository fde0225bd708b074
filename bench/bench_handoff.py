"""Hand-off: give an 80 MB int64 array to a pool worker that sums it.

Under fork, forkserver and spawn: a cowbuf Array passed as a Pool task argument (sent
by reference: the worker maps the same memory), a numpy array passed the same way
(pickled: copied through a pipe), and multiprocessing.shared_memory passed by name
(the worker attaches to the segment). The pool is started before the data exists, as
in a long-running service, and warmed up; each time includes the worker's own sum.
"""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing import shared_memory
from typing import Any

from _common import (
    bench_main,
    fmt_time,
    format_targets,
    interleaved,
    median,
    na_target,
    progress,
    table,
    target,
)

METHODS = ["fork", "forkserver", "spawn"]


# -- worker side (module level: spawn and forkserver workers import them) ---------------

def _noop() -> int:
    return 0


def _sum_array(x: Any) -> int:
    import numpy as np
    return int(np.asarray(x).sum())


def _sum_shared_memory(name: str, n: int) -> int:
    import numpy as np
    # Pool workers share their parent's resource tracker, which the creator's
    # unlink() settles; 3.13+ can skip the registration altogether.
    if sys.version_info >= (3, 13):
        shm = shared_memory.SharedMemory(name=name, track=False)
    else:
        shm = shared_memory.SharedMemory(name=name)
    try:
        data = np.frombuffer(shm.buf, dtype=np.int64, count=n)
        total = int(data.sum())
        del data
    finally:
        shm.close()
    return total


def _by_reference(obj: Any) -> bool:
    """Whether multiprocessing's pickler sends `obj` by reference (a small message)."""
    from multiprocessing.reduction import ForkingPickler
    return len(ForkingPickler.dumps(obj)) < 64 * 1024


def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    import numpy as np

    import cowbuf

    n = 100_000 if smoke else 10_000_000
    rounds = 2 if smoke else (3 if quick else 7)
    methods = [m for m in METHODS if m in multiprocessing.get_all_start_methods()]
    if sys.platform != "win32":
        # One resource tracker for the parent and every worker (forked ones included),
        # so that a worker attaching to a segment does not start its own tracker that
        # would "clean up" the segment when the worker exits (CPython issue #82300).
        from multiprocessing import resource_tracker
        resource_tracker.ensure_running()
    results: dict[str, dict[str, Any]] = {}
    by_ref = None
    for method in methods:
        ctx = multiprocessing.get_context(method)
        progress(f"handoff: {method} pool, {n * 8 / 1e6:.0f} MB x {rounds} rounds")
        with ctx.Pool(1) as pool:
            pool.apply(_noop)
            pool.apply(_sum_array, (np.arange(10, dtype=np.int64),))  # imports numpy there
            src = np.arange(n, dtype=np.int64)
            expected = int(src.sum())
            a = cowbuf.array("q", src)
            shm = shared_memory.SharedMemory(create=True, size=n * 8)
            try:
                np.frombuffer(shm.buf, dtype=np.int64, count=n)[:] = src
                by_ref = _by_reference(a)
                arms = {
                    "empty task": lambda p=pool: p.apply(_noop),
                    "pickled numpy": lambda p=pool, x=src: p.apply(_sum_array, (x,)),
                    "shared_memory by name": lambda p=pool, name=shm.name: p.apply(
                        _sum_shared_memory, (name, n)),
                }
                if by_ref:
                    arms["cowbuf"] = lambda p=pool, x=a: p.apply(_sum_array, (x,))
                for name, arm in arms.items():  # check every arm computes the same sum
                    if name != "empty task" and arm() != expected:
                        raise AssertionError(f"{method}/{name}: wrong sum")
                samples = interleaved(arms, rounds)
            finally:
                shm.close()
                shm.unlink()
        results[method] = {"samples": samples,
                           "median": {k: median(v) for k, v in samples.items()}}

    targets = []
    for method in methods:
        med = results[method]["median"]
        if "cowbuf" not in med:
            targets.append(na_target(f"{method}: <= 1.2x shared_memory", 1.2, "time",
                                     "this cowbuf pickles arrays by value"))
            continue
        smp = results[method]["samples"]
        targets.append(target(f"{method}: <= 1.2x shared_memory by name", smp["cowbuf"],
                              smp["shared_memory by name"], 1.2, "time"))
        targets.append(target(f"{method}: >= 10x faster than pickling", smp["cowbuf"],
                              smp["pickled numpy"], 10.0, "rate"))
    return {"name": "handoff", "title": "Hand an 80 MB array to a pool worker that sums it",
            "config": {"items": n, "nbytes": n * 8, "rounds": rounds, "methods": methods,
                       "cowbuf_by_reference": by_ref},
            "methods": results, "targets": targets}


def format_result(result: dict[str, Any]) -> str:
    arms = ["cowbuf", "shared_memory by name", "pickled numpy", "empty task"]
    rows = []
    for method, res in result["methods"].items():
        med = res["median"]
        cow = med.get("cowbuf")
        cells = [method]
        for arm in arms:
            t = med.get(arm)
            if t is None:
                cells.append("n/a")
            elif arm == "cowbuf" or cow is None or arm == "empty task":
                cells.append(fmt_time(t))
            else:
                cells.append(f"{fmt_time(t)} ({cow / t:.2f}x)")
        rows.append(cells)
    mb = result["config"]["nbytes"] / 1e6
    note = "" if result["config"]["cowbuf_by_reference"] else (
        " (cowbuf n/a: this version of cowbuf pickles arrays by value)")
    return "\n".join([
        f"### Hand an {mb:.0f} MB int64 array to a pool worker that sums it{note}", "",
        "Median wall time of pool.apply(...) on a warm one-worker pool, the worker's sum "
        "included; in brackets cowbuf's time as a ratio of that column's.", "",
        table(["start method", "cowbuf Array", "shared_memory by name", "pickled numpy array",
               "empty task"], rows),
        "", format_targets(result["targets"])])


if __name__ == "__main__":
    bench_main(run, format_result)
