"""cowbuf: typed arrays and atomic counters in shared memory for multi-process Python.

Forked workers that read big preloaded Python objects copy them, because every read
writes a reference count. cowbuf keeps raw numbers in shared memory and gives Python
typed views on them that never touch an object header, so the memory stays shared.
"""

from cowbuf._core import TYPECODES, Array, Counter, Region, array

__version__ = "0.1.0"

__all__ = ["TYPECODES", "Array", "Counter", "Region", "array", "__version__"]
