"""Queue: the multiprocessing.Queue API, messages of every size (0 bytes, several times
the ring), cowbuf objects inside messages by reference, exact delivery between real
processes under every start method, and producers and consumers killed in the middle
of put() and get()."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import queue
import random
import signal
import struct
import threading
import time
from multiprocessing.reduction import ForkingPickler

import pytest
from helpers import wait_until

import cowbuf
from cowbuf import _core

SIGNAL_LATENCY = 0.1


def ring_of(q):
    """A writable view of the queue's shared state (white-box)."""
    _, (region,) = _core.SHARED_TYPES[cowbuf.Queue](q)
    return memoryview(region)


# -- the API ---------------------------------------------------------------------------

def test_put_get_in_order():
    q = cowbuf.Queue()
    assert q.empty() and q.qsize() == 0 and not q.full()
    assert repr(q) == "<cowbuf.Queue maxsize_bytes=1048576>"
    items = [(1, 2, 3, 4, 5), "text", None, 3.5, [b"x" * 10, {"a": 1}], b""]
    for item in items:
        q.put(item)
    assert q.qsize() == len(items) and not q.empty()
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_nowait_and_timeouts_raise_full_and_empty():
    q = cowbuf.Queue(4096, maxsize=2)
    assert q.maxsize == 2 and q.maxsize_bytes == 4096
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - t0 >= 0.05
    q.put_nowait(1)
    q.put(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    assert time.monotonic() - t0 >= 0.05
    assert q.get_nowait() == 1 and q.get() == 2
    for call in (lambda: q.get(timeout=-1), lambda: q.put(1, timeout=-0.5)):
        with pytest.raises(ValueError, match="non-negative"):
            call()
    assert q.empty()


def test_ring_of_bytes_fills_up():
    q = cowbuf.Queue(4096)
    n = 0
    with pytest.raises(queue.Full):
        while True:
            q.put_bytes(b"x" * 1000, block=False)
            n += 1
    assert n == 4  # 4 records of 8 + 1000 bytes in 4096
    assert not q.full()  # 64 bytes left: room for small messages
    q.put_bytes(b"y" * 56, False)
    assert q.full()
    assert q.get_bytes() == b"x" * 1000
    q.put_bytes(b"y" * 1000, False)


def test_queue_arguments():
    assert cowbuf.Queue(5000).maxsize_bytes == 8192  # a power of two
    for n in (0, 4095, 65 << 20, -1):
        with pytest.raises(ValueError, match="maxsize_bytes"):
            cowbuf.Queue(n)
    with pytest.raises(TypeError):
        cowbuf.Queue("big")
    assert cowbuf.Queue(maxsize=-5).maxsize == 0
    q = cowbuf.Queue()
    with pytest.raises(TypeError, match="only be called once"):
        q.__init__()
    with pytest.raises(ValueError, match="max_items"):
        q.get_many(0)
    with pytest.raises(TypeError):
        q.put_bytes("text")  # not bytes-like


def test_bytes_messages():
    q = cowbuf.Queue(4096)
    q.put_bytes(b"")
    q.put_bytes(b"abc")
    q.put_bytes(bytearray(b"def"))
    q.put_bytes(memoryview(b"ghij")[1:3])
    q.put_bytes(cowbuf.array("i", [1, 2]))
    assert q.get_bytes() == b""
    assert q.get() == b"abc"  # get() returns the bytes of a put_bytes()
    assert q.get_bytes() == b"def"
    assert q.get_bytes() == b"hi"
    assert q.get_bytes() == struct.pack("ii", 1, 2)
    q.put((1, 2))
    assert pickle.loads(q.get_bytes()) == (1, 2)  # get_bytes() returns a put()'s pickle


@pytest.mark.parametrize("size", [2048, 4096, 10_000, 3 << 20])
def test_messages_larger_than_half_the_ring_go_out_of_band(size):
    q = cowbuf.Queue(4096)
    data = os.urandom(size)
    q.put(data)
    q.put_bytes(data)
    q.put("after")
    assert q.get() == data
    assert q.get_bytes() == data
    assert q.get() == "after"
    assert q.empty()


def test_records_wrap_around_the_ring_intact():
    rng = random.Random(5)
    q = cowbuf.Queue(4096)
    sent = []
    for _ in range(3_000):
        if rng.random() < 0.6 or q.empty():
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 1500)))
            try:
                q.put_bytes(data, block=False)
                sent.append(data)
            except queue.Full:
                pass  # no room for this one now
        else:
            assert q.get_bytes(block=False) == sent.pop(0)
    assert q.get_many(10_000, block=False) == sent


def test_put_many_and_get_many():
    q = cowbuf.Queue(4096, maxsize=10)
    q.put_many(range(10))
    with pytest.raises(queue.Full, match="0 of the 1"):
        q.put_many([10], timeout=0.01)
    assert q.get_many(3) == [0, 1, 2]
    with pytest.raises(queue.Full, match="3 of the 5"):
        q.put_many(range(10, 15), block=False)
    assert q.get_many(100) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    with pytest.raises(queue.Empty):
        q.get_many(5, timeout=0.01)
    q.put_many([])
    assert q.empty()


def test_cowbuf_objects_inside_messages_travel_by_reference():
    q = cowbuf.Queue()
    a = cowbuf.array("q", range(100_000))
    lock = cowbuf.Lock()
    q.put({"array": a, "lock": lock, "counter": cowbuf.Counter(7)})
    got = q.get()
    got["array"][0] = -1
    assert a[0] == -1
    lock.acquire()
    assert got["lock"].locked()
    assert got["counter"].value == 7


def test_a_message_that_cannot_be_pickled_changes_nothing():
    q = cowbuf.Queue()
    q.put(1)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put(lambda: 1)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put_many([2, lambda: 1])
    assert q.qsize() == 1 and q.get() == 1


def test_close_refuses_put_and_get_in_this_object_only():
    q = cowbuf.Queue()
    other = pickle.loads(ForkingPickler.dumps(q))
    q.put(1)
    q.close()
    assert "closed" in repr(q)
    for call in (lambda: q.put(2), q.get, q.qsize, lambda: q.put_many([1]), q.get_many):
        with pytest.raises(ValueError, match="closed"):
            call()
    q.join_thread()
    q.cancel_join_thread()
    assert other.get() == 1


def test_plain_pickle_of_a_queue_is_type_error():
    q = cowbuf.Queue()
    with pytest.raises(TypeError, match="a copy of a Queue"):
        pickle.dumps(q)
    with pytest.raises(TypeError):
        copy.copy(q)


def test_forking_pickler_sends_a_queue_by_reference():
    q = cowbuf.Queue()
    again = pickle.loads(ForkingPickler.dumps(q))
    q.put("x")
    assert again.get() == "x"


def test_a_queue_made_with_new_raises_value_error():
    q = cowbuf.Queue.__new__(cowbuf.Queue)
    assert repr(q) == "<cowbuf.Queue uninitialized>"
    for call in (lambda: q.put(1), q.get, q.qsize, q.empty, q.full, lambda: q.maxsize):
        with pytest.raises(ValueError, match="never initialized"):
            call()


def test_a_queue_reference_to_other_memory_is_value_error():
    lock_region = _core.SHARED_TYPES[cowbuf.Lock](cowbuf.Lock())[1][0]
    with pytest.raises(ValueError, match="bad reference"):
        _core._queue_on(lock_region)
    with pytest.raises(ValueError, match="bad reference"):
        _core._queue_on(cowbuf.Region(8192))
    q = cowbuf.Queue(4096)
    view = ring_of(q)
    struct.pack_into("I", view, 16, 3000)  # a capacity that is not a power of two
    with pytest.raises(ValueError, match="does not fit"):
        _core._queue_on(view.obj)
    struct.pack_into("I", view, 16, 1 << 20)  # larger than the region
    with pytest.raises(ValueError, match="does not fit"):
        _core._queue_on(view.obj)


def test_a_corrupt_record_is_value_error_and_moves_nothing():
    q = cowbuf.Queue(4096)
    q.put_bytes(b"abc")
    view = ring_of(q)
    struct.pack_into("I", view, 192, 100_000)  # the first record's length
    with pytest.raises(ValueError, match="corrupt"):
        q.get()
    assert q.qsize() == 1
    struct.pack_into("I", view, 192, 3)
    assert q.get() == b"abc"


def test_threads_of_one_process():
    q = cowbuf.Queue(4096)
    got = []

    def consume():
        for _ in range(4_000):
            got.append(q.get(timeout=30))

    consumers = [threading.Thread(target=consume) for _ in range(2)]
    for t in consumers:
        t.start()
    producers = [threading.Thread(target=lambda k=k: [q.put((k, i)) for i in range(4_000)])
                 for k in range(2)]
    for t in producers:
        t.start()
    for t in producers + consumers:
        t.join(60)
    assert sorted(got) == sorted((k, i) for k in range(2) for i in range(4_000))


class Interrupted(Exception):
    pass


def _raise_interrupted(signum, frame):
    raise Interrupted


@pytest.mark.parametrize("call", ["get", "put"])
def test_a_signal_interrupts_a_blocked_put_or_get(call):
    q = cowbuf.Queue(4096, maxsize=1)
    if call == "put":
        q.put(0)
    old = signal.signal(signal.SIGALRM, _raise_interrupted)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            q.get() if call == "get" else q.put(1)
        assert time.monotonic() - t0 < 0.05 + SIGNAL_LATENCY
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert q.qsize() == (1 if call == "put" else 0)
    q.put_nowait(2) if call == "get" else q.get_nowait()  # the locks were let go


# -- across processes -------------------------------------------------------------------

def produce(q, k, n):
    for i in range(n):
        q.put((k, i, b"p" * (i % 300)))
    return n


def consume(q, taken, total):
    """Take messages (50 at most at a time) until `taken` counts `total` in all."""
    got = []
    deadline = time.monotonic() + 120
    while taken.value < total and time.monotonic() < deadline:
        try:
            batch = q.get_many(50, timeout=0.05)
        except queue.Empty:
            continue
        got.extend(item[:2] for item in batch)
        taken.add(len(batch))
    return got


def producer_or_consumer(role, *args):
    return produce(*args) if role == "produce" else consume(*args)


def test_four_producers_and_four_consumers_deliver_each_message_once_in_order(run_workers):
    q = cowbuf.Queue(16384)
    n = 2_000
    taken = cowbuf.Counter()
    results = run_workers(producer_or_consumer,
                          [("produce", q, k, n) for k in range(4)]
                          + [("consume", q, taken, 4 * n) for _ in range(4)])
    received = [m for got in results[4:] for m in got]
    assert sorted(received) == [(k, i) for k in range(4) for i in range(n)]
    for got in results[4:]:
        for k in range(4):
            mine = [i for kk, i in got if kk == k]
            assert mine == sorted(mine)  # each producer's messages in its order
    assert q.empty()


def wait_and_get(q):
    t0 = time.monotonic()
    return q.get(timeout=60), time.monotonic() - t0


def test_a_blocked_get_is_woken_by_another_process(run_workers):
    q = cowbuf.Queue()

    def later():
        time.sleep(0.3)
        q.put("hello")

    [(item, waited)] = run_workers(wait_and_get, [(q,)], while_running=later)
    assert item == "hello" and waited < 30


def put_into_full(q, items):
    t0 = time.monotonic()
    for item in items:
        q.put(item, timeout=60)
    return time.monotonic() - t0


def test_a_blocked_put_is_woken_by_a_get_in_another_process(run_workers):
    q = cowbuf.Queue(4096, maxsize=1)

    def drain():
        got = []
        while len(got) < 5:
            got.append(q.get(timeout=60))
        assert got == list(range(5))

    run_workers(put_into_full, [(q, range(5))], while_running=drain)


def send_array(there, back, n):
    a = cowbuf.array("q", n)
    there.put(a)
    answer = back.get(timeout=60)  # the same array, written to by the receiver
    return answer[-1], a[-1]


def test_an_80_mb_array_travels_by_reference(run_workers):
    there, back = cowbuf.Queue(), cowbuf.Queue()

    def receive():
        a = there.get(timeout=60)
        assert len(a) == 10_000_000
        a[-1] = 42
        back.put(a)

    assert run_workers(send_array, [(there, back, 10_000_000)],
                       while_running=receive) == [(42, 42)]


def use_registered_queue(x):
    cowbuf.registry["sync-queue"].put(x * x)
    return x


def test_a_queue_travels_in_the_registry_to_pool_workers(mp_context):
    q = cowbuf.Queue()
    cowbuf.registry["sync-queue"] = q
    try:
        with mp_context.Pool(2, **cowbuf.pool_kwargs()) as pool:
            assert pool.map(use_registered_queue, range(20)) == list(range(20))
        assert sorted(q.get_many(100)) == [x * x for x in range(20)]
    finally:
        del cowbuf.registry["sync-queue"]


# -- producers and consumers killed ------------------------------------------------------

def payload(k, i):
    """The checkable bytes of message (k, i): sizes from nothing to 200 KB, some out of
    band (the ring is 256 KB)."""
    size = [0, 10, 1_000, 40_000, 200_000][(i * 7 + k) % 5]
    seed = hashlib.sha256(f"{k}:{i}".encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def robust_producer(q, acked, k, n, go):
    go.wait(60)
    for i in range(n):
        q.put((k, i, payload(k, i)), timeout=120)
        acked[k] = i + 1
    return n


def robust_consumer(q, seen, n, stop, orphans):
    last = {}
    while True:
        try:
            k, i, data = q.get(timeout=0.2)
        except queue.Empty:
            if stop.is_set():
                return True
            continue
        except ValueError as exc:
            # an out-of-band message whose producer was killed before anyone received
            # it: its region went with its sender (documented); the message is gone
            if "has exited or released it" not in str(exc):
                raise
            orphans.atomic_add(0, 1)
            continue
        assert data == payload(k, i), f"torn message {k}, {i}"
        assert i > last.get(k, -1), f"message {k}, {i} out of order"
        last[k] = i
        seen.atomic_add(k * n + i, 1)


@pytest.mark.slow
def test_sigkill_in_put_and_get_tears_nothing_and_hangs_nothing(mp_context):
    nprod, ncons, n = 4, 3, 150
    q = cowbuf.Queue(1 << 18)
    acked, seen = cowbuf.array("q", nprod), cowbuf.array("q", nprod * n)
    orphans = cowbuf.array("q", 1)  # messages whose killed producer took their memory
    go, stop = cowbuf.Event(), cowbuf.Event()
    producers = [mp_context.Process(target=robust_producer, args=(q, acked, k, n, go))
                 for k in range(nprod)]
    consumers = [mp_context.Process(target=robust_consumer, args=(q, seen, n, stop, orphans))
                 for _ in range(ncons)]
    for p in producers + consumers:
        p.start()
    rng = random.Random(os.getpid())
    killed_producers, killed_consumers = [], []
    try:
        go.set()
        wait_until(lambda: sum(acked) >= nprod * n // 10, timeout=120, what="a tenth")
        for victims, pool in ((killed_producers, producers[:2]),
                              (killed_consumers, consumers[:2])):
            for p in pool:
                time.sleep(rng.uniform(0, 0.05))
                p.kill()
                victims.append(p)
        for p in producers[2:]:
            p.join(120)
            assert p.exitcode == 0
        # the survivors drain everything that was put
        wait_until(lambda: q.empty(), timeout=120, what="the surviving consumers")
        stop.set()
        for p in consumers[2:]:
            p.join(120)
            assert p.exitcode == 0
    finally:
        for p in producers + consumers:
            p.kill()
            p.join()
    lost = [0] * nprod
    for k in range(nprod):
        for i in range(n):
            times = seen[k * n + i]
            assert times <= 1, f"message {k}, {i} delivered {times} times"
            if i < acked[k]:
                lost[k] += times == 0  # put, never delivered: a dead consumer had it
            elif i > acked[k]:
                assert times == 0  # never put
    # a dead consumer takes at most the message it was taking; a dead producer takes
    # its out-of-band messages that nobody had received yet, and only those
    assert sum(lost[2:]) <= len(killed_consumers)
    assert sum(lost) <= len(killed_consumers) + orphans[0]
    assert all(acked[k] == n for k in range(2, nprod))


def put_huge_then_report(q, data_size, ready):
    data = b"z" * data_size
    ready.set()
    q.put_bytes(data)
    time.sleep(600)


@pytest.mark.parametrize("delay", [0.0, 0.003, 0.01])
def test_a_producer_killed_while_copying_leaves_nothing_half_written(mp_context, delay):
    q = cowbuf.Queue(64 << 20)
    ready = cowbuf.Event()
    size = 40 << 20
    p = mp_context.Process(target=put_huge_then_report, args=(q, size, ready))
    p.start()
    try:
        assert ready.wait(60)
        time.sleep(delay)
        p.kill()
        p.join()
        try:
            data = q.get_bytes(timeout=0.2)
        except queue.Empty:
            pass  # killed before the end of its copy: nothing to read
        else:
            assert data == b"z" * size  # or after it: the whole message
        q.put_bytes(b"next", timeout=30)  # its lock went to the next producer
        assert q.get_bytes(timeout=30) == b"next"
    finally:
        p.kill()
        p.join()


def get_huge(q, ready):
    ready.set()
    q.get_bytes()
    time.sleep(600)


@pytest.mark.parametrize("delay", [0.0, 0.003, 0.01])
def test_a_consumer_killed_while_copying_loses_at_most_that_message(mp_context, delay):
    q = cowbuf.Queue(64 << 20)
    size = 40 << 20
    q.put_bytes(b"q" * size)
    q.put_bytes(b"second")
    ready = cowbuf.Event()
    p = mp_context.Process(target=get_huge, args=(q, ready))
    p.start()
    try:
        assert ready.wait(60)
        time.sleep(delay)
        p.kill()
        p.join()
        first = q.get_bytes(timeout=30)
        if first != b"second":
            assert first == b"q" * size  # the victim had not taken it: whole, here
            assert q.get_bytes(timeout=30) == b"second"
        assert q.empty()
    finally:
        p.kill()
        p.join()
