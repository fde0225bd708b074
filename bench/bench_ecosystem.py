"""Where the workers really are: joblib, pickle protocol 5, Ray.

- joblib: Parallel(n_jobs=2) runs 8 tasks that each sum an eighth of an 80 MB int64
  array: a cowbuf Array (sent by reference through loky) and the equivalent numpy
  array (joblib dumps it to a memory-mapped file for the workers), with a Parallel made
  per call (the common idiom: numpy's array is dumped each call) and with one Parallel
  reused (joblib's idiom for repeated calls: the dump is made once), against the same
  tasks on a warm multiprocessing pool with the cowbuf Array (bench_handoff's route).
  Files left in the temporary folder are counted afterwards.
- pickle protocol 5: dumps and loads of an 80 MB Array with its memory out of band
  (buffer_callback, then buffers= read-only, as Ray and Dask hand them over) against the
  in-band round trip (one bytes object, copied on both sides).
- Ray: ray.get(ray.put(x)) of the 80 MB Array against the same for the numpy array.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import tempfile
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

TASKS = 8


# -- worker side (module level: spawned workers import them) -----------------------------

def _sum_part(data: Any, i: int) -> int:
    import numpy as np

    n = len(data)
    return int(np.asarray(data[i * n // TASKS:(i + 1) * n // TASKS]).sum())


def _noop() -> int:
    return 0


def _files_under(folder: str) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _joblib_arms(a: Any, src: Any, parallel: Any, pool: Any, temp: str) -> dict[str, Any]:
    from joblib import Parallel, delayed

    def tasks(data: Any) -> Any:
        return (delayed(_sum_part)(data, i) for i in range(TASKS))

    def per_call(data: Any) -> int:
        return sum(Parallel(n_jobs=2, backend="loky", temp_folder=temp)(tasks(data)))

    return {
        "cowbuf, Parallel per call": lambda: per_call(a),
        "numpy, Parallel per call": lambda: per_call(src),
        "cowbuf, one Parallel reused": lambda: sum(parallel(tasks(a))),
        "numpy, one Parallel reused": lambda: sum(parallel(tasks(src))),
        "cowbuf, multiprocessing pool": lambda: sum(
            pool.starmap(_sum_part, [(a, i) for i in range(TASKS)])),
    }


def _pickle_arms(a: Any) -> dict[str, Any]:
    def out_of_band() -> Any:
        buffers: list[pickle.PickleBuffer] = []
        data = pickle.dumps(a, protocol=5, buffer_callback=buffers.append)
        return pickle.loads(data, buffers=[b.raw().toreadonly() for b in buffers])

    return {
        "protocol 5, out of band": out_of_band,
        "in band": lambda: pickle.loads(pickle.dumps(a, protocol=5)),
    }


def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    import numpy as np

    import cowbuf

    n = 100_000 if smoke else 10_000_000
    rounds = 2 if smoke else (3 if quick else 7)
    src = np.arange(n, dtype=np.int64)
    expected = int(src.sum())
    a = cowbuf.array("q", src)
    samples: dict[str, dict[str, list[float]]] = {}
    left: dict[str, int] = {}

    try:
        import joblib  # noqa: F401
    except ImportError:
        joblib_ok = False
    else:
        joblib_ok = True
    if joblib_ok:
        progress(f"ecosystem: joblib, {n * 8 / 1e6:.0f} MB, {TASKS} tasks x {rounds} rounds")
        from joblib import Parallel
        from joblib.externals.loky import get_reusable_executor

        temp = tempfile.mkdtemp(prefix="cowbuf-bench-")
        try:
            # joblib's own idiom for repeated calls: one Parallel, its workers kept warm
            with Parallel(n_jobs=2, backend="loky", temp_folder=temp) as parallel, \
                    multiprocessing.get_context("spawn").Pool(2) as pool:
                pool.apply(_noop)
                arms = _joblib_arms(a, src, parallel, pool, temp)
                for name, arm in arms.items():  # warm up, and check every arm's sum
                    if arm() != expected:
                        raise AssertionError(f"joblib/{name}: wrong sum")
                samples["joblib"] = interleaved(arms, rounds)
            get_reusable_executor().shutdown(wait=True)
            left["after"] = _files_under(temp)
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    progress(f"ecosystem: pickle protocol 5, {rounds * 3} rounds")
    arms = _pickle_arms(a)
    for name, arm in arms.items():
        if arm() != a:
            raise AssertionError(f"pickle/{name}: wrong result")
    samples["pickle"] = interleaved(arms, rounds * 3)

    try:
        import ray
    except ImportError:
        ray = None
    if ray is not None:
        progress(f"ecosystem: Ray put/get, {rounds * 3} rounds")
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 object_store_memory=max(512 << 20, 4 * n * 8), configure_logging=False)
        try:
            arms = {"cowbuf Array": lambda: ray.get(ray.put(a)),
                    "numpy array": lambda: ray.get(ray.put(src))}
            if arms["cowbuf Array"]() != a:
                raise AssertionError("ray: wrong result")
            samples["ray"] = interleaved(arms, rounds * 3)
        finally:
            ray.shutdown()

    targets = []
    if "joblib" in samples:
        s = samples["joblib"]
        targets.append(target("joblib, one Parallel: <= 1.2x a multiprocessing pool",
                               s["cowbuf, one Parallel reused"],
                               s["cowbuf, multiprocessing pool"], 1.2, "time"))
        targets.append(target("joblib, Parallel per call: >= 5x faster than with numpy",
                               s["cowbuf, Parallel per call"], s["numpy, Parallel per call"],
                               5.0, "rate", detail=f"files left: {left.get('after', 0)}"))
    else:
        targets.append(na_target("joblib, one Parallel: <= 1.2x a multiprocessing pool", 1.2,
                                 "time", "joblib is not installed"))
    s = samples["pickle"]
    targets.append(target("pickle 5 out of band: >= 20x faster than in band",
                          s["protocol 5, out of band"], s["in band"], 20.0, "rate"))
    if "ray" in samples:
        s = samples["ray"]
        targets.append(target("Ray: get(put(a)) <= 1.2x numpy's", s["cowbuf Array"],
                              s["numpy array"], 1.2, "time"))
    else:
        targets.append(na_target("Ray: get(put(a)) <= 1.2x numpy's", 1.2, "time",
                                 "ray is not installed"))
    return {"name": "ecosystem", "title": "joblib, pickle protocol 5 and Ray",
            "config": {"items": n, "nbytes": n * 8, "rounds": rounds, "tasks": TASKS},
            "samples": samples,
            "median": {group: {k: median(v) for k, v in arms.items()}
                       for group, arms in samples.items()},
            "files_left": left.get("after", 0), "targets": targets}


def format_result(result: dict[str, Any]) -> str:
    mb = result["config"]["nbytes"] / 1e6
    lines = [f"### joblib, pickle protocol 5 and Ray, on an {mb:.0f} MB int64 array", ""]
    groups = {"joblib": f"joblib Parallel(n_jobs=2): {result['config']['tasks']} tasks "
                        "that each sum an eighth",
              "pickle": "pickle.dumps + pickle.loads", "ray": "ray.get(ray.put(x))"}
    rows = []
    for group, medians in result["median"].items():
        first = next(iter(medians.values()))
        for arm, t in medians.items():
            rows.append([groups[group], arm, fmt_time(t), f"{t / first:.2f}x"])
    lines += ["Median wall time per round; the last column is each arm's time over the "
              "first arm's of its group.", "",
              table(["what", "arm", "median", "ratio"], rows), "",
              f"Files left in joblib's temporary folder afterwards: {result['files_left']}.",
              "", format_targets(result["targets"])]
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main(run, format_result)
