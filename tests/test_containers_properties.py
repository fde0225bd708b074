"""Property tests: StrArray and BytesArray against list, FrozenDict against dict.

The nasty strings and keys hypothesis can think of (NULs, the empty string, lone
surrogates, every plane of Unicode, huge ints, True/1/1.0, mixed types), over the whole
API: the same results, the same exception types, and the same after a pickle round trip.
Profiles as in test_properties.py (COWBUF_HYPOTHESIS_PROFILE=cowbuf-dev searches longer).
"""

from __future__ import annotations

import math
import pickle
from decimal import Decimal
from itertools import accumulate
from multiprocessing.reduction import ForkingPickler

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_properties import bounded

import cowbuf

pytestmark = pytest.mark.hypothesis

# every code point, lone surrogates included; NULs and ASCII often
texts = st.text(st.one_of(st.characters(codec=None, exclude_categories=()),
                          st.sampled_from("\0a\udc80\ud800é😀")), max_size=20)
blobs = st.binary(max_size=20)
ints = st.one_of(st.integers(-3, 3), st.integers(-(2**64), 2**64),
                 st.integers(-(10**40), 10**40), st.sampled_from([2**63 - 1, -(2**63), 2**63]))
keys = st.one_of(texts, blobs, ints, st.booleans(),
                 st.integers(-(2**60), 2**60).map(float))
values = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False), texts, blobs,
                   st.lists(ints, max_size=3), st.tuples(texts, ints))
probes = st.one_of(keys, st.floats(), st.none(), st.tuples(ints),
                   st.decimals(allow_nan=False, places=1), st.integers().map(Decimal))
indices = st.integers(-30, 30)
slices = st.builds(slice, st.none() | indices, st.none() | indices,
                   st.none() | st.integers(-4, 4).filter(bool))


def outcome(fn: object, *args: object) -> tuple[str, object]:
    """('ok', result) or (exception type name, None): two calls agree when these do."""
    try:
        return "ok", fn(*args)  # type: ignore[operator]
    except Exception as exc:
        return type(exc).__name__, None


@bounded(300)
@given(st.lists(texts, max_size=30), st.data())
def test_strarray_against_list(items: list[str], data: st.DataObject) -> None:
    s = cowbuf.StrArray(items)
    _against_list(s, items, texts, data)


@bounded(200)
@given(st.lists(blobs, max_size=30), st.data())
def test_bytesarray_against_list(items: list[bytes], data: st.DataObject) -> None:
    b = cowbuf.BytesArray(items)
    _against_list(b, items, blobs, data)


def _against_list(s: cowbuf.StrArray | cowbuf.BytesArray, items: list,  # type: ignore[type-arg]
                  elements: st.SearchStrategy[object], data: st.DataObject) -> None:
    assert len(s) == len(items) and s.tolist() == items and list(s) == items
    assert list(reversed(s)) == items[::-1] and s == items
    for _ in range(5):
        i = data.draw(indices)
        assert outcome(s.__getitem__, i) == outcome(items.__getitem__, i)
        key = data.draw(slices)
        part = s[key]
        assert part.tolist() == items[key] and part == items[key]
        sizes = map(len, _encoded(items[key]))
        assert part.offsets.tolist() == list(accumulate(sizes, initial=part.offsets[0]))
        x = data.draw(st.one_of(st.sampled_from(items or [None]), elements))
        start, stop = data.draw(indices), data.draw(indices)
        assert (x in s) == (x in items) and s.count(x) == items.count(x)
        assert outcome(s.index, x, start, stop) == outcome(items.index, x, start, stop)
    for copy in (pickle.loads(pickle.dumps(s, protocol=5)),
                 pickle.loads(ForkingPickler.dumps(s))):
        assert copy == s and copy.tolist() == items


def _encoded(items: list) -> list[bytes]:  # type: ignore[type-arg]
    return [x.encode("utf-8", "surrogatepass") if isinstance(x, str) else x for x in items]


@bounded(300)
@given(st.lists(st.tuples(keys, values), max_size=40), st.lists(probes, max_size=20))
def test_frozendict_against_dict(pairs: list[tuple[object, object]],
                                 extra: list[object]) -> None:
    d = dict(pairs)
    m = cowbuf.FrozenDict(pairs)
    assert len(m) == len(d) and m == d and d == m
    # stored keys are str, bytes or int; equal to dict's (True == 1 == 1.0)
    assert list(m) == list(d) and list(m.values()) == list(d.values())
    assert list(m.items()) == list(d.items())
    assert all(type(k) in (str, bytes, int) for k in m)
    everything = [*d, *extra, *(k for k, _ in pairs)]
    for k in everything:
        assert outcome(m.__getitem__, k) == outcome(d.__getitem__, k)
        assert outcome(m.__contains__, k) == outcome(d.__contains__, k)
        assert m.get(k, "x") == d.get(k, "x")
    assert m.get_many(everything, "x") == [d.get(k, "x") for k in everything]
    assert m.keys() & set(extra) == d.keys() & set(extra)
    for copy in (pickle.loads(pickle.dumps(m)), pickle.loads(ForkingPickler.dumps(m))):
        assert copy == d and list(copy.items()) == list(d.items())


@bounded(100)
@given(st.lists(st.tuples(st.one_of(st.floats(), st.tuples(ints), st.none()), values),
                min_size=1, max_size=5))
def test_frozendict_refuses_what_it_cannot_key(pairs: list[tuple[object, object]]) -> None:
    storable = all(isinstance(k, float) and math.isfinite(k) and k == int(k) for k, _ in pairs)
    result = outcome(cowbuf.FrozenDict, pairs)
    if storable:
        assert result[0] == "ok"
    else:
        assert result[0] == "TypeError"
