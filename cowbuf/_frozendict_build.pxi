# FrozenDict, building: a dict's pairs laid out as slots and records in a region of
# their own (the layout is described in _frozendict.pxi); and the check that memory
# this process did not write (a received map, unpickled bytes) holds a valid table.


cdef dict _pairs_to_dict(object init, dict kwargs):
    """A private dict of the entries (dict's own rules: last value wins, first position
    kept), with TypeError naming the key that cannot be one."""
    cdef dict d
    if isinstance(init, dict):
        d = dict(init)
    elif isinstance(init, collections.abc.Mapping) or hasattr(init, "keys"):
        d = {}
        for key in init.keys():
            _set_entry(d, key, init[key])
    else:
        if isinstance(init, (str, bytes)):
            raise TypeError(f"FrozenDict() takes a mapping or an iterable of pairs, not "
                            f"{type(init).__name__}")
        try:
            pairs = init if isinstance(init, (list, tuple)) else list(init)
        except TypeError:
            raise TypeError(f"FrozenDict() takes a mapping or an iterable of pairs, not "
                            f"{type(init).__name__}") from None
        try:
            d = dict(pairs)  # dict's own speed; on failure, again to name the culprit
        except (TypeError, ValueError):
            d = {}
        else:
            pairs = ()
        for index, item in enumerate(pairs):
            try:
                key, value = item
            except (TypeError, ValueError):
                raise TypeError(f"FrozenDict() takes a mapping or an iterable of pairs: "
                                f"item {index} is {reprlib.repr(item)}") from None
            _set_entry(d, key, value)
    for key, value in kwargs.items():
        _set_entry(d, key, value)
    return d


cdef int _set_entry(dict d, object key, object value) except -1:
    try:
        d[key] = value
    except TypeError as exc:
        raise TypeError(f"FrozenDict key {reprlib.repr(key)} cannot be a key: {exc}") from None
    return 0


cdef inline Py_ssize_t _aligned8(Py_ssize_t n) noexcept nogil:
    return (n + 7) & ~(<Py_ssize_t>7)


cdef FrozenDict _build_frozendict(dict d):
    """A new FrozenDict of the entries of d (a private dict: nothing else changes it)."""
    cdef Py_ssize_t n = len(d), pos = 0, k = 0, total = 0, key_n, value_n, at
    cdef PyObject* pkey
    cdef PyObject* pvalue
    cdef uint64_t capacity = 8
    cdef int overflow
    cdef long long iv
    # entries whose key or value is kept as something other than itself:
    # index -> stored key (an int, the bytes of a big int), value (pickle, big int bytes)
    cdef dict keys_as = {}
    cdef dict values_as = {}
    # pass 1: what every record holds, and how big it is
    while PyDict_Next(d, &pos, &pkey, &pvalue):
        key = <object>pkey
        value = <object>pvalue
        if PyUnicode_Check(key):
            key_n = _utf8_nbytes(key)
        elif PyBytes_Check(key):
            key_n = PyBytes_GET_SIZE(key)
        else:
            stored = _stored_key(key)
            if not (PyLong_CheckExact(key) and stored is key):
                keys_as[k] = stored
            iv = PyLong_AsLongLongAndOverflow(stored, &overflow)
            if overflow:
                stored = keys_as[k] = _bigint_bytes(stored)
                key_n = PyBytes_GET_SIZE(stored)
            else:
                key_n = 8
        if key_n > <Py_ssize_t>0xffffffff:
            raise ValueError(f"FrozenDict key {reprlib.repr(key)} is longer than 4 GiB")
        value_n = 0
        if value is None or value is True or value is False or type(value) is float:
            pass
        elif type(value) is int:
            PyLong_AsLongLongAndOverflow(value, &overflow)
            if overflow:
                values_as[k] = _bigint_bytes(value)
                value_n = PyBytes_GET_SIZE(values_as[k])
        elif type(value) is str:
            value_n = _utf8_nbytes(value)
        elif type(value) is bytes:
            value_n = PyBytes_GET_SIZE(value)
        else:
            try:
                values_as[k] = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise TypeError(f"the value of FrozenDict key {reprlib.repr(key)} can be "
                                f"neither stored nor pickled: {exc!r}") from exc
            value_n = PyBytes_GET_SIZE(values_as[k])
        total += _aligned8(_FD_RECORD + key_n + value_n)
        k += 1
    while capacity * 3 < <uint64_t>n * 5:  # at most 0.6 full
        capacity *= 2
    cdef Py_ssize_t records = _FD_HEADER + 8 * <Py_ssize_t>capacity
    if total > LLONG_MAX // 4 - records or records + total >= (<Py_ssize_t>1 << 43):
        raise MemoryError(f"cannot map a FrozenDict of {n} entries and {total} bytes")
    cdef Region region = _allocate(records + total, records + total >= PAGE)
    try:
        _fill_frozendict(region, d, keys_as, values_as, capacity, records, records + total)
    except BaseException:
        region.close()  # nothing half-built is left: nobody else has the region
        raise
    region.freeze()
    cdef FrozenDict result = FrozenDict.__new__(FrozenDict)
    result._attach(region)
    return result


cdef int _fill_frozendict(Region region, dict d, dict keys_as, dict values_as,
                          uint64_t capacity, Py_ssize_t records, Py_ssize_t end) except -1:
    """Pass 2 of _build_frozendict: write the header, the records and the slots."""
    cdef char* base = region._addr
    cdef _FDHeader* header = <_FDHeader*>base
    cdef uint64_t* slots = <uint64_t*>(base + _FD_HEADER)
    cdef _FDRecord* rec
    cdef char* p
    cdef Py_ssize_t pos = 0, k = 0, at = records, n
    cdef PyObject* pkey
    cdef PyObject* pvalue
    cdef _Key key
    cdef uint64_t i, mask = capacity - 1
    cdef Py_ssize_t other
    cdef bytes seed = os.urandom(16)
    memcpy(header.magic, _FD_MAGIC, 8)
    header.version = _FD_VERSION
    header.length = len(d)
    header.capacity = capacity
    memcpy(&header.k0, PyBytes_AS_STRING(seed), 8)
    memcpy(&header.k1, PyBytes_AS_STRING(seed) + 8, 8)
    header.records = records
    header.end = end
    cdef FrozenDict probe = FrozenDict.__new__(FrozenDict)
    probe._region = region
    probe._mask = mask
    probe._k0 = header.k0
    probe._k1 = header.k1
    while PyDict_Next(d, &pos, &pkey, &pvalue):
        key_obj = <object>pkey
        value = <object>pvalue
        rec = <_FDRecord*>(base + at)
        p = <char*>rec + _FD_RECORD
        if PyUnicode_Check(key_obj):
            rec.key_type = _K_STR
        elif PyBytes_Check(key_obj):
            rec.key_type = _K_BYTES
        else:
            if keys_as:
                key_obj = keys_as.get(k, key_obj)
            rec.key_type = _K_BIGINT if PyBytes_Check(key_obj) else _K_INT
        if rec.key_type == _K_STR:
            n = _utf8_nbytes(key_obj)
            _utf8_write(key_obj, p)
        elif rec.key_type == _K_INT:
            n = 8
            _store_le64(p, PyLong_AsLongLong(key_obj))
        else:
            n = PyBytes_GET_SIZE(key_obj)
            memcpy(p, PyBytes_AS_STRING(key_obj), n)
        rec.key_nbytes = <uint32_t>n
        p += n
        stored = values_as.get(k) if values_as else None
        if stored is not None:
            rec.value_type = _V_PICKLE if type(value) is not int else _V_BIGINT
            rec.value = <uint64_t>PyBytes_GET_SIZE(stored)
            memcpy(p, PyBytes_AS_STRING(stored), rec.value)
        elif value is None:
            rec.value_type = _V_NONE
        elif value is True:
            rec.value_type = _V_TRUE
        elif value is False:
            rec.value_type = _V_FALSE
        elif type(value) is int:
            rec.value_type = _V_INT
            rec.value = <uint64_t>PyLong_AsLongLong(value)
        elif type(value) is float:
            rec.value_type = _V_FLOAT
            (<double*>&rec.value)[0] = PyFloat_AsDouble(value)
        elif type(value) is str:
            rec.value_type = _V_STR
            rec.value = <uint64_t>_utf8_nbytes(value)
            _utf8_write(value, p)
        else:
            rec.value_type = _V_BYTES
            rec.value = <uint64_t>PyBytes_GET_SIZE(value)
            memcpy(p, PyBytes_AS_STRING(value), rec.value)
        # its slot
        key.p = <char*>rec + _FD_RECORD
        key.n = rec.key_nbytes
        key.type = rec.key_type
        probe._hash(&key)
        other = probe._probe(base, &key)
        if other:  # (keys of types whose equality dict saw differently)
            raise TypeError(
                f"FrozenDict keys {reprlib.repr(probe._key(base, other))} and "
                f"{reprlib.repr(<object>pkey)} are one key once stored")
        i = key.hash & mask
        while slots[i] != 0:
            i = (i + 1) & mask
        slots[i] = (key.hash >> _OFFSET_BITS << _OFFSET_BITS) | (<uint64_t>at >> 3)
        at += _record_nbytes(rec)
        k += 1
    return 0


cdef bint _frozendict_check(const char* base, Py_ssize_t nbytes) noexcept nogil:
    """The invariant of FrozenDict (see the top of this file) for the map at base."""
    cdef const _FDHeader* header = <const _FDHeader*>base
    cdef const uint64_t* slots = <const uint64_t*>(base + _FD_HEADER)
    cdef const _FDRecord* rec
    cdef uint64_t capacity, at, end, count, slot, offset, used = 0, i
    if nbytes < _FD_HEADER or memcmp(header.magic, _FD_MAGIC, 8) != 0:
        return False
    capacity = header.capacity
    end = header.end
    if (header.version != _FD_VERSION or capacity == 0 or capacity & (capacity - 1)
            or capacity > <uint64_t>nbytes // 8
            or header.records != _FD_HEADER + 8 * capacity
            or end > <uint64_t>nbytes or end < header.records
            or header.length >= capacity):
        return False
    # the records, one after the other: each within the region, `length` of them
    at = header.records
    count = 0
    while at < end:
        if not _record_ok(base, at, end):
            return False
        at += <uint64_t>_record_nbytes(<const _FDRecord*>(base + at))
        count += 1
    if at != end or count != header.length:
        return False
    # every slot in use points at a record within the region; one slot is free at least
    for i in range(capacity):
        slot = slots[i]
        if slot == 0:
            continue
        used += 1
        offset = (slot & _OFFSET_MASK) << 3
        if offset < header.records or not _record_ok(base, offset, end):
            return False
    return used == header.length


cdef inline bint _record_ok(const char* base, uint64_t at, uint64_t end) noexcept nogil:
    cdef const _FDRecord* rec
    cdef uint64_t room
    if at % 8 or at > end or end - at < _FD_RECORD:
        return False
    rec = <const _FDRecord*>(base + at)
    room = end - at - _FD_RECORD
    if rec.key_type < _K_STR or rec.key_type > _K_BIGINT or rec.value_type > _V_PICKLE:
        return False
    if rec.key_nbytes > room or (rec.key_type == _K_INT and rec.key_nbytes != 8):
        return False
    if rec.value_type >= _V_BIGINT and rec.value > room - rec.key_nbytes:
        return False
    return True
