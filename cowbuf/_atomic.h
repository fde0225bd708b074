/* Atomic operations on shared memory, as thin static inline wrappers over the
 * GCC/Clang __atomic builtins, all sequentially consistent.
 *
 * Only widths that are lock-free are allowed: a lock-based fallback (libatomic) keeps
 * its locks in process-local memory, so it would be silently wrong across processes.
 * Only unsigned types are wrapped: their arithmetic wraps modulo 2**width by definition,
 * and signed values are stored as their two's-complement bit patterns, so one set of
 * functions serves int32/uint32 and int64/uint64 alike.
 */
#ifndef COWBUF_ATOMIC_H
#define COWBUF_ATOMIC_H

#include <stdint.h>

#if !defined(__GNUC__) && !defined(__clang__)
#error "cowbuf needs the GCC or Clang __atomic builtins"
#endif

_Static_assert(__atomic_always_lock_free(sizeof(uint32_t), 0),
               "cowbuf needs lock-free 4-byte atomics: a locked fallback is not shared across processes");
_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0),
               "cowbuf needs lock-free 8-byte atomics: a locked fallback is not shared across processes");

#define COWBUF_SC __ATOMIC_SEQ_CST

#define COWBUF_ATOMIC_OPS(T, NAME)                                                     \
    static inline T cowbuf_load_##NAME(const T *p) { return __atomic_load_n(p, COWBUF_SC); } \
    static inline void cowbuf_store_##NAME(T *p, T v) { __atomic_store_n(p, v, COWBUF_SC); } \
    static inline T cowbuf_exchange_##NAME(T *p, T v)                                \
    {                                                                                \
        return __atomic_exchange_n(p, v, COWBUF_SC);                                 \
    }                                                                                \
    /* Returns 1 and stores `desired` if *p == *expected; otherwise returns 0 and    \
     * writes the current value to *expected. */                                     \
    static inline int cowbuf_cas_##NAME(T *p, T *expected, T desired)                \
    {                                                                                \
        return __atomic_compare_exchange_n(p, expected, desired, 0, COWBUF_SC, COWBUF_SC); \
    }                                                                                \
    static inline T cowbuf_fetch_add_##NAME(T *p, T v)                               \
    {                                                                                \
        return __atomic_fetch_add(p, v, COWBUF_SC);                                  \
    }                                                                                \
    static inline T cowbuf_add_fetch_##NAME(T *p, T v)                               \
    {                                                                                \
        return __atomic_add_fetch(p, v, COWBUF_SC);                                  \
    }

COWBUF_ATOMIC_OPS(uint32_t, u32)
COWBUF_ATOMIC_OPS(uint64_t, u64)

#undef COWBUF_ATOMIC_OPS

#endif /* COWBUF_ATOMIC_H */
