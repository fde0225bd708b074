"""A small HTTP load client for loopback benchmarks, standard library only.

Gunicorn's sync workers close every connection after one response, so each request
is a fresh HTTP/1.0 connection: connect, send, read to EOF. Latency is measured
around all of it. Threads wait on sockets almost all the time, so a handful of them
keep a few workers busy without a compiled load generator to install.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Response:
    status: int
    body: str
    seconds: float


def get(port: int, path: str, timeout: float = 60.0, host: str = "127.0.0.1") -> Response:
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    elapsed = time.perf_counter() - t0
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 else 0
    return Response(status, body.decode(errors="replace").strip(), elapsed)


def get_all(port: int, paths: Sequence[str], timeout: float = 300.0) -> list[Response | Exception]:
    """GET every path at once, one thread each; results in the order of `paths`."""
    results: list[Response | Exception] = [RuntimeError("not run")] * len(paths)
    start = threading.Barrier(len(paths)) if paths else None

    def one(k: int, path: str) -> None:
        try:
            assert start is not None
            start.wait()
            results[k] = get(port, path, timeout)
        except Exception as exc:  # reported to the caller, never lost
            results[k] = exc

    threads = [threading.Thread(target=one, args=(k, p), daemon=True)
               for k, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, by linear interpolation."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def load(port: int, make_path: Callable[[random.Random], str], concurrency: int,
         duration: float, timeout: float = 30.0) -> dict[str, Any]:
    """Keep `concurrency` requests in flight for `duration` seconds (a closed loop:
    each thread sends its next request when the last one is answered)."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    deadline = time.perf_counter() + duration

    def worker(k: int) -> None:
        rng = random.Random(k)
        mine = latencies[k]
        while time.perf_counter() < deadline:
            try:
                r = get(port, make_path(rng), timeout)
                if r.status == 200:
                    mine.append(r.seconds)
                else:
                    errors[k] += 1
            except OSError:
                errors[k] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True)
               for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    done = sorted(x for per in latencies for x in per)
    return {
        "concurrency": concurrency,
        "seconds": elapsed,
        "requests": len(done),
        "errors": sum(errors),
        "rps": len(done) / elapsed if elapsed else float("nan"),
        "latency": {f"p{q}": percentile(done, q) for q in (50, 90, 99)}
        | {"max": done[-1] if done else float("nan")},
    }
