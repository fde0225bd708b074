"""Arrays of more than one dimension: shapes, rows and items, basic indexing against
numpy, reshaping, the buffer export numpy reads without a copy, the whole-array
operations over strided views, and the shape kept through sharing, freezing and
pickling."""

from __future__ import annotations

import array as pyarray
import gc
import io
import pickle
from multiprocessing.reduction import ForkingPickler

import pytest
from helpers import Sneaky, close_while_running, int_range, run_python
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cowbuf
from cowbuf import _core

np = pytest.importorskip("numpy")

TYPECODES = cowbuf.TYPECODES
MAX_NDIM = 8
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow])


def grid(tc="q", shape=(3, 4)):
    """An Array of the given shape holding 0, 1, 2, ... (modulo 100, so that every
    typecode holds them), and the same as numpy."""
    n = 1
    for extent in shape:
        n *= extent
    items = [i % 100 for i in range(n)]
    return cowbuf.array(tc, items, shape=shape), np.array(items, dtype=tc).reshape(shape)


def strides_that_matter(n):
    """The strides of the axes of extent 2 or more: those of the others are free."""
    return [stride for stride, extent in zip(n.strides, n.shape, strict=True) if extent > 1]


# -- construction ----------------------------------------------------------------------

@pytest.mark.parametrize("shape, expected", [
    ((2, 3), (2, 3)), ([2, 3], (2, 3)), (6, (6,)), ((6,), (6,)), ((-1, 2), (3, 2)),
    ((3, -1), (3, 2)), ((1, 1, 6), (1, 1, 6)), ((6, 1), (6, 1)), ((-1,), (6,)),
])
def test_array_with_shape(shape, expected):
    a = cowbuf.array("i", range(6), shape=shape)
    assert a.shape == expected and a.ndim == len(expected)
    assert len(a) == expected[0]
    assert a.nbytes == 6 * a.itemsize
    assert a.tolist() == np.arange(6).reshape(expected).tolist()


def test_shape_without_init_is_zeros():
    a = cowbuf.array("d", shape=(1000, 3))
    assert a.shape == (1000, 3) and a.sum() == 0.0 and a.nbytes == 24_000
    assert cowbuf.array("q", shape=(0, 5)).shape == (0, 5)
    assert cowbuf.array("q").shape == (0,)


@pytest.mark.parametrize("init, shape, error", [
    (range(6), (4,), ValueError), (range(6), (4, 2), ValueError), (range(6), (-1, 4), ValueError),
    (range(6), (-1, -1), ValueError), (range(6), (2, -3), ValueError), (range(6), (), ValueError),
    (range(6), (2.0, 3), TypeError), (range(6), "23", TypeError), (range(6), None, None),
    (range(0), (-1, 0), ValueError), (range(6), (1,) * (MAX_NDIM + 1), ValueError),
    (range(1), (1,) * MAX_NDIM, None), (None, (-1, 2), ValueError),
    (None, (1 << 62, 2), MemoryError), (None, (1 << 40, 1 << 40), MemoryError),
    (None, (0, 1 << 70), MemoryError),
])
def test_bad_shapes_raise(init, shape, error):
    def make():
        if init is None:
            return cowbuf.array("q", shape=shape)
        return cowbuf.array("q", init, shape=shape)

    if error is None:
        make()
    else:
        with pytest.raises(error):
            make()


def test_reshape_message_names_the_counts():
    with pytest.raises(ValueError, match="6 items into shape \\(4,\\)"):
        cowbuf.array("q", range(6), shape=4)


@pytest.mark.parametrize("tc", TYPECODES)
def test_array_from_numpy_keeps_its_shape(tc):
    for src in (np.arange(24).astype(tc).reshape(2, 3, 4), np.zeros((5, 0), tc),
                np.arange(6).astype(tc).reshape(6, 1)):
        a = cowbuf.array(tc, src)
        assert a.shape == src.shape
        assert a.tolist() == src.tolist()
        assert np.asarray(a).tobytes() == src.tobytes()


def test_array_from_numpy_of_the_article_shape_is_two_dimensional_and_zero_copy():
    src = np.arange(20_000_000, dtype=np.int64).reshape(10_000_000, 2)
    a = cowbuf.array("q", src)
    n = np.asarray(a)
    assert a.shape == n.shape == (10_000_000, 2) and n.strides == (16, 8)
    assert np.shares_memory(n, np.frombuffer(a.region, np.uint8))
    assert np.array_equal(n, src)
    assert a[9_999_999, 1] == 19_999_999 and a[-1].tolist() == [19_999_998, 19_999_999]
    assert a[:, 1].sum() == int(src[:, 1].sum())


def test_array_from_strided_and_transposed_numpy_is_copied_in_c_order():
    src = np.arange(24, dtype="i").reshape(4, 6)
    for view in (src.T, src[::2, ::-3], np.asfortranarray(src)):
        a = cowbuf.array("i", view)
        assert a.shape == view.shape and a.tolist() == view.tolist()
        assert cowbuf.array("i", view, shape=-1).tolist() == view.ravel().tolist()


def test_buffer_of_too_many_dimensions_needs_a_shape():
    src = np.zeros((1,) * 9 + (2,), "q")
    with pytest.raises(ValueError, match="at most 8 dimensions"):
        cowbuf.array("q", src)
    assert cowbuf.array("q", src, shape=(2,)).tolist() == [0, 0]


def test_array_of_another_typecode_keeps_its_shape():
    a, _ = grid("q", (2, 3))
    b = cowbuf.array("d", a)
    assert b.shape == (2, 3) and b.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert cowbuf.array("q", a[:, ::2]).tolist() == [[0, 2], [3, 5]]


# -- rows, items, basic indexing ---------------------------------------------------------

def test_rows_and_items():
    a, n = grid("q", (3, 4))
    assert a[1].tolist() == [4, 5, 6, 7] and a[1].shape == (4,)
    assert a[-1, -1] == 11 and a[1, 2] == 6 and a[1][2] == 6
    assert isinstance(a[1, 2], int) and isinstance(cowbuf.array("d", a)[0, 0], float)
    assert a[1].region is a.region
    a[1][2] = 60
    assert n[1, 2] != 60 and a[1, 2] == 60
    for bad in ((3, 0), (0, 4), (-4, 0), (0, -5), 3, -4):
        with pytest.raises(IndexError):
            a[bad]
        with pytest.raises(IndexError):
            a[bad] = 0
    with pytest.raises(IndexError, match="too many indices"):
        a[0, 0, 0]
    for bad in ((0, 1.0), (None, 0), (..., 0), (0, "1")):
        with pytest.raises(TypeError):
            a[bad]


KEYS = [
    (1,), (slice(None), 1), (slice(1, None), slice(None, None, -2)), (slice(None, None, -1),),
    (-1, slice(1, 3)), (slice(5, 9),), (slice(None), slice(None), 2), (0, 1, 2),
    (slice(None, None, 2), -1, slice(None, None, -1)), (slice(2, 0, -1), slice(1, 3), 0),
    (), (slice(None, None, 7), slice(None)), (slice(1, 2), slice(2, 3), slice(3, 4)),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_basic_indexing_matches_numpy(key):
    a, n = grid("h", (3, 4, 5))
    view, expected = a[key], n[key]
    if np.ndim(expected) == 0:
        assert view == expected
        return
    assert view.shape == expected.shape
    assert view.tolist() == expected.tolist()
    assert strides_that_matter(np.asarray(view)) == strides_that_matter(expected)
    assert np.shares_memory(np.asarray(view), np.asarray(a)) or view.nbytes == 0
    # and writes through the view land where numpy's would
    a[key] = np.full(expected.shape, -1, "h")
    n[key] = -1
    assert a.tolist() == n.tolist()


@st.composite
def views(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    key = []
    for extent in shape[:draw(st.integers(0, ndim))]:
        if draw(st.booleans()) and extent:
            key.append(draw(st.integers(-extent, extent - 1)))
        else:
            key.append(slice(draw(st.none() | st.integers(-7, 7)),
                             draw(st.none() | st.integers(-7, 7)),
                             draw(st.none() | st.integers(-4, 4).filter(bool))))
    return shape, tuple(key)


@pytest.mark.hypothesis
@SETTINGS
@given(tc=st.sampled_from(TYPECODES), view_key=views(), data=st.data())
def test_strided_views_match_numpy(tc, view_key, data):
    """Every whole-array operation over a view of any shape and steps."""
    shape, key = view_key
    a, n = grid(tc, shape)
    view, expected = a[key], n[key]
    if np.ndim(expected) == 0:
        assert view == expected
        return
    assert view.shape == expected.shape and view.ndim == expected.ndim
    assert view.tolist() == expected.tolist()
    assert view.tobytes() == expected.tobytes()
    assert bytes(memoryview(view).tobytes()) == expected.tobytes()
    assert len(view) == len(expected)
    assert [row.tolist() if view.ndim > 1 else row for row in view] == expected.tolist()
    assert view.sum() == expected.sum(dtype=float if tc in "fd" else object)
    if expected.size:
        assert view.min() == expected.min() and view.max() == expected.max()
    else:
        with pytest.raises(ValueError):
            view.min()
    assert view == cowbuf.array(tc, expected) and not view != cowbuf.array(tc, expected)
    if expected.size:
        value = data.draw(st.integers(0, 100))
        view.fill(value)
        n[key] = value
        assert a.tolist() == n.tolist()
        view.byteswap()
        n[key] = n[key].byteswap()
        assert a.tobytes() == n.tobytes()


# -- reshape -----------------------------------------------------------------------------

def test_reshape_is_a_view_of_the_same_items():
    a = cowbuf.array("q", range(24))
    for shape in ((2, 3, 4), ((2, 3, 4),), ([4, 6],), (-1, 4), (24,), (-1,), (1, 24, 1)):
        b = a.reshape(*shape)
        assert b.region is a.region
        assert b.tolist() == np.arange(24).reshape(*shape).tolist()
    b = a.reshape(4, 6)
    b[1, 1] = -7
    assert a[7] == -7
    assert b.reshape(-1) == a
    assert a.toreadonly().reshape(6, 4).readonly
    assert a[6:18].reshape(3, 4)[0, 0] == 6


def test_reshape_of_a_view_with_steps_is_refused():
    a, _ = grid("q", (4, 6))
    for view in (a[:, ::2], a[::-1], a[1:3, 1:3], a.reshape(-1)[::2], a[:, 2:3]):
        with pytest.raises(ValueError, match="C-contiguous"):
            view.reshape(-1)
    # a slice of whole rows is contiguous, and so is one row or one column of one
    assert a[1:3].reshape(-1).tolist() == list(range(6, 18))
    assert a[2].reshape(2, 3).tolist() == [[12, 13, 14], [15, 16, 17]]
    assert a.reshape(24, 1)[:, 0].reshape(4, 6) == a


def test_reshape_with_bad_arguments():
    a = cowbuf.array("q", range(6))
    for shape, error in (((4,), ValueError), (((),), ValueError), ((1.5,), TypeError),
                         ((-1, -1), ValueError), (("2", 3), TypeError)):
        with pytest.raises(error):
            a.reshape(*shape)
    with pytest.raises(TypeError):
        a.reshape()


# -- the buffer export -------------------------------------------------------------------

@pytest.mark.parametrize("tc", TYPECODES)
def test_numpy_reads_the_shape_and_strides_without_a_copy(tc):
    a, n = grid(tc, (4, 5))
    for view, ref in ((a, n), (a[::2, 1::2], n[::2, 1::2]), (a[:, ::-1], n[:, ::-1]),
                      (a[3], n[3]), (a[:, 0], n[:, 0])):
        m = np.asarray(view)
        assert m.shape == ref.shape and m.dtype == ref.dtype
        assert strides_that_matter(m) == strides_that_matter(ref)
        assert m.flags.writeable
        assert np.shares_memory(m, np.asarray(a))
        m[...] = 3
        assert view.tolist() == np.full(ref.shape, 3, tc).tolist()
    with memoryview(a) as m:
        assert m.shape == (4, 5) and m.ndim == 2 and m.format == tc
        assert m.strides == (5 * a.itemsize, a.itemsize) and m.c_contiguous


def test_contiguous_requests_of_a_view_with_steps_are_refused():
    a, _ = grid("q", (4, 6))
    s = a[:, ::2]
    with memoryview(s) as m:
        assert not m.contiguous
    with pytest.raises(BufferError):
        np.frombuffer(s, "q")  # a simple buffer
    with pytest.raises(BufferError):
        s.buffer_info()
    assert np.ascontiguousarray(s).tolist() == s.tolist()
    # a contiguous one gives its bytes to any consumer
    assert bytes(a) == a.tobytes() and np.frombuffer(a, "q").tolist() == list(range(24))
    assert a.buffer_info()[1] == 24


def test_read_only_and_frozen_n_d_arrays_export_read_only():
    a, _ = grid("d", (64, 64))
    for view in (a.toreadonly(), a.toreadonly()[::2, 1]):
        assert not np.asarray(view).flags.writeable
    a.freeze()
    assert not np.asarray(a[1:, ::3]).flags.writeable
    with pytest.raises(TypeError):
        a[0, 0] = 1.0
    with pytest.raises(TypeError):
        a[0] = range(64)
    with pytest.raises(TypeError):
        a[:, 0].fill(1.0)


def test_close_refused_while_a_numpy_view_of_a_row_lives():
    a, _ = grid("q", (100, 100))
    n = np.asarray(a[5])
    with pytest.raises(BufferError):
        a.region.close()
    del n
    gc.collect()
    a.region.close()
    for op in (lambda: a[0], lambda: a[0, 0], lambda: a[:, 0], lambda: a.shape and a.sum(),
               lambda: np.asarray(a), a.tolist, lambda: a.reshape(-1), lambda: list(a),
               lambda: a == a, lambda: a[0, 1:2].tolist()):
        with pytest.raises(ValueError):
            op()
    assert a.shape == (100, 100) and a.ndim == 2  # geometry, not memory


# -- assignment ---------------------------------------------------------------------------

def test_assignment_to_rows_items_and_sub_views():
    a, n = grid("i", (3, 4))
    every = slice(None)
    for key, value in (((1, 2), -5), (0, [10, 11, 12, 13]), (2, np.arange(4, dtype="i")),
                       ((every, 1), (7, 8, 9)), ((slice(0, 2), slice(2, 4)), [[1, 2], [3, 4]]),
                       (slice(1, None), np.full((2, 4), 6, "i")),
                       ((slice(None, None, -1), 0), cowbuf.array("i", [1, 2, 3])),
                       ((every, slice(None, None, 3)), [(1, 2)] * 3)):
        a[key] = value
        n[key] = value
        assert a.tolist() == n.tolist()


def test_assignment_of_the_wrong_shape_or_type_changes_nothing():
    a, _ = grid("b", (3, 4))
    before = a.tobytes()
    every = slice(None)
    rows = [[1, 2, 3, 4]] * 2
    cases = [
        (0, [1, 2, 3], ValueError), (0, 5, TypeError), (every, rows, ValueError),
        (every, [*rows, [1, 2, 3]], ValueError), (every, [*rows, [1, 2, 3, 128]], OverflowError),
        (every, [*rows, [1, 2, 3, 1.5]], TypeError), (every, np.zeros((4, 3), "b"), ValueError),
        (every, np.zeros((3, 4), "h"), TypeError), (every, np.zeros(12, "b"), ValueError),
        (every, "abc", TypeError), (every, [1] * 3, TypeError), ((0, 0), [1], TypeError),
        ((0, 0), 1 << 8, OverflowError),
    ]
    for key, value, error in cases:
        with pytest.raises(error):
            a[key] = value
        assert a.tobytes() == before, (key, value)


def test_assignment_from_an_overlapping_view_of_itself():
    a, n = grid("q", (4, 4))
    a[1:, :] = a[:-1, :]
    n[1:, :] = n[:-1, :].copy()
    assert a.tolist() == n.tolist()
    a[:, ::-1] = a
    n[:, ::-1] = n.copy()
    assert a.tolist() == n.tolist()


def test_values_that_close_or_freeze_the_region_mid_assignment():
    a, _ = grid("q", (3, 3))
    with pytest.raises(ValueError):
        a[0] = [1, Sneaky(2, a.region.close), 3]
    a, _ = grid("q", (3, 3))
    with pytest.raises(ValueError):
        a[Sneaky(0, a.region.close), 1]
    a, _ = grid("q", (3, 3))
    with pytest.raises(ValueError):
        a[0, Sneaky(1, a.region.close)] = 5
    a, _ = grid("q", (3, 3))
    with pytest.raises(ValueError):
        a.reshape(Sneaky(9, a.region.close))
    a, _ = grid("q", (3, 3))
    with pytest.raises(TypeError):
        a[1:] = [[1, 2, 3], [4, 5, Sneaky(6, a.region.freeze)]]
    assert a.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and a.region.frozen
    a, _ = grid("q", (3, 3))
    with pytest.raises(TypeError):
        a[Sneaky(1, a.region.freeze), 1] = 5
    assert a[1, 1] == 4


# -- sequences, comparison, hashing -------------------------------------------------------

def test_iteration_yields_rows():
    a, n = grid("q", (3, 2, 2))
    assert [r.tolist() for r in a] == n.tolist()
    assert [r.tolist() for r in reversed(a)] == n[::-1].tolist()
    it = iter(a)
    assert it.__length_hint__() == 3 and iter(it) is it
    next(it)
    assert [r.tolist() for r in pickle.loads(pickle.dumps(it))] == n[1:].tolist()
    rit = reversed(a)
    next(rit)
    assert [r.tolist() for r in pickle.loads(pickle.dumps(rit))] == n[1::-1].tolist()
    assert a[1] in a and cowbuf.array("q", [4, 5, 6, 7], shape=(2, 2)) in a
    assert [4, 5] not in a and 4 not in a


def test_equality_compares_shapes_and_items():
    a, n = grid("q", (2, 3))
    assert a == cowbuf.array("d", a) and a == memoryview(n) and memoryview(n) == a
    assert a != a.reshape(3, 2) and a != a.reshape(-1) and a != n.tolist()
    assert a[:, ::2] == cowbuf.array("q", [0, 2, 3, 5], shape=(2, 2))
    b = cowbuf.array("d", a)
    b[1, 2] = float("nan")
    assert b != cowbuf.array("d", b)
    for op in ("__lt__", "__le__", "__gt__", "__ge__"):
        with pytest.raises(TypeError, match="one dimension"):
            getattr(a, op)(a)


def test_frozen_n_d_arrays_hash_by_value_and_shape():
    a, _ = grid("q", (2, 3))
    b = cowbuf.array("d", a)
    a.freeze()
    b.freeze()
    assert a == b and hash(a) == hash(b)
    c = a.reshape(3, 2)
    assert c != a and hash(c) != hash(a)
    assert {a: 1}[b] == 1


# -- count, index, reverse and atomics need one dimension --------------------------------

def test_one_dimensional_operations_refuse_more_dimensions():
    a, _ = grid("q", (2, 3))
    for op in (lambda: a.count(1), lambda: a.index(1), a.reverse, lambda: a.atomic_load(0),
               lambda: a.atomic_store(0, 1), lambda: a.atomic_add(0, 1),
               lambda: a.atomic_cas(0, 0, 1), lambda: a.atomic_add_at([0], 1)):
        with pytest.raises(TypeError, match="one-dimensional"):
            op()
    # a flat view gives flat positions, and the adds are seen in the 2-d array
    flat = a.reshape(-1)
    flat.atomic_add_at([0, 5, 5], 10)
    assert flat.index(25) == 5 and a[1, 2] == 25 and a[0].count(10) == 1
    assert a[1].atomic_add(0, 1) == 4  # a row is one-dimensional


# -- new arrays ---------------------------------------------------------------------------

def test_concatenation_and_repetition_go_by_rows():
    a, n = grid("i", (2, 3))
    assert (a + a).shape == (4, 3) and (a + a).tolist() == np.concatenate([n, n]).tolist()
    assert (a + a[:, ::-1]).tolist() == np.concatenate([n, n[:, ::-1]]).tolist()
    assert (3 * a).tolist() == np.concatenate([n] * 3).tolist() and (a * 0).shape == (0, 3)
    with pytest.raises(ValueError, match="rows"):
        a + a.reshape(3, 2)
    with pytest.raises(ValueError, match="rows"):
        a + a.reshape(-1)


def test_tofile_writes_the_items_in_c_order():
    a, n = grid("q", (300, 50))
    for view, ref in ((a, n), (a[::-3, 1::7], n[::-3, 1::7])):
        f = io.BytesIO()
        view.tofile(f)
        assert f.getvalue() == ref.tobytes()


def test_repr_round_trips_with_its_shape():
    a, _ = grid("d", (2, 3))
    a[0, 0] = float("-inf")
    text = repr(a)
    assert text == ("cowbuf.array('d', [float('-inf'), 1.0, 2.0, 3.0, 4.0, 5.0], "
                    "shape=(2, 3))")
    assert eval(text, {"cowbuf": cowbuf}) == a
    long = cowbuf.array("q", range(20_000), shape=(-1, 2))
    assert repr(long) == "<cowbuf.Array 'q' shape=(10000, 2) [0, 1, 2, ..., 19997, 19998, 19999]>"


# -- pickling and sharing -----------------------------------------------------------------

@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_by_value_keeps_the_shape(protocol):
    a, _ = grid("H", (3, 4, 2))
    for view, readonly in ((a, False), (a[1:, ::-1, 1], False), (a.toreadonly(), True)):
        b = pickle.loads(pickle.dumps(view, protocol))
        assert b.shape == view.shape and b.tolist() == view.tolist()
        assert b.readonly == readonly and b.region is not a.region
    a.freeze()
    b = pickle.loads(pickle.dumps(a, protocol))
    assert b.region.frozen and b.shape == (3, 4, 2)


@pytest.mark.parametrize("view", ["whole", "strided"])
def test_pickle_protocol_5_out_of_band_keeps_the_shape(view):
    a, _ = grid("d", (300, 40))
    obj = a if view == "whole" else a[::-2, 3::5]
    buffers = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and buffers[0].raw().nbytes == obj.nbytes
    if view == "whole":  # the array's own memory leaves, not a copy
        assert np.shares_memory(np.asarray(buffers[0].raw()), np.asarray(a))
    copy = pickle.loads(data, buffers=buffers)  # a writable buffer: copied
    assert copy.shape == obj.shape and copy == obj and copy.region is not a.region
    # a read-only buffer (an object store's) comes back wrapped, frozen, still shaped
    frozen = bytes(buffers[0].raw())
    wrapped = pickle.loads(data, buffers=[memoryview(frozen)])
    assert wrapped.shape == obj.shape and wrapped == obj and wrapped.readonly
    assert np.shares_memory(np.asarray(wrapped), np.frombuffer(frozen, np.uint8))


def test_pickle_of_another_version_without_a_shape_is_one_dimensional():
    # pickles written before N-d arrays have four arguments
    b = _core._array_from_bytes("q", pyarray.array("q", range(4)).tobytes(), False, False)
    assert b.shape == (4,) and b.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("shape", [(5,), (2, 3), (3, -1), (2.0,), (1,) * 9, ((1 << 62), 0)])
def test_crafted_by_value_shapes_raise(shape):
    with pytest.raises((ValueError, TypeError, MemoryError)):
        _core._array_from_bytes("q", bytes(32), False, False, shape)


def _write_and_report(a, columns):
    # runs in a worker: the array and a view with steps arrive by reference, shaped
    a[1, 2] = -1
    columns[0, 0] = -2
    return a.shape, columns.shape, columns.tolist()


def test_shape_travels_by_reference_under_every_start_method(run_workers):
    a, _ = grid("q", (3, 4))
    [(shape, columns_shape, columns)] = run_workers(_write_and_report, [(a, a[:, ::-2])])
    assert shape == (3, 4) and columns_shape == (3, 2)
    assert a[1, 2] == -1 and a[0, 3] == -2  # the worker's writes, seen here
    assert columns == [[-2, 1], [7, 5], [11, 9]]


def _frozen_in_worker(a):
    try:
        a[0, 0] = 1
    except TypeError:
        return a.shape, a.readonly, a.sum()
    return "written"


def test_frozen_n_d_array_stays_frozen_in_workers(run_workers):
    a, _ = grid("d", (50, 40))
    a.freeze()
    [result] = run_workers(_frozen_in_worker, [(a,)])
    assert result == ((50, 40), True, a.sum()) and a.sum() == 20 * sum(range(100))


def test_shared_reference_keeps_the_geometry_in_this_process():
    a, _ = grid("q", (4, 5))
    for view in (a, a[::-1, 1::2], a[2], a.toreadonly()[1:3]):
        b = pickle.loads(ForkingPickler.dumps(view))
        assert b.shape == view.shape and b.tolist() == view.tolist()
        assert b.region is a.region and b.readonly == view.readonly


@pytest.mark.parametrize("offset, shape, strides", [
    (0, (4, 5), (40, 8)), (152, (4, 5), (-40, -8)), (0, (5, 4), (8, 40)), (8, (0, 9), (8, 8)),
    (0, (1,) * 8, (8,) * 8),
])
def test_references_within_the_region_are_taken(offset, shape, strides):
    a = cowbuf.array("q", range(20))
    b = _core._array_on(a.region, "q", offset, shape, strides, False)
    assert b.shape == shape
    assert np.asarray(b).tolist() == np.lib.stride_tricks.as_strided(
        np.asarray(a)[offset // 8:], shape, strides).tolist()


@pytest.mark.parametrize("offset, shape, strides", [
    (8, (4, 5), (40, 8)), (0, (5, 5), (40, 8)), (0, (4, 5), (40, 0)), (0, (4, 5), (40, 12)),
    (0, (4, -5), (40, 8)), (0, (), ()), (0, (1,) * 9, (8,) * 9), (0, (4, 5), (40,)),
    (-8, (4,), (8,)), (0, (1 << 62, 4), (8, 8)), (0, (0, 1 << 70), (8, 8)),
    (0, (2, 2), (1 << 70, 8)), (4, (2,), (8,)), (160, (1,), (8,)), (144, (4, 5), (-40, -8)),
])
def test_crafted_references_raise_value_error_at_once(offset, shape, strides):
    a = cowbuf.array("q", range(20))
    with pytest.raises(ValueError):
        _core._array_on(a.region, "q", offset, shape, strides, False)


def test_crafted_pickles_never_crash():
    # in an interpreter of its own: a crash must not take the test run with it
    run_python("""
        import pickle
        import cowbuf
        from cowbuf import _core

        a = cowbuf.array("q", 64)
        for shape, strides in [((8, 8), (64, 8)), ((9, 8), (64, 8)), ((8, 8), (8, 64)),
                               ((2**40, 2**40), (8, 8)), ((8, 8), (-64, -8)),
                               ((8, 8), (64, 2**62)), ((3,) * 8, (8,) * 8)]:
            try:
                b = _core._array_on(a.region, "q", 0, shape, strides, False)
            except ValueError:
                continue
            b.tolist(), b.tobytes(), b.sum(), b.fill(1), pickle.loads(pickle.dumps(b))
        print("ok")
    """)


# -- threads --------------------------------------------------------------------------------

def test_close_from_another_thread_during_n_d_loops_never_crashes():
    a = cowbuf.array("q", shape=(1000, 2000))
    source = np.zeros((1000, 1000), "q")

    def loops():
        for _ in range(20):
            a[:, ::2].sum()
            a[:, 1::2].fill(3)
            a[::2].tobytes()
            a[:, ::2] = source
            a[:, ::-1].max()

    assert close_while_running(a.region, loops) in ("closed", "finished")


def test_integer_ranges_hold_in_n_d_sums():
    for tc in "qQ":
        low, high = int_range(tc)
        a = cowbuf.array(tc, [high] * 60 + [low] * 60, shape=(10, 12))
        assert a.sum() == 60 * high + 60 * low
        assert a[:, ::5].sum() == sum(np.array(a.tolist(), dtype=object)[:, ::5].ravel())


def test_random_programs_of_array_operations_never_crash():
    # every operation of docs/array.md on views of every shape, interleaved with
    # close(), freeze(), exports and pickling: exceptions of the documented types,
    # never a crash. In an interpreter of its own: a crash must not take the run.
    run_python("""
        import io, pickle, random, gc
        import numpy as np
        import cowbuf
        from multiprocessing.reduction import ForkingPickler

        EXPECTED = (ValueError, TypeError, IndexError, OverflowError, BufferError,
                    MemoryError)
        rng = random.Random(20261202)
        arrays, exports = [], []

        def pick():
            if not arrays:
                make()
            return rng.choice(arrays)

        def key(a):
            parts = []
            for extent in a.shape[:rng.randint(0, a.ndim + 1)]:
                if rng.random() < 0.4:
                    parts.append(rng.randint(-extent - 1, extent))
                else:
                    stop = rng.choice([None, rng.randint(-5, 5)])
                    parts.append(slice(rng.randint(-5, 5), stop, rng.choice([1, -1, 2, -3, 7])))
            return tuple(parts) if rng.random() < 0.7 else (parts[0] if parts else 0)

        def keep(x):  # a view (not an item)
            if isinstance(x, cowbuf.Array):
                arrays.append(x)

        def make():
            tc = rng.choice(cowbuf.TYPECODES)
            shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(1, 4)))
            n = 1
            for extent in shape:
                n *= extent
            arrays.append(cowbuf.array(tc, [i % 100 for i in range(n)], shape=shape))

        steps = [
            make, make,
            lambda: keep(pick()[key(pick())]),
            lambda: arrays.append(pick().reshape(-1)),
            lambda: arrays.append(pick().toreadonly()),
            lambda: pick().region.close(),
            lambda: pick().freeze(),
            lambda: exports.append(memoryview(pick())),
            lambda: exports.append(np.asarray(pick())),
            lambda: exports.pop() if exports else None,
            lambda: pick().__setitem__(key(pick()), rng.choice([0, [1, 2], [[1, 2]], 1.5])),
            lambda: pick().count(rng.choice([0, 1, 1.0, "x", None])),
            lambda: pick().index(1, rng.randint(-3, 3)),
            lambda: rng.choice([0, 1]) in pick(),
            lambda: pick() == pick(), lambda: pick() < pick(), lambda: hash(pick()),
            lambda: arrays.append(pick() + pick()),
            lambda: arrays.append(rng.randint(-1, 3) * pick()),
            lambda: pick().reverse(), lambda: pick().byteswap(), lambda: pick().fill(1),
            lambda: pick().tofile(io.BytesIO()), lambda: repr(pick()), lambda: pick().tolist(),
            lambda: (pick().sum(), pick().min(), pick().max(), pick().tobytes()),
            lambda: pick().buffer_info(),
            lambda: arrays.append(pickle.loads(pickle.dumps(pick(), rng.randint(0, 5)))),
            lambda: arrays.append(pickle.loads(ForkingPickler.dumps(pick()))),
            lambda: list(pickle.loads(pickle.dumps(iter(pick())))),
            lambda: arrays.append(cowbuf.array(rng.choice("bqd"), pick())),
            lambda: arrays.remove(pick()),
            gc.collect,
        ]
        for _ in range(4000):
            try:
                rng.choice(steps)()
            except EXPECTED:
                pass
            if len(arrays) > 60:
                del arrays[:30]
        print("ok")
    """, timeout=300)
