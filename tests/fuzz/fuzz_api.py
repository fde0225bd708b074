#!/usr/bin/env python3
"""Fuzz target over cowbuf's public API.

Each input is a program: a sequence of operations from the table OPS (below), with
arguments read from the input bytes, on Regions, Arrays, Counters, their slices and
their buffer exports (memoryview, numpy), StrArrays, BytesArrays and FrozenDicts
(and ones made from arbitrary bytes), locks, semaphores, events, conditions and
barriers (every wait with a timeout that cannot block), and Queues (what comes out is
what went in, in order), in any order. Besides the calls themselves:
close, freeze, del and garbage collection; numbers whose __index__ runs another step
in the middle of a call; threads that write, read and add without the GIL while the
program goes on; forked children that run steps of their own on what they inherit;
reference cycles through buffer exports and finalizers; and pickles, real and crafted,
by value (pickle) and by reference (multiprocessing's ForkingPickler).

What counts as a finding:
- a crash (segfault, SIGBUS, abort, a sanitizer report) or a hang;
- an exception cowbuf does not document (anything but ValueError, TypeError,
  IndexError, OverflowError, BufferError, MemoryError);
- the wrong documented exception: any use of a closed object is ValueError, a write
  to frozen memory or through a read-only view is TypeError (README; checked whenever
  no other thread runs and no argument ran code in the middle of the call);
- a use of a closed object that does not raise;
- a failed consistency check (every way of reading an array agrees; a copy equals
  its original), or a forked child that fails any of these.

    python tests/fuzz/fuzz_api.py -max_total_time=60 CORPUS_DIR tests/fuzz/corpus
        fuzz with atheris (tools/fuzz.sh does this in a scratch directory)
    python tests/fuzz/fuzz_api.py FILE_OR_DIR...
        without atheris installed, or with --replay: run the given inputs once
    python tests/fuzz/fuzz_api.py --trace FILE
        print the program an input decodes to
    python tests/fuzz/fuzz_api.py -merge=1 NEW_DIR CORPUS_DIR...
        minimise a corpus (libFuzzer runs this file itself: put the python that has
        atheris first on PATH)

A new type adds its operations to the table with @op: each reads its arguments from
the Reader, declares the object it works on with f.use(obj, write=...), and keeps
what it makes in one of the pools.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import pickle
import queue
import struct
import sys
import threading
import traceback
import warnings
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

try:
    import atheris
except ImportError:  # replaying needs only cowbuf
    atheris = None

FUZZING = (__name__ == "__main__" and atheris is not None
           and "--replay" not in sys.argv and "--trace" not in sys.argv)
if FUZZING:
    with atheris.instrument_imports(include=["cowbuf"]):
        import cowbuf
        from cowbuf import _core, _sharing
else:
    import cowbuf
    from cowbuf import _core, _sharing

try:
    import numpy
except ImportError:
    numpy = None

# The exceptions cowbuf documents for bad input and misuse.
EXPECTED = (ValueError, TypeError, IndexError, OverflowError, BufferError, MemoryError)
TYPECODES = cowbuf.TYPECODES
MAX_STEPS = 64
MAX_OBJECTS = 24
MAX_BYTES = 1 << 20  # no allocation of more than this much real memory per input
MAX_THREADS = 2
MAX_CHILDREN = 2

EDGES = [0, 1, -1, 2, 7, 8, 9, 63, 64, 127, 128, -128, -129, 255, 256, 4095, 4096, 4097,
         65535, 65536, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32,
         2**62, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**30, -(10**30)]
FLOATS = [0.0, -0.0, 1.5, -2.5, float("nan"), float("inf"), float("-inf"), 1e300, 3.5e38,
          1e-310]
NUMBERS = [f for f in FLOATS if f == f]
UNPICKLABLE = lambda: None  # noqa: E731  (a FrozenDict cannot hold it: TypeError)
TRACE = False


def outcome(fn: Any, *args: object) -> tuple[str, object]:
    """('ok', result) or the exception type's name: a FrozenDict and a dict agree when
    these do."""
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return type(exc).__name__, None


class Finding(AssertionError):
    """cowbuf broke a promise (not a harness error)."""


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


class Holder:
    """A reference cycle around cowbuf objects and their exports, with a finalizer
    that uses them while the collector takes the cycle apart."""

    def __init__(self, *items: object) -> None:
        self.items = list(items)
        self.me = self

    def __del__(self) -> None:
        for x in self.items:
            with contextlib.suppress(*EXPECTED):
                if isinstance(x, cowbuf.Array):
                    x.sum()
                elif isinstance(x, cowbuf.Region):
                    x.nbytes
                elif isinstance(x, memoryview):
                    bytes(x[:8])


class Crafted:
    """Pickles as a call of `func` with `args`: a crafted pickle."""

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


class Fuzz:
    def __init__(self, data: bytes, depth: int = 0) -> None:
        self.r = Reader(data)
        self.depth = depth  # 1 in a forked child: no forks from there
        self.regions: list[cowbuf.Region] = []
        self.arrays: list[cowbuf.Array] = []
        self.counters: list[cowbuf.Counter] = []
        self.exports: list[Any] = []
        self.iterators: list[Any] = []
        # StrArrays and BytesArrays with the list they hold; FrozenDicts with their dict
        self.strings: list[tuple[Any, list[Any]]] = []
        self.maps: list[tuple[cowbuf.FrozenDict, dict[Any, Any]]] = []
        self.held: list[Any] = []  # Arrow capsules nobody imported
        self.syncs: list[Any] = []  # locks, semaphores, events, conditions, barriers
        # Queues with what they hold: ("p", object put) or ("b", bytes put)
        self.queues: list[tuple[cowbuf.Queue, deque[tuple[str, Any]]]] = []
        self.threads: list[Worker] = []
        # regions that threads of the parent keep writing (in a forked child)
        self.written_elsewhere: list[cowbuf.Region] = []
        self.children = 0
        self.allocated = 0
        self.disrupting = False
        self.disruptions = 0
        self.subject: tuple[object, bool, str] | None = None
        self.events: set[str] = set()

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

    def flag(self) -> bool:
        return bool(self.r.byte() & 1)

    def pick(self, items: list[Any]) -> Any:
        return items[self.r.below(len(items))] if items else None

    def keep(self, items: list[Any], obj: object) -> None:
        items.append(obj)
        if len(items) > MAX_OBJECTS:
            del items[self.r.below(len(items))]

    def some_array(self) -> cowbuf.Array | None:
        a: cowbuf.Array | None = self.pick(self.arrays)
        return a

    def any_object(self) -> Any:
        pool = [x for x in (self.some_array(), self.pick(self.regions),
                            self.pick(self.counters)) if x is not None]
        return self.pick(pool)

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

    # -- what a call must do ------------------------------------------------------------

    def use(self, obj: object, write: bool = False, must_raise: bool = True) -> None:
        """Declare the cowbuf object this operation works on, before calling it: if it
        is closed, the call must raise ValueError (and raise at all, if `must_raise`);
        if it is a write to frozen memory or a read-only view, TypeError."""
        if self.subject is not None or obj is None:
            return
        region = obj if isinstance(obj, cowbuf.Region) else obj.region  # type: ignore[attr-defined]
        if region.closed:
            state = "closed" if must_raise else "closed-maybe"
        elif write and (region.frozen or getattr(obj, "readonly", False)):
            state = "read-only"
        else:
            state = "open"
        self.subject = (obj, write, state)

    def exact(self) -> bool:
        """Whether the exception of the current call can be checked exactly: no other
        thread runs, and no argument ran a step in the middle of the call."""
        return not any(t.is_alive() for t in self.threads)

    def check_outcome(self, name: str, exc: BaseException | None, disruptions: int) -> None:
        if self.subject is None or not self.exact() or self.disruptions != disruptions:
            return
        _, _, state = self.subject
        if state == "closed":
            if exc is None:
                raise Finding(f"{name} on a closed object did not raise")
            if type(exc) is not ValueError:
                raise Finding(f"{name} on a closed object raised {exc!r}, not ValueError")
        elif state == "closed-maybe" and exc is not None and type(exc) is not ValueError:
            raise Finding(f"{name} on a closed object raised {exc!r}, not ValueError")
        elif state == "read-only" and exc is not None and type(exc) is not TypeError:
            raise Finding(f"{name}: a write to read-only memory raised {exc!r}, not TypeError")
        elif state == "read-only" and exc is None:
            raise Finding(f"{name}: a write to read-only memory succeeded")

    def written(self, a: cowbuf.Array) -> bool:
        """Whether a thread (here, or of the parent) may be writing `a` meanwhile."""
        busy = self.written_elsewhere + [t.a.region for t in self.threads if t.is_alive()]
        return any(a.region is region for region in busy)

    def check(self, a: cowbuf.Array) -> None:
        """Every way of reading an open array agrees (unless a thread writes it)."""
        if a.region.closed or self.written(a):
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

    def check_copy(self, obj: object, copy: object) -> None:
        if isinstance(copy, cowbuf.Array):
            assert isinstance(obj, cowbuf.Array) and copy.tobytes() == obj.tobytes()
            self.keep(self.arrays, copy)
        elif isinstance(copy, cowbuf.Counter):
            assert isinstance(obj, cowbuf.Counter) and copy.value == obj.value
            self.keep(self.counters, copy)
        else:
            assert isinstance(copy, cowbuf.Region) and isinstance(obj, cowbuf.Region)
            assert bytes(memoryview(copy)) == bytes(memoryview(obj))
            self.keep(self.regions, copy)

    # -- running --------------------------------------------------------------------------

    def disrupt(self) -> None:
        """A step run from inside another call (by a Sneaky number)."""
        if self.disrupting:
            return
        self.disrupting = True
        self.disruptions += 1
        saved, self.subject = self.subject, None
        try:
            step = DISRUPTIONS[self.r.below(len(DISRUPTIONS))]
            if TRACE:
                print(f"    (inside) {step.__name__}")
            with contextlib.suppress(*EXPECTED):
                step(self)
        finally:
            self.subject = saved
            self.disrupting = False

    def step(self) -> None:
        name, operation = OPS[self.r.below(len(OPS))]
        if TRACE:
            print(name)
        self.subject = None
        disruptions = self.disruptions
        try:
            operation(self)
        except EXPECTED as exc:
            if TRACE:
                print(f"    -> {type(exc).__name__}: {exc}")
            self.check_outcome(name, exc, disruptions)
        else:
            self.check_outcome(name, None, disruptions)
        finally:
            self.subject = None

    def run(self) -> None:
        steps = 0
        try:
            while self.r.more() and steps < MAX_STEPS:
                steps += 1
                self.step()
        finally:
            self.join_threads()
        # Whatever happened, everything still open reads consistently.
        for a in self.arrays:
            with contextlib.suppress(*EXPECTED):
                self.check(a)

    def join_threads(self) -> None:
        threads, self.threads = self.threads, []
        for t in threads:
            t.stop = True
        for t in threads:
            t.join()
            if t.error is not None:
                raise Finding(f"a thread failed:\n{t.error}")


# -- the operations -----------------------------------------------------------------------

OPS: list[tuple[str, Callable[[Fuzz], None]]] = []


def op(fn: Callable[[Fuzz], None]) -> Callable[[Fuzz], None]:
    """Add `fn` to the table of operations a program is made of."""
    OPS.append((fn.__name__, fn))
    return fn


@op
def new_region(f: Fuzz) -> None:
    n = f.size()
    if f.afford(n):
        f.keep(f.regions, cowbuf.Region(n, populate=f.flag()))


@op
def new_array(f: Fuzz) -> None:
    tc = TYPECODES[f.r.below(12)]
    if f.flag():
        n = f.size()
        if f.afford(n * 8 if isinstance(n, int) else 0):
            f.keep(f.arrays, cowbuf.array(tc, n))
    else:
        f.keep(f.arrays, cowbuf.array(tc, f.source(f.r.below(300), tc)))


@op
def new_counter(f: Fuzz) -> None:
    if f.flag() and f.regions:
        region = f.pick(f.regions)
        f.use(region)
        f.keep(f.counters, region.counter(f.value()))
    else:
        f.keep(f.counters, cowbuf.Counter(f.value(), padded=f.flag()))


@op
def view(f: Fuzz) -> None:
    region = f.pick(f.regions)
    if region is None:
        return
    tc = TYPECODES[f.r.below(12)]
    offset = f.value() if f.flag() else 8 * f.r.below(64)
    length = None if f.flag() else f.value()
    f.use(region)
    f.keep(f.arrays, region.view(tc, offset, length))


@op
def slice_(f: Fuzz) -> None:
    a = f.some_array()
    if a is not None:
        key = f.slice_key(len(a) if not a.region.closed else 0)
        f.use(a)
        f.keep(f.arrays, a[key])


@op
def get_item(f: Fuzz) -> None:
    a = f.some_array()
    if a is not None:
        key = f.key(len(a) if not a.region.closed else 0)
        f.use(a)
        a[key]


@op
def set_item(f: Fuzz) -> None:
    a = f.some_array()
    if a is None:
        return
    key = f.key(len(a) if not a.region.closed else 0)
    if isinstance(key, slice) and not a.region.closed:
        value = f.source(len(range(*key.indices(len(a)))) if key.step != 0 else 1, a.typecode)
    else:
        value = f.value()
    f.use(a, write=True)
    a[key] = value


@op
def whole(f: Fuzz) -> None:
    a = f.some_array()
    if a is None:
        return
    op = f.r.byte() % 10
    if op == 0:
        value = f.value()
        f.use(a, write=True)
        a.fill(value)
    elif op in (1, 2, 3):
        f.use(a)
        [a.sum, a.min, a.max][op - 1]()
    elif op == 4:
        f.check(a)
    elif op == 5:
        f.use(a)
        f.keep(f.iterators, iter(a) if f.flag() else reversed(a))
    elif op == 6:
        f.use(a)
        f.keep(f.arrays, a.toreadonly())
    elif op == 7:
        b = f.some_array()
        if b is not None:
            f.use(a)
            assert (a == b) is (not (a != b))
    elif op == 8:
        repr(a)
        a.typecode, a.itemsize
        f.use(a)
        len(a), a.nbytes, a.readonly
    else:
        f.use(a)
        a.tolist()


@op
def export(f: Fuzz) -> None:
    target = f.some_array() if f.flag() else f.pick(f.regions)
    if target is None:
        return
    kind = f.r.byte() % 4
    f.use(target)
    if kind == 0 or numpy is None:
        f.keep(f.exports, memoryview(target))
    elif kind == 1:
        f.keep(f.exports, numpy.asarray(target))
    elif kind == 2:
        f.keep(f.exports, numpy.frombuffer(target, dtype=numpy.uint8))
    else:
        m = memoryview(target)
        f.keep(f.exports, m[f.slice_key(len(m))])


@op
def use_export(f: Fuzz) -> None:
    if not f.exports:
        return
    at = f.r.below(len(f.exports))
    e = f.exports[at]
    op = f.r.byte() % 4
    if op == 0:
        if isinstance(e, memoryview):
            e.release()
        else:
            del f.exports[at]
    elif op == 1:
        bytes(e) if isinstance(e, memoryview) else e.tobytes()
    elif op == 2 and getattr(e, "ndim", 0) == 1 and len(e):
        # numpy raises ValueError and memoryview TypeError for read-only memory
        e[f.r.below(len(e))] = f.r.byte() % 100
    else:
        del f.exports[at]


@op
def close(f: Fuzz) -> None:
    if f.flag():
        target = f.pick(f.regions)
    else:
        a = f.some_array() if f.flag() else f.pick(f.counters)
        target = None if a is None else a.region
    if target is None:
        return
    if f.flag():
        target.close()  # idempotent: closing a closed region is fine
    else:
        f.use(target)
        with target:
            pass


@op
def freeze(f: Fuzz) -> None:
    target = f.pick(f.regions) if f.flag() else f.some_array()
    if target is not None:
        f.use(target)
        target.freeze()


@op
def pickle_(f: Fuzz) -> None:
    obj = f.any_object()
    if obj is None:
        return
    by_value = f.flag()
    protocol = f.r.byte() % (pickle.HIGHEST_PROTOCOL + 1)
    f.use(obj)
    if by_value:
        copy = pickle.loads(pickle.dumps(obj, protocol))
    else:
        # by reference: in this process it is the same memory again
        copy = pickle.loads(ForkingPickler.dumps(obj))
    f.check_copy(obj, copy)


@op
def atomic(f: Fuzz) -> None:
    a = f.some_array()
    if a is None:
        return
    op = f.r.byte() % 5
    n = len(a) if not a.region.closed else 0
    if op == 0:
        key = f.key(n)
        f.use(a)
        a.atomic_load(key)
    elif op == 1:
        key, value = f.key(n), f.value()
        f.use(a, write=True)
        a.atomic_store(key, value)
    elif op == 2:
        key, value = f.key(n), f.value()
        f.use(a, write=True)
        a.atomic_add(key, value)
    elif op == 3:
        key, expected, desired = f.key(n), f.value(), f.value()
        f.use(a, write=True)
        a.atomic_cas(key, expected, desired)
    else:
        count = f.r.below(40)
        indices = f.source(count, "q") if f.flag() else \
            [f.r.byte() % (2 * n + 1) - n for _ in range(count)]
        values = f.value() if f.flag() else f.source(count, a.typecode)
        if isinstance(indices, cowbuf.Array) and not indices.region.closed and \
                not a.region.closed and indices.region is a.region:
            f.events.add("atomic_add_at-aliasing")
        f.use(a, write=True)
        a.atomic_add_at(indices, values)


@op
def counter(f: Fuzz) -> None:
    c = f.pick(f.counters)
    if c is None:
        return
    op = f.r.byte() % 9
    if op == 7:
        repr(c)
        return
    if op == 8:
        c.__init__(f.value())  # a second __init__ is refused (TypeError)
        return
    args = [f.value() for _ in range(2 if op == 4 else 0 if op == 6 else 1)]
    f.use(c, write=op != 6)
    if op == 0:
        c.add(*args)
    elif op == 1:
        c.sub(*args)
    elif op == 2:
        c.fetch_add(*args)
    elif op == 3:
        c.exchange(*args)
    elif op == 4:
        c.compare_exchange(*args)
    elif op == 5:
        c.store(*args)
    else:
        assert c.load() == c.value == int(c)


@op
def iterate(f: Fuzz) -> None:
    it = f.pick(f.iterators)
    if it is not None:
        for _ in range(f.r.below(8)):
            next(it, None)


@op
def misuse(f: Fuzz) -> None:
    op = f.r.byte() % 6
    if op == 0:
        f.keep(f.arrays, cowbuf.Array.__new__(cowbuf.Array))
    elif op == 1:
        f.keep(f.regions, cowbuf.Region.__new__(cowbuf.Region))
    elif op == 2:
        f.keep(f.counters, cowbuf.Counter.__new__(cowbuf.Counter))
    elif op == 3 and f.regions:
        f.pick(f.regions).__init__(f.size())
    elif op == 4:
        cowbuf.Array()
    else:
        cowbuf.array(f.value(), f.value())


@op
def drop(f: Fuzz) -> None:
    pools = [f.regions, f.arrays, f.counters, f.exports, f.iterators, f.strings, f.maps,
             f.held, f.syncs, f.queues]
    pool = pools[f.r.below(len(pools))]
    if pool:
        del pool[f.r.below(len(pool))]
    if f.flag():
        gc.collect()


@op
def cycle(f: Fuzz) -> None:
    """A reference cycle holding a cowbuf object and, often, a buffer export of it;
    dropped at once, for the collector to take apart (0.1.0 crashed there, #1)."""
    obj = f.some_array() if f.flag() else f.pick(f.regions)
    if obj is None:
        return
    items: list[object] = [obj]
    if f.flag():
        with contextlib.suppress(*EXPECTED):
            items.append(memoryview(obj))
            f.events.add("cycle-with-export")
    if f.flag():
        items.append(f.pick(f.exports))
    Holder(*items)
    f.events.add("cycle")
    if f.flag():
        gc.collect()


@op
def thread(f: Fuzz) -> None:
    """Start a thread that keeps writing, reading or adding (without the GIL, on large
    arrays) until the program ends, while the program goes on: closes, freezes and
    forks race with it."""
    f.threads = [t for t in f.threads if t.is_alive()]
    a = f.some_array()
    if a is None or len(f.threads) >= MAX_THREADS:
        return
    t = Worker(a, f.r.byte() % len(Worker.ACTIONS), f.value())
    f.threads.append(t)
    f.events.add("thread")
    t.start()


@op
def join(f: Fuzz) -> None:
    f.join_threads()


@op
def fork(f: Fuzz) -> None:
    """A forked child runs steps of its own on everything it inherits (the threads
    of the parent are gone there, their pins with them), then checks every array."""
    steps = f.r.raw(4 * (1 + f.r.below(8)))
    if f.depth or f.children >= MAX_CHILDREN:
        return
    f.children += 1
    f.events.add("fork")
    # the parent's threads go on writing these (in the child they are not alive)
    busy = [t.a.region for t in f.threads if t.is_alive()]
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        # forking while threads run is the point (3.12 warns about it)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child = Fuzz(steps, depth=1)
            child.regions, child.arrays = list(f.regions), list(f.arrays)
            child.counters, child.exports = list(f.counters), list(f.exports)
            child.allocated = f.allocated
            child.written_elsewhere = busy
            child.run()
            code = 0
        except BaseException:
            os.write(2, f"forked child:\n{traceback.format_exc()}".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise Finding(f"a forked child failed (exit {os.waitstatus_to_exitcode(status)})")


def keep_made(f: Fuzz, made: object) -> None:
    """What a crafted pickle made, once it did not raise: consistent, and kept for the
    steps that follow."""
    if isinstance(made, cowbuf.Array):
        f.check(made)
        f.keep(f.arrays, made)
    elif isinstance(made, cowbuf.Counter):
        assert made.value == int(made)
        f.keep(f.counters, made)
    else:
        assert isinstance(made, cowbuf.Region) and len(memoryview(made)) == made.nbytes
        f.keep(f.regions, made)


@op
def crafted_by_value(f: Fuzz) -> None:
    """A pickle that calls a by-value reconstructor with arguments of its own making:
    unpickled data may be crafted (#4). It raises at once, or makes a consistent object."""
    kind = f.r.byte() % 3
    n = f.size()
    if not f.afford(n if kind < 2 else 0):
        return
    data = bytes(n) if isinstance(n, int) and 0 <= n <= MAX_BYTES else f.value()
    if kind == 0:
        crafted = Crafted(_core._region_from_bytes, (data, f.flag(), f.flag()))
    elif kind == 1:
        tc = TYPECODES[f.r.below(12)] if f.flag() else f.value()
        crafted = Crafted(_core._array_from_bytes, (tc, data, f.flag(), f.flag()))
    else:
        crafted = Crafted(_core._counter_from_value, (f.value(), f.flag(), f.flag()))
    f.events.add("crafted-by-value")
    dumps = pickle.dumps if f.flag() else ForkingPickler.dumps
    keep_made(f, pickle.loads(dumps(crafted)))


@op
def crafted_by_reference(f: Fuzz) -> None:
    """A multiprocessing pickle of a reference with a geometry, a route or a token of
    its own making: it raises, or gives a view inside the memory it names."""
    kind = f.r.byte() % 4
    region = f.pick(f.regions) or (f.some_array().region if f.arrays else None)
    f.events.add("crafted-by-reference")
    if kind == 3:  # a mapping by a token this process may not have, or a bad route
        token = bytes(f.r.raw(16))
        where = (os.getpid(), f.r.below(64), f.integer(), token, f.r.below(64), f.integer(),
                 f.integer(), f.integer(), f.integer())
        route = ("token", os.getpid()) if f.flag() else ("proc", where)
        crafted = Crafted(_sharing._receive, (token, f.integer(), f.flag(), f.flag(), *route))
        pickle.loads(ForkingPickler.dumps(crafted))
        return
    if region is None or region.closed:
        return
    if kind == 0:
        mapping = _core._region_state(region)[0]
        crafted = Crafted(_core._region_on, (mapping, f.integer(), f.integer(), f.flag()))
    elif kind == 1:
        tc = TYPECODES[f.r.below(12)]
        crafted = Crafted(_core._array_on, (region, tc, f.integer(), f.integer(), f.integer(),
                                            f.flag()))
    else:
        crafted = Crafted(_core._counter_on, (region, f.integer()))
    keep_made(f, pickle.loads(ForkingPickler.dumps(crafted)))


# The steps a Sneaky number may run in the middle of a call.
# -- locks, semaphores, events, conditions, barriers ------------------------------------

def timeout(f: Fuzz) -> object:
    """A timeout that cannot block for long (a huge one waits forever)."""
    return [0, 0.0, -1.0, 1e-4, float("nan"), "1", Decimal("0.0001"),
            -abs(f.integer())][f.r.below(8)]


@op
def sync(f: Fuzz) -> None:
    """Locks, semaphores, events, conditions, barriers, and Counter.wait: every
    call that could block gets a timeout that cannot (a single thread would
    wait for itself)."""
    op = f.r.byte() % 10
    if op == 0 or not f.syncs:
        locks = [x for x in f.syncs if isinstance(x, (cowbuf.Lock, cowbuf.RLock))]
        make = [cowbuf.Lock, cowbuf.RLock, lambda: cowbuf.Semaphore(f.value()),
                lambda: cowbuf.BoundedSemaphore(f.value(),
                                                track_holders=bool(f.r.byte() & 1)),
                cowbuf.Event, lambda: cowbuf.Condition(f.pick(locks)),
                lambda: cowbuf.Barrier(f.value(), timeout=1e-4)][f.r.below(7)]
        f.keep(f.syncs, make())
        return
    obj = f.pick(f.syncs)
    with contextlib.suppress(RuntimeError):  # threading's, for misuse (and barriers)
        if op == 1 and isinstance(obj, (cowbuf.Lock, cowbuf.RLock, cowbuf.Semaphore)):
            if f.r.byte() & 1:
                obj.acquire(False)
            else:
                obj.acquire(True, 1e-4)
        elif op == 2 and isinstance(obj, (cowbuf.Lock, cowbuf.RLock, cowbuf.Condition)):
            obj.release()
        elif op == 2 and isinstance(obj, cowbuf.Semaphore):
            obj.release(f.value())
        elif op == 3 and isinstance(obj, cowbuf.Event):
            [obj.set, obj.clear, obj.is_set, lambda: obj.wait(timeout(f))][
                f.r.below(4)]()
        elif op == 3 and isinstance(obj, cowbuf.Condition):
            if obj.acquire(False):
                try:
                    [lambda: obj.notify(f.value()), obj.notify_all,
                     lambda: obj.wait(timeout(f))][f.r.below(3)]()
                finally:
                    obj.release()
            else:
                obj.notify()
        elif op == 3 and isinstance(obj, cowbuf.Barrier):
            [lambda: obj.wait(timeout(f)), obj.reset, obj.abort,
             lambda: (obj.parties, obj.n_waiting, obj.broken)][f.r.below(4)]()
        elif op == 4:
            c = f.pick(f.counters)
            if c is not None:
                c.wait(f.value(), timeout(f)) if f.r.byte() & 1 else \
                    c.notify(f.value())
        elif op == 5:
            a = f.some_array()
            if a is not None:
                n = len(a) if not a.region.closed else 0
                a.wait_at(f.key(n), f.value(), timeout(f)) if f.r.byte() & 1 \
                    else a.notify_at(f.key(n), f.value())
        elif op == 6:
            again = pickle.loads(ForkingPickler.dumps(obj))
            assert type(again) is type(obj)
            f.keep(f.syncs, again)
            pickle.dumps(obj)  # a copy of a lock is refused: TypeError
        elif op == 7:
            cls = type(obj)
            f.keep(f.syncs, cls.__new__(cls))
        elif op == 8:
            obj.__init__()  # a second __init__ (or a first one without arguments)
        else:
            repr(obj)


# -- Queue -----------------------------------------------------------------------------

def message(f: Fuzz) -> Any:
    """Something to put: plain values (equal to their copies), or bytes larger than half
    a small ring (they go out of band)."""
    kind = f.r.below(6)
    if kind == 0:
        return f.integer()
    if kind == 1:
        return f.r.raw(f.r.below(64))
    if kind == 2:
        return ("t", f.integer(), f.r.raw(f.r.below(8)).decode("latin-1"))
    if kind == 3:
        return b"x" * [3000, 5000, 70_000][f.r.below(3)]
    if kind == 4:
        return None
    return NUMBERS[f.r.below(len(NUMBERS))]


def no_wait(f: Fuzz) -> tuple[bool, object]:
    """(block, timeout) of a call that cannot wait: one process has nobody to wait for."""
    return [(False, None), (True, 0), (True, 0.0), (True, 1e-4), (True, -1.0),
            (True, "1"), (False, 5.0)][f.r.below(7)]


@op
def queue_(f: Fuzz) -> None:
    """A Queue used by this process alone: what comes out is what went in, in order,
    every kind of put and get, full and empty included (queue.Full and queue.Empty are
    the documented outcomes there)."""
    op = f.r.byte() % 10
    if op == 0 or not f.queues:
        size = [0, 4096, 5000, 1 << 16, -1, 1 << 40][f.r.below(6)]
        f.keep(f.queues, (cowbuf.Queue(size, f.r.below(4)), deque()))
        return
    q, held = f.pick(f.queues)
    block, wait = no_wait(f)
    try:
        if op == 1:
            msg = message(f)
            q.put(msg, block, wait)
            held.append(("p", msg))
        elif op == 2:
            data = f.r.raw(f.r.below(64)) if f.flag() else b"y" * 70_000
            q.put_bytes(data, block, wait)
            held.append(("b", data))
        elif op == 3:
            items = [message(f) for _ in range(f.r.below(8))]
            done = 0  # (a bad timeout or a closed queue: nothing was put)
            try:
                q.put_many(items, block, wait)
                done = len(items)
            except queue.Full as exc:  # the items before the first that did not fit
                done = int(str(exc).split(" of ")[0])
                raise
            finally:
                held.extend(("p", item) for item in items[:done])
        elif op in (4, 5):
            got = q.get(block, wait) if op == 4 else q.get_bytes(block, wait)
            if not held:
                raise Finding("get() returned from a queue that holds nothing")
            kind, put = held.popleft()
            if op == 5 and kind == "p":
                got = pickle.loads(got)
            if got != put:
                raise Finding(f"the queue returned {got!r:.80} where {put!r:.80} was put")
            f.events.add("queue-round-trip")
        elif op == 6:
            many = q.get_many(f.r.below(6) or 1, block, wait)
            for got in many:
                kind, put = held.popleft()
                if got != put:
                    raise Finding(f"get_many() returned {got!r:.80}, not {put!r:.80}")
        elif op == 7:
            if q.qsize() != len(held) or q.empty() != (not held):
                raise Finding(f"qsize() {q.qsize()} with {len(held)} messages held")
            q.full()
        elif op == 8:
            again = pickle.loads(ForkingPickler.dumps(q))
            f.keep(f.queues, (again, held))  # the same queue: what it holds is shared
            pickle.dumps(q)  # a copy of a queue is refused: TypeError
        else:
            q.close()
            f.queues[:] = [(x, h) for x, h in f.queues if x is not q]
            q.put(1)  # ValueError: closed in this process
    except queue.Empty:
        if held and not f.disrupting:
            raise Finding(f"queue.Empty with {len(held)} messages held") from None
    except queue.Full:
        pass


# -- StrArray, BytesArray, FrozenDict ---------------------------------------------------

def text(f: Fuzz) -> object:
    kind = f.r.byte() % 4
    if kind == 0:
        return f.r.raw(f.r.below(12)).decode("latin-1")
    if kind == 1:
        return f.r.raw(2 * f.r.below(6)).decode("utf-16-le", "surrogatepass")
    if kind == 2:
        return ["", "\0", "\udc80", "😀", "é" * 70, "a" * 5000][f.r.below(6)]
    return f.r.raw(f.r.below(12))


@op
def new_strings(f: Fuzz) -> None:
    text = bool(f.r.byte() & 1)
    items = [text(f) for _ in range(f.r.below(40))]
    if text:
        items = [x if isinstance(x, str) else x.decode("latin-1") for x in items]
    elif f.r.byte() & 1:  # any bytes-like, or a str among them: TypeError
        items = [x.encode("utf-8", "surrogatepass") if isinstance(x, str) else x
                 for x in items]
    s = cowbuf.StrArray(items) if text else cowbuf.BytesArray(items)
    f.keep(f.strings, (s, items))
    f.keep(f.regions, s.region)  # closes, freezes and exports reach it too


@op
def strings_op(f: Fuzz) -> None:
    if not f.strings:
        return
    s, items = f.pick(f.strings)
    op = f.r.byte() % 10
    n = len(items)
    if op == 0:
        key = f.key(n)
        got = s[key]
        if isinstance(key, int):
            assert got == items[key]
        elif isinstance(key, slice) and key.step != 0:
            assert got.tolist() == items[key]
            f.keep(f.strings, (got, items[key]))
    elif op == 1:
        x = f.pick(items) if items and f.r.byte() & 1 else text(f)
        assert (x in s) == (x in items) and s.count(x) == items.count(x)
        if x in items:
            assert s.index(x) == items.index(x)
    elif op == 2:
        f.keep(f.iterators, iter(s) if f.r.byte() & 1 else reversed(s))
    elif op == 3:
        assert s.tolist() == items == list(s) and s == items and len(s) == n
    elif op == 4:
        offsets = s.offsets
        assert len(offsets) == n + 1 and len(s.data) >= offsets[n] - offsets[0]
        f.keep(f.arrays, offsets if f.r.byte() & 1 else s.data)
    elif op == 5:
        capsules = s.__arrow_c_array__()  # dropped unread: released by the capsules
        if f.r.byte() & 1:
            f.keep(f.held, capsules)
    elif op == 6:
        if f.r.byte() & 1:
            copy = pickle.loads(pickle.dumps(s, f.r.byte() % (pickle.HIGHEST_PROTOCOL + 1)))
        else:
            copy = pickle.loads(ForkingPickler.dumps(s))
        assert copy == s and copy.tolist() == items
    elif op == 7:
        other = f.pick(f.strings)[0]
        assert (s == other) is (not (s != other))
    elif op == 8:
        repr(s), s.nbytes
    else:
        s.__init__(items)  # a second __init__ is refused


def key_or_value(f: Fuzz, value: bool) -> object:
    kind = f.r.byte() % 8
    if kind < 3:
        return text(f)
    if kind < 5:
        return f.integer()
    if kind == 5:  # (not NaN: a FrozenDict returns a new float, never equal to it)
        return NUMBERS[f.r.below(len(NUMBERS))] if value else float(f.r.byte() % 4)
    if kind == 6:
        return bool(f.r.byte() & 1)
    if value:  # values that are pickled: equal to their copies, or not picklable
        return [None, 1j, Decimal("0.5"), [1, "x"], (), frozenset({2}),
                UNPICKLABLE][f.r.below(7)]
    return f.value()  # odd keys: floats, None, lists, numbers that are not ints


@op
def new_map(f: Fuzz) -> None:
    pairs = [(key_or_value(f, False), key_or_value(f, True))
             for _ in range(f.r.below(40))]
    m = cowbuf.FrozenDict(pairs)
    f.keep(f.maps, (m, dict(pairs)))
    f.keep(f.regions, m.region)


@op
def map_op(f: Fuzz) -> None:
    if not f.maps:
        return
    m, d = f.pick(f.maps)
    op = f.r.byte() % 8
    k = f.pick(list(d)) if d and f.r.byte() & 1 else key_or_value(f, False)
    if m.region.closed:  # (closed by the close step): every use is ValueError
        with contextlib.suppress(ValueError):
            m.get(k)
            raise AssertionError("a closed FrozenDict answered")
        return
    if op == 0:
        assert outcome(m.__getitem__, k) == outcome(d.__getitem__, k)
    elif op == 1:
        assert m.get(k, "-") == d.get(k, "-") and (k in m) == (k in d)
    elif op == 2:
        keys = [k, *(key_or_value(f, False) for _ in range(f.r.below(40)))]
        assert m.get_many(keys, "-") == [d.get(x, "-") for x in keys]
    elif op == 3:
        it = [iter(m), iter(m.values()), iter(m.items())][f.r.below(3)]
        f.keep(f.iterators, it)
    elif op == 4:
        assert m == d and list(m.items()) == list(d.items())
    elif op == 5:
        if f.r.byte() & 1:
            copy = pickle.loads(pickle.dumps(m, f.r.byte() % (pickle.HIGHEST_PROTOCOL + 1)))
        else:
            copy = pickle.loads(ForkingPickler.dumps(m))
        assert copy == d
    elif op == 6:
        repr(m), len(m), m.nbytes, m.keys() & {k}
    else:
        m.__init__(d)  # a second __init__ is refused


@op
def crafted_containers(f: Fuzz) -> None:
    """Maps and string arrays from arbitrary bytes: refused, or read safely."""
    if f.r.byte() & 1:
        base = bytearray(memoryview(f.pick(f.maps)[0].region)) if f.maps else b""
        data = bytearray(base) or bytearray(f.r.raw(f.r.below(256)))
        for _ in range(f.r.below(4)):
            if data:
                data[f.r.below(len(data))] = f.r.byte()
        m = cowbuf._core._frozendict_from_bytes(bytes(data))
        # keys only: a damaged pickled value could name any function to call. A
        # damaged key may not be found again: its slot holds the old key's hash.
        keys = list(m)
        assert len(keys) == len(m)
        for k in keys:
            k in m  # noqa: B015
    else:
        n = f.r.below(8)
        offsets = struct.pack(f"<{n + 1}q", *(f.integer() % 64 for _ in range(n + 1)))
        s = cowbuf._core._strings_from_bytes(bool(f.r.byte() & 1), offsets,
                                             f.r.raw(f.r.below(64)))
        s.tolist()


DISRUPTIONS = [close, freeze, drop, use_export, export, slice_]


class Worker(threading.Thread):
    """A thread that repeats one action on an array until told to stop: the long ones
    run without the GIL on large arrays. Documented exceptions are fine (the array is
    closed or frozen under it); anything else is kept for join_threads()."""

    ACTIONS = ("fill", "sum", "add_at", "assign", "tobytes", "numpy")

    def __init__(self, a: cowbuf.Array, action: int, value: object) -> None:
        super().__init__(daemon=True)
        self.a = a
        self.action = self.ACTIONS[action]
        self.value = value if isinstance(value, int) and -100 < value < 100 else 1
        self.stop = False
        self.error: str | None = None

    def run(self) -> None:
        try:
            for _ in range(2000):
                if self.stop:
                    return
                with contextlib.suppress(*EXPECTED):
                    self.once()
        except BaseException:
            self.error = traceback.format_exc()

    def once(self) -> None:
        a = self.a
        if self.action == "fill":
            a.fill(abs(self.value))
        elif self.action == "sum":
            a.sum()
        elif self.action == "add_at":
            n = len(a)
            if numpy is not None and n:
                a.atomic_add_at(numpy.arange(4096) % n, self.value)
        elif self.action == "assign":
            if numpy is not None:
                a[:] = numpy.zeros(len(a), dtype=a.typecode)
        elif self.action == "tobytes":
            a.tobytes()
        elif numpy is not None:
            n = numpy.asarray(a)
            if n.size and n.flags.writeable:
                n[-1] = 0
            del n


def test_one_input(data: bytes) -> set[str]:
    """Run one program; return the events it met (for the corpus tests)."""
    f = Fuzz(data)
    f.run()
    # dropping everything releases every mapping except the current arena and the
    # outbox of by-reference sends (checked over many inputs by the torture tests)
    return f.events


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
        for fn in functions:
            if inspect.isfunction(fn) and fn.__module__ == __name__:
                atheris.instrument_func(fn)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    warnings.simplefilter("error")
    main(sys.argv)
