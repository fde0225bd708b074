# cython: language_level=3, embedsignature=True
"""cowbuf's core: shared memory regions, typed views and atomic counters, in C.

Memory leaves this module only through the buffer protocol of the object that owns it
(a Region, or an Array holding its Region), and every export is counted: a region
with live exports can be neither closed nor frozen, so no pointer handed out can
dangle or be written through after a freeze. Methods that run Python code (an
argument's __index__, __float__ or buffer) check the region again afterwards, since
that code may have closed it.

The module is assembled from one part per theme, in dependency order; the cdef
classes are declared in _core.pxd and every C declaration is in _c.pxd.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_F_CONTIGUOUS, PyBUF_FORMAT,
    PyBUF_ND, PyBUF_RECORDS_RO, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_IsContiguous,
    PyBuffer_Release, PyBuffer_ToContiguous, PyObject_CheckBuffer, PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from cpython.float cimport PyFloat_AsDouble
from cpython.long cimport (
    PyLong_AsLongLong, PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLong,
    PyLong_Check, PyLong_CheckExact,
    PyLong_FromLongLong, PyLong_FromUnsignedLongLong,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.number cimport PyIndex_Check, PyNumber_AsSsize_t, PyNumber_Index
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.slice cimport PySlice_AdjustIndices, PySlice_Check, PySlice_Unpack
from libc.errno cimport EACCES, EINTR, ENOMEM, EPERM, errno
from libc.limits cimport (
    INT_MAX, INT_MIN, LLONG_MAX, LLONG_MIN, LONG_MAX, LONG_MIN, SCHAR_MAX, SCHAR_MIN,
    SHRT_MAX, SHRT_MIN, UCHAR_MAX, UINT_MAX, ULLONG_MAX, ULONG_MAX, USHRT_MAX,
)
from libc.math cimport INFINITY, NAN
from libc.stdint cimport UINT32_MAX, int64_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memmove
from posix.mman cimport munmap
from posix.unistd cimport close

from cowbuf._c cimport *

import os
import pickle
import sys
import weakref
from multiprocessing.reduction import ForkingPickler
from pickle import PickleBuffer
from queue import Empty, Full
from threading import BrokenBarrierError
from types import GenericAlias

from cowbuf._memory import check_commit

include "_constants.pxi"
include "_typecodes.pxi"
include "_kernels.pxi"
include "_kernels_num.pxi"
include "_mapping.pxi"
include "_region.pxi"
include "_outbox.pxi"
include "_wait.pxi"
include "_array.pxi"
include "_array_iter.pxi"
include "_array_nd.pxi"
include "_array_ops.pxi"
include "_add_at.pxi"
include "_construct.pxi"
include "_counter.pxi"
include "_arrow.pxi"
include "_strarray.pxi"
include "_frozendict.pxi"
include "_frozendict_build.pxi"
include "_lock.pxi"
include "_semaphore.pxi"
include "_condition.pxi"
include "_barrier.pxi"
include "_queue.pxi"
include "_pickling.pxi"
