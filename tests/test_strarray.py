"""StrArray and BytesArray: immutable sequences of str and bytes in one frozen region,
laid out as Arrow's large_utf8 / large_binary, read in place by Arrow consumers, and
travelling like every cowbuf object."""

from __future__ import annotations

import gc
import pickle
import sys
import threading

import container_workers as w
import pytest
from helpers import address, run_python

import cowbuf
from cowbuf import _core

np = pytest.importorskip("numpy")

NASTY = ["", "a", "\0", "a\0b\0", "é", "ÿ", "\u20ac", "日本語", "😀", "a😀b",
         "\ud800", "\udfff", "x\udc80y", "\ud83d\ude00", "\U0010ffff", "line\nbreak",
         "x" * 5000, "\x7f\x80"]


def test_every_str_round_trips() -> None:
    s = cowbuf.StrArray(NASTY)
    assert len(s) == len(NASTY)
    assert s.tolist() == NASTY and list(s) == NASTY
    assert [s[i] for i in range(len(s))] == NASTY
    assert [s[-i] for i in range(1, len(s) + 1)] == NASTY[::-1]
    assert list(reversed(s)) == NASTY[::-1]
    assert s == NASTY and not (s != NASTY)
    # each item is a str of the right type, length and kind (compact ASCII or not)
    for item, expected in zip(s, NASTY, strict=True):
        assert type(item) is str and item == expected and len(item) == len(expected)
        assert item.isascii() == expected.isascii()
        assert hash(item) == hash(expected)


def test_items_kept_from_an_iteration_stay_what_they_were() -> None:
    # The iterator writes an item into the str it made two items before, and s[i] into
    # the one it returned last, when nothing else holds that str any more: whatever the
    # caller keeps, however, must never change.
    expected = [f"{i:08d}" for i in range(2000)] + ["short", "é", "", "longer one"]
    s = cowbuf.StrArray(expected)
    assert list(iter(s)) == expected and list(reversed(s)) == expected[::-1]
    kept, hashes, every_third = {}, [], []
    for i, x in enumerate(s):
        hashes.append(hash(x))  # (a hash cached in an item must go with the rewrite)
        if i % 3 == 0:
            every_third.append(x)
        kept.setdefault(x, i)
    assert hashes == [hash(x) for x in expected]
    assert every_third == expected[::3]
    assert list(kept) == expected and all(kept[x] == i for i, x in enumerate(expected))
    for x in s:  # interned items: never rewritten (3.11's interned dict holds them uncounted)
        sys.intern(x)
    for x in expected:
        fresh = "".join(list(x))
        assert sys.intern(fresh) == x
    it = iter(s)
    first, second, third = next(it), next(it), next(it)
    assert (first, second, third) == tuple(expected[:3])
    # s[i] writes into the str it returned last, once the caller let it go
    held = s[0]
    assert [hash(s[i]) for i in range(50)] == [hash(x) for x in expected[:50]]
    assert [s[i] for i in range(50)] == expected[:50] and held == expected[0]
    mapping = {s[i]: i for i in range(100)}
    assert list(mapping) == expected[:100]


def test_every_bytes_like_item_round_trips_as_bytes() -> None:
    items = [b"", b"\0", b"\xff" * 300, bytearray(b"ba"), memoryview(b"mv"),
             np.arange(3, dtype=np.int16), b"x" * 10_000]
    b = cowbuf.BytesArray(items)
    expected = [bytes(memoryview(x).cast("B")) for x in items]
    assert b.tolist() == expected == list(b)
    assert all(type(x) is bytes for x in b)
    assert b == expected and b[-1] == expected[-1]


def test_bad_items_are_type_errors_naming_the_item() -> None:
    with pytest.raises(TypeError, match=r"StrArray items must be str, not bytes \(item 1\)"):
        cowbuf.StrArray(["a", b"b"])
    with pytest.raises(TypeError, match=r"BytesArray items must be bytes-like, not str \(item 0\)"):
        cowbuf.BytesArray(["a"])
    with pytest.raises(TypeError, match=r"not int \(item 2\)"):
        cowbuf.BytesArray([b"", b"", 5])
    with pytest.raises(TypeError, match="iterable of str, not a str"):
        cowbuf.StrArray("abc")
    with pytest.raises(TypeError, match="takes an iterable, not int"):
        cowbuf.StrArray(5)  # type: ignore[arg-type]
    s = cowbuf.StrArray(["a"])
    with pytest.raises(TypeError, match="may only be called once"):
        s.__init__(["b"])
    assert s.tolist() == ["a"]


def test_sequence_api_matches_list() -> None:
    items = ["b", "a", "", "a", "c\0", "a", "é"]
    s = cowbuf.StrArray(items)
    assert isinstance(s, __import__("collections.abc").abc.Sequence)
    for x in [*items, "z", "", b"a", 1, None, "\0"]:
        assert (x in s) == (x in items)
        assert s.count(x) == items.count(x)
    for x, start, stop in [("a", 0, 7), ("a", 2, 7), ("a", -3, 7), ("a", 2, -1), ("é", 0, 100),
                           ("", 1, 7), ("b", -100, 100)]:
        assert s.index(x, start, stop) == items.index(x, start, stop)
    for x, start, stop in [("z", 0, 7), ("b", 1, 7), ("a", 6, 7), ("a", 4, 2)]:
        with pytest.raises(ValueError, match="is not in StrArray"):
            s.index(x, start, stop)
    with pytest.raises(IndexError, match="StrArray index out of range"):
        s[7]
    with pytest.raises(IndexError):
        s[-8]
    with pytest.raises(TypeError):
        s["0"]  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        s[0] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        hash(s)
    b = cowbuf.BytesArray([b"ab", b"", b"ab"])
    assert b.count(b"ab") == 2 and b.count(bytearray(b"ab")) == 2
    assert memoryview(b"ab") in b and "ab" not in b and b.index(b"") == 1


@pytest.mark.parametrize("key", [slice(None), slice(2, 5), slice(-3, None), slice(5, 2),
                                 slice(1, 6, 2), slice(None, None, -1), slice(6, 0, -3),
                                 slice(100, 200), slice(-100, 2)])
def test_slices_match_list_and_step_one_is_a_view(key: slice) -> None:
    items = [f"item{i}" * i for i in range(8)]
    s = cowbuf.StrArray(items)
    part = s[key]
    assert isinstance(part, cowbuf.StrArray)
    assert part.tolist() == items[key] and len(part) == len(items[key])
    if key.step in (None, 1):
        assert part.region is s.region  # a view: nothing copied
    elif len(part) > 1:
        assert part.region is not s.region
    assert part[::-1].tolist() == items[key][::-1]
    assert part == items[key]


def test_offsets_and_data_are_zero_copy_arrays() -> None:
    items = ["ab", "", "é", "xyz"]
    s = cowbuf.StrArray(items)
    offsets, data = s.offsets, s.data
    assert offsets.typecode == "q" and offsets.tolist() == [0, 2, 2, 4, 7]
    assert data.typecode == "B" and data.tobytes() == "".join(items).encode()
    assert offsets.readonly and data.readonly
    assert offsets.region is s.region is data.region
    assert address(offsets) == address(s.region)  # the offsets come first
    with pytest.raises(TypeError):
        offsets[0] = 1
    n = np.asarray(s[1:3].offsets)
    assert n.tolist() == [2, 2, 4] and not n.flags.writeable
    assert s.nbytes == 8 * 5 + 7 and s[1:3].nbytes == 8 * 3 + 2


def test_memory_is_frozen_everywhere() -> None:
    for s in (cowbuf.StrArray(["a"] * 1000), cowbuf.StrArray([]), cowbuf.BytesArray([b"x"])):
        assert s.region.frozen
        with pytest.raises(TypeError, match="frozen"):
            s.region.view("B")[0] = 1
        with pytest.raises(ValueError, match="WRITEABLE"):
            np.frombuffer(s.region, dtype=np.uint8).setflags(write=True)
        with memoryview(s.region) as m:
            assert m.readonly


def test_strings_of_a_closed_region_are_value_error_everywhere() -> None:
    s = cowbuf.StrArray(["a", "b", "c"])
    it = iter(s)
    view = s[1:]
    s.region.close()
    for op in (len, list, reversed, lambda x: x[0], lambda x: x[0:1], lambda x: "a" in x,
               lambda x: x.count("a"), lambda x: x.index("a"), lambda x: x.tolist(),
               lambda x: x.offsets, lambda x: x.data, lambda x: x.nbytes,
               lambda x: pickle.dumps(x), lambda x: x == ["a"], lambda x: x == view,
               lambda x: x.__arrow_c_array__()):
        for target in (s, view):
            with pytest.raises(ValueError, match="closed region"):
                op(target)
    assert repr(s) == "<cowbuf.StrArray closed>"
    with pytest.raises(ValueError, match="closed region"):
        next(it)


def test_made_with_new_is_closed_not_a_crash() -> None:
    s = cowbuf.StrArray.__new__(cowbuf.StrArray)
    with pytest.raises(ValueError, match="closed region"):
        s[0]
    with pytest.raises(ValueError):
        len(s)


# -- over 2 GiB: int64 offsets ---------------------------------------------------------

@pytest.mark.skipif(sys.maxsize < 2**40, reason="a 64-bit address space")
def test_offsets_past_2_gib_without_2_gib_of_memory() -> None:
    # A region of 3 GiB that is never touched but for two pages costs no memory: item 0
    # is 2 GiB + 5 bytes long, item 1 lies past it. Every offset computation on the way
    # to item 1 must be 64-bit.
    big = (2 << 30) + 5
    region = cowbuf.Region(3 << 30)
    head = region.view("q", 0, 3)
    head[:] = [0, big, big + 5]
    with memoryview(region) as m:
        m[24 + big:24 + big + 5] = b"hello"
    region.freeze()
    s = _core._strings_on(region, True, 0, 2, 24, (3 << 30) - 24)
    assert len(s) == 2 and s[1] == "hello" and s[-1] == "hello"
    tail = s[1:]
    assert tail.tolist() == ["hello"] and "hello" in tail and tail.index("hello") == 0
    assert tail.offsets.tolist() == [big, big + 5] and tail.nbytes == 16 + 5
    copy = pickle.loads(pickle.dumps(tail, protocol=5))  # rebased: a few bytes only
    assert copy == ["hello"] and copy.region.nbytes == 16 + 5
    pa = pytest.importorskip("pyarrow")
    assert pa.array(tail).to_pylist() == ["hello"]


# -- crafted data --------------------------------------------------------------------------

@pytest.mark.parametrize("offsets", [[], [0, 5], [0, 2, 1], [-1, 0], [0, 4, 2, 4]])
def test_crafted_pickle_data_is_value_error(offsets: list[int]) -> None:
    data = np.asarray(offsets, dtype=np.int64).tobytes()
    with pytest.raises(ValueError, match="bad pickle data"):
        _core._strings_from_bytes(True, data, b"abcd"[:3])


def test_crafted_string_references_are_value_error() -> None:
    writable = cowbuf.Region(64)
    with pytest.raises(ValueError, match="must be frozen"):
        _core._strings_on(writable, True, 0, 1, 16, 8)
    frozen = cowbuf.array("q", [0, 10, 3, 4])
    frozen.freeze()
    region = frozen.region
    with pytest.raises(ValueError, match="not those of an array"):
        _core._strings_on(region, True, 0, 2, 24, 8)
    for geometry in [(4, 1, 16, 8), (0, 5, 16, 8), (0, 1, 16, 100), (-8, 1, 0, 8),
                     (0, -1, 0, 0)]:
        with pytest.raises(ValueError, match="geometry"):
            _core._strings_on(region, True, *geometry)
    # a StrArray on memory that is not UTF-8 raises UnicodeDecodeError, never a bad str
    raw = cowbuf.array("q", [0, 2])
    raw.region.freeze()
    bad = cowbuf.Region(32)
    bad.view("q", 0, 2)[:] = [0, 2]
    memoryview(bad)[16:18] = b"\xff\xfe"
    bad.freeze()
    s = _core._strings_on(bad, True, 0, 1, 16, 16)
    with pytest.raises(UnicodeDecodeError):
        s[0]
    assert _core._strings_on(bad, False, 0, 1, 16, 16)[0] == b"\xff\xfe"


# -- pickling and sharing --------------------------------------------------------------------

def _plain_round_trips() -> list[object]:
    import cloudpickle

    trips: list[object] = [lambda o, p=p: pickle.loads(pickle.dumps(o, protocol=p))
                           for p in range(2, pickle.HIGHEST_PROTOCOL + 1)]
    trips.append(lambda o: cloudpickle.loads(cloudpickle.dumps(o)))
    return trips


@pytest.mark.parametrize("trip", _plain_round_trips())
def test_plain_pickle_copies_strings_by_value(trip) -> None:  # type: ignore[no-untyped-def]
    s = cowbuf.StrArray(NASTY)
    b = cowbuf.BytesArray([x.encode("utf-8", "surrogatepass") for x in NASTY])
    for original in (s, b, s[3:9], s[::-2], b[5:], cowbuf.StrArray([])):
        copy = trip(original)
        assert type(copy) is type(original)
        assert copy == original and copy.tolist() == original.tolist()
        assert copy.region is not original.region and copy.region.frozen


def test_strings_by_reference_to_worker_processes_under_every_start_method(run_workers) -> None:  # type: ignore[no-untyped-def]
    s = cowbuf.StrArray(NASTY * 50)  # a page or more: a mapping of its own
    b = cowbuf.BytesArray([b"x", b"", b"\0\1"])  # carved from the frozen arena
    part = s[3:20]
    [result] = run_workers(w.describe_strings, [(s, b, part)])
    assert result == (s.tolist(), b.tolist(), part.tolist(), True, True, True)


def test_string_results_of_pool_processes_come_back_as_the_same_memory(mp_context) -> None:  # type: ignore[no-untyped-def]
    s = cowbuf.StrArray(["a", "b"] * 5000)
    with mp_context.Pool(1) as pool:
        back = pool.apply(w.identity, (s[10:],))
    assert back.region is s.region and back == s.tolist()[10:]


def test_strings_in_the_registry_and_pool_kwargs_reach_pool_processes(mp_context) -> None:  # type: ignore[no-untyped-def]
    cowbuf.registry["names"] = cowbuf.StrArray(["x", "y", "z"])
    try:
        with mp_context.Pool(1, **cowbuf.pool_kwargs()) as pool:
            assert pool.apply(w.registry_items, ("names",)) == ["x", "y", "z"]
    finally:
        del cowbuf.registry["names"]


# -- Arrow -------------------------------------------------------------------------------

def test_pyarrow_reads_in_place_and_holds_an_export() -> None:
    pa = pytest.importorskip("pyarrow")
    items = ["a", "", "é😀", "x\0y"] * 100
    s = cowbuf.StrArray(items)
    arr = pa.array(s)
    assert arr.type == pa.large_string() and arr.to_pylist() == items
    # zero copy: Arrow's offsets and data buffers are cowbuf's memory
    _, offsets, data = arr.buffers()
    assert offsets.address == address(s.offsets) and data.address == address(s.data)
    with pytest.raises(BufferError, match="live buffer export"):
        s.region.close()
    part = pa.array(s[5:9])
    assert part.to_pylist() == items[5:9]
    del arr, offsets, data, part
    gc.collect()
    s.region.close()  # every export is released


def test_bytes_arrow_and_dropped_capsules() -> None:
    pa = pytest.importorskip("pyarrow")
    b = cowbuf.BytesArray([b"\0\xff", b"", b"abc"])
    arr = pa.array(b)
    assert arr.type == pa.large_binary() and arr.to_pylist() == [b"\0\xff", b"", b"abc"]
    del arr
    capsules = b.__arrow_c_array__()  # never imported: the capsules release themselves
    del capsules
    b.region.close()


def test_arrow_released_from_another_thread() -> None:
    pa = pytest.importorskip("pyarrow")
    s = cowbuf.StrArray(["a", "b"])
    holder = [pa.array(s)]
    t = threading.Thread(target=holder.clear)  # the release callback takes the GIL there
    t.start()
    t.join()
    s.region.close()


def test_lone_surrogates_are_refused_by_arrow() -> None:
    pa = pytest.importorskip("pyarrow")
    s = cowbuf.StrArray(["ok", "\udc80"])
    with pytest.raises(ValueError, match="lone surrogates"):
        pa.array(s)
    assert pa.array(s[:1]).to_pylist() == ["ok"]
    s.region.close()  # the refusal held nothing


def test_polars_reads_it() -> None:
    pl = pytest.importorskip("polars")
    s = cowbuf.StrArray(["a", "bé", ""])
    assert pl.Series(s).to_list() == ["a", "bé", ""]


def test_arrow_export_from_a_dying_interpreter_does_not_crash() -> None:
    pytest.importorskip("pyarrow")
    run_python("""
        import pyarrow as pa, cowbuf
        s = cowbuf.StrArray(["a"] * 10)
        keep = [pa.array(s), s.__arrow_c_array__()]
        # both are released during interpreter shutdown
    """)
