# cowbuf.array(): new Arrays on memory of their own, from lengths, ranges, iterables
# and buffers.

from cpython.buffer cimport PyBUF_SIMPLE

cdef Py_ssize_t _length_arg(object length, Py_ssize_t itemsize) except -1:
    n = PyNumber_Index(length)
    if n < 0:
        raise ValueError(f"negative length: {n}")
    if n * itemsize > <object>(LLONG_MAX // 2):
        raise MemoryError(f"cannot map {n} items of {itemsize} bytes")
    return <Py_ssize_t>n


# The default of array()'s init: no items (array.array('q') is empty; None is refused
# as it is there).
cdef object _NO_INIT = object()


def array(typecode, init=_NO_INIT, *, shape=None):
    """array(typecode, init=(), *, shape=None)

    A new Array on shared memory of its own. `init` is a length (zeros), an iterable
    of numbers, bytes or a bytearray (machine values, as array.array reads them), an
    array.array or Array of another typecode (converted item by item), or a buffer
    of the same element type (a numpy array, a memoryview, an Array), which is
    copied with memcpy and keeps its shape. With `shape` (an int or a tuple of ints,
    one of which may be -1) the items take that shape, in C order; without `init`,
    they are zeros."""
    cdef char tc = _parse_typecode(typecode)
    cdef Py_ssize_t size = _itemsize(tc)
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef Py_ssize_t n = 1
    cdef int ndim, d
    cdef Array result
    if init is _NO_INIT and shape is not None:
        ndim = _parse_shape(shape, -1, size, dims)
        for d in range(ndim):
            n *= dims[d]
        return _c_order_view(_zeros(tc, n), ndim, dims)
    result = _zeros(tc, 0) if init is _NO_INIT else _from_init(tc, init, shape is None)
    if shape is None:
        return result
    ndim = _parse_shape(shape, _nitems_of(result), size, dims)
    return _c_order_view(result, ndim, dims)


cdef Array _from_init(char tc, object init, bint keep_shape):
    cdef Py_ssize_t size = _itemsize(tc)
    cdef Array result
    if PyLong_Check(init):
        return _zeros(tc, _length_arg(init, size))
    if isinstance(init, (bytes, bytearray)):
        return _from_bytes(tc, init)
    if isinstance(init, (Array, _pyarray.array)) and init.typecode != chr(tc):
        return _from_array(tc, init, keep_shape)
    if PyObject_CheckBuffer(init):
        result = _from_buffer(tc, init, keep_shape)
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


cdef Array _from_bytes(char tc, object data):
    """The machine values in bytes or a bytearray, as array.array reads them."""
    cdef Py_buffer view
    cdef Py_ssize_t size = _itemsize(tc)
    cdef Region region
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len % size:
            raise ValueError("bytes length not a multiple of item size")
        region = _allocate(view.len, view.len >= PAGE)
        memcpy(region._addr, view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return _array_view(region, tc, 0, region._nbytes // size, size, False)


cdef Array _shaped(Region region, char tc, Py_ssize_t n, int ndim, const Py_ssize_t* dims):
    """The n items at the start of a new region, in the shape dims if ndim > 1."""
    cdef Array a = _array_view(region, tc, 0, n, _itemsize(tc), False)
    return a if ndim == 1 else _c_order_view(a, ndim, dims)


cdef Array _from_buffer(char tc, object init, bint keep_shape):
    """A copy of a buffer's items (and its shape, with keep_shape); None for a 0-d
    buffer (a numpy scalar)."""
    cdef Py_buffer view
    cdef Py_ssize_t size = _itemsize(tc), n
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef int ndim = 1
    cdef Region region
    PyObject_GetBuffer(init, &view, PyBUF_RECORDS_RO)
    try:
        if view.ndim == 0:
            return None
        _check_format(tc, &view, "cannot initialize the array")
        if keep_shape and view.ndim > 1:
            if view.ndim > MAX_NDIM:
                raise ValueError(
                    f"an Array has at most {MAX_NDIM} dimensions, not {view.ndim} (pass "
                    "shape= to give the items another shape)")
            ndim = view.ndim
            memcpy(dims, view.shape, ndim * sizeof(Py_ssize_t))
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
    return _shaped(region, tc, n, ndim, dims)


cdef Array _from_array(char tc, object init, bint keep_shape):
    """The items of an array.array or an Array of another typecode, converted one by
    one as array.array converts them: TypeError for a float where an integer is due,
    OverflowError for a value out of range."""
    cdef Py_buffer view
    cdef _Strided s
    cdef _Value v
    cdef Py_ssize_t size = _itemsize(tc), n
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef int ndim = 1
    cdef const char* bad
    cdef Region region
    PyObject_GetBuffer(init, &view, PyBUF_RECORDS_RO)
    try:
        if not _strided_of_buffer(&view, &s):
            raise TypeError(f"cannot convert '{init.typecode}' items to typecode '{chr(tc)}'")
        if keep_shape and s.ndim > 1:
            ndim = s.ndim
            memcpy(dims, s.shape, ndim * sizeof(Py_ssize_t))
        n = _nitems(&s)
        region = _allocate(n * size, n * size >= PAGE)
        if n * size >= NOGIL_BYTES:
            with nogil:
                bad = _convert_lines(tc, region._addr, &s)
        else:
            bad = _convert_lines(tc, region._addr, &s)
        if bad != NULL:
            # the exception that array.array raises for this item
            _convert(tc, _number(s.tc, bad), &v)
            raise _range_error(tc, _number(s.tc, bad))
    finally:
        PyBuffer_Release(&view)
    return _shaped(region, tc, n, ndim, dims)


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
