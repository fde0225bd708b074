# GIL-free loops over items of any two typecodes: equality and ordering of arrays item
# by item (as array.array compares), the hash of a frozen array by value, and the
# conversion of items from one typecode to another. The strided walk is _kernels.pxi's.

#
# Comparison, hashing and conversion read two kinds of items, or the items of a
# foreign buffer (an array.array, a memoryview), whose items need not be aligned:
# they read each item through memcpy into a _Num, and follow Python's rules for
# numbers, so that an int and a float are equal when Python says they are.

# Bytes that _first_difference compares with one memcmp before it looks closer.
cdef Py_ssize_t COMPARE_BLOCK = 4096


cdef struct _Num:
    bint real           # a floating-point number, in d; else an integer
    bint negative       # an integer below zero: bits holds its two's complement
    uint64_t bits
    double d


cdef inline void _read_num(char tc, const char* p, _Num* x) noexcept nogil:
    cdef signed char i8
    cdef short i16
    cdef int i32
    cdef long long i64
    cdef unsigned char u8
    cdef unsigned short u16
    cdef unsigned int u32
    cdef float f
    x.real = _is_float(tc)
    x.negative = False
    x.bits = 0
    x.d = 0
    if tc == c'd':
        memcpy(&x.d, p, 8)
    elif tc == c'f':
        memcpy(&f, p, 4)
        x.d = f
    elif _is_unsigned(tc):
        if _itemsize(tc) == 1:
            memcpy(&u8, p, 1)
            x.bits = u8
        elif _itemsize(tc) == 2:
            memcpy(&u16, p, 2)
            x.bits = u16
        elif _itemsize(tc) == 4:
            memcpy(&u32, p, 4)
            x.bits = u32
        else:
            memcpy(&x.bits, p, 8)
    else:
        if _itemsize(tc) == 1:
            memcpy(&i8, p, 1)
            i64 = i8
        elif _itemsize(tc) == 2:
            memcpy(&i16, p, 2)
            i64 = i16
        elif _itemsize(tc) == 4:
            memcpy(&i32, p, 4)
            i64 = i32
        else:
            memcpy(&i64, p, 8)
        x.negative = i64 < 0
        x.bits = <uint64_t>i64


cdef inline bint _integral(double d) noexcept nogil:
    """d is a whole number that an int64 or a uint64 holds."""
    return d == floor(d) and -9223372036854775808.0 <= d < 18446744073709551616.0


cdef inline bint _int_equals(const _Num* x, double d) noexcept nogil:
    # exact, as Python compares an int with a float
    if not _integral(d):
        return False
    if x.negative:
        return d < 0 and <long long>d == <long long>x.bits
    return d >= 0 and <uint64_t>d == x.bits


cdef inline bint _num_equal(const _Num* x, const _Num* y) noexcept nogil:
    if x.real and y.real:
        return x.d == y.d  # NaN equals nothing, -0.0 equals 0.0
    if not x.real and not y.real:
        return x.negative == y.negative and x.bits == y.bits
    return _int_equals(y, x.d) if x.real else _int_equals(x, y.d)


cdef Py_ssize_t _first_difference(const _Strided* a, const _Strided* b,
                                  Py_ssize_t n) noexcept nogil:
    """The C-order position of the first pair of items that Python's == finds
    unequal, or -1. a and b have the same shape but for the last axis, of which n
    items are compared."""
    cdef int last = a.ndim - 1
    cdef Py_ssize_t k, i, j, m, size = _itemsize(a.tc)
    cdef Py_ssize_t sa = a.strides[last], sb = b.strides[last]
    cdef bint same_bits = (a.tc == b.tc and not _is_float(a.tc) and sa == size
                           and sb == size)
    cdef const char* pa
    cdef const char* pb
    cdef _Num x, y
    for k in range(_lines(a) if n else 0):
        pa = _line_at(a, k)
        pb = _line_at(b, k)
        if same_bits:
            # integers of one type: equal exactly when their bytes are, so compare
            # blocks with memcmp, and look into the first block that differs
            j = 0
            while j < n * size:
                m = min(COMPARE_BLOCK, n * size - j)
                if memcmp(pa + j, pb + j, m):
                    while pa[j] == pb[j]:
                        j += 1
                    return k * n + j // size
                j += m
            continue
        for i in range(n):
            _read_num(a.tc, pa + i * sa, &x)
            _read_num(b.tc, pb + i * sb, &y)
            if not _num_equal(&x, &y):
                return k * n + i
    return -1


cdef inline uint64_t _mix64(uint64_t x) noexcept nogil:
    # the finaliser of splitmix64: every input bit moves every output bit
    x ^= x >> 30
    x *= 0xbf58476d1ce4e5b9ULL
    x ^= x >> 27
    x *= 0x94d049bb133111ebULL
    return x ^ (x >> 31)


cdef uint64_t _hash_lines(const _Strided* s) noexcept nogil:
    """A hash of the values of the items in C order, equal for equal arrays whatever
    their typecodes: a float that equals an integer is hashed as that integer."""
    cdef int last = s.ndim - 1
    cdef Py_ssize_t k, i, n = s.shape[last], stride = s.strides[last]
    cdef const char* p
    cdef uint64_t h = 0x243f6a8885a308d3ULL, key
    cdef _Num x
    for k in range(_lines(s)):
        p = _line_at(s, k)
        for i in range(n):
            _read_num(s.tc, p + i * stride, &x)
            if x.real and _integral(x.d):
                x.real = False
                x.negative = x.d < 0
                x.bits = <uint64_t><long long>x.d if x.negative else <uint64_t>x.d
            if x.real:
                memcpy(&key, &x.d, 8)
                key ^= 0x9e3779b97f4a7c15ULL
            else:
                key = x.bits ^ (0x7f4a7c159e3779b9ULL if x.negative else 0)
            h = (h ^ _mix64(key)) * 0x100000001b3ULL
    return h


cdef inline bint _num_fits(char tc, const _Num* x, _Value* v) noexcept nogil:
    """Convert x to the element type of tc as array.array would, or False where it
    raises (a float for an integer typecode, an integer out of range)."""
    if _is_float(tc):
        # through a double, as Python converts an int: 'f' rounds from that double
        if x.real:
            v.d = x.d
        elif x.negative:
            v.d = <double><long long>x.bits
        else:
            v.d = <double>x.bits
        return True
    if x.real:
        return False
    if _is_unsigned(tc):
        v.u = x.bits
        return not x.negative and x.bits <= _unsigned_max(tc)
    v.i = <long long>x.bits
    if x.negative:
        return v.i >= _signed_min(tc)
    return x.bits <= <uint64_t>_signed_max(tc)


cdef const char* _convert_lines(char tc, char* dst, const _Strided* s) noexcept nogil:
    """Store the items of s, in C order, as items of typecode tc in contiguous dst;
    the first item that does not convert, or NULL once all did."""
    cdef int last = s.ndim - 1
    cdef Py_ssize_t k, i, n = s.shape[last], stride = s.strides[last]
    cdef Py_ssize_t size = _itemsize(tc)
    cdef const char* p
    cdef _Num x
    cdef _Value v
    for k in range(_lines(s)):
        p = _line_at(s, k)
        for i in range(n):
            _read_num(s.tc, p + i * stride, &x)
            if not _num_fits(tc, &x, &v):
                return p + i * stride
            _store(tc, dst, v)
            dst += size
    return NULL
