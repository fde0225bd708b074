# Lock and RLock: mutual exclusion between processes that survives the death of the
# holder; and what every synchronization object's state starts with (_sync.h).
#
# The lock word holds the identity of the holding process (_process.h: its pid in the
# low half, a tag of its start time in the high half) and a waiters bit, or 0 when
# the lock is free. Acquiring is one compare-and-swap 0 -> identity; releasing is an
# exchange to 0, plus a wake-up of one sleeper when the word had the waiters bit. A
# waiter spins a little, then sets the waiters bit and sleeps on the low half.
#
# Robustness: when a sleep slice runs out, the waiter asks whether the holder still
# lives (kill(pid, 0), and /proc for zombies and reused pids) - only then, never on
# every contended acquire, which would cost system calls each time. A holder that is
# gone is replaced by a compare-and-swap from its identity to the waiter's (so two
# waiters cannot both take it), and the new holder finds `owner_died` set: the data
# the lock protects may be half written. A fresh acquire() on the lock of a dead
# holder returns after its first slice (FIRST_SLICE_NS).
#
# The kernel's robust-futex list is not used: it belongs to the C library (one list
# head per thread, for pthread mutexes), and registering another would break them.

cdef uint64_t _HOLDER_FLAGS = COWBUF_LOCK_WAITERS | COWBUF_LOCK_STOLEN


cdef Region _new_state(size_t nbytes, uint32_t kind):
    """Zeroed shared memory for a synchronization object, on a cache line of its own
    (the hot words of two objects never share one): carved from an arena under a
    page, else a mapping of its own."""
    cdef Region region
    if <Py_ssize_t>nbytes < PAGE:
        region = _carve(<Py_ssize_t>nbytes, 64)
    else:
        region = _region_view(_own_mapping(<Py_ssize_t>nbytes, False), 0, <Py_ssize_t>nbytes)
    cdef cowbuf_sync_header* head = <cowbuf_sync_header*>region._addr
    head.pid_namespace = _pid_namespace()
    cowbuf_store_u32(&head.kind, kind)
    return region


cdef char* _state_on(Region region, size_t nbytes, uint32_t kind, str what) except NULL:
    """The state of a synchronization object that arrived by reference: checked to be
    one of its kind, made in this pid namespace."""
    cdef cowbuf_sync_header* head
    region._live()
    if <size_t>region._nbytes < nbytes or <uintptr_t>region._addr % 64:
        raise ValueError(f"bad reference to a cowbuf.{what}: the region does not fit")
    head = <cowbuf_sync_header*>region._addr
    if cowbuf_load_u32(&head.kind) != kind:
        raise ValueError(f"bad reference to a cowbuf.{what}: the region holds something else")
    _check_namespace(head.pid_namespace, what)
    return region._addr


cdef int _raise_unmade(object obj) except -1:
    raise ValueError(f"{type(obj).__name__} object was made with __new__ and never initialized")


cdef int _no_pickle(object obj) except -1:
    name = type(obj).__name__
    raise TypeError(
        f"cannot pickle a cowbuf.{name}: a copy of a {name} would not be the same {name}; "
        "multiprocessing sends it by reference (Process and Pool arguments, Queue and "
        "Pipe messages, cowbuf.registry)")


cdef int _check_acquire_args(bint blocking, double timeout) except -1:
    # the argument checks of threading.Lock.acquire
    if not blocking and timeout != -1:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0 and timeout != -1:
        raise ValueError("timeout value must be a non-negative number")
    return 0


cdef int _take_from_dead(cowbuf_lock_state* s, uint64_t seen, uint64_t me,
                         uint64_t thread) except -1:
    """Take the lock if its holder `seen` (a value of the word) is a process that is
    gone: 1 if taken, 0 if the holder lives (or the word changed meanwhile)."""
    cdef uint64_t holder = seen & ~_HOLDER_FLAGS
    cdef uint64_t v
    cdef int gone
    if holder == 0 or holder == me:
        return 0
    with nogil:
        gone = cowbuf_process_gone(holder)
    if not gone or not cowbuf_cas_u64(&s.word, &seen,
                                      me | COWBUF_LOCK_WAITERS | COWBUF_LOCK_STOLEN):
        return 0
    cowbuf_store_u32(&s.died, 1)
    cowbuf_store_u64(&s.thread, thread)
    cowbuf_store_u32(&s.depth, 1)
    v = cowbuf_load_u64(&s.word)
    while not cowbuf_cas_u64(&s.word, &v, v & ~<uint64_t>COWBUF_LOCK_STOLEN):
        pass
    return 1


cdef int _lock_wait(cowbuf_lock_state* s, int64_t deadline, uint64_t thread) except -1:
    """Take the lock word of `s` for this process once the fast path has failed: 1
    once held, 0 when the deadline passed (at once for a deadline of 0)."""
    cdef uint64_t me = cowbuf_identity()
    cdef uint32_t* word = cowbuf_low_half(&s.word)
    cdef int64_t slice_ns = FIRST_SLICE_NS
    cdef uint64_t v
    if deadline != 0 and _spin_while(word, <uint32_t>cowbuf_load_u64(&s.word)):
        v = 0
        if cowbuf_cas_u64(&s.word, &v, me):
            return 1
    while True:
        v = cowbuf_load_u64(&s.word)
        if v == 0:
            # Taken with the waiters bit: others may sleep, and the next release must
            # wake one of them.
            if cowbuf_cas_u64(&s.word, &v, me | COWBUF_LOCK_WAITERS):
                return 1
            continue
        if _expired(deadline):
            # even a try-lock gets the lock of a dead holder
            return _take_from_dead(s, v, me, thread)
        if not v & COWBUF_LOCK_WAITERS:
            if not cowbuf_cas_u64(&s.word, &v, v | COWBUF_LOCK_WAITERS):
                continue
            v |= COWBUF_LOCK_WAITERS
        if _sleep(word, <uint32_t>v, deadline, slice_ns):
            # Woken (or the word changed): spin before setting the waiters bit again,
            # as the releaser may take the lock back at once, many times over.
            v = cowbuf_load_u64(&s.word)
            if v != 0 and _spin_while(word, <uint32_t>v):
                v = 0
                if cowbuf_cas_u64(&s.word, &v, me | COWBUF_LOCK_WAITERS):
                    return 1
        elif _take_from_dead(s, v, me, thread):
            # a whole slice without a release, and the holder is gone
            return 1
        else:
            slice_ns = min(2 * slice_ns, SLICE_NS)


cdef inline void _unlock_word(cowbuf_lock_state* s, uint64_t old) noexcept:
    if old & COWBUF_LOCK_WAITERS:
        cowbuf_wake(cowbuf_low_half(&s.word), 1)


cdef inline int _lock_take(cowbuf_lock_state* s, int64_t deadline) except -1:
    """Take a lock that is part of another object's state (a Queue's): 1 once held,
    0 when the deadline passed."""
    cdef uint64_t free = 0
    if cowbuf_cas_u64(&s.word, &free, cowbuf_identity()):
        return 1
    return _lock_wait(s, deadline, 0)


cdef inline void _lock_give(cowbuf_lock_state* s) noexcept:
    """Release a lock taken with _lock_take."""
    if cowbuf_load_u32(&s.died):
        cowbuf_store_u32(&s.died, 0)
    _unlock_word(s, cowbuf_exchange_u64(&s.word, 0))


@cython.no_gc
@cython.final
@cython.binding(False)
cdef class Lock:
    """Lock()

    A lock shared by processes (forked, or sent through multiprocessing), with the API
    of threading.Lock: acquire(blocking=True, timeout=-1), release(), locked(), and
    `with lock:`. Like threading.Lock, any thread or process may release it.

    It survives its holder: when a process dies holding it (SIGKILL included), the
    next acquire() gets it within a few milliseconds, and `owner_died` is True until
    that holder releases it, so that it can repair the data the lock protects:

        with lock:
            if lock.owner_died:
                repair()   # the previous holder died in the middle of its update
            update()

    A Lock lives in shared memory carved from an arena: it costs 64 bytes. Plain
    pickle (a copy) is refused with TypeError."""

    def __cinit__(self):
        self._region = _NO_REGION
        self._s = NULL

    def __init__(self):
        if self._s != NULL:
            raise TypeError("Lock.__init__() may only be called once")
        self._region = _new_state(sizeof(cowbuf_lock_state), COWBUF_KIND_LOCK)
        self._s = <cowbuf_lock_state*>self._region._addr

    def acquire(self, bint blocking=True, double timeout=-1):
        """Acquire the lock, blocking until it is free (or for `timeout` seconds at
        most; -1: no limit). Return True once held, False if the timeout passed or
        the lock was held and `blocking` is false."""
        cdef cowbuf_lock_state* s = self._s
        cdef uint64_t free = 0
        if timeout != -1 or not blocking:
            _check_acquire_args(blocking, timeout)
        if s == NULL:
            _raise_unmade(self)
        if cowbuf_cas_u64(&s.word, &free, cowbuf_identity()):
            return True
        return _lock_wait(s, _deadline(timeout) if blocking else 0, 0) == 1

    def release(self):
        """Release the lock (held by any thread or process). RuntimeError if it is
        not held."""
        cdef cowbuf_lock_state* s = self._s
        cdef uint64_t old
        if s == NULL:
            _raise_unmade(self)
        if cowbuf_load_u32(&s.died):
            cowbuf_store_u32(&s.died, 0)
        old = cowbuf_exchange_u64(&s.word, 0)
        if old == 0:
            raise RuntimeError("release unlocked lock")
        _unlock_word(s, old)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, traceback):
        self.release()

    def locked(self):
        """Whether some thread or process holds the lock."""
        if self._s == NULL:
            _raise_unmade(self)
        return cowbuf_load_u64(&self._s.word) != 0

    @property
    def owner_died(self):
        """True while the holder took the lock from a process that died holding it:
        what the lock protects may be half written. Cleared by release()."""
        if self._s == NULL:
            _raise_unmade(self)
        return cowbuf_load_u32(&self._s.died) != 0

    cdef bint _is_owned(self) noexcept:
        return cowbuf_load_u64(&self._s.word) & ~_HOLDER_FLAGS == cowbuf_identity()

    def __reduce_ex__(self, protocol):
        _no_pickle(self)

    def __repr__(self):
        if self._s == NULL:
            return "<cowbuf.Lock uninitialized>"
        return f"<cowbuf.Lock {_holder_text(self._s)}>"


cdef str _holder_text(cowbuf_lock_state* s):
    cdef uint64_t v = cowbuf_load_u64(&s.word)
    if v == 0:
        return "unlocked"
    return f"locked by process {_pid_of(v)}"


@cython.no_gc
@cython.final
@cython.binding(False)
cdef class RLock:
    """RLock()

    A reentrant lock shared by processes, with the API of threading.RLock: the thread
    that holds it may acquire it again, and must release it as many times. It
    survives its holder as Lock does (see Lock and `owner_died`)."""

    def __cinit__(self):
        self._region = _NO_REGION
        self._s = NULL

    def __init__(self):
        if self._s != NULL:
            raise TypeError("RLock.__init__() may only be called once")
        self._region = _new_state(sizeof(cowbuf_lock_state), COWBUF_KIND_RLOCK)
        self._s = <cowbuf_lock_state*>self._region._addr

    def acquire(self, bint blocking=True, double timeout=-1):
        """Acquire the lock, or go one level deeper if this thread holds it already:
        see Lock.acquire()."""
        cdef cowbuf_lock_state* s = self._s
        cdef uint64_t me = cowbuf_identity()
        cdef uint64_t thread = PyThread_get_thread_ident()
        cdef uint64_t free = 0
        if timeout != -1 or not blocking:
            _check_acquire_args(blocking, timeout)
        if s == NULL:
            _raise_unmade(self)
        if self._is_owned_by(me, thread):
            if s.depth == UINT32_MAX:
                raise OverflowError("RLock acquired too many times")
            cowbuf_store_u32(&s.depth, s.depth + 1)
            return True
        if cowbuf_cas_u64(&s.word, &free, me) or _lock_wait(
                s, _deadline(timeout) if blocking else 0, thread):
            cowbuf_store_u64(&s.thread, thread)
            cowbuf_store_u32(&s.depth, 1)
            return True
        return False

    def release(self):
        """Go one level up; release the lock at the last level. RuntimeError if this
        thread does not hold it."""
        cdef cowbuf_lock_state* s = self._s
        if s == NULL:
            _raise_unmade(self)
        if not self._is_owned_by(cowbuf_identity(), PyThread_get_thread_ident()):
            raise RuntimeError("cannot release un-acquired lock")
        if s.depth > 1:
            cowbuf_store_u32(&s.depth, s.depth - 1)
            return
        self._release_all()

    cdef bint _is_owned_by(self, uint64_t me, uint64_t thread) noexcept:
        cdef cowbuf_lock_state* s = self._s
        # COWBUF_LOCK_STOLEN is not masked: until a new holder has written its thread,
        # the thread field is the dead holder's, which may equal a thread id here
        return (cowbuf_load_u64(&s.word) & ~<uint64_t>COWBUF_LOCK_WAITERS == me
                and cowbuf_load_u64(&s.thread) == thread)

    cdef bint _is_owned(self) noexcept:
        return self._is_owned_by(cowbuf_identity(), PyThread_get_thread_ident())

    cdef uint32_t _release_all(self) noexcept:
        """Release every level at once (Condition.wait); the depth it had."""
        cdef cowbuf_lock_state* s = self._s
        cdef uint32_t depth = s.depth
        cowbuf_store_u64(&s.thread, 0)
        cowbuf_store_u32(&s.depth, 0)
        cowbuf_store_u32(&s.died, 0)
        _unlock_word(s, cowbuf_exchange_u64(&s.word, 0))
        return depth

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, traceback):
        self.release()

    def locked(self):
        """Whether some thread or process holds the lock."""
        if self._s == NULL:
            _raise_unmade(self)
        return cowbuf_load_u64(&self._s.word) != 0

    @property
    def owner_died(self):
        """True while the holder took the lock from a process that died holding it:
        see Lock.owner_died."""
        if self._s == NULL:
            _raise_unmade(self)
        return cowbuf_load_u32(&self._s.died) != 0

    def __reduce_ex__(self, protocol):
        _no_pickle(self)

    def __repr__(self):
        if self._s == NULL:
            return "<cowbuf.RLock uninitialized>"
        cdef uint32_t depth = cowbuf_load_u32(&self._s.depth)
        text = _holder_text(self._s)
        return f"<cowbuf.RLock {text}{f', depth {depth}' if depth else ''}>"


def _lock_on(Region region not None):
    cdef Lock lock = Lock.__new__(Lock)
    lock._s = <cowbuf_lock_state*>_state_on(
        region, sizeof(cowbuf_lock_state), COWBUF_KIND_LOCK, "Lock")
    lock._region = region
    return lock


def _rlock_on(Region region not None):
    cdef RLock lock = RLock.__new__(RLock)
    lock._s = <cowbuf_lock_state*>_state_on(
        region, sizeof(cowbuf_lock_state), COWBUF_KIND_RLOCK, "RLock")
    lock._region = region
    return lock


def _share_lock(Lock lock not None):
    if lock._s == NULL:
        _raise_unmade(lock)
    return _lock_on, (lock._region,)


def _share_rlock(RLock lock not None):
    if lock._s == NULL:
        _raise_unmade(lock)
    return _rlock_on, (lock._region,)
