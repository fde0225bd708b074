# Every C declaration of cowbuf's own headers, in one place. The headers hold all of
# the core's C: plain functions of C types that set errno and never touch Python
# state (so they run without the GIL), except _cpython.h, which reads Python ints.
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "_shm.h" nogil:
    # Shared memory: create, map, protect (see _shm.h for the platform choices).
    size_t cowbuf_page_size()
    int cowbuf_shm_create(size_t size, int populate)
    void* cowbuf_shm_map(int fd, size_t size, int writable, int populate)
    void cowbuf_shm_seal_writes(int fd)
    int cowbuf_shm_protect_readonly(void* addr, size_t size, int fd)
    int cowbuf_fd_stat(int fd, int64_t* size, uint64_t* ino)
    int cowbuf_fds_reachable()
    # AddressSanitizer builds only; no-ops otherwise.
    void cowbuf_poison(void* addr, size_t size)
    void cowbuf_unpoison(void* addr, size_t size)


cdef extern from "_atomic.h" nogil:
    # Sequentially consistent, lock-free atomics on shared memory.
    uint32_t cowbuf_load_u32(const uint32_t* p)
    void cowbuf_store_u32(uint32_t* p, uint32_t v)
    int cowbuf_cas_u32(uint32_t* p, uint32_t* expected, uint32_t desired)
    uint32_t cowbuf_add_fetch_u32(uint32_t* p, uint32_t v)
    uint32_t cowbuf_exchange_u32(uint32_t* p, uint32_t v)

    uint64_t cowbuf_load_u64(const uint64_t* p)
    void cowbuf_store_u64(uint64_t* p, uint64_t v)
    uint64_t cowbuf_exchange_u64(uint64_t* p, uint64_t v)
    int cowbuf_cas_u64(uint64_t* p, uint64_t* expected, uint64_t desired)
    uint64_t cowbuf_fetch_add_u64(uint64_t* p, uint64_t v)
    uint64_t cowbuf_add_fetch_u64(uint64_t* p, uint64_t v)


cdef extern from "_cpython.h":
    Py_ssize_t cowbuf_exact_index(object key) noexcept


cdef extern from "_hash.h" nogil:
    # FrozenDict's keyed hash: SipHash-1-3 of the message prefix || data[0..n).
    uint64_t cowbuf_siphash13(uint64_t k0, uint64_t k1, unsigned char prefix,
                              const void* data, size_t n)
    uint64_t cowbuf_siphash_cd(uint64_t k0, uint64_t k1, unsigned char prefix,
                               const void* data, size_t n, int c_rounds, int d_rounds)
    void cowbuf_prefetch(const void* p)


cdef extern from "_text.h":
    # UTF-8 with lone surrogates passed through: how StrArray and FrozenDict keep text.
    bint cowbuf_is_ascii(const char* p, Py_ssize_t n) noexcept nogil
    Py_ssize_t cowbuf_utf8_size(int kind, const void* data, Py_ssize_t length) noexcept nogil
    void cowbuf_utf8_encode(int kind, const void* data, Py_ssize_t length,
                            char* out) noexcept nogil
    bint cowbuf_utf8_has_surrogate(const char* p, Py_ssize_t n) noexcept nogil
    bint cowbuf_str_is_ascii(object s) noexcept
    object cowbuf_str_from_ascii(const char* p, Py_ssize_t n)
    object cowbuf_str_from_ascii_into(PyObject** spare, const char* p, Py_ssize_t n)
    object cowbuf_str_from_utf8(const char* p, Py_ssize_t n)


cdef extern from "_arrow.h":
    # The Arrow C data interface in PyCapsules (see _arrow.h for the lifetimes).
    object cowbuf_arrow_schema_capsule(const char* format)
    object cowbuf_arrow_array_capsule(object owner, int64_t length, int64_t offset,
                                      int n_buffers, const Py_ssize_t* buffer_offsets)
cdef extern from "_wait.h" nogil:
    # Sleeping on a 32-bit word of shared memory until another process wakes it.
    int64_t cowbuf_monotonic_ns()
    void cowbuf_cpu_relax()
    uint32_t* cowbuf_low_half(uint64_t* p)
    uint32_t* cowbuf_high_half(uint64_t* p)
    int cowbuf_wait(uint32_t* word, uint32_t expected, int64_t timeout_ns)
    void cowbuf_wake(uint32_t* word, int count)


cdef extern from "_process.h" nogil:
    # Process identities ((start tag << 32) | pid) and whether their process is gone.
    uint32_t COWBUF_PID_MASK
    uint64_t cowbuf_identity()
    int cowbuf_process_gone(uint64_t identity)


cdef extern from "_sync.h" nogil:
    # The layout in shared memory of the synchronization objects.
    enum:
        COWBUF_KIND_LOCK
        COWBUF_KIND_RLOCK
        COWBUF_KIND_SEMAPHORE
        COWBUF_KIND_EVENT
        COWBUF_KIND_CONDITION
        COWBUF_KIND_BARRIER
        COWBUF_KIND_QUEUE
    uint32_t COWBUF_LOCK_WAITERS
    uint32_t COWBUF_LOCK_STOLEN
    uint32_t COWBUF_BARRIER_BROKEN
    uint32_t COWBUF_BARRIER_COMPLETED
    uint32_t COWBUF_BARRIER_ROUND_MASK
    int COWBUF_BARRIER_ENDED

    ctypedef struct cowbuf_sync_header:
        uint32_t kind
        uint64_t pid_namespace

    ctypedef struct cowbuf_lock_state:
        cowbuf_sync_header head
        uint64_t word
        uint64_t thread
        uint32_t depth
        uint32_t died

    ctypedef struct cowbuf_semaphore_state:
        cowbuf_sync_header head
        uint32_t value
        uint32_t sleepers
        uint32_t bounded
        uint32_t bound
        uint32_t slots
        uint32_t released

    ctypedef struct cowbuf_event_state:
        cowbuf_sync_header head
        uint32_t flag
        uint32_t sleepers

    ctypedef struct cowbuf_condition_state:
        cowbuf_sync_header head
        uint32_t seq
        uint32_t waiting
        uint32_t pending

    ctypedef struct cowbuf_barrier_state:
        cowbuf_sync_header head
        uint64_t state
        uint32_t parties
        uint32_t ended[16]


cdef extern from "_queue.h" nogil:
    # The layout of a Queue in shared memory, and the copies in and out of its ring.
    uint32_t COWBUF_QUEUE_MAX_BYTES
    int COWBUF_RECORD_HEADER
    enum:
        COWBUF_RECORD_PICKLE
        COWBUF_RECORD_BYTES
        COWBUF_RECORD_FAR_PICKLE
        COWBUF_RECORD_FAR_BYTES

    ctypedef struct cowbuf_queue_state:
        cowbuf_sync_header head
        uint32_t capacity
        uint32_t maxsize
        cowbuf_lock_state put_lock
        uint64_t put_cursor
        uint32_t get_waiting
        cowbuf_lock_state get_lock
        uint64_t get_cursor
        uint32_t put_waiting

    uint64_t cowbuf_cursor(uint64_t messages, uint64_t units)
    uint64_t cowbuf_cursor_units(uint64_t cursor)
    uint64_t cowbuf_cursor_messages(uint64_t cursor)
    uint64_t cowbuf_cursor_bytes(uint64_t later, uint64_t earlier)
    uint64_t cowbuf_cursor_count(uint64_t later, uint64_t earlier)
    uint64_t cowbuf_record_bytes(uint64_t length)
    void cowbuf_ring_write(char* ring, uint64_t capacity, uint64_t pos, const void* src,
                           uint64_t n)
    void cowbuf_ring_read(const char* ring, uint64_t capacity, uint64_t pos, void* dst,
                          uint64_t n)
