/* Sleeping on a 32-bit word of shared memory until another process changes it: the
 * primitive every blocking call of cowbuf (locks, events, queues, Counter.wait) is
 * made of.
 *
 *   Linux: the futex, without FUTEX_PRIVATE_FLAG. A shared futex is keyed by the
 *          memory's inode and offset rather than by the virtual address, so processes
 *          that map one memfd at different addresses sleep and wake on the same word.
 *   macOS 14.4+: os_sync_wait_on_address with the shared flag, the same idea.
 *   elsewhere (and older macOS): a bounded backoff poll of the word; waking is then
 *          a no-op, and a sleeper notices a change within COWBUF_POLL_MAX_NS.
 *
 * cowbuf_wait() returns 0 when it was woken or the word did not hold `expected` (the
 * caller reads the word again either way: wake-ups may be spurious), and -1 with errno
 * ETIMEDOUT once `timeout_ns` (relative, monotonic) has passed, or EINTR when a signal
 * arrived. Callers wait in slices of a few milliseconds with the GIL released and
 * run Python's signal handlers between them, so Ctrl-C interrupts any wait.
 *
 * Plain C: no Python state, callable without the GIL.
 */
#ifndef COWBUF_WAIT_H
#define COWBUF_WAIT_H

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define COWBUF_WAIT_FUTEX 1
#elif defined(__APPLE__) && defined(__has_include)
#if __has_include(<os/os_sync_wait_on_address.h>)
#include <os/clock.h>
#include <os/os_sync_wait_on_address.h>
#define COWBUF_WAIT_OS_SYNC 1
#endif
#endif

/* The longest single sleep of the polling fallback: how late a change is noticed. */
#define COWBUF_POLL_MAX_NS 1000000

static inline int64_t cowbuf_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One step of a spin-wait: tells the CPU (and a hyperthread sibling) that we spin. */
static inline void cowbuf_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* The 32-bit half of a 64-bit word that holds its low bits: a 64-bit value sleeps on
 * its low half (futexes are 32-bit). A change of the high half alone is then not seen
 * by a sleeper that is already asleep; the callers' slices bound what that costs. */
static inline uint32_t *cowbuf_low_half(uint64_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)p + 1;
#else
    return (uint32_t *)p;
#endif
}

static inline uint32_t *cowbuf_high_half(uint64_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)p;
#else
    return (uint32_t *)p + 1;
#endif
}

static inline int cowbuf_poll_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    int64_t deadline = cowbuf_monotonic_ns() + timeout_ns;
    int64_t pause_ns = 20000;
    while (__atomic_load_n(word, __ATOMIC_SEQ_CST) == expected) {
        int64_t left = deadline - cowbuf_monotonic_ns();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct timespec ts;
        int64_t ns = pause_ns < left ? pause_ns : left;
        ts.tv_sec = (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        if (nanosleep(&ts, NULL) == -1 && errno == EINTR)
            return -1;
        if (pause_ns < COWBUF_POLL_MAX_NS)
            pause_ns *= 2;
    }
    return 0;
}

static inline int cowbuf_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    if (timeout_ns <= 0) {
        errno = ETIMEDOUT;
        return -1;
    }
#if defined(COWBUF_WAIT_FUTEX)
    struct timespec ts;
    ts.tv_sec = (time_t)(timeout_ns / 1000000000);
    ts.tv_nsec = (long)(timeout_ns % 1000000000);
    /* FUTEX_WAIT takes a relative timeout on CLOCK_MONOTONIC. */
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0) == -1) {
        if (errno == EAGAIN)
            return 0; /* the word no longer held `expected` */
        return -1;
    }
    return 0;
#elif defined(COWBUF_WAIT_OS_SYNC)
    if (__builtin_available(macOS 14.4, *)) {
        if (os_sync_wait_on_address_with_timeout(word, expected, sizeof(uint32_t),
                                                 OS_SYNC_WAIT_ON_ADDRESS_SHARED,
                                                 OS_CLOCK_MACH_ABSOLUTE_TIME,
                                                 (uint64_t)timeout_ns) == -1) {
            if (errno == ETIMEDOUT || errno == EINTR)
                return -1;
            return 0; /* EFAULT and the like: the caller reads the word again */
        }
        return 0;
    }
    return cowbuf_poll_wait(word, expected, timeout_ns);
#else
    return cowbuf_poll_wait(word, expected, timeout_ns);
#endif
}

/* Wakes up to `count` sleepers on `word` (INT_MAX: all of them). */
static inline void cowbuf_wake(uint32_t *word, int count)
{
#if defined(COWBUF_WAIT_FUTEX)
    syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
#elif defined(COWBUF_WAIT_OS_SYNC)
    if (__builtin_available(macOS 14.4, *)) {
        if (count == 1)
            os_sync_wake_by_address_any(word, sizeof(uint32_t), OS_SYNC_WAKE_BY_ADDRESS_SHARED);
        else
            os_sync_wake_by_address_all(word, sizeof(uint32_t), OS_SYNC_WAKE_BY_ADDRESS_SHARED);
    }
#else
    (void)word;
    (void)count;
#endif
}

#endif /* COWBUF_WAIT_H */
