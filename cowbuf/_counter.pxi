# Counter: a shared 64-bit integer with atomic operations.

cdef inline long long _counter_arg(object value, Region region) except? -1:
    """`value` as an int64 for a write to a counter on `region` (None: a counter being
    made)."""
    cdef int overflow = 0
    cdef long long v
    if PyLong_CheckExact(value):
        # the common case, without a temporary object or an exception frame
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            return v
    return _counter_arg_slow(value, region)


cdef long long _counter_arg_slow(object value, Region region) except? -1:
    if region is not None:
        # closed is ValueError and frozen TypeError, whatever the argument
        region._check_writable()
    number = value if PyLong_CheckExact(value) else PyNumber_Index(value)
    try:
        return PyLong_AsLongLong(number)
    except OverflowError:
        raise OverflowError(
            f"{number} is out of range for a 64-bit counter (-2**63..2**63-1)") from None


cdef Counter _counter_view(Region region, Py_ssize_t offset):
    cdef Counter c = Counter.__new__(Counter)
    c._region = region
    c._offset = offset
    return c


# no_gc: a Counter refers only to its Region (see Region). binding(False): plain
# method descriptors rather than Cython function objects, which CPython calls without
# a bound-method object in between (counters are called in hot loops).
@cython.no_gc
@cython.final
@cython.binding(False)
cdef class Counter:
    """Counter(initial=0, *, padded=False)

    A signed 64-bit integer in shared memory with sequentially consistent atomic
    operations, exact across threads and processes (forked, or sent through
    multiprocessing). Arithmetic wraps around at 2**63 like C and numpy integers.

    Counters are cheap: many share one page. padded=True gives a counter a cache
    line of its own, so that hot counters updated by different processes do not slow
    each other down (false sharing). Region.counter(offset) places one in an
    existing region. Arguments are positional-only: these methods sit in hot loops,
    and CPython calls them faster that way."""

    def __cinit__(self):
        self._region = _NO_REGION

    def __init__(self, initial=0, *, bint padded=False):
        if self._region is not _NO_REGION:
            raise TypeError("Counter.__init__() may only be called once")
        cdef long long value = _counter_arg(initial, None)
        if self._region is not _NO_REGION:  # initial.__index__ called __init__ itself
            raise TypeError("Counter.__init__() may only be called once")
        self._region = _carve(64, 64) if padded else _carve(8, 8)
        self._offset = 0
        cowbuf_store_u64(<uint64_t*>self._region._addr, <uint64_t>value)

    cdef inline long long* _ptr(self) except NULL:
        cdef char* addr = self._region._addr
        if addr == NULL:
            _raise_closed()
        return <long long*>(addr + self._offset)

    cdef inline long long* _wptr(self) except NULL:
        cdef Region r = self._region
        if r._addr == NULL or r._mapping.readonly:
            r._check_writable()  # raises
        return <long long*>(r._addr + self._offset)

    def load(self):
        """The current value."""
        return <long long>cowbuf_load_u64(<uint64_t*>self._ptr())

    @property
    def value(self):
        """The current value (an atomic load)."""
        return <long long>cowbuf_load_u64(<uint64_t*>self._ptr())

    def store(self, value, /):
        """Set the value."""
        cdef long long v = _counter_arg(value, self._region)
        cowbuf_store_u64(<uint64_t*>self._wptr(), <uint64_t>v)

    def add(self, n=1, /):
        """Add `n` and return the new value."""
        cdef long long d = _counter_arg(n, self._region)
        return <long long>cowbuf_add_fetch_u64(<uint64_t*>self._wptr(), <uint64_t>d)

    def sub(self, n=1, /):
        """Subtract `n` and return the new value."""
        cdef long long d = _counter_arg(n, self._region)
        return <long long>cowbuf_add_fetch_u64(<uint64_t*>self._wptr(), 0 - <uint64_t>d)

    def fetch_add(self, n, /):
        """Add `n` and return the value before the add (claims work: each caller
        gets a distinct range)."""
        cdef long long d = _counter_arg(n, self._region)
        return <long long>cowbuf_fetch_add_u64(<uint64_t*>self._wptr(), <uint64_t>d)

    def exchange(self, value, /):
        """Set the value and return the previous one."""
        cdef long long v = _counter_arg(value, self._region)
        return <long long>cowbuf_exchange_u64(<uint64_t*>self._wptr(), <uint64_t>v)

    def compare_exchange(self, expected, desired, /):
        """Set the value to `desired` if it equals `expected`; return whether it did."""
        cdef uint64_t e = <uint64_t>_counter_arg(expected, self._region)
        cdef long long d = _counter_arg(desired, self._region)
        return bool(cowbuf_cas_u64(<uint64_t*>self._wptr(), &e, <uint64_t>d))

    def wait(self, expected, /, timeout=None):
        """Block while the value equals `expected` (for `timeout` seconds at most):
        return True once it differs, False if the timeout passed. notify() and
        notify_all() wake the waiters at once; a change without them is seen within
        20 ms. Ctrl-C interrupts the wait."""
        cdef long long e = _counter_arg(expected, self._region)
        self._ptr()
        return _wait_while_equal(self._region, self._offset, 8, <uint64_t>e, timeout)

    def notify(self, n=1, /):
        """Wake up to `n` threads or processes blocked in wait() on this counter."""
        cdef int count = _wake_count(n)
        cowbuf_wake(cowbuf_low_half(<uint64_t*>self._ptr()), count)

    def notify_all(self):
        """Wake every thread and process blocked in wait() on this counter."""
        cowbuf_wake(cowbuf_low_half(<uint64_t*>self._ptr()), INT_MAX)

    def __int__(self):
        return <long long>cowbuf_load_u64(<uint64_t*>self._ptr())

    @property
    def region(self):
        """The Region holding the counter."""
        return self._region

    def __reduce_ex__(self, protocol):
        # by value, like Region and Array; see cowbuf._sharing for by reference
        return (_counter_from_value, (self.load(), self._region._nbytes == 64,
                                      self._region.frozen))

    def __repr__(self):
        if self._region._addr == NULL:
            return "<cowbuf.Counter closed>"
        return f"cowbuf.Counter({self.load()})"
