"""numpy interop through the buffer protocol: zero-copy views with the right dtype,
strides and writability, and Arrays built from numpy arrays."""

import array as pyarray
import gc

import pytest

import cowbuf

np = pytest.importorskip("numpy")

TYPECODES = "bBhHiIlLqQfd"

SLICES = [
    slice(None), slice(None, None, 2), slice(1, None, 3), slice(None, None, -1),
    slice(-2, 3, -3), slice(4, 5), slice(3, 3), slice(8, None, 100), slice(None, None, -7),
]


def expected_dtype(tc):
    return np.dtype(tc)


@pytest.mark.parametrize("tc", TYPECODES)
def test_asarray_is_zero_copy_with_the_right_dtype(tc):
    a = cowbuf.array(tc, range(20))
    n = np.asarray(a)
    assert n.dtype == expected_dtype(tc)
    assert n.dtype.itemsize == pyarray.array(tc).itemsize
    assert n.shape == (20,)
    assert n.flags.writeable
    assert np.shares_memory(n, np.frombuffer(a.region, dtype=np.uint8))
    assert n.tolist() == a.tolist()
    n[3] = 42
    assert a[3] == 42
    a[4] = 43
    assert n[4] == 43


@pytest.mark.parametrize("tc", TYPECODES)
@pytest.mark.parametrize("key", SLICES, ids=str)
def test_slices_export_their_strides(tc, key):
    a = cowbuf.array(tc, range(20))
    s = a[key]
    n = np.asarray(s)
    ref = np.arange(20, dtype=tc)[key]
    assert n.tolist() == ref.tolist()
    assert n.dtype == ref.dtype
    if len(s) > 1:
        assert n.strides == ref.strides
        assert np.shares_memory(n, np.asarray(a))
    if len(s):
        n[0] = 99
        assert s[0] == 99 and a[range(20)[key][0]] == 99


@pytest.mark.parametrize("tc", TYPECODES)
@pytest.mark.parametrize("key", SLICES, ids=str)
def test_memoryview_agrees(tc, key):
    s = cowbuf.array(tc, range(20))[key]
    ref = memoryview(pyarray.array(tc, range(20)))[key]
    with memoryview(s) as m:
        assert m.format == ref.format == tc
        assert m.itemsize == ref.itemsize == s.itemsize
        assert m.ndim == 1
        assert m.shape == ref.shape == (len(s),)
        assert m.nbytes == s.nbytes
        if len(s) > 1:
            assert m.strides == ref.strides
        assert not m.readonly
        assert m.tolist() == ref.tolist() == s.tolist()
        assert m.obj is s
        assert m.tobytes() == s.tobytes()


def test_non_contiguous_buffer_refuses_contiguous_requests():
    s = cowbuf.array("q", range(10))[::2]
    with memoryview(s) as m:
        assert not m.contiguous
    # numpy asks for a strided buffer and gets one; a contiguous request fails
    with pytest.raises(BufferError):
        np.frombuffer(s, dtype="q")
    assert np.ascontiguousarray(s).tolist() == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("make", [lambda a: a.toreadonly(), lambda a: (a.freeze(), a)[1]],
                         ids=["toreadonly", "frozen"])
def test_read_only_arrays_give_read_only_numpy_arrays(make):
    a = make(cowbuf.array("d", range(8 * 1024)))
    n = np.asarray(a)
    assert not n.flags.writeable
    with pytest.raises(ValueError):
        n[0] = 1.0
    with pytest.raises(ValueError):
        n.setflags(write=True)
    assert n.sum() == a.sum()
    with memoryview(a) as m:
        assert m.readonly


def test_freeze_refused_while_a_writable_numpy_view_lives():
    a = cowbuf.array("q", range(4096))
    n = np.asarray(a[::2])
    with pytest.raises(BufferError):
        a.freeze()
    with pytest.raises(BufferError):
        a.region.freeze()
    assert not a.region.frozen
    n[0] = -1  # the write that a freeze would have turned into a crash
    del n
    gc.collect()
    a.freeze()
    assert a.region.frozen and a[0] == -1


def test_freeze_allowed_with_read_only_numpy_views():
    a = cowbuf.array("q", range(4096))
    n = np.asarray(a.toreadonly())
    a.freeze()
    assert n[5] == 5 and not n.flags.writeable


def test_numpy_view_keeps_memory_after_region_and_array_are_dropped():
    a = cowbuf.array("q", range(100_000))
    n = np.asarray(a[::-1])
    del a
    gc.collect()
    assert n[0] == 99_999 and n.sum() == sum(range(100_000))
    n[:] = 7
    assert n.sum() == 700_000


def test_close_refused_while_a_numpy_view_lives():
    a = cowbuf.array("q", range(100_000))
    n = np.asarray(a)
    with pytest.raises(BufferError):
        a.region.close()
    n[-1] = 5
    assert a[-1] == 5
    del n
    a.region.close()
    with pytest.raises(ValueError):
        np.frombuffer(a, dtype="q")
    with pytest.raises(ValueError, match="closed region"):
        np.asarray(a)  # not a 0-d object array


# -- cowbuf.array from numpy -------------------------------------------------------

@pytest.mark.parametrize("tc", TYPECODES)
def test_array_from_numpy_contiguous(tc):
    src = np.arange(1000).astype(tc)
    a = cowbuf.array(tc, src)
    assert len(a) == 1000
    assert a.tolist() == src.tolist()
    assert not np.shares_memory(np.asarray(a), src)  # a copy


@pytest.mark.parametrize("tc", TYPECODES)
def test_array_from_numpy_strided_and_reversed(tc):
    base = np.arange(3000).astype(tc)
    for src in (base[::3], base[::-1], base[-5:5:-7]):
        a = cowbuf.array(tc, src)
        assert a.tolist() == src.tolist()


@pytest.mark.parametrize("order", ["C", "F"])
def test_array_from_numpy_2d_is_flattened_in_c_order(order):
    src = np.asarray(np.arange(24, dtype="i").reshape(4, 6), order=order)
    for view in (src, src.T, src[::2, ::-3]):
        a = cowbuf.array("i", view)
        assert a.tolist() == view.ravel(order="C").tolist()


def test_array_from_numpy_int64_accepts_q_and_l():
    src = np.arange(5, dtype=np.int64)
    assert cowbuf.array("q", src).tolist() == [0, 1, 2, 3, 4]
    if np.dtype("l").itemsize == 8:
        assert cowbuf.array("l", src).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("tc, dtype", [
    ("q", "i4"), ("i", "i8"), ("d", "f4"), ("f", "f8"), ("q", "f8"), ("Q", "i8"),
    ("B", "?"), ("h", "f2"), ("q", ">i8"), ("B", "i1"), ("q", "c16"),
])
def test_array_from_mismatched_numpy_dtype_names_both(tc, dtype):
    src = np.zeros(3, dtype=dtype)
    fmt = memoryview(src).format
    with pytest.raises(TypeError) as info:
        cowbuf.array(tc, src)
    message = str(info.value)
    assert f"'{fmt}'" in message and f"'{tc}'" in message


def test_array_from_numpy_scalar_is_a_length():
    assert len(cowbuf.array("q", np.int64(3))) == 3


def test_array_from_numpy_large_equals_source():
    src = np.random.default_rng(0).integers(-(1 << 62), 1 << 62, 2_000_000)
    a = cowbuf.array("q", src)
    assert np.array_equal(np.asarray(a), src)
    assert a.sum() == int(src.astype(object).sum())
    assert a.min() == src.min() and a.max() == src.max()


@pytest.mark.parametrize("tc", TYPECODES)
def test_slice_assignment_from_numpy(tc):
    a = cowbuf.array(tc, 10)
    a[::2] = np.arange(5).astype(tc)
    a[1::2] = np.arange(10, 15).astype(tc)[::-1]
    assert a.tolist() == [0, 14, 1, 13, 2, 12, 3, 11, 4, 10]
    with pytest.raises(TypeError):
        a[:] = np.zeros(10, dtype="c8")
    with pytest.raises(ValueError):
        a[:3] = np.zeros(4, dtype=tc)


def test_slice_assignment_from_overlapping_numpy_view():
    a = cowbuf.array("q", range(10))
    a[1:] = np.asarray(a)[:-1]
    assert a.tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    a[::-1] = np.asarray(a)
    assert a.tolist() == [8, 7, 6, 5, 4, 3, 2, 1, 0, 0]


def test_numpy_kernels_agree_with_cowbuf_on_the_same_memory():
    a = cowbuf.array("d", np.random.default_rng(1).standard_normal(100_001))
    n = np.asarray(a)
    assert a.sum() == pytest.approx(n.sum(), rel=1e-12)
    assert a.min() == n.min() and a.max() == n.max()
    assert a[::-3].sum() == pytest.approx(n[::-3].sum(), rel=1e-12)
    a.fill(2.0)
    assert (n == 2.0).all()


def test_region_buffer_in_numpy():
    r = cowbuf.Region(4096)
    n = np.frombuffer(r, dtype=np.int32)
    n[:] = np.arange(1024)
    assert r.view("i").tolist() == list(range(1024))
    assert np.shares_memory(n, np.asarray(r.view("i")))


# -- formats that are not integers --------------------------------------------------

def _packed_halfs(values):
    """float16 values with the format numpy gives packed records: '=e' (explicit
    standard size, which 0.1.0 read as an unsigned integer)."""
    rec = np.zeros(len(values), np.dtype([("flag", "u1"), ("x", "<f2")], align=False))
    rec["x"] = values
    halfs = rec["x"]
    assert memoryview(halfs).format in ("=e", "<e")
    return halfs


@pytest.mark.parametrize("data", [
    np.zeros(4, np.float16), np.zeros(4, ">f2"), _packed_halfs([0.0] * 4),
    np.zeros(4, np.bool_), np.zeros(4, "S1"), np.zeros(4, ">u2"), np.zeros(4, ">i8"),
    np.zeros(4, np.complex64),
], ids=lambda d: memoryview(d).format)
def test_buffers_of_other_element_types_are_refused_by_every_typecode(data):
    for tc in "bBhHiIlLqQfd":
        with pytest.raises(TypeError, match="does not match typecode"):
            cowbuf.array(tc, data)
    if data.itemsize in (2, 8):
        with pytest.raises(TypeError, match="must hold integers"):
            cowbuf.array("q", 8).atomic_add_at(data, 1)


def test_float16_data_is_not_taken_for_uint16():
    halfs = _packed_halfs([1.0, 2.5, -3.0])
    with pytest.raises(TypeError, match="does not match typecode 'H'"):
        cowbuf.array("H", halfs)
    b = cowbuf.array("H", 3)
    with pytest.raises(TypeError, match="does not match typecode 'H'"):
        b[:] = halfs
    assert b.tolist() == [0, 0, 0]
    c = cowbuf.array("q", 20_000)
    with pytest.raises(TypeError, match="must hold integers"):
        c.atomic_add_at(_packed_halfs([1.0]), 1)
    with pytest.raises(TypeError, match="must hold integers"):
        c.atomic_add_at([0], _packed_halfs([1.0]))
    assert c.sum() == 0


# -- closed memory: no silent fallback -------------------------------------------------

def _closed_array():
    a = cowbuf.array("q", range(10))
    a.region.close()
    return a


def _closed_region():
    r = cowbuf.Region(4096)
    r.close()
    return r


_CONVERSIONS = {
    "asarray": np.asarray, "array": np.array, "ascontiguousarray": np.ascontiguousarray,
    "frombuffer": lambda x: np.frombuffer(x, np.uint8), "memoryview": memoryview,
    "bytes": bytes, "bytearray": bytearray, "list": list,
}


@pytest.mark.parametrize("make, convert", [
    (make, name) for make in (_closed_array, _closed_region) for name in _CONVERSIONS
    if not (make is _closed_region and name == "list")  # a Region is not iterable
])
def test_every_conversion_of_closed_memory_is_value_error(make, convert):
    # numpy used to turn a closed Array into a 0-d object array without a word.
    with pytest.raises(ValueError, match="closed region"):
        _CONVERSIONS[convert](make())


def test_array_module_and_properties_of_a_closed_array_raise():
    import array as pyarray

    a = _closed_array()
    for op in (lambda: pyarray.array("q", a), lambda: a.readonly, lambda: a.nbytes,
               lambda: len(a), lambda: a.region.frozen):
        with pytest.raises(ValueError, match="closed region"):
            op()


def test_frozen_memory_converts_read_only():
    a = cowbuf.array("q", range(10))
    a.freeze()
    for view in (np.asarray(a), np.frombuffer(a, "q"), np.array(a, copy=False)):
        assert not view.flags.writeable and view.tolist() == list(range(10))
    assert memoryview(a).readonly and bytes(a) == np.arange(10).tobytes()
