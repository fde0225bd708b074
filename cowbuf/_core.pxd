# Declarations of the cdef classes of _core.pyx: the state each one keeps, and why.

cdef class _Mapping:
    cdef:
        # First byte of the mmap; NULL once unmapped (only __dealloc__ unmaps).
        char* addr
        # Bytes mapped, a multiple of the page size.
        readonly Py_ssize_t size
        # The memfd/shm fd, kept open so the memory can be sent to other processes;
        # -1 for an anonymous mapping, which only forked children can share.
        readonly int fd
        # Mapped or mprotected PROT_READ: every Region on this mapping is frozen.
        readonly bint readonly
        # Carved into small allocations; its first 64 bytes hold the shared bump offset.
        readonly bint arena
        # Writable buffer exports and write pins of all Regions on this mapping: the
        # mapping may be mprotected read-only only while this is zero.
        Py_ssize_t writable_exports
        # 16 random bytes naming this memory in every process: the mapping cache key.
        readonly bytes token
        object __weakref__


cdef class Region:
    cdef:
        # First byte of the region; NULL once closed. Every access checks it first.
        char* _addr
        Py_ssize_t _nbytes
        # Owner of the memory; None once closed. Several Regions may share one
        # mapping (small allocations carved from an arena, a region received twice).
        _Mapping _mapping
        # _addr - _mapping.addr
        Py_ssize_t _offset
        # Live buffer exports plus pins held by GIL-free loops: close() is refused
        # while this is nonzero, so no pointer into the memory can dangle.
        Py_ssize_t _exports
        # The writable ones among _exports: freeze() is refused while nonzero.
        Py_ssize_t _writable_exports
        # Set once by freeze(), never cleared; inherited by forks, sent with pickles.
        bint _frozen
        object __weakref__

    cdef int _check_new(self) except -1
    cdef void _attach(self, _Mapping mapping, Py_ssize_t offset, Py_ssize_t nbytes) noexcept
    cdef inline int _check_open(self) except -1
    cdef int _check_writable(self) except -1
    cdef bint _is_readonly(self) noexcept
    cdef int _pin(self, bint write) except -1
    cdef void _unpin(self, bint write) noexcept


cdef class Array:
    cdef:
        # Owner of the memory: a view keeps its region mapped while it lives.
        Region _region
        # Byte offset of element 0 within the region.
        Py_ssize_t _offset
        # Number of elements; fixed for the life of the view.
        Py_ssize_t _length
        # Bytes from one element to the next: a multiple of the itemsize, negative
        # for reversed views. Exported as the buffer's strides.
        Py_ssize_t _stride
        Py_ssize_t _itemsize
        # One of b B h H i I l L q Q f d.
        char _typecode
        # Made read-only by toreadonly(); the region may also be frozen.
        bint _readonly

    cdef inline char* _base(self) except NULL
    cdef int _check_writable(self) except -1
    cdef bint _is_readonly(self) noexcept
    cdef int _check_atomic(self) except -1
    cdef Py_ssize_t _index(self, object key) except? -1
    cdef Array _slice(self, object key)
    cdef int _assign_slice(self, object key, object value) except -1
    cdef object _extreme(self, bint want_max)


cdef class Counter:
    cdef:
        # Owner of the memory: keeps the counter mapped while it lives.
        Region _region
        # Byte offset of the int64 within the region; a multiple of 8.
        Py_ssize_t _offset

    cdef inline long long* _ptr(self) except NULL
    cdef inline long long* _wptr(self) except NULL
