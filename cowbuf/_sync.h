/* The layout in shared memory of cowbuf's synchronization objects (the code that uses
 * them is in _lock.pxi, _semaphore.pxi, _condition.pxi and _barrier.pxi).
 *
 * Each object is carved from an arena on a cache line of its own and starts with a
 * header that says what it is, checked when a reference arrives, and in which pid
 * namespace the process identities stored in it mean something. Every field is read
 * and written with the atomics of _atomic.h, by any process; the 32-bit words that
 * waiters sleep on (_wait.h) are marked.
 */
#ifndef COWBUF_SYNC_H
#define COWBUF_SYNC_H

#include <stdint.h>

/* What an object's memory holds (cowbuf_sync_header.kind). */
enum {
    COWBUF_KIND_LOCK = 0x5C0B0001,
    COWBUF_KIND_RLOCK = 0x5C0B0002,
    COWBUF_KIND_SEMAPHORE = 0x5C0B0003,
    COWBUF_KIND_EVENT = 0x5C0B0004,
    COWBUF_KIND_CONDITION = 0x5C0B0005,
    COWBUF_KIND_BARRIER = 0x5C0B0006,
    COWBUF_KIND_QUEUE = 0x5C0B0007,
};

typedef struct {
    uint32_t kind;
    uint32_t unused;
    /* Inode of the creator's pid namespace (0: unknown). */
    uint64_t pid_namespace;
} cowbuf_sync_header;

/* Flags of a lock word, above the pid in its low half (_process.h). */
/* Some thread may sleep on the word: the release wakes one. */
#define COWBUF_LOCK_WAITERS 0x80000000u
/* Taken from a dead holder whose thread field the new holder has not yet replaced:
 * an RLock must not take that stale thread id for one of its own. */
#define COWBUF_LOCK_STOLEN 0x40000000u

typedef struct {
    cowbuf_sync_header head;
    /* (start tag << 32) | pid of the holder, with the flags above; 0 when free. The
     * low half is the word waiters sleep on. */
    uint64_t word;
    /* RLock: the holding thread and the recursion depth, written by the holder only;
     * 0 while the lock is free. */
    uint64_t thread;
    uint32_t depth;
    /* 1 while the holder took the lock from a process that died holding it. */
    uint32_t died;
} cowbuf_lock_state;

typedef struct {
    cowbuf_sync_header head;
    /* Free permits, without track_holders: the word waiters sleep on. */
    uint32_t value;
    /* Threads asleep on `value` or `released`: a release with none skips the wake. */
    uint32_t sleepers;
    /* BoundedSemaphore: 1, and a release may not take the permits above `bound`. */
    uint32_t bounded;
    uint32_t bound;
    /* track_holders: the number of slots that follow (the initial value); else 0. */
    uint32_t slots;
    /* track_holders: bumped by every release, the word waiters sleep on. */
    uint32_t released;
    /* followed by `slots` process identities: the holder of each permit, 0 if free */
} cowbuf_semaphore_state;

typedef struct {
    cowbuf_sync_header head;
    /* 1 while set: the word waiters sleep on while it is 0. */
    uint32_t flag;
    /* Threads asleep on `flag`: set() with none skips the wake. */
    uint32_t sleepers;
} cowbuf_event_state;

typedef struct {
    cowbuf_sync_header head;
    /* Bumped by every notify that moved waiters: the word waiters sleep on. */
    uint32_t seq;
    /* Waiters not notified yet. */
    uint32_t waiting;
    /* Notifications no waiter has claimed yet. */
    uint32_t pending;
    uint32_t unused;
} cowbuf_condition_state;

/* In the high half of a barrier's state, above the round number. */
#define COWBUF_BARRIER_BROKEN 0x80000000u
/* In `ended`, above the round number. */
#define COWBUF_BARRIER_COMPLETED 0x80000000u
#define COWBUF_BARRIER_ROUND_MASK 0x7fffffffu
#define COWBUF_BARRIER_ENDED 16

typedef struct {
    cowbuf_sync_header head;
    /* ((round | BROKEN) << 32) | arrivals in the round. The high half is the word
     * waiters sleep on. */
    uint64_t state;
    uint32_t parties;
    uint32_t unused;
    /* ended[r % 16]: r | COMPLETED once round r completed, r once it was reset. */
    uint32_t ended[COWBUF_BARRIER_ENDED];
    /* followed by two tables of `parties` process identities: the arrivals of the
     * even and of the odd rounds, in order of arrival */
} cowbuf_barrier_state;

#endif /* COWBUF_SYNC_H */
