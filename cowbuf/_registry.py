"""A process-wide registry of named cowbuf objects (every type that travels by
reference: cowbuf._core.SHARED_TYPES), and its hand-off to pool workers under every
start method."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from cowbuf._core import SHARED_TYPES, Array, BytesArray, Counter, FrozenDict, Region, StrArray

# For the type checker: what the registry holds (at run time, SHARED_TYPES decides).
Shared = Region | Array | Counter | StrArray | BytesArray | FrozenDict
_SHARED = tuple(SHARED_TYPES)


class Registry(MutableMapping[str, Shared]):
    """Names -> cowbuf objects (Regions, Arrays, Counters...), for the whole process.

    Fill it before workers start (a gunicorn app loaded with --preload, or before a
    pool is made): forked children inherit every entry, and pool_kwargs() installs
    it in workers started by spawn or forkserver. It is thread-safe and fork-safe: a
    fork while another thread holds its lock does not deadlock the child.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Shared] = {}
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # The thread that held the lock does not exist in the child. Each mutation
        # under the lock is a single dict operation, so the dict itself is whole.
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Shared:
        with self._lock:
            value = self._entries.get(name)
            if value is not None:
                return value
            names = sorted(self._entries)
        raise KeyError(
            f"{name!r} is not in the cowbuf registry of process {os.getpid()}; "
            f"it holds {names or 'nothing'}")

    def __setitem__(self, name: str, value: Shared) -> None:
        if not isinstance(name, str):
            raise TypeError(f"registry names are str, not {type(name).__name__}")
        if not isinstance(value, _SHARED):
            names = ", ".join(t.__name__ for t in _SHARED)
            raise TypeError(
                f"the registry holds cowbuf objects ({names}), not {type(value).__name__}")
        with self._lock:
            self._entries[name] = value

    def __delitem__(self, name: str) -> None:
        with self._lock:
            if self._entries.pop(name, None) is not None:
                return
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def snapshot(self) -> dict[str, Shared]:
        """A copy of the entries, as of now."""
        with self._lock:
            return dict(self._entries)

    def __repr__(self) -> str:
        return f"<cowbuf.registry {sorted(self._entries)}>"


registry = Registry()


def pool_kwargs(initializer: Callable[..., object] | None = None,
                initargs: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Keyword arguments for multiprocessing.Pool(...) and
    concurrent.futures.ProcessPoolExecutor(...): every worker starts with this
    process's registry as it is now (under fork, forkserver and spawn alike: the
    memory is shared, not copied), then runs `initializer(*initargs)`."""
    return {"initializer": _install,
            "initargs": (registry.snapshot(), initializer, tuple(initargs))}


def _install(entries: dict[str, Shared], initializer: Callable[..., object] | None,
             initargs: tuple[Any, ...]) -> None:
    registry.update(entries)
    if initializer is not None:
        initializer(*initargs)
