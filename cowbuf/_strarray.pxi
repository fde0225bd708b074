# StrArray and BytesArray: immutable sequences of str and bytes in one frozen region,
# laid out as Arrow's large_utf8 and large_binary.
#
# The region holds n + 1 int64 offsets, then the bytes of all the items one after the
# other: item i is data[offsets[i]:offsets[i + 1]], str as UTF-8 with lone surrogates
# passed through (_text.h). A slice with step 1 is a view on the same region (its
# offsets start later); other steps copy. Reading an item makes a new str or bytes:
# nothing in shared memory is a Python object, so reading never writes to it.
#
# Invariant of every _Strings: its region is frozen (read-only in hardware wherever it
# is mapped) and its offsets are non-decreasing, from >= 0 up to at most the size of the
# data, as checked when the object was made from memory it did not write itself
# (_strings_on, _strings_from_bytes): reads trust them without a check.

import collections.abc

from cpython.buffer cimport PyBUF_SIMPLE
from cpython.bytearray cimport PyByteArray_Check
from cpython.bytes cimport PyBytes_Check, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_Check

cdef extern from "Python.h":
    # (not in Cython's declarations)
    int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)

# Regions whose offsets were checked for a geometry this process received:
# region -> {(offsets, length, data, data_nbytes)}, so that a StrArray sent with every
# task of a pool is checked once per worker, not once per task.
_checked_strings = weakref.WeakKeyDictionary()


cdef _Strings _strings_view(bint text, Region region, Py_ssize_t offsets, Py_ssize_t length,
                            Py_ssize_t data, Py_ssize_t data_nbytes):
    cdef _Strings s
    if text:
        s = StrArray.__new__(StrArray)
    else:
        s = BytesArray.__new__(BytesArray)
    s._region = region
    s._offsets = offsets
    s._length = length
    s._data = data
    s._data_nbytes = data_nbytes
    s._text = text
    return s


cdef inline object _text_item(bint text, Region region, const char* p, Py_ssize_t n):
    """The item of n bytes at p in region, as a new str or bytes."""
    cdef _Mapping keep
    if not text:
        return PyBytes_FromStringAndSize(p, n)  # (bytes are not tracked by the collector)
    if cowbuf_is_ascii(p, n):
        return cowbuf_str_from_ascii(p, n)
    # A decoding error makes an exception, which may run the garbage collector, and so
    # a close() of the region: `keep` holds the memory while the decoder reads it.
    keep = region._mapping
    return cowbuf_str_from_utf8(p, n)


cdef bint _offsets_ok(const int64_t* offs, Py_ssize_t n, Py_ssize_t data_nbytes) noexcept nogil:
    """The invariant of _Strings (see the top of this file) for n items."""
    cdef Py_ssize_t k
    if offs[0] < 0 or offs[n] > data_nbytes:
        return False
    for k in range(n):
        if offs[k] > offs[k + 1]:
            return False
    return True


cdef Py_ssize_t _utf8_nbytes(object s) noexcept:
    if cowbuf_str_is_ascii(s):
        return PyUnicode_GET_LENGTH(s)
    return cowbuf_utf8_size(PyUnicode_KIND(s), PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))


cdef void _utf8_write(object s, char* out) noexcept:
    if cowbuf_str_is_ascii(s):
        memcpy(out, PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))
    else:
        cowbuf_utf8_encode(PyUnicode_KIND(s), PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s), out)


cdef bytes _utf8(object s):
    """The bytes a str is kept as."""
    cdef Py_ssize_t n = _utf8_nbytes(s)
    result = PyBytes_FromStringAndSize(NULL, n)
    _utf8_write(s, PyBytes_AS_STRING(result))
    return result


cdef _Strings _build_strings(object init, bint text):
    """A new array of the items of `init`, on a frozen region of its own."""
    cdef str kind = "StrArray" if text else "BytesArray"
    cdef Py_ssize_t n, k, total = 0, size, at
    cdef int64_t* offs
    cdef char* data
    if isinstance(init, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"{kind}() takes an iterable of {'str' if text else 'bytes'}, "
                        f"not a {type(init).__name__}")
    try:
        # a private list: nothing else can change it between the two passes below
        items = list(init)
    except TypeError:
        raise TypeError(f"{kind}() takes an iterable, not {type(init).__name__}") from None
    n = len(items)
    for k in range(n):
        item = items[k]
        if text:
            if not PyUnicode_Check(item):
                raise TypeError(f"StrArray items must be str, not {type(item).__name__} "
                                f"(item {k})")
            total += _utf8_nbytes(item)
        else:
            if not PyBytes_Check(item):
                if (isinstance(item, (str, int)) or not PyObject_CheckBuffer(item)):
                    raise TypeError(f"BytesArray items must be bytes-like, not "
                                    f"{type(item).__name__} (item {k})")
                item = items[k] = memoryview(item).tobytes()
            total += PyBytes_GET_SIZE(item)
    if n >= (LLONG_MAX // 2 - total) // 8:
        raise MemoryError(f"cannot map {n} items of {total} bytes")
    at = 8 * (n + 1)
    cdef Region region = _allocate(at + total, at + total >= PAGE)
    # no Python code runs from here on: the region is new, nobody else has it
    offs = <int64_t*>region._addr
    data = region._addr + at
    total = 0
    offs[0] = 0
    for k in range(n):
        item = items[k]
        if text:
            size = _utf8_nbytes(item)
            _utf8_write(item, data + total)
        else:
            size = PyBytes_GET_SIZE(item)
            memcpy(data + total, PyBytes_AS_STRING(item), size)
        total += size
        offs[k + 1] = total
    region.freeze()
    return _strings_view(text, region, 0, n, at, total)


# no_gc: refers only to its Region (see Region).
@cython.no_gc
cdef class _Strings:
    """The implementation of StrArray and BytesArray."""

    def __cinit__(self):
        self._region = _NO_REGION

    def __dealloc__(self):
        Py_XDECREF(self._spare)

    cdef int _init(self, object init, bint text) except -1:
        if self._region is not _NO_REGION:
            raise TypeError(f"{type(self).__name__}.__init__() may only be called once")
        cdef _Strings built = _build_strings(init, text)
        if self._region is not _NO_REGION:  # (iterating init may have called __init__)
            raise TypeError(f"{type(self).__name__}.__init__() may only be called once")
        self._region = built._region
        self._offsets = built._offsets
        self._length = built._length
        self._data = built._data
        self._data_nbytes = built._data_nbytes
        self._text = text
        return 0

    cdef inline const int64_t* _offs(self) except NULL:
        cdef char* addr = self._region._addr
        if addr == NULL:
            _raise_closed()
        return <const int64_t*>(addr + self._offsets)

    cdef object _item(self, Py_ssize_t i):
        cdef const int64_t* offs = self._offs()
        cdef const char* p = self._region._addr + self._data + offs[i]
        cdef Py_ssize_t n = offs[i + 1] - offs[i]
        if not (self._text and cowbuf_is_ascii(p, n)):
            return _text_item(self._text, self._region, p, n)
        item = cowbuf_str_from_ascii_into(&self._spare, p, n)
        Py_XDECREF(self._spare)
        Py_INCREF(item)
        self._spare = <PyObject*>item
        return item

    cdef Py_ssize_t _index(self, object key) except? -1:
        cdef Py_ssize_t i
        if PyLong_CheckExact(key):
            i = cowbuf_exact_index(key)
        else:
            i = PyNumber_AsSsize_t(key, IndexError)
        if i < 0:
            i += self._length
        if i < 0 or i >= self._length:
            raise IndexError(f"{type(self).__name__} index out of range")
        return i

    # -- sequence

    def __len__(self):
        self._offs()
        return self._length

    def __getitem__(self, key):
        cdef Py_ssize_t i
        if PyLong_CheckExact(key) and self._region._addr != NULL:
            i = cowbuf_exact_index(key)  # the hot path: no Python code runs
            if i < 0:
                i += self._length
            if <size_t>i >= <size_t>self._length:
                raise IndexError(f"{type(self).__name__} index out of range")
            return self._item(i)
        self._offs()
        if PySlice_Check(key):
            return self._slice(key)
        i = self._index(key)
        return self._item(i)  # (checks the region again: __index__ may have closed it)

    cdef _Strings _slice(self, object key):
        cdef Py_ssize_t start, stop, step, n
        PySlice_Unpack(key, &start, &stop, &step)
        n = PySlice_AdjustIndices(self._length, &start, &stop, step)
        self._offs()
        if step == 1 or n <= 1:
            if n == 0:
                start = 0
            return _strings_view(self._text, self._region, self._offsets + 8 * start, n,
                                 self._data, self._data_nbytes)
        return self._gather(start, step, n)

    cdef _Strings _gather(self, Py_ssize_t start, Py_ssize_t step, Py_ssize_t n):
        """A copy of the n items start, start + step, ... in a region of their own."""
        cdef _Mapping keep = self._region._live()
        cdef const int64_t* offs = self._offs()
        cdef const char* data = self._region._addr + self._data
        cdef Py_ssize_t k, i, size, total = 0
        for k in range(n):
            i = start + k * step
            total += offs[i + 1] - offs[i]
        cdef Region region = _allocate(8 * (n + 1) + total, 8 * (n + 1) + total >= PAGE)
        # (the allocation may have run Python code: keep holds the memory read here)
        cdef int64_t* out = <int64_t*>region._addr
        cdef char* dst = region._addr + 8 * (n + 1)
        total = 0
        out[0] = 0
        for k in range(n):
            i = start + k * step
            size = offs[i + 1] - offs[i]
            memcpy(dst + total, data + offs[i], size)
            total += size
            out[k + 1] = total
        region.freeze()
        return _strings_view(self._text, region, 0, n, 8 * (n + 1), total)

    def __iter__(self):
        self._offs()
        return _strings_iterator(self, 0, 1)

    def __reversed__(self):
        self._offs()
        return _strings_iterator(self, self._length - 1, -1)

    cdef object _needle(self, object x):
        """The bytes an item equal to x would hold, or None if no item can equal x."""
        if self._text:
            return _utf8(x) if PyUnicode_Check(x) else None
        if PyBytes_Check(x):
            return x
        if PyByteArray_Check(x):
            return bytes(x)
        if isinstance(x, memoryview) and (<memoryview>x).format in ("B", "b", "c"):
            return x.tobytes()
        return None

    cdef Py_ssize_t _find(self, object x, Py_ssize_t start, Py_ssize_t stop,
                          bint count) except -2:
        """The index of the first item equal to x in [start, stop) (or -1), or with
        `count` the number of them."""
        needle = self._needle(x)
        cdef _Mapping keep = self._region._live()  # (mapped while the GIL is dropped)
        if needle is None:
            return 0 if count else -1
        cdef const int64_t* offs = self._offs()
        cdef const char* data = self._region._addr + self._data
        cdef const char* p = PyBytes_AS_STRING(needle)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(needle)
        cdef Py_ssize_t found
        if (stop - start) * 8 >= NOGIL_BYTES:
            with nogil:
                found = _scan(offs, data, start, stop, p, size, count)
        else:
            found = _scan(offs, data, start, stop, p, size, count)
        return found

    def __contains__(self, x):
        return self._find(x, 0, self._length, False) >= 0

    def index(self, x, start=0, stop=sys.maxsize):
        """The index of the first item equal to x (from start, before stop); ValueError
        if there is none."""
        cdef Py_ssize_t n = self._length
        cdef Py_ssize_t i = PyNumber_AsSsize_t(start, None)
        cdef Py_ssize_t j = PyNumber_AsSsize_t(stop, None)
        if i < 0:
            i = max(i + n, 0)
        if j < 0:
            j = max(j + n, 0)
        i, j = min(i, n), min(j, n)
        cdef Py_ssize_t found = self._find(x, i, j, False) if i < j else -1
        if found < 0:
            raise ValueError(f"{x!r} is not in {type(self).__name__}")
        return found

    def count(self, x):
        """The number of items equal to x."""
        return self._find(x, 0, self._length, True)

    def __eq__(self, other):
        if isinstance(other, _Strings):
            return _strings_equal(self, <_Strings>other)
        if isinstance(other, list):
            return self._equal_list(<list>other)
        return NotImplemented

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    cdef bint _equal_list(self, list other) except -1:
        cdef Py_ssize_t i
        self._offs()
        if len(other) != self._length:
            return False
        for i in range(self._length):
            if i >= len(other) or not (self._item(i) == other[i]):
                return False
        return len(other) == self._length

    __hash__ = None

    # -- whole-array

    def tolist(self):
        """The items as a list."""
        self._offs()
        return [self._item(i) for i in range(self._length)]

    @property
    def nbytes(self):
        """Bytes of this array's offsets and items in shared memory."""
        cdef const int64_t* offs = self._offs()
        return 8 * (self._length + 1) + (offs[self._length] - offs[0])

    @property
    def offsets(self):
        """The n + 1 item offsets (a read-only int64 Array on the same memory): item i is
        data[offsets[i]:offsets[i + 1]]."""
        self._offs()
        return _array_view(self._region, c'q', self._offsets, self._length + 1, 8, True)

    @property
    def data(self):
        """The bytes of the items (a read-only uint8 Array on the same memory, from the
        first item of the array this one is a view of)."""
        self._offs()
        return _array_view(self._region, c'B', self._data, self._data_nbytes, 1, True)

    @property
    def region(self):
        """The Region that holds the array (frozen)."""
        return self._region

    def __arrow_c_array__(self, requested_schema=None):
        """The Arrow PyCapsule interface: (schema, array) capsules of a large_utf8
        (StrArray) or large_binary (BytesArray) array on this memory, without a copy.
        The consumer's hold on the memory counts as a buffer export of the region.
        `requested_schema` is ignored: the items have one type. ValueError for a
        StrArray holding lone surrogates, which Arrow's UTF-8 strings cannot hold."""
        cdef const int64_t* offs = self._offs()
        cdef _Mapping keep = self._region._live()  # (mapped while the GIL is dropped)
        cdef const char* data = self._region._addr + self._data
        cdef bint surrogates = False
        if self._text:
            with nogil:
                surrogates = cowbuf_utf8_has_surrogate(data + offs[0],
                                                       offs[self._length] - offs[0])
        if surrogates:
            raise ValueError("the StrArray holds lone surrogates, which are not UTF-8: "
                             "Arrow cannot take it (a BytesArray of the UTF-8 bytes can)")
        cdef Py_ssize_t buffers[3]
        buffers[0] = -1  # no validity bitmap: there are no nulls
        buffers[1] = self._offsets
        buffers[2] = self._data
        return _arrow_capsules(self._region, "U" if self._text else "Z", self._length, 0,
                               buffers, 3)

    def __reduce_ex__(self, protocol):
        # By value for plain pickle and cloudpickle: the offsets (from 0) and the bytes
        # of the items; cowbuf._sharing sends a reference instead (SHARED_TYPES).
        cdef const int64_t* offs = self._offs()
        cdef _Mapping keep = self._region._live()
        cdef Py_ssize_t n = self._length, k
        cdef int64_t first = offs[0]
        cdef Array data = _array_view(self._region, c'B', self._data + first,
                                      offs[n] - first, 1, True)
        cdef Array offsets
        cdef int64_t* rebased
        if first == 0:
            offsets = self.offsets
        else:
            offsets = _array_view(_allocate(8 * (n + 1), False), c'q', 0, n + 1, 8, False)
            rebased = <int64_t*>offsets._region._addr
            for k in range(n + 1):
                rebased[k] = offs[k] - first
        if protocol >= 5:
            return (_strings_from_bytes, (self._text, PickleBuffer(offsets), PickleBuffer(data)))
        return (_strings_from_bytes, (self._text, offsets.tobytes(), data.tobytes()))

    def __repr__(self):
        name = type(self).__name__
        if self._region._addr == NULL:
            return f"<cowbuf.{name} closed>"
        n = self._length
        if n <= 8:
            items = repr(self.tolist())
        else:
            head = ", ".join(map(repr, self[:3].tolist()))
            tail = ", ".join(map(repr, self[n - 3:].tolist()))
            items = f"[{head}, ..., {tail}]"
        return f"<cowbuf.{name} length={n} {items}>"


@cython.no_gc
@cython.final
cdef class StrArray(_Strings):
    """StrArray(iterable_of_str)

    An immutable sequence of str in shared memory, frozen (read-only everywhere), laid
    out as Arrow's large_utf8: n + 1 int64 offsets, then the UTF-8 bytes of the items.
    Every str round-trips exactly (NULs, the empty string, lone surrogates).

    Reading an item makes a new str, so reading from forked workers never writes to the
    shared pages. Slices with step 1 are views on the same memory, other steps copy.
    `offsets` and `data` are zero-copy Arrays, and pyarrow.array(s) reads it in place
    (__arrow_c_array__). Travels by reference to pool workers under every start method,
    by value under plain pickle.
    """

    def __init__(self, init=(), /):
        self._init(init, True)


@cython.no_gc
@cython.final
cdef class BytesArray(_Strings):
    """BytesArray(iterable_of_bytes_like)

    An immutable sequence of bytes in shared memory, frozen (read-only everywhere), laid
    out as Arrow's large_binary: n + 1 int64 offsets, then the bytes of the items. Items
    may be any bytes-like object (bytes, bytearray, memoryview, numpy arrays); reading
    one gives bytes.

    Reading an item makes a new bytes object, so reading from forked workers never
    writes to the shared pages. Slices with step 1 are views on the same memory, other
    steps copy. `offsets` and `data` are zero-copy Arrays, and pyarrow.array(b) reads it
    in place (__arrow_c_array__). Travels by reference to pool workers under every
    start method, by value under plain pickle.
    """

    def __init__(self, init=(), /):
        self._init(init, False)


collections.abc.Sequence.register(StrArray)
collections.abc.Sequence.register(BytesArray)


cdef Py_ssize_t _scan(const int64_t* offs, const char* data, Py_ssize_t start,
                      Py_ssize_t stop, const char* p, Py_ssize_t size,
                      bint count) noexcept nogil:
    cdef Py_ssize_t i, found = 0
    for i in range(start, stop):
        if (offs[i + 1] - offs[i] == size
                and (size == 0 or memcmp(data + offs[i], p, size) == 0)):
            if not count:
                return i
            found += 1
    return found if count else -1


cdef bint _strings_equal(_Strings a, _Strings b) except -1:
    cdef _Mapping keep_a = a._region._live()
    cdef _Mapping keep_b = b._region._live()
    cdef const int64_t* oa = a._offs()
    cdef const int64_t* ob = b._offs()
    cdef const char* da = a._region._addr + a._data
    cdef const char* db = b._region._addr + b._data
    cdef Py_ssize_t i, size
    if a._text != b._text or a._length != b._length:
        return False
    for i in range(a._length):
        size = oa[i + 1] - oa[i]
        if size != ob[i + 1] - ob[i] or memcmp(da + oa[i], db + ob[i], size) != 0:
            return False
    return True


@cython.no_gc
@cython.final
cdef class _StringsIterator:
    cdef:
        # Keeps the memory mapped; checked on every step, as it may be closed.
        Region _region
        Py_ssize_t _offsets
        Py_ssize_t _data
        # Items left, the next one, and the direction (1 or -1).
        Py_ssize_t _left
        Py_ssize_t _index
        Py_ssize_t _step
        bint _text
        # The last two ASCII str this iterator made, owned references (or NULL): when
        # the loop is done with the older one (a `for` loop still holds the newer), the
        # next item is written into it (cowbuf_str_from_ascii_into, which needs the
        # address of the one reference).
        PyObject* _older
        PyObject* _newer

    def __cinit__(self):
        self._region = _NO_REGION

    def __dealloc__(self):
        Py_XDECREF(self._older)
        Py_XDECREF(self._newer)

    def __iter__(self):
        return self

    def __next__(self):
        cdef char* addr = self._region._addr
        cdef Py_ssize_t i = self._index
        if self._left <= 0:
            raise StopIteration
        if addr == NULL:
            _raise_closed()
        cdef const int64_t* offs = <const int64_t*>(addr + self._offsets)
        cdef const char* p = addr + self._data + offs[i]
        cdef Py_ssize_t n = offs[i + 1] - offs[i]
        self._left -= 1
        self._index = i + self._step
        if not (self._text and cowbuf_is_ascii(p, n)):
            return _text_item(self._text, self._region, p, n)
        item = cowbuf_str_from_ascii_into(&self._older, p, n)
        Py_XDECREF(self._older)
        self._older = self._newer
        Py_INCREF(item)
        self._newer = <PyObject*>item
        return item

    def __length_hint__(self):
        return max(self._left, 0)


cdef _StringsIterator _strings_iterator(_Strings s, Py_ssize_t first, Py_ssize_t step):
    cdef _StringsIterator it = _StringsIterator.__new__(_StringsIterator)
    it._region = s._region
    it._offsets = s._offsets
    it._data = s._data
    it._left = s._length
    it._index = first
    it._step = step
    it._text = s._text
    return it


# -- pickling (see _pickling.pxi) --------------------------------------------------------

def _strings_from_bytes(bint text, offsets, data):
    """By value: a new array from its offsets (int64, n + 1 of them) and the bytes they
    count into. Checked before the array is made: the data may be crafted."""
    cdef Py_buffer o, d
    cdef Region region = None
    cdef Py_ssize_t n
    PyObject_GetBuffer(offsets, &o, PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(data, &d, PyBUF_SIMPLE)
        try:
            if o.len < 8 or o.len % 8:
                raise ValueError(f"bad pickle data: {o.len} bytes of offsets")
            n = o.len // 8 - 1
            region = _allocate(o.len + d.len, o.len + d.len >= PAGE)
            memcpy(region._addr, o.buf, o.len)
            memcpy(region._addr + o.len, d.buf, d.len)
        finally:
            PyBuffer_Release(&d)
    finally:
        PyBuffer_Release(&o)
    if not _offsets_ok(<const int64_t*>region._addr, n, region._nbytes - 8 * (n + 1)):
        region.close()
        raise ValueError("bad pickle data: the offsets are not those of an array")
    region.freeze()
    return _strings_view(text, region, 0, n, 8 * (n + 1), region._nbytes - 8 * (n + 1))


def _strings_on(Region region not None, bint text, Py_ssize_t offsets, Py_ssize_t length,
                Py_ssize_t data, Py_ssize_t data_nbytes):
    """By reference: the array with this geometry on a region that arrived; checked
    once per region and geometry in this process."""
    cdef _Mapping m = region._live()
    cdef const int64_t* offs
    cdef bint ok
    if not m.readonly:
        raise ValueError("a StrArray or BytesArray region must be frozen")
    if (offsets < 0 or offsets % 8 or length < 0 or data < 0 or data_nbytes < 0
            or length > (region._nbytes - offsets) // 8 - 1
            or data > region._nbytes or data_nbytes > region._nbytes - data):
        raise ValueError("bad StrArray or BytesArray geometry")
    geometry = (offsets, length, data, data_nbytes)
    checked = _checked_strings.get(region)
    if checked is None or geometry not in checked:
        offs = <const int64_t*>(region._addr + offsets)
        with nogil:
            ok = _offsets_ok(offs, length, data_nbytes)
        if not ok:
            raise ValueError("the offsets on this region are not those of an array")
        _checked_strings.setdefault(region, set()).add(geometry)
    return _strings_view(text, region, offsets, length, data, data_nbytes)


def _share_strings(_Strings s not None):
    s._offs()
    return _strings_on, (s._region, s._text, s._offsets, s._length, s._data, s._data_nbytes)
