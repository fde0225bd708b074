# Semaphore and BoundedSemaphore shared by processes.
#
# Plain: `value` is the number of free permits and the word sleepers wait on; acquire
# decrements it with a compare-and-swap, release adds to it and wakes sleepers (only
# when `sleepers` says there are some). A permit says nothing of who took it, so one
# process may release what another acquired (a semaphore used to signal), and a permit
# held by a process that dies is lost.
#
# track_holders=True: each permit is a slot that holds the identity of the process
# that took it (0 when free), so a waiter that finds no free slot for a whole sleep
# slice takes over the slot of a holder that is gone. A permit is then released by
# the process that acquired it. Acquire and release scan the slots (4,096 at most).

cdef uint32_t _SEMAPHORE_MAX = 0x7fff_ffff   # SEM_VALUE_MAX, as multiprocessing's
cdef uint32_t _TRACKED_MAX = 4096


cdef inline uint64_t* _holder_slots(cowbuf_semaphore_state* s) noexcept nogil:
    return <uint64_t*>(<char*>s + sizeof(cowbuf_semaphore_state))


cdef inline bint _take_permit(cowbuf_semaphore_state* s) noexcept:
    cdef uint32_t v = cowbuf_load_u32(&s.value)
    while v:
        if cowbuf_cas_u32(&s.value, &v, v - 1):
            return True
    return False


cdef bint _take_slot(cowbuf_semaphore_state* s, uint64_t me) noexcept:
    cdef uint64_t* slot = _holder_slots(s)
    cdef uint32_t i
    cdef uint64_t free
    for i in range(s.slots):
        if cowbuf_load_u64(&slot[i]) == 0:
            free = 0
            if cowbuf_cas_u64(&slot[i], &free, me):
                return True
    return False


cdef bint _take_slot_of_dead(cowbuf_semaphore_state* s, uint64_t me) noexcept nogil:
    """Take over a slot whose holder is gone."""
    cdef uint64_t* slot = _holder_slots(s)
    cdef uint64_t holder, checked = 0
    cdef uint32_t i
    for i in range(s.slots):
        holder = cowbuf_load_u64(&slot[i])
        if holder == 0 or holder == me or holder == checked:
            continue
        if not cowbuf_process_gone(holder):
            checked = holder  # the slots of one process are often next to each other
            continue
        if cowbuf_cas_u64(&slot[i], &holder, me):
            return True
    return False


@cython.no_gc
@cython.binding(False)
cdef class Semaphore:
    """Semaphore(value=1, *, track_holders=False)

    A semaphore shared by processes (forked, or sent through multiprocessing), with
    the API of threading.Semaphore: acquire(blocking=True, timeout=None),
    release(n=1), `with sem:`, and get_value() as multiprocessing's.

    A plain semaphore counts permits without knowing who holds them: one process may
    release what another acquired (a semaphore used to signal), and a permit held by
    a process that dies stays taken. With track_holders=True each permit records the
    process that holds it, and a waiter takes over the permits of a holder that died
    (within a few milliseconds of finding none free); a permit must then be released
    by the process that acquired it (ValueError otherwise). Such a semaphore has
    1..4096 permits."""

    def __cinit__(self):
        self._region = _NO_REGION
        self._s = NULL

    def __init__(self, value=1, *, bint track_holders=False):
        self._init(value, track_holders, False)

    cdef int _init(self, object value, bint track_holders, bint bounded) except -1:
        cdef Py_ssize_t n = PyNumber_AsSsize_t(value, OverflowError)
        cdef cowbuf_semaphore_state* s
        if self._s != NULL:
            raise TypeError(f"{type(self).__name__}.__init__() may only be called once")
        if n < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if n > _SEMAPHORE_MAX:
            raise OverflowError(f"semaphore initial value must be <= {_SEMAPHORE_MAX}")
        if track_holders and not 1 <= n <= _TRACKED_MAX:
            raise ValueError(
                f"a semaphore that tracks its holders has 1..{_TRACKED_MAX} permits, not {n}")
        self._region = _new_state(
            sizeof(cowbuf_semaphore_state) + (n * sizeof(uint64_t) if track_holders else 0),
            COWBUF_KIND_SEMAPHORE)
        s = self._s = <cowbuf_semaphore_state*>self._region._addr
        s.bounded = bounded
        s.bound = <uint32_t>n
        s.slots = <uint32_t>n if track_holders else 0
        cowbuf_store_u32(&s.value, 0 if track_holders else <uint32_t>n)
        return 0

    def acquire(self, bint blocking=True, timeout=None):
        """Take a permit, blocking until one is free (or for `timeout` seconds at
        most). Return True once taken, False if the timeout passed or no permit was
        free and `blocking` is false."""
        cdef cowbuf_semaphore_state* s = self._s
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        if s == NULL:
            _raise_unmade(self)
        if s.slots:
            return self._acquire_slot(blocking, timeout)
        if _take_permit(s):
            return True
        if not blocking:
            return False
        cdef double seconds = _seconds(timeout)
        cdef int64_t deadline = _deadline(seconds)
        if seconds != 0.0 and _spin_while(&s.value, 0) and _take_permit(s):
            return True
        while True:
            if _take_permit(s):
                return True
            if _expired(deadline):
                return False
            cowbuf_add_fetch_u32(&s.sleepers, 1)
            try:
                _sleep(&s.value, 0, deadline, SLICE_NS)
            finally:
                cowbuf_add_fetch_u32(&s.sleepers, <uint32_t>-1)

    cdef object _acquire_slot(self, bint blocking, object timeout):
        cdef cowbuf_semaphore_state* s = self._s
        cdef uint64_t me = cowbuf_identity()
        cdef int64_t deadline = _deadline(_seconds(timeout)) if blocking else 0
        cdef int64_t slice_ns = FIRST_SLICE_NS
        cdef uint32_t released
        cdef bint taken
        while True:
            released = cowbuf_load_u32(&s.released)
            if _take_slot(s, me):
                return True
            if _expired(deadline):
                with nogil:
                    taken = _take_slot_of_dead(s, me)
                return taken
            cowbuf_add_fetch_u32(&s.sleepers, 1)
            try:
                if not _sleep(&s.released, released, deadline, slice_ns):
                    # a whole slice without a release: is some holder gone?
                    with nogil:
                        taken = _take_slot_of_dead(s, me)
                    if taken:
                        return True
                    slice_ns = min(2 * slice_ns, SLICE_NS)
            finally:
                cowbuf_add_fetch_u32(&s.sleepers, <uint32_t>-1)

    def release(self, n=1):
        """Give back `n` permits, waking as many waiters. ValueError if a
        BoundedSemaphore would go above its initial value, or if this process holds
        fewer than `n` permits of a semaphore that tracks its holders."""
        cdef cowbuf_semaphore_state* s = self._s
        cdef Py_ssize_t count = PyNumber_AsSsize_t(n, OverflowError)
        cdef uint32_t v
        if s == NULL:
            _raise_unmade(self)
        if count < 1:
            raise ValueError("n must be one or more")
        if s.slots:
            self._release_slots(count)
            return
        v = cowbuf_load_u32(&s.value)
        while True:
            if s.bounded and v + <uint64_t>count > s.bound:
                raise ValueError("Semaphore released too many times")
            if v + <uint64_t>count > _SEMAPHORE_MAX:
                raise OverflowError(f"a semaphore holds at most {_SEMAPHORE_MAX} permits")
            if cowbuf_cas_u32(&s.value, &v, v + <uint32_t>count):
                break
        if cowbuf_load_u32(&s.sleepers):
            cowbuf_wake(&s.value, <int>min(count, INT_MAX))

    cdef int _release_slots(self, Py_ssize_t count) except -1:
        cdef cowbuf_semaphore_state* s = self._s
        cdef uint64_t* slot = _holder_slots(s)
        cdef uint64_t me = cowbuf_identity()
        cdef uint64_t mine
        cdef Py_ssize_t released = 0
        cdef uint32_t i
        for i in range(s.slots):
            if released == count:
                break
            mine = me
            if cowbuf_load_u64(&slot[i]) == me and cowbuf_cas_u64(&slot[i], &mine, 0):
                released += 1
        if released:
            cowbuf_add_fetch_u32(&s.released, 1)
            if cowbuf_load_u32(&s.sleepers):
                cowbuf_wake(&s.released, <int>min(released, INT_MAX))
        if released < count:
            raise ValueError(
                f"this process held {released} of the {count} permit(s) it released: with "
                "track_holders=True, a permit is released by the process that acquired it")
        return 0

    def get_value(self):
        """The number of free permits (a snapshot)."""
        cdef cowbuf_semaphore_state* s = self._s
        cdef uint64_t* slot
        cdef uint32_t i, free = 0
        if s == NULL:
            _raise_unmade(self)
        if not s.slots:
            return cowbuf_load_u32(&s.value)
        slot = _holder_slots(s)
        for i in range(s.slots):
            free += cowbuf_load_u64(&slot[i]) == 0
        return free

    @property
    def track_holders(self):
        """Whether each permit records the process that holds it."""
        if self._s == NULL:
            _raise_unmade(self)
        return self._s.slots != 0

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, traceback):
        self.release()

    def __reduce_ex__(self, protocol):
        _no_pickle(self)

    def __repr__(self):
        name = type(self).__name__
        if self._s == NULL:
            return f"<cowbuf.{name} uninitialized>"
        tracked = ", track_holders" if self._s.slots else ""
        return f"<cowbuf.{name} value={self.get_value()}{tracked}>"


@cython.no_gc
@cython.final
@cython.binding(False)
cdef class BoundedSemaphore(Semaphore):
    """BoundedSemaphore(value=1, *, track_holders=False)

    A Semaphore whose release() raises ValueError when it would take the number of
    free permits above `value`, as threading.BoundedSemaphore's."""

    def __init__(self, value=1, *, bint track_holders=False):
        self._init(value, track_holders, True)


cdef Semaphore _semaphore_on_state(Semaphore sem, Region region):
    sem._s = <cowbuf_semaphore_state*>_state_on(
        region, sizeof(cowbuf_semaphore_state), COWBUF_KIND_SEMAPHORE, type(sem).__name__)
    if <size_t>region._nbytes < sizeof(cowbuf_semaphore_state) + sem._s.slots * sizeof(uint64_t):
        raise ValueError(f"bad reference to a cowbuf.{type(sem).__name__}: the region does not fit")
    sem._region = region
    return sem


def _semaphore_on(Region region not None, bint bounded):
    if bounded:
        return _semaphore_on_state(BoundedSemaphore.__new__(BoundedSemaphore), region)
    return _semaphore_on_state(Semaphore.__new__(Semaphore), region)


def _share_semaphore(Semaphore sem not None):
    if sem._s == NULL:
        _raise_unmade(sem)
    return _semaphore_on, (sem._region, isinstance(sem, BoundedSemaphore))
