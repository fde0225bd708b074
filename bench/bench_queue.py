"""Queues between processes: cowbuf.Queue against multiprocessing.Queue, SimpleQueue
and faster-fifo.

Messages per second of a small message (a tuple of 5 ints) from forked producers to
forked consumers (1+1, 2+2, 4+1), every message counted in; ping-pong round trips
between two processes; draining a queue with get_many(1,000) against get() one by one;
and an 80 MB cowbuf Array handed to a worker through the queue against the same
hand-off through a warm pool (bench_handoff's cowbuf arm).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import time
from collections.abc import Callable
from typing import Any

from _common import (
    bench_main,
    fmt_time,
    fork_child,
    format_targets,
    interleaved,
    median,
    na_target,
    progress,
    reap,
    table,
    target,
)

FORK = multiprocessing.get_context("fork")
MESSAGE = (1, 2, 3, 4, 5)
SHAPES = [(1, 1), (2, 2), (4, 1)]
BATCH = 1_000


# -- the peers: a queue that forked children share -----------------------------------------

def _faster_fifo() -> Any:
    try:
        import faster_fifo
    except ImportError:
        return None
    return faster_fifo


def peers() -> dict[str, tuple[str, Callable[[], Any]]]:
    """name -> (title, make a queue); faster-fifo when it is installed."""
    import cowbuf
    found: dict[str, tuple[str, Callable[[], Any]]] = {
        "cowbuf": ("cowbuf.Queue", lambda: cowbuf.Queue(1 << 22)),
        "multiprocessing": ("multiprocessing.Queue", FORK.Queue),
        "SimpleQueue": ("multiprocessing.SimpleQueue", FORK.SimpleQueue),
    }
    ff = _faster_fifo()
    if ff is not None:
        found["faster-fifo"] = ("faster_fifo.Queue", lambda: ff.Queue(1 << 22))
    return found


def _get_many(q: Any, n: int) -> list[Any]:
    import cowbuf
    if isinstance(q, cowbuf.Queue):
        return list(q.get_many(n))
    return list(q.get_many(max_messages_to_get=n))  # faster-fifo


# -- forked children -----------------------------------------------------------------------

def _flush(q: Any) -> None:
    """Before a child that put messages exits: multiprocessing.Queue hands each put to
    a feeder thread, and os._exit() would drop what it has not written yet."""
    if isinstance(q, multiprocessing.queues.Queue):
        q.close()
        q.join_thread()


def _board(size: int) -> Any:
    """Shared integers for the children to report through (atomic_add, exact)."""
    import cowbuf
    return cowbuf.array("q", size)


def _throughput(make: Callable[[], Any], producers: int, consumers: int, n: int) -> float:
    """Seconds for `n` messages from `producers` to `consumers` forked processes,
    released together, until the last consumer is done. Once every producer is done
    (and has flushed: multiprocessing's feeder threads), the parent puts a sentinel per
    consumer; the messages received are counted and checked."""
    q = make()
    board = _board(3 + consumers)  # go, (unused), received, end time per consumer
    share = n // producers

    def produce() -> None:
        while board[0] == 0:
            pass
        for _ in range(share):
            q.put(MESSAGE)
        _flush(q)

    def consume(k: int) -> Callable[[], None]:
        def run() -> None:
            got = 0
            while q.get() is not None:
                got += 1
            board.atomic_add(2, got)
            board[3 + k] = time.perf_counter_ns()
        return run

    readers = [fork_child(consume(k)) for k in range(consumers)]
    writers = [fork_child(produce) for _ in range(producers)]
    time.sleep(0.05)  # every child is at its start
    start = time.perf_counter_ns()
    board[0] = 1
    reap(writers)
    for _ in range(consumers):
        q.put(None)
    _flush(q)
    reap(readers)
    if board[2] != share * producers:
        raise AssertionError(f"{board[2]} of {share * producers} messages arrived")
    return (max(board[3:]) - start) / 1e9


def _ping_pong(make: Callable[[], Any], trips: int) -> float:
    """Seconds per round trip of a message sent to a forked child and back."""
    there, back = make(), make()

    def bounce() -> None:
        for _ in range(trips):
            back.put(there.get())
        _flush(back)

    pid = fork_child(bounce)
    t0 = time.perf_counter()
    for _ in range(trips):
        there.put(MESSAGE)
        back.get()
    elapsed = time.perf_counter() - t0
    reap([pid])
    return elapsed / trips


def _drain(make: Callable[[], Any], n: int, batched: bool) -> float:
    """Seconds a forked consumer takes to get `n` messages that a forked producer has
    put already (as far as the queue takes them: multiprocessing's pipe holds 64 KB,
    its feeder thread keeps it full; SimpleQueue, which has none, is left out): with
    get_many(1,000) if `batched`, else get()."""
    q = make()
    board = _board(3)  # producer done, start, end (ns)

    def produce() -> None:
        if batched:
            for i in range(0, n, BATCH):
                q.put_many([MESSAGE] * min(BATCH, n - i))
        else:
            for _ in range(n):
                q.put(MESSAGE)
        board[0] = 1
        _flush(q)  # (a feeder thread writes on while the consumer reads)

    def consume() -> None:
        while board[0] == 0:
            time.sleep(0.001)
        got = 0
        board[1] = time.perf_counter_ns()
        if batched:
            while got < n:
                got += len(_get_many(q, BATCH))
        else:
            for _ in range(n):
                q.get()
        board[2] = time.perf_counter_ns()

    reap([fork_child(produce), fork_child(consume)])
    return (board[2] - board[1]) / 1e9


# -- an 80 MB array: through the queue, and through a warm pool -----------------------------

def _sum_array(x: Any) -> int:
    import numpy as np
    return int(np.asarray(x).sum())


def _queue_worker(requests: Any, answers: Any) -> None:
    while True:
        a = requests.get()
        if a is None:
            return
        answers.put(_sum_array(a))


def _handoff(n: int, rounds: int) -> dict[str, list[float]]:
    import numpy as np

    import cowbuf
    a = cowbuf.array("q", np.arange(n, dtype=np.int64))
    expected = n * (n - 1) // 2
    requests, answers = cowbuf.Queue(), cowbuf.Queue()
    worker = fork_child(lambda: _queue_worker(requests, answers))

    def through_queue() -> int:
        requests.put(a)
        return int(answers.get())

    try:
        with FORK.Pool(1) as pool:
            pool.apply(_sum_array, (a[:10],))  # warm: numpy imported there
            through_queue()
            arms = {"cowbuf.Queue": through_queue,
                    "pool.apply (bench_handoff)": lambda: pool.apply(_sum_array, (a,))}
            for name, arm in arms.items():
                if arm() != expected:
                    raise AssertionError(f"{name}: wrong sum")
            samples = interleaved(arms, rounds)
    finally:
        requests.put(None)
        reap([worker])
    return samples


# -- the run ---------------------------------------------------------------------------------

def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    n = 5_000 if smoke else (50_000 if quick else 100_000)
    trips = 200 if smoke else (2_000 if quick else 5_000)
    drained = 10_000 if smoke else 100_000
    array_items = 100_000 if smoke else 10_000_000
    rounds = 1 if smoke else (3 if quick else 7)
    found = peers()
    batched = ["cowbuf"] + (["faster-fifo"] if "faster-fifo" in found else [])

    throughput: dict[str, dict[str, list[float]]] = {}
    for producers, consumers in SHAPES:
        shape = f"{producers}+{consumers}"
        progress(f"queue: {shape} processes, {n:,} messages x {rounds} rounds")
        samples: dict[str, list[float]] = {name: [] for name in found}
        for r in range(rounds):
            names = list(found)
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples[name].append(_throughput(found[name][1], producers, consumers, n))
        throughput[shape] = samples

    progress(f"queue: ping-pong, {trips:,} round trips x {rounds} rounds")
    pong: dict[str, list[float]] = {name: [] for name in found}
    for r in range(rounds):
        names = list(found)
        for name in names[r % len(names):] + names[:r % len(names)]:
            pong[name].append(_ping_pong(found[name][1], trips))

    progress(f"queue: draining {drained:,} messages x {rounds} rounds")
    drain: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name in found:
            if name == "SimpleQueue":  # its put writes to the pipe: it holds 64 KB
                continue
            drain.setdefault(f"{name} get()", []).append(
                _drain(found[name][1], drained, False))
            if name in batched:
                drain.setdefault(f"{name} get_many", []).append(
                    _drain(found[name][1], drained, True))

    progress(f"queue: an Array of {array_items * 8 / 1e6:.0f} MB to a worker x {rounds} rounds")
    handoff = _handoff(array_items, max(rounds, 3))

    targets = []
    for shape, samples in throughput.items():
        targets.append(target(f"{shape}: >= 3x multiprocessing.Queue", samples["cowbuf"],
                              samples["multiprocessing"], 3.0, "rate", f"{n:,} messages"))
        if "faster-fifo" in samples:
            targets.append(target(f"{shape}: >= 2x faster-fifo", samples["cowbuf"],
                                  samples["faster-fifo"], 2.0, "rate"))
        else:
            targets.append(na_target(f"{shape}: >= 2x faster-fifo", 2.0, "rate",
                                     "faster-fifo not installed"))
    targets.append(target("ping-pong <= 0.3x multiprocessing.Queue", pong["cowbuf"],
                          pong["multiprocessing"], 0.3, "time", f"{trips:,} round trips"))
    targets.append(target("get_many(1,000) >= 10x multiprocessing.Queue get()",
                          drain["cowbuf get_many"], drain["multiprocessing get()"], 10.0,
                          "rate", f"draining {drained:,} messages"))
    targets.append(target("80 MB Array <= 1.2x bench_handoff's cowbuf (pool.apply)",
                          handoff["cowbuf.Queue"], handoff["pool.apply (bench_handoff)"],
                          1.2, "time", "the worker's sum included"))
    return {
        "name": "queue", "title": "Queues between processes",
        "config": {"messages": n, "trips": trips, "drained": drained,
                   "array_bytes": array_items * 8, "rounds": rounds,
                   "shapes": [f"{p}+{c}" for p, c in SHAPES]},
        "peers": {name: title for name, (title, _) in found.items()},
        "throughput": throughput, "ping_pong": pong, "drain": drain, "handoff": handoff,
        "targets": targets,
    }


def format_result(result: dict[str, Any]) -> str:
    cfg = result["config"]
    n = cfg["messages"]
    rows = []
    for name, title in result["peers"].items():
        cells = [title]
        for shape in cfg["shapes"]:
            samples = result["throughput"][shape]
            rate, cow = n / median(samples[name]), n / median(samples["cowbuf"])
            cells.append(f"{rate / 1e3:,.0f}k/s" + ("" if name == "cowbuf"
                                                    else f" ({cow / rate:.2f}x)"))
        pong = median(result["ping_pong"][name])
        cells.append(fmt_time(pong) + ("" if name == "cowbuf" else
                                       f" ({median(result['ping_pong']['cowbuf']) / pong:.2f}x)"))
        rows.append(cells)
    out = [f"### {result['title']}", "",
           f"Messages per second of a tuple of 5 ints, {n:,} in all, from forked producers "
           "to forked consumers (every message counted in); ping-pong: the round trip of "
           "one message to another process and back. In brackets: cowbuf's speed as a "
           "multiple of the row's (throughput), cowbuf's round trip as a fraction of the "
           "row's (ping-pong).", "",
           table(["queue", *[f"{s} processes" for s in cfg["shapes"]], "ping-pong"], rows)]
    drain = result["drain"]
    ref = median(drain["cowbuf get_many"])
    drows = [[name, f"{cfg['drained'] / median(s) / 1e6:.2f} M/s",
              f"{median(s) / ref:.1f}x"] for name, s in drain.items()]
    out += ["", f"Draining {cfg['drained']:,} messages that a producer has put already: "
            "messages per second, and how many times cowbuf's get_many(1,000) each row "
            "takes.", "", table(["consumer", "messages/s", "vs cowbuf get_many"], drows)]
    hand = result["handoff"]
    mb = cfg["array_bytes"] / 1e6
    hrows = [[name, fmt_time(median(s))] for name, s in hand.items()]
    out += ["", f"A cowbuf Array of {mb:.0f} MB handed to a worker that sums it and answers: "
            "through a cowbuf.Queue each way, and as the argument of pool.apply on a warm "
            "pool (bench_handoff's cowbuf arm). Median time per hand-off.", "",
            table(["hand-off", "time"], hrows)]
    out += ["", format_targets(result["targets"])]
    return "\n".join(out)


if __name__ == "__main__":
    bench_main(run, format_result)
