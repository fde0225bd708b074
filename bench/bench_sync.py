"""Locks, events and barriers across processes: cowbuf against multiprocessing and fcntl.

Lock acquire+release pairs per second in one process, and in two forked processes
contending for one lock around a plain shared counter (the total is checked); how long
the next acquire() takes once the holder was SIGKILLed; Event ping-pong round trips
between two processes; a barrier of four processes.
"""

from __future__ import annotations

import fcntl
import mmap
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _common import (
    bench_main,
    fmt_rate,
    fmt_time,
    fork_child,
    format_targets,
    interleaved,
    median,
    progress,
    reap,
    table,
    target,
)

FORK = multiprocessing.get_context("fork")

# -- the peers: each makes (acquire, release) for one lock that forked children share --

LockFactory = Callable[[], tuple[Callable[[], Any], Callable[[], Any]]]


def _cowbuf_lock() -> tuple[Callable[[], Any], Callable[[], Any]]:
    import cowbuf
    lock = cowbuf.Lock()
    return lock.acquire, lock.release


def _mp_lock() -> tuple[Callable[[], Any], Callable[[], Any]]:
    lock = FORK.Lock()
    return lock.acquire, lock.release


def _fcntl_lock() -> tuple[Callable[[], Any], Callable[[], Any]]:
    # a POSIX record lock: per process, released by the kernel when its holder dies
    f = tempfile.TemporaryFile()  # noqa: SIM115 (open for the whole run: _keep)
    fd = f.fileno()
    _keep.append(f)
    return (lambda: fcntl.lockf(fd, fcntl.LOCK_EX)), (lambda: fcntl.lockf(fd, fcntl.LOCK_UN))


_keep: list[Any] = []

LOCKS: dict[str, tuple[str, LockFactory]] = {
    "cowbuf": ("cowbuf.Lock", _cowbuf_lock),
    "multiprocessing": ("multiprocessing.Lock", _mp_lock),
    "fcntl": ("fcntl.lockf on a file", _fcntl_lock),
}


def _pairs(acquire: Callable[[], Any], release: Callable[[], Any], n: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            acquire()
            release()
    return run



def _contend(factory: LockFactory, n: int) -> dict[str, Any]:
    """Two forked processes each take the lock `n` times around a read-modify-write of
    a plain shared integer, released together. The aggregate rate is over the wall
    time from release to the last finish; the total tells whether the lock excluded."""
    acquire, release = factory()
    board = mmap.mmap(-1, mmap.PAGESIZE)
    words = memoryview(board).cast("q")   # [go, total]
    times = memoryview(board).cast("d")   # [.., .., start0, end0, start1, end1]

    def body(k: int) -> Callable[[], None]:
        def run() -> None:
            while words[0] == 0:
                pass
            start = time.perf_counter()
            for _ in range(n):
                acquire()
                words[1] += 1
                release()
            times[2 + 2 * k] = start
            times[3 + 2 * k] = time.perf_counter()
        return run

    pids = [fork_child(body(k)) for k in range(2)]
    time.sleep(0.05)  # both spin on the go flag
    words[0] = 1
    reap(pids)
    wall = max(times[3], times[5]) - min(times[2], times[4])
    total = words[1]
    words.release()
    times.release()
    board.close()
    return {"ops": 2 * n, "seconds": wall, "rate": 2 * n / wall, "exact": total == 2 * n}


def _holder_killed(kind: str, patience: float) -> float | None:
    """Seconds the next acquire() takes once a forked holder was SIGKILLed (and is a
    zombie, not yet reaped, as a sibling pool worker sees it); None if it never
    returned within `patience` seconds."""
    import cowbuf
    board = mmap.mmap(-1, mmap.PAGESIZE)
    flag = memoryview(board).cast("q")
    if kind == "cowbuf":
        lock: Any = cowbuf.Lock()
        acquire = lock.acquire
    elif kind == "multiprocessing":
        lock = FORK.Lock()
        acquire = lock.acquire
    else:
        acquire, _ = _fcntl_lock()
        lock = None

    def hold() -> None:
        acquire()
        flag[0] = 1
        time.sleep(600)

    pid = fork_child(hold)
    try:
        while flag[0] == 0:
            time.sleep(0.0005)
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pid)
        if kind == "fcntl":
            t0 = time.perf_counter()
            acquire()
            return time.perf_counter() - t0
        t0 = time.perf_counter()
        got = lock.acquire(timeout=patience)
        return time.perf_counter() - t0 if got else None
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        flag.release()
        board.close()


def _wait_dead(pid: int) -> None:
    """Return once `pid` has died, leaving it a zombie (not reaped)."""
    if hasattr(os, "waitid"):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        return
    while True:  # macOS: no waitid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.0005)


# -- what survives a dead process ------------------------------------------------------------

SCENARIOS = {
    # name: what the survivor does once the other process was SIGKILLed
    "lock": "holds the lock: the next acquire()",
    "semaphore": "holds a semaphore's only permit: the next acquire()",
    "condition": "waits in Condition.wait(): notify()",
    "barrier": "is a party of a barrier (between rounds): the other's wait(timeout)",
}


def _scenario(scenario: str, kind: str, patience: float) -> str:
    """Play `scenario` with `kind`'s objects ("cowbuf", "cowbuf tracked" for a
    semaphore that tracks its holders, "multiprocessing") in this process: a forked
    child takes its part and is SIGKILLed; return what the survivor's call did."""
    import threading

    import cowbuf
    mp = kind == "multiprocessing"
    board = mmap.mmap(-1, mmap.PAGESIZE)
    flag = memoryview(board).cast("q")
    if scenario == "lock":
        sync: Any = FORK.Lock() if mp else cowbuf.Lock()
    elif scenario == "semaphore":
        sync = FORK.Semaphore(1) if mp else cowbuf.Semaphore(
            1, track_holders=kind == "cowbuf tracked")
    elif scenario == "condition":
        sync = FORK.Condition() if mp else cowbuf.Condition()
    else:
        sync = FORK.Barrier(2) if mp else cowbuf.Barrier(2)

    def other() -> None:
        if scenario in ("lock", "semaphore"):
            sync.acquire()
            flag[0] = 1
        elif scenario == "condition":
            with sync:
                flag[0] = 1
                sync.wait()
        else:
            sync.wait()  # the first round passes with this process
            flag[0] = 1
        time.sleep(600)

    pid = fork_child(other)
    if scenario == "barrier":
        sync.wait()
    while flag[0] == 0:
        time.sleep(0.0005)
    if scenario == "condition":
        with sync:  # the waiter is asleep once it has let the lock go
            pass
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    outcome: list[str] = []

    def survivor() -> None:
        t0 = time.perf_counter()
        try:
            if scenario in ("lock", "semaphore"):
                if not sync.acquire(timeout=patience):
                    outcome.append(f"timed out ({patience:g} s)")
                    return
                died = " (owner_died)" if getattr(sync, "owner_died", False) else ""
                outcome.append(f"got it after {fmt_time(time.perf_counter() - t0)}{died}")
            elif scenario == "condition":
                with sync:
                    sync.notify()
                outcome.append(f"returned after {fmt_time(time.perf_counter() - t0)}")
            else:
                sync.wait(patience)
                outcome.append("passed")
        except threading.BrokenBarrierError:
            outcome.append(f"BrokenBarrierError after {fmt_time(time.perf_counter() - t0)}")

    thread = threading.Thread(target=survivor, daemon=True)
    thread.start()
    thread.join(patience + 1.0)
    return outcome[0] if outcome else f"hung (no return in {patience + 1.0:g} s)"


def _survival(patience: float) -> dict[str, dict[str, str]]:
    """Each scenario in a forked process of its own (a call that hangs leaves a thread
    behind, and this process goes on forking)."""
    table_: dict[str, dict[str, str]] = {}
    for scenario in SCENARIOS:
        kinds = ["cowbuf", "multiprocessing"]
        if scenario == "semaphore":
            kinds.insert(1, "cowbuf tracked")
        for kind in kinds:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    os.write(w, _scenario(scenario, kind, patience).encode())
                finally:
                    os._exit(0)  # its hung threads, if any, go with it
            os.close(w)
            with os.fdopen(r, "rb") as reader:
                table_.setdefault(scenario, {})[kind] = reader.read().decode() or "failed"
            os.waitpid(pid, 0)
    return table_


# -- ping-pong and barrier ---------------------------------------------------------------

def _events(kind: str) -> tuple[Any, Any]:
    import cowbuf
    if kind == "cowbuf":
        return cowbuf.Event(), cowbuf.Event()
    return FORK.Event(), FORK.Event()


def _ping_pong(kind: str, n: int) -> float:
    """Seconds per round trip: this process sets one event and waits for the other,
    which a forked child sets back, n times."""
    if kind == "pipe":
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()

        def bounce_pipe() -> None:
            for _ in range(n):
                os.read(r1, 1)
                os.write(w2, b"x")

        pid = fork_child(bounce_pipe)
        t0 = time.perf_counter()
        for _ in range(n):
            os.write(w1, b"x")
            os.read(r2, 1)
        elapsed = time.perf_counter() - t0
        reap([pid])
        for fd in (r1, w1, r2, w2):
            os.close(fd)
        return elapsed / n
    ping, pong = _events(kind)

    def bounce() -> None:
        for _ in range(n):
            ping.wait()
            ping.clear()
            pong.set()

    pid = fork_child(bounce)
    t0 = time.perf_counter()
    for _ in range(n):
        ping.set()
        pong.wait()
        pong.clear()
    elapsed = time.perf_counter() - t0
    reap([pid])
    return elapsed / n


def _barrier_rounds(kind: str, parties: int, rounds: int) -> float:
    """Seconds per round of `parties` processes (this one and forked children) that
    all call wait() `rounds` times."""
    import cowbuf
    barrier: Any = cowbuf.Barrier(parties) if kind == "cowbuf" else FORK.Barrier(parties)

    def run() -> None:
        for _ in range(rounds):
            barrier.wait()

    pids = [fork_child(run) for _ in range(parties - 1)]
    t0 = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    reap(pids)
    return elapsed / rounds


# -- the run ---------------------------------------------------------------------------

def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    pairs = 20_000 if smoke else 200_000
    contended = 20_000 if smoke else (100_000 if quick else 200_000)
    trips = 200 if smoke else (2_000 if quick else 5_000)
    barrier_rounds = 200 if smoke else (2_000 if quick else 10_000)
    rounds = 2 if smoke else (11 if quick else 25)
    rounds_procs = 1 if smoke else (5 if quick else 11)
    patience = 0.2 if smoke else 1.0
    parties = 4

    progress(f"sync: one process, {pairs:,} acquire+release pairs x {rounds} rounds")
    arms = {}
    for name, (_, factory) in LOCKS.items():
        acquire, release = factory()
        arms[name] = _pairs(acquire, release, pairs)
    one = interleaved(arms, rounds)
    del arms

    progress(f"sync: two processes contending, {contended:,} each x {rounds_procs} rounds")
    two: dict[str, list[dict[str, Any]]] = {name: [] for name in LOCKS}
    for r in range(rounds_procs):
        names = list(LOCKS)
        for name in names[r % len(names):] + names[:r % len(names)]:
            two[name].append(_contend(LOCKS[name][1], contended))

    progress(f"sync: the next acquire() after the holder's SIGKILL x {rounds_procs} rounds")
    killed: dict[str, list[float | None]] = {name: [] for name in LOCKS}
    for _ in range(rounds_procs):
        for name in LOCKS:
            killed[name].append(_holder_killed(name, patience))

    progress("sync: what the survivors get when a process dies")
    survival = _survival(patience)

    progress(f"sync: Event ping-pong, {trips:,} round trips x {rounds_procs} rounds")
    pong: dict[str, list[float]] = {"cowbuf": [], "multiprocessing": [], "pipe": []}
    for r in range(rounds_procs):
        names = list(pong)
        for name in names[r % len(names):] + names[:r % len(names)]:
            pong[name].append(_ping_pong(name, trips))

    progress(f"sync: barrier of {parties} processes, {barrier_rounds:,} rounds x "
             f"{rounds_procs} rounds")
    barrier: dict[str, list[float]] = {"cowbuf": [], "multiprocessing": []}
    for r in range(rounds_procs):
        for name in (["cowbuf", "multiprocessing"] if r % 2 == 0
                     else ["multiprocessing", "cowbuf"]):
            barrier[name].append(_barrier_rounds(name, parties, barrier_rounds))

    def per_op(name: str) -> list[float]:  # seconds per acquire, per contended round
        return [1 / res["rate"] for res in two[name]]

    cow_killed = [t for t in killed["cowbuf"] if t is not None]
    mp_never = all(t is None for t in killed["multiprocessing"])
    targets = [
        target("Lock uncontended >= 1.0x multiprocessing.Lock", one["cowbuf"],
               one["multiprocessing"], 1.0, "rate", f"{pairs:,} acquire+release pairs"),
        target("2 processes contending >= 2x multiprocessing.Lock", per_op("cowbuf"),
               per_op("multiprocessing"), 2.0, "rate",
               "exact" if all(res["exact"] for res in two["cowbuf"]) else "NOT EXACT"),
        target("acquire() after the holder's SIGKILL <= 10 ms", cow_killed,
               [0.010] * len(cow_killed), 1.0, "time",
               f"median {fmt_time(median(cow_killed))}; multiprocessing.Lock: "
               + (f"never (timed out after {patience:g} s)" if mp_never else "returned")),
        target("Event ping-pong <= 0.5x multiprocessing.Event", pong["cowbuf"],
               pong["multiprocessing"], 0.5, "time", f"{trips:,} round trips"),
        target(f"Barrier of {parties} processes >= 5x multiprocessing.Barrier",
               barrier["cowbuf"], barrier["multiprocessing"], 5.0, "rate",
               f"{barrier_rounds:,} rounds"),
    ]
    if len(cow_killed) != len(killed["cowbuf"]):
        targets[2]["status"] = "MISS"
        targets[2]["detail"] += "; some acquire() calls never returned"
    return {
        "name": "sync", "title": "Locks, events and barriers across processes",
        "config": {"pairs": pairs, "contended": contended, "trips": trips,
                   "barrier_rounds": barrier_rounds, "parties": parties, "rounds": rounds,
                   "rounds_processes": rounds_procs, "patience": patience},
        "peers": {name: title for name, (title, _) in LOCKS.items()},
        "one": one, "two": two, "killed": killed, "survival": survival,
        "ping_pong": pong, "barrier": barrier,
        "targets": targets,
    }


def format_result(result: dict[str, Any]) -> str:
    cfg = result["config"]
    one, two, killed = result["one"], result["two"], result["killed"]
    cow1 = cfg["pairs"] / median(one["cowbuf"])
    cow2 = median([r["rate"] for r in two["cowbuf"]])
    rows = []
    for name, title in result["peers"].items():
        rate1 = cfg["pairs"] / median(one[name])
        rate2 = median([r["rate"] for r in two[name]])
        exact = "yes" if all(r["exact"] for r in two[name]) else "NO"
        done = [t for t in killed[name] if t is not None]
        after = (fmt_time(median(done)) if len(done) == len(killed[name])
                 else f"never (timed out after {cfg['patience']:g} s)" if not done
                 else f"{len(killed[name]) - len(done)} of {len(killed[name])} never")
        rows.append([title, fmt_rate(rate1), f"{cow1 / rate1:.2f}x", fmt_rate(rate2),
                     f"{cow2 / rate2:.2f}x", exact, after])
    out = [f"### {result['title']}", "",
           "Median acquire+release pairs per second, and cowbuf's rate as a multiple of "
           "each row's (above 1.00x: cowbuf is faster). Two processes: the aggregate rate "
           "of two forked processes that increment a plain shared integer under the lock "
           "(exact: the total came out right). After SIGKILL: how long the next acquire() "
           "took once the holder was killed (a zombie, not yet reaped).", "",
           table(["lock", "1 process", "cowbuf is", "2 processes", "cowbuf is", "exact",
                  "after SIGKILL"], rows)]
    survival = result["survival"]
    srows = [[what, row["cowbuf"], row.get("cowbuf tracked", ""), row["multiprocessing"]]
             for what, row in ((SCENARIOS[name], survival[name]) for name in SCENARIOS)]
    out += ["", "When a process is SIGKILLed while it...", "",
            table(["...", "cowbuf", "cowbuf, track_holders=True", "multiprocessing"], srows)]
    pong = result["ping_pong"]
    cow = median(pong["cowbuf"])
    titles = {"cowbuf": "cowbuf.Event", "multiprocessing": "multiprocessing.Event",
              "pipe": "os.pipe (a byte each way)"}
    prow = [[titles[name], fmt_time(median(s)), f"{median(s) / cow:.2f}x"]
            for name, s in pong.items()]
    out += ["", f"Ping-pong between two processes: median time per round trip over "
            f"{cfg['trips']:,} round trips; how many times cowbuf's each row takes.", "",
            table(["", "round trip", "vs cowbuf"], prow)]
    bar = result["barrier"]
    cow = median(bar["cowbuf"])
    brow = [[f"{name} Barrier", fmt_time(median(s)), f"{median(s) / cow:.2f}x"]
            for name, s in bar.items()]
    out += ["", f"Barrier of {cfg['parties']} processes: median time per round over "
            f"{cfg['barrier_rounds']:,} rounds.", "",
            table(["", "per round", "vs cowbuf"], brow)]
    out += ["", format_targets(result["targets"])]
    return "\n".join(out)


if __name__ == "__main__":
    bench_main(run, format_result)
