# Arrow interop: the PyCapsule interface of the Arrow C data interface (_arrow.h), for
# __arrow_c_array__. pyarrow.array(x), polars and every other Arrow consumer then read
# cowbuf memory in place; what they hold is counted as a buffer export of the owner.
# StrArray and BytesArray export three buffers (no validity bitmap, offsets, data); a
# numeric Array exports two (none, its items) with a primitive format ("l" for int64,
# "g" for float64...).


cdef tuple _arrow_capsules(object owner, const char* format, Py_ssize_t length,
                           Py_ssize_t offset, const Py_ssize_t* buffer_offsets,
                           int n_buffers):
    """(schema capsule, array capsule) of an array of `length` items from item `offset`
    of its buffers, which lie in the memory `owner` exports (buffer_offsets: bytes from
    its first byte; -1 for an absent buffer). `format` must be a string literal."""
    schema = cowbuf_arrow_schema_capsule(format)
    array = cowbuf_arrow_array_capsule(owner, length, offset, n_buffers, buffer_offsets)
    return schema, array


cdef const char* _arrow_format(char typecode, Py_ssize_t itemsize) except NULL:
    """The Arrow format string of a typecode's items (a literal: the schema keeps it)."""
    if typecode == c'f':
        return "f"
    if typecode == c'd':
        return "g"
    cdef bint unsigned = _is_unsigned(typecode)
    if itemsize == 1:
        return "C" if unsigned else "c"
    if itemsize == 2:
        return "S" if unsigned else "s"
    if itemsize == 4:
        return "I" if unsigned else "i"
    if itemsize == 8:
        return "L" if unsigned else "l"
    raise SystemError(f"no Arrow format for typecode {chr(typecode)!r}")
