# Barrier shared by processes, broken by the death of a member.
#
# One 64-bit state word: the arrivals of the current round in the low half; the round
# number (31 bits) and COWBUF_BARRIER_BROKEN in the high half, which waiters sleep on. An arrival is
# a compare-and-swap that counts it in; the last one runs the action and moves the
# state to the next round with no arrivals, which wakes the others. Each arrival
# records its process in the arrivals table of the round's parity: the members of the
# round before are those expected in this one, so a waiter whose sleep slice runs out
# breaks the barrier when one of them is gone and has not arrived. (In the first round
# there is no round before: a member that dies before it arrives there is only noticed
# through the timeout.) How each round ended is kept in `ended`, which a waiter reads
# once the round has moved on: completed, or reset.

cdef uint32_t _PARTIES_MAX = 1024


cdef inline uint64_t* _arrivals(cowbuf_barrier_state* s, uint32_t round) noexcept nogil:
    return <uint64_t*>(<char*>s + sizeof(cowbuf_barrier_state)) + (round & 1) * s.parties


cdef inline uint32_t _high(uint64_t state) noexcept nogil:
    return <uint32_t>(state >> 32)


cdef inline uint64_t _next_round(uint32_t round) noexcept nogil:
    """The state of the round after `round`, with no arrivals and not broken."""
    return <uint64_t>((round + 1) & COWBUF_BARRIER_ROUND_MASK) << 32


cdef bint _member_gone(cowbuf_barrier_state* s, uint32_t round) noexcept nogil:
    """Whether a member of the round before `round` is gone without having arrived in
    this one (counting a process once per party it was)."""
    cdef uint64_t* before = _arrivals(s, round + 1)
    cdef uint64_t* now = _arrivals(s, round)
    cdef uint64_t state = cowbuf_load_u64(&s.state)
    cdef uint32_t arrived = <uint32_t>state
    cdef uint32_t i, j, times_before, times_now
    cdef uint64_t member, alive = 0
    if _high(state) != round:
        return False
    for i in range(s.parties):
        member = cowbuf_load_u64(&before[i])
        if member == 0 or member == alive:
            continue
        if not cowbuf_process_gone(member):
            alive = member  # the parties of one process often arrive in a row
            continue
        times_before = times_now = 0
        for j in range(s.parties):
            times_before += cowbuf_load_u64(&before[j]) == member
            times_now += j < arrived and cowbuf_load_u64(&now[j]) == member
        if times_now < times_before:
            return True
    return False


cdef void _break_round(cowbuf_barrier_state* s, uint32_t round) noexcept:
    """Break the barrier in `round`, unless it has moved on."""
    cdef uint64_t state = cowbuf_load_u64(&s.state)
    while _high(state) == round:
        if cowbuf_cas_u64(&s.state, &state, state | (<uint64_t>COWBUF_BARRIER_BROKEN << 32)):
            cowbuf_wake(cowbuf_high_half(&s.state), INT_MAX)
            return


@cython.no_gc_clear
@cython.final
@cython.binding(False)
cdef class Barrier:
    """Barrier(parties, action=None, timeout=None)

    A barrier for `parties` threads or processes (forked, or sent through
    multiprocessing), with the API of threading.Barrier: wait(timeout=None) returns
    an index in range(parties), distinct for each; reset(), abort(), parties,
    n_waiting, broken; and threading.BrokenBarrierError. `action`, if given, is
    called by the last arrival of each round, in its process, before the others are
    released.

    A member that dies breaks the barrier: once a process that passed the round
    before is gone without having arrived, the others get BrokenBarrierError within
    a few milliseconds. So does a wait interrupted by an exception (a signal handler
    that raises). At most 1024 parties."""

    def __cinit__(self):
        self._region = _NO_REGION
        self._s = NULL

    def __init__(self, parties, action=None, timeout=None):
        cdef Py_ssize_t n = PyNumber_AsSsize_t(parties, OverflowError)
        if self._s != NULL:
            raise TypeError("Barrier.__init__() may only be called once")
        if n < 1:
            raise ValueError("parties must be > 0")
        if n > _PARTIES_MAX:
            raise ValueError(f"a cowbuf.Barrier has at most {_PARTIES_MAX} parties, not {n}")
        if action is not None and not callable(action):
            raise TypeError(f"action must be callable, not {type(action).__name__}")
        if timeout is not None:
            _seconds(timeout)
        self._region = _new_state(sizeof(cowbuf_barrier_state) + 2 * n * sizeof(uint64_t),
                                  COWBUF_KIND_BARRIER)
        self._s = <cowbuf_barrier_state*>self._region._addr
        self._s.parties = <uint32_t>n
        self._action = action
        self._timeout = timeout

    cdef cowbuf_barrier_state* _state(self) except NULL:
        if self._s == NULL:
            _raise_unmade(self)
        return self._s

    def wait(self, timeout=None):
        """Wait until all parties have called wait() (for `timeout` seconds at most,
        or the barrier's own timeout). Return the index of this arrival.
        BrokenBarrierError if the barrier is or gets broken, reset, or aborted, or
        the timeout passed (which breaks it)."""
        cdef cowbuf_barrier_state* s = self._state()
        cdef int64_t deadline = _deadline(
            _seconds(self._timeout if timeout is None else timeout))
        cdef uint32_t* word = cowbuf_high_half(&s.state)
        cdef uint64_t state
        cdef uint32_t round, index
        while True:
            state = cowbuf_load_u64(&s.state)
            round = _high(state)
            if round & COWBUF_BARRIER_BROKEN:
                raise BrokenBarrierError
            index = <uint32_t>state
            if index < s.parties:
                if cowbuf_cas_u64(&s.state, &state, state + 1):
                    break
                continue
            # the round is full and its last arrival runs the action: the next one
            if _expired(deadline):
                _break_round(s, round)
                raise BrokenBarrierError
            _sleep(word, round, deadline, SLICE_NS)
        cowbuf_store_u64(&_arrivals(s, round)[index], cowbuf_identity())
        if index + 1 == s.parties:
            self._complete(round, state + 1)
            return index
        try:
            _wait_round(s, round, deadline)
        except BrokenBarrierError:
            raise
        except BaseException:
            # interrupted (a signal handler raised): this party is gone from the round
            _break_round(s, round)
            raise
        return index

    cdef int _complete(self, uint32_t round, uint64_t full) except -1:
        cdef cowbuf_barrier_state* s = self._s
        cdef uint64_t* following = _arrivals(s, round + 1)
        cdef uint32_t i
        if self._action is not None:
            try:
                self._action()
            except BaseException:
                _break_round(s, round)
                raise
        # the table of the next round holds the arrivals of the round before this one
        for i in range(s.parties):
            cowbuf_store_u64(&following[i], 0)
        if not cowbuf_cas_u64(&s.state, &full, _next_round(round)):
            raise BrokenBarrierError  # broken meanwhile
        cowbuf_store_u32(&s.ended[round % COWBUF_BARRIER_ENDED],
                         round | COWBUF_BARRIER_COMPLETED)
        cowbuf_wake(cowbuf_high_half(&s.state), INT_MAX)
        return 0

    def reset(self):
        """Return the barrier to its empty state; the parties waiting in it get
        BrokenBarrierError."""
        cdef cowbuf_barrier_state* s = self._state()
        cdef uint64_t* following
        cdef uint64_t state
        cdef uint32_t round, i
        while True:
            state = cowbuf_load_u64(&s.state)
            round = _high(state) & COWBUF_BARRIER_ROUND_MASK
            _break_round(s, round)
            state = cowbuf_load_u64(&s.state)
            if _high(state) != (round | COWBUF_BARRIER_BROKEN):
                continue  # moved on meanwhile
            following = _arrivals(s, round + 1)
            for i in range(s.parties):
                cowbuf_store_u64(&following[i], 0)
            if cowbuf_cas_u64(&s.state, &state, _next_round(round)):
                cowbuf_store_u32(&s.ended[round % COWBUF_BARRIER_ENDED], round)
                cowbuf_wake(cowbuf_high_half(&s.state), INT_MAX)
                return

    def abort(self):
        """Break the barrier: the parties waiting in it, and those that call wait()
        until reset(), get BrokenBarrierError."""
        cdef cowbuf_barrier_state* s = self._state()
        cdef uint32_t round = _high(cowbuf_load_u64(&s.state))
        while not round & COWBUF_BARRIER_BROKEN:
            _break_round(s, round)
            round = _high(cowbuf_load_u64(&s.state))

    @property
    def parties(self):
        """The number of parties each round waits for."""
        return self._state().parties

    @property
    def n_waiting(self):
        """The number of parties waiting in the current round."""
        cdef uint64_t state = cowbuf_load_u64(&self._state().state)
        if _high(state) & COWBUF_BARRIER_BROKEN or <uint32_t>state >= self._s.parties:
            return 0
        return <uint32_t>state

    @property
    def broken(self):
        """Whether the barrier is broken."""
        return _high(cowbuf_load_u64(&self._state().state)) & COWBUF_BARRIER_BROKEN != 0

    def __reduce_ex__(self, protocol):
        _no_pickle(self)

    def __repr__(self):
        if self._s == NULL:
            return "<cowbuf.Barrier uninitialized>"
        if self.broken:
            return f"<cowbuf.Barrier broken, parties={self._s.parties}>"
        return f"<cowbuf.Barrier waiters={self.n_waiting}/{self._s.parties}>"


cdef int _wait_round(cowbuf_barrier_state* s, uint32_t round, int64_t deadline) except -1:
    """Wait until `round` is over; raise BrokenBarrierError unless it completed."""
    cdef uint32_t* word = cowbuf_high_half(&s.state)
    cdef int64_t slice_ns = FIRST_SLICE_NS
    cdef uint32_t high, ended
    cdef bint gone
    cdef int i
    _spin_while(word, round)
    while True:
        high = cowbuf_load_u32(word)
        if high != round:
            break
        if _expired(deadline):
            _break_round(s, round)
            continue
        if not _sleep(word, round, deadline, slice_ns):
            with nogil:
                gone = _member_gone(s, round)
            if gone:
                _break_round(s, round)
            slice_ns = min(2 * slice_ns, SLICE_NS)
    if high & COWBUF_BARRIER_ROUND_MASK == round:
        raise BrokenBarrierError  # broken in this round
    # The round moved on: the process that moved it writes how it ended right after.
    # (Were it to die in between, or this process to wake 16 rounds later, the round
    # counts as completed.)
    for i in range(100_000):
        ended = cowbuf_load_u32(&s.ended[round % COWBUF_BARRIER_ENDED])
        if ended & COWBUF_BARRIER_ROUND_MASK == round:
            if ended & COWBUF_BARRIER_COMPLETED:
                return 0
            raise BrokenBarrierError  # reset
        cowbuf_cpu_relax()
    return 0


def _barrier_on(Region region not None, action, timeout):
    cdef Barrier barrier = Barrier.__new__(Barrier)
    cdef cowbuf_barrier_state* s = <cowbuf_barrier_state*>_state_on(
        region, sizeof(cowbuf_barrier_state), COWBUF_KIND_BARRIER, "Barrier")
    if not 1 <= s.parties <= _PARTIES_MAX or <size_t>region._nbytes < (
            sizeof(cowbuf_barrier_state) + 2 * s.parties * sizeof(uint64_t)):
        raise ValueError("bad reference to a cowbuf.Barrier: the region does not fit")
    barrier._s = s
    barrier._region = region
    barrier._action = action
    barrier._timeout = timeout
    return barrier


def _share_barrier(Barrier barrier not None):
    barrier._state()
    return _barrier_on, (barrier._region, barrier._action, barrier._timeout)
