# The engine of Array.atomic_add_at: integers read from buffers or sequences, checked
# in full, then added atomically without the GIL.

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


cdef int _atomic_add_at(Array a, object indices, object values) except -1:
    """Array.atomic_add_at: check every index and value, then add without the GIL."""
    cdef _IntSource idx, vals = None
    cdef uint64_t scalar = 0
    cdef Py_ssize_t n, bad_at = -1, skipped = 0
    cdef int bad_kind = 0
    a._check_atomic()
    a._check_writable()
    # The items this call adds to: indices or values read in place from there would
    # change under the adds, so they are copied first (as numpy.add.at does).
    cdef const char* first = a._base()
    cdef const char* last = first + (a._length - 1) * a._stride
    cdef const char* lo = first if a._stride > 0 else last
    cdef const char* hi = (last if a._stride > 0 else first) + a._itemsize
    if a._length == 0:
        hi = lo
    idx = _int_source(indices, "indices", 0, lo, hi)
    n = idx.buf.n
    if PyLong_Check(values) or (PyIndex_Check(values) and (
            not PyObject_CheckBuffer(values) or _is_scalar_buffer(values))):
        scalar = _delta_bits(a._typecode, values)
    else:
        vals = _int_source(values, "values", a._typecode, lo, hi)
        if vals.buf.n != n:
            raise ValueError(f"{vals.buf.n} values for {n} indices")
    a._check_writable()  # buffers and conversions may run Python code
    cdef char* base = a._base()
    cdef _IntBuf* vbuf = &vals.buf if vals is not None else NULL
    cdef bint big = n >= 4096
    cdef bint unsigned_target = _is_unsigned(a._typecode)
    # pinned against a freeze, and mapped even if another thread closes the region
    cdef _Mapping keep = a._region._live()
    a._region._acquire(_PIN | _WRITE)
    try:
        if big:
            with nogil:
                bad_at = _add_at(base, a._stride, a._length, a._itemsize,
                                 unsigned_target, &idx.buf, vbuf, scalar, &bad_kind,
                                 &skipped)
        else:
            bad_at = _add_at(base, a._stride, a._length, a._itemsize,
                             unsigned_target, &idx.buf, vbuf, scalar, &bad_kind, &skipped)
    finally:
        a._region._release(_PIN | _WRITE)
    if bad_at >= 0:
        if bad_kind == 1:
            raise IndexError(
                f"indices[{bad_at}] = {_int_repr(&idx.buf, bad_at)} is out of range "
                f"for an array of length {a._length}; nothing was added")
        raise _range_error(a._typecode, _int_repr(vbuf, bad_at))
    if skipped:
        raise RuntimeError(
            f"{skipped} indices went out of range while atomic_add_at ran (the index "
            "buffer was changed concurrently); those adds were skipped")
    return 0
