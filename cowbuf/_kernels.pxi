# Loops over typed items that run without the GIL: fill, sum, min, max, gather and
# scatter, over a fused numeric type.

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
    # n <= SUM_CHUNK: |sum| < 2**31 * 2**32 cannot overflow
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
    # (x = u - 2**64 when x < 0). Each partial sum fits in 64 bits for n <= 2**31,
    # and the loop vectorises with plain 64-bit adds and logical shifts.
    cdef uint64_t lo = 0, hi = 0, neg = 0, u
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


cdef void _sum_c(char tc, const char* p, Py_ssize_t n, Py_ssize_t step, long long* small,
                 uint64_t* lo, uint64_t* hi, uint64_t* neg, double* fsum) noexcept nogil:
    if tc == c'f': fsum[0] = _fsum_k(<const float*>p, n, step)
    elif tc == c'd': fsum[0] = _fsum_k(<const double*>p, n, step)
    elif tc == c'b': small[0] = _sum_small_k(<const signed char*>p, n, step)
    elif tc == c'B': small[0] = _sum_small_k(<const unsigned char*>p, n, step)
    elif tc == c'h': small[0] = _sum_small_k(<const short*>p, n, step)
    elif tc == c'H': small[0] = _sum_small_k(<const unsigned short*>p, n, step)
    elif tc == c'i': small[0] = _sum_small_k(<const int*>p, n, step)
    elif tc == c'I': small[0] = _sum_small_k(<const unsigned int*>p, n, step)
    else: _sum8_k(<const uint64_t*>p, n, step, lo, hi, neg)


cdef object _sum(char tc, const char* p, Py_ssize_t n, Py_ssize_t stride, bint release):
    """Exact sum of integers (a Python int), pairwise sum of floats (a float)."""
    cdef Py_ssize_t step = stride // _itemsize(tc)
    cdef Py_ssize_t m
    cdef long long small = 0
    cdef uint64_t lo = 0, hi = 0, neg = 0
    cdef double fsum = 0.0
    if _is_float(tc):
        if release:
            with nogil:
                _sum_c(tc, p, n, step, &small, &lo, &hi, &neg, &fsum)
        else:
            _sum_c(tc, p, n, step, &small, &lo, &hi, &neg, &fsum)
        return fsum
    total = 0
    while True:
        # chunks short enough for the 64-bit partial sums to be exact
        m = min(n, SUM_CHUNK)
        if release:
            with nogil:
                _sum_c(tc, p, m, step, &small, &lo, &hi, &neg, &fsum)
        else:
            _sum_c(tc, p, m, step, &small, &lo, &hi, &neg, &fsum)
        if _itemsize(tc) == 8:
            total += (<object>hi << 32) + <object>lo
            if not _is_unsigned(tc):
                total -= <object>neg << 64
        else:
            total += small
        n -= m
        if n == 0:
            return total
        p += m * stride


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


cdef object _extreme(char tc, const char* p, Py_ssize_t n, Py_ssize_t stride, bint want_max,
                     bint release):
    cdef Py_ssize_t step = stride // _itemsize(tc)
    cdef _Value v
    if release:
        with nogil:
            v = _extreme_c(tc, p, n, step, want_max)
    else:
        v = _extreme_c(tc, p, n, step, want_max)
    if _is_float(tc):
        return v.d
    if _is_unsigned(tc):
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
