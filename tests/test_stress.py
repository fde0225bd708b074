"""Every mutating method races freeze(), close() and fork() from other threads.

Each round makes fresh objects (a large array, whose bulk writes run without the GIL,
a small one carved from an arena, a counter) and starts one thread per way of writing
them: item and slice assignment (from a list, from a numpy buffer, strided), fill(),
the atomics, atomic_add_at (long enough to drop the GIL), the counter's methods, and
writes through numpy and memoryview exports. Meanwhile the main thread freezes,
closes or forks. What must hold, exactly:

- every write lands or raises the documented exception: TypeError once the memory is
  frozen (or ValueError from numpy, whose read-only arrays say so), ValueError once it
  is closed; freeze() and close() may refuse with BufferError while a writable export
  or a GIL-free write is alive, and nothing else raises;
- a write that starts after freeze() returned never lands, and the memory holds then
  exactly what it held when freeze() returned; a write that starts after close()
  returned raises ValueError;
- a forked child can read everything, and freeze and close what the parent's writers
  were writing (their pins are gone with them);
- no crash, no hang.

The rounds run in an interpreter of their own (a crash must not take the test run
with it), and report what they saw so that the test can tell the races happened.
"""

from __future__ import annotations

import json

import pytest
from helpers import run_python

import cowbuf

np = pytest.importorskip("numpy")

PROGRAM = r"""
import json, os, random, sys, threading, time, warnings
import numpy as np
import cowbuf

# forking while the writers run is the point (3.12+ warns about it)
warnings.filterwarnings("ignore", ".*fork", DeprecationWarning)
rng = random.Random(int(sys.argv[2]))
ROUNDS = int(sys.argv[1])
BIG = 1 << 19  # 4 MiB of int64: fill, slice copies and atomic_add_at drop the GIL
INDICES = np.arange(8192) % 1024


class Objects:
    def __init__(self):
        self.big = cowbuf.array("q", BIG)
        self.small = cowbuf.array("q", 64)  # carved from an arena: freeze moves it
        self.counter = cowbuf.Counter()
        self.frozen_at = None  # time.monotonic() once freeze() returned, and then
        self.closing = False   # once close() is being called,
        self.closed_at = None  # and once it returned


def writes(o, n, payload):
    # name -> (a write with value n, the array or counter it writes); `payload` holds n
    return {
        "item": (lambda: o.big.__setitem__(n % BIG, n), o.big),
        "small item": (lambda: o.small.__setitem__(n % 64, n), o.small),
        "slice from a list": (lambda: o.small.__setitem__(slice(0, 8), [n] * 8), o.small),
        "slice from numpy": (lambda: o.big.__setitem__(slice(None), payload), o.big),
        "strided slice": (lambda: o.big.__setitem__(slice(None, None, 2), payload[::2]), o.big),
        "fill": (lambda: o.big.fill(n), o.big),
        "small fill": (lambda: o.small.fill(n), o.small),
        "atomic_store": (lambda: o.small.atomic_store(1, n), o.small),
        "atomic_add": (lambda: o.big.atomic_add(2, 1), o.big),
        "atomic_cas": (lambda: o.small.atomic_cas(3, o.small.atomic_load(3), n), o.small),
        "atomic_add_at": (lambda: o.big.atomic_add_at(INDICES, 1), o.big),
        "small atomic_add_at": (lambda: o.small.atomic_add_at(INDICES % 64, 1), o.small),
        "counter add": (lambda: o.counter.add(1), o.counter),
        "counter store": (lambda: o.counter.store(n), o.counter),
        "counter exchange": (lambda: o.counter.exchange(n), o.counter),
        "counter compare_exchange": (lambda: o.counter.compare_exchange(0, n), o.counter),
        "numpy": (lambda: numpy_write(o.big, n), o.big),
        "memoryview": (lambda: memoryview_write(o.small, n), o.small),
    }


def numpy_write(a, n):
    view = np.asarray(a)
    view[n % len(view)] = n


def memoryview_write(a, n):
    with memoryview(a) as m:
        m[n % len(m)] = n


# what a write may raise, per state of the memory when it started
RAISES_FROZEN = {"numpy": ValueError}  # numpy's read-only arrays raise ValueError
seen = {}
failures = []


def writer(o, name, stop):
    n = 0
    payload = np.zeros(BIG, dtype="q")
    while not stop.is_set():
        n += 1
        if name in ("slice from numpy", "strided slice"):
            payload.fill(n)
        write, _ = writes(o, n, payload)[name]
        frozen_before, closed_before = o.frozen_at is not None, o.closed_at is not None
        try:
            write()
            outcome = "landed"
        except (TypeError, ValueError) as exc:
            outcome = type(exc).__name__
        except BaseException as exc:
            failures.append(f"{name}: {exc!r}")
            return
        if closed_before and outcome != "ValueError":
            failures.append(f"{name} after close(): {outcome}")
        elif frozen_before and not closed_before and \
                outcome != RAISES_FROZEN.get(name, TypeError).__name__ and \
                not (o.closing and outcome == "ValueError"):
            failures.append(f"{name} after freeze(): {outcome}")
        seen.setdefault(name, set()).add(outcome)
        time.sleep(0)


def retry(action, what):
    # freeze() and close() refuse while a writable export or a GIL-free write lives
    for _ in range(2000):
        try:
            return action()
        except BufferError:
            seen.setdefault(what, set()).add("BufferError")
            time.sleep(0.0002)
    return "refused"


def snapshot(o):
    return o.big.tobytes(), o.small.tobytes(), o.counter.value


def child_checks(o):
    # the writers' threads are gone here, with their pins: freeze and close work
    for a in (o.big, o.small):
        a.tobytes()
    for region in (o.big.region, o.small.region, o.counter.region):
        try:
            region.freeze()
        except BufferError as exc:  # only a writable export the parent's thread held
            assert "writable buffer" in str(exc), exc
        try:
            region.close()
        except BufferError as exc:
            assert "live buffer" in str(exc), exc


for r in range(ROUNDS):
    o = Objects()
    stop = threading.Event()
    names = list(writes(o, 0, None))
    threads = [threading.Thread(target=writer, args=(o, name, stop)) for name in names]
    for t in threads:
        t.start()
    time.sleep(rng.random() * 0.004)
    action = rng.choice(["freeze", "close", "fork", "freeze+close", "fork+freeze"])
    frozen = None
    if "fork" in action:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child_checks(o)
                code = 0
            except BaseException as exc:
                os.write(2, f"child: {exc!r}\n".encode())
            os._exit(code)
        status = os.waitpid(pid, 0)[1]
        if os.waitstatus_to_exitcode(status) != 0:
            failures.append(f"round {r}: a forked child failed ({status})")
        seen.setdefault("fork", set()).add("ok")
    if "freeze" in action:
        outcome = [retry(region.freeze, "freeze") for region in
                   (o.big.region, o.small.region, o.counter.region)]
        if "refused" not in outcome:
            o.frozen_at = time.monotonic()
            frozen = snapshot(o)
            seen.setdefault("freeze", set()).add("ok")
    if "close" in action:
        time.sleep(rng.random() * 0.002)
        o.closing = True
        closes = [retry(region.close, "close") for region in
                  (o.big.region, o.small.region, o.counter.region)]
        if "refused" not in closes:
            o.closed_at = time.monotonic()
            seen.setdefault("close", set()).add("ok")
    time.sleep(0.003)  # writes keep coming at the frozen or closed memory
    if frozen is not None and o.closed_at is None and snapshot(o) != frozen:
        failures.append(f"round {r}: a write landed after freeze() returned")
    stop.set()
    for t in threads:
        t.join()
    if frozen is not None and o.closed_at is None and snapshot(o) != frozen:
        failures.append(f"round {r}: a write landed after freeze() returned")

print(json.dumps({"failures": failures, "seen": {k: sorted(v) for k, v in seen.items()}}))
"""


@pytest.mark.parametrize("seed", range(3))
def test_every_write_racing_freeze_close_and_fork_lands_or_raises(seed: int) -> None:
    done = run_python(PROGRAM, "40", str(seed), timeout=300)
    report = json.loads(done.stdout)
    assert report["failures"] == []
    seen = report["seen"]
    # the races happened: every write landed at some point and was refused at another
    for name in ("item", "slice from numpy", "fill", "atomic_add_at", "counter add", "numpy",
                 "memoryview", "small atomic_add_at"):
        assert "landed" in seen[name], (name, seen[name])
        assert set(seen[name]) - {"landed"}, (name, seen[name])
    assert {"freeze", "close", "fork"} <= set(seen), seen


# -- use after close: ValueError, whatever else is wrong with the call -------------

def _closed_objects():
    a = cowbuf.array("q", range(100))
    f = cowbuf.array("d", 100)
    c = cowbuf.Counter(3)
    r = cowbuf.Region(4096)
    for obj in (a, f, c):
        obj.region.close()
    r.close()
    return a, f, c, r


CALLS = {
    # any use of a closed object is ValueError (README), even with arguments that would
    # be refused for another reason (an index out of range, a float array's atomics)
    "getitem": lambda a, f, c, r: a[5],
    "getitem out of range": lambda a, f, c, r: a[10**6],
    "slice": lambda a, f, c, r: a[1:5],
    "setitem": lambda a, f, c, r: a.__setitem__(0, 1),
    "setitem out of range": lambda a, f, c, r: a.__setitem__(10**6, 1),
    "slice assignment": lambda a, f, c, r: a.__setitem__(slice(0, 2), [1, 2]),
    "len": lambda a, f, c, r: len(a),
    "iter": lambda a, f, c, r: iter(a),
    "reversed": lambda a, f, c, r: reversed(a),
    "tolist": lambda a, f, c, r: a.tolist(),
    "tobytes": lambda a, f, c, r: a.tobytes(),
    "fill": lambda a, f, c, r: a.fill(1),
    "sum": lambda a, f, c, r: a.sum(),
    "min": lambda a, f, c, r: a.min(),
    "max": lambda a, f, c, r: a.max(),
    "eq": lambda a, f, c, r: a == a,
    "nbytes": lambda a, f, c, r: a.nbytes,
    "readonly": lambda a, f, c, r: a.readonly,
    "toreadonly": lambda a, f, c, r: a.toreadonly(),
    "array freeze": lambda a, f, c, r: a.freeze(),
    "atomic_load": lambda a, f, c, r: a.atomic_load(0),
    "atomic_load out of range": lambda a, f, c, r: a.atomic_load(10**6),
    "atomic_store out of range": lambda a, f, c, r: a.atomic_store(10**6, 1),
    "atomic_add": lambda a, f, c, r: a.atomic_add(0, 1),
    "atomic_add out of range": lambda a, f, c, r: a.atomic_add(10**6, 1),
    "atomic_cas out of range": lambda a, f, c, r: a.atomic_cas(10**6, 0, 1),
    "atomic_add_at": lambda a, f, c, r: a.atomic_add_at([0, 1], 1),
    "atomic_add_at out of range": lambda a, f, c, r: a.atomic_add_at([10**6], 1),
    "atomic on a float array": lambda a, f, c, r: f.atomic_load(0),
    "atomic_add_at on a float array": lambda a, f, c, r: f.atomic_add_at([0], 1),
    "memoryview": lambda a, f, c, r: memoryview(a),
    "numpy": lambda a, f, c, r: np.asarray(a),
    "pickle": lambda a, f, c, r: a.__reduce_ex__(5),
    "counter load": lambda a, f, c, r: c.load(),
    "counter value": lambda a, f, c, r: c.value,
    "counter add": lambda a, f, c, r: c.add(1),
    "counter add, not an integer": lambda a, f, c, r: c.add(1.5),
    "counter store out of range": lambda a, f, c, r: c.store(2**64),
    "counter store": lambda a, f, c, r: c.store(1),
    "counter compare_exchange": lambda a, f, c, r: c.compare_exchange(3, 4),
    "counter int": lambda a, f, c, r: int(c),
    "counter pickle": lambda a, f, c, r: c.__reduce_ex__(5),
    "region nbytes": lambda a, f, c, r: r.nbytes,
    "region frozen": lambda a, f, c, r: r.frozen,
    "region view": lambda a, f, c, r: r.view("q"),
    "region counter": lambda a, f, c, r: r.counter(0),
    "region freeze": lambda a, f, c, r: r.freeze(),
    "region enter": lambda a, f, c, r: r.__enter__(),
    "region memoryview": lambda a, f, c, r: memoryview(r),
    "region pickle": lambda a, f, c, r: r.__reduce_ex__(5),
}


@pytest.mark.parametrize("call", CALLS)
def test_use_after_close_is_value_error_in_every_method(call: str) -> None:
    with pytest.raises(ValueError, match="closed"):
        CALLS[call](*_closed_objects())


WRITES = {
    # a write to frozen memory is TypeError, even with an argument that would be refused
    # for another reason
    "setitem": lambda a, c: a.__setitem__(0, 1),
    "setitem out of range": lambda a, c: a.__setitem__(10**6, 2**70),
    "slice assignment of another length": lambda a, c: a.__setitem__(slice(0, 2), [1]),
    "fill, not a number": lambda a, c: a.fill("x"),
    "atomic_store out of range": lambda a, c: a.atomic_store(10**6, 1),
    "atomic_add_at out of range": lambda a, c: a.atomic_add_at([10**6], 1),
    "counter add": lambda a, c: c.add(1),
    "counter add, not an integer": lambda a, c: c.add(1.5),
    "counter store out of range": lambda a, c: c.store(-(2**63) - 1),
    "counter compare_exchange out of range": lambda a, c: c.compare_exchange(0, 2**64),
}


@pytest.mark.parametrize("call", WRITES)
@pytest.mark.parametrize("size", [10, 10_000])
def test_a_write_to_frozen_memory_is_type_error_in_every_method(call: str, size: int) -> None:
    a = cowbuf.array("q", range(size))
    c = cowbuf.Counter(3)
    a.freeze()
    c.region.freeze()
    with pytest.raises(TypeError, match="read-only"):
        WRITES[call](a, c)
    assert a[:3].tolist() == [0, 1, 2] and c.value == 3


def test_what_a_closed_object_still_answers() -> None:
    a, _, c, r = _closed_objects()
    assert r.closed and a.region.closed and c.region.closed
    assert a.typecode == "q" and a.itemsize == 8
    assert repr(a) == "<cowbuf.Array 'q' closed>" and repr(c) == "<cowbuf.Counter closed>"
    assert repr(r) == "<cowbuf.Region closed>"
    r.close()  # idempotent


# -- the garbage collector releases buffers ----------------------------------------

@pytest.mark.parametrize("owner", ["region", "array", "array-slice", "counter-region"])
def test_exports_released_by_the_collector_are_counted_off(owner: str) -> None:
    # A memoryview in cyclic garbage is released by the collector, after it has
    # cleared (tp_clear) what it could of the cycle: if it could clear the owner, the
    # release would go to None and the region would count the export forever (#1).
    run_python(f"""
        import gc
        import cowbuf

        owner = {owner!r}
        for round in range(20):
            if owner == "region":
                obj = region = cowbuf.Region(4096)
            elif owner == "array":
                obj = cowbuf.array("q", 1000)
            elif owner == "array-slice":
                obj = cowbuf.array("q", 100_000)[10:20:3]
            else:
                obj = cowbuf.Counter(padded=True).region
            region = obj if isinstance(obj, cowbuf.Region) else obj.region
            cycle = [memoryview(obj), obj]
            cycle.append(cycle)
            del obj, cycle
            gc.collect()
            region.close()  # BufferError if the export was never counted off
        print("ok")
    """)
