"""Helpers shared by the benchmarks: timing, process memory, tables, machine info.

Every benchmark module in this directory has a ``run(quick=..., smoke=...)`` that
returns a JSON-ready dict, a ``format_result(result)`` that renders it as Markdown,
and a ``main()`` so that it can also be run on its own.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# numpy's BLAS threads spin while idle and would steal the second core of a small
# machine from the code under test: pin them before anything imports numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)


def progress(message: str) -> None:
    """One line of progress on stderr (stdout carries the tables)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


# -- timing ----------------------------------------------------------------------------

def time_call(fn: Callable[[], Any]) -> float:
    """Seconds one call of fn takes; its result is dropped after the clock stops."""
    t0 = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t0
    del result
    return elapsed


def interleaved(arms: dict[str, Callable[[], Any]], rounds: int,
                between: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Time every arm once per round, in an order rotated each round, so that drift
    of a shared noisy machine hits every arm alike. Returns the samples per arm."""
    names = list(arms)
    samples: dict[str, list[float]] = {name: [] for name in names}
    was_enabled = gc.isenabled()
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                gc.collect()
                gc.disable()
                try:
                    samples[name].append(time_call(arms[name]))
                finally:
                    gc.enable()
                if between is not None:
                    between()
    finally:
        if not was_enabled:
            gc.disable()
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def target(name: str, times: Sequence[float], ref_times: Sequence[float], limit: float,
           kind: str, detail: str = "", scale: float = 1.0) -> dict[str, Any]:
    """A target as a ratio measured in this run, from per-round times of cowbuf and of
    the reference (round k of each measured back to back, scaled to the same work by
    `scale`, the reference's work per round over cowbuf's).

    The ratio is the median of the per-round ratios: on a shared machine, load that
    comes and goes hits both arms of a round alike, and the median of paired ratios
    is far steadier than a ratio of medians (also recorded). The range of the
    per-round ratios is kept too, and the target is met (PASS) only if it held in most
    rounds; a target that holds in half of them or fewer is a MISS, whatever one good
    round says.
    kind "time": ratio of cowbuf's time to the reference's, met when <= limit.
    kind "rate": ratio of cowbuf's speed to the reference's, met when >= limit."""
    pairs = [(t, r * scale) for t, r in zip(times, ref_times, strict=True) if t > 0 and r > 0]
    if not pairs:
        return na_target(name, limit, kind, detail or "not measured")
    if kind == "time":
        ratios = [t / r for t, r in pairs]
        of_medians = median([t for t, _ in pairs]) / median([r for _, r in pairs])
        held = sum(x <= limit for x in ratios)
    else:
        ratios = [r / t for t, r in pairs]
        of_medians = median([r for _, r in pairs]) / median([t for t, _ in pairs])
        held = sum(x >= limit for x in ratios)
    return {"name": name, "ratio": median(ratios), "ratio_of_medians": of_medians,
            "low": min(ratios), "high": max(ratios), "held": held,
            "rounds": len(pairs), "limit": limit, "kind": kind,
            "status": "PASS" if 2 * held > len(pairs) else "MISS", "detail": detail}


def na_target(name: str, limit: float, kind: str, detail: str) -> dict[str, Any]:
    return {"name": name, "ratio": None, "ratio_of_medians": None, "low": None,
            "high": None, "held": 0, "rounds": 0, "limit": limit, "kind": kind,
            "status": "n/a", "detail": detail}


def target_cells(t: dict[str, Any]) -> list[str]:
    """measured, range over rounds, rounds it held in, goal, status: the columns of a
    target in every table of the report and the README."""
    sign = "<=" if t["kind"] == "time" else ">="
    if t["ratio"] is None:
        return ["n/a", "", "", f"{sign} {t['limit']:g}x", t["status"]]
    low, high = t.get("low"), t.get("high")
    spread = "" if low is None else f"{low:.2f}x to {high:.2f}x"
    held = f"{t['held']} of {t['rounds']}" if "held" in t else ""
    return [f"{t['ratio']:.2f}x", spread, held, f"{sign} {t['limit']:g}x", t["status"]]


TARGET_HEADERS = ["measured", "range over rounds", "held in", "goal", ""]


def format_targets(targets: Iterable[dict[str, Any]]) -> str:
    rows = [[t["name"], *target_cells(t), t["detail"]] for t in targets]
    return table(["target", *TARGET_HEADERS, "note"], rows)


# -- forked children -------------------------------------------------------------------

def fork_child(body: Callable[[], None]) -> int:
    """Run `body` in a forked child that exits with 0 if it returned, 1 if it raised."""
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def reap(pids: list[int]) -> None:
    """Wait for forked children; RuntimeError if any of them failed."""
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    if failed:
        raise RuntimeError(f"{failed} benchmark processes failed")


# -- formatting ------------------------------------------------------------------------

def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table, padded so that it also reads well in a terminal."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells[1:]]
    return "\n".join(out)


def fmt_time(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def fmt_rate(per_second: float | None) -> str:
    if per_second is None or per_second != per_second:
        return "—"
    return f"{per_second / 1e6:.2f} M/s"


def fmt_mb(nbytes: float | None) -> str:
    if nbytes is None or nbytes != nbytes:
        return "—"
    return f"{nbytes / 1e6:.1f} MB"


# -- process memory --------------------------------------------------------------------

def memory_of(pid: int) -> dict[str, int] | None:
    """USS, PSS and RSS of a process in bytes; None if it is gone.

    Linux: /proc/PID/smaps_rollup (USS = Private_Clean + Private_Dirty). Elsewhere
    psutil's USS, with RSS in place of PSS."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None
        return _memory_psutil(pid)
    except (ProcessLookupError, PermissionError):
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key] = int(parts[0]) * 1024
    if "Pss" not in fields:
        return None
    return {"uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
            "pss": fields["Pss"], "rss": fields.get("Rss", 0)}


def _memory_psutil(pid: int) -> dict[str, int] | None:
    try:
        import psutil
        info = psutil.Process(pid).memory_full_info()
    except Exception:
        return None
    return {"uss": info.uss, "pss": getattr(info, "pss", info.rss), "rss": info.rss}


def children_of(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc; psutil elsewhere)."""
    path = f"/proc/{pid}/task/{pid}/children"
    try:
        with open(path) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        pass
    try:
        import psutil
        return [c.pid for c in psutil.Process(pid).children()]
    except Exception:
        return []


# -- machine ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine()


def total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except Exception:
        return None


def _version(module: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR,
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_bytes": total_memory(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "transparent_hugepage": {
            "anon": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
            "shmem": _read("/sys/kernel/mm/transparent_hugepage/shmem_enabled"),
        },
        "cowbuf_commit": commit,
        "versions": {name: _version(name) for name in (
            "cowbuf", "numpy", "gunicorn", "joblib", "psutil", "matplotlib", "atomics",
            "atomicshm", "pyarrow", "marisa-trie")},
    }


# -- command line ----------------------------------------------------------------------

def bench_main(run: Callable[..., dict[str, Any]],
               format_result: Callable[[dict[str, Any]], str]) -> None:
    """The command line of a single benchmark module: run it, print its tables,
    optionally write its raw figures."""
    import argparse
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "")
                                     .strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run that only checks that everything works")
    parser.add_argument("--json", metavar="PATH", help="also write the raw figures here")
    args = parser.parse_args()
    result = run(quick=args.quick, smoke=args.smoke)
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
