"""Strings and maps: cowbuf FrozenDict and StrArray against dict, marisa-trie, list,
ShareableList and pyarrow, on the same data in the same run.

FrozenDict: N keys "user:000000042:0123456" -> int. Lookups use fresh key objects made
for each round, as a request handler would (their hashes are not cached yet); hits and
misses in a random order; get_many() against a Python loop of lookups; the build from a
list of pairs; the memory: FrozenDict's shared bytes against what tracemalloc sees a
dict, its keys and values hold once built.

StrArray: N ASCII strings of 32 characters: random s[i] and full iteration against a
list, multiprocessing.shared_memory.ShareableList and pyarrow's arr[i].as_py().

Every table row is a median over rounds that run all arms back to back in a rotating
order; the targets are medians of per-round ratios.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable
from functools import partial
from typing import Any

from _common import (
    bench_main,
    fmt_mb,
    format_targets,
    interleaved,
    median,
    na_target,
    progress,
    table,
    target,
    time_call,
)
from strategies import dict_key


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def interleaved_fresh(arms: dict[str, Callable[[Any], Any]], rounds: int,
                      make: Callable[[], Any]) -> dict[str, list[float]]:
    """Like _common.interleaved, but each call gets its own argument from make(), made
    before the clock starts (fresh key objects for every arm of every round)."""
    names = list(arms)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            call = partial(arms[name], make())
            gc.collect()
            gc.disable()
            try:
                samples[name].append(time_call(call))
            finally:
                gc.enable()
            del call
    return samples


# -- FrozenDict --------------------------------------------------------------------------

def bench_maps(n: int, lookups: int, batch: int, rounds: int,
               build_rounds: int) -> dict[str, Any]:
    import numpy as np

    import cowbuf

    progress(f"containers: {n:,} keys as dict, FrozenDict, marisa-trie")
    pairs = [(dict_key(i), i) for i in range(n)]
    d = dict(pairs)
    m = cowbuf.FrozenDict(pairs)
    assert len(m) == n and m[pairs[-1][0]] == n - 1
    maps: dict[str, Any] = {"dict": d, "FrozenDict": m}
    trie = column = None
    if _available("marisa_trie"):
        import marisa_trie
        trie = marisa_trie.Trie([k for k, _ in pairs])
        column = np.empty(n, dtype=np.int64)
        for k, v in pairs:
            column[trie[k]] = v

    rng = random.Random(11)
    order = rng.sample(range(n), min(lookups, n))
    absent = [n + rng.randrange(n) for _ in range(len(order))]
    many = rng.sample(range(n), min(batch, n))

    def fresh(indices: list[int]) -> Callable[[], list[str]]:
        return lambda: [dict_key(i) for i in indices]

    def hit(x: Any) -> Callable[[list[str]], None]:
        def run(keys: list[str]) -> None:
            for k in keys:
                x[k]
        return run

    def miss(x: Any) -> Callable[[list[str]], None]:
        get = x.get

        def run(keys: list[str]) -> None:
            for k in keys:
                get(k)
        return run

    def trie_hit(keys: list[str]) -> None:
        for k in keys:
            column[trie[k]]  # type: ignore[index]

    def trie_miss(keys: list[str]) -> None:
        get = trie.get  # type: ignore[union-attr]
        for k in keys:
            get(k)

    hit_arms = {name: hit(x) for name, x in maps.items()}
    miss_arms = {name: miss(x) for name, x in maps.items()}
    if trie is not None:
        hit_arms["marisa-trie"] = trie_hit
        miss_arms["marisa-trie"] = trie_miss
    progress(f"containers: {len(order):,} hits and misses with fresh keys x {rounds} rounds")
    hits = interleaved_fresh(hit_arms, rounds, fresh(order))
    misses = interleaved_fresh(miss_arms, rounds, fresh(absent))

    def loop(keys: list[str]) -> list[Any]:
        return [m[k] for k in keys]

    progress(f"containers: get_many of {len(many):,} keys x {rounds} rounds")
    batches = interleaved_fresh({"get_many": m.get_many, "Python loop": loop}, rounds,
                                fresh(many))
    assert m.get_many(fresh(many)()) == [d[k] for k in fresh(many)()]

    progress(f"containers: building from {n:,} pairs x {build_rounds} rounds")
    build_arms: dict[str, Callable[[], Any]] = {
        "dict": lambda: dict(pairs), "FrozenDict": lambda: cowbuf.FrozenDict(pairs)}
    if trie is not None:
        import marisa_trie

        def trie_build() -> Any:
            t = marisa_trie.Trie([k for k, _ in pairs])
            col = np.empty(n, dtype=np.int64)
            for k, v in pairs:
                col[t[k]] = v
            return t, col
        build_arms["marisa-trie"] = trie_build
    builds = interleaved(build_arms, build_rounds)

    # what a dict holds once built from nothing: its table, its keys and its values
    del d, maps, hit_arms, miss_arms
    gc.collect()
    tracemalloc.start()
    try:
        built = {dict_key(i): i for i in range(n)}
        dict_bytes, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del built
    sizes = {"dict": dict_bytes, "FrozenDict": m.nbytes}
    if trie is not None:
        sizes["marisa-trie"] = len(trie.tobytes()) + column.nbytes  # type: ignore[union-attr]
    return {"keys": n, "lookups": len(order), "batch": len(many), "rounds": rounds,
            "build_rounds": build_rounds,
            "hit": hits, "miss": misses, "get_many": batches, "build": builds,
            "bytes": sizes, "marisa": trie is not None}


# -- StrArray ----------------------------------------------------------------------------

def bench_strings(n: int, reads: int, rounds: int, slow_share: int) -> dict[str, Any]:
    from multiprocessing import shared_memory

    import cowbuf

    progress(f"containers: {n:,} strings as list, StrArray, pyarrow, ShareableList")
    items = [f"item:{i:012d}:{i * 7919 % 10**11:011d}:ab" for i in range(n)]
    assert all(len(s) == 32 for s in items[:10])
    containers: dict[str, Any] = {"list": items, "StrArray": cowbuf.StrArray(items)}
    arrow = None
    if _available("pyarrow"):
        import pyarrow
        arrow = pyarrow.array(items, type=pyarrow.large_string())
    # ShareableList reads are ~100x slower: it reads the first 1/slow_share of the data
    # only, and its times are scaled to the same number of reads
    slow_n = max(n // slow_share, 1)
    shareable = shared_memory.ShareableList(items[:slow_n])
    try:
        rng = random.Random(7)
        idx = [rng.randrange(n) for _ in range(reads)]
        slow_idx = [rng.randrange(slow_n) for _ in range(max(reads // slow_share, 1))]

        def reader(x: Any, indices: list[int]) -> Callable[[], None]:
            def read() -> None:
                for i in indices:
                    x[i]
            return read

        def arrow_reader() -> None:
            for i in idx:
                arrow[i].as_py()  # type: ignore[index]

        def iterate(x: Any) -> Callable[[], None]:
            def run() -> None:
                for _ in x:
                    pass
            return run

        def arrow_iterate() -> None:
            for x in arrow:  # type: ignore[union-attr]
                x.as_py()

        read_arms = {name: reader(x, idx) for name, x in containers.items()}
        read_arms["ShareableList"] = reader(shareable, slow_idx)
        iter_arms = {name: iterate(x) for name, x in containers.items()}
        iter_arms["ShareableList"] = iterate(shareable)
        if arrow is not None:
            read_arms["pyarrow"] = arrow_reader
            iter_arms["pyarrow"] = arrow_iterate
        progress(f"containers: {reads:,} random s[i] x {rounds} rounds")
        gets = interleaved(read_arms, rounds)
        progress(f"containers: full iteration x {rounds} rounds")
        iters = interleaved(iter_arms, rounds)
        # the same work as the others: as many reads, as many items
        gets["ShareableList"] = [t * reads / len(slow_idx) for t in gets["ShareableList"]]
        iters["ShareableList"] = [t * n / slow_n for t in iters["ShareableList"]]
        # ShareableList's own defect, shown on the way: trailing NULs are lost
        probe = shared_memory.ShareableList(["ab\0"])
        try:
            nul_kept = probe[0] == "ab\0"
        finally:
            probe.shm.close()
            probe.shm.unlink()
        strarray_nul = cowbuf.StrArray(["ab\0"])[0] == "ab\0"
    finally:
        shareable.shm.close()
        shareable.shm.unlink()
    return {"strings": n, "reads": reads, "rounds": rounds, "get": gets, "iterate": iters,
            "pyarrow": arrow is not None,
            "trailing_nul_kept": {"ShareableList": nul_kept, "StrArray": strarray_nul}}


def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    if smoke:
        maps = bench_maps(20_000, 5_000, 5_000, 2, 1)
        strings = bench_strings(5_000, 5_000, 2, 10)
    elif quick:
        maps = bench_maps(1_000_000, 100_000, 100_000, 5, 2)
        strings = bench_strings(200_000, 100_000, 5, 20)
    else:
        maps = bench_maps(1_000_000, 200_000, 100_000, 15, 5)
        strings = bench_strings(1_000_000, 200_000, 15, 20)

    targets = []
    h, mi, b = maps["hit"], maps["miss"], maps["build"]
    targets.append(target("FrozenDict hit <= 1.0x dict, fresh keys", h["FrozenDict"],
                          h["dict"], 1.0, "time", f"{maps['keys']:,} str keys"))
    targets.append(target("FrozenDict miss <= 1.0x dict", mi["FrozenDict"], mi["dict"], 1.0,
                          "time", ".get() of absent keys"))
    if maps["marisa"]:
        targets.append(target("FrozenDict hit >= 3x marisa-trie", h["FrozenDict"],
                              h["marisa-trie"], 3.0, "rate", "trie + numpy value column"))
    else:
        targets.append(na_target("FrozenDict hit >= 3x marisa-trie", 3.0, "rate",
                                 "marisa-trie not installed"))
    g = maps["get_many"]
    targets.append(target(f"get_many({maps['batch']:,} keys) <= 0.5x a Python loop",
                          g["get_many"], g["Python loop"], 0.5, "time", "[m[k] for k in keys]"))
    targets.append(target("FrozenDict build <= 3x dict(pairs)", b["FrozenDict"], b["dict"],
                          3.0, "time", "from a list of pairs"))
    sizes = maps["bytes"]
    targets.append(target("FrozenDict size <= 0.6x the dict's memory", [sizes["FrozenDict"]],
                          [sizes["dict"]], 0.6, "time", "shared bytes / tracemalloc of a dict"))
    sg, si = strings["get"], strings["iterate"]
    targets.append(target("StrArray s[i] <= 1.5x list[i]", sg["StrArray"], sg["list"], 1.5,
                          "time", "random reads"))
    targets.append(target("StrArray s[i] >= 5x ShareableList", sg["StrArray"],
                          sg["ShareableList"], 5.0, "rate", ""))
    if strings["pyarrow"]:
        targets.append(target("StrArray s[i] >= 3x pyarrow arr[i].as_py()", sg["StrArray"],
                              sg["pyarrow"], 3.0, "rate", ""))
    else:
        targets.append(na_target("StrArray s[i] >= 3x pyarrow arr[i].as_py()", 3.0, "rate",
                                 "pyarrow not installed"))
    targets.append(target("StrArray iteration <= 1.5x a list", si["StrArray"], si["list"], 1.5,
                          "time", "for x in s: pass"))
    return {"name": "containers", "title": "Strings and maps: FrozenDict and StrArray",
            "maps": maps, "strings": strings, "targets": targets}


def _per(samples: list[float], count: int) -> str:
    return f"{median(samples) / count * 1e9:,.0f} ns"


def _vs(samples: dict[str, list[float]], name: str, ref: str) -> str:
    ratios = [t / r for t, r in zip(samples[name], samples[ref], strict=True) if r > 0]
    return f"{median(ratios):.2f}x" if ratios else ""


def format_result(result: dict[str, Any]) -> str:
    maps, strings = result["maps"], result["strings"]
    n, k = maps["keys"], maps["lookups"]
    rows = []
    for name in maps["hit"]:
        rows.append([name, _per(maps["hit"][name], k), _vs(maps["hit"], name, "dict"),
                     _per(maps["miss"][name], k), _vs(maps["miss"], name, "dict"),
                     f"{median(maps['build'][name]):.2f} s", fmt_mb(maps["bytes"].get(name))])
    g = maps["get_many"]
    out = [f"### {result['title']}", "",
           f"{n:,} keys `user:000000042:0123456` -> int. Lookups of {k:,} fresh key objects "
           "in a random order (per lookup, and as a multiple of dict's time); build from a "
           "list of pairs; memory: the shared bytes of the FrozenDict and of the trie and "
           "its value column, and what tracemalloc sees a dict with its keys and values "
           "hold.", "",
           table(["held as", "hit", "vs dict", "miss", "vs dict", "build", "memory"], rows),
           "", f"`get_many()` of {maps['batch']:,} keys: {_per(g['get_many'], maps['batch'])} "
           f"per key against {_per(g['Python loop'], maps['batch'])} in a Python loop "
           f"({_vs(g, 'get_many', 'Python loop')}).", ""]
    s, reads = strings["strings"], strings["reads"]
    rows = [[name, _per(strings["get"][name], reads), _vs(strings["get"], name, "list"),
             _per(strings["iterate"][name], s), _vs(strings["iterate"], name, "list")]
            for name in strings["get"]]
    nul = strings["trailing_nul_kept"]
    out += [f"{s:,} strings of 32 ASCII characters: {reads:,} random `s[i]`, and iteration "
            "(`for x in s`; pyarrow: `x.as_py()` of each scalar). ShareableList reads a "
            "part of the data, scaled to the same work. A trailing NUL survives: "
            f"ShareableList {'yes' if nul['ShareableList'] else 'no'}, StrArray "
            f"{'yes' if nul['StrArray'] else 'no'}.", "",
            table(["held as", "s[i]", "vs list", "iteration, per item", "vs list"], rows), "",
            format_targets(result["targets"])]
    return "\n".join(out)


if __name__ == "__main__":
    bench_main(run, format_result)
