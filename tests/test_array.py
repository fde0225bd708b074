"""Array: construction, items, slices as views, whole-array operations, bad input,
and use after close, checked against array.array and list semantics."""

import array as pyarray
import collections.abc
import gc
import io
import math
import operator
import pickle
import random
import re
import resource
import struct
import sys
import weakref
from pathlib import Path

import pytest
from helpers import Sneaky, close_while_running, int_range, run_python

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
    ("q", memoryview(pyarray.array("i", [1, 2]))), ("i", memoryview(pyarray.array("q", [1]))),
    ("q", memoryview(b"abcdefgh")), ("b", memoryview(b"abc")),
    ("d", memoryview(pyarray.array("f", [1.0]))), ("Q", memoryview(pyarray.array("q", [1]))),
    ("f", memoryview(pyarray.array("i", [1]))),
])
def test_array_from_mismatched_buffer_names_both_formats(tc, init):
    # a buffer that is not an array.array, an Array or bytes: its bytes are not
    # reinterpreted, and its items not converted (array.array would iterate it)
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


@pytest.mark.parametrize("key", [1.0, "1", None, (1.0,), (None,), (...,), [1]])
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


def test_writable_arrays_are_unhashable():
    a = cowbuf.array("q", 1)
    for unhashable in (a, a.toreadonly(), a[:]):  # the items may still change
        with pytest.raises(TypeError, match="unhashable"):
            hash(unhashable)


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
           lambda: memoryview(a), lambda: bytes(a), lambda: list(s),
           lambda: a.count(1), lambda: a.index(1), lambda: 1 in a, a.reverse, a.byteswap,
           a.buffer_info, lambda: a.tofile(io.BytesIO()), lambda: a + other,
           lambda: other + a, lambda: 2 * a, lambda: a < other, lambda: other >= a,
           lambda: a == pyarray.array("q"), lambda: a < memoryview(other), lambda: hash(a),
           lambda: a.reshape(2, 5), lambda: a[0, ], lambda: a.__setitem__((0,), 1),
           lambda: cowbuf.array("d", a), lambda: cowbuf.array("q", a)]
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

    def loops():
        for _ in range(30):
            a.sum()
            a.fill(3)
            a.tobytes()
            a[::4] = source
            a.max()

    assert close_while_running(a.region, loops) in ("closed", "finished")
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


# -- array.array parity: what a fixed-length array.array does, an Array does ----------
#
# docs/array.md lists the differences, each with the test that shows it.

ALL_PAIRS = [(x, y) for x in TYPECODES for y in TYPECODES]


def both(tc, values):
    """The same items as an Array and as an array.array."""
    return cowbuf.array(tc, values), pyarray.array(tc, values)


@pytest.mark.parametrize("tc1, tc2", ALL_PAIRS)
def test_equality_with_array_array_and_memoryview_both_ways(tc1, tc2):
    for xs, ys in (([1, 2, 3], [1, 2, 3]), ([1, 2, 3], [1, 2, 4]), ([1, 2], [1, 2, 0]),
                   ([], []), ([0, 127], [0, 127])):
        a, ref_a = both(tc1, xs)
        b, ref_b = both(tc2, ys)
        expected = ref_a == ref_b
        for other in (ref_b, memoryview(ref_b), b):
            assert (a == other) is expected and (a != other) is not expected
            assert (other == a) is expected and (other != a) is not expected


def test_equality_follows_python_numbers():
    n = math.nan
    assert cowbuf.array("d", [n]) != cowbuf.array("d", [n])  # NaN equals nothing...
    a = cowbuf.array("d", [n])
    assert a != a and not a == a  # ...not even itself, as with array.array
    assert cowbuf.array("d", [-0.0]) == pyarray.array("d", [0.0])
    assert cowbuf.array("q", [2**53 + 1]) != pyarray.array("d", [2.0**53])
    assert cowbuf.array("Q", [2**64 - 1]) != pyarray.array("d", [2.0**64])
    assert cowbuf.array("Q", [2**63]) == pyarray.array("d", [2.0**63])
    assert cowbuf.array("q", [-(2**63)]) == pyarray.array("d", [-(2.0**63)])
    assert cowbuf.array("f", [0.1]) != pyarray.array("d", [0.1])
    assert cowbuf.array("B", [255]) != pyarray.array("b", [-1])
    # and with nothing else: a list or a numpy array is not an array
    assert cowbuf.array("q", [1]) != [1] and cowbuf.array("q", [1]) != (1,)


ORDERINGS = ["__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"]


@pytest.mark.parametrize("xs, ys", [
    ([1, 2], [1, 2]), ([1, 2], [1, 3]), ([1, 2], [1, 2, 0]), ([], [0]), ([], []),
    ([2], [1, 5]), ([math.nan], [math.nan]), ([1.0, math.nan], [2.0, math.nan]),
    ([math.nan, 1.0], [math.nan, 2.0]), ([-0.0], [0.0]), ([0.5, 3], [0.5, -1]),
    ([math.inf], [math.nan]), ([1, 2, 3], [1, 2]),
])
@pytest.mark.parametrize("tc1, tc2", [("d", "d"), ("f", "d"), ("d", "q"), ("q", "q"),
                                      ("b", "B"), ("Q", "f")])
def test_orderings_are_lexicographic_as_in_array_array(xs, ys, tc1, tc2):
    made = []
    for tc, values in ((tc1, xs), (tc2, ys)):
        try:
            made.append(both(tc, values))
        except TypeError:  # a float for an integer typecode
            return
    (a, ref_a), (b, ref_b) = made
    for op in ORDERINGS:
        expected = getattr(ref_a, op)(ref_b)
        assert getattr(a, op)(b) is expected, op
        assert getattr(a, op)(ref_b) is expected, op
        # the reflected operation (array.array asks the Array)
        assert {"__lt__": ref_a < b, "__le__": ref_a <= b, "__gt__": ref_a > b,
                "__ge__": ref_a >= b, "__eq__": ref_a == b, "__ne__": ref_a != b}[op] is expected
        # memoryviews too, where array.array leaves them to memoryview (no ordering)
        assert getattr(a, op)(memoryview(ref_b)) is expected, op


def test_orderings_with_other_types_are_type_error():
    a = cowbuf.array("q", [1, 2])
    for other in ([1, 2], (1, 2), 3, None, "ab", memoryview(b"ab").cast("c")):
        for op in (operator.lt, operator.le, operator.gt, operator.ge):
            with pytest.raises(TypeError):
                op(a, other)
            with pytest.raises(TypeError):
                op(other, a)
    with pytest.raises(TypeError):  # array.array has no ordering with memoryviews
        operator.lt(pyarray.array("q", [1]), memoryview(pyarray.array("q", [1])))


def test_frozen_arrays_hash_by_value():
    def frozen(tc, values):
        a = cowbuf.array(tc, values)
        a.freeze()
        return a

    a = frozen("q", [1, 2, 3])
    # equal arrays hash alike, whatever their typecodes and layouts
    for equal in (frozen("d", [1.0, 2.0, 3.0]), frozen("B", [1, 2, 3]),
                  frozen("q", [3, 2, 1])[::-1], frozen("f", [1, 2, 3]).toreadonly(),
                  frozen("q", [0, 1, 9, 2, 9, 3])[1::2]):
        assert equal == a and hash(equal) == hash(a)
    assert hash(frozen("d", [0.0, 1.5])) == hash(frozen("d", [-0.0, 1.5]))
    assert hash(frozen("Q", [2**63])) == hash(frozen("d", [2.0**63]))
    assert {a: "found"}[frozen("i", [1, 2, 3])] == "found"
    # unequal arrays (almost always) hash apart
    hashes = {hash(frozen("q", [i, j])) for i in range(30) for j in range(30)}
    hashes |= {hash(frozen("d", [i + 0.5])) for i in range(100)} | {hash(frozen("q", []))}
    assert len(hashes) == 30 * 30 + 100 + 1
    assert hash(a) == hash(a) and hash(a[:2]) != hash(a)
    # a frozen byte array's memoryview hashes as its bytes, as bytes' do
    b = frozen("B", b"cowbuf")
    assert hash(memoryview(b)) == hash(b"cowbuf")
    with pytest.raises(ValueError):  # memoryview hashes formats B, b and c only
        hash(memoryview(a))


@pytest.mark.parametrize("tc", TYPECODES)
def test_repr_round_trips_through_eval(tc):
    values = sample(tc, 20, seed=3)
    if tc in "fd":
        values += [math.nan, math.inf, -math.inf, -0.0]
    for a in (cowbuf.array(tc, values), cowbuf.array(tc, values)[::-3], cowbuf.array(tc, 0)):
        text = repr(a)
        back = eval(text, {"cowbuf": cowbuf})
        assert back.typecode == tc and back.tobytes() == a.tobytes()
        if len(a):  # array.array's repr, but for the name and NaN and infinities
            expected = re.sub(r"(-?)\b(inf|nan)\b", r"float('\1\2')",
                              repr(pyarray.array(tc, a)))
            assert text == "cowbuf." + expected
    assert repr(cowbuf.array(tc, 0)) == f"cowbuf.array('{tc}', [])"


def test_long_repr_elides_the_items():
    a = cowbuf.array("q", range(65))
    assert repr(a) == "<cowbuf.Array 'q' length=65 [0, 1, 2, ..., 62, 63, 64]>"
    assert eval(repr(a[:64]), {"cowbuf": cowbuf}) == a[:64]
    assert repr(a.toreadonly()[::-1]) == (
        "<cowbuf.Array 'q' length=65 readonly [64, 63, 62, ..., 2, 1, 0]>")


def test_weak_references():
    a = cowbuf.array("q", 3)
    ref = weakref.ref(a)
    cache = weakref.WeakValueDictionary({"a": a})
    assert ref() is a and cache["a"] is a
    del a
    gc.collect()
    assert ref() is None and "a" not in cache


def test_array_is_a_sequence_and_not_mutable_one():
    a = cowbuf.array("q", 3)
    assert isinstance(a, collections.abc.Sequence)
    assert isinstance(a, collections.abc.Reversible) and isinstance(a, collections.abc.Collection)
    assert not isinstance(a, collections.abc.MutableSequence)  # no insert, no del
    assert isinstance(pyarray.array("q"), collections.abc.MutableSequence)


def test_there_are_no_resizing_methods():
    a, ref = both("q", [1, 2])
    for name in ("append", "extend", "insert", "pop", "remove", "frombytes", "fromfile",
                 "fromlist", "fromunicode", "tounicode"):
        assert hasattr(ref, name)
        assert not hasattr(a, name), name


def test_classes_are_final():
    for cls in (cowbuf.Array, type(iter(cowbuf.array("q", 1)))):
        with pytest.raises(TypeError):
            type("Sub", (cls,), {})


@pytest.mark.parametrize("tc", TYPECODES)
def test_array_from_bytes_reads_machine_values(tc):
    size = pyarray.array(tc).itemsize
    data = bytes(range(1, 4 * size + 1))
    for init in (data, bytearray(data)):
        assert cowbuf.array(tc, init).tobytes() == pyarray.array(tc, init).tobytes()
    if size > 1:
        for make in (pyarray.array, cowbuf.array):
            with pytest.raises(ValueError, match="multiple of item size"):
                make(tc, data + b"\0")
    # a memoryview of bytes is not bytes: array.array iterates it, cowbuf refuses it
    if tc != "B":
        with pytest.raises(TypeError):
            cowbuf.array(tc, memoryview(data))
    assert cowbuf.array("H", b"1234").tolist() == pyarray.array("H", b"1234").tolist()


@pytest.mark.parametrize("tc1, tc2", ALL_PAIRS)
def test_array_of_another_typecode_converts_item_by_item(tc1, tc2):
    values = sample(tc2, 30, seed=4)
    if tc2 in "fd":
        values += [math.nan, math.inf, -0.0, 1e300 if tc2 == "d" else 3e38]
    source = pyarray.array(tc2, values)
    try:
        expected = pyarray.array(tc1, source)
    except (TypeError, OverflowError) as exc:
        for init in (source, cowbuf.array(tc2, source), cowbuf.array(tc2, source)[::-1]):
            with pytest.raises(type(exc)):
                cowbuf.array(tc1, init)
    else:
        for init in (source, cowbuf.array(tc2, source)):
            assert cowbuf.array(tc1, init).tobytes() == expected.tobytes()
        view = cowbuf.array(tc2, source)[::-2]
        assert cowbuf.array(tc1, view).tobytes() == expected[::-2].tobytes()


def test_array_without_init_is_empty():
    assert cowbuf.array("q").tolist() == [] == pyarray.array("q").tolist()
    with pytest.raises(TypeError):
        cowbuf.array("q", None)
    with pytest.raises(TypeError):
        pyarray.array("q", None)


# -- count, index, in -------------------------------------------------------------------

class Eq:
    """Equal to one value, through its own __eq__."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return other == self.value

    __hash__ = None


@pytest.mark.parametrize("tc", TYPECODES)
def test_count_index_and_in_match_array_array(tc):
    from decimal import Decimal
    from fractions import Fraction

    values = sample(tc, 12, seed=5)
    values = values + values[:5] + [values[3]]
    a, ref = both(tc, values)
    needles = [*values, 0, 1, -1, 0.0, 0.5, -0.0, True, False, 2**64, -(2**63) - 1, 1e300,
               math.nan, math.inf, 1.5, "1", None, b"\0", [1], 1j, 1 + 0j, Decimal(1),
               Fraction(1), Eq(values[2]), np_scalar(values[4], tc), 2**53 + 1, 16777217,
               float(2**53 + 1)]
    for x in needles:
        assert a.count(x) == ref.count(x), x
        assert (x in a) == (x in ref), x
        for start, stop in ((0, len(a)), (3, None), (-5, None), (2, -2), (5, 3),
                            (-100, 100), (10**30, 0), (0, 10**30), (-(10**30), 10**30)):
            args = (x, start) if stop is None else (x, start, stop)
            try:
                expected = ref.index(*args)
            except ValueError:
                with pytest.raises(ValueError, match="not in array"):
                    a.index(*args)
            else:
                assert a.index(*args) == expected, args
    for bad in ((1, 1.0), (1, "0"), (1, 0, None)):
        with pytest.raises(TypeError):
            ref.index(*bad)
        with pytest.raises(TypeError):
            a.index(*bad)
    with pytest.raises(TypeError):
        a.count()
    with pytest.raises(TypeError):
        a.index()


def np_scalar(value, tc):
    np = pytest.importorskip("numpy")
    return np.array([value], dtype=tc)[0]


def test_count_and_index_on_views_and_large_arrays():
    values = [i % 7 for i in range(1_000_000)]
    a = cowbuf.array("q", values)  # large enough to search without the GIL
    assert a.count(3) == values.count(3)
    assert a[::-3].count(3) == values[::-3].count(3)
    assert a.index(6) == 6 and a[::-1].index(6) == values[::-1].index(6)
    assert a.index(0, 999_000) == values.index(0, 999_000)
    assert a.index(5, -3) == values.index(5, -3)
    d = cowbuf.array("d", 1_000_000)
    d[-1] = math.nan
    assert d.count(0.0) == 999_999 and d.count(math.nan) == 0 and math.nan not in d


def test_count_or_index_whose_eq_closes_the_region_is_value_error():
    a = cowbuf.array("q", range(10))

    class Closing:
        def __eq__(self, other):
            a.region.close()
            return False

        __hash__ = None

    with pytest.raises(ValueError, match="closed"):
        a.count(Closing())
    b = cowbuf.array("q", range(10))
    with pytest.raises(ValueError, match="closed"):
        b.index(3, Sneaky(0, b.region.close))


# -- in place: reverse, byteswap ----------------------------------------------------------

@pytest.mark.parametrize("tc", TYPECODES)
@pytest.mark.parametrize("key", SLICES, ids=str)
def test_reverse_and_byteswap_in_place_match_array_array(tc, key):
    values = sample(tc, 10, seed=6)
    a = cowbuf.array(tc, values)
    view, ref = a[key], pyarray.array(tc, values[key])
    view.reverse()
    ref.reverse()
    assert view.tobytes() == ref.tobytes()
    view.byteswap()
    ref.byteswap()
    assert view.tobytes() == ref.tobytes()
    # and nothing outside the view moved
    model = pyarray.array(tc, values)
    for i, v in zip(range(10)[key], ref, strict=True):
        model[i] = v
    assert a.tobytes() == model.tobytes()


def test_large_reverse_and_byteswap():
    a, ref = both("q", range(1_000_000))
    a.reverse()
    ref.reverse()
    a[::3].byteswap()
    view = pyarray.array("q", ref[::3])
    view.byteswap()
    ref[::3] = view
    assert a.tobytes() == ref.tobytes()


def test_reverse_and_byteswap_refuse_frozen_and_read_only_arrays():
    a = cowbuf.array("h", [1, 2, 3])
    for view in (a.toreadonly(), a.toreadonly()[::2]):
        for op in (view.reverse, view.byteswap):
            with pytest.raises(TypeError, match="read-only"):
                op()
    a.freeze()
    for op in (a.reverse, a.byteswap, cowbuf.array("b", 1).toreadonly().byteswap):
        with pytest.raises(TypeError, match="read-only"):
            op()
    assert a.tolist() == [1, 2, 3]


# -- memory and files ---------------------------------------------------------------------

def test_buffer_info_is_the_address_and_the_item_count():
    np = pytest.importorskip("numpy")
    a = cowbuf.array("i", range(10))
    address, count = a.buffer_info()
    assert count == 10 and address == np.asarray(a).ctypes.data
    assert a[2:5].buffer_info() == (address + 8, 3)
    assert a[3:4:5].buffer_info() == (address + 12, 1)
    for view in (a[::2], a[::-1]):
        with pytest.raises(BufferError, match="steps"):
            view.buffer_info()
    ref = pyarray.array("i", range(10))
    assert ref.buffer_info()[1] * ref.itemsize == a.nbytes


class Recorder:
    """A file object that records what write() is given."""

    def __init__(self, action=lambda: None):
        self.writes = []
        self.action = action

    def write(self, data):
        self.writes.append(bytes(data))
        self.action()
        return len(data)


@pytest.mark.parametrize("n", [0, 1, 8191, 8192, 8193, 100_000])
def test_tofile_writes_what_array_array_writes(n, tmp_path):
    a, ref = both("q", range(n))
    mine, theirs = Recorder(), Recorder()
    a.tofile(mine)
    ref.tofile(theirs)
    assert mine.writes == theirs.writes  # the same blocks
    path = tmp_path / "items"
    with open(path, "wb") as f:
        a[::-1].tofile(f)
    assert path.read_bytes() == ref[::-1].tobytes()
    with pytest.raises(AttributeError):
        a.tofile(None)


def test_tofile_whose_write_closes_the_region_is_value_error():
    a = cowbuf.array("q", 100_000)
    f = Recorder(a.region.close)
    with pytest.raises(ValueError, match="closed"):
        a.tofile(f)
    assert len(f.writes) == 1


# -- new arrays: a + b, n * a --------------------------------------------------------------

@pytest.mark.parametrize("tc", TYPECODES)
def test_concatenation_and_repetition_make_new_arrays(tc):
    xs, ys = sample(tc, 7, seed=7), sample(tc, 5, seed=8)
    (a, ref_a), (b, ref_b) = both(tc, xs), both(tc, ys)
    for result, expected in ((a + b, ref_a + ref_b), (a[::-2] + b, ref_a[::-2] + ref_b),
                             (a + ref_b, ref_a + ref_b), (ref_a + b, ref_a + ref_b),
                             (3 * a, 3 * ref_a), (a * 2, ref_a * 2), (a * 0, ref_a * 0),
                             (a * -2, ref_a * -2), (True * a, True * ref_a),
                             (a[::-1] * 2, ref_a[::-1] * 2), (a + a, ref_a + ref_a)):
        assert isinstance(result, cowbuf.Array)
        assert result.tobytes() == expected.tobytes() and result.typecode == tc
        assert not result.readonly and result.region is not a.region
    a.freeze()
    assert not (a + b).readonly and not (2 * a).readonly  # new memory, writable


def test_concatenation_and_repetition_of_the_wrong_types_are_type_error():
    a = cowbuf.array("q", [1])
    for op in (lambda: a + cowbuf.array("i", [1]), lambda: a + pyarray.array("d", [1]),
               lambda: pyarray.array("l" if pyarray.array("l").itemsize != 8 else "i") + a,
               lambda: operator.add(a, [1]), lambda: operator.add([1], a),
               lambda: a + b"\0" * 8, lambda: a * 2.0,
               lambda: a * "2", lambda: None * a):
        with pytest.raises(TypeError):
            op()
    with pytest.raises(OverflowError):
        a * 2**100
    with pytest.raises(MemoryError):
        a * (1 << 61)


def test_in_place_concatenation_and_repetition_are_refused():
    a = cowbuf.array("q", [1, 2])
    b = a
    with pytest.raises(TypeError, match="fixed length"):
        a += cowbuf.array("q", [3])
    with pytest.raises(TypeError, match="fixed length"):
        a *= 2
    assert a is b and a.tolist() == [1, 2]


def test_repetition_whose_index_closes_the_region_is_value_error():
    a = cowbuf.array("q", [1, 2])
    with pytest.raises(ValueError, match="closed"):
        a * Sneaky(3, a.region.close)


# -- iterators ---------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_iterators_pickle_with_their_position(protocol):
    a, ref = both("i", range(10))
    for make in (iter, reversed, lambda x: iter(x[::-3])):
        it, ref_it = make(a), make(ref)
        for _ in range(2):
            assert next(it) == next(ref_it)
        copy = pickle.loads(pickle.dumps(it, protocol))
        assert list(copy) == list(ref_it) == list(it)
        assert list(pickle.loads(pickle.dumps(it, protocol))) == []  # exhausted
    it = iter(a)
    it.__setstate__(-5)
    assert next(it) == 0
    it.__setstate__(100)
    assert list(it) == []
    with pytest.raises(TypeError):
        it.__setstate__("1")


def test_small_arrays_unpickled_by_value_are_carved_from_an_arena():
    # as cowbuf.array() carves them: a hundred thousand of them must not cost a
    # hundred thousand fds and mappings
    from cowbuf import _core

    small = pickle.loads(pickle.dumps(cowbuf.array("q", range(10))))
    large = pickle.loads(pickle.dumps(cowbuf.array("q", range(10_000))))
    assert small.tolist() == list(range(10)) and large.sum() == sum(range(10_000))
    assert _core._region_state(small.region)[0].arena
    assert not _core._region_state(large.region)[0].arena


# -- GIL-free writes and a close from another thread ----------------------------------------

def test_close_during_gil_free_writes_never_unmaps_the_memory_under_them():
    # fill(), slice assignment, reverse(), byteswap() and atomic_add_at() of large
    # arrays write without the GIL: a close() from another thread must not unmap the
    # memory under them (0.1.0 segfaulted in fill()). Many tries, in an interpreter
    # of its own: a crash must not take the test run with it.
    run_python("""
        import contextlib, threading
        import cowbuf

        source = cowbuf.array("q", 1_000_000)
        indices = cowbuf.array("q", range(0, 2_000_000, 7))
        ops = [lambda a: a.fill(3), lambda a: a.__setitem__(slice(None, None, 2), source),
               lambda a: a.reverse(), lambda a: a.byteswap(),
               lambda a: a.atomic_add_at(indices, 1),
               lambda a: a.reshape(1000, 2000)[:, ::2].fill(1),
               lambda a: a.reshape(1000, 2000).__setitem__(
                   (slice(None), slice(None, None, 2)), source.reshape(1000, 1000))]
        for op in ops:
            for _ in range(40):
                a = cowbuf.array("q", 2_000_000)

                def work():
                    with contextlib.suppress(ValueError):
                        for _ in range(20):
                            op(a)

                thread = threading.Thread(target=work)
                thread.start()
                while thread.is_alive() and not a.region.closed:
                    with contextlib.suppress(BufferError):
                        a.region.close()
                thread.join()
        print("ok")
    """, timeout=300)


DOCS = Path(__file__).resolve().parent.parent / "docs" / "array.md"


@pytest.mark.skipif(not DOCS.exists(), reason="needs the source tree's docs/")
def test_every_difference_from_array_array_names_a_test_that_exists():
    text = DOCS.read_text()
    table = text.split("## Differences from array.array", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]
    assert len(rows) >= 15
    for row in rows:
        assert re.search(r"tests/test_\w+\.py::test_\w+", row), f"a row without a test: {row}"
    # and every test the page names exists
    for path, name in re.findall(r"(tests/test_\w+\.py)::(test_\w+)", text):
        source = (DOCS.parent.parent / path).read_text()
        assert re.search(rf"^def {name}\(|^{name} = ", source, re.M), f"{path}::{name}"
