# The outbox: hand-offs in flight through /proc (Linux).
#
# A receiver that is not a fresh child of the sender opens the sender's fd through
# /proc/<pid>/fd/<n>, so the sender must keep that fd open until the receiver has
# opened it: the sender holds the mapping in its outbox until each receiver has
# acknowledged, by an atomic increment of a slot of a small shared array that the
# receiver reaches the same way. A slot's low 32 bits count acknowledgements, its
# high 32 bits are the generation of its current use, so that a late acknowledgement
# for an earlier use of the slot is ignored.
#
# A hold is released as soon as it can be: when a region of the mapping is dropped or
# closed after its receivers acknowledged (#10), at every allocation, at every send,
# and in in_flight(). There is no lock (#11): a signal handler may send while the
# main thread is in the middle of a send. Each method changes the state in steps that
# leave it whole, and runs no Python code between reading and writing it (it may
# allocate, and so run the garbage collector, only where the state is whole); the
# mappings it lets go are dropped last.

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport getpid

# Slots of an outbox: one per mapping in flight.
cdef Py_ssize_t OUTBOX_SLOTS = 1 << 17
# Seconds between two sweeps of the whole outbox from allocations.
cdef double SWEEP_INTERVAL = 0.01


cdef double _monotonic() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + t.tv_nsec * 1e-9


@cython.final
cdef class _Outbox:

    def __cinit__(self):
        self.pending = {}
        self.free = []

    cdef tuple send(self, _Mapping m):
        """The /proc reference to `m` for one more receiver, held until it is
        acknowledged; None when the outbox is full."""
        cdef Py_ssize_t slot
        cdef uint64_t* word
        if self.words == NULL:
            self._create()
        if m.out_slot < 0:
            self._sweep_all()
            slot = self._take_slot()
            if slot < 0:
                return None
            word = self.words + slot
            m.out_generation = <uint32_t>((cowbuf_load_u64(word) >> 32) + 1)
            cowbuf_store_u64(word, <uint64_t>m.out_generation << 32)
            m.out_sends = 0
            m.out_slot = slot
            self.pending[m.token] = m
        m.out_sends += 1
        return (getpid(), m.fd, m.ino, *self.where, m.out_slot, m.out_generation)

    cdef int _create(self) except -1:
        cdef Region slots = Region(OUTBOX_SLOTS * 8)
        cdef _Mapping box = slots._mapping
        if self.words == NULL:  # (a signal handler may have made it meanwhile)
            self.slots = slots
            self.where = (box.token, box.fd, box.ino, box.size)
            self.words = <uint64_t*>slots._addr
        return 0

    cdef Py_ssize_t _take_slot(self):
        if self.free:
            return self.free.pop()
        if self.next_slot < OUTBOX_SLOTS:
            self.next_slot += 1
            return self.next_slot - 1
        return -1

    cdef bint _received(self, _Mapping m) noexcept:
        cdef uint64_t value = cowbuf_load_u64(self.words + m.out_slot)
        return value >> 32 == m.out_generation and (value & 0xffffffff) >= m.out_sends

    cdef int _let_go(self, _Mapping m, list dropped) except -1:
        """Release the hold on `m`; the mapping itself goes into `dropped`, so that
        the caller drops it (and maybe unmaps it, without the GIL) last."""
        cdef Py_ssize_t slot = m.out_slot
        m.out_slot = -1
        self.pending.pop(m.token, None)  # (no allocation between these two steps)
        self.free.append(slot)
        dropped.append(m)
        return 0

    cdef int _sweep_all(self) except -1:
        cdef _Mapping m
        cdef list dropped = []
        self.last_sweep = _monotonic()
        for m in list(self.pending.values()):
            if m.out_slot >= 0 and self._received(m):
                self._let_go(m, dropped)
        return 0

    cdef void sweep(self, bint force) noexcept:
        """Release the holds whose every hand-off has been received (at most every
        SWEEP_INTERVAL unless `force`)."""
        if not self.pending:
            return
        if not force and _monotonic() - self.last_sweep < SWEEP_INTERVAL:
            return
        try:
            self._sweep_all()
        except MemoryError:
            pass  # the next sweep will do

    cdef void release_if_received(self, _Mapping m) noexcept:
        """A region of `m` was dropped or closed: let the mapping go now if every
        receiver has it (#10)."""
        cdef list dropped = []
        if m.out_slot >= 0 and self.words != NULL and self._received(m):
            try:
                self._let_go(m, dropped)
            except MemoryError:
                pass

    cdef Py_ssize_t in_flight(self) except -1:
        self._sweep_all()
        return len(self.pending)


cdef _Outbox _outbox = _Outbox()


def _outbox_send(_Mapping m not None):
    """The /proc reference to `m` (see _outbox.pxi); None if the outbox is full, or if
    other processes cannot open this one's fds through /proc (it is not dumpable)."""
    if not cowbuf_fds_reachable():
        return None
    return _outbox.send(m)


def in_flight():
    """The number of regions this process holds only because it sent them to a
    process that has not received them yet (Linux; 0 elsewhere)."""
    return _outbox.in_flight()
