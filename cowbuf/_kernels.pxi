# Loops over typed items that run without the GIL: fill, sum, min, max, gather and
# scatter over a fused numeric type; the walk of an N-d view as lines of its last
# axis, which every bulk operation uses; and the loops that read numbers of any
# typecode (comparison, hashing, conversion, search).

from libc.math cimport floor
from libc.stdint cimport uint16_t
from libc.string cimport memset

# An N-d strided view of items, for the loops below: every bulk operation walks it as
# lines along its last axis, in C order (a 1-d view is one line).
cdef struct _Strided:
    char* buf                       # item 0
    char tc                         # the typecode of the items
    int ndim                        # 1..MAX_NDIM
    Py_ssize_t shape[MAX_NDIM]
    Py_ssize_t strides[MAX_NDIM]    # in bytes


cdef bint _strided_of_buffer(const Py_buffer* view, _Strided* s) noexcept:
    """Describe the items of a foreign buffer (taken with PyBUF_RECORDS_RO); False
    if they are not numbers of a typecode, or have no dimension or too many."""
    cdef int d
    s.tc = _buffer_typecode(view)
    if s.tc == 0 or view.ndim < 1 or view.ndim > MAX_NDIM:
        return False
    s.buf = <char*>view.buf
    s.ndim = view.ndim
    for d in range(view.ndim):
        s.shape[d] = view.shape[d]
        s.strides[d] = view.strides[d]
    return True


cdef inline Py_ssize_t _nitems(const _Strided* s) noexcept nogil:
    cdef Py_ssize_t n = 1
    cdef int d
    for d in range(s.ndim):
        n *= s.shape[d]
    return n


cdef inline Py_ssize_t _lines(const _Strided* s) noexcept nogil:
    """Lines along the last axis (0 if the view has no items)."""
    cdef Py_ssize_t n = 1
    cdef int d
    for d in range(s.ndim - 1):
        n *= s.shape[d]
    return n if s.shape[s.ndim - 1] else 0


@cython.cdivision(True)
cdef inline char* _line_at(const _Strided* s, Py_ssize_t k) noexcept nogil:
    """The first item of line k (0 <= k < _lines(s))."""
    cdef char* p = s.buf
    cdef int d
    for d in range(s.ndim - 2, -1, -1):
        p += (k % s.shape[d]) * s.strides[d]
        k //= s.shape[d]
    return p


cdef void _coalesce(_Strided* s) noexcept nogil:
    """Walk the same items in the same order in as few lines as can be: drop the axes
    of extent 1 and merge each axis into the next where their steps line up (a
    C-contiguous view becomes one line)."""
    cdef int d, out = 0
    if _nitems(s) == 0:
        s.ndim = 1
        s.shape[0] = 0
        return
    for d in range(s.ndim):
        if s.shape[d] != 1:
            s.shape[out] = s.shape[d]
            s.strides[out] = s.strides[d]
            out += 1
    if out == 0:  # a single item
        s.shape[0] = 1
        s.strides[0] = _itemsize(s.tc)
        out = 1
    s.ndim = out
    out = 0
    for d in range(1, s.ndim):
        if s.strides[out] == s.shape[d] * s.strides[d]:
            s.shape[out] *= s.shape[d]
            s.strides[out] = s.strides[d]
        else:
            out += 1
            s.shape[out] = s.shape[d]
            s.strides[out] = s.strides[d]
    s.ndim = out + 1


ctypedef fused num_t:
    signed char
    unsigned char
    short
    unsigned short
    int
    unsigned int
    long
    unsigned long
    long long
    unsigned long long
    float
    double

ctypedef fused small_int_t:
    signed char
    unsigned char
    short
    unsigned short
    int
    unsigned int

ctypedef fused real_t:
    float
    double


cdef void _fill_k(num_t* p, Py_ssize_t n, Py_ssize_t step, num_t v) noexcept nogil:
    cdef Py_ssize_t i
    if step == 1:
        for i in range(n):
            p[i] = v
    else:
        for i in range(n):
            p[i * step] = v


cdef void _fill(char tc, char* p, Py_ssize_t n, Py_ssize_t stride, _Value v) noexcept nogil:
    cdef Py_ssize_t step = stride // _itemsize(tc)
    if tc == c'b': _fill_k(<signed char*>p, n, step, <signed char>v.i)
    elif tc == c'B': _fill_k(<unsigned char*>p, n, step, <unsigned char>v.u)
    elif tc == c'h': _fill_k(<short*>p, n, step, <short>v.i)
    elif tc == c'H': _fill_k(<unsigned short*>p, n, step, <unsigned short>v.u)
    elif tc == c'i': _fill_k(<int*>p, n, step, <int>v.i)
    elif tc == c'I': _fill_k(<unsigned int*>p, n, step, <unsigned int>v.u)
    elif tc == c'l': _fill_k(<long*>p, n, step, <long>v.i)
    elif tc == c'L': _fill_k(<unsigned long*>p, n, step, <unsigned long>v.u)
    elif tc == c'q': _fill_k(<long long*>p, n, step, v.i)
    elif tc == c'Q': _fill_k(<unsigned long long*>p, n, step, v.u)
    elif tc == c'f': _fill_k(<float*>p, n, step, <float>v.d)
    else: _fill_k(<double*>p, n, step, v.d)


cdef void _fill_lines(const _Strided* s, _Value v) noexcept nogil:
    cdef int last = s.ndim - 1
    cdef Py_ssize_t k
    for k in range(_lines(s)):
        _fill(s.tc, _line_at(s, k), s.shape[last], s.strides[last], v)


cdef num_t _min_k(const num_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    # NaN wins, as in numpy: any NaN makes the extreme NaN
    cdef num_t m = p[0]
    cdef num_t x
    cdef Py_ssize_t i
    cdef bint nan = False
    for i in range(1, n):
        x = p[i * step]
        if num_t is float or num_t is double:
            nan |= x != x
        m = x if x < m else m
    if num_t is float or num_t is double:
        if nan or m != m:
            return <num_t>NAN
    return m


cdef num_t _max_k(const num_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    cdef num_t m = p[0]
    cdef num_t x
    cdef Py_ssize_t i
    cdef bint nan = False
    for i in range(1, n):
        x = p[i * step]
        if num_t is float or num_t is double:
            nan |= x != x
        m = x if x > m else m
    if num_t is float or num_t is double:
        if nan or m != m:
            return <num_t>NAN
    return m


cdef long long _sum_small_k(const small_int_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    cdef long long total = 0
    cdef Py_ssize_t i
    if step == 1:
        for i in range(n):
            total += p[i]
    else:
        for i in range(n):
            total += p[i * step]
    return total


cdef void _sum8_k(const uint64_t* p, Py_ssize_t n, Py_ssize_t step,
                  uint64_t* low, uint64_t* high, uint64_t* negative) noexcept nogil:
    # Exact sums of 64-bit values without 128-bit arithmetic: split each value u into
    # (u >> 32) * 2**32 + (u & 0xffffffff), and count sign bits for signed types
    # (x = u - 2**64 when x < 0). Each partial sum fits in 64 bits for up to 2**31
    # items, and the loop vectorises with plain 64-bit adds and logical shifts. Adds
    # to the sums it is given: one chunk spans several lines of an N-d view.
    cdef uint64_t lo = low[0], hi = high[0], neg = negative[0], u
    cdef Py_ssize_t i
    if step == 1:
        for i in range(n):
            u = p[i]
            lo += u & 0xffffffffULL
            hi += u >> 32
            neg += u >> 63
    else:
        for i in range(n):
            u = p[i * step]
            lo += u & 0xffffffffULL
            hi += u >> 32
            neg += u >> 63
    low[0] = lo
    high[0] = hi
    negative[0] = neg


cdef double _fsum_k(const real_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    # Pairwise summation, as numpy does: error O(log n) instead of O(n).
    cdef double r[8]
    cdef double res
    cdef Py_ssize_t i, j, half
    if n < 8:
        res = 0.0
        for i in range(n):
            res += p[i * step]
        return res
    if n <= 128:
        for j in range(8):
            r[j] = p[j * step]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] += p[(i + j) * step]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += p[i * step]
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return _fsum_k(p, half, step) + _fsum_k(p + half * step, n - half, step)


# The partial sums of one chunk of at most SUM_CHUNK items: small enough for none of
# them to overflow (|sum| < 2**31 * 2**32 for the small integers).
cdef struct _SumParts:
    long long small
    uint64_t lo
    uint64_t hi
    uint64_t neg
    double fsum


cdef void _sum_c(char tc, const char* p, Py_ssize_t n, Py_ssize_t step,
                 _SumParts* acc) noexcept nogil:
    if tc == c'f': acc.fsum += _fsum_k(<const float*>p, n, step)
    elif tc == c'd': acc.fsum += _fsum_k(<const double*>p, n, step)
    elif tc == c'b': acc.small += _sum_small_k(<const signed char*>p, n, step)
    elif tc == c'B': acc.small += _sum_small_k(<const unsigned char*>p, n, step)
    elif tc == c'h': acc.small += _sum_small_k(<const short*>p, n, step)
    elif tc == c'H': acc.small += _sum_small_k(<const unsigned short*>p, n, step)
    elif tc == c'i': acc.small += _sum_small_k(<const int*>p, n, step)
    elif tc == c'I': acc.small += _sum_small_k(<const unsigned int*>p, n, step)
    else: _sum8_k(<const uint64_t*>p, n, step, &acc.lo, &acc.hi, &acc.neg)


cdef void _sum_some(const _Strided* s, Py_ssize_t* line, Py_ssize_t* pos,
                    _SumParts* acc) noexcept nogil:
    """Add the items from item *pos of line *line on, up to SUM_CHUNK of them, to acc;
    advance *line and *pos past them."""
    cdef int last = s.ndim - 1
    cdef Py_ssize_t n = s.shape[last], lines = _lines(s), m
    cdef Py_ssize_t budget = SUM_CHUNK
    cdef Py_ssize_t step = s.strides[last] // _itemsize(s.tc)
    while line[0] < lines and budget > 0:
        m = min(n - pos[0], budget)
        _sum_c(s.tc, _line_at(s, line[0]) + pos[0] * s.strides[last], m, step, acc)
        budget -= m
        pos[0] += m
        if pos[0] == n:
            pos[0] = 0
            line[0] += 1


cdef object _sum(const _Strided* s, bint release):
    """Exact sum of integers (a Python int), pairwise sum of floats along each line
    (a float), as numpy does."""
    cdef Py_ssize_t line = 0, pos = 0
    cdef _SumParts acc
    if _is_float(s.tc):
        memset(&acc, 0, sizeof(acc))
        if _nitems(s):
            if release:
                with nogil:
                    _sum_some_floats(s, &acc)
            else:
                _sum_some_floats(s, &acc)
        return acc.fsum
    total = 0
    if _nitems(s) == 0:
        return total
    while line < _lines(s):
        # chunks short enough for the 64-bit partial sums to be exact
        memset(&acc, 0, sizeof(acc))
        if release:
            with nogil:
                _sum_some(s, &line, &pos, &acc)
        else:
            _sum_some(s, &line, &pos, &acc)
        if _itemsize(s.tc) == 8:
            total += (<object>acc.hi << 32) + <object>acc.lo
            if not _is_unsigned(s.tc):
                total -= <object>acc.neg << 64
        else:
            total += acc.small
    return total


cdef void _sum_some_floats(const _Strided* s, _SumParts* acc) noexcept nogil:
    cdef int last = s.ndim - 1
    cdef Py_ssize_t k, step = s.strides[last] // _itemsize(s.tc)
    for k in range(_lines(s)):
        _sum_c(s.tc, _line_at(s, k), s.shape[last], step, acc)


cdef _Value _extreme_c(char tc, const char* p, Py_ssize_t n, Py_ssize_t step,
                       bint want_max) noexcept nogil:
    cdef _Value v
    if want_max:
        if tc == c'b': v.i = _max_k(<const signed char*>p, n, step)
        elif tc == c'B': v.u = _max_k(<const unsigned char*>p, n, step)
        elif tc == c'h': v.i = _max_k(<const short*>p, n, step)
        elif tc == c'H': v.u = _max_k(<const unsigned short*>p, n, step)
        elif tc == c'i': v.i = _max_k(<const int*>p, n, step)
        elif tc == c'I': v.u = _max_k(<const unsigned int*>p, n, step)
        elif tc == c'l': v.i = _max_k(<const long*>p, n, step)
        elif tc == c'L': v.u = _max_k(<const unsigned long*>p, n, step)
        elif tc == c'q': v.i = _max_k(<const long long*>p, n, step)
        elif tc == c'Q': v.u = _max_k(<const unsigned long long*>p, n, step)
        elif tc == c'f': v.d = _max_k(<const float*>p, n, step)
        else: v.d = _max_k(<const double*>p, n, step)
    else:
        if tc == c'b': v.i = _min_k(<const signed char*>p, n, step)
        elif tc == c'B': v.u = _min_k(<const unsigned char*>p, n, step)
        elif tc == c'h': v.i = _min_k(<const short*>p, n, step)
        elif tc == c'H': v.u = _min_k(<const unsigned short*>p, n, step)
        elif tc == c'i': v.i = _min_k(<const int*>p, n, step)
        elif tc == c'I': v.u = _min_k(<const unsigned int*>p, n, step)
        elif tc == c'l': v.i = _min_k(<const long*>p, n, step)
        elif tc == c'L': v.u = _min_k(<const unsigned long*>p, n, step)
        elif tc == c'q': v.i = _min_k(<const long long*>p, n, step)
        elif tc == c'Q': v.u = _min_k(<const unsigned long long*>p, n, step)
        elif tc == c'f': v.d = _min_k(<const float*>p, n, step)
        else: v.d = _min_k(<const double*>p, n, step)
    return v


cdef _Value _extreme_lines(const _Strided* s, bint want_max) noexcept nogil:
    cdef int last = s.ndim - 1
    cdef Py_ssize_t k, step = s.strides[last] // _itemsize(s.tc)
    cdef _Value best = _extreme_c(s.tc, _line_at(s, 0), s.shape[last], step, want_max)
    cdef _Value v
    for k in range(1, _lines(s)):
        v = _extreme_c(s.tc, _line_at(s, k), s.shape[last], step, want_max)
        if _is_float(s.tc):
            # NaN wins, as within a line
            if best.d != best.d:
                break
            if v.d != v.d or (v.d > best.d if want_max else v.d < best.d):
                best = v
        elif _is_unsigned(s.tc):
            if v.u > best.u if want_max else v.u < best.u:
                best = v
        elif v.i > best.i if want_max else v.i < best.i:
            best = v
    return best


cdef object _extreme(const _Strided* s, bint want_max, bint release):
    """The largest or smallest item of a view that has items."""
    cdef _Value v
    if release:
        with nogil:
            v = _extreme_lines(s, want_max)
    else:
        v = _extreme_lines(s, want_max)
    if _is_float(s.tc):
        return v.d
    if _is_unsigned(s.tc):
        return PyLong_FromUnsignedLongLong(v.u)
    return PyLong_FromLongLong(v.i)


cdef void _gather(char* dst, const char* src, Py_ssize_t n, Py_ssize_t stride,
                  Py_ssize_t size) noexcept nogil:
    """Copy n items of `size` bytes spaced `stride` apart to contiguous dst."""
    cdef Py_ssize_t i
    if stride == size:
        memcpy(dst, src, n * size)
    elif size == 8:
        for i in range(n):
            (<uint64_t*>dst)[i] = (<const uint64_t*>(src + i * stride))[0]
    else:
        for i in range(n):
            memcpy(dst + i * size, src + i * stride, size)


cdef void _scatter(char* dst, const char* src, Py_ssize_t n, Py_ssize_t stride,
                   Py_ssize_t size) noexcept nogil:
    """Copy n contiguous items of `size` bytes to dst, spaced `stride` apart."""
    cdef Py_ssize_t i
    if stride == size:
        memmove(dst, src, n * size)
    elif size == 8:
        for i in range(n):
            (<uint64_t*>(dst + i * stride))[0] = (<const uint64_t*>src)[i]
    else:
        for i in range(n):
            memcpy(dst + i * stride, src + i * size, size)


cdef void _gather_lines(char* dst, const _Strided* s) noexcept nogil:
    """Copy the items of s, in C order, to contiguous dst."""
    cdef int last = s.ndim - 1
    cdef Py_ssize_t k, size = _itemsize(s.tc), line = s.shape[last] * size
    for k in range(_lines(s)):
        _gather(dst + k * line, _line_at(s, k), s.shape[last], s.strides[last], size)


cdef void _scatter_lines(const _Strided* s, const char* src) noexcept nogil:
    """Copy contiguous items from src to the items of s, in C order."""
    cdef int last = s.ndim - 1
    cdef Py_ssize_t k, size = _itemsize(s.tc), line = s.shape[last] * size
    for k in range(_lines(s)):
        _scatter(_line_at(s, k), src + k * line, s.shape[last], s.strides[last], size)


@cython.cdivision(True)
cdef void _gather_range(char* dst, const _Strided* s, Py_ssize_t first,
                        Py_ssize_t count) noexcept nogil:
    """Copy `count` items of s from the item at C-order position `first` on."""
    cdef int last = s.ndim - 1
    cdef Py_ssize_t n = s.shape[last], size = _itemsize(s.tc), m
    cdef Py_ssize_t k, pos
    if count <= 0:
        return
    k = first // n
    pos = first % n
    while count > 0:
        m = min(n - pos, count)
        _gather(dst, _line_at(s, k) + pos * s.strides[last], m, s.strides[last], size)
        dst += m * size
        count -= m
        pos = 0
        k += 1


# -- byte order and order of items ---------------------------------------------------

cdef inline uint16_t _bswap16(uint16_t x) noexcept nogil:
    return <uint16_t>((x << 8) | (x >> 8))


cdef inline uint32_t _bswap32(uint32_t x) noexcept nogil:
    x = ((x & 0x00ff00ffU) << 8) | ((x >> 8) & 0x00ff00ffU)
    return (x << 16) | (x >> 16)


cdef inline uint64_t _bswap64(uint64_t x) noexcept nogil:
    # the compilers turn these shifts into one bswap instruction
    x = ((x & 0x00ff00ff00ff00ffULL) << 8) | ((x >> 8) & 0x00ff00ff00ff00ffULL)
    x = ((x & 0x0000ffff0000ffffULL) << 16) | ((x >> 16) & 0x0000ffff0000ffffULL)
    return (x << 32) | (x >> 32)


cdef void _byteswap_lines(const _Strided* s) noexcept nogil:
    cdef int last = s.ndim - 1
    cdef Py_ssize_t k, i, n = s.shape[last], stride = s.strides[last]
    cdef Py_ssize_t size = _itemsize(s.tc)
    cdef char* p
    for k in range(_lines(s)):
        p = _line_at(s, k)
        if size == 2:
            for i in range(n):
                (<uint16_t*>(p + i * stride))[0] = _bswap16((<uint16_t*>(p + i * stride))[0])
        elif size == 4:
            for i in range(n):
                (<uint32_t*>(p + i * stride))[0] = _bswap32((<uint32_t*>(p + i * stride))[0])
        elif size == 8:
            for i in range(n):
                (<uint64_t*>(p + i * stride))[0] = _bswap64((<uint64_t*>(p + i * stride))[0])


cdef void _reverse_k(num_t* p, Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    cdef num_t* q = p + (n - 1) * step
    cdef num_t x
    cdef Py_ssize_t i
    for i in range(n // 2):
        x = p[i * step]
        p[i * step] = q[-i * step]
        q[-i * step] = x


cdef void _reverse_c(char* p, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t size) noexcept nogil:
    """Reverse n items of `size` bytes spaced `stride` apart, in place (the bits
    moved as unsigned integers of that size)."""
    cdef Py_ssize_t step = stride // size
    if size == 1: _reverse_k(<unsigned char*>p, n, step)
    elif size == 2: _reverse_k(<unsigned short*>p, n, step)
    elif size == 4: _reverse_k(<unsigned int*>p, n, step)
    else: _reverse_k(<unsigned long long*>p, n, step)


# -- search ---------------------------------------------------------------------------

cdef Py_ssize_t _find_k(const num_t* p, Py_ssize_t n, Py_ssize_t step, num_t v,
                        bint count) noexcept nogil:
    cdef Py_ssize_t i, found = 0
    if count:
        # without a branch per item, so that the loop vectorises
        if step == 1:
            for i in range(n):
                found += p[i] == v
        else:
            for i in range(n):
                found += p[i * step] == v
        return found
    for i in range(n):
        if p[i * step] == v:
            return i
    return -1


cdef Py_ssize_t _find(char tc, const char* p, Py_ssize_t n, Py_ssize_t stride, _Value v,
                      bint count) noexcept nogil:
    """How many of n items equal v (count), or the position of the first, or -1. v
    is a value of the typecode: for 'f', a double that a float holds exactly."""
    cdef Py_ssize_t step = stride // _itemsize(tc)
    if tc == c'b': return _find_k(<const signed char*>p, n, step, <signed char>v.i, count)
    if tc == c'B': return _find_k(<const unsigned char*>p, n, step, <unsigned char>v.u, count)
    if tc == c'h': return _find_k(<const short*>p, n, step, <short>v.i, count)
    if tc == c'H': return _find_k(<const unsigned short*>p, n, step, <unsigned short>v.u, count)
    if tc == c'i': return _find_k(<const int*>p, n, step, <int>v.i, count)
    if tc == c'I': return _find_k(<const unsigned int*>p, n, step, <unsigned int>v.u, count)
    if tc == c'l': return _find_k(<const long*>p, n, step, <long>v.i, count)
    if tc == c'L': return _find_k(<const unsigned long*>p, n, step, <unsigned long>v.u, count)
    if tc == c'q': return _find_k(<const long long*>p, n, step, <long long>v.i, count)
    if tc == c'Q':
        return _find_k(<const unsigned long long*>p, n, step, <unsigned long long>v.u, count)
    if tc == c'f': return _find_k(<const float*>p, n, step, <float>v.d, count)
    return _find_k(<const double*>p, n, step, v.d, count)
