# Views of an Array and writes through them: shapes, rows, indexing by tuples of
# integers and slices, reshaping, slice assignment (one dimension or more), nested
# lists.
#
# An Array keeps its shape and strides (one byte stride per dimension) in itself;
# every view is made from an existing one by basic indexing or reshaping, so its
# items are always inside its region (and _array_on checks those that arrive).


cdef Array _nd_view(Region region, char tc, Py_ssize_t offset, int ndim,
                    const Py_ssize_t* shape, const Py_ssize_t* strides, bint readonly):
    cdef Array view = _array_view(region, tc, offset, shape[0], strides[0], readonly)
    view._ndim = ndim
    memcpy(view._shape, shape, ndim * sizeof(Py_ssize_t))
    memcpy(view._strides, strides, ndim * sizeof(Py_ssize_t))
    return view


cdef Array _row(Array a, Py_ssize_t i):
    """Row i of an array of more than one dimension (0 <= i < len(a))."""
    a._base()
    return _nd_view(a._region, a._typecode, a._offset + i * a._stride, a._ndim - 1,
                    a._shape + 1, a._strides + 1, a._readonly)


cdef Py_ssize_t _nitems_of(Array a) noexcept:
    cdef Py_ssize_t n = 1
    cdef int d
    for d in range(a._ndim):
        n *= a._shape[d]
    return n


cdef tuple _shape_tuple(Array a):
    return tuple([a._shape[d] for d in range(a._ndim)])


cdef bint _c_contiguous(Array a) noexcept:
    """The items are one block in C order (as CPython decides: the step of an axis
    of extent 0 or 1 does not matter)."""
    cdef Py_ssize_t step = a._itemsize
    cdef int d
    if _nitems_of(a) == 0:
        return True
    for d in range(a._ndim - 1, -1, -1):
        if a._shape[d] > 1 and a._strides[d] != step:
            return False
        step *= a._shape[d]
    return True


cdef bint _f_contiguous(Array a) noexcept:
    cdef Py_ssize_t step = a._itemsize
    cdef int d
    if _nitems_of(a) == 0:
        return True
    for d in range(a._ndim):
        if a._shape[d] > 1 and a._strides[d] != step:
            return False
        step *= a._shape[d]
    return True


cdef int _parse_shape(object shape, Py_ssize_t count, Py_ssize_t itemsize,
                      Py_ssize_t* dims) except -1:
    """Read a shape (an int, or a sequence of ints, one of which may be -1 for as many
    as the items make) into dims; return its number of dimensions. `count` is the
    number of items it must hold, or -1 when there are no items to go by."""
    cdef int ndim, d, unknown = -1
    if PyIndex_Check(shape):
        extents = (shape,)
    else:
        try:
            extents = tuple(shape)
        except TypeError:
            raise TypeError(
                f"shape must be an int or a tuple of ints, not {type(shape).__name__}"
            ) from None
    ndim = len(extents)
    if ndim == 0:
        raise ValueError("a shape needs at least one dimension")
    if ndim > MAX_NDIM:
        raise ValueError(f"an Array has at most {MAX_NDIM} dimensions, not {ndim}")
    limit = LLONG_MAX // 2 // itemsize  # as many items as can be mapped
    known = 1
    for d in range(ndim):
        n = PyNumber_Index(extents[d])
        if n == -1 and unknown < 0:
            unknown = d
            continue
        if n < 0:
            raise ValueError(f"bad dimension {n} in shape {extents} (only one may be -1)")
        if n > limit:
            raise MemoryError(f"cannot map an array of shape {extents}")
        dims[d] = n
        known *= n
    if unknown >= 0:
        if count < 0:
            raise ValueError(f"shape {extents} has a dimension of -1, but no items to count")
        if known == 0 or count % known:
            raise ValueError(f"cannot reshape {count} items into shape {extents}")
        dims[unknown] = count // known
    elif count >= 0 and known != count:
        raise ValueError(f"cannot reshape {count} items into shape {extents}")
    elif known > limit:
        raise MemoryError(f"cannot map an array of shape {extents}")
    return ndim


cdef Array _c_order_view(Array a, int ndim, const Py_ssize_t* dims):
    """The items of a C-contiguous array `a` as the shape dims (of as many items)."""
    cdef Py_ssize_t strides[MAX_NDIM]
    cdef int d
    strides[ndim - 1] = a._itemsize
    for d in range(ndim - 2, -1, -1):
        strides[d] = strides[d + 1] * dims[d + 1]
    return _nd_view(a._region, a._typecode, a._offset, ndim, dims, strides, a._readonly)


cdef Array _reshape(Array a, object shape):
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef int ndim
    a._base()
    if not _c_contiguous(a):
        raise ValueError(
            "reshape() needs a C-contiguous array, not a view with steps: copy it "
            "first with cowbuf.array(a.typecode, a)")
    ndim = _parse_shape(shape, _nitems_of(a), a._itemsize, dims)
    a._base()  # __index__ may have closed the region
    return _c_order_view(a, ndim, dims)


cdef object _subscript(Array a, tuple key, Py_ssize_t* delta):
    """a[key] for a tuple of integers and slices, one per dimension from the first:
    the view it selects, or None for a single item, whose byte offset from item 0 of
    `a` is then in *delta."""
    cdef Py_ssize_t shape[MAX_NDIM]
    cdef Py_ssize_t strides[MAX_NDIM]
    cdef Py_ssize_t offset = 0, start, stop, step, n, i
    cdef int d = 0, out = 0
    if len(key) == a._ndim:
        # a[i, j]: one exact int per dimension, read as a[i] reads its int
        for d in range(a._ndim):
            k = key[d]
            if not PyLong_CheckExact(k):
                break
            i = cowbuf_exact_index(k)
            if i < 0:
                i += a._shape[d]
            if <size_t>i >= <size_t>a._shape[d]:
                raise IndexError("array index out of range")
            offset += i * a._strides[d]
        else:
            a._base()
            delta[0] = offset
            return None
        offset = 0
        d = 0
    if len(key) > a._ndim:
        raise IndexError(
            f"too many indices for an array of {a._ndim} dimension"
            f"{'s' if a._ndim > 1 else ''}: {len(key)}")
    for k in key:
        if PySlice_Check(k):
            PySlice_Unpack(k, &start, &stop, &step)
            n = PySlice_AdjustIndices(a._shape[d], &start, &stop, step)
            shape[out] = n
            # (a step of a slice of one item may be anything: never multiplied)
            strides[out] = a._strides[d] * step if n > 1 else a._strides[d]
            if n:
                offset += start * a._strides[d]
            out += 1
        elif PyIndex_Check(k):
            i = PyNumber_AsSsize_t(k, IndexError)
            if i < 0:
                i += a._shape[d]
            if i < 0 or i >= a._shape[d]:
                raise IndexError("array index out of range")
            offset += i * a._strides[d]
        else:
            raise TypeError(
                f"array indices must be integers, slices or tuples of them, not "
                f"{type(k).__name__}")
        d += 1
    while d < a._ndim:
        shape[out] = a._shape[d]
        strides[out] = a._strides[d]
        out += 1
        d += 1
    a._base()  # __index__ may have closed the region
    if out == 0:
        delta[0] = offset
        return None
    return _nd_view(a._region, a._typecode, a._offset + offset, out, shape, strides,
                    a._readonly)


cdef list _tolist_nd(char tc, const char* p, int ndim, const Py_ssize_t* shape,
                     const Py_ssize_t* strides):
    cdef Py_ssize_t i
    if ndim == 1:
        return [_load(tc, p + i * strides[0]) for i in range(shape[0])]
    return [_tolist_nd(tc, p + i * strides[0], ndim - 1, shape + 1, strides + 1)
            for i in range(shape[0])]


cdef int _assign_view(Array view, object value) except -1:
    """view[...] = value for a view that a slice, a row or a tuple selected: from a
    buffer of the same format and shape, or from (nested) sequences of that shape."""
    cdef Py_buffer src
    cdef _Strided s
    cdef char* tmp = NULL
    cdef _Mapping keep
    cdef Py_ssize_t n = _nitems_of(view) * view._itemsize
    if view._ndim == 1:
        return _assign_slice(view, slice(None), value)
    if not PyObject_CheckBuffer(value) and isinstance(value, (str, int, float)):
        raise TypeError(
            f"can only assign an iterable or a buffer to an array slice, not "
            f"{type(value).__name__} (use fill() to set every item to one value)")
    # staged through a private copy: a failed conversion changes nothing, and a
    # buffer may overlap the view
    tmp = <char*>PyMem_Malloc(n + 1)
    if tmp == NULL:
        raise MemoryError()
    try:
        if PyObject_CheckBuffer(value):
            _get_items(value, &src, view._typecode, "cannot assign to the array slice")
            try:
                if (src.ndim != view._ndim
                        or memcmp(src.shape, view._shape, view._ndim * sizeof(Py_ssize_t))):
                    raise ValueError(
                        f"cannot assign an array of shape "
                        f"{tuple([src.shape[d] for d in range(src.ndim)])} to an array "
                        f"slice of shape {_shape_tuple(view)}")
                PyBuffer_ToContiguous(tmp, &src, n, b'C')
            finally:
                PyBuffer_Release(&src)
        else:
            _flatten(view._typecode, value, view._ndim, view._shape, tmp)
        view._check_writable()  # conversions and buffers may run Python code
        _strided(view, &s)
        # pinned against a freeze, and mapped even if another thread closes it
        keep = view._region._live()
        view._region._acquire(_PIN | _WRITE)
        try:
            if n >= NOGIL_BYTES:
                with nogil:
                    _scatter_lines(&s, tmp)
            else:
                _scatter_lines(&s, tmp)
        finally:
            view._region._release(_PIN | _WRITE)
    finally:
        PyMem_Free(tmp)
    return 0


cdef Py_ssize_t _flatten(char tc, object value, int ndim, const Py_ssize_t* shape,
                         char* out) except -1:
    """Convert nested sequences of the given shape into contiguous items at out, in C
    order; return the bytes written."""
    cdef Py_ssize_t size = _itemsize(tc), written = 0
    cdef _Value v
    if isinstance(value, (str, bytes, int, float)):
        raise TypeError(
            f"cannot assign {type(value).__name__} where a sequence of {shape[0]} items "
            "is due")
    try:
        items = tuple(value)  # a snapshot: conversions may change a list
    except TypeError:
        raise TypeError(
            f"cannot assign {type(value).__name__} where a sequence of {shape[0]} items "
            "is due") from None
    if len(items) != shape[0]:
        raise ValueError(f"cannot assign {len(items)} items to an array slice of "
                         f"{shape[0]} items")
    for item in items:
        if ndim == 1:
            _convert(tc, item, &v)
            _store(tc, out + written, v)
            written += size
        else:
            written += _flatten(tc, item, ndim - 1, shape + 1, out + written)
    return written


cdef int _assign_slice(Array a, object key, object value) except -1:
    """a[key] = value for a slice of a one-dimensional array: from a buffer of the
    same format and length, or an iterable of as many numbers."""
    cdef Py_ssize_t start, stop, step, n, count
    cdef Py_ssize_t size = a._itemsize
    cdef char tc = a._typecode
    cdef Py_buffer src
    cdef char* tmp = NULL
    cdef char* dst
    cdef _Value v
    cdef bint big
    cdef _Mapping keep
    PySlice_Unpack(key, &start, &stop, &step)
    n = PySlice_AdjustIndices(a._length, &start, &stop, step)
    cdef Py_ssize_t dst_stride = a._stride * step if n > 1 else size
    cdef Py_ssize_t dst_offset = start * a._stride if n else 0
    if PyObject_CheckBuffer(value):
        _get_items(value, &src, tc, "cannot assign to the array slice")
        try:
            count = src.len // size
            if count != n:
                raise ValueError(
                    f"cannot assign {count} items to an array slice of {n} items")
            a._check_writable()
            dst = a._base() + dst_offset
            big = n * size >= NOGIL_BYTES
            # pinned against a freeze, and mapped even if another thread closes it
            keep = a._region._live()
            a._region._acquire(_PIN | _WRITE)
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
                a._region._release(_PIN | _WRITE)
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
        a._check_writable()  # the conversions ran Python code
        _scatter(a._base() + dst_offset, tmp, n, dst_stride, size)
    finally:
        PyMem_Free(tmp)
    return 0
