"""The article's experiment on real gunicorn: memory of workers that read shared data.

For each strategy of strategies.py: start gunicorn (sync workers, --preload unless the
strategy is the no-preload baseline) on a free loopback port with the app of
gunicorn_app.py holding N integers (or, for the lookup-table strategies, N string keys
-> int), and sample every process's USS and PSS (/proc/PID/smaps_rollup) through four
phases:

  boot    until every worker answers;
  idle    nothing happens;
  read    each worker serves one request that reads every value in Python (for a lookup
          table: looks up every key, with key objects of its own);
  load    a bounded closed-loop load of /lookup requests (a few values each) from a
          client on loopback: requests/s and latency percentiles.

Then gunicorn is stopped (SIGTERM, then SIGKILL of its process group if it lingers)
and no process of it is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import httpload
import strategies
from _common import (
    BENCH_DIR,
    bench_main,
    children_of,
    fmt_mb,
    fmt_time,
    free_port,
    memory_of,
    progress,
    table,
)

PHASES = ["boot", "idle", "read", "load"]


class Sampler(threading.Thread):
    """Samples USS/PSS/RSS of a gunicorn master and its workers every `interval`."""

    def __init__(self, master: int, t0: float, interval: float) -> None:
        super().__init__(daemon=True)
        self.master, self.t0, self.interval = master, t0, interval
        self.samples: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def sample(self) -> None:
        t = time.perf_counter() - self.t0
        for pid in [self.master, *children_of(self.master)]:
            mem = memory_of(pid)
            if mem is not None:
                self.samples.append({"t": round(t, 3), "pid": pid, **mem})

    def label(self, workers: set[int]) -> None:
        """Mark each sample master, worker (a pid that served requests) or other (a
        helper process of the master, e.g. multiprocessing's resource tracker)."""
        for s in self.samples:
            s["role"] = ("master" if s["pid"] == self.master else
                         "worker" if s["pid"] in workers else "other")

    def series(self) -> list[dict[str, Any]]:
        """The samples as one time series per process (compact in JSON)."""
        by_pid: dict[int, dict[str, Any]] = {}
        for s in self.samples:
            one = by_pid.setdefault(s["pid"], {"pid": s["pid"], "role": s["role"], "t": [],
                                               "uss": [], "pss": [], "rss": []})
            for key in ("t", "uss", "pss", "rss"):
                one[key].append(s[key])
        return list(by_pid.values())

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        self.sample()


def _last_before(samples: list[dict[str, Any]], t: float) -> dict[int, dict[str, Any]]:
    """The last sample of each process taken at or before time t."""
    out: dict[int, dict[str, Any]] = {}
    for s in samples:
        if s["t"] <= t:
            out[s["pid"]] = s
    return out


def _stop(proc: subprocess.Popen[bytes], known: set[int]) -> list[int]:
    """Stop gunicorn; return the pids that had to be killed after the master exited."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only gunicorn's processes
            proc.wait(timeout=30)
    leftovers = []
    deadline = time.monotonic() + 10
    for pid in sorted(known - {proc.pid}):
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive_child_of_ours(pid, proc.pid):
            os.kill(pid, signal.SIGKILL)
            leftovers.append(pid)
    return leftovers


def _alive_child_of_ours(pid: int, session: int) -> bool:
    """True if pid is still a live process of the gunicorn session we started."""
    try:
        return os.getsid(pid) == session and not _zombie(pid)
    except ProcessLookupError:
        return False


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def run_strategy(strategy: strategies.Strategy, items: int, workers: int, cfg: dict[str, Any],
                 joblib_file: str | None, log_dir: str) -> dict[str, Any]:
    port = free_port()
    env = dict(os.environ, COWBUF_BENCH_STRATEGY=strategy.name,
               COWBUF_BENCH_ITEMS=str(items), PYTHONUNBUFFERED="1")
    if joblib_file:
        env["COWBUF_BENCH_JOBLIB_FILE"] = joblib_file
    cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers),
           "--bind", f"127.0.0.1:{port}", "--worker-class", "sync", "--timeout", "600",
           "--graceful-timeout", "10", "--log-level", "warning", "--chdir", BENCH_DIR]
    if strategy.preload:
        cmd.append("--preload")
    cmd.append("gunicorn_app:app")
    log_path = os.path.join(log_dir, f"gunicorn-{strategy.name}.log")
    phases: dict[str, list[float]] = {}
    result: dict[str, Any] = {"strategy": strategy.name, "title": strategy.title,
                              "preload": strategy.preload, "items": items, "workers": workers,
                              "port": port,
                              # as run from the repository root, without this machine's paths
                              "command": " ".join(cmd[1:]).replace(BENCH_DIR, "bench")}
    known: set[int] = set()
    worker_pids: set[int] = set()
    first_read: dict[int, float] = {}
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=BENCH_DIR, start_new_session=True)
        sampler = Sampler(proc.pid, t0, cfg["interval"])
        sampler.start()
        try:
            # boot: until every worker has answered a request
            deadline = time.monotonic() + cfg["boot_timeout"]
            while len(worker_pids) < workers:
                if proc.poll() is not None:
                    raise RuntimeError(f"gunicorn exited with {proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn workers did not all answer in time")
                if len(children_of(proc.pid)) < workers:
                    time.sleep(0.05)
                    continue
                for r in httpload.get_all(port, ["/pid?hold=0.2"] * workers, timeout=60):
                    if isinstance(r, httpload.Response) and r.status == 200:
                        pid, build_seconds = r.body.split()
                        worker_pids.add(int(pid))
                        # (with --preload: the master's build, inherited by every worker)
                        result.setdefault("build_seconds", float(build_seconds))
                    else:
                        time.sleep(0.05)
            known |= worker_pids | set(children_of(proc.pid)) | {proc.pid}
            now = time.perf_counter() - t0
            phases["boot"] = [0.0, now]
            time.sleep(cfg["idle"])
            phases["idle"] = [now, time.perf_counter() - t0]

            # read: every worker reads all values in Python once
            start = time.perf_counter() - t0
            for _ in range(cfg["read_rounds_max"]):
                missing = workers - len(first_read)
                if missing <= 0:
                    break
                # each request holds its worker a moment after reading, so that the
                # others go to the workers that have not read yet
                for r in httpload.get_all(port, ["/sum?hold=0.3"] * workers, timeout=600):
                    if isinstance(r, Exception) or r.status != 200:
                        raise RuntimeError(f"/sum failed: {r!r}")
                    pid, total, seconds = r.body.split()
                    if int(total) != items * (items - 1) // 2:
                        raise RuntimeError(f"/sum returned {total}")
                    first_read.setdefault(int(pid), float(seconds))
            if len(first_read) < workers:
                raise RuntimeError(f"only {len(first_read)} of {workers} workers answered "
                                   f"/sum in {cfg['read_rounds_max']} rounds")
            time.sleep(cfg["settle"])
            phases["read"] = [start, time.perf_counter() - t0]
            result["first_read_seconds"] = first_read

            # load: bounded closed-loop load of lookups
            start = time.perf_counter() - t0
            result["load"] = httpload.load(
                port, lambda rng: f"/lookup?i={rng.randrange(items)}", cfg["concurrency"],
                cfg["load_seconds"])
            phases["load"] = [start, time.perf_counter() - t0]

            # the C sum, where the container has one (not part of the memory phases)
            if strategy.c_sum is not None:
                times = []
                for _ in range(3):
                    r = httpload.get(port, "/csum", timeout=600)
                    times.append(float(r.body.split()[2]))
                result["c_sum_seconds"] = min(times)
            known |= set(children_of(proc.pid))
        finally:
            sampler.stop()
            leftovers = _stop(proc, known)
    sampler.label(worker_pids | set(first_read))
    with open(log_path, "rb") as f:
        log_tail = f.read()[-4000:].decode(errors="replace")
    result.update(phases=phases, leftovers=leftovers, exit_code=proc.returncode,
                  log_tail=log_tail if proc.returncode else "")
    result["summary"] = summarize(sampler.samples, phases, result.get("first_read_seconds", {}))
    result["series"] = sampler.series()
    return result


def summarize(samples: list[dict[str, Any]], phases: dict[str, list[float]],
              first_read: dict[int, float]) -> dict[str, Any]:
    """Per-worker and total memory at the end of each phase."""
    out: dict[str, Any] = {}
    for phase, (_, end) in phases.items():
        last = _last_before(samples, end)
        workers = [s for s in last.values() if s["role"] == "worker"]
        master = [s for s in last.values() if s["role"] == "master"]
        others = [s for s in last.values() if s["role"] == "other"]
        out[phase] = {
            "worker_uss": sorted(s["uss"] for s in workers),
            "worker_pss": sorted(s["pss"] for s in workers),
            "master_uss": master[0]["uss"] if master else None,
            "master_pss": master[0]["pss"] if master else None,
            "other_pss": sum(s["pss"] for s in others),
            "total_pss": sum(s["pss"] for s in last.values()),
        }
    idle, end = out.get("idle"), out.get("load")
    if idle and end:
        grow = [b - a for a, b in zip(idle["worker_uss"], end["worker_uss"], strict=False)]
        out["uss_growth_per_worker"] = sorted(grow)
    reads = sorted(first_read.values())
    out["first_read_seconds_median"] = reads[len(reads) // 2] if reads else None
    return out


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def run(quick: bool = False, smoke: bool = False, only: list[str] | None = None,
        items: int | None = None) -> dict[str, Any]:
    if smoke:
        cfg = {"items": 50_000, "dict_items": 20_000, "workers": 3, "idle": 0.2,
               "settle": 0.1, "load_seconds": 0.5, "concurrency": 3, "interval": 0.05}
    elif quick:
        cfg = {"items": 10_000_000, "dict_items": 1_000_000, "workers": 3, "idle": 0.3,
               "settle": 0.2, "load_seconds": 1.0, "concurrency": 4, "interval": 0.1}
    else:
        cfg = {"items": 10_000_000, "dict_items": 1_000_000, "workers": 3, "idle": 1.0,
               "settle": 1.0, "load_seconds": 5.0, "concurrency": 4, "interval": 0.1}
    if items:
        cfg["items"] = items
    cfg.update(boot_timeout=300, read_rounds_max=20)
    workers = cfg["workers"]
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cowbuf-bench-") as tmp:
        joblib_file = None
        for name, strategy in strategies.STRATEGIES.items():
            if only and name not in only:
                continue
            why = strategies.missing(strategy)
            if why:
                skipped[name] = why
                progress(f"gunicorn: {strategy.title}: skipped ({why})")
                continue
            n = cfg["dict_items"] if strategy.dataset == "dict" else cfg["items"]
            if name == "joblib" and joblib_file is None:
                joblib_file = os.path.join(tmp, "data.pkl")
                progress(f"gunicorn: joblib.dump of a {n:,}-item list")
                strategies.dump_joblib(n, joblib_file)
            progress(f"gunicorn: {strategy.title}: {workers} workers, {n:,} items")
            try:
                results[name] = run_strategy(strategy, n, workers, cfg,
                                             joblib_file if name == "joblib" else None, tmp)
            except Exception as exc:
                skipped[name] = f"failed: {exc}"
                progress(f"gunicorn: {strategy.title}: FAILED: {exc}")
    return {"name": "gunicorn", "title": "The article's experiment on gunicorn",
            "config": cfg, "strategies": results, "skipped": skipped}


def of_dataset(result: dict[str, Any], dataset: str) -> dict[str, dict[str, Any]]:
    """The runs of the strategies of one data set ("ints" or "dict")."""
    return {name: res for name, res in result["strategies"].items()
            if strategies.STRATEGIES[name].dataset == dataset}


def summary_rows(result: dict[str, Any], dataset: str = "ints") -> list[list[str]]:
    rows = []
    for res in of_dataset(result, dataset).values():
        s = res["summary"]
        idle, end = s.get("idle", {}), s.get("load", {})
        load = res.get("load", {})
        lat = load.get("latency", {})
        grow = s.get("uss_growth_per_worker") or []
        rows.append([
            res["title"], "yes" if res["preload"] else "no",
            fmt_mb(_median(idle.get("worker_uss", []))),
            fmt_mb(_median(end.get("worker_uss", []))),
            fmt_mb(_median(grow)),
            fmt_mb(end.get("total_pss")),
            fmt_time(s.get("first_read_seconds_median")),
            fmt_time(res.get("c_sum_seconds")),
            f"{load.get('rps', float('nan')):.0f}",
            f"{lat.get('p50', float('nan')) * 1e3:.1f} / {lat.get('p99', float('nan')) * 1e3:.1f}",
        ])
    return rows


SUMMARY_HEADERS = ["data held as", "preload", "worker USS after boot",
                   "worker USS after reads", "USS growth per worker",
                   "total PSS (all processes)", "first /sum, all workers at once", "C sum",
                   "lookups/s", "latency p50 / p99 ms"]


def dict_rows(result: dict[str, Any]) -> list[list[str]]:
    """The lookup-table strategies: each worker's growth, the total, the time of one
    lookup (of every key, by one worker) and the build."""
    rows = []
    for res in of_dataset(result, "dict").values():
        s = res["summary"]
        grow = s.get("uss_growth_per_worker") or []
        read = s.get("first_read_seconds_median")
        rows.append([
            res["title"], ", ".join(f"{g / 1e6:.1f}" for g in grow),
            fmt_mb(s.get("load", {}).get("total_pss")),
            f"{read / res['items'] * 1e9:,.0f} ns" if read else "—",
            fmt_time(res.get("build_seconds")),
        ])
    return rows


DICT_HEADERS = ["lookup table held as", "USS growth per worker (MB)", "total PSS",
                "one lookup", "build"]


def format_result(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [f"### {result['title']}: {cfg['workers']} sync workers, {cfg['items']:,} integers",
             "",
             "USS: a process's private memory; PSS: its share of all the memory it maps "
             "(shared pages split between the processes mapping them), so the PSS of all "
             "processes adds up to the real total. Worker figures are medians over the "
             f"workers; growth is from the end of the idle phase to the end of the load. "
             "The first /sum of each worker reads every value in Python while the other "
             "workers read theirs on the same CPUs: its time measures that contention as "
             "much as the access, and compares nothing (bench_access does). "
             f"Load: {cfg['concurrency']} concurrent clients for {cfg['load_seconds']:g} s.",
             "", table(SUMMARY_HEADERS, summary_rows(result))]
    if of_dataset(result, "dict"):
        lines += ["", f"A lookup table of {cfg['dict_items']:,} keys `user:000000042:0123456` "
                  "-> int, preloaded: each worker looks up every key once with key objects "
                  "of its own (the read phase), then serves lookups. One lookup: the read "
                  "phase's time per key, in Python, with the key made.", "",
                  table(DICT_HEADERS, dict_rows(result))]
    for name, why in result["skipped"].items():
        lines.append(f"\n{name}: {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main(run, format_result)
