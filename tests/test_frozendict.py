"""FrozenDict: an immutable mapping in one frozen region, with Python's key equalities,
its own keyed hash, and the travels of every cowbuf object; and what forked workers
that look up every key keep private."""

from __future__ import annotations

import collections.abc
import contextlib
import gc
import math
import pickle
import random
import struct
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import container_workers as w
import pytest
from helpers import memory_counters, python_env, run_python

import cowbuf
from cowbuf import _core

np = pytest.importorskip("numpy")

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/smaps_rollup")
MB = 1 << 20

KEYS = ["", "a", "\0", "a\0", "é", "日本", "😀", "\ud800", "x" * 1000, b"", b"a", b"\0\xff",
        0, 1, -1, 2, 2**31, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, 10**40,
        -(10**40)]
VALUES = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**63, -(10**50), 0.0, -0.0, 1.5,
          math.inf, -math.inf, "", "s\0", "\udfff", "é" * 300, b"", b"\xff" * 5000,
          [1, "two", 3.0], {"nested": (1, 2)}, (1, 2), Decimal("1.1"), frozenset({1})]


def make_map() -> tuple[cowbuf.FrozenDict, dict]:
    d = {k: VALUES[i % len(VALUES)] for i, k in enumerate(KEYS)}
    return cowbuf.FrozenDict(d), d


def test_every_key_and_value_round_trips() -> None:
    m, d = make_map()
    assert len(m) == len(d)
    assert list(m) == list(d) and list(m.keys()) == list(d.keys())
    assert list(m.values()) == list(d.values()) and list(m.items()) == list(d.items())
    for k, v in d.items():
        assert m[k] == v and type(m[k]) is type(v)
        assert k in m and m.get(k, "default") == v
    assert m == d and d == m and not (m != d)
    assert isinstance(m, collections.abc.Mapping)
    nan = cowbuf.FrozenDict({"nan": math.nan})["nan"]
    assert math.isnan(nan)
    assert math.copysign(1, cowbuf.FrozenDict({"z": -0.0})["z"]) == -1


def test_python_equalities_of_keys() -> None:
    m = cowbuf.FrozenDict({1: "one", "1": "str", b"1": "bytes", 2**70: "big", 0: "zero"})
    for key in (1, True, 1.0, Decimal(1), Fraction(1), np.int64(1), np.float64(1.0),
                1 + 0j):
        assert m[key] == "one" and key in m
    for key in (0, False, 0.0, -0.0):
        assert m[key] == "zero"
    assert m[float(2**70)] == "big" and m[Decimal(2**70)] == "big"
    assert m["1"] == "str" and m[b"1"] == "bytes" and m[memoryview(b"1")] == "bytes"
    for absent in (1.5, math.nan, math.inf, None, (1,), Decimal("1.5"), 1 + 1j, "2", b"2",
                   frozenset(), 2**70 + 1):
        with pytest.raises(KeyError):
            m[absent]
        assert absent not in m and m.get(absent) is None
    for unhashable in ([1], {}, set(), bytearray(b"1")):
        with pytest.raises(TypeError, match="unhashable"):
            m[unhashable]
        with pytest.raises(TypeError, match="unhashable"):
            assert unhashable not in m
    # keys come back as what they are stored as: True and 1.0 as the int 1
    assert list(cowbuf.FrozenDict({True: 1, 2.0: 2})) == [1, 2]


def test_built_like_a_dict_last_value_wins_first_position_kept() -> None:
    pairs = [("a", 1), ("b", 2), ("a", 3), (1, "x"), (True, "y"), (1.0, "z")]
    assert list(cowbuf.FrozenDict(pairs).items()) == list(dict(pairs).items())
    assert cowbuf.FrozenDict(a=1, b=2) == {"a": 1, "b": 2}
    assert cowbuf.FrozenDict({"a": 1}, b=2) == {"a": 1, "b": 2}
    assert cowbuf.FrozenDict(iter(pairs)) == dict(pairs)
    assert cowbuf.FrozenDict(cowbuf.FrozenDict(pairs)) == dict(pairs)
    assert cowbuf.FrozenDict(collections.OrderedDict(pairs)) == dict(pairs)
    assert cowbuf.FrozenDict() == {} and len(cowbuf.FrozenDict([])) == 0


def test_bad_keys_and_values_are_type_errors_naming_the_key() -> None:
    with pytest.raises(TypeError, match=r"keys must be str, bytes or int, not float: key 1\.5"):
        cowbuf.FrozenDict({"a": 1, 1.5: 2})
    with pytest.raises(TypeError, match=r"not tuple: key \(1, 2\)"):
        cowbuf.FrozenDict({(1, 2): 0})
    with pytest.raises(TypeError, match=r"key \[1\] cannot be a key: unhashable"):
        cowbuf.FrozenDict([("a", 1), ([1], 2)])
    with pytest.raises(TypeError, match=r"value of FrozenDict key 'f' can be neither"):
        cowbuf.FrozenDict({"ok": 1, "f": lambda: None})
    with pytest.raises(TypeError, match="item 1 is"):
        cowbuf.FrozenDict([("a", 1), ("b",)])
    with pytest.raises(TypeError, match="not str"):
        cowbuf.FrozenDict("ab")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        cowbuf.FrozenDict(3)  # type: ignore[call-overload]
    m = cowbuf.FrozenDict(a=1)
    with pytest.raises(TypeError, match="may only be called once"):
        m.__init__(b=2)  # type: ignore[misc]
    assert m == {"a": 1}


class Alias(str):
    """A str that a dict keeps apart from the plain str of the same text."""

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return type(other) is Alias and str.__eq__(self, other)


def test_a_failed_build_leaves_nothing_behind() -> None:
    # 20,000 entries: a mapping of its own, freed as soon as the build fails
    d = {f"key{i}": i for i in range(20_000)}
    d[Alias("key5")] = "twin"  # a second key that is "key5" once stored
    gc.collect()
    before = _core._live_mappings()
    with pytest.raises(TypeError, match="'key5' and 'key5' are one key once stored"):
        cowbuf.FrozenDict(d)
    gc.collect()
    assert _core._live_mappings() == before


def test_values_that_are_pickled_are_copies_on_every_access() -> None:
    m = cowbuf.FrozenDict({"list": [1, 2]})
    first = m["list"]
    first.append(3)
    assert m["list"] == [1, 2] and m["list"] is not m["list"]


def test_views_behave_as_dict_views() -> None:
    m, d = make_map()
    keys, values, items = m.keys(), m.values(), m.items()
    assert isinstance(keys, collections.abc.KeysView)
    assert isinstance(items, collections.abc.ItemsView)
    assert isinstance(values, collections.abc.ValuesView)
    assert len(keys) == len(items) == len(values) == len(d)
    assert keys & {"a", "zz", 1} == {"a", 1} and keys - set(KEYS[1:]) == {""}
    assert (keys | {"new"}) == set(d) | {"new"} and keys ^ {"a"} == set(d) ^ {"a"}
    assert keys == d.keys() and items == d.items()
    assert ("a", d["a"]) in items and ("a", "wrong") not in items and ("zz", 1) not in items
    assert d["a"] in values
    assert list(reversed(list(keys))) == list(reversed(d))


def test_get_many_is_a_batch_of_get() -> None:
    m, d = make_map()
    probes = [*KEYS, *KEYS[::-1], "missing", 3.5, None, True, 1.0] * 7
    assert m.get_many(probes) == [d.get(k) for k in probes]
    assert m.get_many(iter(probes), default=-1) == [d.get(k, -1) for k in probes]
    assert m.get_many([]) == []
    with pytest.raises(TypeError, match="unhashable"):
        m.get_many(["a", [1]])
    with pytest.raises(TypeError):
        m.get_many(5)  # type: ignore[call-overload]


def test_random_maps_against_dict() -> None:
    rng = random.Random(11)
    for n in (0, 1, 7, 100, 5000):
        pool = [rng.choice([f"k{rng.randrange(n * 2 + 1)}", rng.randrange(-n, n * 3 + 1),
                            str(rng.random()).encode()]) for _ in range(n)]
        d = {k: rng.random() for k in pool}
        m = cowbuf.FrozenDict(d)
        assert m == d and list(m.items()) == list(d.items())
        probes = pool + [f"k{i}" for i in range(n * 2 + 1)] + list(range(-n, n * 3))
        assert [m.get(k) for k in probes] == [d.get(k) for k in probes]
        assert m.get_many(probes) == [d.get(k) for k in probes]


def test_closed_region_is_value_error_everywhere() -> None:
    m, _ = make_map()
    it = iter(m.items())
    m.region.close()
    for op in (len, list, lambda x: x["a"], lambda x: x[1], lambda x: x.get("a"),
               lambda x: "a" in x, lambda x: x.keys(), lambda x: x.values(),
               lambda x: x.items(), lambda x: x.get_many(["a"]), lambda x: x == {},
               lambda x: pickle.dumps(x), lambda x: x.nbytes,
               # keys no map can hold are refused as closed too, not answered
               lambda x: x.get(None), lambda x: 1.5 in x, lambda x: x.get_many([None])):
        with pytest.raises(ValueError, match="closed region"):
            op(m)
    with pytest.raises(ValueError, match="closed region"):
        next(it)
    assert repr(m) == "<cowbuf.FrozenDict closed>"
    empty = cowbuf.FrozenDict.__new__(cowbuf.FrozenDict)
    with pytest.raises(ValueError, match="closed region"):
        empty["a"]


def test_frozendict_repr() -> None:
    assert repr(cowbuf.FrozenDict({"a": 1, 2: b"x"})) == "cowbuf.FrozenDict({'a': 1, 2: b'x'})"
    assert repr(cowbuf.FrozenDict({i: i for i in range(20)})).endswith("7: 7, ...})")


def test_memory_is_frozen_and_compact() -> None:
    small = cowbuf.FrozenDict(a=1)
    big = cowbuf.FrozenDict({f"user:{i:09d}": i for i in range(100_000)})
    for m in (small, big):
        assert m.region.frozen
        with pytest.raises(TypeError, match="frozen"):
            m.region.view("B")[0] = 1
    # slots at most 0.6 full, 8 bytes each; records of 16 + 14 bytes, 8-aligned
    assert big.nbytes <= 64 + 8 * 262_144 + 32 * 100_000


# -- the hash ----------------------------------------------------------------------------

def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & 0xFFFFFFFFFFFFFFFF


def reference_siphash(key: bytes, message: bytes, c: int, d: int) -> int:
    """SipHash-c-d as the paper specifies it, in plain Python."""
    mask = 0xFFFFFFFFFFFFFFFF
    k0, k1 = struct.unpack("<QQ", key)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & mask
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & mask
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & mask
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & mask
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    tail = len(message) % 8
    padded = message + bytes(7 - tail) + bytes([len(message) & 0xFF])
    for at in range(0, len(padded), 8):
        m = struct.unpack_from("<Q", padded, at)[0]
        v[3] ^= m
        rounds(c)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(d)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def test_siphash_matches_the_paper_and_the_specification() -> None:
    key = bytes(range(16))
    # the test vector of the SipHash paper (Appendix A): SipHash-2-4 of 00..0e
    assert _core._siphash(key, bytes(range(15)), 2, 4) == 0xA129CA6149BE45E5
    rng = random.Random(5)
    for n in range(1, 80):
        k = rng.randbytes(16)
        message = rng.randbytes(n)
        assert _core._siphash(k, message) == reference_siphash(k, message, 1, 3)
        assert _core._siphash(k, message, 2, 4) == reference_siphash(k, message, 2, 4)


def test_every_map_has_its_own_hash_key() -> None:
    a = cowbuf.FrozenDict({"x": 1})
    b = cowbuf.FrozenDict({"x": 1})
    assert a == b
    key_of = lambda m: bytes(memoryview(m.region)[32:48])  # noqa: E731  (_FDHeader.k0, k1)
    assert key_of(a) != key_of(b)
    copy = pickle.loads(pickle.dumps(a))
    assert key_of(copy) == key_of(a)  # the layout travels whole


# -- crafted data ---------------------------------------------------------------------------

def test_crafted_maps_are_value_errors_never_crashes() -> None:
    # Every field of a real map, damaged one at a time: the check must refuse each one
    # that would make a lookup read outside the region or probe forever. In an
    # interpreter of its own: a miss would crash it.
    done = run_python("""
        import pickle, random, struct
        import cowbuf
        from cowbuf import _core

        m = cowbuf.FrozenDict({f"k{i}": ("v" * i if i % 3 else i) for i in range(40)})
        good = bytearray(memoryview(m.region))
        refused = accepted = 0
        rng = random.Random(3)
        cases = [good[:n] for n in (0, 8, 63, 64, len(good) - 8)]
        for at in range(0, len(good) - 7, 8):
            for value in (0, 1, 7, 2**31, 2**40, 2**63, 2**64 - 1, rng.getrandbits(64)):
                bad = bytearray(good)
                struct.pack_into("<Q", bad, at, value)
                cases.append(bad)
        for bad in cases:
            try:
                copy = _core._frozendict_from_bytes(bytes(bad))
            except ValueError:
                refused += 1
                continue
            accepted += 1
            # damaged bytes may not decode: an exception, never a crash
            decoding = (UnicodeDecodeError, pickle.UnpicklingError, EOFError, ValueError,
                        TypeError, AttributeError, ImportError, KeyError, IndexError,
                        OverflowError, MemoryError)
            try:
                keys = list(copy.keys())
                list(copy.items())
            except decoding:
                keys = []
            for k in keys[:50] + ["k1", "nope", 7]:
                try:
                    copy.get(k)
                except decoding:
                    pass
        # (table full: every slot in use would make a miss probe forever)
        full = bytearray(good)
        struct.pack_into("<Q", full, 16, struct.unpack_from("<Q", good, 24)[0])
        try:
            _core._frozendict_from_bytes(bytes(full))
        except ValueError:
            refused += 1
        print(refused, accepted)
    """)
    refused, accepted = map(int, done.stdout.split())
    assert refused > 100 and accepted > 0


def test_crafted_references_are_value_error() -> None:
    with pytest.raises(ValueError, match="must be frozen"):
        _core._frozendict_on(cowbuf.Region(4096))
    other = cowbuf.array("q", range(100))
    other.freeze()
    with pytest.raises(ValueError, match="does not hold a FrozenDict"):
        _core._frozendict_on(other.region)


# -- pickling and sharing ------------------------------------------------------------------

@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_pickle_copies_a_frozendict_by_value(protocol: int) -> None:
    m, d = make_map()
    copy = pickle.loads(pickle.dumps(m, protocol=protocol))
    assert copy == d and list(copy.items()) == list(d.items())
    assert copy.region is not m.region and copy.region.frozen


def test_cloudpickle_copies_by_value() -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    m, d = make_map()
    assert cloudpickle.loads(cloudpickle.dumps(m)) == d


def test_by_reference_to_worker_processes_under_every_start_method(run_workers) -> None:  # type: ignore[no-untyped-def]
    big, d = make_map()
    d.update({f"user:{i}": i for i in range(2000)})
    big = cowbuf.FrozenDict(d)  # a mapping of its own
    small = cowbuf.FrozenDict({"a": 1, 2: "b"})  # carved from the frozen arena
    probes = ["a", 2, 2.0, True, "user:77", "nope", 10**40, b"\0\xff"]
    results = run_workers(w.describe_map, [(big, probes), (small, probes)])
    for result, m in zip(results, (big, small), strict=True):
        assert result == (list(m.items()), [m.get(k, "absent") for k in probes],
                          m.get_many(probes, "absent"), True, True)


def test_a_result_of_pool_processes_comes_back_as_the_same_memory(mp_context) -> None:  # type: ignore[no-untyped-def]
    m = cowbuf.FrozenDict({f"k{i}": i for i in range(1000)})
    with mp_context.Pool(1) as pool:
        back = pool.apply(w.identity, (m,))
    assert back.region is m.region and back == m


def test_registry_and_pool_kwargs_reach_pool_processes(mp_context) -> None:  # type: ignore[no-untyped-def]
    cowbuf.registry["prices"] = cowbuf.FrozenDict(apple=1.5, pear=2.0)
    try:
        with mp_context.Pool(1, **cowbuf.pool_kwargs()) as pool:
            assert pool.apply(w.registry_items, ("prices",)) == [("apple", 1.5), ("pear", 2.0)]
    finally:
        del cowbuf.registry["prices"]


# -- forked workers that read everything keep the memory shared --------------------------

N_ENTRIES = 300_000


def look_up_everything(container: object, n: int) -> tuple[int, int]:
    """In a forked worker: every key looked up with this process's own key objects (a
    request handler's), or every item read; (checksum, USS growth in bytes)."""
    uss0, _ = memory_counters()
    total = 0
    if isinstance(container, cowbuf.StrArray):
        for s in container:
            total += len(s)
    else:
        for i in range(n):
            total += container[f"user:{i:09d}:{i % 9973:07d}"]  # type: ignore[index]
    uss1, _ = memory_counters()
    return total, uss1 - uss0


@linux_only
def test_three_forked_worker_processes_that_look_up_every_key_stay_shared(run_forked) -> None:  # type: ignore[no-untyped-def]
    keys = [f"user:{i:09d}:{i % 9973:07d}" for i in range(N_ENTRIES)]
    as_dict = dict(zip(keys, range(10**6, 10**6 + N_ENTRIES), strict=True))
    shared = cowbuf.FrozenDict(as_dict)
    strings = cowbuf.StrArray(keys)
    gc.collect()
    expected = sum(as_dict.values())
    results = run_forked(look_up_everything, [(shared, N_ENTRIES)] * 3
                         + [(as_dict, N_ENTRIES), (strings, N_ENTRIES)])
    *frozen, control, listed = results
    # the control shows that the measurement can fail: a dict lookup writes the
    # reference count of every value it returns, and copies its page into the worker
    assert control[0] == expected and control[1] > 4 * MB, control
    for total, growth in frozen:
        assert total == expected
        assert growth < 0.5 * MB, growth
    assert listed[0] == sum(map(len, keys)) and listed[1] < 0.5 * MB, listed


def test_lookups_leak_nothing() -> None:
    import tracemalloc

    m, _ = make_map()
    probes = [*KEYS, "missing", 3.5, 1.0, memoryview(b"a"), Decimal(1)] * 20

    def churn() -> None:
        for k in probes:
            m.get(k)
            k in m  # noqa: B015
        m.get_many(probes)
        list(m.items())
        with contextlib.suppress(TypeError):
            m[[1]]  # type: ignore[index]
        with contextlib.suppress(TypeError):
            cowbuf.FrozenDict({1.5: 1})

    churn()
    tracemalloc.start()
    try:
        churn()
        before = tracemalloc.take_snapshot()
        for _ in range(50):
            churn()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    # 50 rounds of 1,200 calls: a leak of one small object per call would be > 1.9 MB
    assert growth < 200_000, after.compare_to(before, "lineno")[:5]


def test_processes_with_other_hash_seeds_find_every_key() -> None:
    # Python's hash() is randomised per process; a FrozenDict's hash is its own: a map
    # made here is read whole by a process with another PYTHONHASHSEED.
    m, d = make_map()
    data = pickle.dumps(m).hex()
    for seed in ("0", "12345"):
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c",
             "import pickle, sys; m = pickle.loads(bytes.fromhex(sys.argv[1])); "
             "print(sum(1 for k in m if k in m), len(m))", data],
            capture_output=True, text=True, timeout=120,
            env=dict(python_env(), PYTHONHASHSEED=seed), check=True)
        found, n = map(int, done.stdout.split())
        assert found == n == len(d)
