"""Regions, arrays and counters travel to other processes by reference through
multiprocessing under every start method, and by value through plain pickle."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest
import sharing_workers as w
from helpers import run_python

import cowbuf

START_METHODS = [m for m in ("fork", "forkserver", "spawn") if m in mp.get_all_start_methods()]
LINUX = sys.platform.startswith("linux")


@pytest.fixture(params=START_METHODS)
def ctx(request: pytest.FixtureRequest) -> mp.context.BaseContext:
    return mp.get_context(request.param)


def _mapping_of(obj: object) -> object:
    return w._mapping_of(obj)


def test_process_arguments_are_shared(ctx: mp.context.BaseContext) -> None:
    a = cowbuf.array("q", range(1000))
    c = cowbuf.Counter(3)
    r = cowbuf.Region(4096)
    p = ctx.Process(target=w.write_all, args=(a, c, r, a[10:20:3]))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert a[0] == -1
    assert c.value == 10
    assert bytes(memoryview(r)[:4]) == b"abc\0"
    assert a[10:20].tolist() == [-10, 11, 12, -13, 14, 15, -16, 17, 18, -19]


def test_many_objects_of_one_arena_in_one_process_start(ctx: mp.context.BaseContext) -> None:
    # all carved from one shared arena: one fd, passed once with the start
    counters = [cowbuf.Counter(i) for i in range(5)] + [cowbuf.Counter(padded=True)]
    p = ctx.Process(target=w.add_to_all, args=(*counters, counters[0]))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert [c.value for c in counters] == [2, 2, 3, 4, 5, 1]


def test_pool_arguments_and_results_are_shared(ctx: mp.context.BaseContext) -> None:
    a = cowbuf.array("q", range(100_000))
    with ctx.Pool(2) as pool:
        chunks = [a[i:i + 25_000] for i in range(0, 100_000, 25_000)]
        assert pool.map(w.negate_and_sum, chunks) == [
            sum(range(i, i + 25_000)) for i in range(0, 100_000, 25_000)]
        # small arrays come from a shared arena, large ones have a region each
        small, large = pool.map(w.make_array, [10, 5000])
    assert a.sum() == -sum(range(100_000))
    assert small.tolist() == list(range(10))
    assert large.tolist() == list(range(5000))


def test_pool_result_is_a_reference_not_a_copy(ctx: mp.context.BaseContext) -> None:
    with ctx.Pool(1) as pool:
        a = pool.apply(w.make_and_keep, (5000,))
        a[0] = 99
        assert pool.apply(w.first_of_kept) == 99


def test_process_pool_executor(ctx: mp.context.BaseContext) -> None:
    a = cowbuf.array("i", range(10_000))
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        assert executor.submit(w.negate_and_sum, a[::2]).result() == sum(range(0, 10_000, 2))
        made = executor.submit(w.make_array, 100).result()
    assert a[:4].tolist() == [0, 1, -2, 3]
    assert made.tolist() == list(range(100))


def test_queue(ctx: mp.context.BaseContext) -> None:
    a = cowbuf.array("q", range(100))
    q, out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=w.from_queue, args=(q, out))
    p.start()
    q.put(a)
    assert out.get(timeout=60) == sum(range(100)) + 5
    p.join(60)
    assert p.exitcode == 0
    assert a[0] == 5
    for queue in (q, out):
        queue.close()
        queue.join_thread()


def test_pipe(ctx: mp.context.BaseContext) -> None:
    a = cowbuf.array("q", range(100))
    parent, child = ctx.Pipe()
    p = ctx.Process(target=w.from_pipe, args=(child,))
    p.start()
    child.close()
    parent.send(a)
    assert parent.recv() == sum(range(100)) + 5
    p.join(60)
    parent.close()
    assert a[1] == 6


def test_region_is_mapped_once_per_process(ctx: mp.context.BaseContext) -> None:
    a = cowbuf.array("q", range(10_000))
    with ctx.Pool(1) as pool:
        assert pool.apply(w.mappings_of, (a, a[::2], a.region)) == (1, 1 if LINUX else -1)
        # a later arrival reuses the mapping of the earlier one, still alive there
        assert pool.apply(w.mappings_of, (a[5:],)) == (1, 1 if LINUX else -1)


def test_temporary_arrays_can_be_sent(ctx: mp.context.BaseContext) -> None:
    # The sender drops the array as soon as it is pickled: the hand-off holds it until
    # the worker has it. (Held from before: what killed receivers of earlier tests took.)
    held = cowbuf._sharing.in_flight()
    with ctx.Pool(2) as pool:
        results = [pool.apply_async(w.total, (cowbuf.array("q", range(n)),))
                   for n in (1, 1000, 100_000)]
        assert [r.get(60) for r in results] == [0, sum(range(1000)), sum(range(100_000))]
    assert cowbuf._sharing.in_flight() == held


def test_frozen_region_stays_frozen_for_receivers(ctx: mp.context.BaseContext) -> None:
    a = cowbuf.array("q", range(10_000))
    a.freeze()
    small = cowbuf.array("q", range(10))  # carved from an arena: frozen by flag only
    small.freeze()
    with ctx.Pool(1) as pool:
        assert pool.apply(w.try_write, (a,)) == ("TypeError", True)
        assert pool.apply(w.try_write, (small,)) == ("TypeError", True)
        if LINUX:
            mapping = _mapping_of(a)
            # sealed against writing: nobody can map the memory writable any more
            outcome = pool.apply(w.try_map_writable, (os.getpid(), mapping.fd, mapping.size))
            assert outcome == "mmap: 1"  # EPERM


def test_receiver_keeps_memory_after_sender_closes(ctx: mp.context.BaseContext) -> None:
    a = cowbuf.array("q", range(10_000))
    with ctx.Pool(1) as pool:
        assert pool.apply(w.mappings_of, (a,))[0] == 1
        region = a.region
        del a
        region.close()
        assert pool.apply(w.first_of_kept) == 0
        assert pool.apply(w.total, (pool.apply(w.make_array, (3,)),)) == 3


@pytest.mark.skipif(not LINUX, reason="off Linux, fds sent after process start go "
                    "through multiprocessing's resource sharer, which keeps a thread")
def test_no_thread_is_left_behind_and_fork_stays_quiet(ctx: mp.context.BaseContext) -> None:
    from multiprocessing import resource_sharer

    a = cowbuf.array("q", range(1000))
    with ctx.Pool(1) as pool:
        assert pool.apply(w.total, (a,)) == sum(range(1000))
        assert pool.apply(w.make_array, (10,)).sum() == 45
    pool.join()
    assert resource_sharer._resource_sharer._thread is None
    assert threading.active_count() == 1, threading.enumerate()
    # Python 3.12+ warns on fork() in a multi-threaded process: -W error makes it fatal
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


def test_sender_that_exited_gives_a_clear_error() -> None:
    if not LINUX:
        pytest.skip("senders outside process start use the resource sharer off Linux")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=w.send_and_exit, args=(child, 10_000))
    p.start()
    child.close()
    p.join(60)  # the child waits a little for its receiver, then exits anyway
    assert p.exitcode == 0
    with pytest.raises(ValueError, match="has exited"):
        parent.recv()
    parent.close()


def test_no_warnings_in_any_process(tmp_path: os.PathLike[str]) -> None:
    # Warnings in workers (resource tracker, fork in threads) do not reach pytest:
    # run a whole program under -W error and demand a silent stderr.
    script = textwrap.dedent("""
        import multiprocessing as mp, sys
        import cowbuf, sharing_workers as w

        if __name__ == "__main__":
            for method in sys.argv[1:]:
                ctx = mp.get_context(method)
                a = cowbuf.array("q", range(100_000))
                cowbuf.registry["a"] = a
                with ctx.Pool(2, **cowbuf.pool_kwargs()) as pool:
                    pool.map(w.negate_and_sum, [a[:50_000], a[50_000:]])
                    made = pool.map(w.make_array, [10, 10_000])
                assert a.sum() == -sum(range(100_000)), method
                assert made[1].sum() == sum(range(10_000))
                p = ctx.Process(target=w.total, args=(a,))
                p.start(); p.join()
                assert p.exitcode == 0
            print("ok")
        """)
    path = os.path.join(tmp_path, "program.py")
    with open(path, "w") as f:
        f.write(script)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(w.__file__), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-W", "error", path, *START_METHODS],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.stderr == ""
    assert done.returncode == 0
    assert done.stdout == "ok\n"


# -- by value --------------------------------------------------------------------------

def _plain_round_trips() -> list[tuple[str, object]]:
    import cloudpickle

    trips: list[tuple[str, object]] = [
        (f"pickle{p}", lambda o, p=p: pickle.loads(pickle.dumps(o, protocol=p)))
        for p in range(2, pickle.HIGHEST_PROTOCOL + 1)]
    trips.append(("cloudpickle", lambda o: cloudpickle.loads(cloudpickle.dumps(o))))
    return trips


@pytest.mark.parametrize("name,trip", _plain_round_trips())
def test_plain_pickle_copies_by_value(name: str, trip: object) -> None:
    assert callable(trip)
    a = cowbuf.array("d", [1.5, 2.5, 3.5, 4.5, 5.5])
    b = trip(a)
    assert isinstance(b, cowbuf.Array)
    assert b == a and b.typecode == "d"
    assert b.region is not a.region
    b[0] = 9.0
    assert a[0] == 1.5
    assert trip(a[::-2]).tolist() == [5.5, 3.5, 1.5]
    big = cowbuf.array("Q", range(2**64 - 2000, 2**64))
    assert trip(big) == big
    frozen = cowbuf.array("h", range(5))
    frozen.freeze()
    assert trip(frozen).readonly
    assert trip(a.toreadonly()).readonly
    region = cowbuf.Region(5000)
    memoryview(region)[4999] = 7
    copy = trip(region)
    assert isinstance(copy, cowbuf.Region)
    assert copy.nbytes == 5000 and memoryview(copy)[4999] == 7
    counter = cowbuf.Counter(-42)
    copied = trip(counter)
    assert isinstance(copied, cowbuf.Counter)
    assert copied.value == -42
    copied.add()
    assert counter.value == -42


# -- crafted pickles ----------------------------------------------------------------

@pytest.mark.parametrize("nbytes", [(8 << 20) - 48, 64 << 10])
def test_region_reconstructor_rejects_inconsistent_data_at_once(nbytes):
    # Unpickling is an attack surface: a by-value Region that claims to be carved
    # from an arena ("small") but is pages long must raise at once (0.1.0 looped
    # forever creating arenas, deaf to SIGINT). In its own interpreter: a hang must
    # not take the test run with it.
    run_python(f"""
        import pickle, time
        from cowbuf import _core

        class Crafted:
            def __reduce__(self):
                return (_core._region_from_bytes, (bytes({nbytes}), False, True))

        data = pickle.dumps(Crafted())
        started = time.monotonic()
        try:
            pickle.loads(data)
        except ValueError as exc:
            assert "pickle" in str(exc), exc
        else:
            raise AssertionError("loaded")
        assert time.monotonic() - started < 5
    """, timeout=60)


# -- what 0.1.0 lost, aliased, held or hung ------------------------------------------

def test_array_put_on_a_queue_by_a_child_that_exits_at_once_arrives(
        ctx: mp.context.BaseContext) -> None:
    # The queue's feeder thread pickles the array while the child exits: the wait for
    # its receivers must be registered from the process start, and run after the
    # feeder is joined (0.1.0 lost the message every time under fork and forkserver).
    for _ in range(5):
        q = ctx.Queue()
        p = ctx.Process(target=w.put_and_return, args=(q,))
        p.start()
        assert len(q.get(timeout=60)) == 16 << 20
        assert q.get(timeout=60).sum() == sum(range(1000))
        p.join(60)
        assert p.exitcode == 0
        q.close()
        q.join_thread()


@pytest.mark.parametrize("n", [10, 1000])
def test_a_region_that_comes_back_is_the_same_object(ctx: mp.context.BaseContext,
                                                      n: int) -> None:
    # A pool worker returns the array it was given: the result is the same Region,
    # so a writable export of either refuses the freeze, and the freeze holds for
    # both and travels (0.1.0 made a second Region that bypassed all three).
    a = cowbuf.array("q", n)
    with ctx.Pool(1) as pool:
        b = pool.apply(w.identity, (a,))
        assert b.region is a.region and b == a
        view = memoryview(b)
        with pytest.raises(BufferError, match="writable buffer"):
            a.freeze()
        view[0] = -1
        view.release()
        a.freeze()
        assert a.readonly and b.readonly
        with pytest.raises(TypeError):
            b[1] = 2
        assert pool.apply(w.try_write, (b,)) == ("TypeError", True)
        assert pool.apply(w.try_write, (pool.apply(w.identity, (b,)),)) == ("TypeError", True)


@pytest.mark.skipif(not LINUX, reason="reads /proc/meminfo")
def test_memory_of_a_received_hand_off_goes_when_the_sender_drops_it() -> None:
    # The receiver acknowledged and exited, the sender dropped the array: the sender
    # must not hold 256 MiB until some later cowbuf call sweeps its outbox (#10).
    from helpers import shmem_growth_settled, shmem_kib

    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        base = shmem_kib()
        a = cowbuf.array("q", 32 << 20)
        a.fill(1)
        assert pool.apply(w.total, (a,)) == 32 << 20
    del a
    assert shmem_growth_settled(base, slack_kib=16 << 10, timeout=5) < 16 << 10


def test_a_signal_handler_may_send_while_the_main_thread_sends() -> None:
    # A SIGTERM handler that hands results over lands inside a send of the main
    # thread: no lock to deadlock on (#11). Hangs fail through the timeout.
    run_python("""
        import os, signal, threading
        from multiprocessing.reduction import ForkingPickler
        import cowbuf

        results = cowbuf.array("q", 1000)
        batches = [cowbuf.array("q", 1000) for _ in range(200)]
        handled = []

        def on_term(signum, frame):
            handled.append(len(ForkingPickler.dumps(results)))
            cowbuf.Region(100)

        signal.signal(signal.SIGTERM, on_term)
        for round in range(20):
            threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGTERM)).start()
            i = 0
            while len(handled) <= round:
                ForkingPickler.dumps(batches[i % 200])
                i += 1
        print("ok")
    """, timeout=60)


@pytest.mark.parametrize("method", [m for m in ("forkserver", "spawn") if m in START_METHODS])
def test_a_worker_starts_with_hundreds_of_regions_in_its_arguments(method: str) -> None:
    # forkserver passes at most 252 fds with a process start (#12): the rest of the
    # mappings take the other route.
    n = 300
    saved = dict(cowbuf.registry)
    cowbuf.registry.clear()
    try:
        for i in range(n):
            a = cowbuf.array("q", 1000)  # a page or more: a mapping of its own
            a[0] = 1
            cowbuf.registry[f"a{i}"] = a
        with mp.get_context(method).Pool(1, **cowbuf.pool_kwargs()) as pool:
            assert pool.apply(w.registry_firsts, (n,)) == n
    finally:
        cowbuf.registry.clear()
        cowbuf.registry.update(saved)


@pytest.mark.skipif(not LINUX, reason="the fds of received mappings are closed on Linux")
def test_a_receiver_out_of_fds_still_gets_its_task() -> None:
    # One fd per received mapping ran a worker with RLIMIT_NOFILE 64 out of fds on a
    # task of 100 arrays; multiprocessing's worker then exited quietly and the task
    # was lost (#13). The mappings outlive their fds now.
    arrays = [cowbuf.array("q", 1000) for _ in range(100)]
    for a in arrays:
        a[0] = 1
    with mp.get_context("spawn").Pool(1, initializer=w.limit_fds, initargs=(64,)) as pool:
        assert pool.apply_async(w.first_items, (arrays,)).get(timeout=60) == 100
        # and again: the worker holds those mappings without fds
        assert pool.apply_async(w.first_items, (arrays,)).get(timeout=60) == 100
