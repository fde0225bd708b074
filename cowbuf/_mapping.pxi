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
        self.fd = -1

    def __dealloc__(self):
        cdef char* addr = self.addr
        self.addr = NULL
        if addr != NULL:
            cowbuf_unpoison(addr, <size_t>self.size)
            with nogil:
                munmap(addr, <size_t>self.size)
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


cdef _Mapping _new_mapping(Py_ssize_t nbytes, bint populate, bint arena):
    cdef size_t size = <size_t>((nbytes + PAGE - 1) // PAGE * PAGE)
    cdef int fd
    cdef int err = 0
    cdef void* addr = NULL
    cdef _Mapping m
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
    m = _Mapping.__new__(_Mapping)
    m.addr = <char*>addr
    m.size = <Py_ssize_t>size
    m.fd = fd if fd >= 0 else -1
    m.arena = arena
    m.token = os.urandom(16)
    _mappings[m.token] = m
    return m


def _lookup_mapping(bytes token):
    """The mapping of `token` if this process has it mapped, else None."""
    return _mappings.get(token)


def _map_fd(int fd, Py_ssize_t size, bytes token, bint readonly, bint arena):
    """Map `size` bytes of a received fd, which the new mapping owns (it is closed on
    failure too). A memfd sealed against writing is mapped read-only."""
    cdef int64_t actual
    cdef void* addr = NULL
    cdef int err = 0
    cdef _Mapping m
    if size <= 0 or size % PAGE:
        close(fd)
        raise ValueError(f"bad mapping size {size}")
    with nogil:
        actual = cowbuf_fd_size(fd)
        if actual == -1:
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
    m = _Mapping.__new__(_Mapping)
    m.addr = <char*>addr
    m.size = size
    m.fd = fd
    m.readonly = readonly
    m.arena = arena
    m.token = token
    _mappings[token] = m
    return m


def _live_mappings():
    """How many shared mappings this process holds (for tests and diagnostics)."""
    return len(_mappings)


# -- small allocations -------------------------------------------------------------

cdef _Mapping _arena = None


cdef Region _carve(Py_ssize_t nbytes, Py_ssize_t align):
    """A zero-filled Region of `nbytes` (< ARENA_BYTES) carved from the current arena.
    Chunks are never reused: another process may still use a chunk this one dropped.
    An arena is unmapped once the last region carved from it is gone."""
    global _arena
    cdef uint64_t* bump
    cdef uint64_t current, start, end
    if nbytes < 0 or nbytes + align > ARENA_BYTES - ARENA_HEADER:
        raise ValueError(f"cannot carve {nbytes} bytes from an arena")
    while True:
        if _arena is None:
            _arena = _new_mapping(ARENA_BYTES, False, True)
            cowbuf_store_u64(<uint64_t*>_arena.addr, <uint64_t>ARENA_HEADER)
        bump = <uint64_t*>_arena.addr
        current = cowbuf_load_u64(bump)
        while True:
            start = (current + <uint64_t>align - 1) // <uint64_t>align * <uint64_t>align
            end = start + <uint64_t>nbytes
            if end > <uint64_t>ARENA_BYTES:
                break
            # on failure `current` is reloaded with the offset another process set
            if cowbuf_cas_u64(bump, &current, end):
                cowbuf_unpoison(_arena.addr + start, <size_t>nbytes)
                return _region_view(_arena, <Py_ssize_t>start, nbytes, False)
        _arena = None


cdef Region _allocate(Py_ssize_t nbytes, bint populate):
    if nbytes < PAGE:
        return _carve(nbytes, 16)
    if populate and nbytes >= COMMIT_CHECK_BYTES:
        # every page is about to be written: fail here, not in the OOM killer
        check_commit(nbytes)
    cdef Region region = Region.__new__(Region)
    region._attach(_new_mapping(nbytes, populate, False), 0, nbytes)
    return region


cdef Py_ssize_t _to_nbytes(object nbytes) except -1:
    n = PyNumber_Index(nbytes)
    if n < 0:
        raise ValueError(f"negative size: {n}")
    if n > <object>(LLONG_MAX // 2):
        raise MemoryError(f"cannot map {n} bytes")
    return <Py_ssize_t>n
