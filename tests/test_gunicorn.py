"""The gunicorn example, run by a real gunicorn: three preloaded workers read all ten
million values of a shared array in Python, and their private memory stays flat."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import uss_kib

psutil = pytest.importorskip("psutil")
pytest.importorskip("gunicorn")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gunicorn"
ITEMS = 10_000_000
WORKERS = 3

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads smaps_rollup"),
    pytest.mark.skipif(not EXAMPLE.is_dir(), reason="needs the source tree's examples/"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(port: int, path: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=120) as response:
        body: dict[str, int] = json.loads(response.read())
        return body


def _until_every_worker_served(port: int, path: str, workers: list[int],
                               concurrency: int) -> list[dict[str, int]]:
    """Send rounds of `concurrency` requests at once until every worker has answered one.
    One at a time, the worker that has just answered often wins the next accept too, so
    a round keeps several workers busy at once."""
    answers: list[dict[str, int]] = []
    seen: set[int] = set()
    deadline = time.monotonic() + 240
    with ThreadPoolExecutor(concurrency) as pool:
        while seen != set(workers):
            assert time.monotonic() < deadline, f"workers {set(workers) - seen} never answered"
            answers += pool.map(lambda _: _get(port, path), range(concurrency))
            seen.update(a["pid"] for a in answers)
    return answers


def test_preloaded_workers_read_everything_without_copying() -> None:
    port = _free_port()
    env = dict(os.environ, COWBUF_EXAMPLE_BIND=f"127.0.0.1:{port}",
               COWBUF_EXAMPLE_WORKERS=str(WORKERS), COWBUF_EXAMPLE_ITEMS=str(ITEMS))
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:application"],
        cwd=EXAMPLE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert master.poll() is None, "gunicorn exited"
            workers = [p.pid for p in psutil.Process(master.pid).children()]
            if len(workers) == WORKERS:
                try:
                    _get(port, "/stats")
                    break
                except OSError:
                    pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        # every worker has answered a small request: its code paths are warm
        _until_every_worker_served(port, "/item/1", workers, 4 * WORKERS)
        before = {pid: uss_kib(pid) for pid in workers}
        answers = _until_every_worker_served(port, "/sum", workers, WORKERS)
        after = {pid: uss_kib(pid) for pid in workers}
        assert {a["sum"] for a in answers} == {ITEMS * (ITEMS - 1) // 2}
        assert _get(port, "/item/1234567")["value"] == 1234567
        growth = sum(after[pid] - before[pid] for pid in workers)
        # reading 80 MB as Python ints from a list would copy ~300 MB per worker
        assert growth <= 5 * 1024, (before, after)
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(60)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(10)
        assert master.stderr is not None
        log = master.stderr.read()
        master.stderr.close()
    assert "Traceback" not in log, log
