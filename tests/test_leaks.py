"""No call leaks memory at the C level: every allocating path of cowbuf, error paths
included, called thousands of times, leaves the C heap as it found it.

tracemalloc (tests/test_torture.py) sees Python objects and PyMem_Malloc, but not
libc's heap: a 1 KiB calloc leaked on every atomic_add_at call passed it (issue 17).
Here every path runs in an interpreter of its own with PYTHONMALLOC=malloc, so that
Python objects, cowbuf's buffers and its calloc'd tables all come from malloc, and
the bytes malloc has handed out (glibc's mallinfo2) are compared before and after.
Under the sanitizers, LeakSanitizer and valgrind check the same (tools/sanitize.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import TESTS, python_env

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2"),
    pytest.mark.skipif(bool(os.environ.get("COWBUF_SANITIZER")),
                       reason="the sanitizers' allocators; LeakSanitizer checks leaks there"),
]

CALLS = 2000
# Growth over CALLS calls of one path that is a leak, in bytes: 24 a call. malloc's
# smallest chunk is 32 bytes, so one allocation a call left behind is above it. A
# leak grows the heap in every round of calls; the allocator's own one-off growth (a
# table that resizes, a free list that fills) does not, so a path leaks if it grew by
# more than this in each of two rounds.
SLACK = 24 * CALLS

PROGRAM = r"""
import contextlib, ctypes, gc, json, pickle, sys
from multiprocessing.reduction import ForkingPickler
import numpy as np
import cowbuf

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print(json.dumps({"skip": "no mallinfo2 (glibc < 2.33)"}))
    sys.exit(0)
libc.mallinfo2.restype = MallInfo2

def in_use():
    gc.collect()
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd  # from the heap, and mmapped by malloc

small = cowbuf.array("q", 64)           # <= 65,536 items: the combining path
large = cowbuf.array("q", 1 << 17)      # the per-item path
narrow = cowbuf.array("I", 64)
self_indices = cowbuf.array("q", range(64))  # indices inside the array: copied
indices = np.arange(64)
indices32 = np.arange(64, dtype=np.int32)[::-1]
weights = np.ones(64, dtype=np.int64)
payload = np.arange(64, dtype=np.int64)
closed = cowbuf.array("q", 10_000)
closed.region.close()

def raises(call, error):
    def path():
        try:
            call()
        except error:
            return
        raise AssertionError(f"no {error.__name__}")
    return path

def frozen_small():
    a = cowbuf.array("q", [1, 2, 3])
    a.freeze()  # moves to the frozen arena

def frozen_large():
    a = cowbuf.array("q", 1024)
    a.freeze()

def region_round_trip():
    r = cowbuf.Region(1 << 16, populate=True)
    with memoryview(r) as m:
        m[0] = 1
    r.close()

def by_reference():
    pickle.loads(ForkingPickler.dumps(small))
    pickle.loads(ForkingPickler.dumps(cowbuf.Region(8192)))

def reads():
    large.sum(), large.min(), large.max(), small.tolist(), small.tobytes()
    for _ in reversed(small[::3]):
        pass
    np.asarray(large[::7]).sum()

PATHS = {
    "atomic_add_at, combining, numpy indices": lambda: small.atomic_add_at(indices, weights),
    "atomic_add_at, combining, 4-byte items": lambda: narrow.atomic_add_at(indices32, 3),
    "atomic_add_at, combining, list indices and values":
        lambda: small.atomic_add_at(list(range(64)), [1] * 64),
    "atomic_add_at, per item": lambda: large.atomic_add_at(indices, 1),
    "atomic_add_at, per item, list indices": lambda: large.atomic_add_at(list(range(9)), 1),
    "atomic_add_at, indices inside the array": lambda: self_indices.atomic_add_at(self_indices, 0),
    "atomic_add_at, bad index": raises(lambda: small.atomic_add_at([0, 1, 10**6], 1), IndexError),
    "atomic_add_at, bad value":
        raises(lambda: small.atomic_add_at([0, 1], [1, 2**64]), OverflowError),
    "atomic_add_at, bad item type": raises(lambda: small.atomic_add_at([0, "x"], 1), TypeError),
    "atomic_add_at, length mismatch": raises(lambda: small.atomic_add_at([0, 1], [1]), ValueError),
    "atomic_add_at, float buffer": raises(lambda: small.atomic_add_at(np.zeros(4), 1), TypeError),
    "slice from a buffer, strided": lambda: large[::2].__setitem__(slice(0, 64), payload),
    "slice from a buffer, contiguous": lambda: small.__setitem__(slice(None), payload),
    "slice from a list": lambda: small.__setitem__(slice(None), list(range(64))),
    "slice, bad item": raises(lambda: small.__setitem__(slice(0, 3), [1, 2, "x"]), TypeError),
    "slice, wrong length": raises(lambda: small.__setitem__(slice(0, 3), payload), ValueError),
    "slice, wrong buffer type": raises(
        lambda: small.__setitem__(slice(0, 4), np.zeros(4, dtype=np.float32)), TypeError),
    "array from a range": lambda: cowbuf.array("q", range(2000)),
    "array from a list": lambda: cowbuf.array("d", [0.5] * 100),
    "array from a generator": lambda: cowbuf.array("i", (i for i in range(100))),
    "array from a buffer": lambda: cowbuf.array("q", payload),
    "array, bad item": raises(lambda: cowbuf.array("q", [1, 2, "x"]), TypeError),
    "counters": lambda: (cowbuf.Counter(5).add(2), cowbuf.Counter(padded=True).exchange(3)),
    "region and its memoryview": region_round_trip,
    "freeze, small": frozen_small,
    "freeze, large": frozen_large,
    "pickle by value": lambda: pickle.loads(pickle.dumps(small, 5)),
    "pickle by reference": by_reference,
    "reads and exports": reads,
    "use after close": raises(lambda: closed.sum(), ValueError),
}

calls = int(sys.argv[1])
growth = {}
for name, path in PATHS.items():
    for _ in range(200):  # warm-up: caches, free lists, arenas reach their size
        path()
    rounds = []
    for _ in range(2):
        before = in_use()
        for _ in range(calls):
            path()
        rounds.append(in_use() - before)
    growth[name] = rounds
print(json.dumps({"growth": growth}))
"""


def test_no_c_level_leak_in_any_allocating_path() -> None:
    env = dict(python_env(), PYTHONMALLOC="malloc")
    done = subprocess.run([sys.executable, "-W", "error", "-c", textwrap.dedent(PROGRAM),
                           str(CALLS)], capture_output=True, text=True, timeout=600,
                          env=env, cwd=TESTS)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if "skip" in result:
        pytest.skip(result["skip"])
    growth = result["growth"]
    leaks = {name: rounds for name, rounds in growth.items() if min(rounds) > SLACK}
    assert not leaks, (f"bytes the C heap grew by in each of two rounds of {CALLS} calls "
                       f"(a leak: more than {SLACK} in both): {leaks}")
    # the measurement sees a leak of the size it is meant to find
    assert len(growth) >= 30
