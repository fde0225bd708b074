"""The gunicorn example, run by a real gunicorn: three preloaded workers map the very
pages of the master's shared array, read all ten million values in Python, and their
private memory stays flat.

0.1.0's version passed with preload_app = False and with the array replaced by a list
and no preload (issue 17): a worker with a private copy does not grow either. So the
workers must be seen sharing the master's memory (the same memfd inode mapped in the
master and in every worker, its pages resident but not private), and a control run
of a list without preload must fail that check.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/smaps"),
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


@contextlib.contextmanager
def _gunicorn(app_dir: Path, items: int) -> Iterator[tuple[int, int, list[int]]]:
    """gunicorn serving the example of `app_dir`: (port, master pid, worker pids), once
    every worker has answered a small request (so that its code paths are warm)."""
    port = _free_port()
    env = dict(os.environ, COWBUF_EXAMPLE_BIND=f"127.0.0.1:{port}",
               COWBUF_EXAMPLE_WORKERS=str(WORKERS), COWBUF_EXAMPLE_ITEMS=str(items))
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:application"],
        cwd=app_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
        _until_every_worker_served(port, "/item/1", workers, 4 * WORKERS)
        yield port, master.pid, workers
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


def _shared_mappings(pid: int, min_bytes: int) -> dict[int, dict[str, int]]:
    """inode -> sizes (bytes) of the cowbuf mappings of at least `min_bytes` in /proc/PID/smaps."""
    found: dict[int, dict[str, int]] = {}
    current: dict[str, int] | None = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = line.split(None, 1)[0]
            if not head.endswith(":"):  # a mapping's first line: its range, inode and path
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                current = None
                if "memfd:cowbuf" in line and end - start >= min_bytes:
                    current = found.setdefault(int(fields[4]), {"size": end - start})
            elif current is not None and line.rstrip().endswith(" kB"):
                key, value = line.split(":", 1)
                current[key] = current.get(key, 0) + int(value.split()[0]) * 1024
    return found


def _assert_workers_share_the_masters_pages(master: int, workers: list[int],
                                            nbytes: int) -> None:
    """The master maps the data's memory, and each worker maps that same memory (its
    inode), with its pages resident after the reads and shared, not private."""
    data = _shared_mappings(master, nbytes)
    assert len(data) == 1, f"the master holds no shared region of {nbytes} bytes: {data}"
    [inode] = data
    for pid in workers:
        mine = _shared_mappings(pid, nbytes)
        assert inode in mine, f"worker {pid} does not map the master's memory: {mine}"
        m = mine[inode]
        assert m["Rss"] >= 0.9 * nbytes, (pid, m)  # it read every page
        private = m["Private_Clean"] + m["Private_Dirty"]
        assert private <= 0.02 * nbytes, (pid, m)  # none of them its own
        # with the master and every worker resident, each holds a share of the pages
        assert m["Pss"] <= 0.6 * m["Rss"], (pid, m)


def test_preloaded_workers_read_everything_without_copying() -> None:
    with _gunicorn(EXAMPLE, ITEMS) as (port, master, workers):
        before = {pid: uss_kib(pid) for pid in workers}
        answers = _until_every_worker_served(port, "/sum", workers, WORKERS)
        after = {pid: uss_kib(pid) for pid in workers}
        assert {a["sum"] for a in answers} == {ITEMS * (ITEMS - 1) // 2}
        assert _get(port, "/item/1234567")["value"] == 1234567
        _assert_workers_share_the_masters_pages(master, workers, ITEMS * 8)
        growth = sum(after[pid] - before[pid] for pid in workers)
        # reading 80 MB as Python ints from a list would copy ~300 MB per worker
        assert growth <= 5 * 1024, (before, after)


def _edited(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the example changed: no {old!r}"
    return text.replace(old, new)


def test_the_sharing_check_fails_for_a_list_without_preload(tmp_path: Path) -> None:
    # The control: each worker builds a list of its own. Nothing grows while it is read
    # (the memory is private from the start), so only the sharing check can tell.
    control = tmp_path / "gunicorn"
    shutil.copytree(EXAMPLE, control)
    conf = control / "gunicorn.conf.py"
    conf.write_text(_edited(conf.read_text(), "preload_app = True", "preload_app = False"))
    app = control / "app.py"
    text = _edited(app.read_text(), 'data = cowbuf.array("q", range(ITEMS))',
                   "data = cowbuf.array('q', 1)")
    app.write_text(_edited(text, 'values = cowbuf.registry["data"]\n'
                           "    assert isinstance(values, cowbuf.Array)",
                           "values = DATA") + "\nDATA = list(range(ITEMS))\n")
    items = 1_000_000
    with _gunicorn(control, items) as (port, master, workers):
        answers = _until_every_worker_served(port, "/sum", workers, WORKERS)
        assert {a["sum"] for a in answers} == {items * (items - 1) // 2}
        with pytest.raises(AssertionError, match="holds no shared region"):
            _assert_workers_share_the_masters_pages(master, workers, items * 8)
