"""Pickle protocol 5: a cowbuf object's memory leaves as one out-of-band buffer, and
comes back on the very memory it is given when that is read-only (Ray's object store,
Dask's frames), or as a copy in fresh shared memory when it must."""

from __future__ import annotations

import gc
import pickle
import weakref
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
from helpers import address

import cowbuf
from cowbuf import _core


def _objects():
    small = cowbuf.array("i", range(100))  # carved from an arena
    large = cowbuf.array("d", [x / 3 for x in range(50_000)])  # a mapping of its own
    region = cowbuf.Region(10_000)
    memoryview(region)[:5] = b"abcde"
    return {"small": small, "large": large, "strided": large[::-3], "region": region,
            "frozen": cowbuf.array("q", range(5000))}


def _same(a, b):
    if isinstance(a, cowbuf.Region):
        return bytes(memoryview(a)) == bytes(memoryview(b))
    return a == b and a.typecode == b.typecode


def _addr(obj):
    """Where the first item of obj lies (strided views too)."""
    return np.asarray(obj).ctypes.data if isinstance(obj, cowbuf.Array) else address(obj)


def _out_of_band(obj):
    buffers = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return data, buffers


@pytest.mark.parametrize("name", ["small", "large", "strided", "region", "frozen"])
def test_memory_leaves_as_one_out_of_band_buffer(name):
    obj = _objects()[name]
    if name == "frozen":
        obj.freeze()
    data, buffers = _out_of_band(obj)
    assert len(buffers) == 1
    raw = buffers[0].raw()
    assert raw.nbytes == obj.nbytes
    assert raw.readonly == (name == "frozen")
    assert len(data) < 300  # the pickle itself holds no item
    if name != "strided":  # a contiguous array leaves as its own memory: no copy
        assert address(raw) == address(obj)


@pytest.mark.parametrize("name", ["small", "large", "strided", "region", "frozen"])
def test_read_only_buffers_are_wrapped_without_a_copy(name):
    obj = _objects()[name]
    data, buffers = _out_of_band(obj)
    given = [b.raw().toreadonly() for b in buffers]
    back = pickle.loads(data, buffers=given)
    assert _same(back, obj)
    assert back.frozen if isinstance(back, cowbuf.Region) else back.readonly
    assert address(back) == address(given[0])  # the very memory it was given
    with pytest.raises(TypeError):
        (back.view("B") if isinstance(back, cowbuf.Region) else back)[0] = 1


@pytest.mark.parametrize("name", ["small", "large", "strided", "region"])
def test_writable_buffers_are_copied_into_fresh_shared_memory(name):
    obj = _objects()[name]
    data, buffers = _out_of_band(obj)
    back = pickle.loads(data, buffers=buffers)
    assert _same(back, obj)
    assert _addr(back) != _addr(obj)  # a copy, as by value must be
    target = back.view("B") if isinstance(back, cowbuf.Region) else back
    target[0] = 1  # writable, and the original keeps its value
    assert _same(obj, _objects()[name])
    assert _core._region_state(back if isinstance(back, cowbuf.Region) else back.region)[0].fd >= 0


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("name", ["small", "large", "strided", "region", "frozen"])
def test_in_band_pickles_copy_into_shared_memory(name, protocol):
    obj = _objects()[name]
    if name == "frozen":
        obj.freeze()
    back = pickle.loads(pickle.dumps(obj, protocol=protocol))
    assert _same(back, obj)
    mapping = _core._region_state(back if isinstance(back, cowbuf.Region) else back.region)[0]
    assert mapping.fd >= 0  # shared memory, which can go on by reference
    assert (back.frozen if isinstance(back, cowbuf.Region) else back.readonly) == (name == "frozen")


def test_counter_round_trips_with_protocol_5():
    c = cowbuf.Counter(-7, padded=True)
    data, buffers = _out_of_band(c)
    assert buffers == []  # eight bytes travel in band
    back = pickle.loads(data)
    assert back.value == -7 and back.add() == -6 and c.value == -7


def test_wrapped_memory_outlives_the_buffer_it_came_from():
    a = cowbuf.array("q", range(10_000))
    a.freeze()
    data, buffers = _out_of_band(a)
    store = bytearray(buffers[0].raw())  # another owner, as a store would be
    owner = memoryview(store).toreadonly()
    back = pickle.loads(data, buffers=[owner])
    ref = weakref.ref(back.region)
    del a, buffers, owner, data
    gc.collect()
    assert back.sum() == sum(range(10_000))
    with pytest.raises(BufferError):
        store.append(0)  # the wrapped array still holds the store's buffer
    del back
    gc.collect()
    assert ref() is None
    store.append(0)  # released with the array


def test_wrapped_memory_goes_by_value_where_a_reference_is_asked_for():
    a = cowbuf.array("q", range(1000))
    data, buffers = _out_of_band(a)
    wrapped = pickle.loads(data, buffers=[b.raw().toreadonly() for b in buffers])
    # foreign memory has no fd: multiprocessing gets a frozen copy in shared memory
    sent = pickle.loads(ForkingPickler.dumps(wrapped))
    assert sent == a and sent.readonly
    assert _core._region_state(sent.region)[0].fd >= 0


@pytest.mark.parametrize("offset", [1, 3, 4])
def test_misaligned_or_non_contiguous_buffers_are_copied(offset):
    a = cowbuf.array("q", range(100))
    data, _ = _out_of_band(a)
    backing = bytearray(offset + a.nbytes)
    backing[offset:] = a.tobytes()
    given = memoryview(backing)[offset:].toreadonly()
    back = pickle.loads(data, buffers=[given])
    assert back == a
    assert address(back) != address(given)
    strided = np.arange(200, dtype=np.int64)[::2]
    back = pickle.loads(data, buffers=[memoryview(strided).toreadonly()])
    assert back.tolist() == list(range(0, 200, 2))
