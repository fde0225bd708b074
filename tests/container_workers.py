"""Functions that run in worker processes of the StrArray, BytesArray and FrozenDict
tests: importable by name, so that spawn and forkserver workers can find them."""

from __future__ import annotations

from typing import Any

import cowbuf
from cowbuf import _core


def describe_strings(s: cowbuf.StrArray, b: cowbuf.BytesArray,
                     part: cowbuf.StrArray) -> tuple[Any, ...]:
    """What arrived, and whether it is the sender's frozen memory."""
    mapping = _core._region_state(s.region)[0]
    return (s.tolist(), b.tolist(), part.tolist(), s.region.frozen, part.region is s.region,
            mapping.readonly)


def describe_map(m: cowbuf.FrozenDict, probes: list[Any]) -> tuple[Any, ...]:
    """What arrived: the items, lookups with this process's own key objects, and
    whether it is frozen memory."""
    mapping = _core._region_state(m.region)[0]
    return (list(m.items()), [m.get(k, "absent") for k in probes],
            m.get_many(probes, "absent"), m.region.frozen, mapping.readonly)


def registry_items(name: str) -> list[Any]:
    value = cowbuf.registry[name]
    assert isinstance(value, (cowbuf.StrArray, cowbuf.BytesArray, cowbuf.FrozenDict))
    return list(value.items()) if isinstance(value, cowbuf.FrozenDict) else value.tolist()


def identity(x: Any) -> Any:
    return x
