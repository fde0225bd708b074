# Region: a block of shared memory with the buffer protocol, and the one primitive
# that counts what holds its memory (buffer exports and GIL-free writes).

# What a hold on a region's memory is: a buffer export (read-only, or writable), or
# a write that runs without the GIL. Reads without the GIL need no count: the loop
# keeps a reference to the mapping, so close() cannot unmap the memory under it.
cdef enum:
    _EXPORT = 1
    _WRITE = 2
    _PIN = 4

# Regions with GIL-free writes running: their pins are dropped in a forked child.
cdef set _pinned = set()


cdef int _raise_closed() except -1:
    raise ValueError("operation on a closed region")


# no_gc: a Region refers only to its mappings, so it is never part of a reference
# cycle; and the garbage collector must never clear it (tp_clear would set _mapping
# to None) while a memoryview in cyclic garbage still has to release its export (#1).
@cython.no_gc
@cython.final
cdef class Region:
    """Region(nbytes, *, populate=False)

    A fresh, zero-filled, page-aligned block of shared memory (MAP_SHARED), backed by
    a sealed memfd on Linux and an unlinked POSIX shm object on macOS: shared with
    forked children, sendable to any worker through multiprocessing, and never a name
    left in a filesystem. The memory goes back to the system when the last process
    using it closes it or exits.

    With populate=True all of the memory is committed at once, so that running out of
    memory raises MemoryError here instead of killing the process later.

    Exposes its bytes through the buffer protocol (format 'B'); view() gives typed
    Arrays on them.
    """

    def __cinit__(self):
        self._addr = NULL
        self._mapping = None
        self._moved_from = None

    def __init__(self, nbytes, *, bint populate=False):
        self._check_new()
        cdef Py_ssize_t n = _to_nbytes(nbytes)
        self._check_new()  # nbytes.__index__ may have called __init__ itself (#3)
        if n == 0:
            raise ValueError("a Region needs at least one byte")
        cdef _Mapping m = _own_mapping(n, populate)
        self._check_new()  # so may the commit check, through the garbage collector
        self._attach(m, 0, n)

    def __dealloc__(self):
        self._detach()

    cdef int _check_new(self) except -1:
        if self._nbytes or self._mapping is not None or self is _NO_REGION:
            raise TypeError("Region.__init__() may only be called once")
        return 0

    cdef void _attach(self, _Mapping mapping, Py_ssize_t offset, Py_ssize_t nbytes) noexcept:
        self._mapping = mapping
        self._offset = offset
        self._nbytes = nbytes
        self._addr = mapping.addr + offset
        mapping.regions[offset] = weakref.ref(self)

    cdef void _detach(self) noexcept:
        """Let go of the memory (close(), __dealloc__): forget this region in the
        tables of its mappings, and release a hand-off that has been received."""
        cdef _Mapping m = self._mapping
        self._addr = NULL
        self._mapping = None
        if m is not None:
            _forget(m, self._offset, self)
            if m.out_slot >= 0:
                _outbox.release_if_received(m)
        if self._moved_from is not None:
            _forget(self._moved_from, self._moved_from_offset, self)
            self._moved_from = None

    cdef _Mapping _live(self):
        """The mapping, for a loop that reads without the GIL: holding it keeps the
        memory mapped even if another thread closes the region meanwhile."""
        if self._addr == NULL:
            _raise_closed()
        return self._mapping

    cdef int _check_writable(self) except -1:
        if self._addr == NULL:
            _raise_closed()
        if self._mapping.readonly:
            raise TypeError("cannot modify read-only memory: the region is frozen")
        return 0

    cdef int _acquire(self, int how) except -1:
        """Count a hold on the memory (`how`: _EXPORT, _EXPORT | _WRITE, or
        _PIN | _WRITE), after checking that it is open, and writable for a write.
        Every hold is released by _release(how), in a finally clause for pins."""
        if self._addr == NULL:
            _raise_closed()
        if how & _WRITE and self._mapping.readonly:
            if how & _EXPORT:
                raise BufferError("the region is frozen: its buffer is read-only")
            raise TypeError("cannot modify read-only memory: the region is frozen")
        with cython.critical_section(self):
            if how & _EXPORT:
                self._exports += 1
                if how & _WRITE:
                    self._writable_exports += 1
            else:
                self._write_pins += 1
                if self._write_pins == 1:
                    _pinned.add(self)
        return 0

    cdef void _release(self, int how) noexcept:
        with cython.critical_section(self):
            if how & _EXPORT:
                self._exports -= 1
                if how & _WRITE:
                    self._writable_exports -= 1
            elif self._write_pins > 0:  # (zeroed in a forked child)
                self._write_pins -= 1
                if self._write_pins == 0:
                    _pinned.discard(self)

    @property
    def nbytes(self):
        """Size of the region in bytes."""
        self._live()
        return self._nbytes

    @property
    def closed(self):
        """True once close() has been called."""
        return self._addr == NULL

    @property
    def frozen(self):
        """True once the region is frozen: read-only for good."""
        return self._live().readonly

    def close(self):
        """Release this process's hold on the memory now instead of at garbage
        collection. Idempotent. Raises BufferError while buffers (memoryviews, numpy
        arrays) of the region are alive; the memory then stays valid. Arrays and
        counters on a closed region raise ValueError when used."""
        if self._addr == NULL:
            return
        if self._exports:
            raise BufferError(
                f"cannot close a region with {self._exports} live buffer export(s): "
                "release the memoryviews and numpy arrays on it first")
        self._detach()

    def __enter__(self):
        self._live()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def freeze(self):
        """Make the region read-only for good, in this process and in processes
        forked or sent it afterwards: every later write through cowbuf or a buffer
        fails with TypeError. Refused with BufferError while a writable buffer of the
        region (a memoryview, a numpy array) is alive, or while another thread
        writes to it."""
        cdef _Mapping m = self._live()
        cdef int rc = 0
        cdef int err = 0
        if m.readonly:
            return
        if self._writable_exports:
            raise BufferError(
                f"cannot freeze a region with {self._writable_exports} writable buffer "
                "export(s) alive: release the memoryviews and numpy arrays on it first")
        if self._write_pins:
            raise BufferError("cannot freeze a region while another thread writes to it")
        if m.arena:
            # Part of a page that other allocations share: it cannot be protected
            # where it is, so it moves to memory that is sealed against writes (#8).
            self._move_to_frozen_arena()
            return
        # The region spans its own mapping (one Region per process): enforce it in
        # hardware, and seal the memfd so no process can map it writable from now on.
        # Frozen before the GIL is dropped: a thread that writes in the meantime (or a
        # child forked then) must see it frozen, not store into read-only memory (#2).
        m.readonly = True
        with nogil:
            rc = cowbuf_shm_protect_readonly(m.addr, <size_t>m.size, m.fd)
            if rc == -1:
                err = errno
        if rc == -1:
            m.readonly = False
            raise _os_error(err, "cannot freeze the region")

    cdef int _move_to_frozen_arena(self) except -1:
        cdef Py_ssize_t offset = 0
        cdef _Mapping old = self._mapping
        cdef _Mapping frozen = _carve_frozen(self._nbytes, &offset)
        if frozen is None:  # anonymous memory: a protected mapping of its own
            frozen = _new_mapping(self._nbytes, False, False)
            memcpy(frozen.addr, self._addr, self._nbytes)
            if cowbuf_shm_protect_readonly(frozen.addr, <size_t>frozen.size, -1) == -1:
                raise _os_error(errno, "cannot freeze the region")
            frozen.readonly = True
        else:
            memcpy(frozen.writer + offset, self._addr, self._nbytes)
        # The old chunk stays mapped for the read-only exports made before, and leads
        # here when a reference to it comes back.
        if self._moved_from is None:
            self._moved_from = old
            self._moved_from_offset = self._offset
        else:
            _forget(old, self._offset, self)
        self._attach(frozen, offset, self._nbytes)
        return 0

    def view(self, typecode, offset=0, length=None):
        """An Array of `typecode` on the bytes from `offset` (a multiple of the
        itemsize), `length` items long (default: as many as fit)."""
        self._live()
        cdef char tc = _parse_typecode(typecode)
        cdef Py_ssize_t size = _itemsize(tc)
        cdef Py_ssize_t start = PyNumber_AsSsize_t(offset, ValueError)
        cdef Py_ssize_t count
        self._live()
        if start < 0 or start > self._nbytes:
            raise ValueError(f"offset {start} is outside the region (0..{self._nbytes})")
        if start % size:
            raise ValueError(f"offset {start} is not a multiple of the itemsize {size}")
        if length is None:
            count = (self._nbytes - start) // size
        else:
            count = PyNumber_AsSsize_t(length, ValueError)
            self._live()
            if count < 0:
                raise ValueError(f"negative length: {count}")
            if count > (self._nbytes - start) // size:
                raise ValueError(
                    f"{count} items of {size} bytes from offset {start} exceed the "
                    f"region ({self._nbytes} bytes)")
        return _array_view(self, tc, start, count, size, False)

    def counter(self, offset=0):
        """A Counter on the 8 bytes at `offset` (a multiple of 8) of this region. The
        memory is used as it is: it is not reset."""
        self._live()
        cdef Py_ssize_t start = PyNumber_AsSsize_t(offset, ValueError)
        self._live()
        if start % 8:
            raise ValueError(f"counter offset {start} is not a multiple of 8")
        if start < 0 or start > self._nbytes - 8:
            raise ValueError(
                f"counter offset {start} is outside the region ({self._nbytes} bytes)")
        return _counter_view(self, start)

    def __getbuffer__(self, Py_buffer* view, int flags):
        cdef bint writable = not self._live().readonly
        if not writable and flags & PyBUF_WRITABLE:
            raise BufferError("the region is frozen: its buffer is read-only")
        view.buf = self._addr
        view.obj = self
        view.len = self._nbytes
        view.readonly = not writable
        view.itemsize = 1
        view.format = <char*>"B" if flags & PyBUF_FORMAT else NULL
        view.ndim = 1
        view.shape = &self._nbytes if flags & PyBUF_ND else NULL
        view.strides = &_ONE if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        self._acquire(_EXPORT | _WRITE if writable else _EXPORT)  # what was handed out

    def __releasebuffer__(self, Py_buffer* view):
        self._release(_EXPORT if view.readonly else _EXPORT | _WRITE)

    @property
    def __array_interface__(self):
        # numpy falls back from a failed buffer export to this, then to an object
        # array: a closed region must raise there too. Open, it is absent
        # (numpy took the buffer already).
        self._live()
        raise AttributeError("__array_interface__")

    def __reduce_ex__(self, protocol):
        # Plain pickle and cloudpickle copy by value; multiprocessing's pickler sends
        # a reference instead (SHARED_TYPES, _pickling.pxi).
        cdef _Mapping m = self._live()
        data = PickleBuffer(self) if protocol >= 5 else bytes(memoryview(self))
        return (_region_from_bytes, (data, m.readonly, m.arena))

    def __repr__(self):
        if self._addr == NULL:
            return "<cowbuf.Region closed>"
        return f"<cowbuf.Region nbytes={self._nbytes}{' frozen' if self.frozen else ''}>"


cdef void _forget(_Mapping m, Py_ssize_t offset, Region region) noexcept:
    """Remove `region` from the table of `m` (unless another Region took its place)."""
    ref = m.regions.get(offset)
    if ref is not None:
        current = ref()
        if current is None or current is region:
            del m.regions[offset]


cdef Region _region_view(_Mapping mapping, Py_ssize_t offset, Py_ssize_t nbytes):
    cdef Region region = Region.__new__(Region)
    region._attach(mapping, offset, nbytes)
    return region


cdef Region _region_at(_Mapping mapping, Py_ssize_t offset, Py_ssize_t nbytes):
    """The one Region of this process at `offset` of `mapping`: the one that exists
    if it does (a region that came back), else a new one. ValueError for a geometry
    that does not fit the mapping or the region there."""
    cdef Region region
    if (offset < 0 or nbytes < (0 if mapping.arena else 1) or offset > mapping.size - nbytes
            or offset < (ARENA_HEADER if mapping.arena else 0)
            or (not mapping.arena and offset != 0)):
        raise ValueError(f"region {offset}+{nbytes} is outside its mapping ({mapping.size})")
    ref = mapping.regions.get(offset)
    region = ref() if ref is not None else None
    if region is None:
        cowbuf_unpoison(mapping.addr + offset, <size_t>nbytes)
        return _region_view(mapping, offset, nbytes)
    if region._nbytes != nbytes:
        raise ValueError(
            f"a region of {nbytes} bytes where this process has one of {region._nbytes}")
    return region


def _after_fork_in_child():
    """In a forked child: the threads that were writing without the GIL do not exist
    here, so their pins go (#7); the parent's hand-offs are the parent's to release."""
    global _outbox
    cdef Region region
    for region in _pinned:
        region._write_pins = 0
    _pinned.clear()
    _outbox = _Outbox()


os.register_at_fork(after_in_child=_after_fork_in_child)


# The region of views and counters made with __new__ rather than by cowbuf: always
# closed, so they raise ValueError instead of dereferencing NULL.
cdef Region _NO_REGION = Region.__new__(Region)
