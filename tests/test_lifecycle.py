"""Memory goes back to the system when the last process holding it dies, however it
dies; nobody can shrink it under a reader; small objects do not exhaust fds."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sharing_workers as w
from helpers import shmem_growth_settled, shmem_kib

import cowbuf
from cowbuf import _core

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="reads /proc/meminfo and /proc/PID/fd")



def _run_program(tmp_path: Path, source: str, *args: str,
                 **kwargs: object) -> subprocess.Popen[str]:
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(w.__file__), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-W", "error", str(path), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)  # type: ignore[call-overload]


@linux_only
@pytest.mark.slow
def test_sigkill_of_the_whole_process_group_frees_everything(tmp_path: Path) -> None:
    # Processes and pipes only: multiprocessing's queues and pools add named
    # semaphores of their own under spawn, which a SIGKILL leaks in /dev/shm.
    program = """
        import multiprocessing as mp, sys, time
        import cowbuf

        def hold(conn, *given):
            held = [*given, conn.recv(), conn.recv()]
            conn.send([x.sum() for x in held])
            time.sleep(600)

        if __name__ == "__main__":
            arrays = [cowbuf.Region(64 << 20, populate=True).view("q") for _ in range(4)]
            small = [cowbuf.array("q", range(100)) for _ in range(1000)]
            for a in arrays:
                a.fill(1)
            ctx = mp.get_context("spawn")
            sums = []
            for i in range(3):
                mine, theirs = ctx.Pipe()
                # the first worker also gets an array with its start; the others
                # get theirs after (on Linux the fd then goes through /proc)
                given = (arrays[3],) if i == 0 else ()
                p = ctx.Process(target=hold, args=(theirs, *given))
                p.start()
                mine.send(arrays[i])
                mine.send(small[i])
                sums.extend(mine.recv())
            print("ready", sums, flush=True)
            time.sleep(600)
        """
    shm_before = sorted(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else []
    baseline = shmem_kib()
    proc = _run_program(tmp_path, program, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        line = proc.stdout.readline() if ready else "(no answer)"
        held = shmem_kib() - baseline
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        errors = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert line.strip() == f"ready {[8388608] + [8388608, 4950] * 3}", (line, errors)
    # 256 MB of regions were held by a parent and three workers
    assert held > 250 * 1024
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("processes of the killed group are still alive")
    assert shmem_growth_settled(baseline, 1024, timeout=10) <= 1024
    if os.path.isdir("/dev/shm"):
        assert set(os.listdir("/dev/shm")) - set(shm_before) == set()


def test_nobody_can_truncate_a_region(tmp_path: Path) -> None:
    region = cowbuf.Region(1 << 20)
    a = region.view("q")
    a[-1] = 7
    fd = _core._region_state(region)[0].fd
    with pytest.raises(OSError) as excinfo:
        os.ftruncate(fd, 0)
    with pytest.raises(OSError):
        os.ftruncate(fd, 2 << 20)
    if LINUX:
        assert excinfo.value.errno == 1  # EPERM: sealed against shrinking and growing
        other = subprocess.run(
            [sys.executable, "-c",
             f"import os; fd = os.open('/proc/{os.getpid()}/fd/{fd}', os.O_RDWR); "
             "os.ftruncate(fd, 0)"], capture_output=True, text=True, timeout=60)
        assert other.returncode == 1
        assert "PermissionError: [Errno 1] Operation not permitted" in other.stderr
    assert os.fstat(fd).st_size == 1 << 20
    assert a[-1] == 7 and a.sum() == 7


@pytest.mark.slow
def test_many_small_objects_under_a_low_fd_limit(tmp_path: Path) -> None:
    program = """
        import multiprocessing as mp, os, random, resource
        import cowbuf

        def check(a, c, i):
            c.add(1)
            return a.tolist() == list(range(i, i + len(a))) and a.sum() == sum(a)

        if __name__ == "__main__":
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            random.seed(5)
            sizes = [random.randint(0, 64) for _ in range(100_000)] + [511] * 2000
            arrays = [cowbuf.array("q", range(i, i + n)) for i, n in enumerate(sizes)]
            counters = [cowbuf.Counter(i) for i in range(100_000)]
            fds = len(os.listdir("/dev/fd"))
            sample = random.sample(range(len(arrays)), 300)
            with mp.get_context("spawn").Pool(2) as pool:
                ok = pool.starmap(check, [(arrays[i], counters[k], i)
                                          for k, i in enumerate(sample)])
            assert all(ok)
            assert [counters[k].value for k in range(300)] == [k + 1 for k in range(300)]
            print(fds, flush=True)
        """
    proc = _run_program(tmp_path, program)
    out, err = proc.communicate(timeout=600)
    assert err == "" and proc.returncode == 0
    assert int(out) < 64  # a handful of arenas, not one fd per object
