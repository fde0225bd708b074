# Queue: messages between processes through a ring of shared memory (_queue.h).
#
# Producers write records under the put lock and publish them with one store of the
# put cursor; consumers copy them out under the get lock and free their room with one
# store of the get cursor. Both locks are robust (_lock.pxi). A producer that dies in
# put() never moved the put cursor: its half-written record is not there for anyone,
# and the next producer writes over it. A consumer that dies in get() either had not
# moved the get cursor (the message goes to the next consumer) or had (the message
# goes with it): a dying consumer loses at most the message it was taking.
#
# Messages are pickled with multiprocessing's pickler, so cowbuf objects inside them
# travel by reference. One that would take more than half the ring goes out of band:
# its bytes go into a Region of their own, and the ring carries the reference.
#
# A consumer with nothing to read (a producer with no room) spins a while, then sets
# get_waiting (put_waiting) and sleeps on the low half of the other side's cursor; the
# other side's next store wakes them all, once. A sleeper that dies leaves the flag
# set, which costs the next store one wake-up, once.

cdef Py_ssize_t _QUEUE_MIN_BYTES = 4096
cdef Py_ssize_t _QUEUE_DEFAULT_BYTES = 1 << 20
# How long a non-blocking put or get waits for another process's put or get to finish
# (the locks are held for the copy of a record: microseconds).
cdef double _NOWAIT_LOCK_SECONDS = 0.001


@cython.final
cdef class _Sink:
    """The file a Queue's pickler writes to: it keeps what it is given (the C pickler
    writes a small pickle in one piece, and the piece is the message's bytes)."""

    def __cinit__(self):
        self._parts = []

    def write(self, data):
        self._parts.append(data)
        return len(data)

    cdef bytes take(self):
        cdef list parts = self._parts
        self._parts = []
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]
        return b"".join(parts)  # a big pickle: frames, and buffers it did not copy


cdef int _check_timeout(bint block, object timeout) except -1:
    if block and timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return 0


@cython.no_gc
@cython.final
@cython.binding(False)
cdef class Queue:
    """Queue(maxsize_bytes=1048576, maxsize=0)

    A multi-producer, multi-consumer queue of messages between processes (forked, or
    sent through multiprocessing), in a ring of `maxsize_bytes` of shared memory
    (rounded up to a power of two, 4 KiB to 64 MiB), with the API of
    multiprocessing.Queue: put(obj, block=True, timeout=None), get(block=True,
    timeout=None), put_nowait, get_nowait, qsize, empty, full, close, raising
    queue.Full and queue.Empty; and put_many, get_many, put_bytes, get_bytes.
    `maxsize` > 0 bounds the number of messages.

    Messages are pickled with multiprocessing's pickler: cowbuf objects inside them
    travel by reference, so a message that carries an 80 MB Array costs what a small
    one does. A message larger than half the ring goes out of band, in a region of its
    own (received, like any cowbuf object sent by reference, while its sender lives).

    No process can hang the others by dying: a producer killed in put() leaves nothing
    half written to read, and a consumer killed in get() loses at most the message it
    was taking. Every message is delivered once, in the order each producer put them.
    A plain pickle of a Queue is a TypeError."""

    def __cinit__(self):
        self._region = _NO_REGION
        self._s = NULL

    def __init__(self, maxsize_bytes=_QUEUE_DEFAULT_BYTES, maxsize=0):
        cdef Py_ssize_t n = PyNumber_AsSsize_t(maxsize_bytes, OverflowError)
        cdef Py_ssize_t limit = PyNumber_AsSsize_t(maxsize, OverflowError)
        cdef Py_ssize_t capacity = _QUEUE_MIN_BYTES
        if self._s != NULL:
            raise TypeError("Queue.__init__() may only be called once")
        if not _QUEUE_MIN_BYTES <= n <= COWBUF_QUEUE_MAX_BYTES:
            raise ValueError(f"maxsize_bytes must be {_QUEUE_MIN_BYTES}.."
                             f"{COWBUF_QUEUE_MAX_BYTES}, not {n}")
        while capacity < n:
            capacity *= 2
        self._region = _new_state(sizeof(cowbuf_queue_state) + capacity, COWBUF_KIND_QUEUE)
        self._attach()
        self._s.capacity = <uint32_t>capacity
        self._s.maxsize = <uint32_t>min(max(limit, 0), UINT32_MAX)
        self._capacity = capacity

    cdef int _attach(self) except -1:
        self._s = <cowbuf_queue_state*>self._region._addr
        self._ring = self._region._addr + sizeof(cowbuf_queue_state)
        self._capacity = self._s.capacity
        self._sink = _Sink()
        self._pickler = ForkingPickler(self._sink, pickle.HIGHEST_PROTOCOL)
        return 0

    cdef cowbuf_queue_state* _state(self) except NULL:
        if self._s == NULL:
            _raise_unmade(self)
        if self._closed:
            raise ValueError("Queue is closed")
        return self._s

    # -- pickling the messages

    cdef bytes _dumps(self, object obj):
        if self._pickling:  # another thread's, or obj's own reducer, is pickling
            return bytes(ForkingPickler.dumps(obj, pickle.HIGHEST_PROTOCOL))
        self._pickling = True
        try:
            self._pickler.dump(obj)
            return self._sink.take()
        finally:
            # the memo would keep the objects of the message alive until the next
            self._pickler.clear_memo()
            self._pickling = False

    cdef object _record(self, object data, int kind):
        """(bytes-like, kind) of a message: out of band when it would take more than
        half the ring."""
        cdef Py_ssize_t n = len(data)
        cdef Region far
        if cowbuf_record_bytes(n) <= self._capacity // 2:
            return (data, kind)
        far = _allocate(n, False)
        memoryview(far)[:] = memoryview(data).cast("B")
        return (self._dumps(far), COWBUF_RECORD_FAR_PICKLE if kind == COWBUF_RECORD_PICKLE
                else COWBUF_RECORD_FAR_BYTES)

    cdef object _decode(self, int kind, bytes data, bint raw):
        if kind == COWBUF_RECORD_FAR_PICKLE or kind == COWBUF_RECORD_FAR_BYTES:
            far = pickle.loads(data)
            if not isinstance(far, Region):
                raise ValueError("bad queue record: not a reference to a region")
            data = memoryview(far).tobytes()
            (<Region>far).close()
        if raw or kind == COWBUF_RECORD_BYTES or kind == COWBUF_RECORD_FAR_BYTES:
            return data
        return pickle.loads(data)

    # -- the ring

    cdef int64_t _deadline_for(self, bint block, object timeout) except? -2:
        if not block:
            return _deadline(_NOWAIT_LOCK_SECONDS)
        return _deadline(_seconds(timeout))

    cdef Py_ssize_t _write(self, list records, int64_t deadline, bint block) except -1:
        """Write `records` ((bytes-like, kind) each) in order, waiting for room until
        the deadline; return how many were written."""
        cdef cowbuf_queue_state* s = self._s
        cdef Py_ssize_t done = 0, total = len(records)
        cdef uint64_t put, got, used, count, pos, start, written
        cdef uint32_t seen
        while True:
            if not _lock_take(&s.put_lock, deadline):
                return done
            try:
                put = cowbuf_load_u64(&s.put_cursor)
                got = cowbuf_load_u64(&s.get_cursor)
                seen = <uint32_t>got
                used = cowbuf_cursor_bytes(put, got)
                count = cowbuf_cursor_count(put, got)
                start = pos = cowbuf_cursor_units(put) * 8
                written = 0
                while done < total:
                    data, kind = records[done]
                    if not self._fits(len(data), used + (pos - start), count + written):
                        break
                    pos += self._write_record(pos, data, kind)
                    written += 1
                    done += 1
                if written:
                    # publish: one store makes the records whole and visible
                    cowbuf_store_u64(&s.put_cursor, cowbuf_cursor(
                        cowbuf_cursor_messages(put) + written,
                        cowbuf_cursor_units(put) + (pos - start) // 8))
            finally:
                _lock_give(&s.put_lock)
            if pos != start and cowbuf_load_u32(&s.get_waiting) and cowbuf_exchange_u32(
                    &s.get_waiting, 0):
                cowbuf_wake(cowbuf_low_half(&s.put_cursor), INT_MAX)
            if done == total:
                return done
            if pos == start:
                # no room even for the first record left: wait for a consumer
                if _expired(deadline) or not block:
                    return done
                if not _spin_while(cowbuf_low_half(&s.get_cursor), seen):
                    cowbuf_store_u32(&s.put_waiting, 1)
                    _sleep(cowbuf_low_half(&s.get_cursor), seen, deadline, SLICE_NS)

    cdef bint _fits(self, Py_ssize_t length, uint64_t used, uint64_t count) noexcept:
        cdef uint32_t maxsize = self._s.maxsize
        return (used + cowbuf_record_bytes(length) <= self._capacity
                and (maxsize == 0 or count < maxsize))

    cdef uint64_t _write_record(self, uint64_t pos, object data, int kind) except 0:
        """Copy one record to the ring at byte `pos`; the bytes it takes."""
        cdef Py_buffer view
        cdef uint32_t header[2]
        cdef uint64_t n
        PyObject_GetBuffer(data, &view, PyBUF_ANY_CONTIGUOUS)
        try:
            n = <uint64_t>view.len
            header[0] = <uint32_t>n
            header[1] = <uint32_t>kind
            cowbuf_ring_write(self._ring, self._capacity, pos, header, COWBUF_RECORD_HEADER)
            if n >= <uint64_t>NOGIL_BYTES:
                with nogil:
                    cowbuf_ring_write(self._ring, self._capacity, pos + COWBUF_RECORD_HEADER,
                                      view.buf, n)
            else:
                cowbuf_ring_write(self._ring, self._capacity, pos + COWBUF_RECORD_HEADER,
                                  view.buf, n)
        finally:
            PyBuffer_Release(&view)
        return cowbuf_record_bytes(n)

    cdef list _read(self, Py_ssize_t max_items, int64_t deadline, bint block):
        """Copy out up to `max_items` records ((kind, bytes) each), waiting for the
        first until the deadline; raise queue.Empty if none came."""
        cdef cowbuf_queue_state* s = self._s
        cdef list out = []
        cdef uint64_t put, got, available, pos, start, length, taken
        cdef uint32_t header[2]
        cdef uint32_t seen
        cdef bytes data
        cdef char* into
        while True:
            if not _lock_take(&s.get_lock, deadline):
                raise Empty
            try:
                got = cowbuf_load_u64(&s.get_cursor)
                put = cowbuf_load_u64(&s.put_cursor)
                seen = <uint32_t>put
                available = cowbuf_cursor_bytes(put, got)
                taken = min(cowbuf_cursor_count(put, got), <uint64_t>max_items)
                start = pos = cowbuf_cursor_units(got) * 8
                for _ in range(taken):
                    cowbuf_ring_read(self._ring, self._capacity, pos, header,
                                     COWBUF_RECORD_HEADER)
                    length = header[0]
                    if cowbuf_record_bytes(length) > available - (pos - start):
                        raise ValueError("corrupt queue record")  # nothing is moved
                    data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
                    into = PyBytes_AS_STRING(data)
                    if length >= <uint64_t>NOGIL_BYTES:
                        with nogil:
                            cowbuf_ring_read(self._ring, self._capacity,
                                             pos + COWBUF_RECORD_HEADER, into, length)
                    else:
                        cowbuf_ring_read(self._ring, self._capacity, pos + COWBUF_RECORD_HEADER,
                                         into, length)
                    out.append((header[1], data))
                    pos += cowbuf_record_bytes(length)
                if taken:
                    cowbuf_store_u64(&s.get_cursor, cowbuf_cursor(
                        cowbuf_cursor_messages(got) + taken,
                        cowbuf_cursor_units(got) + (pos - start) // 8))
            finally:
                _lock_give(&s.get_lock)
            if taken:
                if cowbuf_load_u32(&s.put_waiting) and cowbuf_exchange_u32(&s.put_waiting, 0):
                    cowbuf_wake(cowbuf_low_half(&s.get_cursor), INT_MAX)
                return out
            if _expired(deadline) or not block:
                raise Empty
            if not _spin_while(cowbuf_low_half(&s.put_cursor), seen):
                cowbuf_store_u32(&s.get_waiting, 1)
                _sleep(cowbuf_low_half(&s.put_cursor), seen, deadline, SLICE_NS)

    # -- the API

    def put(self, obj, bint block=True, timeout=None):
        """Put `obj` (pickled with multiprocessing's pickler) at the end of the queue,
        waiting for room (for `timeout` seconds at most) if the queue is full; raise
        queue.Full if it stays full, or at once when `block` is false."""
        self._state()
        _check_timeout(block, timeout)
        record = self._record(self._dumps(obj), COWBUF_RECORD_PICKLE)
        if not self._write([record], self._deadline_for(block, timeout), block):
            raise Full

    def put_nowait(self, obj):
        """put(obj, block=False)."""
        self.put(obj, False)

    def put_bytes(self, data, bint block=True, timeout=None):
        """Put the bytes of a bytes-like object, as they are (no pickle): get() and
        get_bytes() return them as bytes."""
        self._state()
        _check_timeout(block, timeout)
        record = self._record(memoryview(data).cast("B"), COWBUF_RECORD_BYTES)
        if not self._write([record], self._deadline_for(block, timeout), block):
            raise Full

    def put_many(self, items, bint block=True, timeout=None):
        """Put every item of `items`, in order, taking the lock once for as many as
        fit. If the queue stays full, raise queue.Full; the items before the first
        that did not fit are in the queue (the exception says how many)."""
        self._state()
        _check_timeout(block, timeout)
        records = [self._record(self._dumps(item), COWBUF_RECORD_PICKLE) for item in items]
        cdef Py_ssize_t done = self._write(records, self._deadline_for(block, timeout), block)
        if done < len(records):
            raise Full(f"{done} of the {len(records)} items were put")

    def get(self, bint block=True, timeout=None):
        """Remove and return the first message, waiting for one (for `timeout`
        seconds at most) if the queue is empty; raise queue.Empty if none comes, or
        at once when `block` is false."""
        self._state()
        _check_timeout(block, timeout)
        kind, data = self._read(1, self._deadline_for(block, timeout), block)[0]
        return self._decode(kind, data, False)

    def get_nowait(self):
        """get(block=False)."""
        return self.get(False)

    def get_bytes(self, bint block=True, timeout=None):
        """Remove the first message and return its bytes: what put_bytes() put, or
        the pickle of what put() put."""
        self._state()
        _check_timeout(block, timeout)
        kind, data = self._read(1, self._deadline_for(block, timeout), block)[0]
        return self._decode(kind, data, True)

    def get_many(self, max_items=1000, bint block=True, timeout=None):
        """Remove and return up to `max_items` messages at once (a list), waiting for
        the first as get() does."""
        cdef Py_ssize_t n = PyNumber_AsSsize_t(max_items, OverflowError)
        self._state()
        _check_timeout(block, timeout)
        if n < 1:
            raise ValueError(f"max_items must be at least 1, not {n}")
        return [self._decode(kind, data, False)
                for kind, data in self._read(n, self._deadline_for(block, timeout), block)]

    def qsize(self):
        """The number of messages in the queue (a snapshot)."""
        cdef cowbuf_queue_state* s = self._state()
        cdef uint64_t got = cowbuf_load_u64(&s.get_cursor)
        return cowbuf_cursor_count(cowbuf_load_u64(&s.put_cursor), got)

    def empty(self):
        """Whether the queue holds no message (a snapshot)."""
        return self.qsize() == 0

    def full(self):
        """Whether a put() of the smallest message would have to wait (a snapshot)."""
        cdef cowbuf_queue_state* s = self._state()
        cdef uint64_t got = cowbuf_load_u64(&s.get_cursor)
        cdef uint64_t put = cowbuf_load_u64(&s.put_cursor)
        return not self._fits(0, cowbuf_cursor_bytes(put, got), cowbuf_cursor_count(put, got))

    @property
    def maxsize(self):
        """The most messages the queue holds (0: no limit but its bytes)."""
        if self._s == NULL:
            _raise_unmade(self)
        return self._s.maxsize

    @property
    def maxsize_bytes(self):
        """The bytes of the ring."""
        if self._s == NULL:
            _raise_unmade(self)
        return self._capacity

    def close(self):
        """Stop using the queue in this process: put() and get() raise ValueError from
        now on. The queue goes on for the other processes."""
        self._closed = True

    def join_thread(self):
        """Nothing to do (multiprocessing's API: cowbuf's Queue has no feeder thread)."""

    def cancel_join_thread(self):
        """Nothing to do (multiprocessing's API: cowbuf's Queue has no feeder thread)."""

    def __reduce_ex__(self, protocol):
        _no_pickle(self)

    def __repr__(self):
        if self._s == NULL:
            return "<cowbuf.Queue uninitialized>"
        return (f"<cowbuf.Queue maxsize_bytes={self._capacity}"
                f"{f' maxsize={self._s.maxsize}' if self._s.maxsize else ''}"
                f"{' closed' if self._closed else ''}>")


def _queue_on(Region region not None):
    cdef Queue q = Queue.__new__(Queue)
    cdef cowbuf_queue_state* s = <cowbuf_queue_state*>_state_on(
        region, sizeof(cowbuf_queue_state), COWBUF_KIND_QUEUE, "Queue")
    cdef uint64_t capacity = s.capacity
    if (capacity < <uint64_t>_QUEUE_MIN_BYTES or capacity > COWBUF_QUEUE_MAX_BYTES
            or capacity & (capacity - 1)
            or <uint64_t>region._nbytes < sizeof(cowbuf_queue_state) + capacity):
        raise ValueError("bad reference to a cowbuf.Queue: the region does not fit")
    q._region = region
    q._attach()
    return q


def _share_queue(Queue q not None):
    if q._s == NULL:
        _raise_unmade(q)
    return _queue_on, (q._region,)
