# Declarations of _atomic.h: sequentially consistent, lock-free atomics on shared memory.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "_atomic.h" nogil:
    uint32_t cowbuf_load_u32(const uint32_t* p)
    void cowbuf_store_u32(uint32_t* p, uint32_t v)
    uint32_t cowbuf_exchange_u32(uint32_t* p, uint32_t v)
    int cowbuf_cas_u32(uint32_t* p, uint32_t* expected, uint32_t desired)
    uint32_t cowbuf_fetch_add_u32(uint32_t* p, uint32_t v)
    uint32_t cowbuf_add_fetch_u32(uint32_t* p, uint32_t v)

    uint64_t cowbuf_load_u64(const uint64_t* p)
    void cowbuf_store_u64(uint64_t* p, uint64_t v)
    uint64_t cowbuf_exchange_u64(uint64_t* p, uint64_t v)
    int cowbuf_cas_u64(uint64_t* p, uint64_t* expected, uint64_t desired)
    uint64_t cowbuf_fetch_add_u64(uint64_t* p, uint64_t v)
    uint64_t cowbuf_add_fetch_u64(uint64_t* p, uint64_t v)
