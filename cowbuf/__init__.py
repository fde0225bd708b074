"""cowbuf: typed arrays, atomic counters, strings and frozen dicts in shared memory for
multi-process Python.

Forked workers that read big preloaded Python objects copy them, because every read
writes a reference count. cowbuf keeps raw numbers, strings and lookup tables in shared
memory and gives Python views on them that never touch an object header there, so the
memory stays shared. Regions, arrays, counters, StrArrays, BytesArrays and FrozenDicts
travel to pool workers by reference under every start method (fork, forkserver, spawn).
"""

from cowbuf import _joblib, _sharing  # noqa: F401  (_sharing registers the reducers)
from cowbuf._core import (
    TYPECODES,
    Array,
    Barrier,
    BoundedSemaphore,
    BytesArray,
    Condition,
    Counter,
    Event,
    FrozenDict,
    Lock,
    Queue,
    Region,
    RLock,
    Semaphore,
    StrArray,
    array,
)
from cowbuf._registry import Registry, pool_kwargs, registry

_joblib.install()  # by reference through joblib and loky too, once they are imported

__version__ = "0.1.0"

__all__ = [
    "TYPECODES",
    "Array",
    "Counter",
    "StrArray",
    "BytesArray",
    "FrozenDict",
    "Region",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Condition",
    "Barrier",
    "Queue",
    "Registry",
    "array",
    "pool_kwargs",
    "registry",
    "__version__",
]
