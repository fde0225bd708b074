"""Ways to hold the data that forked workers read: the article's experiment.

Each strategy builds the data (in the parent, before the fork, unless it is the
"no preload" baseline) and reads it three ways:

- read_all: every value, read in Python (``sum(x)`` or a loop) — what copies a
  preloaded list into each worker, because each read writes a reference count;
- c_sum: the sum computed in C, where the container has one (numpy, cowbuf);
- lookup: a few values by index, as an API endpoint would.

Two data sets: N integers (``dataset="ints"``), and a lookup table of N keys
``"user:000000042:0123456"`` -> i (``dataset="dict"``), read by looking up every key
with key objects the worker makes itself, as a request handler would: i is the key's
index, so read_all sums to N(N-1)/2 either way.

Shared by the gunicorn app (gunicorn_app.py) and the fork-scaling benchmark.
"""

from __future__ import annotations

import array
import atexit
import gc
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Strategy:
    name: str            # short key, used in file names and JSON
    title: str           # for tables and charts
    preload: bool        # built in the gunicorn master (--preload) and shared by fork
    build: Callable[[int], Any]
    read_all: Callable[[Any], int]
    lookup: Callable[[Any, int], int]
    c_sum: Callable[[Any], int] | None = None
    needs: str | None = None  # a module that must be importable
    dataset: str = "ints"     # or "dict": a lookup table of string keys


def _ints(n: int) -> array.array:
    """0..n-1 as a compact int64 array, without a temporary list of n ints."""
    return array.array("q", range(n))


# -- list --------------------------------------------------------------------------------

def _build_list(n: int) -> list[int]:
    return list(range(n))


def _build_list_frozen(n: int) -> list[int]:
    data = list(range(n))
    gc.freeze()  # move everything to the permanent generation before the fork
    return data


def _build_joblib(n: int) -> list[int]:
    import joblib
    path = os.environ.get("COWBUF_BENCH_JOBLIB_FILE")
    if not path:
        raise RuntimeError("COWBUF_BENCH_JOBLIB_FILE: the file written by dump_joblib()")
    data = joblib.load(path)
    if len(data) != n:
        raise RuntimeError(f"{path} holds {len(data)} items, expected {n}")
    return data


def dump_joblib(n: int, path: str) -> None:
    """The list that the joblib strategy loads (written once, by the harness)."""
    import joblib
    joblib.dump(list(range(n)), path)


def _sum_iter(data: Any) -> int:
    return sum(data)


def _index(data: Any, i: int) -> int:
    return data[i]


# -- numpy -------------------------------------------------------------------------------

def _build_numpy(n: int) -> Any:
    import numpy as np
    return np.arange(n, dtype=np.int64)


def _numpy_c_sum(data: Any) -> int:
    return int(data.sum())


def _numpy_index(data: Any, i: int) -> int:
    return int(data[i])


def _numpy_iter(data: Any) -> int:
    return int(sum(data))


# -- pure-Python mmap --------------------------------------------------------------------

_UNPACK = struct.Struct("q").unpack_from


def _build_mmap(n: int) -> mmap.mmap:
    m = mmap.mmap(-1, max(n, 1) * 8)  # MAP_SHARED | MAP_ANONYMOUS
    m[:n * 8] = _ints(n).tobytes()
    return m


def _struct_sum(m: mmap.mmap) -> int:
    unpack = _UNPACK
    total = 0
    for offset in range(0, len(m), 8):
        total += unpack(m, offset)[0]
    return total


def _struct_index(m: mmap.mmap, i: int) -> int:
    return _UNPACK(m, i * 8)[0]


def _build_memoryview(n: int) -> memoryview:
    return memoryview(_build_mmap(n)).cast("q")


# -- multiprocessing ---------------------------------------------------------------------

class _Shm:
    """A SharedMemory segment unlinked at exit by the process that created it."""

    def __init__(self, n: int) -> None:
        from multiprocessing import shared_memory
        self.shm = shared_memory.SharedMemory(create=True, size=max(n, 1) * 8)
        self.view = self.shm.buf.cast("q")
        self.view[:] = _ints(n)
        self.owner = os.getpid()
        atexit.register(self.unlink)

    def unlink(self) -> None:
        if os.getpid() == self.owner:  # forked workers run atexit handlers too
            self.view.release()
            self.shm.close()
            self.shm.unlink()


def _build_shm(n: int) -> _Shm:
    return _Shm(n)


def _shm_sum(s: _Shm) -> int:
    return sum(s.view)


def _shm_index(s: _Shm, i: int) -> int:
    return s.view[i]


def _build_rawarray(n: int) -> Any:
    from multiprocessing import sharedctypes
    raw = sharedctypes.RawArray("q", max(n, 1))
    memoryview(raw).cast("B")[:] = memoryview(_ints(n)).cast("B")
    return raw


# -- cowbuf ------------------------------------------------------------------------------

def _build_cowbuf(n: int) -> Any:
    import cowbuf
    return cowbuf.array("q", _ints(n))


def _cowbuf_c_sum(a: Any) -> int:
    return a.sum()


# -- lookup tables: N string keys -> int ----------------------------------------------------

def dict_key(i: int) -> str:
    """The key of entry i: a new str object at every call."""
    return f"user:{i:09d}:{i * 7919 % 10_000_000:07d}"


def _pairs(n: int) -> Any:
    return ((dict_key(i), i) for i in range(n))


def _build_dict(n: int) -> dict[str, int]:
    return dict(_pairs(n))


def _build_dict_frozen(n: int) -> dict[str, int]:
    data = dict(_pairs(n))
    gc.freeze()
    return data


def _lookup_every_key(data: Any) -> int:
    return sum(data[dict_key(i)] for i in range(len(data)))


def _lookup_key(data: Any, i: int) -> int:
    return int(data[dict_key(i)])


class _Trie:
    """A marisa-trie of the keys and a numpy column of the values, by key id."""

    def __init__(self, n: int) -> None:
        import marisa_trie
        import numpy as np
        self.trie = marisa_trie.Trie(dict_key(i) for i in range(n))
        self.values = np.empty(n, dtype=np.int64)
        for i in range(n):
            self.values[self.trie[dict_key(i)]] = i

    def __getitem__(self, key: str) -> int:
        return int(self.values[self.trie[key]])

    def __len__(self) -> int:
        return len(self.values)


def _build_frozendict(n: int) -> Any:
    import cowbuf
    return cowbuf.FrozenDict(_pairs(n))


STRATEGIES: dict[str, Strategy] = {s.name: s for s in [
    Strategy("list-nopreload", "list, no preload", False, _build_list, _sum_iter, _index),
    Strategy("list", "list, --preload", True, _build_list, _sum_iter, _index),
    Strategy("list-gcfreeze", "list + gc.freeze()", True, _build_list_frozen, _sum_iter,
             _index),
    Strategy("joblib", "list from joblib.load", True, _build_joblib, _sum_iter, _index,
             needs="joblib"),
    Strategy("numpy", "numpy array", True, _build_numpy, _numpy_iter, _numpy_index,
             c_sum=_numpy_c_sum, needs="numpy"),
    Strategy("mmap-struct", "mmap + struct.unpack_from", True, _build_mmap, _struct_sum,
             _struct_index),
    Strategy("mmap-memoryview", "mmap + memoryview.cast('q')", True, _build_memoryview,
             _sum_iter, _index),
    Strategy("shared_memory", "multiprocessing.shared_memory", True, _build_shm, _shm_sum,
             _shm_index),
    Strategy("rawarray", "sharedctypes.RawArray", True, _build_rawarray, _sum_iter, _index),
    Strategy("cowbuf", "cowbuf Array", True, _build_cowbuf, _sum_iter, _index,
             c_sum=_cowbuf_c_sum, needs="cowbuf"),
    Strategy("dict", "dict", True, _build_dict, _lookup_every_key, _lookup_key,
             dataset="dict"),
    Strategy("dict-gcfreeze", "dict + gc.freeze()", True, _build_dict_frozen,
             _lookup_every_key, _lookup_key, dataset="dict"),
    Strategy("marisa", "marisa-trie + numpy value column", True, _Trie, _lookup_every_key,
             _lookup_key, needs="marisa_trie", dataset="dict"),
    Strategy("frozendict", "cowbuf FrozenDict", True, _build_frozendict, _lookup_every_key,
             _lookup_key, needs="cowbuf", dataset="dict"),
]}


def missing(strategy: Strategy) -> str | None:
    """Why a strategy cannot run here, or None."""
    if strategy.needs:
        try:
            __import__(strategy.needs)
        except ImportError:
            return f"{strategy.needs} is not installed"
    return None
