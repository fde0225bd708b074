"""Numeric Arrays through the Arrow PyCapsule interface (__arrow_c_array__): pyarrow and
polars (through pyarrow) read them in place, and the export holds the memory like any buffer export.
(StrArray and BytesArray: tests/test_strarray.py.)"""

from __future__ import annotations

import gc
import os

import polars as pl
import pyarrow as pa
import pytest

import cowbuf

ARROW_TYPES = {
    "b": pa.int8(), "B": pa.uint8(), "h": pa.int16(), "H": pa.uint16(),
    "i": pa.int32(), "I": pa.uint32(), "q": pa.int64(), "Q": pa.uint64(),
    "l": pa.int64() if cowbuf.array("l").itemsize == 8 else pa.int32(),
    "L": pa.uint64() if cowbuf.array("L").itemsize == 8 else pa.uint32(),
    "f": pa.float32(), "d": pa.float64(),
}


def _values(tc: str) -> list[int] | list[float]:
    if tc in "fd":
        return [0.0, -1.5, 2.25, float("inf"), 1e30 if tc == "d" else 3.5]
    bits = 8 * cowbuf.array(tc).itemsize
    if tc.isupper():
        return [0, 1, 2 ** bits - 1, 7, 2 ** (bits - 1)]
    return [0, -1, 2 ** (bits - 1) - 1, -(2 ** (bits - 1)), 5]


@pytest.mark.parametrize("tc", cowbuf.TYPECODES)
def test_pyarrow_reads_every_typecode_in_place(tc: str) -> None:
    a = cowbuf.array(tc, _values(tc) * 200)
    arr = pa.array(a)
    assert arr.type == ARROW_TYPES[tc]
    assert arr.to_pylist() == a.tolist()
    assert arr.null_count == 0
    validity, data = arr.buffers()
    assert validity is None
    assert data.address == a.buffer_info()[0]  # zero copy: cowbuf's own memory
    del arr, data
    gc.collect()
    a.region.close()


def test_the_export_holds_the_memory_until_released() -> None:
    a = cowbuf.array("q", range(1000))
    arr = pa.array(a)
    with pytest.raises(BufferError):
        a.region.close()
    part = arr.slice(10, 5)
    del arr
    gc.collect()
    with pytest.raises(BufferError):  # a slice of the Arrow array still holds it
        a.region.close()
    assert part.to_pylist() == list(range(10, 15))
    del part
    gc.collect()
    a.region.close()


def test_capsules_dropped_unread_release_the_export() -> None:
    a = cowbuf.array("d", [1.5] * 10)
    capsules = a.__arrow_c_array__()
    del capsules
    a.region.close()


def test_a_view_starts_where_it_starts() -> None:
    a = cowbuf.array("i", range(100))
    view = a[37:61]
    arr = pa.array(view)
    assert arr.to_pylist() == list(range(37, 61))
    assert arr.buffers()[1].address == view.buffer_info()[0]


def test_a_strided_view_is_copied_and_a_reversed_one_too() -> None:
    a = cowbuf.array("h", range(100))
    for view in (a[::3], a[::-1], a[80:10:-7]):
        arr = pa.array(view)
        assert arr.to_pylist() == view.tolist()
        address = arr.buffers()[1].address
        assert not a.buffer_info()[0] <= address < a.buffer_info()[0] + a.nbytes
    del arr
    gc.collect()
    a.region.close()  # the copies hold regions of their own, not this one


def test_writes_to_a_writable_array_show_through() -> None:
    a = cowbuf.array("q", [0] * 8)
    arr = pa.array(a)
    a[3] = 42
    assert arr[3].as_py() == 42


def test_frozen_and_empty_arrays() -> None:
    a = cowbuf.array("f", [0.5, 1.5])
    a.region.freeze()
    assert pa.array(a).to_pylist() == [0.5, 1.5]
    assert pa.array(cowbuf.array("q")).to_pylist() == []
    assert pa.array(cowbuf.array("B", 0)).type == pa.uint8()


def test_n_dimensional_closed_and_released_arrays_are_refused() -> None:
    grid = cowbuf.array("d", range(12), shape=(3, 4))
    with pytest.raises(TypeError, match="one-dimensional"):
        grid.__arrow_c_array__()
    assert pa.array(grid[1]).to_pylist() == [4.0, 5.0, 6.0, 7.0]  # a row is 1-d
    assert pa.array(grid.reshape(-1)).to_pylist() == [float(x) for x in range(12)]
    a = cowbuf.array("q", [1, 2])
    a.region.close()
    with pytest.raises(ValueError, match="closed"):
        a.__arrow_c_array__()


def test_an_array_received_from_a_worker_exports_too() -> None:
    r, w = os.pipe()
    a = cowbuf.array("Q", [0] * 4)
    pid = os.fork()
    if pid == 0:  # child: writes the shared memory, and exits
        try:
            a[:] = [1, 2, 3, 2 ** 64 - 1]
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    assert pa.array(a).to_pylist() == [1, 2, 3, 2 ** 64 - 1]


def test_polars_reads_it_through_pyarrow() -> None:
    a = cowbuf.array("i", range(50))
    s = pl.from_arrow(pa.array(a))
    assert s.to_list() == list(range(50)) and s.dtype == pl.Int32
