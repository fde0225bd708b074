"""Sending cowbuf objects to other processes by reference: moving the fds.

multiprocessing pickles what it sends (Process and Pool arguments and results,
Queue and Pipe messages) with its own ForkingPickler. cowbuf registers there the
reducer of every type in cowbuf._core.SHARED_TYPES, which reduces an object to the
regions it lives in, and one reducer for the mappings behind those regions, here:
the receiver maps the same memory, and nothing is copied. Plain pickle and
cloudpickle still copy by value, so the objects also work where no memory can be
shared.

A mapping travels as its token (so that a process maps each at most once, however
often it arrives, and a forked child reuses the mapping it inherited) and a way to
reach its fd, chosen to leave no thread behind:

- while multiprocessing starts a process (spawn, forkserver), the fd goes with the
  process start itself (reduction.DupFd through the spawning Popen), up to
  START_FDS of them per start (forkserver refuses more than 252, #12);
- otherwise on Linux the receiver opens /proc/<sender>/fd/<fd>; the sender holds
  the mapping until the receiver acknowledges it (cowbuf._core's outbox);
- elsewhere, multiprocessing's resource sharer (which runs a thread in the sender);
- a mapping without an fd (anonymous memory; a received mapping whose fd went under
  fd pressure) travels by token alone, to processes that have it already.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import weakref
from multiprocessing import context, reduction, util
from typing import Any

from cowbuf import _core

_PROC_FDS = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")
# Mappings whose fds go with one process start, at most; the rest go through /proc
# or the resource sharer.
START_FDS = 64

# Processes being started -> the fd wrapper of each mapping sent with the start.
_start_fds: weakref.WeakKeyDictionary[Any, dict[bytes, Any]] = weakref.WeakKeyDictionary()


# -- sending -------------------------------------------------------------------------

def _reduce_mapping(mapping: Any) -> tuple[Any, ...]:
    return _receive, (mapping.token, mapping.size, mapping.readonly, mapping.arena,
                      *_route(mapping))


def _route(mapping: Any) -> tuple[str, Any]:
    if mapping.fd < 0:
        return "token", os.getpid()
    popen = context.get_spawning_popen()
    if popen is not None:
        # The fd travels with the process start. Once per process: spawn hands the
        # fds to _posixsubprocess, which refuses a list with the same fd twice (two
        # counters from one arena would pass it twice).
        dups = _start_fds.setdefault(popen, {})
        dup = dups.get(mapping.token)
        if dup is None and len(dups) < START_FDS:
            dup = dups[mapping.token] = reduction.DupFd(mapping.fd)
        if dup is not None:
            return "dup", dup
    if _PROC_FDS:
        where = _core._outbox_send(mapping)
        if where is not None:
            return "proc", where
    # the fd travels through multiprocessing's resource sharer
    from multiprocessing import resource_sharer

    return "dup", resource_sharer.DupFd(mapping.fd)


reduction.ForkingPickler.register(_core._Mapping, _reduce_mapping)
for _type, _reducer in _core.SHARED_TYPES.items():
    reduction.ForkingPickler.register(_type, _reducer)


# -- receiving -----------------------------------------------------------------------

def _receive(token: bytes, size: int, readonly: bool, arena: bool, how: str,
             where: Any) -> Any:
    mapping = _core._lookup_mapping(token)
    if how == "dup":
        fd = _with_fds(where.detach)
        if mapping is None:
            os.set_inheritable(fd, False)
            return _core._map_fd(fd, size, token, readonly, arena)
        if fd != mapping.fd:  # spawn hands the same fd number over for each reference
            os.close(fd)
        return mapping
    if how == "token":
        if mapping is None:
            raise ValueError(
                f"cannot receive a cowbuf region from process {where}: it holds the memory "
                "without an fd (anonymous shared memory, or received when it ran out of "
                "fds), so only processes that have it already can take it")
        return mapping
    pid, fd, ino, box_token, box_fd, box_ino, box_size, slot, generation = where
    if mapping is None:
        new = _with_fds(lambda: _open_from(pid, fd, ino, readonly))
        mapping = _core._map_fd(new, size, token, readonly, arena)
    _acknowledge(pid, box_token, box_fd, box_ino, box_size, slot, generation)
    return mapping


def _with_fds(open_fd: Any) -> int:
    """open_fd(), retried once after closing the fds of received mappings if the
    process has run out of fds (#13: one fd per received mapping would otherwise lose
    the task that brought one too many)."""
    try:
        return int(open_fd())
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE) or not _core._drop_received_fds():
            raise
    return int(open_fd())


def _open_from(pid: int, fd: int, ino: int, readonly: bool) -> int:
    """Open the sender's fd through /proc; check that it is still the same memory."""
    path = f"/proc/{pid}/fd/{fd}"
    try:
        new = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
    except FileNotFoundError:
        raise ValueError(
            f"cannot receive a cowbuf region: the sending process {pid} has exited or "
            "released it") from None
    except PermissionError as exc:
        raise PermissionError(
            exc.errno, f"cannot receive a cowbuf region from process {pid} through "
            f"{path}: {exc.strerror} (is the receiver allowed to inspect the sender?)") from None
    if os.fstat(new).st_ino != ino:
        os.close(new)
        raise ValueError(
            f"cannot receive a cowbuf region: process {pid} no longer holds it")
    return new


# Outboxes of other processes this one has acknowledged to: token -> slots array.
_their_outboxes: dict[bytes, Any] = {}


def _acknowledge(pid: int, box_token: bytes, box_fd: int, box_ino: int, box_size: int,
                 slot: int, generation: int) -> None:
    slots = _their_outboxes.get(box_token)
    if slots is None:
        box = _core._lookup_mapping(box_token)
        if box is None:
            try:
                box = _core._map_fd(_with_fds(lambda: _open_from(pid, box_fd, box_ino, False)),
                                    box_size, box_token, False, False)
            except (OSError, ValueError):
                return  # the sender is gone: nobody waits for this acknowledgement
        slots = _core._region_on(box, 0, box_size, False).view("Q")
        if len(_their_outboxes) >= 64:
            _their_outboxes.pop(next(iter(_their_outboxes)))
        _their_outboxes[box_token] = slots
    while True:
        value = slots.atomic_load(slot)
        if value >> 32 != generation or slots.atomic_cas(slot, value, value + 1):
            return


# -- exit ------------------------------------------------------------------------------

# The last exit finalizer of multiprocessing (exitpriority -5 joins a Queue's feeder
# thread, which may still be pickling cowbuf objects): then wait for the receivers.
_DRAIN_PRIORITY = -100


def _drain(timeout: float = 2.0) -> None:
    """Wait a little for the receivers of this process's hand-offs: once the process
    is gone, so is /proc/<pid>/fd, and a message still in a pipe would be lost (#5)."""
    deadline = time.monotonic() + timeout
    while _core.in_flight() and time.monotonic() < deadline:
        time.sleep(0.002)


def _register_drain(*_: object) -> None:
    # Registered in every process from its start (a finalizer registered during the
    # exit, by the first send, would never run): multiprocessing runs its finalizers
    # when any of its processes exits, by sys.exit or by os._exit alike.
    util.Finalize(None, _drain, exitpriority=_DRAIN_PRIORITY)


class _DrainInChildren:
    """Re-registers the drain in multiprocessing's children, whose _bootstrap clears
    the finalizers inherited from the parent."""


_drain_in_children = _DrainInChildren()
_register_drain()
# a child made by os.fork() inherits the parent's finalizer, which ignores any
# process but the parent
os.register_at_fork(after_in_child=_register_drain)
util.register_after_fork(_drain_in_children, _register_drain)


def in_flight() -> int:
    """The number of regions this process holds only because it sent them to a
    process that has not received them yet (Linux; 0 elsewhere)."""
    return int(_core.in_flight())
