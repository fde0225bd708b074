"""Array: construction, items, slices as views, whole-array operations, bad input,
and use after close, checked against array.array and list semantics."""

import array as pyarray
import contextlib
import gc
import math
import random
import resource
import struct
import sys
import threading

import pytest
from helpers import Sneaky, int_range

import cowbuf

TYPECODES = "bBhHiIlLqQfd"
INT_TYPECODES = "bBhHiIlLqQ"


def sample(tc, n, seed=0):
    """n values of typecode tc, extremes included, exactly representable."""
    rng = random.Random(seed)
    if tc in "fd":
        values = [0.0, -0.0, 1.5, -2.25, 1e30 if tc == "d" else 3.0e38, 1e-30]
        values += [rng.uniform(-1e6, 1e6) for _ in range(n)]
        return list(pyarray.array(tc, values[:n]))  # rounded to float32 for 'f'
    low, high = int_range(tc)
    values = [low, high, 0, low + 1, high - 1]
    values += [rng.randint(low, high) for _ in range(n)]
    return values[:n]


SLICES = [
    slice(None), slice(2, 7), slice(None, None, 2), slice(1, None, 3),
    slice(None, None, -1), slice(8, 2, -2), slice(-3, None), slice(None, -4, -3),
    slice(5, 5), slice(7, 2), slice(-100, 100), slice(100, -100, -1), slice(3, 4),
    slice(0, 1, 5), slice(9, None, 7),
]


# -- construction ------------------------------------------------------------------

@pytest.mark.parametrize("tc", TYPECODES)
def test_array_of_length_is_zeros(tc):
    a = cowbuf.array(tc, 10)
    assert len(a) == 10
    assert a.tolist() == [0] * 10
    assert a.typecode == tc
    assert a.itemsize == pyarray.array(tc).itemsize
    assert a.nbytes == 10 * a.itemsize
    assert not a.readonly
    assert isinstance(a.region, cowbuf.Region)


@pytest.mark.parametrize("tc", TYPECODES)
def test_array_from_iterable_round_trips(tc):
    values = sample(tc, 50)
    for init in (values, tuple(values), iter(values), (v for v in values)):
        a = cowbuf.array(tc, init)
        assert a.tolist() == values
    assert cowbuf.array(tc, range(3)).tolist() == [0, 1, 2]


@pytest.mark.parametrize("tc", TYPECODES)
def test_array_from_same_format_buffers(tc):
    values = sample(tc, 40)
    ref = pyarray.array(tc, values)
    for init in (ref, memoryview(ref), cowbuf.array(tc, values),
                 cowbuf.array(tc, values + values)[::2], memoryview(ref)[::-1]):
        a = cowbuf.array(tc, init)
        assert a.tolist() == memoryview(init).tolist()
    copy = cowbuf.array(tc, ref)
    ref[0] = ref[1]
    assert copy[0] == values[0]  # a copy, not a view


def test_array_from_bytes_is_unsigned_bytes():
    assert cowbuf.array("B", b"abc").tolist() == [97, 98, 99]
    assert cowbuf.array("B", bytearray(b"\xff\x00")).tolist() == [255, 0]


def test_array_from_large_buffer():
    ref = pyarray.array("q", range(300_000))
    a = cowbuf.array("q", ref)
    assert a.tobytes() == ref.tobytes()
    assert a.region.nbytes >= a.nbytes


RANGES = [
    ("q", range(10)), ("q", range(-5, 5, 3)), ("h", range(100, -100, -7)), ("B", range(256)),
    ("b", range(-128, 128)), ("I", range(0)), ("d", range(5, -5, -1)), ("f", range(-3, 9, 2)),
    ("q", range((1 << 63) - 1, -(1 << 63), -((1 << 63) - 1))),
    ("Q", range(0, (1 << 64) - 1, 1 << 62)), ("L", range((1 << 64) - 1, 0, -(1 << 62))),
    ("d", range(0, 1 << 64, 1 << 62)), ("f", range(-(1 << 63), 1 << 63, 1 << 61)),
    ("d", range((1 << 63) - 2, (1 << 63) + 2)), ("q", range(1_000_000)),
]


@pytest.mark.parametrize("tc, init", RANGES, ids=str)
def test_array_from_range(tc, init):
    expected = [float(x) for x in init] if tc in "fd" else list(init)
    assert cowbuf.array(tc, init).tolist() == list(pyarray.array(tc, expected))


@pytest.mark.parametrize("tc, init", [("b", range(129)), ("B", range(-1, 3)),
                                      ("Q", range(-1, 5)), ("i", range(0, (1 << 31) + 1, 1 << 20)),
                                      ("i", range(-(1 << 31) - 1, 0, 1 << 20))], ids=str)
def test_array_from_range_out_of_range_is_overflow_error(tc, init):
    with pytest.raises(OverflowError):
        cowbuf.array(tc, init)


def make_huge(tc, init):
    # If a range were ever committed before its size is checked, the kernel would
    # answer with the OOM killer: cap file sizes in this child so that it gets
    # EFBIG instead (Python ignores SIGXFSZ). Returns how the call ended.
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
    try:
        cowbuf.array(tc, init)
    except MemoryError as e:
        return "MemoryError", str(e)
    return "made", ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="memfd size limit")
@pytest.mark.parametrize("init", [range(1 << 64), range(1 << 63), range(1 << 62),
                                  range(1 << 61), range(1 << 60), range(1 << 59),
                                  range(1 << 40), range(-(1 << 62), 1 << 62, 3)],
                         ids=str)
def test_array_from_huge_range_is_memory_error(run_forked, init):
    [(outcome, message)] = run_forked(make_huge, [("q", init)])
    assert outcome == "MemoryError"
    # refused by cowbuf's own checks, before any memory was created
    assert "cannot create a shared region" not in message


@pytest.mark.parametrize("tc, init", [
    ("q", pyarray.array("i", [1, 2])), ("i", pyarray.array("q", [1])),
    ("q", b"abcdefgh"), ("b", b"abc"), ("d", pyarray.array("f", [1.0])),
    ("Q", pyarray.array("q", [1])), ("f", pyarray.array("i", [1])),
])
def test_array_from_mismatched_buffer_names_both_formats(tc, init):
    source = memoryview(init).format
    with pytest.raises(TypeError, match=f"'{source}'.*'{tc}'"):
        cowbuf.array(tc, init)


@pytest.mark.parametrize("init", ["abc", 1.5, 2j, None, object()])
def test_array_from_non_iterable_is_type_error(init):
    with pytest.raises(TypeError):
        cowbuf.array("q", init)


@pytest.mark.parametrize("typecode", ["x", "", "qq", "u", "w", "?"])
def test_unknown_typecode_is_value_error(typecode):
    with pytest.raises(ValueError, match="typecode"):
        cowbuf.array(typecode, 3)


@pytest.mark.parametrize("typecode", [b"q", None, ord("q")])
def test_non_str_typecode_is_type_error(typecode):
    with pytest.raises(TypeError):
        cowbuf.array(typecode, 3)


def test_negative_length_is_value_error():
    with pytest.raises(ValueError, match="negative"):
        cowbuf.array("q", -1)


@pytest.mark.parametrize("n", [1 << 47, 1 << 61, 1 << 62, 1 << 80])
def test_unmappable_length_is_memory_error(n):
    with pytest.raises(MemoryError):
        cowbuf.array("q", n)


@pytest.mark.parametrize("tc", INT_TYPECODES)
def test_array_with_out_of_range_item_is_overflow_error(tc):
    low, high = int_range(tc)
    for bad in (low - 1, high + 1):
        with pytest.raises(OverflowError):
            cowbuf.array(tc, [0, 1, bad])


@pytest.mark.parametrize("tc, bad", [("q", 1.0), ("q", "1"), ("B", None), ("d", "x"),
                                     ("f", None), ("i", [1])])
def test_array_with_wrong_item_type_is_type_error(tc, bad):
    with pytest.raises(TypeError):
        cowbuf.array(tc, [0, bad])


def test_typecodes_constant():
    assert cowbuf.TYPECODES == TYPECODES


def test_array_type_cannot_be_instantiated_directly():
    with pytest.raises(TypeError):
        cowbuf.Array("q", 3)


def test_array_made_without_init_is_closed():
    a = cowbuf.Array.__new__(cowbuf.Array)
    for op in (lambda: len(a), lambda: a[0], lambda: list(a), a.tolist, a.sum,
               lambda: memoryview(a), lambda: a == a, a.toreadonly):
        with pytest.raises(ValueError):
            op()
    assert "closed" in repr(a)


# -- items -------------------------------------------------------------------------

@pytest.mark.parametrize("tc", TYPECODES)
def test_items_round_trip_with_negative_indices(tc):
    values = sample(tc, 20, seed=1)
    a = cowbuf.array(tc, len(values))
    for i, v in enumerate(values):
        a[i] = v
    assert [a[i] for i in range(len(a))] == values
    assert [a[-i - 1] for i in range(len(a))] == values[::-1]
    a[-1] = values[0]
    assert a[len(a) - 1] == values[0]


@pytest.mark.parametrize("tc", TYPECODES)
def test_index_out_of_range_is_index_error(tc):
    a = cowbuf.array(tc, 5)
    for i in (5, 6, -6, 1 << 40, -(1 << 40), 1 << 100, -(1 << 100)):
        with pytest.raises(IndexError):
            a[i]
        with pytest.raises(IndexError):
            a[i] = 1
    assert cowbuf.array(tc, 0)[0:1].tolist() == []
    with pytest.raises(IndexError):
        cowbuf.array(tc, 0)[0]


@pytest.mark.parametrize("key", [1.0, "1", None, (1,), [1]])
def test_non_integer_index_is_type_error(key):
    a = cowbuf.array("q", 5)
    with pytest.raises(TypeError):
        a[key]
    with pytest.raises(TypeError):
        a[key] = 1


def test_index_objects_are_accepted():
    np = pytest.importorskip("numpy")
    a = cowbuf.array("q", range(5))
    assert a[np.int32(3)] == 3
    a[np.uint8(4)] = 40
    assert a[-1] == 40
    assert a[True] == 1


@pytest.mark.parametrize("tc", INT_TYPECODES)
def test_value_out_of_range_is_overflow_error_and_changes_nothing(tc):
    low, high = int_range(tc)
    a = cowbuf.array(tc, [low, high, 7])
    for bad in (low - 1, high + 1, 1 << 64, -(1 << 64), 1 << 200):
        with pytest.raises(OverflowError):
            a[2] = bad
    assert a.tolist() == [low, high, 7]


@pytest.mark.parametrize("tc", INT_TYPECODES)
@pytest.mark.parametrize("bad", [1.0, 1.5, "1", None, b"1", [1], 1j])
def test_wrong_value_type_for_integers_is_type_error(tc, bad):
    a = cowbuf.array(tc, [3])
    with pytest.raises(TypeError):
        a[0] = bad
    assert a[0] == 3


@pytest.mark.parametrize("tc", "fd")
def test_float_items(tc):
    a = cowbuf.array(tc, 4)
    a[0] = 1
    a[1] = True
    a[2] = 1.1
    a[3] = float("nan")
    ref = pyarray.array(tc, [1, True, 1.1])
    assert a[:3].tolist() == ref.tolist()
    assert math.isnan(a[3])
    for bad in ("1", None, [1.0], 1j):
        with pytest.raises(TypeError):
            a[0] = bad
    with pytest.raises(OverflowError):
        a[0] = 1 << 2000
    assert a[0] == 1.0


def test_float32_overflow_becomes_inf_like_array_array():
    a = cowbuf.array("f", 2)
    a[0] = 1e300
    a[1] = -1e300
    assert a.tolist() == list(pyarray.array("f", [1e300, -1e300])) == [math.inf, -math.inf]


def test_items_cannot_be_deleted():
    a = cowbuf.array("q", 3)
    with pytest.raises(TypeError):
        del a[0]
    with pytest.raises(TypeError):
        del a[0:1]
    assert len(a) == 3


# -- slices ------------------------------------------------------------------------

@pytest.mark.parametrize("key", SLICES, ids=str)
def test_slices_match_list_slicing(key):
    values = list(range(10))
    a = cowbuf.array("h", values)
    s = a[key]
    assert isinstance(s, cowbuf.Array)
    assert s.tolist() == values[key]
    assert list(s) == values[key]
    assert len(s) == len(values[key])
    assert s.region is a.region
    # a slice of a slice, too
    for inner in (slice(None, None, -1), slice(1, None, 2)):
        assert s[inner].tolist() == values[key][inner]


@pytest.mark.parametrize("key", SLICES, ids=str)
def test_slices_are_views(key):
    a = cowbuf.array("q", range(10))
    ref = list(range(10))
    s = a[key]
    for i in range(len(s)):
        s[i] = -s[i] - 100
    indices = range(10)[key]
    for i in indices:
        ref[i] = -ref[i] - 100
    assert a.tolist() == ref
    a[indices[0] if indices else 0] = 1234
    if indices:
        assert s[0] == 1234


def test_zero_step_is_value_error():
    a = cowbuf.array("q", 3)
    with pytest.raises(ValueError):
        a[::0]
    with pytest.raises(ValueError):
        a[::0] = []


@pytest.mark.parametrize("key", SLICES, ids=str)
def test_slice_assignment_matches_list(key):
    values = list(range(10))
    n = len(values[key])
    new = [100 + i for i in range(n)]
    for source in (new, tuple(new), iter(new), pyarray.array("q", new),
                   cowbuf.array("q", new), cowbuf.array("q", new[::-1])[::-1]):
        a = cowbuf.array("q", values)
        ref = list(values)
        a[key] = source
        ref[key] = new
        assert a.tolist() == ref


@pytest.mark.parametrize("key", SLICES, ids=str)
def test_slice_assignment_from_itself_overlapping(key):
    values = list(range(10))
    n = len(values[key])
    a = cowbuf.array("i", values)
    ref = list(values)
    # the source overlaps the destination
    a[key] = a[:n] if n else a[0:0]
    ref[key] = values[:n]
    assert a.tolist() == ref
    a = cowbuf.array("i", values)
    a[key] = a[key][::-1]
    ref = list(values)
    ref[key] = values[key][::-1]
    assert a.tolist() == ref


def test_slice_assignment_shifting_in_place():
    a = cowbuf.array("q", range(10))
    a[1:] = a[:-1]
    assert a.tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    a[:-1] = a[1:]
    assert a.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    a[::-1] = a
    assert a.tolist() == [8, 8, 7, 6, 5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize("source", [[1, 2, 3], [1], [], pyarray.array("q", [1, 2, 3])],
                         ids=repr)
def test_slice_assignment_of_another_length_is_value_error(source):
    a = cowbuf.array("q", range(5))
    with pytest.raises(ValueError) as info:
        a[1:3] = source
    # the message names both lengths
    assert str(len(source)) in str(info.value) and "2" in str(info.value)
    with pytest.raises(ValueError):
        a[::2] = source if len(source) != 3 else [1, 2]
    assert a.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("source", [pyarray.array("i", [1, 2]), pyarray.array("d", [1, 2]),
                                    b"0123456789abcdef", pyarray.array("Q", [1, 2])],
                         ids=repr)
def test_slice_assignment_of_mismatched_buffer_is_type_error(source):
    a = cowbuf.array("q", range(5))
    fmt = memoryview(source).format
    with pytest.raises(TypeError, match=f"'{fmt}'.*'q'"):
        a[1:3] = source
    assert a.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("source", ["ab", 5, 1.5])
def test_slice_assignment_of_scalar_or_str_is_type_error(source):
    a = cowbuf.array("B", 2)
    with pytest.raises(TypeError):
        a[:] = source
    assert a.tolist() == [0, 0]


def test_failed_slice_assignment_changes_nothing():
    a = cowbuf.array("b", [1, 2, 3, 4])
    with pytest.raises(OverflowError):
        a[:] = [5, 6, 7, 128]
    with pytest.raises(TypeError):
        a[::-1] = [5, 6, 7, "8"]
    assert a.tolist() == [1, 2, 3, 4]


# -- iteration and comparison ------------------------------------------------------

@pytest.mark.parametrize("key", SLICES, ids=str)
def test_iteration_and_reversed(key):
    values = [x * 3 for x in range(10)]
    s = cowbuf.array("L", values)[key]
    assert list(s) == values[key]
    assert list(reversed(s)) == values[key][::-1]
    it = iter(s)
    assert it.__length_hint__() == len(values[key])
    assert iter(it) is it


def test_iteration_is_live():
    a = cowbuf.array("q", range(5))
    it = iter(a)
    assert next(it) == 0
    a[1] = 100
    assert next(it) == 100


def test_equality_is_by_value():
    a = cowbuf.array("q", [1, 2, 3])
    assert a == cowbuf.array("q", [1, 2, 3])
    assert a == cowbuf.array("b", [1, 2, 3])
    assert a == cowbuf.array("d", [1.0, 2.0, 3.0])
    assert a == cowbuf.array("q", [3, 2, 1, 0])[2::-1][::-1][::-1]
    assert not a != cowbuf.array("I", [1, 2, 3])
    assert a != cowbuf.array("q", [1, 2])
    assert a != cowbuf.array("q", [1, 2, 4])
    assert cowbuf.array("B", [255]) != cowbuf.array("b", [-1])
    assert cowbuf.array("Q", [1 << 63]) != cowbuf.array("q", [-(1 << 63)])
    assert cowbuf.array("d", [math.nan]) != cowbuf.array("d", [math.nan])
    assert cowbuf.array("f", [0.5]) == cowbuf.array("d", [0.5])
    assert cowbuf.array("q", 0) == cowbuf.array("d", 0)
    assert a != [1, 2, 3]
    assert not (a == [1, 2, 3])


def test_arrays_are_unhashable():
    with pytest.raises(TypeError):
        hash(cowbuf.array("q", 1))


# -- whole-array operations --------------------------------------------------------

@pytest.mark.parametrize("tc", TYPECODES)
@pytest.mark.parametrize("key", [slice(None), slice(None, None, -3)], ids=str)
def test_tolist_and_tobytes_match_array_array(tc, key):
    values = sample(tc, 30, seed=2)
    a = cowbuf.array(tc, values)[key]
    ref = pyarray.array(tc, values[key])
    assert a.tolist() == ref.tolist()
    assert a.tobytes() == ref.tobytes()
    assert bytes(a) == ref.tobytes()


@pytest.mark.parametrize("tc", TYPECODES)
def test_fill(tc):
    a = cowbuf.array(tc, 10)
    a.fill(7)
    assert a.tolist() == [7] * 10
    a[1::3].fill(2)
    assert a.tolist() == [7, 2, 7, 7, 2, 7, 7, 2, 7, 7]
    a[::-4].fill(0)
    assert a.tolist() == [7, 0, 7, 7, 2, 0, 7, 2, 7, 0]
    a[5:5].fill(1)
    assert a.sum() == 7 * 5 + 2 * 2


@pytest.mark.parametrize("tc", INT_TYPECODES)
def test_fill_with_bad_value_changes_nothing(tc):
    low, high = int_range(tc)
    a = cowbuf.array(tc, [1, 2])
    with pytest.raises(OverflowError):
        a.fill(high + 1)
    with pytest.raises(OverflowError):
        a.fill(low - 1)
    with pytest.raises(TypeError):
        a.fill(1.0)
    with pytest.raises(TypeError):
        a.fill("1")
    assert a.tolist() == [1, 2]


def test_fill_large_array():
    a = cowbuf.array("d", 1_000_000)
    a.fill(0.25)
    assert a.sum() == 250_000.0
    assert a.min() == a.max() == 0.25


@pytest.mark.parametrize("tc", TYPECODES)
@pytest.mark.parametrize("n", [1, 2, 7, 129, 100_000])
def test_sum_min_max_match_python(tc, n):
    values = sample(tc, n, seed=n)
    for key in (slice(None), slice(None, None, -2)):
        a = cowbuf.array(tc, values)[key]
        ref = values[key]
        assert a.min() == min(ref)
        assert a.max() == max(ref)
        if tc in "fd":
            assert a.sum() == pytest.approx(math.fsum(ref), rel=1e-9, abs=1e-3)
        else:
            assert a.sum() == sum(ref)
            assert type(a.sum()) is int


@pytest.mark.parametrize("tc", ["q", "Q", "l", "L"])
def test_integer_sum_is_exact_and_never_wraps(tc):
    low, high = int_range(tc)
    values = [high] * 1000 + ([low] * 10 if low else [])
    a = cowbuf.array(tc, values)
    assert a.sum() == sum(values)
    assert a[::7].sum() == sum(values[::7])


def test_sum_of_empty_is_zero_and_min_max_of_empty_is_value_error():
    for tc in TYPECODES:
        a = cowbuf.array(tc, 0)
        assert a.sum() == 0
        with pytest.raises(ValueError):
            a.min()
        with pytest.raises(ValueError):
            a.max()


@pytest.mark.parametrize("tc", "fd")
def test_nan_wins_min_and_max(tc):
    a = cowbuf.array(tc, [1.0, math.nan, -1.0])
    assert math.isnan(a.min()) and math.isnan(a.max())
    a = cowbuf.array(tc, [math.nan, 1.0])
    assert math.isnan(a.min()) and math.isnan(a.max())
    assert math.isnan(a.sum())


def test_toreadonly_is_a_read_only_view():
    a = cowbuf.array("q", range(4))
    ro = a.toreadonly()
    assert ro.readonly and not a.readonly
    assert ro.region is a.region
    with pytest.raises(TypeError):
        ro[0] = 1
    with pytest.raises(TypeError):
        ro[:] = [1, 2, 3, 4]
    with pytest.raises(TypeError):
        ro.fill(1)
    with pytest.raises(TypeError):
        ro[::2].fill(1)
    a[0] = 10
    assert ro[0] == 10
    assert ro[1:].readonly and list(reversed(ro)) == [3, 2, 1, 10]
    with memoryview(ro) as m:
        assert m.readonly
        with pytest.raises(TypeError):
            m[0] = 1


def test_freeze_through_an_array_freezes_its_region():
    a = cowbuf.array("q", range(1000))
    b = a.region.view("B")
    a[::2].freeze()
    assert a.region.frozen and a.readonly and b.readonly
    with pytest.raises(TypeError):
        a[1] = 1
    with pytest.raises(TypeError):
        b[0] = 1
    with pytest.raises(TypeError):
        a[:] = range(1000)
    assert a.sum() == sum(range(1000))


def test_repr_shows_typecode_and_length_not_every_item():
    a = cowbuf.array("q", 10_000_000)
    text = repr(a)
    assert "'q'" in text and "10000000" in text
    assert len(text) < 200
    assert "1, 2, 3" in repr(cowbuf.array("i", [1, 2, 3]))
    a.region.close()
    assert "closed" in repr(a)


# -- after close -------------------------------------------------------------------

def test_every_operation_after_close_is_value_error():
    a = cowbuf.array("q", range(10))
    s = a[::2]
    it = iter(a)
    rit = reversed(a)
    next(it)
    next(rit)
    other = cowbuf.array("q", range(10))
    a.region.close()
    ops = [lambda: len(a), lambda: a[0], lambda: a[1:3], lambda: s[0], lambda: len(s),
           lambda: a.__setitem__(0, 1), lambda: a.__setitem__(slice(0, 2), [1, 2]),
           lambda: iter(a), lambda: reversed(a), lambda: next(it), lambda: next(rit),
           a.tolist, a.tobytes, lambda: a.fill(1), a.sum, a.min, a.max, a.toreadonly,
           a.freeze, lambda: a.nbytes, lambda: a == other, lambda: other == a,
           lambda: memoryview(a), lambda: bytes(a), lambda: list(s)]
    for op in ops:
        with pytest.raises(ValueError):
            op()
    # what does not touch the memory still works
    assert a.typecode == "q" and a.itemsize == 8 and a.region.closed


def test_iteration_interrupted_by_close_is_value_error():
    a = cowbuf.array("q", range(10))
    seen = []
    with pytest.raises(ValueError):
        for x in a:
            seen.append(x)
            if x == 3:
                a.region.close()
    assert seen == [0, 1, 2, 3]


# -- Python code that closes or freezes the region mid-call ------------------------

def fresh():
    return cowbuf.array("q", range(10))


def test_index_that_closes_the_region_is_value_error():
    a = fresh()
    with pytest.raises(ValueError):
        a[Sneaky(1, a.region.close)]
    a = fresh()
    with pytest.raises(ValueError):
        a[Sneaky(1, a.region.close)] = 5
    a = fresh()
    with pytest.raises(ValueError):
        a[Sneaky(1, a.region.close):5]
    a = fresh()
    with pytest.raises(ValueError):
        a[1:3:Sneaky(1, a.region.close)] = [1, 2]


def test_value_that_closes_the_region_is_value_error():
    for tc in ("q", "B", "d", "f"):
        a = cowbuf.array(tc, 4)
        with pytest.raises(ValueError):
            a[1] = Sneaky(1, a.region.close)
        a = cowbuf.array(tc, 4)
        with pytest.raises(ValueError):
            a[0:2] = [1, Sneaky(2, a.region.close)]
        a = cowbuf.array(tc, 4)
        with pytest.raises(ValueError):
            a.fill(Sneaky(2, a.region.close))


def test_generator_that_closes_the_region_is_value_error():
    a = fresh()

    def items():
        yield 1
        a.region.close()
        yield 2

    with pytest.raises(ValueError):
        a[0:2] = items()


def test_value_that_freezes_the_region_is_type_error_and_writes_nothing():
    a = fresh()
    with pytest.raises(TypeError):
        a[3] = Sneaky(-3, a.region.freeze)
    a = fresh()
    with pytest.raises(TypeError):
        a.fill(Sneaky(-3, a.region.freeze))
    a = fresh()
    with pytest.raises(TypeError):
        a[::3] = [Sneaky(-3, a.region.freeze), 1, 2, 3]
    assert a.tolist() == list(range(10))
    assert a.region.frozen


class PyBuffer:
    """A buffer implemented in Python (3.12+), whose __buffer__ runs `action`."""

    def __init__(self, data, action):
        self.data = data
        self.action = action

    def __buffer__(self, flags):
        self.action()
        return memoryview(self.data)

    def __release_buffer__(self, view):
        view.release()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ is Python 3.12+")
def test_python_buffer_that_closes_or_freezes_the_region():
    source = pyarray.array("q", [1, 2])
    a = fresh()
    with pytest.raises(ValueError):
        a[0:2] = PyBuffer(source, a.region.close)
    a = fresh()
    with pytest.raises(TypeError):
        a[0:2] = PyBuffer(source, a.region.freeze)
    assert a.tolist() == list(range(10))
    assert cowbuf.array("q", PyBuffer(source, lambda: None)).tolist() == [1, 2]


def test_close_from_another_thread_during_gil_free_loops_never_crashes():
    # sum(), fill(), tobytes(), max() and slice assignment of large arrays run
    # without the GIL: the region must be pinned meanwhile, or a close() from another
    # thread would unmap the memory under the loop
    a = cowbuf.array("q", 2_000_000)
    source = pyarray.array("q", bytes(8 * 500_000))
    outcome = []

    def work():
        try:
            for _ in range(30):
                a.sum()
                a.fill(3)
                a.tobytes()
                a[::4] = source
                a.max()
            outcome.append("finished")
        except ValueError:
            outcome.append("closed")

    thread = threading.Thread(target=work)
    thread.start()
    try:
        while thread.is_alive() and not a.region.closed:
            # refused while a loop runs, and the memory stays valid
            with contextlib.suppress(BufferError):
                a.region.close()
    finally:
        thread.join()
    a.region.close()
    assert outcome in (["closed"], ["finished"])
    with pytest.raises(ValueError):
        a.sum()


def test_close_and_garbage_collection_in_between_do_not_crash():
    # the classic mmap crash: the memory must not be unmapped while a view holds it
    a = cowbuf.array("d", 100_000)
    view = a[::-7]
    del a
    gc.collect()
    view.fill(1.5)
    assert view.sum() == 1.5 * len(view)


@pytest.mark.skipif(sys.byteorder != "little", reason="byte layout")
def test_layout_is_native_and_contiguous():
    a = cowbuf.array("i", [1, -2])
    assert a.tobytes() == struct.pack("<ii", 1, -2)
