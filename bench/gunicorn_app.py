"""The WSGI app of the gunicorn experiment: N integers held by one strategy.

Configured by environment variables (set by gunicorn_memory.py):
COWBUF_BENCH_STRATEGY (a key of strategies.STRATEGIES) and COWBUF_BENCH_ITEMS.
With --preload the data is built once in the gunicorn master and shared with the
workers by fork; without, every worker builds its own at import.

Endpoints (plain text, one line):
  /pid              the worker's pid (?hold=SECONDS keeps the worker busy first)
  /sum              read every value in Python: "pid total seconds" (?hold=SECONDS keeps
                    the worker busy after the read, so that concurrent reads reach the
                    other workers)
  /csum             the sum computed in C where the container has one: "pid total seconds"
  /lookup?i=K       a few values around index K: "pid total"
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

import strategies

STRATEGY = strategies.STRATEGIES[os.environ.get("COWBUF_BENCH_STRATEGY", "cowbuf")]
ITEMS = int(os.environ.get("COWBUF_BENCH_ITEMS", "10000000"))
LOOKUPS = 8  # values read by one /lookup

_t0 = time.perf_counter()
DATA = STRATEGY.build(ITEMS)
BUILD_SECONDS = time.perf_counter() - _t0


def _reply(start_response: Callable[..., object], status: str, body: str) -> Iterable[bytes]:
    data = (body + "\n").encode()
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(data)))])
    return [data]


def app(environ: dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    pid = os.getpid()
    if path == "/lookup":
        k = int(query.get("i", ["0"])[0]) % ITEMS
        step = max(ITEMS // LOOKUPS, 1)
        total = sum(STRATEGY.lookup(DATA, (k + j * step) % ITEMS) for j in range(LOOKUPS))
        return _reply(start_response, "200 OK", f"{pid} {total}")
    if path == "/sum" or path == "/csum":
        fn = STRATEGY.read_all if path == "/sum" else STRATEGY.c_sum
        if fn is None:
            return _reply(start_response, "404 Not Found", f"{pid} no C sum")
        t0 = time.perf_counter()
        total = fn(DATA)
        seconds = time.perf_counter() - t0
        time.sleep(float(query.get("hold", ["0"])[0]))
        return _reply(start_response, "200 OK", f"{pid} {total} {seconds:.6f}")
    if path == "/pid":
        hold = float(query.get("hold", ["0"])[0])
        if hold:
            time.sleep(hold)
        return _reply(start_response, "200 OK", f"{pid} {BUILD_SECONDS:.6f}")
    return _reply(start_response, "404 Not Found", "not found")
