# Typecodes: element sizes, conversions between Python numbers and C values, and
# the classification of buffer formats.

ctypedef union _Value:
    long long i
    unsigned long long u
    double d


cdef inline Py_ssize_t _itemsize(char tc) noexcept nogil:
    if tc == c'b' or tc == c'B':
        return 1
    if tc == c'h' or tc == c'H':
        return sizeof(short)
    if tc == c'i' or tc == c'I':
        return sizeof(int)
    if tc == c'l' or tc == c'L':
        return sizeof(long)
    if tc == c'f':
        return sizeof(float)
    return 8  # q Q d


cdef inline bint _is_float(char tc) noexcept nogil:
    return tc == c'f' or tc == c'd'


cdef inline bint _is_unsigned(char tc) noexcept nogil:
    return tc == c'B' or tc == c'H' or tc == c'I' or tc == c'L' or tc == c'Q'


cdef const char* _format(char tc) noexcept nogil:
    if tc == c'b': return "b"
    if tc == c'B': return "B"
    if tc == c'h': return "h"
    if tc == c'H': return "H"
    if tc == c'i': return "i"
    if tc == c'I': return "I"
    if tc == c'l': return "l"
    if tc == c'L': return "L"
    if tc == c'q': return "q"
    if tc == c'Q': return "Q"
    if tc == c'f': return "f"
    return "d"


cdef char _parse_typecode(object typecode) except 0:
    if not isinstance(typecode, str):
        raise TypeError(f"typecode must be a str, not {type(typecode).__name__}")
    if len(<str>typecode) != 1 or typecode not in TYPECODES:
        raise ValueError(_TYPECODE_ERROR)
    return <char>ord(typecode)


cdef long long _signed_min(char tc) noexcept nogil:
    if tc == c'b': return SCHAR_MIN
    if tc == c'h': return SHRT_MIN
    if tc == c'i': return INT_MIN
    if tc == c'l': return LONG_MIN
    return LLONG_MIN


cdef long long _signed_max(char tc) noexcept nogil:
    if tc == c'b': return SCHAR_MAX
    if tc == c'h': return SHRT_MAX
    if tc == c'i': return INT_MAX
    if tc == c'l': return LONG_MAX
    return LLONG_MAX


cdef unsigned long long _unsigned_max(char tc) noexcept nogil:
    if tc == c'B': return UCHAR_MAX
    if tc == c'H': return USHRT_MAX
    if tc == c'I': return UINT_MAX
    if tc == c'L': return ULONG_MAX
    return ULLONG_MAX


cdef object _range_error(char tc, object value):
    if _is_unsigned(tc):
        low, high = 0, _unsigned_max(tc)
    else:
        low, high = _signed_min(tc), _signed_max(tc)
    return OverflowError(
        f"{value} is out of range for typecode '{chr(tc)}' ({low}..{high})")


cdef int _convert(char tc, object value, _Value* out) except -1:
    """Convert a Python number to the element type of `tc`: TypeError for a value of
    the wrong type, OverflowError for one out of range (as array.array does)."""
    cdef object number
    if tc == c'd' or tc == c'f':
        # like array.array, a double too large for 'f' becomes inf
        out.d = PyFloat_AsDouble(value)
        return 0
    number = value if PyLong_CheckExact(value) else PyNumber_Index(value)
    if _is_unsigned(tc):
        if number < 0:
            raise _range_error(tc, number)
        try:
            out.u = PyLong_AsUnsignedLongLong(number)
        except OverflowError:
            raise _range_error(tc, number) from None
        if out.u > _unsigned_max(tc):
            raise _range_error(tc, number)
    else:
        try:
            out.i = PyLong_AsLongLong(number)
        except OverflowError:
            raise _range_error(tc, number) from None
        if out.i < _signed_min(tc) or out.i > _signed_max(tc):
            raise _range_error(tc, number)
    return 0


cdef inline void _store(char tc, char* p, _Value v) noexcept nogil:
    if tc == c'q': (<long long*>p)[0] = v.i
    elif tc == c'd': (<double*>p)[0] = v.d
    elif tc == c'b': (<signed char*>p)[0] = <signed char>v.i
    elif tc == c'B': (<unsigned char*>p)[0] = <unsigned char>v.u
    elif tc == c'h': (<short*>p)[0] = <short>v.i
    elif tc == c'H': (<unsigned short*>p)[0] = <unsigned short>v.u
    elif tc == c'i': (<int*>p)[0] = <int>v.i
    elif tc == c'I': (<unsigned int*>p)[0] = <unsigned int>v.u
    elif tc == c'l': (<long*>p)[0] = <long>v.i
    elif tc == c'L': (<unsigned long*>p)[0] = <unsigned long>v.u
    elif tc == c'Q': (<unsigned long long*>p)[0] = v.u
    else: (<float*>p)[0] = <float>v.d


cdef inline object _load(char tc, const char* p):
    if tc == c'q': return PyLong_FromLongLong((<const long long*>p)[0])
    if tc == c'd': return (<const double*>p)[0]
    if tc == c'b': return (<const signed char*>p)[0]
    if tc == c'B': return (<const unsigned char*>p)[0]
    if tc == c'h': return (<const short*>p)[0]
    if tc == c'H': return (<const unsigned short*>p)[0]
    if tc == c'i': return (<const int*>p)[0]
    if tc == c'I': return (<const unsigned int*>p)[0]
    if tc == c'l': return (<const long*>p)[0]
    if tc == c'L': return (<const unsigned long*>p)[0]
    if tc == c'Q': return PyLong_FromUnsignedLongLong((<const unsigned long long*>p)[0])
    return <double>(<const float*>p)[0]


# -- buffer formats ----------------------------------------------------------------

cdef int _format_kind(const char* fmt, Py_ssize_t* size) noexcept:
    """Classify a buffer format of one element: 1 signed integer, 2 unsigned integer,
    3 floating point (half floats included), 0 anything else (bool, char, pointers,
    structs, other byte orders). Sets *size for kinds 1 to 3."""
    cdef char order = c'@'
    cdef char code
    cdef int kind
    if fmt == NULL:
        size[0] = 1
        return 2
    if fmt[0] == c'@' or fmt[0] == c'=' or fmt[0] == c'<' or fmt[0] == c'>' or fmt[0] == c'!':
        order = fmt[0]
        fmt += 1
    if fmt[0] == c'1' and fmt[1] != 0:
        fmt += 1  # an explicit repeat count of one
    code = fmt[0]
    if code == 0 or fmt[1] != 0:
        return 0
    if (order == c'>' or order == c'!') and LITTLE_ENDIAN:
        return 0
    if order == c'<' and not LITTLE_ENDIAN:
        return 0
    # Every code of the struct module: only these are numbers (#9: 'e' is a float).
    if code in b"bhilqn":
        kind = 1
    elif code in b"BHILQN":
        kind = 2
    elif code in b"efd":
        kind = 3
    else:
        return 0
    if order == c'@':  # native sizes
        if code == c'b' or code == c'B': size[0] = 1
        elif code == c'h' or code == c'H' or code == c'e': size[0] = sizeof(short)
        elif code == c'i' or code == c'I': size[0] = sizeof(int)
        elif code == c'l' or code == c'L': size[0] = sizeof(long)
        elif code == c'q' or code == c'Q': size[0] = sizeof(long long)
        elif code == c'n' or code == c'N': size[0] = sizeof(Py_ssize_t)
        elif code == c'f': size[0] = sizeof(float)
        else: size[0] = sizeof(double)
    else:  # the standard sizes of the struct module; n and N are native only
        if code == c'b' or code == c'B': size[0] = 1
        elif code == c'h' or code == c'H' or code == c'e': size[0] = 2
        elif code == c'i' or code == c'I' or code == c'l' or code == c'L' or code == c'f':
            size[0] = 4
        elif code == c'q' or code == c'Q' or code == c'd': size[0] = 8
        else: return 0
    return kind


cdef inline int _typecode_kind(char tc) noexcept:
    if _is_float(tc):
        return 3
    return 2 if _is_unsigned(tc) else 1


cdef str _format_name(const char* fmt):
    return "B" if fmt == NULL else (<bytes>fmt).decode("ascii", "replace")


cdef int _check_format(char tc, Py_buffer* view, str what) except -1:
    """TypeError unless the buffer holds elements of exactly the type of `tc`."""
    cdef Py_ssize_t size = 0
    cdef int kind = _format_kind(view.format, &size)
    if kind != _typecode_kind(tc) or size != _itemsize(tc) or view.itemsize != size:
        raise TypeError(
            f"{what}: buffer format '{_format_name(view.format)}' does not match "
            f"typecode '{chr(tc)}' (convert it first, e.g. numpy.asarray(x, "
            f"dtype='{chr(tc)}'))")
    return 0


cdef int _get_items(object obj, Py_buffer* view, char tc, str what) except -1:
    """Acquire the buffer of `obj` (read-only, any strides) into `view` and check that
    it holds items of exactly the type of `tc`: TypeError, with nothing held, if not.
    The caller releases `view`."""
    PyObject_GetBuffer(obj, view, PyBUF_RECORDS_RO)
    try:
        _check_format(tc, view, what)
    except BaseException:
        PyBuffer_Release(view)
        raise
    return 0


cdef char _buffer_typecode(const Py_buffer* view) noexcept:
    """The typecode of the items of a buffer (native int64 items read as 'q',
    whatever their format letter), or 0 for a format that is not a number of cowbuf's
    typecodes (half floats, bools, chars, other byte orders, structs)."""
    cdef Py_ssize_t size = 0
    cdef int kind = _format_kind(view.format, &size)
    cdef const char* codes
    cdef int k
    if kind == 0 or size != view.itemsize:
        return 0
    codes = "fd" if kind == 3 else "bhiq" if kind == 1 else "BHIQ"
    for k in range(2 if kind == 3 else 4):
        if _itemsize(codes[k]) == size:
            return codes[k]
    return 0


cdef inline object _from_bits(char tc, uint64_t bits):
    if tc == c'i':
        return <int>(<uint32_t>bits)
    if tc == c'I':
        return <uint32_t>bits
    if _is_unsigned(tc):
        return PyLong_FromUnsignedLongLong(bits)
    return PyLong_FromLongLong(<long long>bits)


cdef inline uint64_t _delta_bits(char tc, object value) except? 0xffffffffffffffff:
    """An addend for atomic adds on typecode `tc`, as two's-complement bits: the
    element's range, or for unsigned types anything from -2**(bits-1) up."""
    cdef int overflow = 0
    cdef long long v
    if PyLong_CheckExact(value):
        # the common case in C: every int64 is a valid addend to an 8-byte element
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow and (_itemsize(tc) == 8 or (
                v >= INT_MIN and v <= (<long long>UINT_MAX if tc == c'I' else INT_MAX))):
            return <uint64_t>v
    return _delta_bits_slow(tc, value)


cdef uint64_t _delta_bits_slow(char tc, object value) except? 0xffffffffffffffff:
    number = value if PyLong_CheckExact(value) else PyNumber_Index(value)
    # Python ints: in C `1 << 63` (or 1 << 31 on an int) overflows
    cdef object one = 1
    bits = 8 * _itemsize(tc)
    low = -(one << (bits - 1))
    high = (one << bits) - 1 if _is_unsigned(tc) else (one << (bits - 1)) - 1
    if number < low or number > high:
        raise OverflowError(
            f"{number} is out of range for an addend to typecode '{chr(tc)}' ({low}..{high})")
    return <uint64_t>(number & 0xffffffffffffffff)


cdef inline uint64_t _int_bits(char tc, const char* p, bint* negative) noexcept:
    cdef long long s
    if _is_unsigned(tc):
        negative[0] = False
        if tc == c'B': return (<const unsigned char*>p)[0]
        if tc == c'H': return (<const unsigned short*>p)[0]
        if tc == c'I': return (<const unsigned int*>p)[0]
        if tc == c'L': return (<const unsigned long*>p)[0]
        return (<const unsigned long long*>p)[0]
    if tc == c'b': s = (<const signed char*>p)[0]
    elif tc == c'h': s = (<const short*>p)[0]
    elif tc == c'i': s = (<const int*>p)[0]
    elif tc == c'l': s = (<const long*>p)[0]
    else: s = (<const long long*>p)[0]
    negative[0] = s < 0
    return <uint64_t>s
