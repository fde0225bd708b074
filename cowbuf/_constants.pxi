# Sizes and thresholds of the core.

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
