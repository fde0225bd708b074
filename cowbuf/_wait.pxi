# Waiting on shared memory: the slices every blocking call is made of, timeouts, the
# identity of this process, and Counter.wait / Array.wait_at.
#
# A blocking call sleeps on a 32-bit word (_wait.h) in slices, with the GIL released,
# and runs Python's signal handlers between slices, so Ctrl-C interrupts it within a
# slice even when the signal went to another thread. Deadlines are monotonic
# nanoseconds; -1 is "no deadline".

# The longest sleep between two checks for signals, and for a lock holder that died.
cdef int64_t SLICE_NS = 20_000_000
# The first sleep of a lock waiter: a holder that is already dead when acquire() is
# called is found after it, so a fresh acquire() returns within about this long.
cdef int64_t FIRST_SLICE_NS = 1_000_000
# Before it sleeps, a waiter spins a while on the word (a load and a CPU pause per
# spin): most waits between two busy processes that run at the same time are shorter
# than the two system calls of a sleep and a wake-up. But a spin holds a CPU (and the
# GIL) that the process being waited for may need, which on a loaded machine makes
# every wait longer. So the number of spins adapts, per process: it grows when spins
# end in the change they waited for, and halves when they end in a sleep.
cdef int SPIN_MIN = 8
cdef int SPIN_MAX = 1000
cdef int _spin_limit = 64


cdef double _seconds(object timeout) except? -2:
    """A timeout argument of the threading API: None (or inf) waits forever (-1.0);
    a negative one does not wait (0.0)."""
    cdef double t
    if timeout is None:
        return -1.0
    t = PyFloat_AsDouble(timeout)
    if t != t:
        raise ValueError("timeout must be a number, not NaN")
    if t == INFINITY:
        return -1.0
    return t if t > 0.0 else 0.0


cdef int64_t _deadline(double seconds) noexcept:
    """The monotonic deadline `seconds` from now; -1 (none) for a negative timeout.
    Timeouts beyond a century are taken as forever."""
    if seconds < 0.0 or seconds > 3.2e9:
        return -1
    return cowbuf_monotonic_ns() + <int64_t>(seconds * 1e9)


cdef inline bint _expired(int64_t deadline) noexcept:
    return deadline >= 0 and cowbuf_monotonic_ns() >= deadline


cdef int _sleep(uint32_t* word, uint32_t expected, int64_t deadline,
                int64_t slice_ns) except -1:
    """Sleep while *word == expected, for one slice at most and never past `deadline`,
    with the GIL released; then run the signal handlers (their exceptions, such as
    KeyboardInterrupt, raise here). 1 if the sleep ended early (woken, the word had
    changed, a signal), 0 if the slice or the deadline ran out."""
    cdef int64_t ns = slice_ns
    cdef int rc
    cdef int err = 0
    if deadline >= 0:
        ns = min(ns, deadline - cowbuf_monotonic_ns())
        if ns <= 0:
            return 0
    with nogil:
        rc = cowbuf_wait(word, expected, ns)
        if rc == -1:
            err = errno
    PyErr_CheckSignals()
    return rc == 0 or err == EINTR


cdef int _spin_while(const uint32_t* word, uint32_t expected) noexcept:
    """Spin a while (see _spin_limit) as long as *word == expected: 1 if it changed."""
    global _spin_limit
    cdef int i
    cdef int limit = _spin_limit
    for i in range(limit):
        if cowbuf_load_u32(word) != expected:
            _spin_limit = min(SPIN_MAX, max(limit, 2 * i + 16))
            return 1
        cowbuf_cpu_relax()
    _spin_limit = max(SPIN_MIN, limit // 2)
    return 0


# -- who this process is -------------------------------------------------------------

cdef inline uint32_t _pid_of(uint64_t identity) noexcept:
    return <uint32_t>identity & COWBUF_PID_MASK


# (pid, inode of /proc/self/ns/pid) of the last look: a pid namespace is the frame in
# which the pids recorded in shared memory mean something.
cdef tuple _namespace_cache = (0, 0)


cdef uint64_t _pid_namespace() except? 0:
    """The inode of this process's pid namespace (0 where it cannot be told)."""
    global _namespace_cache
    pid = os.getpid()
    if _namespace_cache[0] != pid:
        try:
            ino = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            ino = 0
        _namespace_cache = (pid, ino)
    return _namespace_cache[1]


cdef int _check_namespace(uint64_t recorded, str what) except -1:
    """Refuse an object made in another pid namespace: its pids mean other processes
    here, so neither a holder's death nor its identity could be told."""
    cdef uint64_t here = _pid_namespace()
    if recorded and here and recorded != here:
        raise RuntimeError(
            f"this cowbuf.{what} was made in another pid namespace (another container): "
            "process ids differ there, so it cannot be used from this one")
    return 0


# -- Counter.wait / Array.wait_at ----------------------------------------------------------

cdef object _wait_while_equal(Region region, Py_ssize_t offset, int width, uint64_t expected,
                              object timeout):
    """Block while the `width`-byte integer at `offset` of `region` holds `expected`
    (bits); True once it holds another value, False when the timeout passed."""
    cdef int64_t deadline = _deadline(_seconds(timeout))
    cdef _Mapping keep
    cdef char* p
    cdef uint64_t value
    cdef uint32_t* word
    while True:
        # Checked again after every sleep: another thread may have closed the region
        # meanwhile (holding its mapping keeps the memory mapped while we sleep).
        keep = region._live()
        p = region._addr + offset
        if width == 4:
            word = <uint32_t*>p
            value = cowbuf_load_u32(word)
            expected &= 0xffff_ffff
        else:
            word = cowbuf_low_half(<uint64_t*>p)
            value = cowbuf_load_u64(<uint64_t*>p)
        if value != expected:
            return True
        if _expired(deadline):
            return False
        _sleep(word, <uint32_t>expected, deadline, SLICE_NS)


cdef int _wake_count(object n) except -1:
    cdef Py_ssize_t count = PyNumber_AsSsize_t(n, OverflowError)
    if count < 0:
        raise ValueError(f"cannot wake a negative number of waiters: {count}")
    return <int>min(count, INT_MAX)


cdef void _notify_at(char* p, int width, int count) noexcept:
    cowbuf_wake(<uint32_t*>p if width == 4 else cowbuf_low_half(<uint64_t*>p), count)
