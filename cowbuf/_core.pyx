# cython: language_level=3, embedsignature=True
"""cowbuf's core: shared memory regions, typed views and atomic counters, in C.

Memory leaves this module only through the buffer protocol of the object that owns it
(a Region, or an Array holding its Region), and every export is counted: a region
with live exports can be neither closed nor frozen, so no pointer handed out can
dangle or be written through after a freeze. Methods that run Python code (an
argument's __index__, __float__ or buffer) check the region again afterwards, since
that code may have closed it.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_F_CONTIGUOUS, PyBUF_FORMAT,
    PyBUF_ND, PyBUF_RECORDS_RO, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_IsContiguous,
    PyBuffer_Release, PyBuffer_ToContiguous, PyObject_CheckBuffer, PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.float cimport PyFloat_AsDouble
from cpython.long cimport (
    PyLong_AsLongLong, PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLong,
    PyLong_Check, PyLong_CheckExact,
    PyLong_FromLongLong, PyLong_FromUnsignedLongLong,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.number cimport PyIndex_Check, PyNumber_AsSsize_t, PyNumber_Index
from cpython.slice cimport PySlice_AdjustIndices, PySlice_Check, PySlice_Unpack
from libc.errno cimport ENOMEM, EPERM, EACCES, errno
from libc.math cimport NAN
from libc.limits cimport (
    INT_MAX, INT_MIN, LLONG_MAX, LLONG_MIN, LONG_MAX, LONG_MIN, SCHAR_MAX, SCHAR_MIN,
    SHRT_MAX, SHRT_MIN, UCHAR_MAX, UINT_MAX, ULLONG_MAX, ULONG_MAX, USHRT_MAX,
)
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memmove

from cowbuf._atomic cimport (
    cowbuf_add_fetch_u32, cowbuf_add_fetch_u64, cowbuf_cas_u32, cowbuf_cas_u64,
    cowbuf_exchange_u64, cowbuf_fetch_add_u64, cowbuf_load_u32, cowbuf_load_u64,
    cowbuf_store_u32, cowbuf_store_u64,
)

import os
import sys
import weakref
from pickle import PickleBuffer
from types import GenericAlias

from cowbuf._memory import check_commit


cdef extern from "_shm.h" nogil:
    int COWBUF_FD_NONE
    size_t cowbuf_page_size()
    int cowbuf_shm_create(size_t size, int populate)
    void* cowbuf_shm_map(int fd, size_t size, int writable, int populate)
    int cowbuf_shm_protect_readonly(void* addr, size_t size, int fd)
    int64_t cowbuf_fd_size(int fd)
    void cowbuf_poison(void* addr, size_t size)
    void cowbuf_unpoison(void* addr, size_t size)
    int munmap(void* addr, size_t size)
    int close(int fd)


# -- constants ---------------------------------------------------------------------

cdef Py_ssize_t PAGE = <Py_ssize_t>cowbuf_page_size()
# Small allocations (arrays under a page, counters) are carved from arenas of this
# size, so that 100,000 of them cost a few fds and mappings, not 100,000. Arenas are
# sparse: only the pages touched cost memory.
cdef Py_ssize_t ARENA_BYTES = max(8 << 20, 64 * PAGE)
# The first cache line of an arena holds its bump offset, shared by every process that
# maps it, so a forked child allocating from an inherited arena never collides with
# its parent.
cdef Py_ssize_t ARENA_HEADER = 64
# Arrays built from data (and so written in full at once) are committed up front;
# from this size on, against the memory left (cowbuf._memory), as populate=True is.
cdef Py_ssize_t COMMIT_CHECK_BYTES = 64 << 20
# atomic_add_at into arrays of at most this many items combines the adds to each item
# before applying them (a private table of this many uint64).
cdef Py_ssize_t AGGREGATE_ITEMS = 1 << 16
# Bulk loops over at least this many bytes release the GIL.
cdef Py_ssize_t NOGIL_BYTES = 1 << 16
# Integer sums are exact: partial sums are taken over chunks this long, which cannot
# overflow their 64-bit accumulators.
cdef Py_ssize_t SUM_CHUNK = 1 << 31
cdef Py_ssize_t _ONE = 1
cdef bint LITTLE_ENDIAN = sys.byteorder == "little"

TYPECODES = "bBhHiIlLqQfd"
cdef str _TYPECODE_ERROR = "bad typecode (must be b, B, h, H, i, I, l, L, q, Q, f or d)"


# -- typecodes and element conversion ----------------------------------------------

ctypedef union _Value:
    long long i
    unsigned long long u
    double d


cdef inline Py_ssize_t _itemsize(char tc) noexcept nogil:
    if tc == c'b' or tc == c'B':
        return 1
    if tc == c'h' or tc == c'H':
        return sizeof(short)
    if tc == c'i' or tc == c'I':
        return sizeof(int)
    if tc == c'l' or tc == c'L':
        return sizeof(long)
    if tc == c'f':
        return sizeof(float)
    return 8  # q Q d


cdef inline bint _is_float(char tc) noexcept nogil:
    return tc == c'f' or tc == c'd'


cdef inline bint _is_unsigned(char tc) noexcept nogil:
    return tc == c'B' or tc == c'H' or tc == c'I' or tc == c'L' or tc == c'Q'


cdef const char* _format(char tc) noexcept nogil:
    if tc == c'b': return "b"
    if tc == c'B': return "B"
    if tc == c'h': return "h"
    if tc == c'H': return "H"
    if tc == c'i': return "i"
    if tc == c'I': return "I"
    if tc == c'l': return "l"
    if tc == c'L': return "L"
    if tc == c'q': return "q"
    if tc == c'Q': return "Q"
    if tc == c'f': return "f"
    return "d"


cdef char _parse_typecode(object typecode) except 0:
    if not isinstance(typecode, str):
        raise TypeError(f"typecode must be a str, not {type(typecode).__name__}")
    if len(<str>typecode) != 1 or typecode not in TYPECODES:
        raise ValueError(_TYPECODE_ERROR)
    return <char>ord(typecode)


cdef long long _signed_min(char tc) noexcept:
    if tc == c'b': return SCHAR_MIN
    if tc == c'h': return SHRT_MIN
    if tc == c'i': return INT_MIN
    if tc == c'l': return LONG_MIN
    return LLONG_MIN


cdef long long _signed_max(char tc) noexcept:
    if tc == c'b': return SCHAR_MAX
    if tc == c'h': return SHRT_MAX
    if tc == c'i': return INT_MAX
    if tc == c'l': return LONG_MAX
    return LLONG_MAX


cdef unsigned long long _unsigned_max(char tc) noexcept:
    if tc == c'B': return UCHAR_MAX
    if tc == c'H': return USHRT_MAX
    if tc == c'I': return UINT_MAX
    if tc == c'L': return ULONG_MAX
    return ULLONG_MAX


cdef object _range_error(char tc, object value):
    if _is_unsigned(tc):
        low, high = 0, _unsigned_max(tc)
    else:
        low, high = _signed_min(tc), _signed_max(tc)
    return OverflowError(
        f"{value} is out of range for typecode '{chr(tc)}' ({low}..{high})")


cdef int _convert(char tc, object value, _Value* out) except -1:
    """Convert a Python number to the element type of `tc`: TypeError for a value of
    the wrong type, OverflowError for one out of range (as array.array does)."""
    cdef object number
    if tc == c'd' or tc == c'f':
        # like array.array, a double too large for 'f' becomes inf
        out.d = PyFloat_AsDouble(value)
        return 0
    number = value if PyLong_CheckExact(value) else PyNumber_Index(value)
    if _is_unsigned(tc):
        if number < 0:
            raise _range_error(tc, number)
        try:
            out.u = PyLong_AsUnsignedLongLong(number)
        except OverflowError:
            raise _range_error(tc, number) from None
        if out.u > _unsigned_max(tc):
            raise _range_error(tc, number)
    else:
        try:
            out.i = PyLong_AsLongLong(number)
        except OverflowError:
            raise _range_error(tc, number) from None
        if out.i < _signed_min(tc) or out.i > _signed_max(tc):
            raise _range_error(tc, number)
    return 0


cdef inline void _store(char tc, char* p, _Value v) noexcept nogil:
    if tc == c'q': (<long long*>p)[0] = v.i
    elif tc == c'd': (<double*>p)[0] = v.d
    elif tc == c'b': (<signed char*>p)[0] = <signed char>v.i
    elif tc == c'B': (<unsigned char*>p)[0] = <unsigned char>v.u
    elif tc == c'h': (<short*>p)[0] = <short>v.i
    elif tc == c'H': (<unsigned short*>p)[0] = <unsigned short>v.u
    elif tc == c'i': (<int*>p)[0] = <int>v.i
    elif tc == c'I': (<unsigned int*>p)[0] = <unsigned int>v.u
    elif tc == c'l': (<long*>p)[0] = <long>v.i
    elif tc == c'L': (<unsigned long*>p)[0] = <unsigned long>v.u
    elif tc == c'Q': (<unsigned long long*>p)[0] = v.u
    else: (<float*>p)[0] = <float>v.d


cdef inline object _load(char tc, const char* p):
    if tc == c'q': return PyLong_FromLongLong((<const long long*>p)[0])
    if tc == c'd': return (<const double*>p)[0]
    if tc == c'b': return (<const signed char*>p)[0]
    if tc == c'B': return (<const unsigned char*>p)[0]
    if tc == c'h': return (<const short*>p)[0]
    if tc == c'H': return (<const unsigned short*>p)[0]
    if tc == c'i': return (<const int*>p)[0]
    if tc == c'I': return (<const unsigned int*>p)[0]
    if tc == c'l': return (<const long*>p)[0]
    if tc == c'L': return (<const unsigned long*>p)[0]
    if tc == c'Q': return PyLong_FromUnsignedLongLong((<const unsigned long long*>p)[0])
    return <double>(<const float*>p)[0]


# -- buffer formats ----------------------------------------------------------------

cdef int _format_kind(const char* fmt, Py_ssize_t* size) noexcept:
    """Classify a buffer format of one element: 1 signed integer, 2 unsigned integer,
    3 floating point, 0 anything else (structs, bool, other byte orders). Sets *size."""
    cdef char order = c'@'
    cdef char code
    if fmt == NULL:
        size[0] = 1
        return 2
    if fmt[0] == c'@' or fmt[0] == c'=' or fmt[0] == c'<' or fmt[0] == c'>' or fmt[0] == c'!':
        order = fmt[0]
        fmt += 1
    if fmt[0] == c'1' and fmt[1] != 0:
        fmt += 1  # an explicit repeat count of one
    code = fmt[0]
    if code == 0 or fmt[1] != 0:
        return 0
    if order == c'>' or order == c'!':
        if LITTLE_ENDIAN:
            return 0
    elif order == c'<':
        if not LITTLE_ENDIAN:
            return 0
    if order != c'@':
        # standard sizes of the struct module
        if code == c'b' or code == c'B': size[0] = 1
        elif code == c'h' or code == c'H' or code == c'e': size[0] = 2
        elif code == c'i' or code == c'I' or code == c'l' or code == c'L' or code == c'f':
            size[0] = 4
        elif code == c'q' or code == c'Q' or code == c'd': size[0] = 8
        else: return 0
    elif code == c'b' or code == c'B': size[0] = 1
    elif code == c'h' or code == c'H': size[0] = sizeof(short)
    elif code == c'i' or code == c'I': size[0] = sizeof(int)
    elif code == c'l' or code == c'L': size[0] = sizeof(long)
    elif code == c'q' or code == c'Q': size[0] = sizeof(long long)
    elif code == c'n' or code == c'N': size[0] = sizeof(Py_ssize_t)
    elif code == c'f': size[0] = sizeof(float)
    elif code == c'd': size[0] = sizeof(double)
    else: return 0
    if code == c'b' or code == c'h' or code == c'i' or code == c'l' or code == c'q' or code == c'n':
        return 1
    if code == c'f' or code == c'd':
        return 3
    return 2


cdef inline int _typecode_kind(char tc) noexcept:
    if _is_float(tc):
        return 3
    return 2 if _is_unsigned(tc) else 1


cdef str _format_name(const char* fmt):
    return "B" if fmt == NULL else (<bytes>fmt).decode("ascii", "replace")


cdef int _check_format(char tc, Py_buffer* view, str what) except -1:
    """TypeError unless the buffer holds elements of exactly the type of `tc`."""
    cdef Py_ssize_t size = 0
    cdef int kind = _format_kind(view.format, &size)
    if kind != _typecode_kind(tc) or size != _itemsize(tc) or view.itemsize != size:
        raise TypeError(
            f"{what}: buffer format '{_format_name(view.format)}' does not match "
            f"typecode '{chr(tc)}' (convert it first, e.g. numpy.asarray(x, "
            f"dtype='{chr(tc)}'))")
    return 0


# -- mappings ----------------------------------------------------------------------

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


# -- Region ------------------------------------------------------------------------

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
        if self._nbytes or self._mapping is not None or self is _NO_REGION:
            raise TypeError("Region.__init__() may only be called once")
        cdef Py_ssize_t n = _to_nbytes(nbytes)
        if n == 0:
            raise ValueError("a Region needs at least one byte")
        _sweep_hook()
        if populate:
            check_commit(n)
        self._attach(_new_mapping(n, populate, False), 0, n)

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
            # the memfd so no process can map it writable from now on.
            with nogil:
                rc = cowbuf_shm_protect_readonly(m.addr, <size_t>m.size, m.fd)
                if rc == -1:
                    err = errno
            if rc == -1:
                raise _os_error(err, "cannot freeze the region")
            m.readonly = True
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


def _region_on(_Mapping mapping not None, Py_ssize_t offset, Py_ssize_t nbytes, bint frozen):
    """The Region of `nbytes` at `offset` of a mapping (used by unpickling)."""
    if offset < 0 or nbytes < 0 or offset > mapping.size - nbytes or mapping.addr == NULL:
        raise ValueError(f"region {offset}+{nbytes} is outside its mapping ({mapping.size})")
    cowbuf_unpoison(mapping.addr + offset, <size_t>nbytes)
    return _region_view(mapping, offset, nbytes, frozen)


def _region_state(Region region not None):
    """(mapping, offset, nbytes, frozen) of an open region (used by pickling)."""
    region._check_open()
    return region._mapping, region._offset, region._nbytes, region.frozen


def _region_from_bytes(data, bint frozen, bint small):
    cdef Py_ssize_t n = len(memoryview(data))
    cdef Region region
    if small or n == 0:
        region = _carve(n, 16)
    else:
        region = Region(n)
    memoryview(region)[:] = data
    if frozen:
        region.freeze()
    return region


# The region of views and counters made with __new__ rather than by cowbuf: always
# closed, so they raise ValueError instead of dereferencing NULL.
cdef Region _NO_REGION = Region.__new__(Region)

# Set by cowbuf._sharing: sweeps acknowledged hand-offs when regions are created.
_sweep_hook = lambda: None


def _set_sweep_hook(hook):
    global _sweep_hook
    _sweep_hook = hook


# -- kernels -----------------------------------------------------------------------

ctypedef fused num_t:
    signed char
    unsigned char
    short
    unsigned short
    int
    unsigned int
    long
    unsigned long
    long long
    unsigned long long
    float
    double

ctypedef fused small_int_t:
    signed char
    unsigned char
    short
    unsigned short
    int
    unsigned int

ctypedef fused real_t:
    float
    double


cdef void _fill_k(num_t* p, Py_ssize_t n, Py_ssize_t step, num_t v) noexcept nogil:
    cdef Py_ssize_t i
    if step == 1:
        for i in range(n):
            p[i] = v
    else:
        for i in range(n):
            p[i * step] = v


cdef void _fill(char tc, char* p, Py_ssize_t n, Py_ssize_t stride, _Value v) noexcept nogil:
    cdef Py_ssize_t step = stride // _itemsize(tc)
    if tc == c'b': _fill_k(<signed char*>p, n, step, <signed char>v.i)
    elif tc == c'B': _fill_k(<unsigned char*>p, n, step, <unsigned char>v.u)
    elif tc == c'h': _fill_k(<short*>p, n, step, <short>v.i)
    elif tc == c'H': _fill_k(<unsigned short*>p, n, step, <unsigned short>v.u)
    elif tc == c'i': _fill_k(<int*>p, n, step, <int>v.i)
    elif tc == c'I': _fill_k(<unsigned int*>p, n, step, <unsigned int>v.u)
    elif tc == c'l': _fill_k(<long*>p, n, step, <long>v.i)
    elif tc == c'L': _fill_k(<unsigned long*>p, n, step, <unsigned long>v.u)
    elif tc == c'q': _fill_k(<long long*>p, n, step, v.i)
    elif tc == c'Q': _fill_k(<unsigned long long*>p, n, step, v.u)
    elif tc == c'f': _fill_k(<float*>p, n, step, <float>v.d)
    else: _fill_k(<double*>p, n, step, v.d)


cdef num_t _min_k(const num_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    # NaN wins, as in numpy: any NaN makes the extreme NaN
    cdef num_t m = p[0]
    cdef num_t x
    cdef Py_ssize_t i
    cdef bint nan = False
    for i in range(1, n):
        x = p[i * step]
        if num_t is float or num_t is double:
            nan |= x != x
        m = x if x < m else m
    if num_t is float or num_t is double:
        if nan or m != m:
            return <num_t>NAN
    return m


cdef num_t _max_k(const num_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    cdef num_t m = p[0]
    cdef num_t x
    cdef Py_ssize_t i
    cdef bint nan = False
    for i in range(1, n):
        x = p[i * step]
        if num_t is float or num_t is double:
            nan |= x != x
        m = x if x > m else m
    if num_t is float or num_t is double:
        if nan or m != m:
            return <num_t>NAN
    return m


cdef long long _sum_small_k(const small_int_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    # n <= SUM_CHUNK: |sum| < 2**31 * 2**32 cannot overflow
    cdef long long total = 0
    cdef Py_ssize_t i
    if step == 1:
        for i in range(n):
            total += p[i]
    else:
        for i in range(n):
            total += p[i * step]
    return total


cdef void _sum8_k(const uint64_t* p, Py_ssize_t n, Py_ssize_t step,
                  uint64_t* low, uint64_t* high, uint64_t* negative) noexcept nogil:
    # Exact sums of 64-bit values without 128-bit arithmetic: split each value u into
    # (u >> 32) * 2**32 + (u & 0xffffffff), and count sign bits for signed types
    # (x = u - 2**64 when x < 0). Each partial sum fits in 64 bits for n <= 2**31,
    # and the loop vectorises with plain 64-bit adds and logical shifts.
    cdef uint64_t lo = 0, hi = 0, neg = 0, u
    cdef Py_ssize_t i
    if step == 1:
        for i in range(n):
            u = p[i]
            lo += u & 0xffffffffULL
            hi += u >> 32
            neg += u >> 63
    else:
        for i in range(n):
            u = p[i * step]
            lo += u & 0xffffffffULL
            hi += u >> 32
            neg += u >> 63
    low[0] = lo
    high[0] = hi
    negative[0] = neg


cdef double _fsum_k(const real_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    # Pairwise summation, as numpy does: error O(log n) instead of O(n).
    cdef double r[8]
    cdef double res
    cdef Py_ssize_t i, j, half
    if n < 8:
        res = 0.0
        for i in range(n):
            res += p[i * step]
        return res
    if n <= 128:
        for j in range(8):
            r[j] = p[j * step]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] += p[(i + j) * step]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += p[i * step]
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return _fsum_k(p, half, step) + _fsum_k(p + half * step, n - half, step)


cdef void _sum_c(char tc, const char* p, Py_ssize_t n, Py_ssize_t step, long long* small,
                 uint64_t* lo, uint64_t* hi, uint64_t* neg, double* fsum) noexcept nogil:
    if tc == c'f': fsum[0] = _fsum_k(<const float*>p, n, step)
    elif tc == c'd': fsum[0] = _fsum_k(<const double*>p, n, step)
    elif tc == c'b': small[0] = _sum_small_k(<const signed char*>p, n, step)
    elif tc == c'B': small[0] = _sum_small_k(<const unsigned char*>p, n, step)
    elif tc == c'h': small[0] = _sum_small_k(<const short*>p, n, step)
    elif tc == c'H': small[0] = _sum_small_k(<const unsigned short*>p, n, step)
    elif tc == c'i': small[0] = _sum_small_k(<const int*>p, n, step)
    elif tc == c'I': small[0] = _sum_small_k(<const unsigned int*>p, n, step)
    else: _sum8_k(<const uint64_t*>p, n, step, lo, hi, neg)


cdef object _sum(char tc, const char* p, Py_ssize_t n, Py_ssize_t stride, bint release):
    """Exact sum of integers (a Python int), pairwise sum of floats (a float)."""
    cdef Py_ssize_t step = stride // _itemsize(tc)
    cdef Py_ssize_t m
    cdef long long small = 0
    cdef uint64_t lo = 0, hi = 0, neg = 0
    cdef double fsum = 0.0
    if _is_float(tc):
        if release:
            with nogil:
                _sum_c(tc, p, n, step, &small, &lo, &hi, &neg, &fsum)
        else:
            _sum_c(tc, p, n, step, &small, &lo, &hi, &neg, &fsum)
        return fsum
    total = 0
    while True:
        # chunks short enough for the 64-bit partial sums to be exact
        m = min(n, SUM_CHUNK)
        if release:
            with nogil:
                _sum_c(tc, p, m, step, &small, &lo, &hi, &neg, &fsum)
        else:
            _sum_c(tc, p, m, step, &small, &lo, &hi, &neg, &fsum)
        if _itemsize(tc) == 8:
            total += (<object>hi << 32) + <object>lo
            if not _is_unsigned(tc):
                total -= <object>neg << 64
        else:
            total += small
        n -= m
        if n == 0:
            return total
        p += m * stride


cdef _Value _extreme_c(char tc, const char* p, Py_ssize_t n, Py_ssize_t step,
                       bint want_max) noexcept nogil:
    cdef _Value v
    if want_max:
        if tc == c'b': v.i = _max_k(<const signed char*>p, n, step)
        elif tc == c'B': v.u = _max_k(<const unsigned char*>p, n, step)
        elif tc == c'h': v.i = _max_k(<const short*>p, n, step)
        elif tc == c'H': v.u = _max_k(<const unsigned short*>p, n, step)
        elif tc == c'i': v.i = _max_k(<const int*>p, n, step)
        elif tc == c'I': v.u = _max_k(<const unsigned int*>p, n, step)
        elif tc == c'l': v.i = _max_k(<const long*>p, n, step)
        elif tc == c'L': v.u = _max_k(<const unsigned long*>p, n, step)
        elif tc == c'q': v.i = _max_k(<const long long*>p, n, step)
        elif tc == c'Q': v.u = _max_k(<const unsigned long long*>p, n, step)
        elif tc == c'f': v.d = _max_k(<const float*>p, n, step)
        else: v.d = _max_k(<const double*>p, n, step)
    else:
        if tc == c'b': v.i = _min_k(<const signed char*>p, n, step)
        elif tc == c'B': v.u = _min_k(<const unsigned char*>p, n, step)
        elif tc == c'h': v.i = _min_k(<const short*>p, n, step)
        elif tc == c'H': v.u = _min_k(<const unsigned short*>p, n, step)
        elif tc == c'i': v.i = _min_k(<const int*>p, n, step)
        elif tc == c'I': v.u = _min_k(<const unsigned int*>p, n, step)
        elif tc == c'l': v.i = _min_k(<const long*>p, n, step)
        elif tc == c'L': v.u = _min_k(<const unsigned long*>p, n, step)
        elif tc == c'q': v.i = _min_k(<const long long*>p, n, step)
        elif tc == c'Q': v.u = _min_k(<const unsigned long long*>p, n, step)
        elif tc == c'f': v.d = _min_k(<const float*>p, n, step)
        else: v.d = _min_k(<const double*>p, n, step)
    return v


cdef object _extreme(char tc, const char* p, Py_ssize_t n, Py_ssize_t stride, bint want_max,
                     bint release):
    cdef Py_ssize_t step = stride // _itemsize(tc)
    cdef _Value v
    if release:
        with nogil:
            v = _extreme_c(tc, p, n, step, want_max)
    else:
        v = _extreme_c(tc, p, n, step, want_max)
    if _is_float(tc):
        return v.d
    if _is_unsigned(tc):
        return PyLong_FromUnsignedLongLong(v.u)
    return PyLong_FromLongLong(v.i)


cdef void _gather(char* dst, const char* src, Py_ssize_t n, Py_ssize_t stride,
                  Py_ssize_t size) noexcept nogil:
    """Copy n items of `size` bytes spaced `stride` apart to contiguous dst."""
    cdef Py_ssize_t i
    if stride == size:
        memcpy(dst, src, n * size)
    elif size == 8:
        for i in range(n):
            (<uint64_t*>dst)[i] = (<const uint64_t*>(src + i * stride))[0]
    else:
        for i in range(n):
            memcpy(dst + i * size, src + i * stride, size)


cdef void _scatter(char* dst, const char* src, Py_ssize_t n, Py_ssize_t stride,
                   Py_ssize_t size) noexcept nogil:
    """Copy n contiguous items of `size` bytes to dst, spaced `stride` apart."""
    cdef Py_ssize_t i
    if stride == size:
        memmove(dst, src, n * size)
    elif size == 8:
        for i in range(n):
            (<uint64_t*>(dst + i * stride))[0] = (<const uint64_t*>src)[i]
    else:
        for i in range(n):
            memcpy(dst + i * stride, src + i * size, size)


# -- Array -------------------------------------------------------------------------

cdef extern from *:
    """
    /* An exact int as an index, read from its digits when it is small; an int too
     * large for Py_ssize_t becomes PY_SSIZE_T_MIN, which no array can hold. */
    static inline Py_ssize_t cowbuf_exact_index(PyObject *key)
    {
    #if PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject *)key)) {
            return (Py_ssize_t)PyUnstable_Long_CompactValue((PyLongObject *)key);
        }
    #else
        Py_ssize_t size = Py_SIZE(key);
        if (size == 0 || size == 1 || size == -1) {
            return size * (Py_ssize_t)((PyLongObject *)key)->ob_digit[0];
        }
    #endif
        Py_ssize_t i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred()) {
            PyErr_Clear();  /* OverflowError: the only error for an exact int */
            return PY_SSIZE_T_MIN;
        }
        return i;
    }
    """
    Py_ssize_t cowbuf_exact_index(object key) noexcept


cdef Array _array_view(Region region, char tc, Py_ssize_t offset, Py_ssize_t length,
                       Py_ssize_t stride, bint readonly):
    cdef Array view = Array.__new__(Array)
    view._region = region
    view._typecode = tc
    view._itemsize = _itemsize(tc)
    view._offset = offset
    view._length = length
    view._stride = stride
    view._readonly = readonly
    return view


@cython.final
cdef class Array:
    """A typed, fixed-length view on shared memory, with the typecodes of
    array.array: b B h H i I l L q Q f d.

    Made by cowbuf.array() (on a region of its own) or Region.view(). Indexing,
    slicing (slices are views on the same memory, not copies), iteration and the
    buffer protocol (zero-copy with numpy and memoryview) never touch a Python
    object header in the shared memory, so reading it from forked workers does not
    copy it. sum(), min(), max() and fill() run in C without the GIL on large arrays.
    """

    def __cinit__(self):
        self._region = _NO_REGION

    def __init__(self, *args, **kwargs):
        raise TypeError("Arrays are made by cowbuf.array(typecode, init) or Region.view()")

    cdef inline char* _base(self) except NULL:
        cdef char* addr = self._region._addr
        if addr == NULL:
            raise ValueError("operation on a closed region")
        return addr + self._offset

    cdef bint _is_readonly(self) noexcept:
        return self._readonly or self._region._is_readonly()

    cdef int _check_writable(self) except -1:
        self._base()
        if self._readonly:
            raise TypeError("cannot modify read-only memory: the array is a read-only view")
        self._region._check_writable()
        return 0

    cdef Py_ssize_t _index(self, object key) except? -1:
        cdef Py_ssize_t i
        if PyLong_CheckExact(key):
            i = cowbuf_exact_index(key)
        else:
            i = PyNumber_AsSsize_t(key, IndexError)
        if i < 0:
            i += self._length
        if i < 0 or i >= self._length:
            raise IndexError("array index out of range")
        return i

    # -- sequence

    def __len__(self):
        self._base()
        return self._length

    def __getitem__(self, key):
        cdef char* addr = self._region._addr
        cdef Py_ssize_t i
        if PyLong_CheckExact(key) and addr != NULL:
            i = cowbuf_exact_index(key)  # the hot path: no Python code can run
            if i < 0:
                i += self._length
            if <size_t>i >= <size_t>self._length:
                raise IndexError("array index out of range")
            return _load(self._typecode, addr + self._offset + i * self._stride)
        self._base()
        if PySlice_Check(key):
            return self._slice(key)
        i = self._index(key)
        # __index__ may have closed the region
        return _load(self._typecode, self._base() + i * self._stride)

    def __setitem__(self, key, value):
        cdef Py_ssize_t i
        cdef _Value v
        self._check_writable()
        if PySlice_Check(key):
            self._assign_slice(key, value)
            return
        i = self._index(key)
        _convert(self._typecode, value, &v)
        self._check_writable()  # __index__/__float__ may have closed or frozen it
        _store(self._typecode, self._base() + i * self._stride, v)

    def __delitem__(self, key):
        raise TypeError("an Array has a fixed length: items cannot be deleted")

    cdef Array _slice(self, object key):
        cdef Py_ssize_t start, stop, step, n
        PySlice_Unpack(key, &start, &stop, &step)
        n = PySlice_AdjustIndices(self._length, &start, &stop, step)
        self._base()
        if n == 0:
            return _array_view(self._region, self._typecode, self._offset, 0,
                               self._itemsize, self._readonly)
        return _array_view(self._region, self._typecode, self._offset + start * self._stride,
                           n, self._stride * step if n > 1 else self._itemsize,
                           self._readonly)

    cdef int _assign_slice(self, object key, object value) except -1:
        cdef Py_ssize_t start, stop, step, n, count
        cdef Py_ssize_t size = self._itemsize
        cdef char tc = self._typecode
        cdef Py_buffer src
        cdef char* tmp = NULL
        cdef char* dst
        cdef _Value v
        cdef bint big
        PySlice_Unpack(key, &start, &stop, &step)
        n = PySlice_AdjustIndices(self._length, &start, &stop, step)
        cdef Py_ssize_t dst_stride = self._stride * step if n > 1 else size
        cdef Py_ssize_t dst_offset = start * self._stride if n else 0
        if PyObject_CheckBuffer(value):
            PyObject_GetBuffer(value, &src, PyBUF_RECORDS_RO)
            try:
                _check_format(tc, &src, "cannot assign to the array slice")
                count = src.len // size
                if count != n:
                    raise ValueError(
                        f"cannot assign {count} items to an array slice of {n} items")
                self._check_writable()
                dst = self._base() + dst_offset
                big = n * size >= NOGIL_BYTES
                self._region._pin(True)
                try:
                    if dst_stride == size and PyBuffer_IsContiguous(&src, b'C'):
                        if big:
                            with nogil:
                                memmove(dst, src.buf, n * size)
                        else:
                            memmove(dst, src.buf, n * size)
                    else:
                        # staged through a private copy: the two may overlap
                        tmp = <char*>PyMem_Malloc(n * size + 1)
                        if tmp == NULL:
                            raise MemoryError()
                        PyBuffer_ToContiguous(tmp, &src, n * size, b'C')
                        if big:
                            with nogil:
                                _scatter(dst, tmp, n, dst_stride, size)
                        else:
                            _scatter(dst, tmp, n, dst_stride, size)
                finally:
                    self._region._unpin(True)
            finally:
                PyMem_Free(tmp)
                PyBuffer_Release(&src)
            return 0
        if isinstance(value, (str, int, float)):
            raise TypeError(
                f"can only assign an iterable or a buffer to an array slice, not "
                f"{type(value).__name__} (use fill() to set every item to one value)")
        items = value if isinstance(value, (list, tuple)) else list(value)
        if len(items) != n:
            raise ValueError(f"cannot assign {len(items)} items to an array slice of {n} items")
        tmp = <char*>PyMem_Malloc(n * size + 1)
        if tmp == NULL:
            raise MemoryError()
        try:
            count = 0
            for item in items:
                if count == n:
                    break
                _convert(tc, item, &v)
                _store(tc, tmp + count * size, v)
                count += 1
            if count != n:
                raise ValueError("the sequence changed size during the assignment")
            self._check_writable()  # the conversions ran Python code
            _scatter(self._base() + dst_offset, tmp, n, dst_stride, size)
        finally:
            PyMem_Free(tmp)
        return 0

    def __iter__(self):
        self._base()
        cdef _ArrayIterator it = _ArrayIterator.__new__(_ArrayIterator)
        it._region = self._region
        it._typecode = self._typecode
        it._offset = self._offset
        it._stride = self._stride
        it._length = self._length
        return it

    def __reversed__(self):
        self._base()
        cdef _ArrayIterator it = _ArrayIterator.__new__(_ArrayIterator)
        it._region = self._region
        it._typecode = self._typecode
        it._offset = self._offset + (self._length - 1) * self._stride
        it._stride = -self._stride
        it._length = self._length
        return it

    def __eq__(self, other):
        if not isinstance(other, Array):
            return NotImplemented
        return _equal(self, <Array>other)

    def __ne__(self, other):
        if not isinstance(other, Array):
            return NotImplemented
        return not _equal(self, <Array>other)

    __hash__ = None

    # Array[int], Array[float] in annotations evaluated at run time: the stubs
    # make Array generic in its item type.
    __class_getitem__ = classmethod(GenericAlias)

    # -- properties

    @property
    def typecode(self):
        """The typecode of the items, as in array.array."""
        return chr(self._typecode)

    @property
    def itemsize(self):
        """Size of one item in bytes."""
        return self._itemsize

    @property
    def nbytes(self):
        """Size of the items in bytes (len(a) * a.itemsize)."""
        self._base()
        return self._length * self._itemsize

    @property
    def region(self):
        """The Region this array is a view on."""
        return self._region

    @property
    def readonly(self):
        """True if writes are refused: the region is frozen or the view is read-only."""
        return self._is_readonly()

    # -- whole-array operations

    def tolist(self):
        """The items as a list of Python numbers."""
        cdef char* base = self._base()
        cdef Py_ssize_t i
        cdef char tc = self._typecode
        self._region._pin(False)
        try:
            return [_load(tc, base + i * self._stride) for i in range(self._length)]
        finally:
            self._region._unpin(False)

    def tobytes(self):
        """The items' machine representation as bytes, in order."""
        cdef char* base = self._base()
        cdef Py_ssize_t n = self._length * self._itemsize
        result = PyBytes_FromStringAndSize(NULL, n)
        cdef char* out = PyBytes_AS_STRING(result)
        self._region._pin(False)
        if n >= NOGIL_BYTES:
            with nogil:
                _gather(out, base, self._length, self._stride, self._itemsize)
        else:
            _gather(out, base, self._length, self._stride, self._itemsize)
        self._region._unpin(False)
        return result

    def fill(self, value):
        """Set every item to `value`."""
        cdef _Value v
        self._check_writable()
        _convert(self._typecode, value, &v)
        self._check_writable()
        cdef char* base = self._base()
        self._region._pin(True)
        if self._length * self._itemsize >= NOGIL_BYTES:
            with nogil:
                _fill(self._typecode, base, self._length, self._stride, v)
        else:
            _fill(self._typecode, base, self._length, self._stride, v)
        self._region._unpin(True)

    def sum(self):
        """The sum of the items: exact for integers (a Python int, never wrapping),
        pairwise for floats, as numpy does."""
        cdef char* base = self._base()
        self._region._pin(False)
        try:
            return _sum(self._typecode, base, self._length, self._stride,
                        self._length * self._itemsize >= NOGIL_BYTES)
        finally:
            self._region._unpin(False)

    def min(self):
        """The smallest item (NaN if any item is NaN). ValueError if empty."""
        return self._extreme(False)

    def max(self):
        """The largest item (NaN if any item is NaN). ValueError if empty."""
        return self._extreme(True)

    cdef object _extreme(self, bint want_max):
        cdef char* base = self._base()
        if self._length == 0:
            raise ValueError(f"{'max' if want_max else 'min'}() of an empty array")
        self._region._pin(False)
        try:
            return _extreme(self._typecode, base, self._length, self._stride, want_max,
                            self._length * self._itemsize >= NOGIL_BYTES)
        finally:
            self._region._unpin(False)

    def toreadonly(self):
        """A read-only view of the same items."""
        self._base()
        return _array_view(self._region, self._typecode, self._offset, self._length,
                           self._stride, True)

    def freeze(self):
        """Freeze the whole region of this array: see Region.freeze()."""
        self._base()
        self._region.freeze()

    # -- atomics

    cdef int _check_atomic(self) except -1:
        cdef char tc = self._typecode
        if _is_float(tc) or self._itemsize < 4:
            raise TypeError(
                "atomic operations need an integer array of itemsize 4 or 8 "
                f"(typecodes i, I, l, L, q, Q), not '{chr(tc)}'")
        return 0

    def atomic_load(self, index):
        """Atomically read item `index`."""
        self._check_atomic()
        cdef Py_ssize_t i = self._index(index)
        cdef char* p = self._base() + i * self._stride
        if self._itemsize == 4:
            return _from_bits(self._typecode, cowbuf_load_u32(<uint32_t*>p))
        return _from_bits(self._typecode, cowbuf_load_u64(<uint64_t*>p))

    def atomic_store(self, index, value):
        """Atomically set item `index` to `value`."""
        cdef _Value v
        self._check_atomic()
        self._check_writable()
        cdef Py_ssize_t i = self._index(index)
        _convert(self._typecode, value, &v)
        self._check_writable()
        cdef char* p = self._base() + i * self._stride
        if self._itemsize == 4:
            cowbuf_store_u32(<uint32_t*>p, <uint32_t>v.u)
        else:
            cowbuf_store_u64(<uint64_t*>p, v.u)

    def atomic_add(self, index, value):
        """Atomically add `value` to item `index` and return the new value. The sum
        wraps around like C (and numpy) integers; for unsigned typecodes `value` may
        be negative."""
        self._check_atomic()
        self._check_writable()
        cdef Py_ssize_t i = self._index(index)
        cdef uint64_t delta = _delta_bits(self._typecode, value)
        self._check_writable()
        cdef char* p = self._base() + i * self._stride
        if self._itemsize == 4:
            return _from_bits(self._typecode, cowbuf_add_fetch_u32(<uint32_t*>p, <uint32_t>delta))
        return _from_bits(self._typecode, cowbuf_add_fetch_u64(<uint64_t*>p, delta))

    def atomic_cas(self, index, expected, desired):
        """Atomically set item `index` to `desired` if it equals `expected`; return
        whether it did."""
        cdef _Value e, d
        cdef uint32_t e32
        cdef uint64_t e64
        self._check_atomic()
        self._check_writable()
        cdef Py_ssize_t i = self._index(index)
        _convert(self._typecode, expected, &e)
        _convert(self._typecode, desired, &d)
        self._check_writable()
        cdef char* p = self._base() + i * self._stride
        if self._itemsize == 4:
            e32 = <uint32_t>e.u
            return bool(cowbuf_cas_u32(<uint32_t*>p, &e32, <uint32_t>d.u))
        e64 = e.u
        return bool(cowbuf_cas_u64(<uint64_t*>p, &e64, d.u))

    def atomic_add_at(self, indices, values):
        """Atomically add values[k] (or one scalar `values`) to item indices[k] for
        every k, in C without the GIL: a histogram or scatter-add that several
        processes can build at once, like numpy.add.at. `indices` and `values` are
        integer buffers (numpy arrays, Arrays, memoryviews) or sequences; negative
        indices count from the end. Every index and value is checked before any add
        is applied (IndexError, OverflowError)."""
        cdef _IntSource idx, vals = None
        cdef uint64_t scalar = 0
        cdef Py_ssize_t n, bad_at = -1, skipped = 0
        cdef int bad_kind = 0
        self._check_atomic()
        self._check_writable()
        # The items this call adds to: indices or values read in place from there would
        # change under the adds, so they are copied first (as numpy.add.at does).
        cdef const char* first = self._base()
        cdef const char* last = first + (self._length - 1) * self._stride
        cdef const char* lo = first if self._stride > 0 else last
        cdef const char* hi = (last if self._stride > 0 else first) + self._itemsize
        if self._length == 0:
            hi = lo
        idx = _int_source(indices, "indices", 0, lo, hi)
        n = idx.buf.n
        if PyLong_Check(values) or (PyIndex_Check(values) and (
                not PyObject_CheckBuffer(values) or _is_scalar_buffer(values))):
            scalar = _delta_bits(self._typecode, values)
        else:
            vals = _int_source(values, "values", self._typecode, lo, hi)
            if vals.buf.n != n:
                raise ValueError(f"{vals.buf.n} values for {n} indices")
        self._check_writable()  # buffers and conversions may run Python code
        cdef char* base = self._base()
        cdef _IntBuf* vbuf = &vals.buf if vals is not None else NULL
        cdef bint big = n >= 4096
        cdef bint unsigned_target = _is_unsigned(self._typecode)
        self._region._pin(True)
        try:
            if big:
                with nogil:
                    bad_at = _add_at(base, self._stride, self._length, self._itemsize,
                                     unsigned_target, &idx.buf, vbuf, scalar, &bad_kind,
                                     &skipped)
            else:
                bad_at = _add_at(base, self._stride, self._length, self._itemsize,
                                 unsigned_target, &idx.buf, vbuf, scalar, &bad_kind, &skipped)
        finally:
            self._region._unpin(True)
        if bad_at >= 0:
            if bad_kind == 1:
                raise IndexError(
                    f"indices[{bad_at}] = {_int_repr(&idx.buf, bad_at)} is out of range "
                    f"for an array of length {self._length}; nothing was added")
            raise _range_error(self._typecode, _int_repr(vbuf, bad_at))
        if skipped:
            raise RuntimeError(
                f"{skipped} indices went out of range while atomic_add_at ran (the index "
                "buffer was changed concurrently); those adds were skipped")

    # -- buffer protocol

    def __getbuffer__(self, Py_buffer* view, int flags):
        cdef char* base = self._base()
        cdef bint readonly = self._is_readonly()
        cdef bint contiguous = self._stride == self._itemsize or self._length <= 1
        if readonly and flags & PyBUF_WRITABLE:
            raise BufferError("the array is read-only")
        if not contiguous:
            if (flags & PyBUF_STRIDES) != PyBUF_STRIDES:
                raise BufferError("the array is not contiguous: its buffer needs strides")
            if ((flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS
                    or (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS
                    or (flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS):
                raise BufferError("the array is not contiguous")
        view.buf = base
        view.obj = self
        view.len = self._length * self._itemsize
        view.readonly = readonly
        view.itemsize = self._itemsize
        view.format = <char*>_format(self._typecode) if flags & PyBUF_FORMAT else NULL
        view.ndim = 1
        view.shape = &self._length if flags & PyBUF_ND else NULL
        view.strides = &self._stride if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        self._region._exports += 1
        if not readonly:
            self._region._writable_exports += 1
            self._region._mapping.writable_exports += 1

    def __releasebuffer__(self, Py_buffer* view):
        self._region._exports -= 1
        if not view.readonly:
            self._region._writable_exports -= 1
            self._region._mapping.writable_exports -= 1

    def __reduce_ex__(self, protocol):
        # By value for plain pickle and cloudpickle; cowbuf._sharing registers a
        # by-reference reducer with multiprocessing's pickler.
        self._base()
        if protocol >= 5 and (self._stride == self._itemsize or self._length <= 1):
            data = PickleBuffer(self)
        else:
            data = self.tobytes()
        return (_array_from_bytes,
                (chr(self._typecode), data, self._region.frozen, self._readonly))

    def __repr__(self):
        tc = chr(self._typecode)
        if self._region._addr == NULL:
            return f"<cowbuf.Array '{tc}' closed>"
        n = self._length
        if n <= 8:
            items = repr(self.tolist())
        else:
            head = ", ".join(map(repr, self[:3].tolist()))
            tail = ", ".join(map(repr, self[n - 3:].tolist()))
            items = f"[{head}, ..., {tail}]"
        flags = " readonly" if self._is_readonly() else ""
        return f"<cowbuf.Array '{tc}' length={n}{flags} {items}>"


@cython.final
cdef class _ArrayIterator:
    cdef:
        # Keeps the memory mapped; checked on every step, as it may be closed.
        Region _region
        char _typecode
        Py_ssize_t _offset
        Py_ssize_t _stride
        Py_ssize_t _length
        Py_ssize_t _index

    def __cinit__(self):
        self._region = _NO_REGION

    def __iter__(self):
        return self

    def __next__(self):
        cdef char* addr = self._region._addr
        cdef Py_ssize_t i = self._index
        if i >= self._length:
            raise StopIteration
        if addr == NULL:
            raise ValueError("operation on a closed region")
        self._index = i + 1
        return _load(self._typecode, addr + self._offset + i * self._stride)

    def __length_hint__(self):
        return self._length - self._index


cdef inline object _from_bits(char tc, uint64_t bits):
    if tc == c'i':
        return <int>(<uint32_t>bits)
    if tc == c'I':
        return <uint32_t>bits
    if _is_unsigned(tc):
        return PyLong_FromUnsignedLongLong(bits)
    return PyLong_FromLongLong(<long long>bits)


cdef inline uint64_t _delta_bits(char tc, object value) except? 0xffffffffffffffff:
    """An addend for atomic adds on typecode `tc`, as two's-complement bits: the
    element's range, or for unsigned types anything from -2**(bits-1) up."""
    cdef int overflow = 0
    cdef long long v
    if PyLong_CheckExact(value):
        # the common case in C: every int64 is a valid addend to an 8-byte element
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow and (_itemsize(tc) == 8 or (
                v >= INT_MIN and v <= (<long long>UINT_MAX if tc == c'I' else INT_MAX))):
            return <uint64_t>v
    return _delta_bits_slow(tc, value)


cdef uint64_t _delta_bits_slow(char tc, object value) except? 0xffffffffffffffff:
    number = value if PyLong_CheckExact(value) else PyNumber_Index(value)
    # Python ints: in C `1 << 63` (or 1 << 31 on an int) overflows
    cdef object one = 1
    bits = 8 * _itemsize(tc)
    low = -(one << (bits - 1))
    high = (one << bits) - 1 if _is_unsigned(tc) else (one << (bits - 1)) - 1
    if number < low or number > high:
        raise OverflowError(
            f"{number} is out of range for an addend to typecode '{chr(tc)}' ({low}..{high})")
    return <uint64_t>(number & 0xffffffffffffffff)


cdef inline uint64_t _int_bits(char tc, const char* p, bint* negative) noexcept:
    cdef long long s
    if _is_unsigned(tc):
        negative[0] = False
        if tc == c'B': return (<const unsigned char*>p)[0]
        if tc == c'H': return (<const unsigned short*>p)[0]
        if tc == c'I': return (<const unsigned int*>p)[0]
        if tc == c'L': return (<const unsigned long*>p)[0]
        return (<const unsigned long long*>p)[0]
    if tc == c'b': s = (<const signed char*>p)[0]
    elif tc == c'h': s = (<const short*>p)[0]
    elif tc == c'i': s = (<const int*>p)[0]
    elif tc == c'l': s = (<const long*>p)[0]
    else: s = (<const long long*>p)[0]
    negative[0] = s < 0
    return <uint64_t>s


cdef bint _equal(Array a, Array b) except -1:
    cdef char* pa = a._base()
    cdef char* pb = b._base()
    cdef Py_ssize_t i, n = a._length
    cdef char ta = a._typecode, tb = b._typecode
    cdef bint na, nb
    if n != b._length:
        return False
    if (ta == tb and not _is_float(ta) and a._stride == a._itemsize
            and b._stride == b._itemsize):
        return memcmp(pa, pb, n * a._itemsize) == 0
    for i in range(n):  # no-cython-lint: a C counter; the pointers advance
        if _is_float(ta) and _is_float(tb):
            if ((<const double*>pa)[0] if ta == c'd' else (<const float*>pa)[0]) != (
                    (<const double*>pb)[0] if tb == c'd' else (<const float*>pb)[0]):
                return False
        elif not _is_float(ta) and not _is_float(tb):
            if _int_bits(ta, pa, &na) != _int_bits(tb, pb, &nb) or na != nb:
                return False
        elif _load(ta, pa) != _load(tb, pb):
            return False
        pa += a._stride
        pb += b._stride
    return True


# -- sources of many integers (atomic_add_at) --------------------------------------

cdef struct _IntBuf:
    const char* data   # first item
    Py_ssize_t step    # bytes from one item to the next
    Py_ssize_t n       # number of items
    Py_ssize_t size    # bytes per item: 1, 2, 4 or 8
    int kind           # 1 signed, 2 unsigned, 3 addends already checked by _delta_bits


@cython.final
cdef class _IntSource:
    """Integers read in place from a buffer, or converted from a sequence."""
    cdef:
        _IntBuf buf
        # the buffer read in place, released with this object
        Py_buffer view
        bint has_view
        # the converted sequence, freed with this object
        uint64_t* owned

    def __dealloc__(self):
        if self.has_view:
            PyBuffer_Release(&self.view)
        PyMem_Free(self.owned)


cdef bint _is_scalar_buffer(object obj) except -1:
    """True for a 0-d buffer such as a numpy integer scalar: one addend, not many."""
    with memoryview(obj) as m:
        return m.ndim == 0


cdef _IntSource _int_source(object obj, str what, char addend_tc, const char* avoid_lo,
                            const char* avoid_hi):
    """Integers of `obj` for atomic_add_at; addend_tc 0 for indices. A buffer is read
    in place unless it overlaps [avoid_lo, avoid_hi): then its items are copied."""
    cdef _IntSource src = _IntSource.__new__(_IntSource)
    cdef Py_ssize_t size = 0, i, n
    cdef const char* start
    cdef const char* end
    cdef int kind
    if PyObject_CheckBuffer(obj):
        PyObject_GetBuffer(obj, &src.view, PyBUF_RECORDS_RO)
        src.has_view = True
        kind = _format_kind(src.view.format, &size)
        if kind not in (1, 2) or size != src.view.itemsize:
            raise TypeError(
                f"{what} must hold integers, not buffer format "
                f"'{_format_name(src.view.format)}'")
        if src.view.ndim == 0:
            raise TypeError(f"{what} must be one-dimensional, not a scalar buffer")
        if src.view.ndim == 1:
            src.buf.step = src.view.strides[0]
        elif PyBuffer_IsContiguous(&src.view, b'C'):
            src.buf.step = size
        else:
            raise TypeError(f"{what} must be one-dimensional or contiguous")
        src.buf.data = <const char*>src.view.buf
        src.buf.n = src.view.len // size
        src.buf.size = size
        src.buf.kind = kind
        n = src.buf.n
        if n:
            start = src.buf.data + (src.buf.step * (n - 1) if src.buf.step < 0 else 0)
            end = src.buf.data + (src.buf.step * (n - 1) if src.buf.step > 0 else 0) + size
            if start < avoid_hi and avoid_lo < end:
                src.owned = <uint64_t*>PyMem_Malloc(n * size)
                if src.owned == NULL:
                    raise MemoryError()
                for i in range(n):
                    memcpy(<char*>src.owned + i * size, src.buf.data + i * src.buf.step, size)
                src.buf.data = <const char*>src.owned
                src.buf.step = size
        return src
    if isinstance(obj, (str, bytes)):
        raise TypeError(f"{what} must be integers, not {type(obj).__name__}")
    try:
        items = obj if isinstance(obj, (list, tuple)) else list(obj)
    except TypeError:
        raise TypeError(
            f"{what} must be an integer buffer or a sequence of integers, not "
            f"{type(obj).__name__}") from None
    n = len(items)
    src.owned = <uint64_t*>PyMem_Malloc(n * sizeof(uint64_t) + 1)
    if src.owned == NULL:
        raise MemoryError()
    i = 0
    for item in items:
        if i == n:
            break
        if addend_tc:
            src.owned[i] = _delta_bits(addend_tc, item)
        else:
            src.owned[i] = <uint64_t>PyNumber_AsSsize_t(item, IndexError)
        i += 1
    if i != n:
        raise ValueError(f"{what} changed size during the conversion")
    src.buf.data = <const char*>src.owned
    src.buf.step = 8
    src.buf.n = n
    src.buf.size = 8
    src.buf.kind = 3 if addend_tc else 1
    return src


cdef inline int64_t _int_at(const _IntBuf* b, Py_ssize_t i, bint* huge) noexcept nogil:
    """Item i as int64; *huge set when it is an unsigned 64-bit value >= 2**63."""
    cdef const char* p = b.data + i * b.step
    cdef int64_t v
    if b.size == 8:
        v = (<const int64_t*>p)[0]
        huge[0] = b.kind == 2 and v < 0
        return v
    huge[0] = False
    if b.size == 4:
        return (<const int*>p)[0] if b.kind == 1 else <int64_t>(<const unsigned int*>p)[0]
    if b.size == 2:
        return (<const short*>p)[0] if b.kind == 1 else <int64_t>(<const unsigned short*>p)[0]
    return (<const signed char*>p)[0] if b.kind == 1 else <int64_t>(<const unsigned char*>p)[0]


cdef object _int_repr(const _IntBuf* b, Py_ssize_t i):
    cdef bint huge
    cdef int64_t v = _int_at(b, i, &huge)
    if huge:
        return PyLong_FromUnsignedLongLong(<uint64_t>v)
    return v


cdef Py_ssize_t _check_add_at(const _IntBuf* idx, const _IntBuf* vals, Py_ssize_t length,
                              Py_ssize_t itemsize, bint unsigned_target,
                              int* bad_kind) noexcept nogil:
    """Position of the first bad index (*bad_kind 1) or addend (*bad_kind 2), or -1."""
    cdef Py_ssize_t k
    cdef int64_t v
    cdef bint huge
    cdef int64_t low = -(<int64_t>1 << 31)
    cdef int64_t high = (<int64_t>1 << 32) - 1 if unsigned_target else (<int64_t>1 << 31) - 1
    if idx.size == 8 and idx.kind == 1 and idx.step == 8:
        k = _first_bad_index(<const int64_t*>idx.data, idx.n, length)
        if k >= 0:
            bad_kind[0] = 1
            return k
    else:
        for k in range(idx.n):
            v = _int_at(idx, k, &huge)
            if v < 0:
                v += length
            if huge or v < 0 or v >= length:
                bad_kind[0] = 1
                return k
    if vals == NULL or vals.kind == 3:
        return -1
    for k in range(vals.n):
        v = _int_at(vals, k, &huge)
        if huge:
            if not (unsigned_target and itemsize == 8):
                bad_kind[0] = 2
                return k
        elif itemsize == 4 and (v < low or v > high):
            bad_kind[0] = 2
            return k
    return -1


cdef Py_ssize_t _first_bad_index(const int64_t* p, Py_ssize_t n, Py_ssize_t length) noexcept nogil:
    """The first k with p[k] outside -length..length-1, or -1. Contiguous int64
    indices (numpy's default) are checked by blocks without a branch per item: this
    pass reads every index once more before any add, and should cost no more than
    the memory traffic."""
    cdef Py_ssize_t start, end, k
    cdef uint64_t bad
    # v in -length..length-1  <=>  v + length in 0..2*length-1, as unsigned (wrapping)
    cdef uint64_t shift = <uint64_t>length
    cdef uint64_t span = 2 * <uint64_t>length
    for start in range(0, n, 4096):
        end = min(start + 4096, n)
        bad = 0
        for k in range(start, end):
            bad |= (<uint64_t>p[k] + shift) >= span
        if bad:
            for k in range(start, end):
                if (<uint64_t>p[k] + shift) >= span:
                    return k
    return -1


cdef Py_ssize_t _add_at(char* base, Py_ssize_t stride, Py_ssize_t length, Py_ssize_t itemsize,
                        bint unsigned_target, const _IntBuf* idx, const _IntBuf* vals,
                        uint64_t scalar, int* bad_kind, Py_ssize_t* skipped) noexcept nogil:
    """Check everything, then apply: the position of the first bad item, or -1."""
    cdef Py_ssize_t bad_at = _check_add_at(idx, vals, length, itemsize, unsigned_target,
                                           bad_kind)
    if bad_at < 0:
        skipped[0] = _apply_add_at(base, stride, length, itemsize, idx, vals, scalar)
    return bad_at


cdef inline int64_t _index_at(const _IntBuf* idx, Py_ssize_t k, Py_ssize_t length) noexcept nogil:
    """indices[k] counted from the front, or -1 if out of range."""
    cdef bint huge
    cdef int64_t i
    if idx.size == 8 and idx.kind == 1:
        i = (<const int64_t*>(idx.data + k * idx.step))[0]  # numpy's default
    else:
        i = _int_at(idx, k, &huge)
        if huge:
            return -1
    if i < 0:
        i += length
    return i if <uint64_t>i < <uint64_t>length else -1


cdef Py_ssize_t _apply_add_at(char* base, Py_ssize_t stride, Py_ssize_t length,
                              Py_ssize_t itemsize, const _IntBuf* idx, const _IntBuf* vals,
                              uint64_t scalar) noexcept nogil:
    """The adds; returns how many indices were out of range on this second read (only
    if the index buffer changed under us) and were skipped rather than written."""
    cdef Py_ssize_t k, skipped = 0
    cdef int64_t i
    cdef uint64_t delta = scalar
    cdef bint huge
    cdef bint wide = itemsize == 8
    cdef const int64_t* p
    cdef uint64_t* sums = NULL
    if length <= AGGREGATE_ITEMS and length <= idx.n:
        sums = <uint64_t*>calloc(<size_t>length, sizeof(uint64_t))
    if sums != NULL:
        # Many adds to few items (a histogram): combine the adds to each item first,
        # then apply one atomic add per item touched. The result is the same, since
        # addition modulo 2**bits commutes, for a fraction of the locked instructions.
        if idx.size == 8 and idx.kind == 1 and idx.step == 8 and vals == NULL:
            p = <const int64_t*>idx.data  # contiguous int64 indices, one addend
            for k in range(idx.n):
                i = p[k]
                i += length & (i >> 63)  # negative: from the end
                if <uint64_t>i < <uint64_t>length:
                    sums[i] += delta
                else:
                    skipped += 1
        else:
            for k in range(idx.n):
                i = _index_at(idx, k, length)
                if i < 0:
                    skipped += 1
                    continue
                if vals != NULL:
                    delta = <uint64_t>_int_at(vals, k, &huge)
                sums[i] += delta
        for i in range(length):
            if sums[i]:
                if wide:
                    cowbuf_fetch_add_u64(<uint64_t*>(base + i * stride), sums[i])
                else:
                    cowbuf_add_fetch_u32(<uint32_t*>(base + i * stride), <uint32_t>sums[i])
        free(sums)
        return skipped
    for k in range(idx.n):
        i = _index_at(idx, k, length)
        if i < 0:
            skipped += 1
            continue
        if vals != NULL:
            delta = <uint64_t>_int_at(vals, k, &huge)
        if wide:
            cowbuf_fetch_add_u64(<uint64_t*>(base + i * stride), delta)
        else:
            cowbuf_add_fetch_u32(<uint32_t*>(base + i * stride), <uint32_t>delta)
    return skipped


# -- construction ------------------------------------------------------------------

cdef Py_ssize_t _length_arg(object length, Py_ssize_t itemsize) except -1:
    n = PyNumber_Index(length)
    if n < 0:
        raise ValueError(f"negative length: {n}")
    if n * itemsize > <object>(LLONG_MAX // 2):
        raise MemoryError(f"cannot map {n} items of {itemsize} bytes")
    return <Py_ssize_t>n


def array(typecode, init):
    """array(typecode, init)

    A new Array on shared memory of its own. `init` is a length (zeros), an iterable
    of numbers, or a buffer of the same element type (bytes for 'B', a numpy array,
    a memoryview, another Array), which is copied with memcpy."""
    cdef char tc = _parse_typecode(typecode)
    cdef Py_ssize_t size = _itemsize(tc)
    cdef Array result
    if PyLong_Check(init):
        return _zeros(tc, _length_arg(init, size))
    if PyObject_CheckBuffer(init):
        result = _from_buffer(tc, init)
        if result is not None:
            return result
    if PyIndex_Check(init):
        return _zeros(tc, _length_arg(init, size))
    if isinstance(init, (str, float, complex)):
        raise TypeError(
            f"init must be a length, an iterable of numbers or a buffer, not "
            f"{type(init).__name__}")
    return _from_iterable(tc, init)


cdef Array _zeros(char tc, Py_ssize_t n):
    cdef Py_ssize_t size = _itemsize(tc)
    return _array_view(_allocate(n * size, False), tc, 0, n, size, False)


cdef Array _from_buffer(char tc, object init):
    """A copy of a buffer's items; None for a 0-d buffer (a numpy scalar)."""
    cdef Py_buffer view
    cdef Py_ssize_t size = _itemsize(tc), n
    cdef Region region
    PyObject_GetBuffer(init, &view, PyBUF_RECORDS_RO)
    try:
        if view.ndim == 0:
            return None
        _check_format(tc, &view, "cannot initialize the array")
        n = view.len // size
        region = _allocate(n * size, n * size >= PAGE)
        if PyBuffer_IsContiguous(&view, b'C'):
            if n * size >= NOGIL_BYTES:
                with nogil:
                    memcpy(region._addr, view.buf, n * size)
            else:
                memcpy(region._addr, view.buf, n * size)
        else:
            PyBuffer_ToContiguous(region._addr, &view, n * size, b'C')
    finally:
        PyBuffer_Release(&view)
    return _array_view(region, tc, 0, n, size, False)


cdef Array _from_range(char tc, object init):
    """range(...) filled in C, without making ten million int objects; None if its
    numbers do not fit in 64 bits."""
    cdef Py_ssize_t size = _itemsize(tc), n, i
    cdef long long start, step
    cdef unsigned long long item
    cdef _Value v, first
    try:
        start, step = init.start, init.step
    except OverflowError:
        return None
    try:
        n = len(init)
    except OverflowError:
        raise MemoryError(f"cannot map {init!r} as '{chr(tc)}' items") from None
    n = _length_arg(n, size)  # n * size must not overflow
    if n:
        # a range is monotonic: if its ends fit the typecode, everything does
        _convert(tc, init[0], &first)
        _convert(tc, init[n - 1], &v)
        # (start fits in a long long: the first item of a float range does too)
        if _is_float(tc) and not LLONG_MIN <= init[n - 1] <= LLONG_MAX:
            return None
    cdef Region region = _allocate(n * size, n * size >= PAGE)
    cdef char* p = region._addr
    for i in range(n):
        # Unsigned arithmetic wraps (signed overflow is undefined): every item fits
        # 64 bits, so its bits come out right even when an intermediate wraps.
        item = <unsigned long long>start + <unsigned long long>i * <unsigned long long>step
        if _is_float(tc):
            v.d = <double><long long>item
        elif _is_unsigned(tc):
            v.u = item
        else:
            v.i = <long long>item
        _store(tc, p + i * size, v)
    return _array_view(region, tc, 0, n, size, False)


cdef Array _from_iterable(char tc, object init):
    cdef Py_ssize_t size = _itemsize(tc), n, count = 0
    cdef _Value v
    cdef char* p
    cdef Array result
    if type(init) is range:
        result = _from_range(tc, init)
        if result is not None:
            return result
    try:
        items = init if isinstance(init, (list, tuple)) else list(iter(init))
    except TypeError:
        raise TypeError(
            f"init must be a length, an iterable of numbers or a buffer, not "
            f"{type(init).__name__}") from None
    n = len(items)
    # The region is new and private until returned: nothing else can close it.
    cdef Region region = _allocate(n * size, n * size >= PAGE)
    p = region._addr
    for item in items:
        if count == n:
            break
        _convert(tc, item, &v)
        _store(tc, p + count * size, v)
        count += 1
    if count != n:
        raise ValueError("the sequence changed size during the conversion")
    return _array_view(region, tc, 0, n, size, False)


def _array_from_bytes(str typecode, data, bint frozen, bint readonly):
    cdef char tc = _parse_typecode(typecode)
    cdef Py_ssize_t size = _itemsize(tc)
    cdef Py_ssize_t nbytes = len(memoryview(data).cast("B"))
    if nbytes % size:
        raise ValueError(f"{nbytes} bytes is not a whole number of '{typecode}' items")
    cdef Region region = _allocate(nbytes, False)
    memoryview(region)[:] = memoryview(data).cast("B")
    if frozen:
        region.freeze()
    return _array_view(region, tc, 0, nbytes // size, size, readonly)


def _array_on(Region region not None, str typecode, Py_ssize_t offset, Py_ssize_t length,
              Py_ssize_t stride, bint readonly):
    """The Array with this geometry on `region` (used by unpickling); checked."""
    cdef char tc = _parse_typecode(typecode)
    cdef Py_ssize_t size = _itemsize(tc)
    region._check_open()
    if length < 0 or stride == 0 or stride % size or offset % size:
        raise ValueError("bad array geometry")
    if length:
        last = <object>offset + <object>(length - 1) * <object>stride
        if min(offset, last) < 0 or max(offset, last) > region._nbytes - size:
            raise ValueError("array geometry is outside its region")
    return _array_view(region, tc, offset, length, stride, readonly)


def _array_state(Array a not None):
    """(region, typecode, offset, length, stride, readonly) of an Array (pickling)."""
    a._base()
    return a._region, chr(a._typecode), a._offset, a._length, a._stride, a._readonly


# -- Counter -----------------------------------------------------------------------

cdef inline long long _counter_arg(object value) except? -1:
    cdef int overflow = 0
    cdef long long v
    if PyLong_CheckExact(value):
        # the common case, without a temporary object or an exception frame
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            return v
    return _counter_arg_slow(value)


cdef long long _counter_arg_slow(object value) except? -1:
    number = value if PyLong_CheckExact(value) else PyNumber_Index(value)
    try:
        return PyLong_AsLongLong(number)
    except OverflowError:
        raise OverflowError(
            f"{number} is out of range for a 64-bit counter (-2**63..2**63-1)") from None


cdef Counter _counter_view(Region region, Py_ssize_t offset):
    cdef Counter c = Counter.__new__(Counter)
    c._region = region
    c._offset = offset
    return c


# Plain method descriptors rather than Cython function objects: CPython calls them
# without a bound-method object in between (counters are called in hot loops).
@cython.final
@cython.binding(False)
cdef class Counter:
    """Counter(initial=0, *, padded=False)

    A signed 64-bit integer in shared memory with sequentially consistent atomic
    operations, exact across threads and processes (forked, or sent through
    multiprocessing). Arithmetic wraps around at 2**63 like C and numpy integers.

    Counters are cheap: many share one page. padded=True gives a counter a cache
    line of its own, so that hot counters updated by different processes do not slow
    each other down (false sharing). Region.counter(offset) places one in an
    existing region. Arguments are positional-only: these methods sit in hot loops,
    and CPython calls them faster that way."""

    def __cinit__(self):
        self._region = _NO_REGION

    def __init__(self, initial=0, *, bint padded=False):
        if self._region is not _NO_REGION:
            raise TypeError("Counter.__init__() may only be called once")
        cdef long long value = _counter_arg(initial)
        self._region = _carve(64, 64) if padded else _carve(8, 8)
        self._offset = 0
        cowbuf_store_u64(<uint64_t*>self._region._addr, <uint64_t>value)

    cdef inline long long* _ptr(self) except NULL:
        cdef char* addr = self._region._addr
        if addr == NULL:
            raise ValueError("operation on a closed region")
        return <long long*>(addr + self._offset)

    cdef inline long long* _wptr(self) except NULL:
        cdef Region r = self._region
        if r._addr == NULL or r._frozen or r._mapping.readonly:
            r._check_writable()  # raises
        return <long long*>(r._addr + self._offset)

    def load(self):
        """The current value."""
        return <long long>cowbuf_load_u64(<uint64_t*>self._ptr())

    @property
    def value(self):
        """The current value (an atomic load)."""
        return <long long>cowbuf_load_u64(<uint64_t*>self._ptr())

    def store(self, value, /):
        """Set the value."""
        cdef long long v = _counter_arg(value)
        cowbuf_store_u64(<uint64_t*>self._wptr(), <uint64_t>v)

    def add(self, n=1, /):
        """Add `n` and return the new value."""
        cdef long long d = _counter_arg(n)
        return <long long>cowbuf_add_fetch_u64(<uint64_t*>self._wptr(), <uint64_t>d)

    def sub(self, n=1, /):
        """Subtract `n` and return the new value."""
        cdef long long d = _counter_arg(n)
        return <long long>cowbuf_add_fetch_u64(<uint64_t*>self._wptr(), 0 - <uint64_t>d)

    def fetch_add(self, n, /):
        """Add `n` and return the value before the add (claims work: each caller
        gets a distinct range)."""
        cdef long long d = _counter_arg(n)
        return <long long>cowbuf_fetch_add_u64(<uint64_t*>self._wptr(), <uint64_t>d)

    def exchange(self, value, /):
        """Set the value and return the previous one."""
        cdef long long v = _counter_arg(value)
        return <long long>cowbuf_exchange_u64(<uint64_t*>self._wptr(), <uint64_t>v)

    def compare_exchange(self, expected, desired, /):
        """Set the value to `desired` if it equals `expected`; return whether it did."""
        cdef uint64_t e = <uint64_t>_counter_arg(expected)
        cdef long long d = _counter_arg(desired)
        return bool(cowbuf_cas_u64(<uint64_t*>self._wptr(), &e, <uint64_t>d))

    def __int__(self):
        return <long long>cowbuf_load_u64(<uint64_t*>self._ptr())

    @property
    def region(self):
        """The Region holding the counter."""
        return self._region

    def __reduce_ex__(self, protocol):
        # by value, like Region and Array; see cowbuf._sharing for by reference
        return (_counter_from_value, (self.load(), self._region._nbytes == 64,
                                      self._region.frozen))

    def __repr__(self):
        if self._region._addr == NULL:
            return "<cowbuf.Counter closed>"
        return f"cowbuf.Counter({self.load()})"


def _counter_from_value(value, bint padded, bint frozen):
    cdef Counter c = Counter(value, padded=padded)
    if frozen:
        c._region.freeze()
    return c


def _counter_on(Region region not None, Py_ssize_t offset):
    return region.counter(offset)


def _counter_state(Counter c not None):
    """(region, offset) of a Counter (pickling)."""
    c._ptr()
    return c._region, c._offset
