# Array: typed, fixed-length views on a Region, of one dimension or more. Its
# iterators are in _array_iter.pxi; views, indexing by tuples, reshaping and slice
# assignment in _array_nd.pxi; what else array.array does (comparison, search, byte
# order, files, concatenation, repr) in _array_ops.pxi; the loops in _kernels.pxi.

from collections.abc import Sequence as _Sequence


cdef Array _array_view(Region region, char tc, Py_ssize_t offset, Py_ssize_t length,
                       Py_ssize_t stride, bint readonly):
    """A one-dimensional view."""
    cdef Array view = Array.__new__(Array)
    view._region = region
    view._typecode = tc
    view._itemsize = _itemsize(tc)
    view._offset = offset
    view._ndim = 1
    view._length = view._shape[0] = length
    view._stride = view._strides[0] = stride
    view._readonly = readonly
    return view


cdef char* _strided(Array a, _Strided* s) except NULL:
    """The items of `a`, for the loops of _kernels.pxi; ValueError if closed."""
    s.buf = a._base()
    s.tc = a._typecode
    s.ndim = a._ndim
    memcpy(s.shape, a._shape, a._ndim * sizeof(Py_ssize_t))
    memcpy(s.strides, a._strides, a._ndim * sizeof(Py_ssize_t))
    return s.buf


cdef bytearray _gathered(Array a):
    """The items of `a` in a new bytearray, in C order."""
    cdef _Strided s
    cdef bytearray out = bytearray(_nitems_of(a) * a._itemsize)
    cdef char* dst = out
    _strided(a, &s)  # the allocation may have run a close()
    _gather_lines(dst, &s)
    return out


# no_gc: an Array refers only to its Region (see Region): never cleared by the collector
# before the buffers exported from it are released.
@cython.no_gc
@cython.final
cdef class Array:
    """A typed, fixed-length view on shared memory, with the typecodes of
    array.array: b B h H i I l L q Q f d.

    Made by cowbuf.array() (on a region of its own) or Region.view(). It behaves as
    an array.array that cannot grow or shrink; it may have more than one dimension
    (a.shape, a.reshape()), and then a[i] is a row and a[i, j] an item. Indexing,
    slicing (slices are views on the same memory, not copies), iteration and the
    buffer protocol (zero-copy with numpy and memoryview) never touch a Python
    object header in the shared memory, so reading it from forked workers does not
    copy it. sum(), min(), max() and fill() run in C without the GIL on large arrays.
    """

    def __cinit__(self):
        self._region = _NO_REGION
        self._ndim = 1
        self._hash = -1

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

    cdef int _check_1d(self, str what) except -1:
        if self._ndim != 1:
            raise TypeError(
                f"{what} works on one-dimensional arrays, not on shape "
                f"{_shape_tuple(self)} (a.reshape(-1) is a flat view of a C-contiguous "
                "array)")
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
            if self._ndim == 1:
                return _load(self._typecode, addr + self._offset + i * self._stride)
            return _row(self, i)
        self._base()
        if PySlice_Check(key):
            return self._slice(key)
        if isinstance(key, tuple):
            view = _subscript(self, key, &i)
            # __index__ may have closed the region
            return view if view is not None else _load(self._typecode, self._base() + i)
        i = self._index(key)
        if self._ndim > 1:
            return _row(self, i)
        # __index__ may have closed the region
        return _load(self._typecode, self._base() + i * self._stride)

    def __setitem__(self, key, value):
        cdef Py_ssize_t i
        cdef _Value v
        self._check_writable()
        if PySlice_Check(key):
            if self._ndim == 1:
                _assign_slice(self, key, value)
            else:
                _assign_view(self._slice(key), value)
            return
        if isinstance(key, tuple):
            view = _subscript(self, key, &i)
            if view is not None:
                _assign_view(view, value)
                return
        else:
            i = self._index(key)
            if self._ndim > 1:
                _assign_view(_row(self, i), value)
                return
            i *= self._stride
        _convert(self._typecode, value, &v)
        self._check_writable()  # __index__/__float__ may have closed or frozen it
        _store(self._typecode, self._base() + i, v)

    def __delitem__(self, key):
        raise TypeError("an Array has a fixed length: items cannot be deleted")

    cdef Array _slice(self, object key):
        cdef Py_ssize_t start, stop, step, n
        if self._ndim > 1:
            return _subscript(self, (key,), &n)
        PySlice_Unpack(key, &start, &stop, &step)
        n = PySlice_AdjustIndices(self._length, &start, &stop, step)
        self._base()
        if n == 0:
            return _array_view(self._region, self._typecode, self._offset, 0,
                               self._itemsize, self._readonly)
        return _array_view(self._region, self._typecode, self._offset + start * self._stride,
                           n, self._stride * step if n > 1 else self._itemsize,
                           self._readonly)

    def __iter__(self):
        self._base()
        if self._ndim > 1:
            return _rows(self, False)
        cdef _ArrayIterator it = _ArrayIterator.__new__(_ArrayIterator)
        it._region = self._region
        it._typecode = self._typecode
        it._offset = self._offset
        it._stride = self._stride
        it._length = self._length
        it._readonly = self._readonly
        return it

    def __reversed__(self):
        self._base()
        if self._ndim > 1:
            return _rows(self, True)
        cdef _ArrayIterator it = _ArrayIterator.__new__(_ArrayIterator)
        it._region = self._region
        it._typecode = self._typecode
        it._offset = self._offset + (self._length - 1) * self._stride
        it._stride = -self._stride
        it._length = self._length
        it._readonly = self._readonly
        return it

    def __contains__(self, x):
        return _contains(self, x)

    def count(self, x, /):
        """How many items equal x."""
        return _search(self, x, 0, sys.maxsize, True)

    def index(self, x, start=0, stop=sys.maxsize, /):
        """The position of the first item equal to x, from start (included) to stop
        (excluded), which count from the end if negative. ValueError if there is
        none."""
        cdef Py_ssize_t i = _search(self, x, start, stop, False)
        if i < 0:
            raise ValueError("array.index(x): x not in array")
        return i

    # -- comparison: item by item, as array.array compares (_array_ops.pxi)

    def __eq__(self, other):
        return _compare(self, other, Py_EQ)

    def __ne__(self, other):
        return _compare(self, other, Py_NE)

    def __lt__(self, other):
        return _compare(self, other, Py_LT)

    def __le__(self, other):
        return _compare(self, other, Py_LE)

    def __gt__(self, other):
        return _compare(self, other, Py_GT)

    def __ge__(self, other):
        return _compare(self, other, Py_GE)

    def __hash__(self):
        # by value, like bytes: only frozen memory cannot change under a dict
        return _hash(self)

    # -- new arrays: a + b, n * a

    def __add__(self, other):
        return _concat(self, other)

    def __radd__(self, other):
        return _concat(other, self)

    def __mul__(self, n):
        return _repeat(self, n)

    def __rmul__(self, n):
        return _repeat(self, n)

    def __iadd__(self, other):
        raise TypeError(
            "an Array has a fixed length: += cannot extend it (a + b is a new Array; "
            "a[i:j] = b writes into this one)")

    def __imul__(self, n):
        raise TypeError(
            "an Array has a fixed length: *= cannot repeat it in place (n * a is a new "
            "Array)")

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
        """Size of the items in bytes (the number of items times a.itemsize)."""
        self._base()
        return _nitems_of(self) * self._itemsize

    @property
    def shape(self):
        """The extent of each dimension: (len(a),) for a one-dimensional array."""
        return _shape_tuple(self)

    @property
    def ndim(self):
        """The number of dimensions."""
        return self._ndim

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
        """The items as a list of Python numbers (nested lists, one level per
        dimension, for more than one)."""
        cdef char* base = self._base()
        cdef _Mapping keep = self._region._live()  # object creation may run a close()
        cdef Py_ssize_t i
        cdef char tc = self._typecode
        if self._ndim > 1:
            return _tolist_nd(tc, base, self._ndim, self._shape, self._strides)
        return [_load(tc, base + i * self._stride) for i in range(self._length)]

    def tobytes(self):
        """The items' machine representation as bytes, in order (C order)."""
        cdef _Strided s
        self._base()
        cdef Py_ssize_t n = _nitems_of(self) * self._itemsize
        result = PyBytes_FromStringAndSize(NULL, n)
        cdef char* out = PyBytes_AS_STRING(result)
        _strided(self, &s)  # the allocation may have run a close()
        _coalesce(&s)
        cdef _Mapping keep = self._region._live()  # mapped while the GIL is dropped
        if n >= NOGIL_BYTES:
            with nogil:
                _gather_lines(out, &s)
        elif n:
            _gather_lines(out, &s)
        return result

    def tofile(self, f):
        """Write the items' machine representation to the file object f, as
        array.array.tofile() does: through f.write(), in blocks of 64 KiB."""
        _tofile(self, f)

    def fill(self, value):
        """Set every item to `value`."""
        cdef _Value v
        cdef _Strided s
        self._check_writable()
        _convert(self._typecode, value, &v)
        self._check_writable()
        _strided(self, &s)
        _coalesce(&s)
        if _nitems(&s) * self._itemsize < NOGIL_BYTES:
            _fill_lines(&s, v)
            return
        # pinned against a freeze, and mapped even if another thread closes it
        cdef _Mapping keep = self._region._live()
        self._region._acquire(_PIN | _WRITE)
        try:
            with nogil:
                _fill_lines(&s, v)
        finally:
            self._region._release(_PIN | _WRITE)

    def sum(self):
        """The sum of the items: exact for integers (a Python int, never wrapping),
        pairwise for floats, as numpy does."""
        cdef _Strided s
        _strided(self, &s)
        _coalesce(&s)
        cdef _Mapping keep = self._region._live()  # mapped while the GIL is dropped
        return _sum(&s, _nitems(&s) * self._itemsize >= NOGIL_BYTES)

    def min(self):
        """The smallest item (NaN if any item is NaN). ValueError if empty."""
        return self._extreme(False)

    def max(self):
        """The largest item (NaN if any item is NaN). ValueError if empty."""
        return self._extreme(True)

    cdef object _extreme(self, bint want_max):
        cdef _Strided s
        _strided(self, &s)
        cdef Py_ssize_t n = _nitems(&s)
        if n == 0:
            raise ValueError(f"{'max' if want_max else 'min'}() of an empty array")
        cdef _Mapping keep = self._region._live()  # mapped while the GIL is dropped
        _coalesce(&s)
        return _extreme(&s, want_max, n * self._itemsize >= NOGIL_BYTES)

    def reverse(self):
        """Reverse the order of the items, in place."""
        _reverse(self)

    def byteswap(self):
        """Swap the bytes of every item, in place: between little- and big-endian
        machine values."""
        _byteswap(self)

    def buffer_info(self):
        """(address, count): the address of the first item and the number of items,
        for a C-contiguous array. BufferError for a view with steps."""
        return _buffer_info(self)

    def reshape(self, *shape):
        """A view of the same items with another shape, in C order: a.reshape(2, 3),
        a.reshape((2, 3)); one dimension may be -1 (as many as the items make).
        ValueError unless the array is C-contiguous and the item counts agree."""
        if not shape:
            raise TypeError("reshape() needs a shape: a.reshape(2, 3) or a.reshape((2, 3))")
        return _reshape(self, shape[0] if len(shape) == 1 else shape)

    def toreadonly(self):
        """A read-only view of the same items."""
        self._base()
        return _nd_view(self._region, self._typecode, self._offset, self._ndim, self._shape,
                        self._strides, True)

    def freeze(self):
        """Freeze the whole region of this array: see Region.freeze()."""
        self._base()
        self._region.freeze()

    # -- atomics

    cdef int _check_atomic(self) except -1:
        cdef char tc = self._typecode
        self._base()  # a closed array is ValueError, whatever else is wrong
        if _is_float(tc) or self._itemsize < 4:
            raise TypeError(
                "atomic operations need an integer array of itemsize 4 or 8 "
                f"(typecodes i, I, l, L, q, Q), not '{chr(tc)}'")
        self._check_1d("atomic operations")
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
        cdef bint c_order = _c_contiguous(self)
        if readonly and flags & PyBUF_WRITABLE:
            raise BufferError("the array is read-only")
        if not c_order and (flags & PyBUF_STRIDES) != PyBUF_STRIDES:
            raise BufferError("the array is not contiguous: its buffer needs strides")
        if ((flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS and not c_order
                or (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS
                and not _f_contiguous(self)
                or (flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS
                and not (c_order or _f_contiguous(self))):
            raise BufferError("the array is not contiguous")
        view.buf = base
        view.obj = self
        view.len = _nitems_of(self) * self._itemsize
        view.readonly = readonly
        view.itemsize = self._itemsize
        view.format = <char*>_format(self._typecode) if flags & PyBUF_FORMAT else NULL
        # without a shape, the consumer sees the bytes of a C-contiguous array
        view.ndim = self._ndim if flags & PyBUF_ND else 1
        view.shape = self._shape if flags & PyBUF_ND else NULL
        view.strides = self._strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
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

    def __arrow_c_array__(self, requested_schema=None):
        """The Arrow PyCapsule interface: (schema, array) capsules of a primitive Arrow
        array (int8 ... uint64, float32, float64) on this memory, without a copy, so
        pyarrow.array(a) (and polars.from_arrow of that) reads it in place. The
        consumer's hold on the memory counts as a buffer export of the region (close()
        raises BufferError until it is released); it sees later writes to a writable
        array, as pyarrow does with numpy's. A strided view is copied first (Arrow arrays are
        contiguous). `requested_schema` is ignored. One-dimensional arrays only."""
        self._region._live()
        self._check_1d("the Arrow export")
        cdef Array source = self
        if self._length > 1 and self._stride != self._itemsize:
            source = array(chr(self._typecode), self)  # contiguous, in a region of its own
        cdef Py_ssize_t buffers[2]
        buffers[0] = -1  # no validity bitmap: there are no nulls
        buffers[1] = source._offset
        return _arrow_capsules(source._region, _arrow_format(self._typecode, self._itemsize),
                               source._length, 0, buffers, 2)

    def __reduce_ex__(self, protocol):
        # By value for plain pickle and cloudpickle; cowbuf._sharing registers a
        # by-reference reducer with multiprocessing's pickler.
        cdef bint frozen = self._region._live().readonly
        if protocol < 5:
            data = self.tobytes()
        elif _c_contiguous(self):
            data = PickleBuffer(self)  # out of band with buffer_callback: no copy
        else:
            # one contiguous buffer, as writable as the array, to go out of band too
            data = PickleBuffer(self.tobytes() if frozen else _gathered(self))
        args = (chr(self._typecode), data, frozen, self._readonly)
        if self._ndim > 1:
            args += (_shape_tuple(self),)
        return (_array_from_bytes, args)

    def __repr__(self):
        return _repr(self)


_Sequence.register(Array)
