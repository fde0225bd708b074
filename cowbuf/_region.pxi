# Region: a block of shared memory with the buffer protocol.

# no_gc: a Region refers only to its mapping, so it is never part of a reference cycle;
# and the garbage collector must never clear it (tp_clear would set _mapping to None)
# while a memoryview in cyclic garbage still has to release its export on it.
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

    def __init__(self, nbytes, *, bint populate=False):
        self._check_new()
        cdef Py_ssize_t n = _to_nbytes(nbytes)
        self._check_new()  # nbytes.__index__ may have called __init__ itself
        if n == 0:
            raise ValueError("a Region needs at least one byte")
        _sweep_hook()
        if populate:
            check_commit(n)
        self._attach(_new_mapping(n, populate, False), 0, n)

    cdef int _check_new(self) except -1:
        if self._nbytes or self._mapping is not None or self is _NO_REGION:
            raise TypeError("Region.__init__() may only be called once")
        return 0

    cdef void _attach(self, _Mapping mapping, Py_ssize_t offset, Py_ssize_t nbytes) noexcept:
        self._mapping = mapping
        self._offset = offset
        self._nbytes = nbytes
        self._addr = mapping.addr + offset
        self._frozen = mapping.readonly

    cdef inline int _check_open(self) except -1:
        if self._addr == NULL:
            raise ValueError("operation on a closed region")
        return 0

    cdef bint _is_readonly(self) noexcept:
        return self._frozen or (self._mapping is not None and self._mapping.readonly)

    cdef int _check_writable(self) except -1:
        if self._addr == NULL:
            raise ValueError("operation on a closed region")
        if self._frozen or self._mapping.readonly:
            raise TypeError("cannot modify read-only memory: the region is frozen")
        return 0

    cdef int _pin(self, bint write) except -1:
        """Hold the memory for a loop that runs without the GIL (or may run Python
        code): close() and freeze() are refused until _unpin()."""
        if write:
            self._check_writable()
            self._writable_exports += 1
            self._mapping.writable_exports += 1
        else:
            self._check_open()
        self._exports += 1
        return 0

    cdef void _unpin(self, bint write) noexcept:
        self._exports -= 1
        if write:
            self._writable_exports -= 1
            self._mapping.writable_exports -= 1

    @property
    def nbytes(self):
        """Size of the region in bytes."""
        self._check_open()
        return self._nbytes

    @property
    def closed(self):
        """True once close() has been called."""
        return self._addr == NULL

    @property
    def frozen(self):
        """True once the region is frozen: read-only for good."""
        return self._is_readonly()

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
        self._addr = NULL
        self._mapping = None

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def freeze(self):
        """Make the region read-only for good, in this process and in processes
        forked or sent it afterwards: every later write through cowbuf or a buffer
        fails with TypeError. Refused with BufferError while a writable buffer of the
        region (a memoryview, a numpy array) is alive."""
        self._check_open()
        if self._is_readonly():
            self._frozen = True
            return
        if self._writable_exports:
            raise BufferError(
                f"cannot freeze a region with {self._writable_exports} writable buffer "
                "export(s) alive: release the memoryviews and numpy arrays on it first")
        cdef _Mapping m = self._mapping
        cdef int rc = 0
        cdef int err = 0
        if not m.arena and m.writable_exports == 0:
            # The region spans its own mapping: enforce it in hardware too, and seal
            # the memfd so no process can map it writable from now on. Frozen before
            # the GIL is dropped: a thread that writes in the meantime (or a child
            # forked then) must see it frozen, not store into read-only memory.
            m.readonly = True
            self._frozen = True
            with nogil:
                rc = cowbuf_shm_protect_readonly(m.addr, <size_t>m.size, m.fd)
                if rc == -1:
                    err = errno
            if rc == -1:
                m.readonly = False
                self._frozen = False
                raise _os_error(err, "cannot freeze the region")
        self._frozen = True

    def view(self, typecode, offset=0, length=None):
        """An Array of `typecode` on the bytes from `offset` (a multiple of the
        itemsize), `length` items long (default: as many as fit)."""
        self._check_open()
        cdef char tc = _parse_typecode(typecode)
        cdef Py_ssize_t size = _itemsize(tc)
        cdef Py_ssize_t start = PyNumber_AsSsize_t(offset, ValueError)
        cdef Py_ssize_t count
        self._check_open()
        if start < 0 or start > self._nbytes:
            raise ValueError(f"offset {start} is outside the region (0..{self._nbytes})")
        if start % size:
            raise ValueError(f"offset {start} is not a multiple of the itemsize {size}")
        if length is None:
            count = (self._nbytes - start) // size
        else:
            count = PyNumber_AsSsize_t(length, ValueError)
            self._check_open()
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
        self._check_open()
        cdef Py_ssize_t start = PyNumber_AsSsize_t(offset, ValueError)
        self._check_open()
        if start % 8:
            raise ValueError(f"counter offset {start} is not a multiple of 8")
        if start < 0 or start > self._nbytes - 8:
            raise ValueError(
                f"counter offset {start} is outside the region ({self._nbytes} bytes)")
        return _counter_view(self, start)

    def __getbuffer__(self, Py_buffer* view, int flags):
        self._check_open()
        cdef bint readonly = self._is_readonly()
        if readonly and flags & PyBUF_WRITABLE:
            raise BufferError("the region is frozen: its buffer is read-only")
        view.buf = self._addr
        view.obj = self
        view.len = self._nbytes
        view.readonly = readonly
        view.itemsize = 1
        view.format = <char*>"B" if flags & PyBUF_FORMAT else NULL
        view.ndim = 1
        view.shape = &self._nbytes if flags & PyBUF_ND else NULL
        view.strides = &_ONE if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        self._exports += 1
        if not readonly:
            self._writable_exports += 1
            self._mapping.writable_exports += 1

    def __releasebuffer__(self, Py_buffer* view):
        self._exports -= 1
        if not view.readonly:
            self._writable_exports -= 1
            self._mapping.writable_exports -= 1

    def __reduce_ex__(self, protocol):
        # Plain pickle and cloudpickle copy by value; multiprocessing's pickler sends
        # a reference instead (cowbuf._sharing registers that reducer).
        self._check_open()
        data = PickleBuffer(self) if protocol >= 5 else bytes(memoryview(self))
        return (_region_from_bytes, (data, self.frozen, self._mapping.arena))

    def __repr__(self):
        if self._addr == NULL:
            return "<cowbuf.Region closed>"
        return f"<cowbuf.Region nbytes={self._nbytes}{' frozen' if self.frozen else ''}>"


cdef Region _region_view(_Mapping mapping, Py_ssize_t offset, Py_ssize_t nbytes, bint frozen):
    cdef Region region = Region.__new__(Region)
    region._attach(mapping, offset, nbytes)
    region._frozen = frozen or mapping.readonly
    return region


# The region of views and counters made with __new__ rather than by cowbuf: always
# closed, so they raise ValueError instead of dereferencing NULL.
cdef Region _NO_REGION = Region.__new__(Region)

# Set by cowbuf._sharing: sweeps acknowledged hand-offs when regions are created.
_sweep_hook = lambda: None


def _set_sweep_hook(hook):
    global _sweep_hook
    _sweep_hook = hook
