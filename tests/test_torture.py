"""Lifetime torture: random interleavings of close, del, freeze, buffer exports,
slices, pickling (by value, and by reference through multiprocessing's pickler) and
fork never crash, never break an object that is still open, and never leak a mapping,
an fd or a byte of memory once everything is dropped."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import random
import sys
import tracemalloc
from multiprocessing.reduction import ForkingPickler

import pytest
from helpers import cowbuf_mappings, open_fds

import cowbuf
from cowbuf import _sharing

np = pytest.importorskip("numpy")

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="reads /proc/self/maps and /proc/self/fd")
EXPECTED = (ValueError, TypeError, IndexError, OverflowError, BufferError)


class Torture:
    """A pool of live objects and a random step to apply to it."""

    def __init__(self, seed: int, allow_fork: bool) -> None:
        self.rng = random.Random(seed)
        self.allow_fork = allow_fork
        self.regions: list[cowbuf.Region] = []
        self.arrays: list[cowbuf.Array] = []
        self.counters: list[cowbuf.Counter] = []
        self.exports: list[object] = []
        self.sent: list[bytes] = []  # by-reference pickles not loaded yet
        self.children = 0

    def pick(self, items: list):
        return self.rng.choice(items) if items else None

    def keep(self, items: list, obj: object) -> None:
        items.append(obj)
        if len(items) > 40:
            del items[self.rng.randrange(len(items))]

    def any_object(self):
        return self.pick([x for x in (self.pick(self.regions), self.pick(self.arrays),
                                      self.pick(self.counters)) if x is not None])

    # -- steps

    def create(self) -> None:
        r = self.rng
        kind = r.randrange(5)
        if kind == 0:
            self.keep(self.regions, cowbuf.Region(r.choice([1, 100, 4096, 5000, 1 << 20]),
                                                  populate=r.random() < 0.3))
        elif kind == 1:
            tc = r.choice(cowbuf.TYPECODES)
            n = r.choice([0, 1, 7, 100, 600, 20_000])
            self.keep(self.arrays, cowbuf.array(tc, range(n % 100) if tc in "bB" else range(n)))
        elif kind == 2:
            self.keep(self.counters, cowbuf.Counter(r.randrange(1000), padded=r.random() < 0.5))
        elif kind == 3 and self.regions:
            region = self.pick(self.regions)
            tc = r.choice(cowbuf.TYPECODES)
            self.keep(self.arrays, region.view(tc, 0, r.choice([None, 0, 1])))
        elif kind == 4 and self.regions:
            self.keep(self.counters, self.pick(self.regions).counter(0))

    def slice(self) -> None:
        a = self.pick(self.arrays)
        if a is not None:
            n = len(a) if not a.region.closed else 0
            key = slice(self.rng.randint(-n - 1, n + 1), self.rng.randint(-n - 1, n + 1),
                        self.rng.choice([1, -1, 2, -3, 7]))
            view = a[key]
            self.keep(self.arrays, view.toreadonly() if self.rng.random() < 0.3 else view)

    def export(self) -> None:
        target = self.pick(self.arrays) if self.rng.random() < 0.6 else self.pick(self.regions)
        if target is None:
            return
        kind = self.rng.randrange(4)
        if kind == 0:
            self.keep(self.exports, memoryview(target))
        elif kind == 1:
            self.keep(self.exports, np.asarray(target))
        elif kind == 2:
            self.keep(self.exports, np.frombuffer(target, dtype=np.uint8))
        else:
            with memoryview(target) as m:
                self.keep(self.exports, m[::2].toreadonly())
            # the slice holds its own export of `target`; `m` is released

    def release(self) -> None:
        if not self.exports:
            return
        e = self.exports.pop(self.rng.randrange(len(self.exports)))
        if isinstance(e, memoryview) and self.rng.random() < 0.5:
            e.release()

    def write(self) -> None:
        a = self.pick(self.arrays)
        if a is None:
            return
        if self.rng.random() < 0.5:
            a.fill(1)
        elif len(a):
            a[self.rng.randrange(len(a))] = 2
        e = self.pick(self.exports)
        if isinstance(e, np.ndarray) and e.size and e.flags.writeable:
            e.flat[0] = 3

    def close(self) -> None:
        obj = self.any_object()
        if obj is None:
            return
        region = obj if isinstance(obj, cowbuf.Region) else obj.region
        region.close()

    def freeze(self) -> None:
        obj = self.any_object()
        if obj is None:
            return
        (obj if isinstance(obj, cowbuf.Region) else obj.region).freeze()

    def drop(self) -> None:
        pool = self.pick([p for p in (self.regions, self.arrays, self.counters, self.exports)
                          if p])
        if pool:
            del pool[self.rng.randrange(len(pool))]
        if self.rng.random() < 0.2:
            gc.collect()

    def pickle_by_value(self) -> None:
        obj = self.any_object()
        if obj is None:
            return
        copy = pickle.loads(pickle.dumps(obj, self.rng.randrange(pickle.HIGHEST_PROTOCOL + 1)))
        self.check_copy(obj, copy)

    def pickle_by_reference(self) -> None:
        obj = self.any_object()
        if obj is None:
            return
        self.sent.append(bytes(ForkingPickler.dumps(obj)))
        if self.rng.random() < 0.7:
            copy = pickle.loads(self.sent.pop(self.rng.randrange(len(self.sent))))
            if isinstance(copy, type(obj)) and self.rng.random() < 0.5:
                self.keep(self.arrays if isinstance(copy, cowbuf.Array) else
                          self.regions if isinstance(copy, cowbuf.Region) else
                          self.counters, copy)

    def check_copy(self, obj, copy) -> None:
        if isinstance(obj, cowbuf.Counter):
            assert copy.value == obj.value
        elif isinstance(obj, cowbuf.Array):
            assert copy.tobytes() == obj.tobytes() and copy.readonly == obj.readonly
        else:
            assert bytes(memoryview(copy)) == bytes(memoryview(obj))
            assert copy.frozen == obj.frozen

    def fork(self) -> None:
        """A forked child runs steps of its own on everything inherited, loads what
        was sent but not received, and checks its objects; then exits."""
        if not self.allow_fork or self.children >= 6:
            return
        self.children += 1
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.rng.seed(self.rng.random())
                self.allow_fork = False
                self.run(30)
                while self.sent:
                    pickle.loads(self.sent.pop())
                self.check_all()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status

    def check_all(self) -> None:
        """Every open array reads the same through every path."""
        for a in self.arrays:
            if a.region.closed:
                with pytest.raises(ValueError):
                    a.tolist()
                continue
            data = a.tobytes()
            with memoryview(a) as m:
                assert m.tobytes() == data
            assert np.asarray(a).tobytes() == data
            assert len(a.tolist()) == len(a)
        for c in self.counters:
            if not c.region.closed:
                assert c.value == int(c)

    STEPS = ["create"] * 4 + ["slice"] * 3 + ["export"] * 3 + ["release"] * 3 + [
        "write", "close", "close", "freeze", "drop", "drop", "pickle_by_value",
        "pickle_by_reference", "fork"]

    def run(self, steps: int) -> None:
        for _ in range(steps):
            step = getattr(self, self.rng.choice(self.STEPS))
            with contextlib.suppress(*EXPECTED):
                step()

    def finish(self) -> None:
        while self.sent:
            pickle.loads(self.sent.pop())
        self.check_all()
        self.regions.clear()
        self.arrays.clear()
        self.counters.clear()
        self.exports.clear()


def _settle() -> None:
    gc.collect()
    _sharing.in_flight()  # sweeps the acknowledged hand-offs


@pytest.fixture
def baseline():
    """The cowbuf mappings and fds of this process once the long-lived ones exist
    (the current arena and frozen arena, the outbox of by-reference sends), and the
    hand-offs in flight then (a message that a killed consumer took in an earlier
    test is never acknowledged: the sender holds it until it exits)."""
    warm = cowbuf.Counter()
    warm.region.freeze()
    pickle.loads(ForkingPickler.dumps(cowbuf.array("q", 5000)))
    del warm
    _settle()
    return cowbuf_mappings(), open_fds(), _sharing.in_flight()


@linux_only
@pytest.mark.parametrize("seed", range(8))
def test_random_lifetimes_never_crash_or_leak(seed, baseline):
    maps_before, fds_before, in_flight_before = baseline
    torture = Torture(seed, allow_fork=seed % 2 == 0)
    torture.run(600)
    torture.finish()
    del torture
    _settle()
    assert _sharing.in_flight() == in_flight_before
    # the current arena may have been replaced by a new one: count, don't compare
    assert len(cowbuf_mappings()) == len(maps_before), cowbuf_mappings()
    assert open_fds() == fds_before or len(open_fds()) == len(fds_before), open_fds()


@linux_only
def test_everything_dropped_frees_every_mapping_and_fd(baseline):
    maps_before, fds_before, _ = baseline
    regions = [cowbuf.Region(1 << 20) for _ in range(20)]
    views = [r.view("d")[::3] for r in regions]
    exports = [np.asarray(v) for v in views[:10]] + [memoryview(r) for r in regions[10:]]
    sent = [bytes(ForkingPickler.dumps(r)) for r in regions[::2]]
    assert len(cowbuf_mappings()) >= len(maps_before) + 20
    received = [pickle.loads(s) for s in sent]
    assert all(r is not None for r in received)
    del regions, views, exports, sent, received
    _settle()
    assert len(cowbuf_mappings()) == len(maps_before)
    assert len(open_fds()) == len(fds_before)


# Calls that fail, on a Region r with a memoryview alive and an Array a of 'q' on it.
FAILING_CALLS = (
    lambda r, a: r.close(),
    lambda r, a: r.freeze(),
    lambda r, a: a.__setitem__(10**30, 1),
    lambda r, a: a.__setitem__(0, 1.5),
    lambda r, a: a.__setitem__(slice(0, 3), [1]),
    lambda r, a: a.__setitem__(slice(0, 3), np.zeros(3, dtype="i")),
    lambda r, a: a.atomic_add_at([0, 10**6], 1),
    lambda r, a: a.atomic_add_at([0, 1], [1, 2**64]),
    lambda r, a: cowbuf.array("q", [1, 2, "x"]),
    lambda r, a: cowbuf.array("z", 1),
)


def _churn(rounds: int) -> None:
    """Every kind of call, the failing ones included, many times over."""
    for i in range(rounds):
        r = cowbuf.Region(4096)
        a = r.view("q")
        a[::2] = range(256)
        a.fill(i)
        a.atomic_add_at([0, 1, 2, -1], [1, 2, 3, 4])
        a.atomic_add_at(np.arange(8), 1)
        a[5:9] = np.arange(4, dtype="q")
        a.sum(), a.min(), a.max(), a.tolist(), a.tobytes(), list(reversed(a[:5]))
        b = cowbuf.array("d", [1.5] * 50)
        c = cowbuf.Counter(i)
        c.add(3)
        pickle.loads(pickle.dumps(a))
        pickle.loads(ForkingPickler.dumps(b))
        m = memoryview(a)
        for call in FAILING_CALLS:
            with contextlib.suppress(*EXPECTED):
                call(r, a)
        m.release()
        r.freeze()
        with contextlib.suppress(TypeError):
            a[0] = 1
        r.close()
        with contextlib.suppress(ValueError):
            a.sum()


def _quiesce() -> None:
    # CPython's type attribute cache keeps up to 4096 attribute names alive, such as
    # the names of the functions that unpickling looks up (fresh strings each time)
    sys._clear_type_cache()
    gc.collect()


def test_no_memory_leak_in_any_call_or_error_path():
    # tracemalloc sees cowbuf's own allocations (PyMem_Malloc) as well as every
    # object it makes: after a warm-up, thousands more rounds leave nothing behind
    _churn(300)
    gc.collect()
    tracemalloc.start()
    try:
        _churn(200)
        _quiesce()
        before = tracemalloc.take_snapshot()
        _churn(2000)
        _quiesce()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    top = after.compare_to(before, "lineno")[:5]
    # a leak of one small object per round would be > 60 kB
    assert growth < 10_000, "\n".join(map(str, top))
