# Iterators over an Array: the items of one dimension, the rows of more. Both pickle
# as iter() of the view they walk and their position, as array.array's iterators do.


@cython.no_gc
@cython.final
cdef class _ArrayIterator:
    """The items of a one-dimensional array, in order or reversed."""
    cdef:
        # Keeps the memory mapped; checked on every step, as it may be closed.
        Region _region
        char _typecode
        Py_ssize_t _offset
        Py_ssize_t _stride
        Py_ssize_t _length
        Py_ssize_t _index
        bint _readonly

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

    def __reduce__(self):
        # iter() of the view walked (reversed for reversed()), at the same position
        return iter, (_array_view(self._region, self._typecode, self._offset, self._length,
                                  self._stride, self._readonly),), self._index

    def __setstate__(self, state):
        self._index = min(max(PyNumber_AsSsize_t(state, OverflowError), 0), self._length)


@cython.no_gc
@cython.final
cdef class _RowIterator:
    """The rows of an array of more than one dimension, in order or reversed."""
    cdef:
        Array _array
        bint _reversed
        Py_ssize_t _index

    def __iter__(self):
        return self

    def __next__(self):
        cdef Array a = self._array
        cdef Py_ssize_t i = self._index
        if a is None or i >= a._length:
            raise StopIteration
        self._index = i + 1
        return _row(a, a._length - 1 - i if self._reversed else i)

    def __length_hint__(self):
        return 0 if self._array is None else self._array._length - self._index

    def __reduce__(self):
        return iter, (self._array[::-1] if self._reversed else self._array,), self._index

    def __setstate__(self, state):
        cdef Py_ssize_t i = PyNumber_AsSsize_t(state, OverflowError)
        self._index = min(max(i, 0), 0 if self._array is None else self._array._length)


cdef _RowIterator _rows(Array a, bint reverse):
    cdef _RowIterator it = _RowIterator.__new__(_RowIterator)
    it._array = a
    it._reversed = reverse
    return it
