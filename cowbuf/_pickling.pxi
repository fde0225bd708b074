# Pickling: by value (plain pickle, cloudpickle) through __reduce_ex__, and the
# state and reconstructors that cowbuf._sharing uses to send objects by reference.

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
    if small and n >= PAGE:
        # only allocations under a page are carved from arenas
        raise ValueError(f"bad pickle data: a small region of {n} bytes")
    if small or n == 0:
        region = _carve(n, 16)
    else:
        region = Region(n)
    memoryview(region)[:] = data
    if frozen:
        region.freeze()
    return region


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
