# Mappings of shared memory, the arenas small allocations are carved from, and the
# one allocator every Region, Array and Counter comes from.

# token -> _Mapping, for every mapping alive in this process: a region that arrives
# again (in a forked child, or a second time) is mapped only once.
_mappings = weakref.WeakValueDictionary()


@cython.final
cdef class _Mapping:
    """One mmap of shared memory, unmapped when the last Region on it goes away."""

    def __cinit__(self):
        self.addr = NULL
        self.writer = NULL
        self.fd = -1
        self.out_slot = -1
        self.regions = {}

    def __dealloc__(self):
        cdef char* addr = self.addr
        cdef char* writer = self.writer
        cdef size_t size = <size_t>self.size
        self.addr = NULL
        self.writer = NULL
        if self.is_foreign:
            PyBuffer_Release(&self.foreign)
            return
        if addr != NULL:
            cowbuf_unpoison(addr, size)
        with nogil:
            if addr != NULL:
                munmap(addr, size)
            if writer != NULL:
                munmap(writer, size)
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1

    def __repr__(self):
        return (f"<cowbuf._Mapping size={self.size} fd={self.fd}"
                f"{' readonly' if self.readonly else ''}{' arena' if self.arena else ''}>")


cdef object _os_error(int err, str what):
    if err == ENOMEM:
        return MemoryError(f"{what}: out of memory or address space")
    return OSError(err, f"{what}: {os.strerror(err)}")


cdef _Mapping _mapping_object(void* addr, Py_ssize_t size, int fd, bint readonly, bint arena,
                              bytes token):
    """The _Mapping that owns `addr` (and `fd`) from now on, in the table of mappings."""
    cdef int64_t ignored
    cdef _Mapping m = _Mapping.__new__(_Mapping)
    m.addr = <char*>addr
    m.size = size
    m.fd = fd
    m.readonly = readonly
    m.arena = arena
    m.token = token
    if fd >= 0:
        cowbuf_fd_stat(fd, &ignored, &m.ino)
    _mappings[token] = m
    return m


cdef _Mapping _new_mapping(Py_ssize_t nbytes, bint populate, bint arena):
    cdef size_t size = <size_t>((nbytes + PAGE - 1) // PAGE * PAGE)
    cdef int fd
    cdef int err = 0
    cdef void* addr = NULL
    with nogil:
        fd = cowbuf_shm_create(size, populate)
        if fd == -1:
            err = errno
        else:
            addr = cowbuf_shm_map(fd if fd >= 0 else -1, size, 1, populate)
            if addr == NULL:
                err = errno
                if fd >= 0:
                    close(fd)
    if err:
        raise _os_error(err, f"cannot create a shared region of {nbytes} bytes")
    # (sanitizer builds) what no Region covers yet: all but the arena's header, or
    # the tail of the last page
    if arena:
        cowbuf_poison(<char*>addr + ARENA_HEADER, size - ARENA_HEADER)
    else:
        cowbuf_poison(<char*>addr + nbytes, size - nbytes)
    return _mapping_object(addr, <Py_ssize_t>size, fd if fd >= 0 else -1, False, arena,
                           os.urandom(16))


cdef _Mapping _foreign_mapping(object data):
    """A read-only mapping on the memory of `data`, a read-only contiguous buffer,
    without copying it; None if the buffer is writable, not contiguous, or not
    aligned for every item type (then the caller copies)."""
    cdef _Mapping m = _Mapping.__new__(_Mapping)
    if not PyObject_CheckBuffer(data):
        return None
    try:
        PyObject_GetBuffer(data, &m.foreign, PyBUF_ANY_CONTIGUOUS)
    except BufferError:
        return None
    m.is_foreign = True  # from here on, the mapping releases the buffer
    if not m.foreign.readonly or <uintptr_t>m.foreign.buf % 8:
        return None
    m.addr = <char*>m.foreign.buf
    m.size = m.foreign.len
    m.readonly = True
    m.token = os.urandom(16)
    return m


def _lookup_mapping(bytes token):
    """The mapping of `token` if this process has it mapped, else None."""
    return _mappings.get(token)


def _map_fd(int fd, Py_ssize_t size, bytes token, bint readonly, bint arena):
    """Map `size` bytes of a received fd, which the new mapping owns (it is closed on
    failure too). A memfd sealed against writing is mapped read-only."""
    cdef int64_t actual = 0
    cdef uint64_t ino
    cdef void* addr = NULL
    cdef int err = 0
    cdef _Mapping m
    if size <= 0 or size % PAGE:
        close(fd)
        raise ValueError(f"bad mapping size {size}")
    with nogil:
        if cowbuf_fd_stat(fd, &actual, &ino) == -1:
            err = errno
        elif actual >= size:
            addr = cowbuf_shm_map(fd, <size_t>size, not readonly, 0)
            if addr == NULL and not readonly and (errno == EPERM or errno == EACCES):
                readonly = True  # frozen since it was sent: F_SEAL_FUTURE_WRITE
                addr = cowbuf_shm_map(fd, <size_t>size, 0, 0)
            if addr == NULL:
                err = errno
    if err or addr == NULL:
        close(fd)
        if err:
            raise _os_error(err, "cannot map a received region")
        raise ValueError(f"received fd holds {actual} bytes, expected {size}")
    # (sanitizer builds) each Region received on it unpoisons its own bytes
    cowbuf_poison(<char*>addr + (ARENA_HEADER if arena else 0),
                  size - (ARENA_HEADER if arena else 0))
    m = _mapping_object(addr, size, fd, readonly, arena, token)
    m.received = True
    return m


def _drop_received_fds():
    """Close the fds of the mappings this process received (#13: one fd per mapping
    runs a receiver out of fds). The mappings stay valid; a hand-off of one of them
    can then only go to a process that has it already. Returns how many were closed."""
    cdef _Mapping m
    cdef int dropped = 0
    for m in list(_mappings.values()):
        if m.received and m.fd >= 0 and m.out_slot < 0:
            close(m.fd)
            m.fd = -1
            dropped += 1
    return dropped


def _live_mappings():
    """How many shared mappings this process holds (for tests and diagnostics)."""
    return len(_mappings)


# -- small allocations -------------------------------------------------------------

# The arena small allocations are carved from now, and the frozen arena that frozen
# small regions move to (see Region.freeze): a memfd sealed against writes from the
# start, filled through a second mapping that only this process and its forks have.
cdef _Mapping _arena = None
cdef _Mapping _frozen_arena = None


cdef _Mapping _new_frozen_arena():
    cdef _Mapping m = _new_mapping(ARENA_BYTES, False, True)
    cdef void* reader = NULL
    if m.fd < 0:
        return None  # anonymous memory cannot be mapped twice
    with nogil:
        reader = cowbuf_shm_map(m.fd, <size_t>m.size, 0, 0)
        if reader != NULL:
            cowbuf_shm_seal_writes(m.fd)
    if reader == NULL:
        raise _os_error(errno, "cannot map a frozen arena")
    # the mapping made writable becomes the writer; Regions see the read-only one
    cowbuf_unpoison(m.addr, <size_t>m.size)
    m.writer = m.addr
    m.addr = <char*>reader
    m.readonly = True
    cowbuf_poison(m.addr + ARENA_HEADER, <size_t>(m.size - ARENA_HEADER))
    return m


cdef Py_ssize_t _bump(char* header, Py_ssize_t nbytes, Py_ssize_t align) noexcept nogil:
    """Claim `nbytes` at `align` from the arena whose bump offset is at `header`: the
    offset of the chunk, or -1 when the arena is full. Chunks are never reused:
    another process may still use a chunk this one dropped."""
    cdef uint64_t* bump = <uint64_t*>header
    cdef uint64_t current = cowbuf_load_u64(bump)
    cdef uint64_t start, end
    while True:
        start = (current + <uint64_t>align - 1) // <uint64_t>align * <uint64_t>align
        end = start + <uint64_t>nbytes
        if end > <uint64_t>ARENA_BYTES:
            return -1
        # on failure `current` is reloaded with the offset another process set
        if cowbuf_cas_u64(bump, &current, end):
            return <Py_ssize_t>start


cdef Region _carve(Py_ssize_t nbytes, Py_ssize_t align):
    """A zero-filled Region of `nbytes` carved from the current arena. An arena is
    unmapped once the last region carved from it is gone."""
    global _arena
    cdef Py_ssize_t start
    if nbytes < 0 or nbytes + align > ARENA_BYTES - ARENA_HEADER:
        raise ValueError(f"cannot carve {nbytes} bytes from an arena")
    _outbox.sweep(False)  # every allocation releases the hand-offs received meanwhile
    while True:
        if _arena is None:
            _arena = _new_mapping(ARENA_BYTES, False, True)
            cowbuf_store_u64(<uint64_t*>_arena.addr, <uint64_t>ARENA_HEADER)
        # at least one byte: every region of an arena has an offset of its own (#6)
        start = _bump(_arena.addr, max(nbytes, 1), align)
        if start >= 0:
            cowbuf_unpoison(_arena.addr + start, <size_t>nbytes)
            return _region_view(_arena, start, nbytes)
        _arena = None


cdef _Mapping _carve_frozen(Py_ssize_t nbytes, Py_ssize_t* offset):
    """Room for `nbytes` in the frozen arena (its offset in *offset), or None where
    there can be no frozen arena (anonymous memory)."""
    global _frozen_arena
    cdef Py_ssize_t start
    while True:
        if _frozen_arena is None:
            _frozen_arena = _new_frozen_arena()
            if _frozen_arena is None:
                return None
            cowbuf_store_u64(<uint64_t*>_frozen_arena.writer, <uint64_t>ARENA_HEADER)
        start = _bump(_frozen_arena.writer, max(nbytes, 1), 16)
        if start >= 0:
            cowbuf_unpoison(_frozen_arena.addr + start, <size_t>nbytes)
            offset[0] = start
            return _frozen_arena
        _frozen_arena = None


cdef _Mapping _own_mapping(Py_ssize_t nbytes, bint populate):
    """A mapping of `nbytes` of its own, zero-filled; committed at once with
    `populate`, after checking it against the memory left (from COMMIT_CHECK_BYTES
    on: smaller commits cannot exhaust it)."""
    _outbox.sweep(False)  # every allocation releases the hand-offs received meanwhile
    if populate and nbytes >= COMMIT_CHECK_BYTES:
        # every page is about to be written: fail here, not in the OOM killer
        check_commit(nbytes)
    return _new_mapping(nbytes, populate, False)


cdef Region _allocate(Py_ssize_t nbytes, bint populate):
    """The one allocator of the objects cowbuf makes (Region() makes page-aligned
    mappings of its own with _own_mapping): carved from an arena under a page, else
    a mapping of its own."""
    if nbytes < PAGE:
        return _carve(nbytes, 16)
    return _region_view(_own_mapping(nbytes, populate), 0, nbytes)


cdef Py_ssize_t _to_nbytes(object nbytes) except -1:
    n = PyNumber_Index(nbytes)
    if n < 0:
        raise ValueError(f"negative size: {n}")
    if n > <object>(LLONG_MAX // 2):
        raise MemoryError(f"cannot map {n} bytes")
    return <Py_ssize_t>n
