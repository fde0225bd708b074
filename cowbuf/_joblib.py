"""joblib and loky: cowbuf objects go to their workers by reference.

loky pickles tasks with cloudpickle and a reducer table of its own
(``loky.backend.reduction.register``), and joblib vendors a second copy of loky
(``joblib.externals.loky``) with a table of its own; neither reads the registry of
multiprocessing's ForkingPickler, where cowbuf._sharing registers. joblib's loky and
"multiprocessing" backends also get per-pool reducers from
``get_memmapping_reducers()``, which dump every numpy array over 1 MB to a file in
/dev/shm, numpy views of cowbuf memory included.

So, for each of those modules, as soon as it is imported (at once if it already is,
otherwise through an import hook: ``import cowbuf`` never imports joblib), this module
adds the by-reference reducers of every type in cowbuf._core.SHARED_TYPES, and makes
the per-pool reducers send a numpy array whose memory is a cowbuf object's by
reference too. Everything else keeps joblib's behaviour.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from cowbuf import _core, _sharing


def _reducers() -> dict[type[Any], Callable[[Any], tuple[Any, ...]]]:
    return {_core._Mapping: _sharing._reduce_mapping, **_core.SHARED_TYPES}


def _register_in_loky(reduction: ModuleType) -> None:
    for type_, reducer in _reducers().items():
        reduction.register(type_, reducer)


def _wrap_memmapping_reducers(module: Any) -> None:
    original = module.get_memmapping_reducers
    if getattr(original, "_cowbuf", False):
        return

    def get_memmapping_reducers(*args: Any, **kwargs: Any) -> tuple[dict[Any, Any], ...]:
        forward, backward = original(*args, **kwargs)
        for reducers in (forward, backward):
            for type_, reducer in _reducers().items():
                reducers.setdefault(type_, reducer)
            for type_, reducer in list(reducers.items()):
                if getattr(type_, "__module__", "").startswith("numpy") and \
                        not isinstance(reducer, CowbufViewsFirst):
                    reducers[type_] = CowbufViewsFirst(reducer)
        return forward, backward

    get_memmapping_reducers._cowbuf = True  # type: ignore[attr-defined]
    module.get_memmapping_reducers = get_memmapping_reducers


class CowbufViewsFirst:
    """A numpy reducer of joblib's, preceded by one that sends an array whose memory
    is a cowbuf object's (np.asarray(a), its slices) by reference. Picklable: loky
    sends the result reducers to its workers."""

    def __init__(self, reducer: Callable[[Any], Any]) -> None:
        self.reducer = reducer

    def __reduce__(self) -> tuple[Any, ...]:
        return CowbufViewsFirst, (self.reducer,)

    def __call__(self, array: Any) -> Any:
        region = _cowbuf_region(array)
        if region is None:
            return self.reducer(array)
        import numpy as np

        start = np.frombuffer(region, np.uint8).ctypes.data
        return _ndarray_on, (region, array.dtype.str, array.shape, array.strides,
                             array.ctypes.data - start, array.flags.writeable)


def _cowbuf_region(array: Any) -> Any:
    """The cowbuf Region whose memory `array` views, or None."""
    base = array
    while base is not None:
        if isinstance(base, _core.Array):
            return base.region
        if isinstance(base, _core.Region):
            return base
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return None


def _ndarray_on(region: Any, dtype: str, shape: Sequence[int], strides: Sequence[int],
                offset: int, writeable: bool) -> Any:
    import numpy as np

    view = np.ndarray(shape, dtype, buffer=region, offset=offset, strides=strides)
    if not writeable:
        view.flags.writeable = False
    return view


# -- when they are imported ---------------------------------------------------------------

_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "loky.backend.reduction": _register_in_loky,
    "joblib.externals.loky.backend.reduction": _register_in_loky,
    "joblib.pool": _wrap_memmapping_reducers,
    "joblib.executor": _wrap_memmapping_reducers,
}


class _HookedLoader(importlib.abc.Loader):
    """The module's own loader, then the hook."""

    def __init__(self, loader: Any, hook: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.hook(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders give the modules of
    _HOOKS, so that the hook runs right after the module body."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        hook = _HOOKS.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader, hook)
                return spec
        return None


def install() -> None:
    for name, hook in _HOOKS.items():
        module = sys.modules.get(name)
        if module is not None:
            hook(module)
    if not any(isinstance(finder, _ImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook())
