"""Fault injection with real processes: a worker SIGKILLed in the middle of its work
loses only its own unacknowledged batch; a parent SIGKILLed leaves its children with
valid memory, which is freed once they are gone too; running out of memory or address
space raises MemoryError and leaves the process working."""

from __future__ import annotations

import base64
import contextlib
import multiprocessing as mp
import os
import pickle
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import shmem_growth_settled, shmem_kib, wait_until

import cowbuf
from cowbuf import _core

np = pytest.importorskip("numpy")

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="reads /proc")
START_METHODS = [m for m in ("fork", "spawn") if m in mp.get_all_start_methods()]
# Set by tools/sanitize.sh: ASan reserves terabytes of address space up front.
SANITIZER = os.environ.get("COWBUF_SANITIZER", "")


def start_workers(ctx, target, arg_tuples):
    procs = [ctx.Process(target=target, args=args) for args in arg_tuples]
    for p in procs:
        p.start()
    return procs


def join_all(procs, timeout=120):
    try:
        for p in procs:
            p.join(timeout)
            assert not p.is_alive(), f"worker {p.pid} did not finish in {timeout} s"
        return [p.exitcode for p in procs]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
            p.close()


# -- a worker killed in the middle of atomic_add_at ----------------------------------

ITEMS = 50_000
BATCHES = 24


def add_batches(histogram, order, weight, progress, slot, batches):
    """Add `weight` to every item of `histogram` once per batch (in the order of the
    permutation `order`, one atomic_add_at call per batch), and acknowledge each
    batch by storing the number of batches done in progress[slot]."""
    for b in range(batches):
        histogram.atomic_add_at(order, weight)
        progress.atomic_store(slot, b + 1)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_sigkill_in_atomic_add_at_loses_only_the_unacknowledged_batch(start_method):
    ctx = mp.get_context(start_method)
    histogram = cowbuf.array("q", ITEMS)
    order = cowbuf.array("q", random.Random(7).sample(range(ITEMS), ITEMS))
    progress = cowbuf.array("q", 4)
    # Three survivors (weights 1, 2, 4) and a victim with a weight none of their sums
    # can make (1000), which never stops on its own.
    weights = [1, 2, 4, 1000]
    args = [(histogram, order, w, progress, k, BATCHES if w != 1000 else 10**9)
            for k, w in enumerate(weights)]
    procs = start_workers(ctx, add_batches, args)
    victim = procs[3]
    try:
        # kill it while everyone is adding: nearly all of its time is inside
        # atomic_add_at, so the kill lands in the middle of a call
        wait_until(lambda: progress.atomic_load(3) >= 2 and progress.atomic_load(0) >= 1)
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        exitcodes = join_all(procs)
    assert exitcodes == [0, 0, 0, -signal.SIGKILL]
    assert progress.tolist()[:3] == [BATCHES] * 3
    acknowledged = progress[3]
    survivors = (1 + 2 + 4) * BATCHES
    totals = np.asarray(histogram) - survivors
    # Every item holds exactly the survivors' adds plus the victim's acknowledged
    # batches, plus 0 or 1 more victim add: its batch in flight, done in part (an
    # add, or the whole batch before its acknowledgement). Nothing is lost or torn.
    extra, rest = np.divmod(totals, 1000)
    assert (rest == 0).all(), "an add was lost or torn"
    extra -= acknowledged
    assert set(np.unique(extra).tolist()) <= {0, 1}, np.unique(extra)
    print(f"victim: {acknowledged} batches acknowledged, {int(extra.sum())} of the "
          f"{ITEMS} adds of the batch in flight were done")


# -- a worker killed in the middle of plain writes -----------------------------------

ROW = 40_000
ROWS = 40  # per worker: worker w owns rows w, w + 4, w + 8, ...


def write_rows(table, worker, progress, writes, how):
    """Bulk writes of whole rows of `table` (a fill, or a memmove from a buffer):
    write number j goes to row worker + 4 * (j % ROWS), with the value j + 1, and is
    acknowledged by storing j + 1 in progress[worker]."""
    source = np.empty(ROW, dtype=table.typecode)
    for j in range(writes):
        row = worker + 4 * (j % ROWS)
        items = table[row * ROW:(row + 1) * ROW]
        if how == "fill":
            items.fill(j + 1)
        else:
            source.fill(j + 1)
            items[:] = source
        progress.atomic_store(worker, j + 1)


@pytest.mark.parametrize("how", ["fill", "buffer"])
def test_sigkill_in_bulk_writes_leaves_the_acknowledged_rows_whole(how):
    ctx = mp.get_context("fork")
    table = cowbuf.array("q", 4 * ROWS * ROW)
    progress = cowbuf.array("q", 4)
    # three workers write their rows once; the fourth goes round its rows until killed
    writes = [ROWS, ROWS, ROWS, 10**9]
    procs = start_workers(ctx, write_rows, [(table, w, progress, writes[w], how)
                                            for w in range(4)])
    try:
        wait_until(lambda: progress.atomic_load(3) >= 3 * ROWS // 2)
        os.kill(procs[3].pid, signal.SIGKILL)
    finally:
        exitcodes = join_all(procs)
    assert exitcodes == [0, 0, 0, -signal.SIGKILL]
    grid = np.asarray(table).reshape(4 * ROWS, ROW)
    assert progress.tolist()[:3] == [ROWS] * 3
    acknowledged = progress[3]
    in_flight = 3 + 4 * (acknowledged % ROWS)
    for w in range(4):
        acked = progress[w]
        for k in range(ROWS):
            row = w + 4 * k
            if row == in_flight:
                continue  # partly written: each item old or new, or (memmove) a mix
            # the value of the last acknowledged write to this row, if any
            last = k + ROWS * ((acked - 1 - k) // ROWS) if acked > k else -1
            assert (grid[row] == last + 1).all(), (w, k, last + 1)


# -- workers killed while allocating from a shared arena -----------------------------

def allocate_and_keep(count, victim, started, finished):
    """Allocate small arrays and counters marked with this process's pid (carved,
    without a lock, from the arena inherited from the parent) and check at the end
    that they all still hold it. The victim allocates until it is killed."""
    pid = os.getpid()
    kept = []
    i = 0
    while victim or i < count:
        kept.append(cowbuf.array("q", [pid] * (1 + i % 7)))
        kept.append(cowbuf.Counter(pid))
        i += 1
        if victim and i == count:
            started.add(1)  # from here on it is killed at any moment
    assert all(a.tolist() == [pid] * len(a) for a in kept[::2])
    assert all(c.value == pid for c in kept[1::2])
    finished.add(1)


def test_sigkill_while_allocating_never_blocks_or_overlaps_the_others():
    ctx = mp.get_context("fork")
    cowbuf.Counter()  # the parent's arena exists before the fork: all carve from it
    started, finished = cowbuf.Counter(), cowbuf.Counter()
    procs = start_workers(ctx, allocate_and_keep,
                          [(30_000, False, started, finished)] * 2
                          + [(2_000, True, started, finished)])
    try:
        wait_until(lambda: started.value == 1, what="the victim")
        os.kill(procs[2].pid, signal.SIGKILL)
    finally:
        exitcodes = join_all(procs)
    assert exitcodes == [0, 0, -signal.SIGKILL]
    assert finished.value == 2


# -- the parent killed ---------------------------------------------------------------


def _holders(inode: int) -> list[str]:
    """Every process that maps or holds an fd of the memfd with this inode."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as maps:
                if any(line.split()[4] == str(inode) and "memfd:cowbuf" in line
                       for line in maps if len(line.split()) > 5):
                    found.append(f"{pid} maps it")
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "/memfd:cowbuf (deleted)" and \
                        os.stat(f"/proc/{pid}/fd/{fd}").st_ino == inode:
                    found.append(f"{pid} holds fd {fd}")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def _maps_anything(pid: int) -> bool:
    """Whether process `pid` is alive and not a zombie (which maps nothing)."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return bool(maps.read())
    except (FileNotFoundError, ProcessLookupError):
        return False


ORPHANS = """
    import multiprocessing as mp, os, sys, time
    import cowbuf
    from cowbuf import _core

    N = 32 << 20  # 256 MiB of int64

    def child(data, frozen, arrived, slot, parent):
        # Work only once the parent is dead: reparented, our parent pid changes.
        while os.getppid() == parent:
            time.sleep(0.01)
        ok = data[3:].sum() == N * (N - 1) // 2 - 3 and frozen.sum() == 3 * len(frozen)
        data[slot] = -1  # tell the siblings we are here, through the memory
        arrived.add(1)
        deadline = time.monotonic() + 60
        while arrived.value < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        ok = ok and data[:3].tolist() == [-1, -1, -1] and frozen.readonly
        # one write(2) of a whole line: print() may make two (PYTHONUNBUFFERED), and
        # the siblings share the pipe
        os.write(1, f"child {slot} {'ok' if ok else 'BAD'}\\n".encode())

    if __name__ == "__main__":
        data = cowbuf.array("q", range(N))  # filled in C, committed up front
        frozen = cowbuf.array("b", [3] * 4096)
        frozen.freeze()
        arrived = cowbuf.Counter()
        procs = []
        for slot, method in enumerate(["fork", "fork", "spawn"]):
            # the fork children inherit the memory; the spawn child gets it by
            # reference with its start
            p = mp.get_context(method).Process(
                target=child, args=(data, frozen, arrived, slot, os.getpid()))
            p.start()
            procs.append(p.pid)
        inode = os.fstat(_core._region_state(data.region)[0].fd).st_ino
        # the first three items were 0, 1, 2: the children overwrite them
        print("ready", inode, *procs, flush=True)
        time.sleep(600)
    """


@linux_only
@pytest.mark.slow
def test_sigkill_of_the_parent_leaves_the_children_valid_memory(tmp_path: Path) -> None:
    path = tmp_path / "orphans.py"
    path.write_text(textwrap.dedent(ORPHANS))
    baseline = shmem_kib()
    parent = subprocess.Popen([sys.executable, "-W", "error", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert parent.stdout is not None and parent.stderr is not None
    lines: list[str] = []
    children: list[int] = []
    try:
        ready, _, _ = select.select([parent.stdout], [], [], 240)
        first = parent.stdout.readline() if ready else ""
        assert first.startswith("ready"), (first, parent.stderr.read() if not ready else "")
        inode, *children = map(int, first.split()[1:])
        held = shmem_kib() - baseline
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(30)
        # The children run on: they read and write the memory, and see each other.
        deadline = time.monotonic() + 120
        while len(lines) < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([parent.stdout], [], [], 1)
            if ready:
                line = parent.stdout.readline()
                if not line:
                    break
                lines.append(line.strip())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(30)
        errors = parent.stderr.read()
        parent.stdout.close()
        parent.stderr.close()
    assert sorted(lines) == ["child 0 ok", "child 1 ok", "child 2 ok"], (lines, errors)
    assert held > 250 * 1024  # the 256 MiB region was there, committed
    wait_until(lambda: not any(map(_maps_anything, children)), timeout=30,
               what="the children's exit")
    # Nobody maps or holds the memory any more: the kernel has freed it.
    assert _holders(inode) == []
    assert shmem_growth_settled(baseline, 1024, timeout=20) <= 1024


# -- out of memory, out of address space ---------------------------------------------

EXHAUSTION = """
    import resource, sys
    import cowbuf

    limit = resource.RLIMIT_AS if sys.argv[1] == "address-space" else resource.RLIMIT_FSIZE
    cap = (1 << 30) if sys.argv[1] == "address-space" else (16 << 20)
    resource.setrlimit(limit, (cap, cap))
    small = cowbuf.array("q", range(1000))
    too_big = [lambda: cowbuf.Region(4 << 30), lambda: cowbuf.array("d", 1 << 29)]
    if sys.argv[1] == "file-size":
        # refused before any memory is committed (under RLIMIT_AS these would commit
        # 4 GiB first, and fail only to map it)
        too_big += [lambda: cowbuf.Region(4 << 30, populate=True),
                    lambda: cowbuf.array("q", range(1 << 29))]
    for make in too_big:
        try:
            make()
        except MemoryError:
            pass
        else:
            raise AssertionError("expected MemoryError")
    # the process goes on: what fits is made, what was made is intact
    fits = cowbuf.Region(1 << 20, populate=True).view("q")
    fits.fill(5)
    assert fits.sum() == 5 * (1 << 17) and small.sum() == 499500
    print("ok")
    """


@linux_only
@pytest.mark.parametrize("limit", [
    "file-size",
    pytest.param("address-space", marks=pytest.mark.skipif(
        SANITIZER == "asan", reason="ASan reserves terabytes of address space")),
])
def test_exhausted_memory_raises_memory_error_and_the_process_goes_on(tmp_path, limit):
    # RLIMIT_FSIZE caps the size of a memfd (the kernel's check for a full tmpfs);
    # RLIMIT_AS caps the address space, so that mmap fails.
    path = tmp_path / "exhaustion.py"
    path.write_text(textwrap.dedent(EXHAUSTION))
    done = subprocess.run([sys.executable, "-W", "error", str(path), limit],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


# -- the sender of a reference gone --------------------------------------------------

SENDER = """
    import base64, os, sys
    from multiprocessing.reduction import ForkingPickler
    import cowbuf

    region = cowbuf.Region(1 << 20)
    region.view("q")[0] = 7
    sys.stdout.write(base64.b64encode(bytes(ForkingPickler.dumps(region))).decode())
    sys.stdout.flush()
    os._exit(0)  # at once: no waiting for a receiver at exit
    """


@linux_only
def test_reference_from_a_sender_that_died_is_value_error(tmp_path):
    # Outside process start a reference is received through /proc/<sender>/fd: once
    # the sender is gone there is nothing to map, and the receiver is told so.
    path = tmp_path / "sender.py"
    path.write_text(textwrap.dedent(SENDER))
    done = subprocess.run([sys.executable, "-W", "error", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    mappings = _core._live_mappings()
    with pytest.raises(ValueError, match=r"has exited|no longer holds"):
        pickle.loads(base64.b64decode(done.stdout))
    assert _core._live_mappings() == mappings
