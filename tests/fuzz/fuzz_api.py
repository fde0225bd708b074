#!/usr/bin/env python3
"""Fuzz target over cowbuf's public API.

Each input is a program: a sequence of calls on Regions, Arrays, Counters, their
slices and their buffer exports (memoryview, numpy), with arguments read from the
input bytes, in any order: close, freeze, del and garbage collection included, and
numbers whose __index__ runs another step of the program in the middle of a call.
Exceptions that cowbuf documents (ValueError, TypeError, IndexError, OverflowError,
BufferError, MemoryError) are fine; anything else, a failed consistency check, and
of course a crash (segfault, SIGBUS, abort, a sanitizer report) is a finding.

    python tests/fuzz/fuzz_api.py -max_total_time=60 CORPUS_DIR tests/fuzz/corpus
        fuzz with atheris (tools/fuzz.sh does this in a scratch directory)
    python tests/fuzz/fuzz_api.py FILE_OR_DIR...
        without atheris installed, or with --replay: run the given inputs once
    python tests/fuzz/fuzz_api.py --trace FILE
        print the program an input decodes to
    python tests/fuzz/fuzz_api.py -merge=1 NEW_DIR CORPUS_DIR...
        minimise a corpus (libFuzzer runs this file itself: put the python that has
        atheris first on PATH)
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import pickle
import struct
import sys
import warnings
from decimal import Decimal
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

try:
    import atheris
except ImportError:  # replaying needs only cowbuf
    atheris = None

FUZZING = (__name__ == "__main__" and atheris is not None
           and "--replay" not in sys.argv and "--trace" not in sys.argv)
if FUZZING:
    with atheris.instrument_imports(include=["cowbuf"]):
        import cowbuf
else:
    import cowbuf

try:
    import numpy
except ImportError:
    numpy = None

EXPECTED = (ValueError, TypeError, IndexError, OverflowError, BufferError, MemoryError,
            KeyError, ZeroDivisionError)
TYPECODES = cowbuf.TYPECODES
MAX_STEPS = 64
MAX_OBJECTS = 24
MAX_BYTES = 1 << 20  # no allocation of more than this much real memory per input

EDGES = [0, 1, -1, 2, 7, 8, 9, 63, 64, 127, 128, -128, -129, 255, 256, 4095, 4096, 4097,
         65535, 65536, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32,
         2**62, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**30, -(10**30)]
FLOATS = [0.0, -0.0, 1.5, -2.5, float("nan"), float("inf"), float("-inf"), 1e300, 3.5e38,
          1e-310]
TRACE = False


class Reader:
    """Reads arguments from the input bytes; zeros once they run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        """An int in range(n)."""
        if n <= 256:
            return self.byte() % n
        return (self.byte() | self.byte() << 8 | self.byte() << 16) % n

    def raw(self, nbytes: int) -> bytes:
        chunk = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return chunk.ljust(nbytes, b"\0")


class Index:
    """An integer that is not an int."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"Index({self.value})"


class Sneaky:
    """A number whose conversion runs another step of the program first: the step
    may close, freeze or drop the very object the call is working on."""

    def __init__(self, fuzz: Fuzz, value: int) -> None:
        self.fuzz = fuzz
        self.value = value

    def __index__(self) -> int:
        self.fuzz.disrupt()
        return self.value

    def __float__(self) -> float:
        self.fuzz.disrupt()
        return float(self.value)

    def __repr__(self) -> str:
        return f"Sneaky({self.value})"


class Fuzz:
    def __init__(self, data: bytes) -> None:
        self.r = Reader(data)
        self.regions: list[cowbuf.Region] = []
        self.arrays: list[cowbuf.Array] = []
        self.counters: list[cowbuf.Counter] = []
        self.exports: list[object] = []
        self.iterators: list[object] = []
        self.syncs: list[object] = []
        self.allocated = 0
        self.disrupting = False

    # -- arguments ------------------------------------------------------------------

    def integer(self) -> int:
        kind = self.r.byte() % 4
        if kind == 0:
            return self.r.byte() % 17 - 8
        if kind == 1:
            return EDGES[self.r.below(len(EDGES))]
        if kind == 2:
            return int.from_bytes(self.r.raw(2), "little", signed=True)
        return int.from_bytes(self.r.raw(8), "little", signed=True)

    def value(self) -> object:
        kind = self.r.byte() % 12
        if kind < 6:
            return self.integer()
        if kind == 6:
            return FLOATS[self.r.below(len(FLOATS))]
        if kind == 7:
            return struct.unpack("<d", self.r.raw(8))[0]
        if kind == 8:
            return Index(self.integer())
        if kind == 9 and not self.disrupting:
            return Sneaky(self, self.integer())
        if kind == 10:
            return bool(self.r.byte() & 1)
        return [None, "1", b"\x01", 1j, Decimal("1"), Decimal("0.5"), [1], ()][self.r.below(8)]

    def key(self, length: int) -> object:
        kind = self.r.byte() % 6
        if kind < 3:
            return self.r.byte() % (2 * length + 3) - length - 1 if length >= 0 else 0
        if kind == 3:
            return self.value()
        return self.slice_key(length)

    def slice_key(self, length: int) -> slice:
        bound = [None, self.integer(), self.r.byte() % (length + 3) - 1,
                 -(self.r.byte() % (length + 3))]
        step = [None, 1, -1, 2, -2, 3, -3, 0, self.integer(), None]
        return slice(bound[self.r.below(4)], bound[self.r.below(4)], step[self.r.below(10)])

    def size(self) -> int:
        kind = self.r.byte() % 8
        if kind < 5:
            return self.r.below(600)
        if kind == 5:
            return self.r.below(70_000)
        return [0, 4095, 4096, 4097, -1, 2**62, 2**63, 2**64, 10**30, -(2**63)][self.r.below(10)]

    def pick(self, items: list) -> object:
        return items[self.r.below(len(items))] if items else None

    def keep(self, items: list, obj: object) -> None:
        items.append(obj)
        if len(items) > MAX_OBJECTS:
            del items[self.r.below(len(items))]

    def some_array(self) -> cowbuf.Array | None:
        return self.pick(self.arrays)

    def afford(self, nbytes: object) -> bool:
        """Below the memory budget, or an argument that is refused before any
        allocation (negative, or far too large to map)."""
        if not isinstance(nbytes, int) or nbytes < 0 or nbytes > 2**61:
            return True
        if self.allocated + nbytes > MAX_BYTES:
            return False
        self.allocated += nbytes
        return True

    def source(self, n: int, tc: str) -> object:
        """Something to assign from or construct with."""
        kind = self.r.byte() % 7
        if kind == 0:
            return [self.value() for _ in range(min(n, 64))] + [0] * max(0, n - 64)
        if kind == 1:
            return (self.value() for _ in range(min(n, 64)))
        if kind == 2 and self.arrays:
            return self.some_array()
        if kind == 3 and self.exports:
            return self.pick(self.exports)
        if kind == 4 and numpy is not None:
            dtype = (TYPECODES + "e?")[self.r.below(14)]
            return numpy.zeros(min(n, 4096), dtype=dtype)
        if kind == 5:
            # at most 4096 items: converting a billion of them is slow, not wrong
            return range(self.integer(), self.integer(), self.integer() or 1)[:4096]
        return bytes(self.r.raw(min(n, 64)))

    # -- steps ------------------------------------------------------------------------

    def new_region(self) -> None:
        n = self.size()
        if self.afford(n):
            self.keep(self.regions, cowbuf.Region(n, populate=bool(self.r.byte() & 1)))

    def new_array(self) -> None:
        tc = TYPECODES[self.r.below(12)]
        if self.r.byte() & 1:
            n = self.size()
            if self.afford(n * 8 if isinstance(n, int) else 0):
                self.keep(self.arrays, cowbuf.array(tc, n))
        else:
            self.keep(self.arrays, cowbuf.array(tc, self.source(self.r.below(300), tc)))

    def new_counter(self) -> None:
        if self.r.byte() & 1 and self.regions:
            self.keep(self.counters, self.pick(self.regions).counter(self.value()))
        else:
            self.keep(self.counters, cowbuf.Counter(self.value(), padded=bool(self.r.byte() & 1)))

    def view(self) -> None:
        region = self.pick(self.regions)
        if region is None:
            return
        tc = TYPECODES[self.r.below(12)]
        offset = self.value() if self.r.byte() & 1 else 8 * self.r.below(64)
        length = None if self.r.byte() & 1 else self.value()
        self.keep(self.arrays, region.view(tc, offset, length))

    def slice_(self) -> None:
        a = self.some_array()
        if a is not None:
            self.keep(self.arrays, a[self.slice_key(len(a) if not a.region.closed else 0)])

    def get_item(self) -> None:
        a = self.some_array()
        if a is not None:
            a[self.key(len(a) if not a.region.closed else 0)]

    def set_item(self) -> None:
        a = self.some_array()
        if a is None:
            return
        key = self.key(len(a) if not a.region.closed else 0)
        if isinstance(key, slice) and not a.region.closed:
            a[key] = self.source(len(range(*key.indices(len(a)))) if key.step != 0 else 1,
                                 a.typecode)
        else:
            a[key] = self.value()

    def whole(self) -> None:
        a = self.some_array()
        if a is None:
            return
        op = self.r.byte() % 10
        if op == 0:
            a.fill(self.value())
        elif op == 1:
            a.sum()
        elif op == 2:
            a.min()
        elif op == 3:
            a.max()
        elif op == 4:
            self.check(a)
        elif op == 5:
            self.keep(self.iterators, iter(a) if self.r.byte() & 1 else reversed(a))
        elif op == 6:
            self.keep(self.arrays, a.toreadonly())
        elif op == 7:
            b = self.some_array()
            if b is not None:
                assert (a == b) is (not (a != b))
        elif op == 8:
            repr(a)
            len(a), a.nbytes, a.readonly, a.typecode, a.itemsize
        else:
            a.tolist()

    def check(self, a: cowbuf.Array) -> None:
        """Every way of reading an open array agrees."""
        if a.region.closed:
            return
        items = a.tolist()
        assert len(items) == len(a)
        data = a.tobytes()
        assert len(data) == a.nbytes == len(a) * a.itemsize
        with memoryview(a) as m:
            assert m.tobytes() == data
            assert m.format == a.typecode and m.readonly == a.readonly
            assert m.tolist() == items or any(x != x for x in items)  # NaNs
        assert len(list(a)) == len(items) == len(list(reversed(a)))
        if numpy is not None:
            n = numpy.asarray(a)
            assert n.tobytes() == data
            del n
        if a.typecode not in "fd":
            assert a.sum() == sum(items)

    def export(self) -> None:
        target = self.pick(self.arrays) if self.r.byte() & 1 else self.pick(self.regions)
        if target is None:
            return
        kind = self.r.byte() % 4
        if kind == 0 or numpy is None:
            self.keep(self.exports, memoryview(target))
        elif kind == 1:
            self.keep(self.exports, numpy.asarray(target))
        elif kind == 2:
            self.keep(self.exports, numpy.frombuffer(target, dtype=numpy.uint8))
        else:
            m = memoryview(target)
            self.keep(self.exports, m[self.slice_key(len(m))])

    def use_export(self) -> None:
        if not self.exports:
            return
        at = self.r.below(len(self.exports))
        e = self.exports[at]
        op = self.r.byte() % 4
        if op == 0:
            if isinstance(e, memoryview):
                e.release()
            else:
                del self.exports[at]
        elif op == 1:
            bytes(e) if isinstance(e, memoryview) else e.tobytes()
        elif op == 2 and getattr(e, "ndim", 0) == 1 and len(e):
            # numpy raises ValueError and memoryview TypeError for read-only memory
            e[self.r.below(len(e))] = self.r.byte() % 100
        else:
            del self.exports[at]

    def close(self) -> None:
        if self.r.byte() & 1:
            target = self.pick(self.regions)
        else:
            a = self.some_array() if self.r.byte() & 1 else self.pick(self.counters)
            target = None if a is None else a.region
        if target is None:
            return
        if self.r.byte() & 1:
            target.close()
        else:
            with target:
                pass

    def freeze(self) -> None:
        if self.r.byte() & 1:
            r = self.pick(self.regions)
            if r is not None:
                r.freeze()
        else:
            a = self.some_array()
            if a is not None:
                a.freeze()

    def pickle_(self) -> None:
        pool = [x for x in (self.some_array(), self.pick(self.regions), self.pick(self.counters))
                if x is not None]
        if not pool:
            return
        obj = self.pick(pool)
        if self.r.byte() & 1:
            copy = pickle.loads(pickle.dumps(obj, self.r.byte() % (pickle.HIGHEST_PROTOCOL + 1)))
        else:
            # by reference: in this process it is the same memory again
            copy = pickle.loads(ForkingPickler.dumps(obj))
        if isinstance(copy, cowbuf.Array):
            assert copy.tobytes() == obj.tobytes()
            self.keep(self.arrays, copy)
        elif isinstance(copy, cowbuf.Counter):
            assert copy.value == obj.value
            self.keep(self.counters, copy)
        else:
            assert bytes(memoryview(copy)) == bytes(memoryview(obj))
            self.keep(self.regions, copy)

    def atomic(self) -> None:
        a = self.some_array()
        if a is None:
            return
        op = self.r.byte() % 5
        n = len(a) if not a.region.closed else 0
        if op == 0:
            a.atomic_load(self.key(n))
        elif op == 1:
            a.atomic_store(self.key(n), self.value())
        elif op == 2:
            a.atomic_add(self.key(n), self.value())
        elif op == 3:
            a.atomic_cas(self.key(n), self.value(), self.value())
        else:
            count = self.r.below(40)
            indices = self.source(count, "q") if self.r.byte() & 1 else \
                [self.r.byte() % (2 * n + 1) - n for _ in range(count)]
            values = self.value() if self.r.byte() & 1 else self.source(count, a.typecode)
            a.atomic_add_at(indices, values)

    def counter(self) -> None:
        c = self.pick(self.counters)
        if c is None:
            return
        op = self.r.byte() % 9
        if op == 0:
            c.add(self.value())
        elif op == 1:
            c.sub(self.value())
        elif op == 2:
            c.fetch_add(self.value())
        elif op == 3:
            c.exchange(self.value())
        elif op == 4:
            c.compare_exchange(self.value(), self.value())
        elif op == 5:
            c.store(self.value())
        elif op == 6:
            assert c.load() == c.value == int(c)
        elif op == 7:
            repr(c)
        else:
            c.__init__(self.value())  # a second __init__ is refused

    def timeout(self) -> object:
        """A timeout that cannot block for long (a huge one waits forever)."""
        return [0, 0.0, -1.0, 1e-4, float("nan"), "1", Decimal("0.0001"),
                -abs(self.integer())][self.r.below(8)]

    def sync(self) -> None:
        """Locks, semaphores, events, conditions, barriers, and Counter.wait: every
        call that could block gets a timeout that cannot (a single thread would
        wait for itself)."""
        op = self.r.byte() % 10
        if op == 0 or not self.syncs:
            locks = [x for x in self.syncs if isinstance(x, (cowbuf.Lock, cowbuf.RLock))]
            make = [cowbuf.Lock, cowbuf.RLock, lambda: cowbuf.Semaphore(self.value()),
                    lambda: cowbuf.BoundedSemaphore(self.value(),
                                                    track_holders=bool(self.r.byte() & 1)),
                    cowbuf.Event, lambda: cowbuf.Condition(self.pick(locks)),
                    lambda: cowbuf.Barrier(self.value(), timeout=1e-4)][self.r.below(7)]
            self.keep(self.syncs, make())
            return
        obj = self.pick(self.syncs)
        with contextlib.suppress(RuntimeError):  # threading's, for misuse (and barriers)
            if op == 1 and isinstance(obj, (cowbuf.Lock, cowbuf.RLock, cowbuf.Semaphore)):
                if self.r.byte() & 1:
                    obj.acquire(False)
                else:
                    obj.acquire(True, 1e-4)
            elif op == 2 and isinstance(obj, (cowbuf.Lock, cowbuf.RLock, cowbuf.Condition)):
                obj.release()
            elif op == 2 and isinstance(obj, cowbuf.Semaphore):
                obj.release(self.value())
            elif op == 3 and isinstance(obj, cowbuf.Event):
                [obj.set, obj.clear, obj.is_set, lambda: obj.wait(self.timeout())][
                    self.r.below(4)]()
            elif op == 3 and isinstance(obj, cowbuf.Condition):
                if obj.acquire(False):
                    try:
                        [lambda: obj.notify(self.value()), obj.notify_all,
                         lambda: obj.wait(self.timeout())][self.r.below(3)]()
                    finally:
                        obj.release()
                else:
                    obj.notify()
            elif op == 3 and isinstance(obj, cowbuf.Barrier):
                [lambda: obj.wait(self.timeout()), obj.reset, obj.abort,
                 lambda: (obj.parties, obj.n_waiting, obj.broken)][self.r.below(4)]()
            elif op == 4:
                c = self.pick(self.counters)
                if c is not None:
                    c.wait(self.value(), self.timeout()) if self.r.byte() & 1 else \
                        c.notify(self.value())
            elif op == 5:
                a = self.some_array()
                if a is not None:
                    n = len(a) if not a.region.closed else 0
                    a.wait_at(self.key(n), self.value(), self.timeout()) if self.r.byte() & 1 \
                        else a.notify_at(self.key(n), self.value())
            elif op == 6:
                again = pickle.loads(ForkingPickler.dumps(obj))
                assert type(again) is type(obj)
                self.keep(self.syncs, again)
                pickle.dumps(obj)  # a copy of a lock is refused: TypeError
            elif op == 7:
                cls = type(obj)
                self.keep(self.syncs, cls.__new__(cls))
            elif op == 8:
                obj.__init__()  # a second __init__ (or a first one without arguments)
            else:
                repr(obj)

    def iterate(self) -> None:
        it = self.pick(self.iterators)
        if it is not None:
            for _ in range(self.r.below(8)):
                next(it, None)

    def misuse(self) -> None:
        op = self.r.byte() % 6
        if op == 0:
            self.keep(self.arrays, cowbuf.Array.__new__(cowbuf.Array))
        elif op == 1:
            self.keep(self.regions, cowbuf.Region.__new__(cowbuf.Region))
        elif op == 2:
            self.keep(self.counters, cowbuf.Counter.__new__(cowbuf.Counter))
        elif op == 3 and self.regions:
            self.pick(self.regions).__init__(self.size())
        elif op == 4:
            cowbuf.Array()
        else:
            cowbuf.array(self.value(), self.value())

    def drop(self) -> None:
        pools = [self.regions, self.arrays, self.counters, self.exports, self.iterators,
                 self.syncs]
        pool = pools[self.r.below(6)]
        if pool:
            del pool[self.r.below(len(pool))]
        if self.r.byte() & 1:
            gc.collect()

    def disrupt(self) -> None:
        """A step run from inside another call (by a Sneaky number)."""
        if self.disrupting:
            return
        self.disrupting = True
        try:
            step = [self.close, self.freeze, self.drop, self.use_export, self.export,
                    self.slice_][self.r.below(6)]
            if TRACE:
                print(f"    (inside) {step.__name__}")
            with contextlib.suppress(*EXPECTED):
                step()
        finally:
            self.disrupting = False

    STEPS = ("new_region", "new_array", "new_counter", "view", "slice_", "get_item",
             "set_item", "whole", "export", "use_export", "close", "freeze", "pickle_",
             "atomic", "counter", "iterate", "misuse", "drop", "sync")

    def run(self) -> None:
        steps = 0
        while self.r.more() and steps < MAX_STEPS:
            steps += 1
            step = getattr(self, self.STEPS[self.r.below(len(self.STEPS))])
            if TRACE:
                print(step.__name__)
            try:
                step()
            except EXPECTED as exc:
                if TRACE:
                    print(f"    -> {type(exc).__name__}: {exc}")
        # Whatever happened, everything still open reads consistently.
        for a in self.arrays:
            with contextlib.suppress(*EXPECTED):
                self.check(a)


def test_one_input(data: bytes) -> None:
    Fuzz(data).run()
    # dropping everything releases every mapping except the current arena and the
    # outbox of by-reference sends (checked over many inputs by the torture tests)


def _inputs(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p])
    return files


def main(argv: list[str]) -> None:
    global TRACE
    if "--trace" in argv:
        TRACE = True
    args = [a for a in argv[1:] if a not in ("--replay", "--trace")]
    gc.freeze()  # what is loaded now stays: collections in drop() see only new objects
    if not FUZZING:
        files = _inputs([a for a in args if not a.startswith("-")])
        for f in files:
            if TRACE:
                print(f"# {f}")
            test_one_input(f.read_bytes())
        print(f"replayed {len(files)} inputs")
        return
    # Coverage feedback: cowbuf's Python modules (instrumented at import) and every
    # function of this program, whose branches say which steps ran how far. The C
    # extension gives none (that needs clang's -fsanitize=fuzzer-no-link).
    for obj in list(globals().values()):
        functions = vars(obj).values() if isinstance(obj, type) else [obj]
        for f in functions:
            if inspect.isfunction(f) and f.__module__ == __name__:
                atheris.instrument_func(f)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    warnings.simplefilter("error")
    main(sys.argv)
