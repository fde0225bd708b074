# Declarations of the cdef classes of the core: the state each one keeps, and why.
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from cowbuf._c cimport (
    cowbuf_barrier_state, cowbuf_condition_state, cowbuf_event_state, cowbuf_lock_state,
    cowbuf_queue_state, cowbuf_semaphore_state,
)


cdef class _Mapping:
    cdef:
        # First byte of the mmap; NULL once unmapped (only __dealloc__ unmaps).
        char* addr
        # Frozen arenas made by this process (and its forks): a second, writable
        # mapping of the same memory, through which frozen chunks are filled. NULL
        # for every other mapping.
        char* writer
        # Bytes mapped, a multiple of the page size.
        readonly Py_ssize_t size
        # The memfd/shm fd, kept open so the memory can be sent to other processes;
        # -1 for anonymous memory (forked children only) and for a received mapping
        # that gave its fd up when the process ran out of fds.
        readonly int fd
        # Inode of the fd: a receiver through /proc checks it is the same memory.
        readonly uint64_t ino
        # Mapped PROT_READ: every Region on it is frozen. Set once, never cleared.
        readonly bint readonly
        # Carved into small allocations; its first 64 bytes hold the shared bump offset.
        readonly bint arena
        # Mapped from a received fd: its fd may be closed under fd pressure (#13).
        bint received
        # Not shared memory at all: the read-only buffer of another object (an
        # out-of-band pickle buffer, #14), held in `foreign` and released with the
        # mapping. Such a mapping cannot be sent by reference: it goes by value.
        bint is_foreign
        Py_buffer foreign
        # 16 random bytes naming this memory in every process: the mapping cache key.
        readonly bytes token
        # offset -> weakref of the one Region at that offset in this process, so that
        # a region that comes back (a pool result, a forked child's message) is the
        # same object, with one freeze state and one count of exports (#6).
        dict regions
        # The outbox slot of a hand-off through /proc in flight, or -1; the slot's
        # generation, and how many receivers must acknowledge it.
        Py_ssize_t out_slot
        uint32_t out_generation
        uint32_t out_sends
        object __weakref__


cdef class _Outbox:
    cdef:
        # The shared slots that receivers acknowledge in; made on first use.
        Region slots
        uint64_t* words
        # (token, fd, inode, size) of the slots' mapping, for the receivers.
        tuple where
        # token -> _Mapping held for receivers that have not acknowledged yet.
        dict pending
        # Slots free for reuse, and the first never used.
        list free
        Py_ssize_t next_slot
        # When the whole outbox was last swept (monotonic seconds).
        double last_sweep

    cdef tuple send(self, _Mapping m)
    cdef int _create(self) except -1
    cdef Py_ssize_t _take_slot(self)
    cdef bint _received(self, _Mapping m) noexcept
    cdef int _let_go(self, _Mapping m, list dropped) except -1
    cdef int _sweep_all(self) except -1
    cdef void sweep(self, bint force) noexcept
    cdef void release_if_received(self, _Mapping m) noexcept
    cdef Py_ssize_t in_flight(self) except -1


cdef class Region:
    cdef:
        # First byte of the region; NULL once closed. Every access checks it first.
        char* _addr
        Py_ssize_t _nbytes
        # Owner of the memory; None once closed. Several Regions may share one arena
        # mapping, one each per chunk; a mapping of its own has one Region per process.
        _Mapping _mapping
        # _addr - _mapping.addr
        Py_ssize_t _offset
        # Live buffer exports (memoryviews, numpy arrays): close() is refused while
        # nonzero, so no pointer handed out can dangle.
        Py_ssize_t _exports
        # The writable ones among _exports: freeze() is refused while nonzero.
        Py_ssize_t _writable_exports
        # Writes running without the GIL in other threads: freeze() is refused while
        # nonzero. Zeroed in a forked child, where those threads do not exist (#7).
        Py_ssize_t _write_pins
        # The arena chunk a freeze moved this region from (see freeze()): kept mapped
        # for the read-only exports made before, and found again by a reference to
        # the old chunk that comes back.
        _Mapping _moved_from
        Py_ssize_t _moved_from_offset
        object __weakref__

    cdef int _check_new(self) except -1
    cdef void _attach(self, _Mapping mapping, Py_ssize_t offset, Py_ssize_t nbytes) noexcept
    cdef void _detach(self) noexcept
    cdef _Mapping _live(self)
    cdef int _check_writable(self) except -1
    cdef int _acquire(self, int how) except -1
    cdef void _release(self, int how) noexcept
    cdef int _move_to_frozen_arena(self) except -1


# The most dimensions an Array has (numpy allows 64; data shared between workers
# has a few): the shape and strides live in the Array itself.
cdef enum:
    MAX_NDIM = 8


cdef class Array:
    cdef:
        # Owner of the memory: a view keeps its region mapped while it lives.
        Region _region
        # Byte offset of element 0 within the region.
        Py_ssize_t _offset
        # Items along the first axis (len(a)); fixed for the life of the view.
        Py_ssize_t _length
        # Bytes from one item (or row) of the first axis to the next: a multiple of
        # the itemsize, negative for reversed views.
        Py_ssize_t _stride
        Py_ssize_t _itemsize
        # One of b B h H i I l L q Q f d.
        char _typecode
        # Made read-only by toreadonly(); the region may also be frozen.
        bint _readonly
        # Dimensions, 1..MAX_NDIM, and the extent and byte stride of each, exported
        # as the buffer's shape and strides. _shape[0] == _length and
        # _strides[0] == _stride always: the 1-d hot paths read those two alone.
        int _ndim
        Py_ssize_t _shape[MAX_NDIM]
        Py_ssize_t _strides[MAX_NDIM]
        # The hash of a frozen array, computed once (frozen memory never changes);
        # -1 until then.
        Py_hash_t _hash
        object __weakref__

    cdef inline char* _base(self) except NULL
    cdef int _check_writable(self) except -1
    cdef bint _is_readonly(self) except -1
    cdef int _check_atomic(self) except -1
    cdef int _check_1d(self, str what) except -1
    cdef Py_ssize_t _index(self, object key) except? -1
    cdef Array _slice(self, object key)
    cdef object _extreme(self, bint want_max)


cdef class Counter:
    cdef:
        # Owner of the memory: keeps the counter mapped while it lives.
        Region _region
        # Byte offset of the int64 within the region; a multiple of 8.
        Py_ssize_t _offset

    cdef inline long long* _ptr(self) except NULL
    cdef inline long long* _wptr(self) except NULL


cdef class _Strings:
    cdef:
        # Owner of the memory, frozen: the offsets checked when this object was made
        # hold for its whole life, in every process.
        Region _region
        # Byte offset in the region of this array's first offset (a multiple of 8).
        Py_ssize_t _offsets
        # Number of items: _length + 1 offsets.
        Py_ssize_t _length
        # Byte offset in the region of the data the offsets count into.
        Py_ssize_t _data
        # Bytes of that data (of the whole array a view was sliced from).
        Py_ssize_t _data_nbytes
        # Items are str (StrArray), else bytes (BytesArray).
        bint _text
        # The ASCII str this array returned last, an owned reference (or NULL): the next
        # item is written into it if the caller has let it go (_text.h,
        # cowbuf_str_from_ascii_into), saving a str's allocation and free per read.
        PyObject* _spare

    cdef int _init(self, object init, bint text) except -1
    cdef inline const int64_t* _offs(self) except NULL
    cdef object _item(self, Py_ssize_t i)
    cdef Py_ssize_t _index(self, object key) except? -1
    cdef _Strings _slice(self, object key)
    cdef _Strings _gather(self, Py_ssize_t start, Py_ssize_t step, Py_ssize_t n)
    cdef object _needle(self, object x)
    cdef Py_ssize_t _find(self, object x, Py_ssize_t start, Py_ssize_t stop,
                          bint count) except -2
    cdef bint _equal_list(self, list other) except -1


cdef class StrArray(_Strings):
    pass


cdef class BytesArray(_Strings):
    pass


# A lookup key of a FrozenDict in its canonical form (see _frozendict.pxi).
ctypedef struct _Key:
    const char* p     # its bytes (in the key object, in buf, or in a holder object)
    Py_ssize_t n
    uint8_t type      # _K_STR, _K_BYTES, _K_INT, _K_BIGINT
    char buf[8]       # the bytes of an int64 key
    uint64_t hash


cdef class FrozenDict:
    cdef:
        # Owner of the memory, frozen: the layout checked when this object was made
        # holds for its whole life, in every process.
        Region _region
        # Copies of the header (_FDHeader): keys; slots - 1 (slots are a power of 2);
        # the SipHash key; where the records begin and end (offsets in the region).
        Py_ssize_t _length
        uint64_t _mask
        uint64_t _k0
        uint64_t _k1
        Py_ssize_t _records
        Py_ssize_t _end

    cdef int _attach(self, Region region) except -1
    cdef inline char* _base(self) except NULL
    cdef inline Py_ssize_t _probe(self, const char* base, _Key* key) noexcept nogil
    cdef inline void _hash(self, _Key* key) noexcept nogil
    cdef Py_ssize_t _lookup(self, object key) except -1
    cdef object _value(self, const char* base, Py_ssize_t offset)
    cdef object _key(self, const char* base, Py_ssize_t offset)
# The synchronization objects. Each holds the Region of its shared state, which it
# never hands out (so nobody can close or freeze it), and a pointer to that state,
# NULL until __init__ or the reconstructor of a reference has set it up.

cdef class Lock:
    cdef:
        Region _region
        cowbuf_lock_state* _s

    cdef bint _is_owned(self) noexcept


cdef class RLock:
    cdef:
        Region _region
        cowbuf_lock_state* _s

    cdef bint _is_owned_by(self, uint64_t me, uint64_t thread) noexcept
    cdef bint _is_owned(self) noexcept
    cdef uint32_t _release_all(self) noexcept


cdef class Semaphore:
    cdef:
        Region _region
        cowbuf_semaphore_state* _s

    cdef int _init(self, object value, bint track_holders, bint bounded) except -1
    cdef object _acquire_slot(self, bint blocking, object timeout)
    cdef int _release_slots(self, Py_ssize_t count) except -1


cdef class BoundedSemaphore(Semaphore):
    pass


cdef class Event:
    cdef:
        Region _region
        cowbuf_event_state* _s

    cdef cowbuf_event_state* _state(self) except NULL


cdef class Condition:
    cdef:
        Region _region
        cowbuf_condition_state* _s
        # The cowbuf Lock or RLock that wait() releases and acquires again.
        object _lock

    cdef cowbuf_condition_state* _state(self) except NULL
    cdef bint _is_owned(self) except -1


cdef class Barrier:
    cdef:
        Region _region
        cowbuf_barrier_state* _s
        # Called by the last arrival of each round (in its process); None for none.
        object _action
        # The default timeout of wait() (None: none); travels with a reference.
        object _timeout

    cdef cowbuf_barrier_state* _state(self) except NULL
    cdef int _complete(self, uint32_t round, uint64_t full) except -1


cdef class _Sink:
    # What the pickler wrote since the last take().
    cdef list _parts

    cdef bytes take(self)


cdef class Queue:
    cdef:
        Region _region
        cowbuf_queue_state* _s
        # The ring, right after the state, and its bytes (a power of two).
        char* _ring
        uint64_t _capacity
        # close() was called: this object refuses put and get (other processes go on).
        bint _closed
        # A multiprocessing pickler that writes into _sink, reused for every message
        # of this object (making one costs more than pickling a small message), and
        # whether it is busy (another thread, or a reducer that puts).
        object _pickler
        _Sink _sink
        bint _pickling

    cdef int _attach(self) except -1
    cdef cowbuf_queue_state* _state(self) except NULL
    cdef bytes _dumps(self, object obj)
    cdef object _record(self, object data, int kind)
    cdef object _decode(self, int kind, bytes data, bint raw)
    cdef int64_t _deadline_for(self, bint block, object timeout) except? -2
    cdef Py_ssize_t _write(self, list records, int64_t deadline, bint block) except -1
    cdef bint _fits(self, Py_ssize_t length, uint64_t used, uint64_t count) noexcept
    cdef uint64_t _write_record(self, uint64_t pos, object data, int kind) except 0
    cdef list _read(self, Py_ssize_t max_items, int64_t deadline, bint block)
