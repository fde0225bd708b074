"""What forked children inherit: the same memory (writes seen both ways), no
copy-on-write when they read everything, frozen stays frozen, and allocations in
parent and child never collide."""

import ctypes
import faulthandler
import gc
import multiprocessing
import signal
import sys

import pytest
from helpers import address, memory_counters, run_python, wait_until

import cowbuf

np = pytest.importorskip("numpy")

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/smaps_rollup")

MB = 1 << 20


# -- writes are shared both ways ---------------------------------------------------

def write_everything(array, region, counter):
    array[0] = -1
    array[len(array) // 2 :] = range(len(array) - len(array) // 2)
    array[::-7].fill(7)
    with memoryview(region) as m:
        m[:5] = b"child"
    np.asarray(array)[1] = 11  # through a numpy view made in the child
    counter.add(41)
    return array.sum()


@pytest.mark.parametrize("n", [10, 100_000])
def test_child_writes_are_seen_by_parent(run_forked, n):
    array = cowbuf.array("q", n)
    region = cowbuf.Region(64)
    counter = cowbuf.Counter(1)
    expected = cowbuf.array("q", n)
    write_everything(expected, cowbuf.Region(64), cowbuf.Counter(1))

    [child_sum] = run_forked(write_everything, [(array, region, counter)])

    assert array == expected
    assert array.sum() == child_sum == expected.sum()
    assert bytes(memoryview(region)[:5]) == b"child"
    assert counter.value == 42


def read_after_go(array, go):
    wait_until(lambda: go.value == 1)
    return array.tolist()


def test_parent_writes_after_the_fork_are_seen_by_the_child(run_forked):
    array = cowbuf.array("i", 1000)
    go = cowbuf.Counter()

    def write_then_go():
        array[:] = range(1000)
        go.store(1)

    [seen] = run_forked(read_after_go, [(array, go)], while_running=write_then_go)
    assert seen == list(range(1000))


def sum_concurrently(array, ready, n):
    ready.add(1)
    wait_until(lambda: ready.value == n)
    return array.sum(), sum(array[::1000])


def test_many_children_read_the_same_memory(run_forked):
    array = cowbuf.array("q", np.arange(1_000_000))
    ready = cowbuf.Counter()
    results = run_forked(sum_concurrently, [(array, ready, 4)] * 4)
    assert results == [(array.sum(), sum(range(0, 1_000_000, 1000)))] * 4


# -- reading everything keeps the child's memory shared ----------------------------

N_BIG = 10_000_000


def iterate_in_python(data):
    """Read every item through Python iteration; return (total, USS growth, RSS
    growth) of this process over the loop."""
    uss0, rss0 = memory_counters()
    total = 0
    for x in data:
        total += x
    uss1, rss1 = memory_counters()
    return total, uss1 - uss0, rss1 - rss0


@linux_only
@pytest.mark.slow
def test_child_reading_everything_keeps_its_private_memory_flat(run_forked):
    array = cowbuf.array("q", np.arange(N_BIG, dtype=np.int64))
    as_list = list(range(N_BIG))  # the control: the same numbers as Python ints
    gc.collect()
    (array_total, array_uss, array_rss), (list_total, list_uss, _) = run_forked(
        iterate_in_python, [(array,), (as_list,)])
    expected = N_BIG * (N_BIG - 1) // 2
    assert array_total == list_total == expected
    # the control shows that the measurement can fail: reading the list writes
    # every int's reference count and copies its pages into the child
    assert list_uss > 100 * MB, list_uss
    # the child did map all 80 MB of the array, yet none of it became private
    assert array_rss > 0.9 * array.nbytes, array_rss
    assert array_uss < 4 * MB, array_uss


# -- frozen survives fork ----------------------------------------------------------

def try_writes(array, region):
    outcomes = {}

    def attempt(name, op):
        try:
            op()
        except Exception as e:
            outcomes[name] = type(e).__name__
        else:
            outcomes[name] = "wrote"

    attempt("item", lambda: array.__setitem__(0, 1))
    attempt("slice", lambda: array.__setitem__(slice(0, 2), [1, 2]))
    attempt("fill", lambda: array.fill(3))
    attempt("view", lambda: region.view("B").__setitem__(0, 1))
    attempt("atomic", lambda: array.atomic_add(0, 1))
    attempt("memoryview", lambda: memoryview(region).__setitem__(0, 1))
    outcomes["numpy writeable"] = np.asarray(array).flags.writeable
    outcomes["frozen"] = region.frozen and array.readonly
    outcomes["unchanged"] = array.tolist()[:3]
    return outcomes


@pytest.mark.parametrize("nbytes", [64, 1 * MB])
def test_freeze_survives_fork(run_forked, nbytes):
    region = cowbuf.Region(nbytes)
    array = region.view("q")
    array[:3] = [5, 6, 7]
    region.freeze()
    [outcomes] = run_forked(try_writes, [(array, region)])
    assert outcomes == {
        "item": "TypeError", "slice": "TypeError", "fill": "TypeError",
        "view": "TypeError", "atomic": "TypeError", "memoryview": "TypeError",
        "numpy writeable": False, "frozen": True, "unchanged": [5, 6, 7],
    }


def raw_write(addr):
    # a write that bypasses every check: only the page protection can stop it
    faulthandler.disable()
    ctypes.memset(addr, 0x5A, 1)


def test_frozen_region_is_read_only_in_hardware_in_a_forked_child():
    fork = multiprocessing.get_context("fork")
    writable = cowbuf.Region(1 * MB)
    frozen = cowbuf.Region(1 * MB)
    frozen.freeze()
    procs = [fork.Process(target=raw_write, args=(address(r),))
             for r in (writable, frozen)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    # the control: the same raw write on a writable region works and is shared
    assert procs[0].exitcode == 0
    assert memoryview(writable)[0] == 0x5A
    assert procs[1].exitcode in (-signal.SIGSEGV, -signal.SIGBUS)
    assert memoryview(frozen)[0] == 0
    for p in procs:
        p.close()


def freeze_in_child(region):
    region.freeze()
    return region.frozen


def test_freeze_in_a_child_does_not_freeze_the_parent(run_forked):
    region = cowbuf.Region(1 * MB)
    assert run_forked(freeze_in_child, [(region,)]) == [True]
    assert not region.frozen
    region.view("q")[0] = 1
    assert region.view("q")[0] == 1


# -- close in one process does not affect the other --------------------------------

def close_and_report(region, array):
    region.close()
    try:
        array[0]
    except ValueError:
        return "closed"
    return "open"


def test_close_in_child_leaves_the_parent_open(run_forked):
    region = cowbuf.Region(1 * MB)
    array = region.view("q")
    array[0] = 3
    assert run_forked(close_and_report, [(region, array)]) == ["closed"]
    assert not region.closed and array[0] == 3
    array[0] = 4


def use_closed(region, array, counter):
    results = []
    for op in (lambda: region.nbytes, lambda: array[0], counter.load):
        try:
            op()
        except ValueError:
            results.append("ValueError")
    return results


def test_closed_before_fork_is_closed_in_the_child(run_forked):
    region = cowbuf.Region(4096)
    array = region.view("q")
    counter = region.counter(8)
    region.close()
    assert run_forked(use_closed, [(region, array, counter)]) == [["ValueError"] * 3]


def exit_with_live_views(array):
    # numpy views, memoryviews and iterators alive at exit must not crash it
    global _kept
    _kept = (np.asarray(array), memoryview(array), iter(array), array[::-1])
    return True


def test_child_exits_cleanly_with_live_views(run_forked):
    array = cowbuf.array("d", 100_000)
    assert run_forked(exit_with_live_views, [(array,)] * 2) == [True, True]


# -- allocations after fork do not collide -----------------------------------------

def allocate_and_mark(n, mark, done, parties):
    counters = [cowbuf.Counter() for _ in range(n)]
    arrays = [cowbuf.array("q", 3) for _ in range(n)]
    for c in counters:
        c.store(mark)
    for a in arrays:
        a.fill(mark)
    done.add(1)
    wait_until(lambda: done.value == parties)
    # every process wrote its marks before anyone reads: shared memory handed out
    # twice would show another process's mark here
    return ([c.load() for c in counters] == [mark] * n
            and all(a.tolist() == [mark] * 3 for a in arrays))


def test_small_allocations_in_parent_and_children_never_collide(run_forked):
    done = cowbuf.Counter()  # small allocations share an arena made before the fork
    n = 2000
    mine = []

    def parent_allocates():
        mine.append(allocate_and_mark(n, 1, done, 4))

    results = run_forked(allocate_and_mark, [(n, 2, done, 4), (n, 3, done, 4),
                                             (n, 4, done, 4)],
                         while_running=parent_allocates)
    assert results == [True, True, True]
    assert mine == [True]


def test_a_child_forked_during_a_gil_free_write_can_close_and_freeze():
    # The thread that was filling the array does not exist in the child: its pin on
    # the region must not outlive it there (0.1.0: the child could never close() or
    # freeze() that region).
    run_python("""
        import os, threading, warnings
        import cowbuf

        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        a = cowbuf.array("q", 8 << 20)
        started = threading.Event()
        stop = False

        def writer():
            while not stop:
                a.fill(1)  # pins the region for writing, without the GIL
                started.set()

        t = threading.Thread(target=writer)
        t.start()
        started.wait()
        failures = 0
        for attempt in range(20):
            pid = os.fork()
            if pid == 0:
                r = a.region
                try:
                    r.freeze()
                    r.close()
                except BufferError:
                    os._exit(1)
                os._exit(0)
            failures += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0
        stop = True
        t.join()
        assert failures == 0, failures
        a.freeze()  # and the parent's own pins are all released
        print("ok")
    """, timeout=120)
