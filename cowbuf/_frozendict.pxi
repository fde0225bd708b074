# FrozenDict: an immutable mapping in one frozen region: a compact hash table of slots
# and the records, in insertion order.
#
# Layout (every offset from the region's first byte, every part 8-byte aligned):
#   header   64 bytes (_FDHeader): magic, length, capacity, the hash key, where the
#            records are;
#   slots    `capacity` (a power of 2) uint64, at most 0.6 full: 0 for an empty slot,
#            else the top 24 bits of the key's hash over the record's offset / 8;
#   records  one per key, in insertion order (_FDRecord): the key's type and bytes,
#            and the value, inline (None, bool, int64, float) or after the key.
#
# A lookup hashes the key's canonical bytes with the map's own SipHash key, probes the
# slots linearly from hash & (capacity - 1), and reads one record: the one whose slot
# has the same top hash bits, nearly always the right one. dict reads its index, then
# the entry, then the key object to compare it, then writes the value's refcount.
#
# Keys are kept canonical, so that equal keys are equal bytes: str as UTF-8 (lone
# surrogates passed through), bytes as they are, ints in int64 range as 8 bytes, other
# ints as their minimal two's complement (little-endian). Numbers equal to an int are
# that int, as in a dict (True, 1 and 1.0 are one key).
#
# Invariant of every FrozenDict: its region is frozen (read-only in hardware wherever
# it is mapped) and passed _frozendict_check (every record and every slot lies within
# the region, one slot at least is empty) when the object was made, whoever wrote the
# memory: lookups and iteration read without bounds checks, and a probe always ends.

import numbers
import pickle
import reprlib

from cpython.dict cimport PyDict_Next
from cpython.float cimport PyFloat_Check, PyFloat_FromDouble
from cpython.unicode cimport PyUnicode_CheckExact
from libc.math cimport floor, isfinite
from libc.stdint cimport uint8_t, uint16_t

ctypedef struct _FDHeader:
    char magic[8]       # b"cowbufFD"
    uint64_t version    # 1
    uint64_t length     # keys
    uint64_t capacity   # slots: a power of 2
    uint64_t k0         # the SipHash key of this map
    uint64_t k1
    uint64_t records    # offset of the first record: just after the slots
    uint64_t end        # offset just after the last record

ctypedef struct _FDRecord:
    uint32_t key_nbytes
    uint8_t key_type    # _K_*
    uint8_t value_type  # _V_*
    uint16_t zero
    uint64_t value      # int64 or double bits; the bytes of a value after the key
    # then the key's bytes, then the value's bytes; the next record is 8-aligned

cdef enum:
    _FD_HEADER = 64
    _FD_RECORD = 16
    _FD_VERSION = 1
    # a slot: the top _TAG_BITS of the hash, over the record's offset / 8
    _OFFSET_BITS = 40
    # key types
    _K_STR = 1
    _K_BYTES = 2
    _K_INT = 3
    _K_BIGINT = 4
    # value types: the first four inline
    _V_NONE = 0
    _V_FALSE = 1
    _V_TRUE = 2
    _V_INT = 3
    _V_FLOAT = 4
    _V_BIGINT = 5
    _V_STR = 6
    _V_BYTES = 7
    _V_PICKLE = 8
    # lookups a batch of get_many() prefetches together
    _BATCH = 16

cdef uint64_t _OFFSET_MASK = (<uint64_t>1 << _OFFSET_BITS) - 1
cdef const char* _FD_MAGIC = b"cowbufFD"

# A key no FrozenDict can hold (a float that is not an integer, a tuple...): absent.
cdef object _ABSENT = object()


cdef inline Py_ssize_t _record_nbytes(const _FDRecord* rec) noexcept nogil:
    cdef uint64_t n = _FD_RECORD + rec.key_nbytes
    if rec.value_type >= _V_BIGINT:
        n += rec.value
    return <Py_ssize_t>((n + 7) & ~(<uint64_t>7))


cdef object _int_from_number(object x):
    """The int equal to the number x, or None if there is none."""
    try:
        if isinstance(x, numbers.Complex) and not isinstance(x, numbers.Real):
            if x.imag != 0:
                return None
            x = x.real
        i = int(x)
    except (TypeError, ValueError, ArithmeticError):
        return None
    return i if i == x else None


cdef bytes _bigint_bytes(object i):
    return i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)


cdef inline void _store_le64(char* out, int64_t v) noexcept nogil:
    cdef uint64_t u = <uint64_t>v
    cdef int k
    for k in range(8):
        out[k] = <char>((u >> (8 * k)) & 0xff)


cdef object _canonical(object key, _Key* out):
    """Fill `out` with the canonical bytes of a lookup key; return what holds them
    (keep it while out.p is read), or _ABSENT for a key no FrozenDict can hold.
    TypeError for an unhashable key, as a dict raises."""
    cdef int overflow = 0
    cdef long long v
    cdef double d
    if PyUnicode_Check(key):
        if cowbuf_str_is_ascii(key):
            out.p = <const char*>PyUnicode_DATA(key)
            out.n = PyUnicode_GET_LENGTH(key)
            out.type = _K_STR
            return key
        holder = _utf8(key)
        out.p = PyBytes_AS_STRING(holder)
        out.n = PyBytes_GET_SIZE(holder)
        out.type = _K_STR
        return holder
    if PyBytes_Check(key):
        out.p = PyBytes_AS_STRING(key)
        out.n = PyBytes_GET_SIZE(key)
        out.type = _K_BYTES
        return key
    if PyLong_Check(key):  # bool included: True is 1
        v = PyLong_AsLongLongAndOverflow(key, &overflow)
        if not overflow:
            _store_le64(out.buf, v)
            out.p = out.buf
            out.n = 8
            out.type = _K_INT
            return key
        holder = _bigint_bytes(int(key))
        out.p = PyBytes_AS_STRING(holder)
        out.n = PyBytes_GET_SIZE(holder)
        out.type = _K_BIGINT
        return holder
    if PyFloat_Check(key):
        d = PyFloat_AsDouble(key)
        if not isfinite(d) or d != floor(d):
            return _ABSENT
        return _canonical(int(d), out)
    hash(key)  # TypeError for unhashable keys, as in a dict
    if isinstance(key, memoryview) and (<memoryview>key).format in ("B", "b", "c"):
        # equal to bytes, and hashed alike (a read-only one: hash() checked it)
        return _canonical(key.tobytes(), out)
    if isinstance(key, numbers.Number):
        i = _int_from_number(key)
        if i is not None:
            return _canonical(i, out)
    return _ABSENT


cdef object _stored_key(object key):
    """What a key is stored as: str, bytes or int; TypeError for other keys."""
    if PyUnicode_Check(key) or PyBytes_Check(key):
        return key
    if PyLong_Check(key):
        return int(key)
    i = _int_from_number(key) if isinstance(key, numbers.Number) else None
    if i is None:
        raise TypeError(f"FrozenDict keys must be str, bytes or int, not "
                        f"{type(key).__name__}: key {reprlib.repr(key)}")
    return i


# no_gc: refers only to its Region (see Region).
@cython.no_gc
@cython.final
cdef class FrozenDict:
    """FrozenDict(mapping_or_pairs=(), /, **kwargs)

    An immutable mapping in shared memory, frozen (read-only everywhere): a compact hash
    table and the entries in insertion order, in one region. Keys are str, bytes and int
    (with Python's equalities: True, 1 and 1.0 are one key, and come back as the int).
    Values None, bool, int, float, str and bytes are stored as they are; any other value
    is pickled, and each access returns a new copy (never a shared object).

    Reading never writes to the shared pages, so forked workers that look up every key
    keep sharing them. The hash is the map's own (SipHash-1-3 under a random key stored
    in the map), so every process finds the same entries. Travels by reference to pool
    workers under every start method, by value under plain pickle.
    """

    def __cinit__(self):
        self._region = _NO_REGION

    def __init__(self, mapping_or_pairs=(), /, **kwargs):
        if self._region is not _NO_REGION:
            raise TypeError("FrozenDict.__init__() may only be called once")
        cdef FrozenDict built = _build_frozendict(_pairs_to_dict(mapping_or_pairs, kwargs))
        if self._region is not _NO_REGION:  # (iterating the pairs may have called __init__)
            raise TypeError("FrozenDict.__init__() may only be called once")
        self._attach(built._region)

    cdef int _attach(self, Region region) except -1:
        """Take the map on `region` (frozen and checked)."""
        cdef const _FDHeader* header = <const _FDHeader*>region._addr
        self._region = region
        self._length = <Py_ssize_t>header.length
        self._mask = header.capacity - 1
        self._k0 = header.k0
        self._k1 = header.k1
        self._records = <Py_ssize_t>header.records
        self._end = <Py_ssize_t>header.end
        return 0

    cdef inline char* _base(self) except NULL:
        cdef char* addr = self._region._addr
        if addr == NULL:
            _raise_closed()
        return addr

    cdef inline Py_ssize_t _probe(self, const char* base, _Key* key) noexcept nogil:
        """The offset of the record of `key` (hashed), or 0 if there is none."""
        cdef const uint64_t* slots = <const uint64_t*>(base + _FD_HEADER)
        cdef uint64_t i = key.hash & self._mask
        cdef uint64_t tag = key.hash >> _OFFSET_BITS
        cdef uint64_t slot
        cdef const _FDRecord* rec
        while True:
            slot = slots[i]
            if slot == 0:
                return 0
            if slot >> _OFFSET_BITS == tag:
                rec = <const _FDRecord*>(base + ((slot & _OFFSET_MASK) << 3))
                if (rec.key_nbytes == key.n and rec.key_type == key.type
                        and memcmp(<const char*>rec + _FD_RECORD, key.p, key.n) == 0):
                    return <Py_ssize_t>((slot & _OFFSET_MASK) << 3)
            i = (i + 1) & self._mask

    cdef inline void _hash(self, _Key* key) noexcept nogil:
        key.hash = cowbuf_siphash13(self._k0, self._k1, key.type, key.p, <size_t>key.n)

    cdef Py_ssize_t _lookup(self, object key) except -1:
        """The offset of the record of `key`, or 0 if there is none."""
        cdef _Key k
        self._base()
        holder = _canonical(key, &k)
        cdef char* base = self._base()  # (again: the key's own code may have run)
        if holder is _ABSENT:
            return 0
        self._hash(&k)
        return self._probe(base, &k)

    cdef object _value(self, const char* base, Py_ssize_t offset):
        """The value of the record at `offset` from base, as a new object. The caller
        keeps the memory mapped; only making a str can run a close() (see
        _Strings._item), and the record is read before anything else runs Python code."""
        cdef const _FDRecord* rec = <const _FDRecord*>(base + offset)
        cdef uint8_t vt = rec.value_type
        cdef const char* p
        if vt == _V_INT:
            return PyLong_FromLongLong(<int64_t>rec.value)
        if vt == _V_NONE:
            return None
        if vt == _V_TRUE:
            return True
        if vt == _V_FALSE:
            return False
        if vt == _V_FLOAT:
            return PyFloat_FromDouble((<const double*>&rec.value)[0])
        p = <const char*>rec + _FD_RECORD + rec.key_nbytes
        if vt == _V_STR:
            return _text_item(True, self._region, p, <Py_ssize_t>rec.value)
        data = PyBytes_FromStringAndSize(p, <Py_ssize_t>rec.value)
        if vt == _V_BYTES:
            return data
        if vt == _V_BIGINT:
            return int.from_bytes(data, "little", signed=True)
        return pickle.loads(data)

    cdef object _key(self, const char* base, Py_ssize_t offset):
        """The key of the record at `offset` from base, as a new object."""
        cdef const _FDRecord* rec = <const _FDRecord*>(base + offset)
        cdef const char* p = <const char*>rec + _FD_RECORD
        cdef uint64_t u = 0
        cdef int k
        if rec.key_type == _K_STR:
            return _text_item(True, self._region, p, rec.key_nbytes)
        if rec.key_type == _K_INT:
            for k in range(8):
                u |= <uint64_t>(<const unsigned char*>p)[k] << (8 * k)
            return PyLong_FromLongLong(<int64_t>u)
        data = PyBytes_FromStringAndSize(p, rec.key_nbytes)
        if rec.key_type == _K_BYTES:
            return data
        return int.from_bytes(data, "little", signed=True)

    # -- mapping

    def __getitem__(self, key):
        cdef char* base = self._region._addr
        cdef _Key k
        cdef Py_ssize_t offset
        if base != NULL and PyUnicode_CheckExact(key) and cowbuf_str_is_ascii(key):
            # the hot path: no Python code runs before the value is made
            k.p = <const char*>PyUnicode_DATA(key)
            k.n = PyUnicode_GET_LENGTH(key)
            k.type = _K_STR
            self._hash(&k)
            offset = self._probe(base, &k)
        else:
            offset = self._lookup(key)
        if offset == 0:
            raise KeyError(key)
        return self._value(self._region._addr, offset)

    def get(self, key, default=None, /):
        """The value of `key` if it is in the map, else `default`."""
        cdef Py_ssize_t offset = self._lookup(key)
        return default if offset == 0 else self._value(self._region._addr, offset)

    def __contains__(self, key):
        return self._lookup(key) != 0

    def __len__(self):
        self._base()
        return self._length

    def __iter__(self):
        self._base()
        return _frozendict_iterator(self, 0)

    def keys(self):
        """A set-like view of the keys (set operations give sets)."""
        self._base()
        return FrozenDictKeys(self)

    def values(self):
        """A view of the values."""
        self._base()
        return FrozenDictValues(self)

    def items(self):
        """A set-like view of the (key, value) pairs."""
        self._base()
        return FrozenDictItems(self)

    def _iter(self, int kind):
        # (for the views: 0 keys, 1 values, 2 items)
        self._base()
        return _frozendict_iterator(self, kind)

    def get_many(self, keys, default=None):
        """[self.get(k, default) for k in keys], in one call: the lookups of a batch
        overlap their memory accesses."""
        cdef tuple todo = tuple(keys)  # (a private copy: values' code may change `keys`)
        cdef Py_ssize_t n = len(todo), start, j, count
        cdef list result = [default] * n
        cdef _Key batch[_BATCH]
        cdef Py_ssize_t found[_BATCH]
        cdef list holders = [None] * _BATCH
        cdef const char* base
        cdef const uint64_t* slots
        cdef uint64_t slot
        cdef _Mapping keep = self._region._live()  # mapped whatever the values' code does
        base = self._region._addr
        slots = <const uint64_t*>(base + _FD_HEADER)
        for start in range(0, n, _BATCH):
            count = min(_BATCH, n - start)
            for j in range(count):
                holder = _canonical(todo[start + j], &batch[j])
                holders[j] = holder
                if holder is _ABSENT:
                    found[j] = -1
                    continue
                found[j] = 0
                self._hash(&batch[j])
                cowbuf_prefetch(&slots[batch[j].hash & self._mask])
            for j in range(count):
                if found[j] < 0:
                    continue
                # the record its slot points to, most likely the key's
                slot = slots[batch[j].hash & self._mask]
                if slot != 0:
                    cowbuf_prefetch(base + ((slot & _OFFSET_MASK) << 3))
            for j in range(count):
                if found[j] < 0:
                    continue
                found[j] = self._probe(base, &batch[j])
            for j in range(count):
                if found[j] > 0:
                    result[start + j] = self._value(base, found[j])
        return result

    def __eq__(self, other):
        if isinstance(other, FrozenDict) or isinstance(other, collections.abc.Mapping):
            return _frozendict_equal(self, other)
        return NotImplemented

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None

    # FrozenDict[str, int] in annotations evaluated at run time.
    __class_getitem__ = classmethod(GenericAlias)

    @property
    def nbytes(self):
        """Bytes of shared memory the map takes (table, keys and values)."""
        self._base()
        return self._region._nbytes

    @property
    def region(self):
        """The Region that holds the map (frozen)."""
        return self._region

    def __reduce_ex__(self, protocol):
        # By value for plain pickle and cloudpickle: the region's bytes, checked again
        # on the way in; cowbuf._sharing sends a reference instead (SHARED_TYPES).
        self._base()
        data = PickleBuffer(self._region) if protocol >= 5 else bytes(memoryview(self._region))
        return (_frozendict_from_bytes, (data,))

    def __repr__(self):
        if self._region._addr == NULL:
            return "<cowbuf.FrozenDict closed>"
        shown = []
        for k, v in self.items():
            if len(shown) == 8:
                shown.append("...")
                break
            shown.append(f"{reprlib.repr(k)}: {reprlib.repr(v)}")
        return f"cowbuf.FrozenDict({{{', '.join(shown)}}})"


collections.abc.Mapping.register(FrozenDict)


class FrozenDictKeys(collections.abc.KeysView):
    """The keys of a FrozenDict: a set-like view (&, |, -, ^ give sets)."""
    __slots__ = ()

    def __iter__(self):
        return self._mapping._iter(0)


class FrozenDictValues(collections.abc.ValuesView):
    """The values of a FrozenDict, in insertion order."""
    __slots__ = ()

    def __iter__(self):
        return self._mapping._iter(1)


class FrozenDictItems(collections.abc.ItemsView):
    """The (key, value) pairs of a FrozenDict: a set-like view."""
    __slots__ = ()

    def __iter__(self):
        return self._mapping._iter(2)


cdef bint _frozendict_equal(FrozenDict a, object b) except -1:
    if a is b:  # (its float NaN values are new objects at every access)
        a._base()
        return True
    if len(a) != len(b):
        return False
    for key, value in a.items():
        try:
            other = b[key]
        except KeyError:
            return False
        if not (other is value or other == value):
            return False
    return True


@cython.no_gc
@cython.final
cdef class _FrozenDictIterator:
    cdef:
        # The map (its region keeps the memory mapped; checked on every step).
        FrozenDict _map
        # Offset of the next record, and how many are left.
        Py_ssize_t _at
        Py_ssize_t _left
        # 0 keys, 1 values, 2 items
        int _kind

    def __iter__(self):
        return self

    def __next__(self):
        cdef Py_ssize_t at = self._at
        if self._left <= 0:
            raise StopIteration
        cdef char* base = self._map._base()
        self._at = at + _record_nbytes(<const _FDRecord*>(base + at))
        self._left -= 1
        if self._kind == 0:
            return self._map._key(base, at)
        if self._kind == 1:
            return self._map._value(base, at)
        key = self._map._key(base, at)
        base = self._map._base()  # (making the key may have run a close())
        return (key, self._map._value(base, at))

    def __length_hint__(self):
        return max(self._left, 0)


cdef _FrozenDictIterator _frozendict_iterator(FrozenDict m, int kind):
    cdef _FrozenDictIterator it = _FrozenDictIterator.__new__(_FrozenDictIterator)
    it._map = m
    it._at = m._records
    it._left = m._length
    it._kind = kind
    return it


# -- pickling (see _pickling.pxi) --------------------------------------------------------

# Regions this process received whose maps passed _frozendict_check: a map sent with
# every task of a pool is checked once per worker, not once per task.
_checked_maps = weakref.WeakSet()


def _frozendict_from_bytes(data):
    """By value: a new FrozenDict on a copy of the bytes of one, checked first."""
    cdef Py_buffer view
    cdef Region region
    cdef bint ok
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        region = _allocate(view.len, view.len >= PAGE)
        memcpy(region._addr, view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    with nogil:
        ok = _frozendict_check(region._addr, region._nbytes)
    if not ok:
        region.close()
        raise ValueError("bad pickle data: not the bytes of a FrozenDict")
    region.freeze()
    cdef FrozenDict result = FrozenDict.__new__(FrozenDict)
    result._attach(region)
    return result


def _frozendict_on(Region region not None):
    """By reference: the FrozenDict on a region that arrived; checked once per region in
    this process."""
    cdef _Mapping m = region._live()  # (mapped while the GIL is dropped)
    cdef bint ok
    if not m.readonly:
        raise ValueError("a FrozenDict region must be frozen")
    if region not in _checked_maps:
        with nogil:
            ok = _frozendict_check(region._addr, region._nbytes)
        if not ok:
            raise ValueError("this region does not hold a FrozenDict")
        _checked_maps.add(region)
    cdef FrozenDict result = FrozenDict.__new__(FrozenDict)
    result._attach(region)
    return result


def _share_frozendict(FrozenDict m not None):
    m._base()
    return _frozendict_on, (m._region,)


def _siphash(bytes key not None, bytes message not None, int c_rounds=1, int d_rounds=3):
    """SipHash-c-d of `message` under the 16-byte `key` (tests: the reference vectors)."""
    cdef uint64_t k0, k1
    if len(key) != 16 or not message:
        raise ValueError("a 16-byte key and a message of one byte at least")
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    return cowbuf_siphash_cd(k0, k1, <unsigned char>message[0], PyBytes_AS_STRING(message) + 1,
                             len(message) - 1, c_rounds, d_rounds)
