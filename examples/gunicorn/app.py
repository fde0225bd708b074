"""A WSGI app serving sums and lookups over ten million integers that all gunicorn
workers share through cowbuf.

Loaded once in the gunicorn master (``preload_app = True``), before the workers are
forked: the array lives in shared memory, and reading it from the workers, even
value by value in Python, never copies it.

    GET /sum          the sum of every value, read one by one in Python
    GET /item/<i>     one value
    GET /stats        worker pid and array length
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import cowbuf

ITEMS = int(os.environ.get("COWBUF_EXAMPLE_ITEMS", "10000000"))

if "data" not in cowbuf.registry:
    data = cowbuf.array("q", range(ITEMS))
    data.freeze()  # read-only for good, in every worker
    cowbuf.registry["data"] = data

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    values = cowbuf.registry["data"]
    assert isinstance(values, cowbuf.Array)
    path: str = environ.get("PATH_INFO", "/")
    status = "200 OK"
    body: dict[str, Any]
    if path == "/sum":
        total = 0
        for value in values:  # deliberately in Python: the article's experiment
            total += value
        body = {"sum": total}
    elif path.startswith("/item/"):
        try:
            index = int(path[len("/item/"):])
            body = {"index": index, "value": values[index]}
        except (ValueError, IndexError) as exc:
            status, body = "404 Not Found", {"error": str(exc)}
    elif path == "/stats":
        body = {"length": len(values)}
    else:
        status, body = "404 Not Found", {"error": f"no route {path}"}
    body["pid"] = os.getpid()
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(payload)))])
    return [payload]
