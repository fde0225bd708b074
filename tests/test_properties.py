"""Property tests: Array against array.array and list, Counter against a Python int.

Every typecode, every value hypothesis can think of: the same results where both
succeed, the same exception type where array.array raises, and a failed call changes
nothing. The stateful machine builds nested slice views (any step, negative bounds)
on one array and checks every write through them against a model array.array.

Searches with bounded example counts (the "cowbuf-ci" profile), from a seed printed
at the start and the end of the run, after replaying the regression corpus (see
tests/conftest.py); set COWBUF_HYPOTHESIS_PROFILE=cowbuf-dev for a longer search.
"""

from __future__ import annotations

import array as pyarray
import io
import math
import os
import pickle
import struct
from decimal import Decimal
from fractions import Fraction

import pytest
from helpers import int_range, wrap
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import cowbuf

pytestmark = pytest.mark.hypothesis

# the profiles, the seed and the regression corpus: tests/conftest.py
PROFILE = settings.get_profile(os.environ.get("COWBUF_HYPOTHESIS_PROFILE", "cowbuf-ci"))
DEV = PROFILE.max_examples > 1000


def bounded(examples: int, **kwargs: object) -> settings:
    """The profile, with `examples` examples unless the profile asks for more."""
    return settings(PROFILE, max_examples=max(examples, PROFILE.max_examples if DEV else 0),
                    **kwargs)


TYPECODES = cowbuf.TYPECODES
INT_TYPECODES = [tc for tc in TYPECODES if tc not in "fd"]
ATOMIC_TYPECODES = [tc for tc in INT_TYPECODES if struct.calcsize(tc) >= 4]


class Index:
    """Not an int, but usable as one."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"Index({self.value})"


class AsFloat:
    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"AsFloat({self.value})"


class Raising:
    """A number whose conversion fails with an unusual exception."""

    def __index__(self) -> int:
        raise ZeroDivisionError("from __index__")

    def __float__(self) -> float:
        raise ZeroDivisionError("from __float__")

    def __repr__(self) -> str:
        return "Raising()"


def good_values(tc: str) -> st.SearchStrategy[object]:
    """Values that array.array(tc) stores."""
    if tc in "fd":
        if tc == "f":
            # rounded through float32, as stored; overflow to inf is its own test
            return st.floats(width=32)
        return st.floats()
    low, high = int_range(tc)
    return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1 % (high + 1)])
                     .filter(lambda v: low <= v <= high))


def any_values(tc: str) -> st.SearchStrategy[object]:
    """Anything: good values, values out of range, values of the wrong type."""
    low, high = int_range(tc) if tc in INT_TYPECODES else (-(2**63), 2**64)
    edges = [low - 1, high + 1, low - 2**64, high + 2**64, 2**63, -(2**63) - 1, 2**64,
             10**400, -(10**400)]
    return st.one_of(
        good_values(tc),
        st.integers(),
        st.sampled_from(edges),
        st.floats(),
        st.booleans(),
        st.integers(-(2**70), 2**70).map(Index),
        st.floats(allow_nan=False).map(AsFloat),
        st.sampled_from([None, "1", b"1", 1j, Decimal("1"), Decimal("2.5"), Fraction(1, 2),
                         Fraction(4, 1), [1], (), Raising(), object()]),
    )


def outcome(call):
    """("ok", result) or the type of the exception the call raised."""
    try:
        return ("ok", call())
    except Exception as exc:  # the type is the result
        return (type(exc),)


def same_outcome(expected: tuple[object, ...], actual: tuple[object, ...]) -> None:
    if expected[0] == "ok" and actual[0] == "ok":
        return
    assert actual[0] == expected[0], (expected, actual)


def values_of(a) -> bytes:
    """An Array's items as bytes: NaNs and signed zeros compare exactly."""
    return a.tobytes()


# -- single values -------------------------------------------------------------------

@pytest.mark.parametrize("tc", TYPECODES)
@bounded(150)
@given(data=st.data())
def test_item_assignment_matches_array_array(tc: str, data: st.DataObject) -> None:
    value = data.draw(any_values(tc), label="value")
    before = [data.draw(good_values(tc)) for _ in range(3)]
    model = pyarray.array(tc, before)
    a = cowbuf.array(tc, model)

    def model_set():
        model[1] = value
        return model.tobytes()

    def cowbuf_set():
        a[1] = value
        return a.tobytes()

    expected, actual = outcome(model_set), outcome(cowbuf_set)
    same_outcome(expected, actual)
    assert a.tobytes() == model.tobytes()  # the same item stored, or nothing changed
    # fill and a one-item slice assignment convert the same way
    b = cowbuf.array(tc, before)
    same_outcome(expected, outcome(lambda: b.fill(value)))
    if expected[0] == "ok":
        assert b.tobytes() == pyarray.array(tc, [model[1]] * 3).tobytes()
    else:
        assert b.tobytes() == pyarray.array(tc, before).tobytes()
    c = cowbuf.array(tc, before)
    same_outcome(expected, outcome(lambda: c.__setitem__(slice(1, 2), [value])))
    assert c.tobytes() == model.tobytes()


@pytest.mark.parametrize("tc", TYPECODES)
@bounded(100)
@given(data=st.data())
def test_construction_matches_array_array(tc: str, data: st.DataObject) -> None:
    items = data.draw(st.lists(st.one_of(good_values(tc), any_values(tc)), max_size=12))
    expected = outcome(lambda: pyarray.array(tc, items).tobytes())
    for source in (items, tuple(items), iter(items)):
        actual = outcome(lambda source=source: cowbuf.array(tc, source).tobytes())
        same_outcome(expected, actual)
        if expected[0] == "ok":
            assert actual[1] == expected[1]


@pytest.mark.parametrize("tc", TYPECODES)
@bounded(60)
@given(data=st.data())
def test_construction_from_buffers_and_ranges(tc: str, data: st.DataObject) -> None:
    items = data.draw(st.lists(good_values(tc), max_size=40))
    model = pyarray.array(tc, items)
    # a buffer of the same type is copied, of another type refused
    assert cowbuf.array(tc, model).tobytes() == model.tobytes()
    assert cowbuf.array(tc, memoryview(model)[::-2]).tobytes() == model[::-2].tobytes()
    other = "d" if tc != "d" else "q"
    with pytest.raises(TypeError):
        cowbuf.array(tc, memoryview(pyarray.array(other, [0] * len(items))))
    # but an array.array or an Array of another typecode converts item by item, and
    # bytes are machine values, as array.array has them
    other = data.draw(st.sampled_from(TYPECODES), label="other typecode")
    source = pyarray.array(other, data.draw(st.lists(good_values(other), max_size=20)))
    expected = outcome(lambda: pyarray.array(tc, source).tobytes())
    for init in (source, cowbuf.array(other, source)):
        actual = outcome(lambda init=init: cowbuf.array(tc, init).tobytes())
        same_outcome(expected, actual)
        if expected[0] == "ok":
            assert actual[1] == expected[1]
    raw = data.draw(st.binary(max_size=40), label="bytes")
    expected = outcome(lambda: pyarray.array(tc, raw).tobytes())
    actual = outcome(lambda: cowbuf.array(tc, raw).tobytes())
    same_outcome(expected, actual)
    if expected[0] == "ok":
        assert actual[1] == expected[1]
    # a range is filled in C; out-of-range ends raise what array.array raises
    start = data.draw(st.integers(-(2**65), 2**65))
    step = data.draw(st.integers(-(2**64), 2**64).filter(bool))
    length = data.draw(st.integers(0, 20))
    r = range(start, start + step * length, step)
    expected = outcome(lambda: pyarray.array(tc, r).tobytes())
    actual = outcome(lambda: cowbuf.array(tc, r).tobytes())
    same_outcome(expected, actual)
    if expected[0] == "ok":
        assert actual[1] == expected[1]


@pytest.mark.parametrize("tc", ["f", "d", "q", "Q"])
def test_ranges_with_steps_past_int64_fill_exactly(tc: str) -> None:
    # found by test_construction_from_buffers_and_ranges: items computed in int64
    # overflowed for float typecodes
    for r in (range(0, 11 * 2**60, 2**60), range(2**63 - 1, -(2**63), -(2**62)),
              range(-5, 2**63 - 1, 2**62), range(0, 2**66, 2**62)):
        expected = outcome(lambda r=r: pyarray.array(tc, r).tobytes())
        actual = outcome(lambda r=r: cowbuf.array(tc, r).tobytes())
        assert actual == expected, r


def index_keys(n: int) -> st.SearchStrategy[object]:
    return st.one_of(
        st.integers(-n - 3, n + 3),
        st.integers(),
        st.sampled_from([2**63, -(2**63) - 1, 10**30, True, False]),
        st.integers(-n - 3, n + 3).map(Index),
        st.sampled_from([1.0, "0", None, Decimal(0), Raising()]),
    )


@pytest.mark.parametrize("tc", TYPECODES)
@bounded(80)
@given(data=st.data())
def test_indexing_matches_array_array(tc: str, data: st.DataObject) -> None:
    items = data.draw(st.lists(good_values(tc), max_size=10))
    model = pyarray.array(tc, items)
    a = cowbuf.array(tc, items)
    key = data.draw(index_keys(len(items)), label="key")
    expected = outcome(lambda: model[key])
    actual = outcome(lambda: a[key])
    same_outcome(expected, actual)
    if expected[0] == "ok":
        assert pyarray.array(tc, [actual[1]]).tobytes() == pyarray.array(
            tc, [expected[1]]).tobytes()
    # writes at the same index fail or succeed alike
    value = items[0] if items else 0
    same_outcome(outcome(lambda: model.__setitem__(key, value)),
                 outcome(lambda: a.__setitem__(key, value)))
    assert a.tobytes() == model.tobytes()


def slices(n: int) -> st.SearchStrategy[slice]:
    bound = st.one_of(st.none(), st.integers(-n - 5, n + 5),
                      st.sampled_from([2**63, -(2**63), 10**30, -(10**30)]))
    step = st.one_of(st.none(), st.integers(-n - 2, n + 2).filter(bool),
                     st.sampled_from([2**63 - 1, -(2**63) + 1, 10**30]))
    return st.builds(slice, bound, bound, step)


@pytest.mark.parametrize("tc", TYPECODES)
@bounded(80)
@given(data=st.data())
def test_nested_slices_match_list_slicing(tc: str, data: st.DataObject) -> None:
    items = data.draw(st.lists(good_values(tc), max_size=24))
    model = pyarray.array(tc, items)
    a = cowbuf.array(tc, items)
    view, expected = a, model
    for _ in range(data.draw(st.integers(1, 4))):
        key = data.draw(slices(len(expected)))
        view, expected = view[key], expected[key]
        assert len(view) == len(expected)
        assert view.tobytes() == expected.tobytes()
        assert pyarray.array(tc, view.tolist()).tobytes() == expected.tobytes()
        assert pyarray.array(tc, list(view)).tobytes() == expected.tobytes()
        assert pyarray.array(tc, reversed(view)).tobytes() == expected[::-1].tobytes()
        assert bytes(memoryview(view).tobytes()) == expected.tobytes()
    # a zero step is refused by both
    same_outcome(outcome(lambda: model[::0]), outcome(lambda: a[::0]))


def close_enough(actual: float, values: list[float]) -> bool:
    exact = math.fsum(values)
    scale = math.fsum(abs(v) for v in values)
    return abs(actual - exact) <= 1e-12 * max(scale, 1.0) * max(len(values), 1)


@pytest.mark.parametrize("tc", TYPECODES)
@bounded(80)
@given(data=st.data())
def test_sum_min_max_match_python_on_any_items(tc: str, data: st.DataObject) -> None:
    if tc in "fd":
        # finite and not too large, so that the summation order cannot overflow
        values = st.floats(-(2.0**99), 2.0**99, width=32 if tc == "f" else 64)
    else:
        values = good_values(tc)
    items = list(pyarray.array(tc, data.draw(st.lists(values, max_size=40))))
    a = cowbuf.array(tc, items)[data.draw(slices(len(items)))]
    items = a.tolist()
    if tc in "fd":
        assert close_enough(a.sum(), items)
    else:
        assert a.sum() == sum(items)
        assert type(a.sum()) is int
    same_outcome(outcome(lambda: min(items)), outcome(a.min))
    same_outcome(outcome(lambda: max(items)), outcome(a.max))
    if items:
        assert a.min() == min(items) and a.max() == max(items)


@pytest.mark.parametrize("tc", ["f", "d"])
@bounded(60)
@given(items=st.lists(st.floats(), min_size=1, max_size=20))
def test_nan_wins_min_and_max_wherever_it_lies(tc: str, items: list[float]) -> None:
    a = cowbuf.array(tc, items)
    values = a.tolist()
    if any(math.isnan(v) for v in values):
        assert math.isnan(a.min()) and math.isnan(a.max())
    else:
        assert a.min() == min(values) and a.max() == max(values)


COMPARISONS = [
    ("==", lambda x, y: x == y), ("!=", lambda x, y: x != y), ("<", lambda x, y: x < y),
    ("<=", lambda x, y: x <= y), (">", lambda x, y: x > y), (">=", lambda x, y: x >= y),
]


@bounded(200)
@given(data=st.data())
def test_comparisons_match_array_array(data: st.DataObject) -> None:
    tc1, tc2 = data.draw(st.sampled_from(TYPECODES)), data.draw(st.sampled_from(TYPECODES))
    common = st.one_of(st.integers(0, 127), st.sampled_from(
        [0.5, float("nan"), -0.0, float("inf"), 2**63, -(2**63), 2**64 - 1, 2.0**63,
         2**53 + 1, 2.0**53, -1, 255]))
    xs = data.draw(st.lists(common, max_size=6))
    ys = list(xs) if data.draw(st.booleans()) else data.draw(st.lists(common, max_size=6))
    if data.draw(st.booleans()):  # one the start of the other
        ys = ys[:data.draw(st.integers(0, len(ys)))]
    mx = outcome(lambda: pyarray.array(tc1, xs))
    my = outcome(lambda: pyarray.array(tc2, ys))
    assume(mx[0] == "ok" and my[0] == "ok")
    # views with steps compare by value too
    step = data.draw(st.sampled_from([1, -1, 2, -3]))
    ref_a, ref_b = mx[1][::step], my[1][::step]
    a, b = cowbuf.array(tc1, xs)[::step], cowbuf.array(tc2, ys)[::step]
    for name, op in COMPARISONS:
        expected = op(ref_a, ref_b)
        for x, y in ((a, b), (a, ref_b), (ref_a, b), (a, memoryview(ref_b))):
            assert op(x, y) is expected, (name, x, y)


@pytest.mark.parametrize("tc", TYPECODES)
@bounded(60)
@given(data=st.data())
def test_count_and_index_match_array_array(tc: str, data: st.DataObject) -> None:
    items = data.draw(st.lists(good_values(tc), max_size=20), label="items")
    if items and data.draw(st.booleans()):
        items += data.draw(st.lists(st.sampled_from(items), max_size=5))
    step = data.draw(st.sampled_from([1, -1, 2, -3]))
    model, a = pyarray.array(tc, items)[::step], cowbuf.array(tc, items)[::step]
    x = data.draw(st.one_of(st.sampled_from(items or [0]), any_values(tc)), label="x")
    expected, actual = outcome(lambda: model.count(x)), outcome(lambda: a.count(x))
    same_outcome(expected, actual)
    if expected[0] == "ok":
        assert actual[1] == expected[1] and (x in a) == (x in model)
    bound = st.one_of(st.integers(-len(items) - 3, len(items) + 3),
                      st.sampled_from([2**63, -(2**63), 10**30, -(10**30)]))
    args = (x, *data.draw(st.lists(bound, max_size=2), label="start, stop"))
    expected, actual = outcome(lambda: model.index(*args)), outcome(lambda: a.index(*args))
    same_outcome(expected, actual)
    if expected[0] == "ok":
        assert actual[1] == expected[1]


@pytest.mark.parametrize("tc", TYPECODES)
@bounded(40)
@given(data=st.data())
def test_new_arrays_and_in_place_changes_match_array_array(tc: str, data: st.DataObject) -> None:
    """+, *, reverse(), byteswap(), tofile() and repr() against array.array."""
    xs = data.draw(st.lists(good_values(tc), max_size=12), label="xs")
    ys = data.draw(st.lists(good_values(tc), max_size=12), label="ys")
    step = data.draw(st.sampled_from([1, -1, 2, -3]))
    ref_x, ref_y = pyarray.array(tc, xs)[::step], pyarray.array(tc, ys)
    x, y = cowbuf.array(tc, xs)[::step], cowbuf.array(tc, ys)
    n = data.draw(st.integers(-2, 4), label="n")
    assert (x + y).tobytes() == (ref_x + ref_y).tobytes()
    assert (x + ref_y).tobytes() == (ref_x + y).tobytes() == (ref_x + ref_y).tobytes()
    assert (n * x).tobytes() == (x * n).tobytes() == (n * ref_x).tobytes()
    f = io.BytesIO()
    x.tofile(f)
    assert f.getvalue() == ref_x.tobytes()
    back = eval(repr(x), {"cowbuf": cowbuf})
    assert back.typecode == tc and repr(back) == repr(x)
    if not any(v != v for v in xs):  # (a NaN's payload does not survive its repr)
        assert back.tobytes() == ref_x.tobytes()
    x.reverse()
    ref_x.reverse()
    assert x.tobytes() == ref_x.tobytes()
    x.byteswap()
    ref_x.byteswap()
    assert x.tobytes() == ref_x.tobytes()


@bounded(100)
@given(data=st.data())
def test_equal_frozen_arrays_hash_alike(data: st.DataObject) -> None:
    tc1, tc2 = data.draw(st.sampled_from(TYPECODES)), data.draw(st.sampled_from(TYPECODES))
    common = st.one_of(st.integers(0, 127), st.sampled_from(
        [0.5, -0.0, 0.0, float("inf"), 2**63, 2.0**63, -(2**63), 2**53 + 1, 2.0**53, -1]))
    xs = data.draw(st.lists(common, max_size=6))
    ys = list(xs) if data.draw(st.booleans()) else data.draw(st.lists(common, max_size=6))
    mx, my = outcome(lambda: pyarray.array(tc1, xs)), outcome(lambda: pyarray.array(tc2, ys))
    assume(mx[0] == "ok" and my[0] == "ok")
    a, b = cowbuf.array(tc1, mx[1]), cowbuf.array(tc2, my[1])
    a.freeze()
    b.freeze()
    assert (a == b) == (mx[1] == my[1])
    if a == b:
        assert hash(a) == hash(b)


@pytest.mark.parametrize("tc", TYPECODES)
@bounded(30)
@given(data=st.data())
def test_pickle_by_value_round_trips(tc: str, data: st.DataObject) -> None:
    items = data.draw(st.lists(good_values(tc), max_size=30))
    a = cowbuf.array(tc, items)[data.draw(slices(len(items)))]
    if data.draw(st.booleans()):
        a = a.toreadonly()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        b = pickle.loads(pickle.dumps(a, protocol))
        assert b.tobytes() == a.tobytes() and b.typecode == tc
        assert b.readonly == a.readonly
        assert b.region is not a.region


# -- the stateful model: views on one array ------------------------------------------

class View:
    """A cowbuf view and the indices of the model items it covers."""

    def __init__(self, array: cowbuf.Array, indices: range, readonly: bool) -> None:
        self.array = array
        self.indices = indices
        self.readonly = readonly

    def __repr__(self) -> str:
        return f"View({self.indices}, readonly={self.readonly})"


class ArrayViews(RuleBasedStateMachine):
    """One array, a model array.array of the same items, and views: slices of slices,
    read-only views. Every write goes through a view; every view must always show the
    model's items."""

    views = Bundle("views")

    @initialize(target=views, data=st.data())
    def make(self, data: st.DataObject) -> View:
        self.tc = data.draw(st.sampled_from(TYPECODES), label="typecode")
        items = data.draw(st.lists(good_values(self.tc), max_size=30), label="items")
        self.model = pyarray.array(self.tc, items)
        placement = data.draw(st.sampled_from(["array", "region", "region-offset"]))
        size = self.model.itemsize
        if placement == "array":
            array = cowbuf.array(self.tc, self.model)
        else:
            # the same items on a bigger region, at an offset: bytes around them must
            # never change
            offset = size * data.draw(st.integers(0, 4)) if placement == "region-offset" else 0
            self.region = cowbuf.Region(offset + len(items) * size + 64)
            memoryview(self.region)[:] = b"\xa5" * self.region.nbytes
            array = self.region.view(self.tc, offset, len(items))
            array[:] = self.model
            self.guard = (offset, offset + len(items) * size)
        self.all: list[View] = []
        return self._keep(View(array, range(len(items)), False))

    def _keep(self, view: View) -> View:
        self.all.append(view)
        return view

    def _items(self, view: View) -> pyarray.array:
        return pyarray.array(self.tc, [self.model[i] for i in view.indices])

    def _write_back(self, view: View, items: pyarray.array) -> None:
        assert len(items) == len(view.indices)
        for i, value in zip(view.indices, items, strict=True):
            self.model[i] = value

    def _differential(self, view: View, model_op, cowbuf_op) -> None:
        """Run model_op on a copy of the view's items and cowbuf_op on the view: the
        same outcome; on success the copy becomes the model."""
        items = self._items(view)
        expected = outcome(lambda: model_op(items))
        if view.readonly:
            expected = (TypeError,)  # refused before any argument is looked at
        same_outcome(expected, outcome(cowbuf_op))
        if expected[0] == "ok":
            self._write_back(view, items)

    @rule(target=views, view=views, data=st.data())
    def slice_view(self, view: View, data: st.DataObject) -> View:
        key = data.draw(slices(len(view.indices)), label="key")
        return self._keep(View(view.array[key], view.indices[key], view.readonly))

    @rule(target=views, view=views)
    def readonly_view(self, view: View) -> View:
        return self._keep(View(view.array.toreadonly(), view.indices, True))

    @rule(view=views, data=st.data())
    def set_item(self, view: View, data: st.DataObject) -> None:
        key = data.draw(index_keys(len(view.indices)), label="key")
        value = data.draw(any_values(self.tc), label="value")

        def model_op(items):
            items[key] = value

        def cowbuf_op():
            view.array[key] = value

        self._differential(view, model_op, cowbuf_op)

    @rule(view=views, data=st.data())
    def assign_slice(self, view: View, data: st.DataObject) -> None:
        key = data.draw(slices(len(view.indices)), label="key")
        n = len(view.indices[key])
        kind = data.draw(st.sampled_from(["list", "bad item", "other length", "array.array",
                                          "generator", "view"]), label="kind")
        if kind == "view":
            # another view on the same memory, maybe overlapping this one
            sources = [v for v in self.all if len(v.indices) == n]
            source = data.draw(st.sampled_from(sources), label="source") if sources else None
            if source is None:
                return
            values = self._items(source)

            def model_op(items):
                items[key] = values

            self._differential(view, model_op,
                               lambda: view.array.__setitem__(key, source.array))
            return
        if kind == "other length":
            values = data.draw(st.lists(good_values(self.tc), max_size=n + 3)
                               .filter(lambda v: len(v) != n))

            def refused(items):
                raise ValueError("another length")

            self._differential(view, refused, lambda: view.array.__setitem__(key, values))
            return
        if kind == "bad item":
            values = data.draw(st.lists(any_values(self.tc), min_size=n, max_size=n))
        else:
            values = data.draw(st.lists(good_values(self.tc), min_size=n, max_size=n))

        def model_op(items):
            items[key] = pyarray.array(self.tc, values)

        if kind == "array.array":
            source = outcome(lambda: pyarray.array(self.tc, values))
            if source[0] != "ok":
                return
            argument = source[1]
        elif kind == "generator":
            argument = (v for v in values)
        else:
            argument = values
        self._differential(view, model_op, lambda: view.array.__setitem__(key, argument))

    @rule(view=views, data=st.data())
    def fill(self, view: View, data: st.DataObject) -> None:
        value = data.draw(any_values(self.tc), label="value")

        def model_op(items):
            converted = pyarray.array(self.tc, [value])[0]
            for i in range(len(items)):
                items[i] = converted

        self._differential(view, model_op, lambda: view.array.fill(value))

    @rule(view=views)
    def reverse(self, view: View) -> None:
        self._differential(view, lambda items: items.reverse(), view.array.reverse)

    @rule(view=views)
    def byteswap(self, view: View) -> None:
        self._differential(view, lambda items: items.byteswap(), view.array.byteswap)

    @precondition(lambda self: self.tc in ATOMIC_TYPECODES)
    @rule(view=views, data=st.data())
    def atomic_add(self, view: View, data: st.DataObject) -> None:
        if not view.indices:
            return
        _, high = int_range(self.tc)
        bits = 8 * struct.calcsize(self.tc)
        k = data.draw(st.integers(-len(view.indices), len(view.indices) - 1), label="index")
        delta = data.draw(st.integers(-(1 << (bits - 1)), high), label="delta")

        def model_op(items):
            items[k] = wrap(self.tc, items[k] + delta)

        self._differential(view, model_op, lambda: view.array.atomic_add(k, delta))

    @precondition(lambda self: self.tc in ATOMIC_TYPECODES)
    @rule(view=views, data=st.data())
    def atomic_add_at(self, view: View, data: st.DataObject) -> None:
        n = len(view.indices)
        if not n:
            return
        _, high = int_range(self.tc)
        indices = data.draw(st.lists(st.integers(-n, n - 1), max_size=20), label="indices")
        values = data.draw(st.lists(st.integers(-(2**31), min(high, 2**31 - 1)),
                                    min_size=len(indices), max_size=len(indices)),
                           label="values")

        def model_op(items):
            for i, v in zip(indices, values, strict=True):
                items[i] = wrap(self.tc, items[i] + v)

        self._differential(view, model_op, lambda: view.array.atomic_add_at(indices, values))

    @precondition(lambda self: self.tc in ATOMIC_TYPECODES)
    @rule(view=views, indices=views, values=views, data=st.data())
    def atomic_add_at_from_views(self, view: View, indices: View, values: View,
                                 data: st.DataObject) -> None:
        # indices and values read from the array being added to: they count as they
        # were when the call started (found by the fuzzer: they changed under the adds)
        n = len(view.indices)
        if len(values.indices) != len(indices.indices):
            values = indices
        if n and data.draw(st.booleans(), label="make the indices valid"):
            root = self.all[0].array
            for i in indices.indices:
                self.model[i] = root[i] = self.model[i] % n
        index_list = list(self._items(indices))
        value_list = list(self._items(values))
        _, high = int_range(self.tc)
        low = -(2**31) if struct.calcsize(self.tc) == 4 else None

        def model_op(items):
            if any(not -n <= i < n for i in index_list):
                raise IndexError
            if low is not None and any(not low <= v <= high for v in value_list):
                raise OverflowError
            for i, v in zip(index_list, value_list, strict=True):
                items[i] = wrap(self.tc, items[i] + v)

        self._differential(view, model_op,
                           lambda: view.array.atomic_add_at(indices.array, values.array))

    @rule(view=views)
    def check_view(self, view: View) -> None:
        expected = self._items(view)
        a = view.array
        assert len(a) == len(expected)
        assert a.tobytes() == expected.tobytes()
        assert pyarray.array(self.tc, a.tolist()).tobytes() == expected.tobytes()
        assert pyarray.array(self.tc, reversed(a)).tobytes() == expected[::-1].tobytes()
        assert a.readonly == view.readonly
        if self.tc not in "fd":
            assert a.sum() == sum(expected)
            if len(expected):
                assert (a.min(), a.max()) == (min(expected), max(expected))

    @invariant()
    def whole_array_matches(self) -> None:
        if not hasattr(self, "model"):
            return
        assert self.all[0].array.tobytes() == self.model.tobytes()
        if hasattr(self, "guard"):
            start, end = self.guard
            raw = bytes(memoryview(self.region))
            assert raw[:start] == b"\xa5" * start
            assert raw[end:] == b"\xa5" * (len(raw) - end)


ArrayViews.TestCase.settings = bounded(120, stateful_step_count=30)
test_array_views = ArrayViews.TestCase


# -- the stateful model: Counter -----------------------------------------------------

INT64 = (-(2**63), 2**63 - 1)


def wrap64(value: int) -> int:
    return (value + 2**63) % 2**64 - 2**63


def counter_args() -> st.SearchStrategy[object]:
    return st.one_of(
        st.integers(*INT64),
        st.sampled_from([0, 1, -1, INT64[0], INT64[1]]),
        st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30]),
        st.integers(-(2**70), 2**70).map(Index),
        st.sampled_from([1.0, "1", None, Decimal(1), True, Raising()]),
    )


def as_int64(value: object) -> tuple[object, ...]:
    """("ok", int) if a Counter takes `value`, else the exception type it raises."""
    try:
        number = value.__index__()  # type: ignore[attr-defined]
    except AttributeError:
        return (TypeError,)
    except Exception as exc:
        return (type(exc),)
    if not INT64[0] <= number <= INT64[1]:
        return (OverflowError,)
    return ("ok", number)


class CounterModel(RuleBasedStateMachine):
    """Two Counter objects on the same 8 bytes, against one Python int."""

    @initialize(initial=counter_args(), where=st.sampled_from(["counter", "padded", "region"]))
    def make(self, initial: object, where: str) -> None:
        expected = as_int64(initial)
        if where == "region":
            region = cowbuf.Region(4096)
            self.counter = region.counter(8)
            outcome(lambda: self.counter.store(initial))
            self.value = expected[1] if expected[0] == "ok" else 0
        else:
            made = outcome(lambda: cowbuf.Counter(initial, padded=where == "padded"))
            same_outcome(expected, made)
            self.counter = made[1] if made[0] == "ok" else cowbuf.Counter(0)
            self.value = expected[1] if expected[0] == "ok" else 0
        region = self.counter.region
        self.twin = region.counter(0 if where != "region" else 8)

    def _apply(self, op: str, *args: object) -> None:
        converted = [as_int64(a) for a in args]
        bad = [c for c in converted if c[0] != "ok"]
        before = self.value
        actual = outcome(lambda: getattr(self.counter, op)(*args))
        if bad:
            assert actual[0] == bad[0][0], (op, args, actual)
            assert self.counter.load() == before  # a failed call changes nothing
            return
        assert actual[0] == "ok", (op, args, actual)
        numbers = [c[1] for c in converted]
        if op == "add":
            self.value = wrap64(before + numbers[0])
            expected = self.value
        elif op == "sub":
            self.value = wrap64(before - numbers[0])
            expected = self.value
        elif op == "fetch_add":
            self.value = wrap64(before + numbers[0])
            expected = before
        elif op == "exchange":
            self.value = numbers[0]
            expected = before
        elif op == "store":
            self.value = numbers[0]
            expected = None
        else:  # compare_exchange
            expected = before == numbers[0]
            if expected:
                self.value = numbers[1]
        assert actual[1] == expected, (op, args, actual[1], expected)

    @rule(op=st.sampled_from(["add", "sub", "fetch_add", "exchange", "store"]),
          n=counter_args())
    def one_argument(self, op: str, n: object) -> None:
        self._apply(op, n)

    @rule()
    def add_one_and_sub_one(self) -> None:
        assert self.counter.add() == wrap64(self.value + 1)
        assert self.twin.sub() == self.value

    @rule(desired=counter_args(), data=st.data())
    def compare_exchange(self, desired: object, data: st.DataObject) -> None:
        expected = data.draw(st.one_of(st.just(self.value), counter_args()))
        self._apply("compare_exchange", expected, desired)

    @invariant()
    def every_read_agrees(self) -> None:
        if not hasattr(self, "counter"):
            return
        c = self.counter
        assert c.load() == c.value == int(c) == self.value
        assert self.twin.load() == self.value
        assert repr(c) == f"cowbuf.Counter({self.value})"
        assert pickle.loads(pickle.dumps(c)).load() == self.value


CounterModel.TestCase.settings = bounded(200, stateful_step_count=30)
test_counter_model = CounterModel.TestCase
