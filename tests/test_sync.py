"""Locks, semaphores, events, conditions, barriers and Counter.wait: the threading API,
across real processes under every start method, and what happens when a holder or a
member is killed, when a signal interrupts a wait, and when a thread holds a lock
across a fork."""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import pickle
import signal
import struct
import threading
import time
from multiprocessing.reduction import ForkingPickler

import pytest
from helpers import LINUX, run_python, wait_until

import cowbuf
from cowbuf import _core

SYNC_TYPES = [cowbuf.Lock, cowbuf.RLock, cowbuf.Semaphore, cowbuf.BoundedSemaphore,
              cowbuf.Event, cowbuf.Condition, lambda: cowbuf.Barrier(2)]
# A wait is sliced (the longest slice is 20 ms): a signal is handled well within this.
SIGNAL_LATENCY = 0.1


def in_thread(fn, *args):
    """Run fn(*args) in a thread; return (thread, box) where box gets its outcome."""
    box: dict[str, object] = {}

    def run():
        try:
            box["result"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def state_of(obj):
    """A writable view of the shared state of a synchronization object (white-box)."""
    _, (region, *_) = _core.SHARED_TYPES[type(obj)](obj)
    return memoryview(region)


# -- Lock --------------------------------------------------------------------------

def test_lock_acquire_release():
    lock = cowbuf.Lock()
    assert not lock.locked() and repr(lock) == "<cowbuf.Lock unlocked>"
    assert lock.acquire() is True
    assert lock.locked() and repr(lock) == f"<cowbuf.Lock locked by process {os.getpid()}>"
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0) is False
    assert lock.acquire(True, 0.01) is False
    lock.release()
    assert not lock.locked()
    with lock as entered:
        assert entered is True and lock.locked()
    assert not lock.locked()
    assert lock.owner_died is False


def test_lock_release_when_unlocked_is_runtime_error():
    lock = cowbuf.Lock()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


@pytest.mark.parametrize("kind", [cowbuf.Lock, cowbuf.RLock])
def test_lock_arguments_are_checked_like_threading(kind):
    lock = kind()
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(False, 1)
    with pytest.raises(ValueError, match="non-negative"):
        lock.acquire(timeout=-2)
    with pytest.raises(TypeError):
        lock.acquire(timeout="soon")
    assert not lock.locked()  # a refused call takes nothing


def test_lock_timeout_waits_and_returns_false():
    lock = cowbuf.Lock()
    lock.acquire()
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.05


def test_lock_may_be_released_by_another_thread():
    lock = cowbuf.Lock()
    lock.acquire()
    thread, box = in_thread(lock.release)
    thread.join()
    assert "error" not in box and not lock.locked()


def test_lock_excludes_threads_of_one_process():
    lock = cowbuf.Lock()
    counts = [0, 0]

    def work():
        for _ in range(20_000):
            with lock:
                counts[0] += 1
                counts[1] = counts[0]

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [80_000, 80_000]


def test_waiting_thread_gets_the_lock_at_release():
    lock = cowbuf.Lock()
    lock.acquire()
    thread, box = in_thread(lock.acquire)
    time.sleep(0.05)
    assert thread.is_alive()
    lock.release()
    thread.join(5)
    assert box == {"result": True} and lock.locked()


# -- RLock -------------------------------------------------------------------------

def test_rlock_is_reentrant_for_its_thread_only():
    lock = cowbuf.RLock()
    assert lock.acquire() and lock.acquire() and lock.acquire(False)
    assert "depth 3" in repr(lock)
    thread, box = in_thread(lock.acquire, True, 0.05)
    thread.join()
    assert box == {"result": False}
    thread, box = in_thread(lock.release)
    thread.join()
    assert isinstance(box["error"], RuntimeError)
    lock.release()
    lock.release()
    assert lock.locked()
    lock.release()
    assert not lock.locked() and repr(lock) == "<cowbuf.RLock unlocked>"
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()


def test_rlock_with_blocks_nest():
    lock = cowbuf.RLock()
    with lock:
        with lock:
            assert lock.locked()
        assert lock.locked()
    assert not lock.locked()


# -- Semaphore ---------------------------------------------------------------------

def test_semaphore_counts_permits():
    sem = cowbuf.Semaphore(2)
    assert sem.get_value() == 2 and repr(sem) == "<cowbuf.Semaphore value=2>"
    assert sem.acquire() and sem.acquire()
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=0.01) is False
    assert sem.acquire(timeout=-1) is False
    sem.release(2)
    assert sem.get_value() == 2
    sem.release()  # a plain Semaphore is not bounded
    assert sem.get_value() == 3
    with sem:
        assert sem.get_value() == 2
    assert cowbuf.Semaphore(0).acquire(False) is False
    assert cowbuf.Semaphore().get_value() == 1


def test_semaphore_arguments():
    with pytest.raises(ValueError):
        cowbuf.Semaphore(-1)
    with pytest.raises(OverflowError):
        cowbuf.Semaphore(2**31)
    with pytest.raises(TypeError):
        cowbuf.Semaphore(1.5)
    sem = cowbuf.Semaphore(1)
    with pytest.raises(ValueError, match="timeout for non-blocking"):
        sem.acquire(False, 1)
    for n in (0, -1):
        with pytest.raises(ValueError, match="one or more"):
            sem.release(n)
    assert sem.get_value() == 1
    with pytest.raises(OverflowError):
        cowbuf.Semaphore(2**31 - 1).release()
    with pytest.raises(ValueError, match=r"1\.\.4096"):
        cowbuf.Semaphore(0, track_holders=True)
    with pytest.raises(ValueError, match=r"1\.\.4096"):
        cowbuf.Semaphore(4097, track_holders=True)


def test_bounded_semaphore_refuses_extra_releases():
    sem = cowbuf.BoundedSemaphore(2)
    assert isinstance(sem, cowbuf.Semaphore)
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()
    sem.acquire()
    with pytest.raises(ValueError):
        sem.release(2)
    sem.release()
    assert sem.get_value() == 2
    with pytest.raises(ValueError):
        cowbuf.BoundedSemaphore(0).release()


def test_semaphore_wakes_as_many_waiters_as_it_releases():
    sem = cowbuf.Semaphore(0)
    waiters = [in_thread(sem.acquire, True, 10) for _ in range(3)]
    wait_until(lambda: _core_sleepers(sem) == 3, timeout=10, what="the waiters")
    sem.release(2)
    wait_until(lambda: sum("result" in box for _, box in waiters) == 2, timeout=10)
    time.sleep(0.05)
    assert sum("result" in box for _, box in waiters) == 2
    sem.release()
    for thread, box in waiters:
        thread.join(10)
        assert box == {"result": True}
    assert sem.get_value() == 0


def _core_sleepers(sem):
    # cowbuf_semaphore_state: header (16 bytes), value, sleepers
    return struct.unpack_from("I", state_of(sem), 20)[0]


def test_tracked_semaphore_permits_belong_to_their_process():
    sem = cowbuf.Semaphore(3, track_holders=True)
    assert sem.track_holders and not cowbuf.Semaphore(3).track_holders
    assert repr(sem) == "<cowbuf.Semaphore value=3, track_holders>"
    assert sem.acquire() and sem.acquire()
    assert sem.get_value() == 1
    sem.release(2)
    with pytest.raises(ValueError, match="held 0 of the 1"):
        sem.release()
    assert sem.get_value() == 3
    assert sem.acquire() and sem.acquire() and sem.acquire()
    assert sem.acquire(timeout=0.01) is False
    with pytest.raises(ValueError, match="held 3 of the 4"):
        sem.release(4)
    assert sem.get_value() == 3  # it released what it held, then refused the rest


# -- Event -------------------------------------------------------------------------

def test_event():
    event = cowbuf.Event()
    assert not event.is_set() and repr(event) == "<cowbuf.Event unset>"
    assert event.wait(0) is False
    assert event.wait(0.01) is False
    assert event.wait(-1) is False
    event.set()
    assert event.is_set() and event.wait() is True and event.wait(0) is True
    event.set()
    assert repr(event) == "<cowbuf.Event set>"
    event.clear()
    assert not event.is_set()
    with pytest.raises(ValueError, match="NaN"):
        event.wait(float("nan"))
    with pytest.raises(TypeError):
        event.wait("1")


def test_event_set_wakes_every_waiting_thread():
    event = cowbuf.Event()
    waiters = [in_thread(event.wait, 10) for _ in range(4)]
    time.sleep(0.05)
    event.set()
    for thread, box in waiters:
        thread.join(10)
        assert box == {"result": True}


# -- Condition ---------------------------------------------------------------------

def test_condition_needs_its_lock_held():
    cond = cowbuf.Condition()
    with pytest.raises(RuntimeError, match="un-acquired"):
        cond.wait(0)
    with pytest.raises(RuntimeError, match="un-acquired"):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.notify_all()
    with pytest.raises(TypeError, match="cowbuf Lock or RLock"):
        cowbuf.Condition(threading.Lock())


@pytest.mark.parametrize("kind", [cowbuf.Lock, cowbuf.RLock])
def test_condition_wait_times_out_and_holds_the_lock_again(kind):
    lock = kind()
    cond = cowbuf.Condition(lock)
    with cond:
        if kind is cowbuf.RLock:
            lock.acquire()  # two levels: wait() releases both and takes both again
        t0 = time.monotonic()
        assert cond.wait(0.05) is False
        assert time.monotonic() - t0 >= 0.05
        assert lock.locked()
        if kind is cowbuf.RLock:
            lock.release()
            assert lock.locked()
    assert not lock.locked()
    assert "0 waiting" in repr(cond)


def test_notify_wakes_at_most_n_waiters():
    cond = cowbuf.Condition()
    woken = []

    def waiter():
        with cond:
            if cond.wait(10):
                woken.append(1)

    threads = [threading.Thread(target=waiter) for _ in range(5)]
    for t in threads:
        t.start()
    wait_until(lambda: "5 waiting" in repr(cond), timeout=10, what="the waiters")
    with cond:
        cond.notify(2)
    time.sleep(0.1)
    assert len(woken) == 2
    with cond:
        cond.notify(0)
        cond.notify(-1)
    time.sleep(0.05)
    assert len(woken) == 2
    with cond:
        cond.notify_all()
    for t in threads:
        t.join(10)
    assert len(woken) == 5


def test_a_waiter_that_comes_after_a_notify_is_not_woken_by_it():
    cond = cowbuf.Condition()
    with cond:
        cond.notify()  # nobody waits: nothing to wake
        assert cond.wait(0.02) is False


def test_wait_for():
    cond = cowbuf.Condition(cowbuf.Lock())
    box = {"ready": False}

    def later():
        time.sleep(0.05)
        with cond:
            box["ready"] = True
            cond.notify()

    with cond:
        assert cond.wait_for(lambda: box["ready"], 0.01) is False
        thread = threading.Thread(target=later)
        thread.start()
        assert cond.wait_for(lambda: box["ready"], 10) is True
        assert cond.wait_for(lambda: 7) == 7
    thread.join()


# -- Barrier -----------------------------------------------------------------------

def test_barrier_with_threads():
    rounds = []
    barrier = cowbuf.Barrier(3, action=lambda: rounds.append(len(rounds)))
    assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken
    results = []

    def party():
        results.append([barrier.wait(10) for _ in range(20)])

    threads = [threading.Thread(target=party) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert rounds == list(range(20))
    for k in range(20):
        assert sorted(r[k] for r in results) == [0, 1, 2]


def test_barrier_arguments():
    for parties in (0, -1):
        with pytest.raises(ValueError, match="> 0"):
            cowbuf.Barrier(parties)
    with pytest.raises(ValueError, match="at most 1024"):
        cowbuf.Barrier(1025)
    with pytest.raises(TypeError, match="callable"):
        cowbuf.Barrier(2, action=5)
    with pytest.raises(TypeError):
        cowbuf.Barrier(2, timeout="x")
    assert cowbuf.Barrier(1).wait() == 0


def test_barrier_timeout_breaks_it_until_reset():
    barrier = cowbuf.Barrier(2)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.02)
    assert barrier.broken and "broken" in repr(barrier) and barrier.n_waiting == 0
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    barrier.reset()
    assert not barrier.broken
    thread, box = in_thread(barrier.wait, 10)
    assert barrier.wait(10) in (0, 1)
    thread.join()
    assert box["result"] in (0, 1)


def test_barrier_default_timeout():
    barrier = cowbuf.Barrier(2, timeout=0.02)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()


@pytest.mark.parametrize("how", ["abort", "reset"])
def test_barrier_abort_and_reset_release_waiters_with_broken_barrier_error(how):
    barrier = cowbuf.Barrier(3)
    waiters = [in_thread(barrier.wait, 10) for _ in range(2)]
    wait_until(lambda: barrier.n_waiting == 2, timeout=10, what="the waiters")
    getattr(barrier, how)()
    for thread, box in waiters:
        thread.join(10)
        assert isinstance(box["error"], threading.BrokenBarrierError)
    assert barrier.broken == (how == "abort")


def test_barrier_action_that_raises_breaks_it():
    def action():
        raise KeyError("no")

    barrier = cowbuf.Barrier(2, action=action)
    thread, box = in_thread(barrier.wait, 10)
    with pytest.raises(KeyError):
        barrier.wait(10)
    thread.join()
    assert isinstance(box["error"], threading.BrokenBarrierError)
    assert barrier.broken


# -- Counter.wait and Array.wait_at -------------------------------------------------

def test_counter_wait_returns_when_the_value_differs():
    counter = cowbuf.Counter(5)
    assert counter.wait(4) is True
    assert counter.wait(5, 0.02) is False
    assert counter.wait(5, timeout=0) is False

    def later():
        time.sleep(0.05)
        counter.add(1)
        counter.notify()

    thread = threading.Thread(target=later)
    thread.start()
    assert counter.wait(5, 10) is True
    thread.join()
    assert counter.value == 6
    counter.notify(0)
    counter.notify_all()
    with pytest.raises(ValueError, match="negative"):
        counter.notify(-1)
    with pytest.raises(OverflowError):
        counter.wait(2**63)


def test_counter_wait_sees_a_change_without_notify():
    counter = cowbuf.Counter(1 << 32)  # only the high half of the 64 bits changes

    def later():
        time.sleep(0.05)
        counter.store(2 << 32)

    thread = threading.Thread(target=later)
    thread.start()
    assert counter.wait(1 << 32, 10) is True
    thread.join()


def test_wait_on_a_closed_counter_is_value_error():
    region = cowbuf.Region(4096)
    counter = region.counter(0)
    region.close()
    with pytest.raises(ValueError, match="closed"):
        counter.wait(0)
    with pytest.raises(ValueError, match="closed"):
        counter.notify()


@pytest.mark.parametrize("tc", "iIlLqQ")
def test_array_wait_at(tc):
    a = cowbuf.array(tc, 4)
    a[2] = 7
    assert a.wait_at(2, 6) is True
    assert a.wait_at(-2, 7, 0.01) is False

    def later():
        time.sleep(0.05)
        a.atomic_add(2, 1)
        a.notify_at(2)

    thread = threading.Thread(target=later)
    thread.start()
    assert a.wait_at(2, 7, 10) is True
    thread.join()
    a.notify_at(1, 5)
    with pytest.raises(IndexError):
        a.wait_at(4, 0)
    with pytest.raises(IndexError):
        a.notify_at(-5)
    with pytest.raises(OverflowError):
        a.wait_at(0, -1 if tc.isupper() else 2**64)


@pytest.mark.parametrize("tc", "bBhHfd")
def test_wait_at_needs_atomic_items(tc):
    a = cowbuf.array(tc, 4)
    with pytest.raises(TypeError, match="itemsize 4 or 8"):
        a.wait_at(0, 0)
    with pytest.raises(TypeError):
        a.notify_at(0)


def test_a_negative_value_waits_on_its_bits():
    a = cowbuf.array("i", [-1])
    assert a.wait_at(0, -1, 0.01) is False
    c = cowbuf.Counter(-1)
    assert c.wait(-1, 0.01) is False


def test_a_closed_region_wakes_its_waiter_with_value_error():
    region = cowbuf.Region(4096)
    counter = region.counter(8)
    thread, box = in_thread(counter.wait, 0, 10)
    time.sleep(0.05)
    region.close()
    thread.join(10)
    assert isinstance(box["error"], ValueError)


# -- every type: pickling, __new__, misuse ------------------------------------------

@pytest.mark.parametrize("make", SYNC_TYPES)
def test_plain_pickle_is_type_error(make):
    obj = make()
    name = type(obj).__name__
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match=f"a copy of a {name}"):
            pickle.dumps(obj, protocol)
    with pytest.raises(TypeError):
        copy.copy(obj)
    with pytest.raises(TypeError):
        copy.deepcopy(obj)
    cloudpickle = pytest.importorskip("cloudpickle")
    with pytest.raises(TypeError):
        cloudpickle.dumps(obj)


@pytest.mark.parametrize("make", SYNC_TYPES)
def test_forking_pickler_sends_a_reference(make):
    obj = make()
    again = pickle.loads(ForkingPickler.dumps(obj))
    assert type(again) is type(obj) and again is not obj
    assert state_of(again).obj is state_of(obj).obj  # the same region in this process


def test_a_reference_is_the_same_lock():
    lock = cowbuf.Lock()
    again = pickle.loads(ForkingPickler.dumps(lock))
    lock.acquire()
    assert again.locked() and not again.acquire(False)
    again.release()
    assert not lock.locked()
    cond = cowbuf.Condition()
    cond2 = pickle.loads(ForkingPickler.dumps(cond))
    with cond:
        cond2.notify()  # its lock is the same RLock, held by this thread
    with pytest.raises(RuntimeError):
        cond2.notify()


@pytest.mark.parametrize("cls", [cowbuf.Lock, cowbuf.RLock, cowbuf.Semaphore,
                                 cowbuf.BoundedSemaphore, cowbuf.Event, cowbuf.Condition,
                                 cowbuf.Barrier])
def test_made_with_new_raises_value_error(cls):
    obj = cls.__new__(cls)
    assert "uninitialized" in repr(obj)
    calls = {
        cowbuf.Lock: ["acquire", "release", "locked"],
        cowbuf.RLock: ["acquire", "release", "locked"],
        cowbuf.Semaphore: ["acquire", "release", "get_value"],
        cowbuf.BoundedSemaphore: ["acquire", "release", "get_value"],
        cowbuf.Event: ["set", "clear", "is_set", "wait"],
        cowbuf.Condition: ["acquire", "release", "wait", "notify", "notify_all"],
        cowbuf.Barrier: ["wait", "reset", "abort"],
    }[cls]
    for name in calls:
        with pytest.raises(ValueError, match="never initialized"):
            getattr(obj, name)()
    with pytest.raises(ValueError):
        ForkingPickler.dumps(obj)


@pytest.mark.parametrize("make", [cowbuf.Lock, cowbuf.RLock, cowbuf.Semaphore,
                                  cowbuf.Event, cowbuf.Condition,
                                  lambda: cowbuf.Barrier(2)])
def test_init_twice_is_type_error(make):
    obj = make()
    with pytest.raises(TypeError, match="only be called once"):
        obj.__init__(*([2] if isinstance(obj, cowbuf.Barrier) else []))


def test_a_reference_to_other_memory_is_value_error():
    counter_region = _core.SHARED_TYPES[cowbuf.Counter](cowbuf.Counter())[1][0]
    lock_region = state_of(cowbuf.Lock()).obj
    for rebuild in (_core._lock_on, _core._rlock_on, _core._event_on):
        with pytest.raises(ValueError, match="bad reference"):
            rebuild(cowbuf.Region(4096))  # zeros: not a lock
        with pytest.raises(ValueError, match="bad reference"):
            rebuild(counter_region)
    with pytest.raises(ValueError, match="bad reference"):
        _core._rlock_on(lock_region)  # a Lock is not an RLock
    with pytest.raises(ValueError, match="bad reference"):
        _core._semaphore_on(lock_region, False)
    with pytest.raises(TypeError):
        _core._condition_on(state_of(cowbuf.Condition()).obj, "not a lock")
    # a semaphore whose slot count does not fit its region
    sem = cowbuf.Semaphore(4, track_holders=True)
    view = state_of(sem)
    struct.pack_into("I", view, 32, 4000)
    with pytest.raises(ValueError, match="does not fit"):
        _core._semaphore_on(view.obj, False)
    struct.pack_into("I", view, 32, 4)
    barrier = cowbuf.Barrier(2)
    view = state_of(barrier)
    struct.pack_into("I", view, 24, 1000)
    with pytest.raises(ValueError, match="does not fit"):
        _core._barrier_on(view.obj, None, None)


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/pid"), reason="needs pid namespaces")
def test_a_lock_from_another_pid_namespace_is_refused():
    lock = cowbuf.Lock()
    view = state_of(lock)
    struct.pack_into("Q", view, 8, struct.unpack_from("Q", view, 8)[0] + 1)
    with pytest.raises(RuntimeError, match="another pid namespace"):
        _core._lock_on(view.obj)


def test_registry_holds_synchronization_objects():
    lock = cowbuf.Lock()
    cowbuf.registry["sync-test-lock"] = lock
    try:
        assert cowbuf.registry["sync-test-lock"] is lock
    finally:
        del cowbuf.registry["sync-test-lock"]


# -- across processes ------------------------------------------------------------------
# Workers are module functions: spawn and forkserver import them by name.

def two_step_sections(lock, steps, k, n, go):
    """n critical sections of two steps each: steps[0] counts the first, steps[1 + k]
    this worker's second. A lost update would show as steps[0] != sum(steps[1:])."""
    go.wait(60)
    for _ in range(n):
        with lock:
            first = steps[0]
            steps[0] = first + 1
            steps[1 + k] = steps[1 + k] + 1
    return n


@pytest.mark.parametrize("kind", [cowbuf.Lock, cowbuf.RLock])
def test_lock_excludes_processes(run_workers, kind):
    nprocs, n = 8, 2_000
    lock = kind()
    steps = cowbuf.array("q", 1 + nprocs)  # plain loads and stores: only the lock protects
    go = cowbuf.Event()
    run_workers(two_step_sections, [(lock, steps, k, n, go) for k in range(nprocs)],
                while_running=go.set)
    assert steps.tolist() == [nprocs * n] + [n] * nprocs
    assert not lock.locked()


def nested_sections(lock, total, n):
    for _ in range(n):
        with lock:
            with lock:
                total[0] = total[0] + 1
    return True


def test_rlock_nests_across_processes(run_workers):
    lock = cowbuf.RLock()
    total = cowbuf.array("q", 1)
    run_workers(nested_sections, [(lock, total, 1_000)] * 4)
    assert total[0] == 4_000 and not lock.locked()


def ping_pong(mine, theirs, n):
    for _ in range(n):
        if not mine.wait(60):
            raise TimeoutError("no ping")
        mine.clear()
        theirs.set()
    return n


def test_event_ping_pong_between_processes(run_workers):
    ping, pong = cowbuf.Event(), cowbuf.Event()
    n = 500

    def play():
        for _ in range(n):
            ping.set()
            assert pong.wait(60)
            pong.clear()

    assert run_workers(ping_pong, [(ping, pong, n)], while_running=play) == [n]


def produce(cond, ring, k, n):
    """Put n items (k * 1_000_000 + i) in a bounded ring of slots: ring[0] counts the
    items put, ring[1] the items taken, ring[2:] the slots."""
    size = len(ring) - 2
    for i in range(n):
        with cond:
            cond.wait_for(lambda: ring[0] - ring[1] < size, 60)
            assert ring[0] - ring[1] < size
            ring[2 + ring[0] % size] = k * 1_000_000 + i
            ring[0] += 1
            cond.notify_all()
    return n


def consume(cond, ring, n):
    size = len(ring) - 2
    got = []
    for _ in range(n):
        with cond:
            cond.wait_for(lambda: ring[0] > ring[1], 60)
            assert ring[0] > ring[1]
            got.append(ring[2 + ring[1] % size])
            ring[1] += 1
            cond.notify_all()
    return got


def producer_or_consumer(role, *args):
    return produce(*args) if role == "produce" else consume(*args)


def test_condition_producers_and_consumers_are_exact(run_workers):
    cond = cowbuf.Condition(cowbuf.Lock())
    ring = cowbuf.array("q", 2 + 4)
    n = 300
    results = run_workers(producer_or_consumer,
                          [("produce", cond, ring, k, n) for k in range(3)]
                          + [("consume", cond, ring, 450) for _ in range(2)])
    got = results[3] + results[4]
    assert sorted(got) == sorted(k * 1_000_000 + i for k in range(3) for i in range(n))
    for consumer in results[3:]:  # each producer's items arrive in order
        for k in range(3):
            mine = [x for x in consumer if x // 1_000_000 == k]
            assert mine == sorted(mine)
    assert ring[0] == ring[1] == 900


def pass_barrier(barrier, rounds, seen):
    indices = []
    for r in range(rounds):
        i = barrier.wait(60)
        indices.append(i)
        seen.atomic_add(r * barrier.parties + i, 1)
    return indices


def count_round(counter):
    counter.add(1)


def test_barrier_across_processes(run_workers):
    rounds, parties = 50, 4
    actions = cowbuf.Counter()
    barrier = cowbuf.Barrier(parties, action=functools.partial(count_round, actions))
    seen = cowbuf.array("q", rounds * parties)
    results = run_workers(pass_barrier, [(barrier, rounds, seen)] * parties)
    assert seen.tolist() == [1] * (rounds * parties)  # each index once per round
    assert actions.value == rounds
    assert all(len(r) == rounds for r in results)


def take_semaphore(sem, inside, peak, n):
    for _ in range(n):
        with sem:
            now = inside.add(1)
            while True:
                top = peak.value
                if now <= top or peak.compare_exchange(top, now):
                    break
            inside.sub(1)
    return n


@pytest.mark.parametrize("track_holders", [False, True])
def test_semaphore_limits_processes(run_workers, track_holders):
    sem = cowbuf.BoundedSemaphore(2, track_holders=track_holders)
    inside, peak = cowbuf.Counter(), cowbuf.Counter()
    run_workers(take_semaphore, [(sem, inside, peak, 2_000)] * 4)
    assert peak.value <= 2 and inside.value == 0 and sem.get_value() == 2


def wait_for_counter(counter, expected, timeout):
    t0 = time.monotonic()
    changed = counter.wait(expected, timeout)
    return changed, counter.value, time.monotonic() - t0


def test_counter_wait_and_notify_across_processes(run_workers):
    counter = cowbuf.Counter(0)

    def change():
        time.sleep(0.2)
        counter.store(41)
        counter.notify_all()

    [(changed, value, _)] = run_workers(wait_for_counter, [(counter, 0, 60)],
                                        while_running=change)
    assert changed and value == 41


def wait_at_item(array, index, expected):
    return array.wait_at(index, expected, 60), array[index]


def test_array_wait_at_across_processes(run_workers):
    a = cowbuf.array("i", 8)

    def change():
        time.sleep(0.2)
        a.atomic_store(5, -3)
        a.notify_at(5)

    assert run_workers(wait_at_item, [(a, 5, 0)], while_running=change) == [(True, -3)]


def use_registered_lock(n):
    lock = cowbuf.registry["sync-lock"]
    total = cowbuf.registry["sync-total"]
    for _ in range(n):
        with lock:
            total[0] = total[0] + 1
    return n


def test_locks_travel_in_the_registry_to_pool_workers(mp_context):
    cowbuf.registry["sync-lock"] = cowbuf.Lock()
    cowbuf.registry["sync-total"] = cowbuf.array("q", 1)
    try:
        with mp_context.Pool(2, **cowbuf.pool_kwargs()) as pool:
            assert pool.map(use_registered_lock, [500] * 4) == [500] * 4
        assert cowbuf.registry["sync-total"][0] == 2_000
    finally:
        del cowbuf.registry["sync-lock"], cowbuf.registry["sync-total"]


# -- a holder or a member killed ---------------------------------------------------------

HOLDER, FIRST, REPAIRS = 0, 1, 2


def robust_sections(lock, state, done, log, k, n, go):
    """n critical sections of three steps: state[HOLDER] names the holder (step 0),
    state[FIRST] += 1 (step 1), done[k] += 1 (step 2). A holder killed in between
    leaves them uneven: the next holder sees owner_died, logs what it found (the
    holder named, and whether step 1 was done) and rolls the half-done section back."""
    go.wait(60)
    pid = os.getpid()
    for _ in range(n):
        with lock:
            if lock.owner_died:
                repair(state, done, log)
            state[HOLDER] = pid
            state[FIRST] += 1
            t = time.perf_counter() + 0.0002
            while time.perf_counter() < t:
                pass
            done[k] += 1
            state[HOLDER] = 0
    return n


def repair(state, done, log):
    r = state[REPAIRS]
    log[2 * r] = state[HOLDER]
    log[2 * r + 1] = state[FIRST] - done.sum()
    state[FIRST] = done.sum()
    state[HOLDER] = 0
    state[REPAIRS] = r + 1


@pytest.mark.slow
def test_sigkill_of_lock_holders_loses_only_their_section(mp_context):
    import random
    nprocs, n, kills = 8, 300, 4
    lock = cowbuf.Lock()
    state, done = cowbuf.array("q", 3), cowbuf.array("q", nprocs)
    log = cowbuf.array("q", 2 * kills)
    go = cowbuf.Event()
    procs = [mp_context.Process(target=robust_sections,
                                args=(lock, state, done, log, k, n, go))
             for k in range(nprocs)]
    for p in procs:
        p.start()
    by_pid = {p.pid: k for k, p in enumerate(procs)}
    killed = {}
    try:
        go.set()
        deadline = time.monotonic() + 120
        while len(killed) < kills and time.monotonic() < deadline:
            time.sleep(random.uniform(0.002, 0.03))
            holder = state[HOLDER]
            if holder in by_pid and holder not in killed:
                os.kill(holder, signal.SIGKILL)  # left a zombie until joined below
                killed[holder] = by_pid[holder]
        # the survivors go on past every dead holder, and finish
        for p in procs:
            if p.pid not in killed:
                p.join(120)
                assert p.exitcode == 0
    finally:
        for p in procs:
            p.kill()
            p.join()
    assert len(killed) == kills
    with lock:  # the last victim may have been the last holder
        if lock.owner_died:
            repair(state, done, log)
    repairs = state[REPAIRS]
    assert 1 <= repairs <= kills  # each kill inside a section was repaired, once
    for r in range(repairs):
        assert log[2 * r] in killed or log[2 * r] == 0, log.tolist()
        assert log[2 * r + 1] in (0, 1), log.tolist()  # at most the victim's first step
    assert state[FIRST] == done.sum()
    for k in range(nprocs):
        if k in killed.values():
            assert done[k] < n
        else:
            assert done[k] == n


def hold_until_killed(sync, what, ready):
    if what == "acquire":
        sync.acquire()
    elif what == "barrier":
        ready.set()
        with contextlib.suppress(threading.BrokenBarrierError):  # when the test ends
            while True:
                sync.wait()
    ready.set()
    time.sleep(600)


def start_holder(ctx, sync, what="acquire"):
    ready = cowbuf.Event()
    p = ctx.Process(target=hold_until_killed, args=(sync, what, ready))
    p.start()
    assert ready.wait(60), "the holder did not start"
    return p


@pytest.mark.parametrize("kind", [cowbuf.Lock, cowbuf.RLock])
def test_lock_of_a_killed_holder_goes_to_the_next_acquire(mp_context, kind):
    lock = kind()
    holder = start_holder(mp_context, lock)
    try:
        assert lock.acquire(timeout=0.05) is False
        holder.kill()
        wait_until(lambda: not os.path.exists(f"/proc/{holder.pid}") or
                   _proc_state(holder.pid) == "Z", timeout=30, what="the holder's death")
        # not reaped yet: a zombie until the join below
        t0 = time.monotonic()
        assert lock.acquire(timeout=30) is True
        assert time.monotonic() - t0 < 1.0
        assert lock.owner_died is True
        lock.release()
        assert lock.owner_died is False
        assert lock.acquire(False) and not lock.owner_died
        lock.release()
    finally:
        holder.kill()
        holder.join()


def _proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_a_try_lock_takes_the_lock_of_a_dead_holder(mp_context):
    lock = cowbuf.Lock()
    holder = start_holder(mp_context, lock)
    holder.kill()
    holder.join()
    assert lock.acquire(False) is True and lock.owner_died


@pytest.mark.skipif(not LINUX, reason="reads start times in /proc")
def test_a_holder_pid_reused_by_another_process_is_taken_for_dead():
    lock = cowbuf.Lock()
    view = state_of(lock)
    pid = os.getppid()  # alive: stands for a process that reused the holder's pid
    with open(f"/proc/{pid}/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: the start time
    struct.pack_into("Q", view, 16, ((start & 0xFFFFFFFF) << 32) | pid)
    assert lock.acquire(timeout=0.1) is False  # that very process holds it
    struct.pack_into("Q", view, 16, (((start + 1) & 0xFFFFFFFF) << 32) | pid)
    assert lock.acquire(timeout=10) is True and lock.owner_died


@pytest.mark.parametrize("bounded", [False, True])
def test_tracked_semaphore_takes_back_the_permits_of_the_dead(mp_context, bounded):
    make = cowbuf.BoundedSemaphore if bounded else cowbuf.Semaphore
    sem = make(2, track_holders=True)
    holders = [start_holder(mp_context, sem) for _ in range(2)]
    try:
        assert sem.get_value() == 0 and sem.acquire(timeout=0.05) is False
        for holder in holders:
            holder.kill()
            assert sem.acquire(timeout=30) is True  # the dead one's permit
            assert sem.get_value() == 0
        sem.release(2)
        assert sem.get_value() == 2
    finally:
        for holder in holders:
            holder.kill()
            holder.join()


def test_plain_semaphore_permit_of_the_dead_stays_taken(mp_context):
    # the documented limit: a plain permit says nothing of its holder
    sem = cowbuf.Semaphore(1)
    holder = start_holder(mp_context, sem)
    holder.kill()
    holder.join()
    assert sem.get_value() == 0 and sem.acquire(timeout=0.1) is False
    sem.release()  # the recovery: whoever knows the holder died gives it back
    assert sem.acquire(False)


def wait_on_condition(cond, ready):
    with cond:
        ready.set()
        cond.wait()
    time.sleep(600)


def test_a_waiter_killed_in_condition_wait_blocks_nobody(mp_context):
    cond = cowbuf.Condition()
    ready = cowbuf.Event()
    victim = mp_context.Process(target=wait_on_condition, args=(cond, ready))
    victim.start()
    try:
        assert ready.wait(60)
        with cond:  # the victim is asleep in wait() once it has let the lock go
            pass
        victim.kill()
        victim.join()

        def wait_notified():
            with cond:
                return cond.wait(30)

        thread, box = in_thread(wait_notified)
        wait_until(lambda: "2 waiting" in repr(cond), timeout=10, what="the live waiter")
        t0 = time.monotonic()
        with cond:
            cond.notify()  # returns at once, and wakes the live waiter
        thread.join(30)
        assert box == {"result": True}
        assert time.monotonic() - t0 < 10
    finally:
        victim.kill()
        victim.join()


def barrier_rounds(barrier, passed, k):
    try:
        while True:
            barrier.wait(120)
            passed[k] += 1
    except threading.BrokenBarrierError:
        return "broken"


def test_barrier_member_killed_breaks_the_others_out(mp_context):
    parties = 4
    barrier = cowbuf.Barrier(parties)
    passed = cowbuf.array("q", parties)
    procs = [mp_context.Process(target=barrier_rounds, args=(barrier, passed, k))
             for k in range(parties - 1)]
    for p in procs:
        p.start()
    victim = start_holder(mp_context, barrier, "barrier")
    try:
        wait_until(lambda: min(passed[:parties - 1]) >= 20, timeout=60, what="twenty rounds")
        victim.kill()
        t0 = time.monotonic()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert time.monotonic() - t0 < 30
        assert barrier.broken
    finally:
        for p in [*procs, victim]:
            p.kill()
            p.join()


# -- signals -------------------------------------------------------------------------------

class Interrupted(Exception):
    pass


def _raise_interrupted(signum, frame):
    raise Interrupted


def blocked_calls():
    """(name, the blocking call, a check of the state after the interruption)."""
    lock, rlock = cowbuf.Lock(), cowbuf.RLock()
    sem, event = cowbuf.Semaphore(0), cowbuf.Event()
    cond_lock = cowbuf.Lock()
    cond, barrier = cowbuf.Condition(cond_lock), cowbuf.Barrier(2)
    counter, items = cowbuf.Counter(3), cowbuf.array("q", 2)
    lock.acquire()
    holder = threading.Thread(target=rlock.acquire)
    holder.start()
    holder.join()

    def cond_wait():
        with cond:
            cond.wait()

    return [
        ("Lock.acquire", lock.acquire, lambda: lock.locked()),
        ("RLock.acquire", rlock.acquire, lambda: rlock.locked()),
        ("Semaphore.acquire", sem.acquire,
         lambda: _core_sleepers(sem) == 0 and sem.get_value() == 0),
        ("Event.wait", event.wait, lambda: not event.is_set()),
        ("Condition.wait", cond_wait,
         lambda: not cond_lock.locked() and "0 waiting" in repr(cond)),
        # a party interrupted is gone from the round: the others must not wait for it
        ("Barrier.wait", barrier.wait, lambda: barrier.broken),
        ("Counter.wait", lambda: counter.wait(3), lambda: counter.value == 3),
        ("Array.wait_at", lambda: items.wait_at(1, 0), lambda: items[1] == 0),
    ]


@pytest.mark.parametrize("index", range(8))
def test_a_signal_interrupts_every_wait(index):
    name, call, check = blocked_calls()[index]
    old = signal.signal(signal.SIGALRM, _raise_interrupted)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            call()
        assert time.monotonic() - t0 < 0.05 + SIGNAL_LATENCY, name
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert check(), name


@pytest.mark.parametrize("index", range(8))
def test_a_signal_to_another_thread_interrupts_the_main_threads_wait(index):
    name, call, check = blocked_calls()[index]
    old = signal.signal(signal.SIGUSR1, _raise_interrupted)
    stop = threading.Event()
    bystander = threading.Thread(target=stop.wait)
    bystander.start()
    try:
        timer = threading.Timer(0.05, signal.pthread_kill, (bystander.ident, signal.SIGUSR1))
        t0 = time.monotonic()
        timer.start()
        with pytest.raises(Interrupted):
            call()
        assert time.monotonic() - t0 < 0.05 + SIGNAL_LATENCY, name
        timer.join()
    finally:
        stop.set()
        bystander.join()
        signal.signal(signal.SIGUSR1, old)
    assert check(), name


def test_ctrl_c_interrupts_a_lock_wait_with_keyboard_interrupt():
    done = run_python("""
        import os, signal, threading, time
        import cowbuf
        lock = cowbuf.Lock()
        lock.acquire()
        t0 = time.monotonic()
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            lock.acquire()
        except KeyboardInterrupt:
            print("interrupted after", time.monotonic() - t0)
    """)
    seconds = float(done.stdout.split()[-1])
    assert 0.2 <= seconds < 0.2 + SIGNAL_LATENCY, done.stdout


# -- fork while a thread holds a lock ----------------------------------------------------

@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="needs fork")
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_child_forked_while_a_thread_holds_the_lock_waits_for_its_release(kind):
    done = run_python(f"""
        import os, threading, time, warnings
        import cowbuf
        lock = cowbuf.{kind}()
        released_at = cowbuf.array("d", 1)
        held, release = threading.Event(), threading.Event()

        def hold():
            with lock:
                held.set()
                release.wait()
                released_at[0] = time.monotonic()

        thread = threading.Thread(target=hold)
        thread.start()
        held.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with a thread
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # the lock is shared, not copied: the parent's thread still holds it
                assert lock.locked() and not lock.acquire(False)
                if "{kind}" == "RLock":
                    try:
                        lock.release()
                    except RuntimeError:
                        pass
                    else:
                        raise AssertionError("released the parent's RLock")
                assert lock.acquire(timeout=60)
                acquired_at = time.monotonic()
                assert acquired_at >= released_at[0] > 0, (acquired_at, released_at[0])
                assert not lock.owner_died  # the holder released it: nobody died
                lock.release()
                code = 0
            finally:
                os._exit(code)
        time.sleep(0.2)
        release.set()
        thread.join()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        print("ok")
    """)
    assert done.stdout.strip() == "ok"
