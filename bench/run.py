"""Run every cowbuf benchmark and write the figures, a Markdown report and charts.

    python bench/run.py            # the full run (under 20 minutes on 2 cores)
    python bench/run.py --quick    # a short run (under 3 minutes)

Writes bench/results/<timestamp>.json (raw figures, Python/OS/CPU), <timestamp>.md
and <timestamp>-*.png. Each benchmark runs in a process of its own, so that one's
memory never weighs on the next; progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from _common import BENCH_DIR, machine_info

BENCHMARKS = {
    # name: (script, what it measures)
    "demo": ("bench_demo.py", "python -m cowbuf.demo, the README's quick start"),
    "gunicorn": ("gunicorn_memory.py", "the article's experiment on real gunicorn"),
    "access": ("bench_access.py", "element access against pure-Python mmap and peers"),
    "arrayops": ("bench_arrayops.py", "array.array's operations and N-d indexing"),
    "counters": ("bench_counters.py", "shared counters and bulk atomic adds"),
    "handoff": ("bench_handoff.py", "handing an 80 MB array to a pool worker"),
    "scaling": ("bench_scaling.py", "memory and read time against workers and data size"),
    "ecosystem": ("bench_ecosystem.py", "joblib, pickle protocol 5 and Ray"),
    "containers": ("bench_containers.py", "FrozenDict and StrArray against dict, list and peers"),
    "sync": ("bench_sync.py", "locks, events and barriers across processes"),
    "queue": ("bench_queue.py", "cowbuf.Queue against multiprocessing's queues and faster-fifo"),
}
# cheap first, so that a broken setup shows in seconds
ORDER = ["access", "arrayops", "counters", "sync", "queue", "handoff", "containers",
         "ecosystem", "demo", "gunicorn", "scaling"]


def run_one(name: str, mode: list[str], index: int, count: int, t_start: float,
            tmp: str) -> dict[str, Any]:
    script, what = BENCHMARKS[name]
    out = os.path.join(tmp, f"{name}.json")
    print(f"[{index}/{count}] {name}: {what} ({time.perf_counter() - t_start:.0f} s)",
          file=sys.stderr, flush=True)
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    errors = []
    # tables to a file (read at the end), progress through a pipe (shown as it comes)
    with open(os.path.join(tmp, f"{name}.txt"), "w+") as tables_file, subprocess.Popen(
            [sys.executable, os.path.join(BENCH_DIR, script), *mode, "--json", out],
            stdout=tables_file, stderr=subprocess.PIPE, text=True, cwd=BENCH_DIR) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            progress_line = line.startswith("  ..")
            print(line.rstrip() if progress_line else f"    {line.rstrip()}",
                  file=sys.stderr, flush=True)
            if not progress_line:
                errors.append(line)
        code = proc.wait()
        tables_file.seek(0)
        tables = tables_file.read()
    seconds = time.perf_counter() - t0
    if code != 0 or not os.path.exists(out):
        return {"name": name, "title": what, "seconds": seconds,
                "error": f"exit status {code}: {''.join(errors)[-2000:]}"}
    print(tables, flush=True)
    with open(out) as f:
        result: dict[str, Any] = json.load(f)
    result["seconds"] = seconds
    result["load_average_at_start"] = load
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a short run (under 3 minutes)")
    mode.add_argument("--smoke", action="store_true",
                      help="a tiny run that only checks that everything works (tests)")
    parser.add_argument("--only", metavar="NAMES",
                        help=f"comma-separated subset of: {', '.join(ORDER)}")
    parser.add_argument("--out", metavar="DIR", default=os.path.join(BENCH_DIR, "results"),
                        help="where to write the results (default: bench/results)")
    parser.add_argument("--name", metavar="STEM",
                        help="file name stem of the results (default: a timestamp)")
    args = parser.parse_args()

    names = ORDER if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    flags = ["--quick"] if args.quick else ["--smoke"] if args.smoke else []
    started = datetime.datetime.now().astimezone()
    stem = args.name or started.strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.out, exist_ok=True)
    data: dict[str, Any] = {"meta": {
        "mode": "quick" if args.quick else "smoke" if args.smoke else "full",
        "command": "python bench/run.py" + "".join(f" {f}" for f in flags)
                   + (f" --only {args.only}" if args.only else ""),
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
    }, "benchmarks": {}}

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cowbuf-run-") as tmp:
        for k, name in enumerate(names, 1):
            data["benchmarks"][name] = run_one(name, flags, k, len(names), t_start, tmp)
    data["meta"]["seconds"] = time.perf_counter() - t_start
    data["meta"]["load_average_at_end"] = (list(os.getloadavg()) if hasattr(os, "getloadavg")
                                           else None)

    import report
    json_path = os.path.join(args.out, f"{stem}.json")
    with open(json_path, "w") as f:
        json.dump(data, f, separators=(",", ":"), default=str)
    written = [json_path, *report.write_report(data, args.out, stem)]
    failed = [n for n, r in data["benchmarks"].items() if "error" in r]
    print(f"done in {data['meta']['seconds']:.0f} s; wrote:", *written, sep="\n  ",
          file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
