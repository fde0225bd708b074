# What an Array does as array.array does: comparison and hashing, count and index,
# reverse and byteswap, buffer_info and tofile, a + b and n * a, a repr that reads
# back. The loops are in _kernels.pxi.

import array as _pyarray

from cpython.object cimport Py_EQ, Py_GE, Py_GT, Py_LE, Py_LT, Py_NE, PyObject_RichCompare
from cpython.pyport cimport PY_SSIZE_T_MAX, PY_SSIZE_T_MIN

# array.array.tofile() writes in blocks of this many bytes; so does Array.tofile().
cdef Py_ssize_t FILE_BLOCK = 64 * 1024
# Arrays of up to this many items have a repr that evaluates to an equal array.
cdef Py_ssize_t REPR_ITEMS = 64


cdef object _number(char tc, const char* p):
    """The item of typecode tc at p as a Python number; p need not be aligned."""
    cdef _Num x
    _read_num(tc, p, &x)
    if x.real:
        return x.d
    if x.negative:
        return PyLong_FromLongLong(<long long>x.bits)
    return PyLong_FromUnsignedLongLong(x.bits)


# -- comparison ----------------------------------------------------------------------

cdef object _compare(Array a, object other, int op):
    """a <op> other, as array.array compares: with another Array, an array.array or
    a memoryview of numbers, item by item (NaN equals nothing); the orderings are
    lexicographic and need one dimension. NotImplemented for anything else."""
    cdef _Strided sa, sb
    cdef Py_buffer view
    cdef bint has_view = False
    cdef Py_ssize_t n, k
    cdef int last
    cdef _Mapping keep_a, keep_b = None
    if isinstance(other, Array):
        _strided(<Array>other, &sb)
        keep_b = (<Array>other)._region._live()  # mapped while the GIL is dropped
    elif isinstance(other, (_pyarray.array, memoryview)):
        try:
            PyObject_GetBuffer(other, &view, PyBUF_RECORDS_RO)
        except ValueError:
            if isinstance(other, memoryview):  # released: its own == answers
                return NotImplemented
            raise
        has_view = True
    else:
        return NotImplemented
    try:
        if has_view and not _strided_of_buffer(&view, &sb):
            return NotImplemented  # not numbers of a typecode (memoryview's == may know)
        _strided(a, &sa)
        keep_a = a._region._live()
        if op == Py_EQ or op == Py_NE:
            if sa.ndim != sb.ndim or memcmp(sa.shape, sb.shape, sa.ndim * sizeof(Py_ssize_t)):
                return op == Py_NE
            last = sa.ndim - 1
            if _nitems(&sa) * a._itemsize >= NOGIL_BYTES:
                with nogil:
                    k = _first_difference(&sa, &sb, sa.shape[last])
            else:
                k = _first_difference(&sa, &sb, sa.shape[last])
            return (k < 0) == (op == Py_EQ)
        if sa.ndim != 1 or sb.ndim != 1:
            raise TypeError(
                f"arrays are ordered item by item in one dimension, not with shapes "
                f"{_shape_tuple(a)} and {tuple([sb.shape[d] for d in range(sb.ndim)])}")
        n = min(sa.shape[0], sb.shape[0])
        if n * a._itemsize >= NOGIL_BYTES:
            with nogil:
                k = _first_difference(&sa, &sb, n)
        else:
            k = _first_difference(&sa, &sb, n)
        if k < 0:  # one is the start of the other
            return PyObject_RichCompare(sa.shape[0], sb.shape[0], op)
        return PyObject_RichCompare(_number(sa.tc, sa.buf + k * sa.strides[0]),
                                    _number(sb.tc, sb.buf + k * sb.strides[0]), op)
    finally:
        if has_view:
            PyBuffer_Release(&view)


cdef Py_hash_t _hash(Array a) except -1:
    cdef _Strided s
    cdef uint64_t h
    cdef int d
    if a._hash != -1:
        return a._hash
    if not a._region._live().readonly:
        raise TypeError(
            "unhashable type: 'Array' (its items may change: a frozen Array hashes by "
            "value)")
    _strided(a, &s)
    cdef _Mapping keep = a._region._live()  # mapped while the GIL is dropped
    if _nitems(&s) * a._itemsize >= NOGIL_BYTES:
        with nogil:
            h = _hash_lines(&s)
    else:
        h = _hash_lines(&s)
    for d in range(a._ndim):  # equal arrays have the same shape
        h = _mix64(h ^ <uint64_t>a._shape[d])
    a._hash = <Py_hash_t>h if <Py_hash_t>h != -1 else -2
    return a._hash


# -- search ----------------------------------------------------------------------------

cdef Py_ssize_t _clamped(object index) except? -1:
    """A start or stop position: an integer, huge ones clamped (as list.index does)."""
    n = PyNumber_Index(index)
    if n > PY_SSIZE_T_MAX:
        return PY_SSIZE_T_MAX
    if n < PY_SSIZE_T_MIN:
        return PY_SSIZE_T_MIN
    return n


cdef int _needle(char tc, object x, _Value* v) except -1:
    """How to find x among the items of typecode tc: 1 they equal x where they equal
    v (a C comparison); 0 none can equal x; 2 x is not an int or a float: compare
    each item with Python's ==."""
    cdef double d
    if type(x) is int or type(x) is bool:
        if _is_float(tc):
            try:
                d = PyFloat_AsDouble(x)
            except OverflowError:
                return 0
            if d != x:  # exactly, as Python compares an int with a float
                return 0
            v.d = d
            return 1 if tc == c'd' or <double><float>d == d else 0
        try:
            _convert(tc, x, v)
        except OverflowError:
            return 0
        return 1
    if type(x) is float:
        d = x
        if _is_float(tc):
            v.d = d
            # NaN equals nothing; a float item equals only the doubles it holds exactly
            return 1 if d == d and (tc == c'd' or <double><float>d == d) else 0
        if not _integral(d):
            return 0
        try:
            _convert(tc, int(d), v)
        except OverflowError:
            return 0
        return 1
    return 2


cdef Py_ssize_t _search(Array a, object x, object start, object stop, bint count) except -2:
    """count(x) (count true), or index(x, start, stop): the position or -1."""
    cdef _Value v
    cdef Py_ssize_t i, first, end, found = 0
    cdef char* base
    cdef _Mapping keep
    a._check_1d("count()" if count else "index()")
    first = _clamped(start)
    end = _clamped(stop)
    a._base()  # __index__ may have closed the region
    if first < 0:
        first = max(first + a._length, 0)
    if end < 0:
        end = max(end + a._length, 0)
    end = min(end, a._length)
    if first >= end:
        return 0 if count else -1
    cdef int how = _needle(a._typecode, x, &v)
    if how == 0:
        return 0 if count else -1
    if how == 1:
        base = a._base() + first * a._stride
        keep = a._region._live()  # mapped while the GIL is dropped
        if (end - first) * a._itemsize >= NOGIL_BYTES:
            with nogil:
                i = _find(a._typecode, base, end - first, a._stride, v, count)
        else:
            i = _find(a._typecode, base, end - first, a._stride, v, count)
        return i if count or i < 0 else first + i
    # x.__eq__ may run any code, and close the region: checked at every item
    for i in range(first, end):
        if _load(a._typecode, a._base() + i * a._stride) == x:
            if not count:
                return i
            found += 1
    return found if count else -1


cdef bint _contains(Array a, object x) except -1:
    cdef Py_ssize_t i
    if a._ndim == 1:
        return _search(a, x, 0, a._length, False) >= 0
    a._base()
    for i in range(a._length):
        if _row(a, i) == x:
            return True
    return False


# -- in place --------------------------------------------------------------------------

cdef int _reverse(Array a) except -1:
    a._check_1d("reverse()")
    a._check_writable()
    cdef char* base = a._base()
    if a._length * a._itemsize < NOGIL_BYTES:
        _reverse_c(base, a._length, a._stride, a._itemsize)
        return 0
    # pinned against a freeze, and mapped even if another thread closes the region
    cdef _Mapping keep = a._region._live()
    a._region._acquire(_PIN | _WRITE)
    try:
        with nogil:
            _reverse_c(base, a._length, a._stride, a._itemsize)
    finally:
        a._region._release(_PIN | _WRITE)
    return 0


cdef int _byteswap(Array a) except -1:
    cdef _Strided s
    a._check_writable()
    _strided(a, &s)
    _coalesce(&s)
    if _nitems(&s) * a._itemsize < NOGIL_BYTES:
        _byteswap_lines(&s)
        return 0
    # pinned against a freeze, and mapped even if another thread closes the region
    cdef _Mapping keep = a._region._live()
    a._region._acquire(_PIN | _WRITE)
    try:
        with nogil:
            _byteswap_lines(&s)
    finally:
        a._region._release(_PIN | _WRITE)
    return 0


# -- memory and files ------------------------------------------------------------------

cdef tuple _buffer_info(Array a):
    cdef char* base = a._base()
    if not _c_contiguous(a):
        raise BufferError(
            "buffer_info() describes an array whose items are one block in C order, "
            "not a view with steps (memoryview(a) and numpy.asarray(a) have its strides)")
    return (<size_t>base, _nitems_of(a))


cdef int _tofile(Array a, object f) except -1:
    cdef _Strided s
    cdef Py_ssize_t size = a._itemsize, first = 0, m
    cdef Py_ssize_t per_block = FILE_BLOCK // size
    write = f.write
    a._base()
    cdef Py_ssize_t total = _nitems_of(a)
    while first < total:
        m = min(per_block, total - first)
        block = PyBytes_FromStringAndSize(NULL, m * size)
        _strided(a, &s)  # the last write may have closed the region
        _gather_range(PyBytes_AS_STRING(block), &s, first, m)
        write(block)
        first += m
    return 0


# -- new arrays ------------------------------------------------------------------------

cdef object _concat(object x, object y):
    """x + y for Arrays and array.arrays of one typecode (and rows of one shape): a
    new Array on memory of its own."""
    cdef Py_buffer vx, vy
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef int ndim
    cdef Region region
    if not (isinstance(x, (Array, _pyarray.array)) and isinstance(y, (Array, _pyarray.array))):
        return NotImplemented
    if x.typecode != y.typecode:
        raise TypeError(
            f"can only concatenate arrays of the same typecode, not '{x.typecode}' and "
            f"'{y.typecode}'")
    cdef char tc = _parse_typecode(x.typecode)
    PyObject_GetBuffer(x, &vx, PyBUF_RECORDS_RO)
    try:
        PyObject_GetBuffer(y, &vy, PyBUF_RECORDS_RO)
        try:
            ndim = vx.ndim
            if (vy.ndim != ndim or ndim > MAX_NDIM or memcmp(
                    vx.shape + 1, vy.shape + 1, (ndim - 1) * sizeof(Py_ssize_t))):
                raise ValueError(
                    f"can only concatenate arrays whose rows have one shape, not "
                    f"{tuple([vx.shape[d] for d in range(vx.ndim)])} and "
                    f"{tuple([vy.shape[d] for d in range(vy.ndim)])}")
            memcpy(dims, vx.shape, ndim * sizeof(Py_ssize_t))
            dims[0] += vy.shape[0]
            region = _allocate(vx.len + vy.len, vx.len + vy.len >= PAGE)
            _copy_out(region._addr, &vx)
            _copy_out(region._addr + vx.len, &vy)
        finally:
            PyBuffer_Release(&vy)
    finally:
        PyBuffer_Release(&vx)
    return _c_order_view(_array_view(region, tc, 0, dims[0], _itemsize(tc), False),
                         ndim, dims)


cdef int _copy_out(char* dst, Py_buffer* view) except -1:
    """The items of a buffer, in C order, at dst: without the GIL when they are one
    large block (the buffer is held, so its memory stays)."""
    if not PyBuffer_IsContiguous(view, b'C'):
        return PyBuffer_ToContiguous(dst, view, view.len, b'C')
    if view.len >= NOGIL_BYTES:
        with nogil:
            memcpy(dst, view.buf, view.len)
    else:
        memcpy(dst, view.buf, view.len)
    return 0


cdef void _repeat_c(char* dst, const _Strided* s, Py_ssize_t n,
                    Py_ssize_t nbytes) noexcept nogil:
    """n copies of the items of s, one after the other, at dst."""
    cdef Py_ssize_t done = nbytes, m
    _gather_lines(dst, s)
    while done < n * nbytes:  # doubling what is there
        m = min(done, n * nbytes - done)
        memcpy(dst + done, dst, m)
        done += m


cdef object _repeat(Array a, object times):
    """n * a: a new Array of n copies of a's items one after the other (of its rows,
    for more than one dimension)."""
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef _Strided s
    cdef Py_ssize_t n, nbytes
    cdef _Mapping keep
    if not PyIndex_Check(times):
        return NotImplemented
    n = max(PyNumber_AsSsize_t(times, OverflowError), 0)
    a._base()  # __index__ may have closed the region
    nbytes = _nitems_of(a) * a._itemsize
    if nbytes and n > (LLONG_MAX // 2) // nbytes:
        raise MemoryError(f"cannot map {n} copies of {nbytes} bytes")
    cdef Region region = _allocate(n * nbytes, n * nbytes >= PAGE)
    memcpy(dims, a._shape, a._ndim * sizeof(Py_ssize_t))
    dims[0] *= n
    if n and nbytes:
        _strided(a, &s)  # the allocation may have run a close()
        keep = a._region._live()  # mapped while the GIL is dropped
        if n * nbytes >= NOGIL_BYTES:
            with nogil:
                _repeat_c(region._addr, &s, n, nbytes)
        else:
            _repeat_c(region._addr, &s, n, nbytes)
    return _c_order_view(_array_view(region, a._typecode, 0, dims[0], a._itemsize, False),
                         a._ndim, dims)


# -- repr -------------------------------------------------------------------------------

cdef str _item_repr(object x):
    # so that eval() reads the float back: repr(nan) and repr(inf) are not expressions
    cdef str text = repr(x)
    if text == "nan" or text == "inf" or text == "-inf":
        return f"float('{text}')"
    return text


cdef list _flat_items(Array a, Py_ssize_t first, Py_ssize_t count):
    """Items first .. first + count - 1 of `a`, in C order."""
    cdef _Strided s
    cdef Py_ssize_t i
    block = PyBytes_FromStringAndSize(NULL, count * a._itemsize)
    cdef char* p = PyBytes_AS_STRING(block)
    _strided(a, &s)  # the allocation may have run a close()
    _gather_range(p, &s, first, count)
    return [_load(a._typecode, p + i * a._itemsize) for i in range(count)]


cdef str _repr(Array a):
    tc = chr(a._typecode)
    if a._region._addr == NULL:
        return f"<cowbuf.Array '{tc}' closed>"
    cdef Py_ssize_t n = _nitems_of(a)
    shape = _shape_tuple(a)
    if n <= REPR_ITEMS:
        items = ", ".join([_item_repr(x) for x in _flat_items(a, 0, n)])
        if a._ndim == 1:
            return f"cowbuf.array('{tc}', [{items}])"
        return f"cowbuf.array('{tc}', [{items}], shape={shape})"
    head = ", ".join([_item_repr(x) for x in _flat_items(a, 0, 3)])
    tail = ", ".join([_item_repr(x) for x in _flat_items(a, n - 3, 3)])
    geometry = f"length={n}" if a._ndim == 1 else f"shape={shape}"
    flags = " readonly" if a._is_readonly() else ""
    return f"<cowbuf.Array '{tc}' {geometry}{flags} [{head}, ..., {tail}]>"
