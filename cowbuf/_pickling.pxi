# Pickling.
#
# By value (plain pickle and cloudpickle: files, Ray, Dask) through each class's
# __reduce_ex__ and the reconstructors here, which check every argument before they
# allocate: unpickled data may be crafted (#4).
#
# By reference (multiprocessing: between the processes of one machine) through
# SHARED_TYPES, the one list of the types that travel so: cowbuf._sharing registers
# each reducer with multiprocessing's pickler, and moves the fds of the mappings the
# reduced objects refer to. The registry accepts exactly these types.


# -- by value ----------------------------------------------------------------------

cdef Region _region_of_data(object data, bint frozen, bint small):
    """The memory of a by-value pickle: a fresh region filled with `data`, or, for a
    read-only buffer that came out of band (pickle protocol 5's buffers=: Ray's object
    store, Dask's frames), that very memory, wrapped without a copy (#14). In-band data
    (bytes and bytearray) is copied into shared memory, as a cowbuf object should be."""
    cdef Py_ssize_t n
    cdef Region region
    cdef _Mapping foreign
    if type(data) is not bytes and type(data) is not bytearray:
        foreign = _foreign_mapping(data)
        if foreign is not None:
            return _region_view(foreign, 0, foreign.size)
    with memoryview(data) as view:
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        n = view.nbytes
        if small and n >= PAGE:
            # only allocations under a page are carved from arenas
            raise ValueError(f"bad pickle data: a small region of {n} bytes")
        if small or n == 0:
            region = _carve(n, 16)
        else:
            region = Region(n)
        memoryview(region)[:] = view.cast("B")
    if frozen:
        region.freeze()
    return region


def _region_from_bytes(data, bint frozen, bint small):
    return _region_of_data(data, frozen, small)


def _array_from_bytes(str typecode, data, bint frozen, bint readonly, shape=None):
    cdef char tc = _parse_typecode(typecode)
    cdef Py_ssize_t size = _itemsize(tc)
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef int ndim = 1
    cdef Py_ssize_t nbytes = 0
    with memoryview(data) as view:
        nbytes = view.nbytes
    if nbytes % size:
        raise ValueError(f"{nbytes} bytes is not a whole number of '{typecode}' items")
    if shape is not None:
        ndim = _parse_shape(shape, nbytes // size, size, dims)
    # small arrays are carved from an arena, as cowbuf.array() carves them
    cdef Region region = _region_of_data(data, frozen, nbytes < PAGE)
    cdef Array a = _shaped(region, tc, nbytes // size, ndim, dims)
    a._readonly = readonly  # a view nothing else holds yet
    return a


def _counter_from_value(value, bint padded, bint frozen):
    cdef Counter c = Counter(value, padded=padded)
    if frozen:
        c._region.freeze()
    return c


# -- by reference -------------------------------------------------------------------

def _region_on(_Mapping mapping not None, Py_ssize_t offset, Py_ssize_t nbytes, bint frozen):
    """The Region at `offset` of a mapping that arrived: the one this process has
    already if it has it (#6), frozen if it was frozen when sent."""
    cdef Region region = _region_at(mapping, offset, nbytes)
    if frozen and not mapping.readonly:
        # it was frozen after this process mapped it: frozen here too, unless this
        # process still writes to it through a buffer (then it keeps its copy's state)
        try:
            region.freeze()
        except BufferError:
            pass
    return region


def _array_on(Region region not None, str typecode, Py_ssize_t offset, shape, strides,
              bint readonly):
    """The Array with this geometry on `region` (a shape and byte strides, one per
    dimension); checked, since the data may be crafted: ValueError at once for any
    item outside the region."""
    cdef char tc = _parse_typecode(typecode)
    cdef Py_ssize_t size = _itemsize(tc)
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef Py_ssize_t steps[MAX_NDIM]
    cdef int d, ndim
    region._live()
    shape, strides = tuple(shape), tuple(strides)
    ndim = len(shape)
    if not 1 <= ndim <= MAX_NDIM or len(strides) != ndim or offset % size:
        raise ValueError("bad array geometry")
    limit = LLONG_MAX // 2
    low = high = offset
    count = 1
    for d in range(ndim):
        n, step = PyNumber_Index(shape[d]), PyNumber_Index(strides[d])
        if n < 0 or n > limit or step == 0 or step % size or abs(step) > limit:
            raise ValueError("bad array geometry")
        count *= n
        if n:
            if step > 0:
                high += (n - 1) * step
            else:
                low += (n - 1) * step
        dims[d], steps[d] = n, step
    if count * size > limit:
        raise ValueError("bad array geometry")
    if count and (low < 0 or high > region._nbytes - size):
        raise ValueError("array geometry is outside its region")
    region._live()  # __index__ may have closed the region
    return _nd_view(region, tc, offset, ndim, dims, steps, readonly)


def _counter_on(Region region not None, Py_ssize_t offset):
    return region.counter(offset)


def _share_region(Region region not None):
    cdef _Mapping m = region._live()
    if m.is_foreign:
        # not shared memory (an out-of-band buffer it was unpickled on): by value,
        # which for read-only memory is all a reference would give
        return _region_from_bytes, (bytes(memoryview(region)), True, False)
    return _region_on, (m, region._offset, region._nbytes, m.readonly)


def _share_array(Array a not None):
    # the region inside is pickled by _share_region (once per message: pickle memo)
    a._base()
    return _array_on, (a._region, chr(a._typecode), a._offset, _shape_tuple(a),
                       tuple([a._strides[d] for d in range(a._ndim)]), a._readonly)


def _share_counter(Counter c not None):
    c._ptr()
    return _counter_on, (c._region, c._offset)


# Every type that travels by reference, and its reducer: the reduced form refers to
# Regions (or directly to the _Mapping), whose fds cowbuf._sharing moves.
SHARED_TYPES = {
    Region: _share_region,
    Array: _share_array,
    Counter: _share_counter,
    StrArray: _share_strings,
    BytesArray: _share_strings,
    FrozenDict: _share_frozendict,
    Lock: _share_lock,
    RLock: _share_rlock,
    Semaphore: _share_semaphore,
    BoundedSemaphore: _share_semaphore,
    Event: _share_event,
    Condition: _share_condition,
    Barrier: _share_barrier,
    Queue: _share_queue,
}


def _region_state(Region region not None):
    """(mapping, offset, nbytes, frozen) of an open region (tests and diagnostics)."""
    cdef _Mapping m = region._live()
    return m, region._offset, region._nbytes, m.readonly
