# Array: typed, fixed-length views on a Region.

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


# no_gc: an Array refers only to its Region (see Region): never cleared by the collector
# before the buffers exported from it are released.
@cython.no_gc
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
            _raise_closed()
        return addr + self._offset

    cdef bint _is_readonly(self) except -1:
        return self._readonly or self._region._live().readonly

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
                self._region._acquire(_PIN | _WRITE)
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
                    self._region._release(_PIN | _WRITE)
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
        cdef _Mapping keep = self._region._live()  # object creation may run a close()
        cdef Py_ssize_t i
        cdef char tc = self._typecode
        return [_load(tc, base + i * self._stride) for i in range(self._length)]

    def tobytes(self):
        """The items' machine representation as bytes, in order."""
        cdef char* base = self._base()
        cdef Py_ssize_t n = self._length * self._itemsize
        result = PyBytes_FromStringAndSize(NULL, n)
        cdef char* out = PyBytes_AS_STRING(result)
        cdef _Mapping keep = self._region._live()  # mapped while the GIL is dropped
        if n >= NOGIL_BYTES:
            with nogil:
                _gather(out, base, self._length, self._stride, self._itemsize)
        else:
            _gather(out, base, self._length, self._stride, self._itemsize)
        return result

    def fill(self, value):
        """Set every item to `value`."""
        cdef _Value v
        self._check_writable()
        _convert(self._typecode, value, &v)
        self._check_writable()
        cdef char* base = self._base()
        if self._length * self._itemsize < NOGIL_BYTES:
            _fill(self._typecode, base, self._length, self._stride, v)
            return
        self._region._acquire(_PIN | _WRITE)
        try:
            with nogil:
                _fill(self._typecode, base, self._length, self._stride, v)
        finally:
            self._region._release(_PIN | _WRITE)

    def sum(self):
        """The sum of the items: exact for integers (a Python int, never wrapping),
        pairwise for floats, as numpy does."""
        cdef char* base = self._base()
        cdef _Mapping keep = self._region._live()  # mapped while the GIL is dropped
        return _sum(self._typecode, base, self._length, self._stride,
                    self._length * self._itemsize >= NOGIL_BYTES)

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
        cdef _Mapping keep = self._region._live()  # mapped while the GIL is dropped
        return _extreme(self._typecode, base, self._length, self._stride, want_max,
                        self._length * self._itemsize >= NOGIL_BYTES)

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
        _atomic_add_at(self, indices, values)

    def wait_at(self, index, expected, timeout=None):
        """Block while item `index` equals `expected` (for `timeout` seconds at
        most): return True once it differs, False if the timeout passed. As
        Counter.wait(), for the integer arrays that have atomics."""
        cdef _Value e
        self._check_atomic()
        cdef Py_ssize_t i = self._index(index)
        _convert(self._typecode, expected, &e)
        self._base()
        return _wait_while_equal(self._region, self._offset + i * self._stride,
                                 <int>self._itemsize, e.u, timeout)

    def notify_at(self, index, n=1):
        """Wake up to `n` threads or processes blocked in wait_at(index)."""
        self._check_atomic()
        cdef Py_ssize_t i = self._index(index)
        _notify_at(self._base() + i * self._stride, <int>self._itemsize, _wake_count(n))

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
        self._region._acquire(_EXPORT if readonly else _EXPORT | _WRITE)  # handed out

    def __releasebuffer__(self, Py_buffer* view):
        self._region._release(_EXPORT if view.readonly else _EXPORT | _WRITE)

    @property
    def __array_interface__(self):
        # numpy falls back from a failed buffer export to this, then to an object
        # array: a closed array must raise there too. Open, it is absent
        # (numpy took the buffer already).
        self._region._live()
        raise AttributeError("__array_interface__")

    def __reduce_ex__(self, protocol):
        # By value for plain pickle and cloudpickle; cowbuf._sharing registers a
        # by-reference reducer with multiprocessing's pickler.
        cdef bint frozen = self._region._live().readonly
        if protocol < 5:
            data = self.tobytes()
        elif self._stride == self._itemsize or self._length <= 1:
            data = PickleBuffer(self)  # out of band with buffer_callback: no copy
        else:
            # one contiguous buffer, as writable as the array, to go out of band too
            data = PickleBuffer(self.tobytes() if frozen else _gathered(self))
        return (_array_from_bytes,
                (chr(self._typecode), data, frozen, self._readonly))

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


@cython.no_gc
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
            _raise_closed()
        self._index = i + 1
        return _load(self._typecode, addr + self._offset + i * self._stride)

    def __length_hint__(self):
        return self._length - self._index


cdef bytearray _gathered(Array a):
    """The items of `a` in a new bytearray, in order."""
    cdef Py_ssize_t n = a._length * a._itemsize
    cdef bytearray out = bytearray(n)
    cdef char* dst = out
    _gather(dst, a._base(), a._length, a._stride, a._itemsize)
    return out


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
