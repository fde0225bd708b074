"""Sending regions, arrays and counters to other processes, by reference.

multiprocessing pickles what it sends (Process and Pool arguments and results,
Queue and Pipe messages) with its own ForkingPickler; cowbuf registers reducers
there that send a *reference*: the receiver maps the same memory, and nothing is
copied. Plain pickle and cloudpickle still copy by value (Region.__reduce_ex__ and
friends in _core), so the objects also work where no memory can be shared.

A reference carries the mapping's token (so a process maps each region at most
once, however often it arrives, and a forked child reuses the mapping it
inherited) and a way to reach its fd, chosen to leave no thread behind:

- while multiprocessing starts a process (spawn, forkserver), the fd goes with the
  process start itself (reduction.DupFd through the spawning Popen);
- otherwise on Linux the receiver opens /proc/<sender>/fd/<fd>; the sender holds
  the mapping (so the fd stays open) until the receiver acknowledges with an atomic
  increment in the sender's outbox, a small shared array reached the same way;
- elsewhere, multiprocessing's resource sharer (which runs a thread in the sender).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from multiprocessing import context, reduction, util
from typing import Any

from cowbuf import _core
from cowbuf._core import Array, Counter, Region

_PROC_FDS = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")

# Slots of an outbox: one per mapping in flight. The low 32 bits of a slot count
# acknowledgements, the high 32 bits are the generation of its current use, so that
# a late acknowledgement for an earlier use of the slot is ignored.
_OUTBOX_SLOTS = 1 << 17
_SWEEP_INTERVAL = 0.01  # seconds between full sweeps of the outbox


class _Outbox:
    """Hand-offs in flight from this process through /proc (see the module doc)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.slots: Array | None = None  # created on first use; one per process
        self.where: tuple[Any, ...] = ()  # (token, fd, inode, size) of the slots' memory
        self.pending: dict[bytes, list[Any]] = {}  # token -> [mapping, slot, generation, sends]
        self.free: list[int] = []
        self.next_slot = 0
        self.last_sweep = 0.0

    def send(self, mapping: Any) -> tuple[Any, ...] | None:
        """The /proc reference to `mapping`, held until acknowledged; None if the
        outbox is full."""
        with self.lock:
            self._sweep_locked(force=False)
            entry = self.pending.get(mapping.token)
            if entry is None:
                slot = self._take_slot()
                if slot is None:
                    return None
                assert self.slots is not None
                generation = ((self.slots.atomic_load(slot) >> 32) + 1) & 0xFFFFFFFF
                self.slots.atomic_store(slot, generation << 32)
                entry = self.pending[mapping.token] = [mapping, slot, generation, 0]
            entry[3] += 1
            return (os.getpid(), mapping.fd, os.fstat(mapping.fd).st_ino,
                    *self.where, entry[1], entry[2])

    def _take_slot(self) -> int | None:
        if self.slots is None:
            self.slots = Region(_OUTBOX_SLOTS * 8).view("Q")
            box = _core._region_state(self.slots.region)[0]
            self.where = (box.token, box.fd, os.fstat(box.fd).st_ino, box.size)
            # A process exiting right after a send (a pool worker returning a result
            # with maxtasksperchild=1) waits briefly for its receivers: once it is
            # gone, /proc/<pid>/fd is too. multiprocessing children skip atexit.
            atexit.register(_drain)
            util.Finalize(None, _drain, exitpriority=0)
        if not self.free and self.next_slot == _OUTBOX_SLOTS:
            self._sweep_locked(force=True)
        if self.free:
            return self.free.pop()
        if self.next_slot < _OUTBOX_SLOTS:
            self.next_slot += 1
            return self.next_slot - 1
        return None

    def sweep(self) -> None:
        """Release the mappings whose every hand-off has been received."""
        if self.pending:
            with self.lock:
                self._sweep_locked(force=False)

    def _sweep_locked(self, force: bool) -> None:
        now = time.monotonic()
        if not self.pending or (not force and now - self.last_sweep < _SWEEP_INTERVAL):
            return
        self.last_sweep = now
        slots = self.slots
        assert slots is not None
        for token, (_, slot, generation, sends) in list(self.pending.items()):
            value = slots.atomic_load(slot)
            if value >> 32 == generation and value & 0xFFFFFFFF >= sends:
                del self.pending[token]
                self.free.append(slot)

    def in_flight(self) -> int:
        """How many mappings are held for receivers that have not taken them yet."""
        with self.lock:
            self._sweep_locked(force=True)
            return len(self.pending)


_outbox = _Outbox()
# Outboxes of other processes this one has acknowledged to: token -> slots array.
_their_outboxes: dict[bytes, Array] = {}


def _after_fork_in_child() -> None:
    # The parent's hand-offs are the parent's to release; the child starts its own.
    global _outbox
    _outbox = _Outbox()
    _core._set_sweep_hook(_sweep)


def _sweep() -> None:
    _outbox.sweep()


os.register_at_fork(after_in_child=_after_fork_in_child)
_core._set_sweep_hook(_sweep)


def _drain(timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while _outbox.in_flight() and time.monotonic() < deadline:
        time.sleep(0.002)


def in_flight() -> int:
    """The number of regions this process holds only because it sent them to a
    process that has not received them yet (Linux; 0 elsewhere)."""
    return _outbox.in_flight()


# -- sending -------------------------------------------------------------------------

def _send(mapping: Any) -> tuple[Any, ...]:
    header = (mapping.token, mapping.size, mapping.readonly, mapping.arena)
    if mapping.fd < 0:
        # anonymous shared memory (no memfd/shm_open here): forked children only
        return (*header, "fork", None)
    popen = context.get_spawning_popen()
    if popen is not None:
        # The fd travels with the process start. Once per process: spawn hands the
        # fds to _posixsubprocess, which refuses a list with the same fd twice (two
        # counters from one arena would pass it twice).
        dups = _start_fds.setdefault(popen, {})
        dup = dups.get(mapping.token)
        if dup is None:
            dup = dups[mapping.token] = reduction.DupFd(mapping.fd)
        return (*header, "dup", dup)
    if _PROC_FDS:
        where = _outbox.send(mapping)
        if where is not None:
            return (*header, "proc", where)
    # the fd travels through multiprocessing's resource sharer
    return (*header, "dup", reduction.DupFd(mapping.fd))


# Processes being started -> the fd wrapper of each mapping sent with the start.
_start_fds: weakref.WeakKeyDictionary[Any, dict[bytes, Any]] = weakref.WeakKeyDictionary()


def _reduce_region(region: Region) -> tuple[Any, ...]:
    mapping, offset, nbytes, frozen = _core._region_state(region)
    return _rebuild_region, (_send(mapping), offset, nbytes, frozen)


def _reduce_array(array: Array) -> tuple[Any, ...]:
    # the region inside is pickled by _reduce_region (once per message: pickle memo)
    return _core._array_on, _core._array_state(array)


def _reduce_counter(counter: Counter) -> tuple[Any, ...]:
    return _core._counter_on, _core._counter_state(counter)


reduction.ForkingPickler.register(Region, _reduce_region)
reduction.ForkingPickler.register(Array, _reduce_array)
reduction.ForkingPickler.register(Counter, _reduce_counter)


# -- receiving -----------------------------------------------------------------------

def _rebuild_region(ref: tuple[Any, ...], offset: int, nbytes: int, frozen: bool) -> Region:
    return _core._region_on(_receive(*ref), offset, nbytes, frozen)


def _receive(token: bytes, size: int, readonly: bool, arena: bool, how: str, where: Any) -> Any:
    mapping = _core._lookup_mapping(token)
    if how == "dup":
        fd = where.detach()
        if mapping is None:
            os.set_inheritable(fd, False)
            return _core._map_fd(fd, size, token, readonly, arena)
        if fd != mapping.fd:  # spawn hands the same fd number over for each reference
            os.close(fd)
        return mapping
    if how == "fork":
        if mapping is None:
            raise ValueError(
                "this region is anonymous shared memory (the platform has neither memfd "
                "nor shm_open): only forked children of its creator can use it")
        return mapping
    pid, fd, ino, box_token, box_fd, box_ino, box_size, slot, generation = where
    if mapping is None:
        mapping = _core._map_fd(_open_from(pid, fd, ino, readonly), size, token, readonly, arena)
    _acknowledge(pid, box_token, box_fd, box_ino, box_size, slot, generation)
    return mapping


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


def _acknowledge(pid: int, box_token: bytes, box_fd: int, box_ino: int, box_size: int,
                 slot: int, generation: int) -> None:
    slots = _their_outboxes.get(box_token)
    if slots is None:
        box = _core._lookup_mapping(box_token)
        if box is None:
            try:
                box = _core._map_fd(_open_from(pid, box_fd, box_ino, False), box_size,
                                    box_token, False, False)
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
