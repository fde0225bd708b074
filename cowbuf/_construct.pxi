# cowbuf.array(): new Arrays on memory of their own, from lengths, ranges, iterables
# and buffers.

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
