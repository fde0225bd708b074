# Event and Condition shared by processes: waiting for something to happen.
#
# Event: a flag word that waiters sleep on while it is 0; set() wakes them all, only
# when `sleepers` says there are some.
#
# Condition: counts rather than a queue of waiters, so that no slot can be left
# behind by a waiter that dies. A waiter registers under the lock (`waiting` += 1) and
# notes `seq`; notify(n) moves up to n waiters from `waiting` to `pending`, bumps
# `seq` and wakes n sleepers. A waiter that sees `seq` move past the value it noted
# claims one of `pending`; one that times out takes itself out of `waiting`, or
# claims from `pending` when every waiter has been notified already. With every
# waiter either waiting or holding a claim (waiting + pending = waiters), at most n
# waiters return True for notify(n), and a waiter registered after a notify is never
# woken by it. A waiter that dies leaves its count behind: at worst one extra
# wake-up later, never a hang.


@cython.no_gc
@cython.final
@cython.binding(False)
cdef class Event:
    """Event()

    An event shared by processes (forked, or sent through multiprocessing), with the
    API of threading.Event: set(), clear(), is_set() and wait(timeout=None)."""

    def __cinit__(self):
        self._region = _NO_REGION
        self._s = NULL

    def __init__(self):
        if self._s != NULL:
            raise TypeError("Event.__init__() may only be called once")
        self._region = _new_state(sizeof(cowbuf_event_state), COWBUF_KIND_EVENT)
        self._s = <cowbuf_event_state*>self._region._addr

    cdef cowbuf_event_state* _state(self) except NULL:
        if self._s == NULL:
            _raise_unmade(self)
        return self._s

    def is_set(self):
        """Whether the event is set."""
        return cowbuf_load_u32(&self._state().flag) != 0

    def set(self):
        """Set the event and wake every waiter."""
        cdef cowbuf_event_state* s = self._state()
        if cowbuf_load_u32(&s.flag) == 0:
            cowbuf_store_u32(&s.flag, 1)
        if cowbuf_load_u32(&s.sleepers):
            cowbuf_wake(&s.flag, INT_MAX)

    def clear(self):
        """Reset the event: wait() blocks again until the next set()."""
        cowbuf_store_u32(&self._state().flag, 0)

    def wait(self, timeout=None):
        """Block until the event is set (or for `timeout` seconds at most). Return
        whether it is set."""
        cdef cowbuf_event_state* s = self._state()
        if cowbuf_load_u32(&s.flag):
            return True
        cdef double seconds = _seconds(timeout)
        if seconds == 0.0:
            return False
        cdef int64_t deadline = _deadline(seconds)
        if _spin_while(&s.flag, 0):
            return True
        while True:
            if cowbuf_load_u32(&s.flag):
                return True
            if _expired(deadline):
                return False
            cowbuf_add_fetch_u32(&s.sleepers, 1)
            try:
                _sleep(&s.flag, 0, deadline, SLICE_NS)
            finally:
                cowbuf_add_fetch_u32(&s.sleepers, <uint32_t>-1)

    def __reduce_ex__(self, protocol):
        _no_pickle(self)

    def __repr__(self):
        if self._s == NULL:
            return "<cowbuf.Event uninitialized>"
        return f"<cowbuf.Event {'set' if self._s.flag else 'unset'}>"


def _event_on(Region region not None):
    cdef Event event = Event.__new__(Event)
    event._s = <cowbuf_event_state*>_state_on(
        region, sizeof(cowbuf_event_state), COWBUF_KIND_EVENT, "Event")
    event._region = region
    return event


def _share_event(Event event not None):
    event._state()
    return _event_on, (event._region,)


cdef bint _claim(uint32_t* count) noexcept:
    """Take one from a count that is not 0."""
    cdef uint32_t v = cowbuf_load_u32(count)
    while v:
        if cowbuf_cas_u32(count, &v, v - 1):
            return True
    return False


cdef bint _leave(cowbuf_condition_state* s) noexcept:
    """A waiter that stops waiting without a notification of its own (its timeout
    passed, or an exception): out of `waiting`; or, once every waiter has been
    notified, with a claim from `pending`. Whether it claimed a notification."""
    cdef int i
    for i in range(1000):
        if _claim(&s.waiting):
            return False
        if _claim(&s.pending):
            return True
        # both 0: a notify is between its two steps; or it died there, and took the
        # count of this waiter with it
        cowbuf_cpu_relax()
    return False


@cython.no_gc
@cython.final
@cython.binding(False)
cdef class Condition:
    """Condition(lock=None)

    A condition variable shared by processes, with the API of threading.Condition:
    wait(timeout=None), wait_for(predicate, timeout=None), notify(n=1),
    notify_all(), and acquire()/release()/`with cond:` on its lock, which is a
    cowbuf Lock or RLock (a new RLock by default).

    notify(n) wakes at most n of the waiters that were waiting when it was called. A
    waiter that dies while waiting never blocks the others."""

    def __cinit__(self):
        self._region = _NO_REGION
        self._s = NULL

    def __init__(self, lock=None):
        if self._s != NULL:
            raise TypeError("Condition.__init__() may only be called once")
        if lock is None:
            lock = RLock()
        elif not isinstance(lock, (Lock, RLock)):
            raise TypeError(
                f"a cowbuf.Condition needs a cowbuf Lock or RLock, not {type(lock).__name__}")
        self._region = _new_state(sizeof(cowbuf_condition_state), COWBUF_KIND_CONDITION)
        self._s = <cowbuf_condition_state*>self._region._addr
        self._lock = lock

    cdef cowbuf_condition_state* _state(self) except NULL:
        if self._s == NULL:
            _raise_unmade(self)
        return self._s

    cdef bint _is_owned(self) except -1:
        if isinstance(self._lock, RLock):
            return (<RLock>self._lock)._is_owned()
        return (<Lock>self._lock)._is_owned()

    def acquire(self, *args, **kwargs):
        """Acquire the lock: see Lock.acquire()."""
        self._state()
        return self._lock.acquire(*args, **kwargs)

    def release(self):
        """Release the lock."""
        self._state()
        self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, traceback):
        self.release()

    def wait(self, timeout=None):
        """Release the lock, block until notified (or for `timeout` seconds at
        most), and acquire the lock again. Return False if the timeout passed, else
        True. RuntimeError if this thread does not hold the lock."""
        cdef cowbuf_condition_state* s = self._state()
        cdef int64_t deadline = _deadline(_seconds(timeout))
        cdef uint32_t noted, seq
        cdef uint32_t depth = 0
        cdef bint notified = False
        cdef bint settled = False
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        noted = cowbuf_load_u32(&s.seq)
        cowbuf_add_fetch_u32(&s.waiting, 1)
        if isinstance(self._lock, RLock):
            depth = (<RLock>self._lock)._release_all()
        else:
            self._lock.release()
        try:
            while True:
                seq = cowbuf_load_u32(&s.seq)
                if seq != noted:
                    # a notify since this waiter registered: claim one of its wake-ups;
                    # if others took them all, this waiter is still among `waiting`
                    if _claim(&s.pending):
                        notified = True
                        break
                    noted = seq
                if _expired(deadline):
                    notified = _leave(s)
                    break
                _sleep(&s.seq, noted, deadline, SLICE_NS)
            settled = True
        finally:
            if not settled:
                _leave(s)
            _reacquire(self._lock, depth)
        return notified

    def wait_for(self, predicate, timeout=None):
        """Wait until predicate() is true (or for `timeout` seconds at most); return
        its last value. As threading.Condition.wait_for."""
        cdef int64_t deadline = _deadline(_seconds(timeout))
        cdef double left
        result = predicate()
        while not result:
            if deadline < 0:
                self.wait()
            else:
                left = (deadline - cowbuf_monotonic_ns()) / 1e9
                if left <= 0:
                    break
                self.wait(left)
            result = predicate()
        return result

    def notify(self, n=1):
        """Wake up at most `n` of the waiters. RuntimeError if this thread does not
        hold the lock."""
        cdef cowbuf_condition_state* s = self._state()
        cdef Py_ssize_t count = PyNumber_AsSsize_t(n, OverflowError)
        cdef uint32_t waiting, moved
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        if count <= 0:
            return
        waiting = cowbuf_load_u32(&s.waiting)
        while True:
            moved = <uint32_t>min(<Py_ssize_t>waiting, count)
            if moved == 0:
                return
            if cowbuf_cas_u32(&s.waiting, &waiting, waiting - moved):
                break
        cowbuf_add_fetch_u32(&s.pending, moved)
        cowbuf_add_fetch_u32(&s.seq, 1)
        cowbuf_wake(&s.seq, <int>min(moved, <uint32_t>INT_MAX))

    def notify_all(self):
        """Wake up every waiter."""
        self.notify(_SEMAPHORE_MAX)

    def __reduce_ex__(self, protocol):
        _no_pickle(self)

    def __repr__(self):
        if self._s == NULL:
            return "<cowbuf.Condition uninitialized>"
        return f"<cowbuf.Condition({self._lock!r}), {self._s.waiting} waiting>"


cdef int _reacquire(object lock, uint32_t depth) except -1:
    """Acquire `lock` again after a wait, at the RLock depth it had. An exception on
    the way (KeyboardInterrupt) is raised once the lock is held: the caller's `with`
    block must find the lock held by it, never release another's."""
    error = None
    while True:
        try:
            lock.acquire()
            break
        except BaseException as exc:
            if error is None:
                error = exc
    if depth > 1:
        cowbuf_store_u32(&(<RLock>lock)._s.depth, depth)
    if error is not None:
        raise error
    return 0


def _condition_on(Region region not None, lock):
    cdef Condition cond = Condition.__new__(Condition)
    if not isinstance(lock, (Lock, RLock)):
        raise TypeError("bad reference to a cowbuf.Condition: its lock is not a cowbuf lock")
    cond._s = <cowbuf_condition_state*>_state_on(
        region, sizeof(cowbuf_condition_state), COWBUF_KIND_CONDITION, "Condition")
    cond._region = region
    cond._lock = lock
    return cond


def _share_condition(Condition cond not None):
    cond._state()
    return _condition_on, (cond._region, cond._lock)
