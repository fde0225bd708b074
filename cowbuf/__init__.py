"""cowbuf: typed arrays and atomic counters in shared memory for multi-process Python.

Forked workers that read big preloaded Python objects copy them, because every read
writes a reference count. cowbuf keeps raw numbers in shared memory and gives Python
typed views on them that never touch an object header, so the memory stays shared.
Regions, arrays and counters travel to pool workers by reference under every start
method (fork, forkserver, spawn).
"""

from cowbuf import _joblib, _sharing  # noqa: F401  (_sharing registers the reducers)
from cowbuf._core import (
    TYPECODES,
    Array,
    Barrier,
    BoundedSemaphore,
    Condition,
    Counter,
    Event,
    Lock,
    Queue,
    Region,
    RLock,
    Semaphore,
    array,
)
from cowbuf._registry import Registry, pool_kwargs, registry

_joblib.install()  # by reference through joblib and loky too, once they are imported

__version__ = "0.1.0"

__all__ = [
    "TYPECODES",
    "Array",
    "Counter",
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
