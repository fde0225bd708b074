"""Region: fresh shared memory, its buffer, closing, freezing and views on it."""

import fcntl
import gc
import mmap
import os
import sys

import numpy as np
import pytest
from helpers import (
    Sneaky,
    address,
    cowbuf_mappings,
    fd_of_inode,
    mapping_of,
    open_fds,
    run_python,
)

import cowbuf

PAGE = mmap.PAGESIZE
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="inspects /proc and memfd seals")

# fcntl constants that older Pythons do not name (Linux ABI values)
F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1024 + 10)
F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)
F_SEAL_GROW = getattr(fcntl, "F_SEAL_GROW", 0x0004)
F_SEAL_FUTURE_WRITE = 0x0010


# -- creation ----------------------------------------------------------------------

@pytest.mark.parametrize("nbytes", [1, 7, 100, PAGE - 1, PAGE, PAGE + 1, 3 << 20])
def test_new_region_is_zero_filled_and_sized(nbytes):
    r = cowbuf.Region(nbytes)
    assert r.nbytes == nbytes
    assert not r.closed and not r.frozen
    m = memoryview(r)
    assert m.nbytes == nbytes
    assert bytes(m) == bytes(nbytes)
    m.release()
    r.close()


def test_region_accepts_index_objects_as_size():
    assert cowbuf.Region(np.int64(24)).nbytes == 24
    assert cowbuf.Region(True).nbytes == 1


@pytest.mark.parametrize("nbytes", [PAGE, 5 * PAGE + 3, 1 << 20])
def test_region_is_page_aligned(nbytes):
    r = cowbuf.Region(nbytes)
    assert address(r) % PAGE == 0


def test_each_region_is_fresh_memory():
    a, b = cowbuf.Region(PAGE), cowbuf.Region(PAGE)
    memoryview(a)[:] = b"\xff" * PAGE
    assert bytes(memoryview(b)) == bytes(PAGE)
    assert address(a) != address(b)


@pytest.mark.parametrize("nbytes", [-1, -(1 << 70)])
def test_negative_size_is_value_error(nbytes):
    with pytest.raises(ValueError, match="negative"):
        cowbuf.Region(nbytes)


def test_zero_size_is_value_error():
    with pytest.raises(ValueError):
        cowbuf.Region(0)


@pytest.mark.parametrize("nbytes", [1 << 50, 1 << 62, 1 << 63, 1 << 70])
def test_size_beyond_the_address_space_is_memory_error(nbytes):
    with pytest.raises(MemoryError):
        cowbuf.Region(nbytes)


@pytest.mark.parametrize("nbytes", [1.0, "10", None, b"\x10", [10]])
def test_non_integer_size_is_type_error(nbytes):
    with pytest.raises(TypeError):
        cowbuf.Region(nbytes)


def test_populate_is_keyword_only():
    with pytest.raises(TypeError):
        cowbuf.Region(PAGE, True)


@linux_only
def test_populate_commits_the_memory_up_front():
    n = 64 * PAGE
    lazy = cowbuf.Region(n)
    eager = cowbuf.Region(n, populate=True)
    # untouched shared memory costs nothing until touched; populated memory is there
    assert mapping_of(address(lazy))["Rss"] == 0
    assert mapping_of(address(eager))["Rss"] == n
    assert bytes(memoryview(eager)) == bytes(n)


def test_region_cannot_be_initialised_twice():
    r = cowbuf.Region(16)
    memoryview(r)[0] = 1
    with pytest.raises(TypeError):
        r.__init__(32)
    assert r.nbytes == 16 and memoryview(r)[0] == 1


def test_region_made_without_init_is_closed():
    r = cowbuf.Region.__new__(cowbuf.Region)
    assert r.closed
    with pytest.raises(ValueError):
        _ = r.nbytes
    with pytest.raises(ValueError):
        memoryview(r)
    with pytest.raises(ValueError):
        r.view("q")
    with pytest.raises(ValueError):
        r.freeze()
    r.close()


# -- backing store -----------------------------------------------------------------

@linux_only
def test_region_is_a_sealed_memfd_without_a_name():
    r = cowbuf.Region(4 * PAGE)
    entry = mapping_of(address(r))
    # a memfd: no name in any filesystem, and shared
    assert entry["path"].startswith("/memfd:cowbuf")
    assert entry["perms"] == "rw-s"
    fd = fd_of_inode(entry["inode"])
    seals = fcntl.fcntl(fd, F_GET_SEALS)
    assert seals & F_SEAL_SHRINK and seals & F_SEAL_GROW
    # nobody can truncate it under a reader (which would SIGBUS every reader)
    with pytest.raises(PermissionError):
        os.ftruncate(fd, 0)
    with pytest.raises(PermissionError):
        os.ftruncate(fd, 8 * PAGE)
    assert os.fstat(fd).st_size == 4 * PAGE
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


@linux_only
def test_dropped_regions_leave_no_fd_or_mapping_behind():
    # (cowbuf's mappings, not all of them: the allocator of Python objects maps and
    # unmaps as it likes, and adjacent anonymous mappings merge)
    gc.collect()
    fds, maps = open_fds(), len(cowbuf_mappings())
    regions = [cowbuf.Region(2 * PAGE) for _ in range(100)]
    assert len(cowbuf_mappings()) >= maps + 100
    arrays = [r.view("q") for r in regions[::2]]
    for r in regions[1::2]:
        r.close()
    del regions
    gc.collect()
    # the regions still viewed by an Array stay mapped
    assert len(cowbuf_mappings()) >= maps + 50
    del arrays
    gc.collect()
    assert open_fds() == fds
    assert len(cowbuf_mappings()) == maps


# -- buffer protocol ---------------------------------------------------------------

def test_buffer_is_bytes():
    r = cowbuf.Region(100)
    with memoryview(r) as m:
        assert m.format == "B"
        assert m.itemsize == 1
        assert m.ndim == 1
        assert m.shape == (100,)
        assert m.strides == (1,)
        assert not m.readonly
        assert m.c_contiguous
        assert m.obj is r
        m[10:13] = b"abc"
    assert bytes(memoryview(r)[10:13]) == b"abc"
    assert r.view("B")[10:13].tolist() == list(b"abc")


def test_buffer_writes_are_seen_by_views():
    r = cowbuf.Region(64)
    a = r.view("q")
    with memoryview(r) as m:
        m.cast("q")[3] = -5
    assert a[3] == -5
    a[4] = 1 << 40
    assert int.from_bytes(bytes(memoryview(r)[32:40]), sys.byteorder) == 1 << 40


def test_repr():
    r = cowbuf.Region(1234)
    assert "1234" in repr(r) and "Region" in repr(r)
    r.freeze()
    assert "frozen" in repr(r)
    r.close()
    assert "closed" in repr(r)


# -- close -------------------------------------------------------------------------

def test_close_is_idempotent():
    r = cowbuf.Region(10)
    r.close()
    assert r.closed
    r.close()
    assert r.closed


def test_context_manager_closes():
    with cowbuf.Region(10) as r:
        assert isinstance(r, cowbuf.Region)
        assert not r.closed
    assert r.closed


def test_context_manager_closes_on_error():
    with pytest.raises(KeyError):
        with cowbuf.Region(10) as r:
            raise KeyError
    assert r.closed


def test_entering_a_closed_region_is_value_error():
    r = cowbuf.Region(10)
    r.close()
    with pytest.raises(ValueError):
        with r:
            pass


def test_every_region_operation_after_close_is_value_error():
    r = cowbuf.Region(PAGE)
    r.close()
    assert r.closed
    for op in (lambda: r.nbytes, lambda: memoryview(r), lambda: bytes(r),
               lambda: r.view("q"), lambda: r.counter(0), r.freeze,
               lambda: r.__enter__(), lambda: r.frozen):
        with pytest.raises(ValueError, match="closed region"):
            op()


@pytest.mark.parametrize("nbytes", [64, 4 * PAGE])
def test_close_with_live_buffer_is_refused_and_memory_stays_valid(nbytes):
    r = cowbuf.Region(nbytes)
    m = memoryview(r)
    with pytest.raises(BufferError):
        r.close()
    assert not r.closed
    m[nbytes - 1] = 42
    assert m[nbytes - 1] == 42 and r.view("B")[-1] == 42
    m.release()
    r.close()
    assert r.closed


def test_close_with_live_array_buffer_is_refused():
    r = cowbuf.Region(4 * PAGE)
    a = r.view("q")
    m = memoryview(a[::3])
    n = np.asarray(a)
    with pytest.raises(BufferError):
        r.close()
    m.release()
    with pytest.raises(BufferError):
        r.close()
    n[5] = 55
    assert a[5] == 55
    del n
    r.close()
    with pytest.raises(ValueError):
        a[5]


def test_close_with_arrays_but_no_buffers_is_allowed():
    r = cowbuf.Region(4 * PAGE)
    a = r.view("q")
    b = a[::2]
    r.close()
    for view in (a, b):
        with pytest.raises(ValueError):
            view[0]
        with pytest.raises(ValueError):
            len(view)


# -- views keep regions alive --------------------------------------------------------

def test_array_keeps_a_dropped_region_mapped():
    a = cowbuf.Region(8 * PAGE).view("q")
    gc.collect()
    a[:] = range(len(a))
    assert a.sum() == sum(range(len(a)))
    assert a.region.nbytes == 8 * PAGE


def test_buffer_keeps_a_dropped_region_mapped():
    m = memoryview(cowbuf.Region(8 * PAGE))
    gc.collect()
    m[-1] = 9
    assert m[-1] == 9 and m.nbytes == 8 * PAGE


# -- view() ------------------------------------------------------------------------

@pytest.mark.parametrize("typecode", cowbuf.TYPECODES)
def test_view_default_covers_the_whole_items(typecode):
    r = cowbuf.Region(1001)
    a = r.view(typecode)
    assert a.typecode == typecode
    assert len(a) == 1001 // a.itemsize
    assert a.region is r
    assert a.tolist() == [0] * len(a)


def test_view_with_offset_and_length():
    r = cowbuf.Region(128)
    a = r.view("i", 8, 4)
    a[:] = [1, 2, 3, 4]
    assert r.view("i").tolist()[:8] == [0, 0, 1, 2, 3, 4, 0, 0]
    assert len(r.view("q", 128)) == 0
    assert len(r.view("q", 120)) == 1
    assert len(r.view("q", length=16)) == 16
    assert r.view("B", np.int64(3), np.int64(2)).tolist() == [0, 0]


@pytest.mark.parametrize("typecode", ["x", "", "qq", "u", "w", "Q "])
def test_view_unknown_typecode_is_value_error(typecode):
    with pytest.raises(ValueError, match="typecode"):
        cowbuf.Region(64).view(typecode)


@pytest.mark.parametrize("typecode", [b"q", None, 113])
def test_view_non_str_typecode_is_type_error(typecode):
    with pytest.raises(TypeError):
        cowbuf.Region(64).view(typecode)


@pytest.mark.parametrize("offset, length", [
    (-8, None), (72, None), (4, None), (1, None), (0, -1), (0, 9), (8, 8), (64, 1),
    (1 << 70, None), (-(1 << 70), None), (0, 1 << 70), (0, -(1 << 70)),
])
def test_view_outside_the_region_is_value_error(offset, length):
    r = cowbuf.Region(64)
    with pytest.raises(ValueError):
        r.view("q", offset, length)


@pytest.mark.parametrize("offset, length", [(1.0, None), ("8", None), (0, 2.0)])
def test_view_non_integer_geometry_is_type_error(offset, length):
    with pytest.raises(TypeError):
        cowbuf.Region(64).view("q", offset, length)


def test_view_whose_index_closes_the_region_is_value_error():
    r = cowbuf.Region(64)
    with pytest.raises(ValueError):
        r.view("q", Sneaky(0, r.close))
    r = cowbuf.Region(64)
    with pytest.raises(ValueError):
        r.view("q", 0, Sneaky(2, r.close))


# -- freeze ------------------------------------------------------------------------

@pytest.mark.parametrize("nbytes", [64, 4 * PAGE])
def test_freeze_makes_every_write_fail(nbytes):
    r = cowbuf.Region(nbytes)
    a = r.view("q")
    a[0] = 5
    r.freeze()
    assert r.frozen and a.readonly
    with pytest.raises(TypeError):
        a[0] = 6
    with pytest.raises(TypeError):
        a.fill(1)
    with pytest.raises(TypeError):
        r.view("B")[0] = 1
    m = memoryview(r)
    assert m.readonly
    with pytest.raises(TypeError):
        m[0] = 1
    n = np.frombuffer(r, dtype=np.uint8)
    assert not n.flags.writeable
    with pytest.raises(ValueError):  # numpy's word for a read-only array
        n[0] = 1
    del n
    assert a[0] == 5
    m.release()
    r.freeze()  # idempotent
    assert r.frozen


def test_freeze_with_a_writable_buffer_is_refused():
    r = cowbuf.Region(4 * PAGE)
    m = memoryview(r)
    with pytest.raises(BufferError):
        r.freeze()
    assert not r.frozen
    m[0] = 1  # still writable
    n = np.asarray(r.view("q")[::2])
    m.release()
    with pytest.raises(BufferError):
        r.freeze()
    n[0] = 2
    del n
    r.freeze()
    assert r.frozen
    assert r.view("B")[0] == 2


def test_freeze_with_read_only_buffers_is_allowed():
    r = cowbuf.Region(4 * PAGE)
    a = r.view("q")
    a[1] = 11
    ro = memoryview(a.toreadonly())
    r.freeze()
    assert ro[1] == 11
    ro.release()


@linux_only
def test_freeze_protects_the_pages_and_seals_the_memfd():
    r = cowbuf.Region(4 * PAGE)
    r.freeze()
    entry = mapping_of(address(r))
    assert entry["perms"] == "r--s"
    fd = fd_of_inode(entry["inode"])
    assert fcntl.fcntl(fd, F_GET_SEALS) & F_SEAL_FUTURE_WRITE
    # no process can map it writable from now on
    with pytest.raises(PermissionError):
        mmap.mmap(fd, 4 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def test_closed_region_cannot_be_frozen():
    r = cowbuf.Region(10)
    r.close()
    with pytest.raises(ValueError):
        r.freeze()


# -- owners outlive their buffers ---------------------------------------------------

@pytest.mark.parametrize("owner", ["region", "array", "array-slice", "ctypes"])
def test_buffer_released_from_cyclic_garbage_finds_its_owner_whole(owner):
    # The collector clears the objects of a garbage cycle before their buffers are
    # released; a memoryview (or ctypes object) of cowbuf memory in such a cycle must
    # then release its export on an owner that the collector left whole (0.1.0 wrote
    # through None and crashed). The word 48 bytes past None is where 0.1.0 wrote.
    run_python(f"""
        import ctypes, gc
        import cowbuf

        owner = {owner!r}
        word = ctypes.c_ssize_t.from_address(id(None) + 48)
        before = word.value
        for round in range(50):
            gc.disable()
            if owner == "region":
                obj = cowbuf.Region(4096)
            elif owner == "array":
                obj = cowbuf.array("q", 1000)
            elif owner == "array-slice":
                obj = cowbuf.array("q", 100_000)[10:20:3]
            else:
                obj = cowbuf.array("B", 64)
            view = (ctypes.c_char * 8).from_buffer(obj) if owner == "ctypes" else memoryview(obj)
            cycle = [view, obj]
            cycle.append(cycle)
            del obj, view, cycle
            gc.collect()
            gc.enable()
        assert word.value == before, "the interpreter's memory was written"
        print("ok")
    """)


def test_init_is_refused_once_the_region_is_attached_even_from_its_own_size():
    # The size's __index__ runs Python code in the middle of Region.__init__: a call
    # of __init__ from there must not let the outer call attach a second mapping
    # under the Arrays made on the first.
    r = cowbuf.Region.__new__(cowbuf.Region)
    views = []

    def reenter():
        r.__init__(1 << 24)
        views.append(r.view("B"))

    with pytest.raises(TypeError, match="only be called once"):
        r.__init__(Sneaky(4096, reenter))
    assert r.nbytes == 1 << 24 == len(views[0])
    views[0][(1 << 24) - 1] = 7  # the whole array is backed
    assert memoryview(r)[-1] == 7
    with pytest.raises(TypeError, match="only be called once"):
        r.__init__(4096)


def test_writes_racing_freeze_from_another_thread_raise_and_never_fault():
    # freeze() drops the GIL around mprotect: a write from another thread in that
    # window must already see the region frozen (TypeError), never store into memory
    # that has just become read-only (0.1.0: SIGSEGV).
    done = run_python("""
        import threading
        import cowbuf

        current = cowbuf.array("q", 1 << 20)
        stop = False
        refused = 0

        def writer():
            global refused
            while not stop:
                a = current
                writes = (lambda: a.__setitem__(0, 1), lambda: a.fill(1),
                          lambda: a.atomic_add(0, 1), lambda: a.__setitem__(slice(0, 2), [1, 2]))
                for write in writes:
                    try:
                        write()
                    except TypeError:
                        refused += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            for i in range(2000):
                current = cowbuf.array("q", 1 << 20)  # 8 MiB: mprotected when frozen
                current[1] = 0
                try:
                    current.freeze()
                except BufferError:
                    pass  # refused while a GIL-free fill() runs: as documented
        finally:
            stop = True
            t.join()
        print("refused", refused)
    """, timeout=240)
    assert int(done.stdout.split()[-1]) > 0


@linux_only
@pytest.mark.parametrize("make", [
    lambda: cowbuf.array("q", [1, 2, 3, 4]), lambda: cowbuf.Counter(5),
    lambda: cowbuf.Counter(5, padded=True), lambda: cowbuf.array("q", 1000),
], ids=["small-array", "counter", "padded-counter", "large-array"])
def test_frozen_memory_cannot_be_written_through_its_fd(make):
    # Small arrays and counters are carved from arenas that stay writable: freezing
    # one must still keep every process of the user from writing it through
    # /proc/PID/fd (0.1.0: only regions with a mapping of their own were sealed).
    from cowbuf import _core

    obj = make()
    region = obj.region
    before = bytes(memoryview(region))
    region.freeze()
    mapping = _core._region_state(region)[0]
    with pytest.raises(PermissionError):
        fd = os.open(f"/proc/{os.getpid()}/fd/{mapping.fd}", os.O_RDWR)
        try:
            mmap.mmap(fd, mapping.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
    with pytest.raises(PermissionError):
        os.pwrite(mapping.fd, b"x" * 8, 0)
    assert bytes(memoryview(region)) == before
    assert obj.readonly if hasattr(obj, "readonly") else region.frozen


@pytest.mark.parametrize("sizes", [(0, 800), (0, 0), (800, 0, 16)])
def test_every_region_carved_from_an_arena_comes_back_as_itself(sizes):
    # Regions of an arena are found again by their offset: two of them (an empty one
    # and the next) must never share one.
    import pickle
    from multiprocessing.reduction import ForkingPickler

    arrays = [cowbuf.array("q", n // 8) for n in sizes]
    for a in arrays:
        back = pickle.loads(ForkingPickler.dumps(a))
        assert back.region is a.region and len(back) == len(a)
