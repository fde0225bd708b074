/* The layout in shared memory of a cowbuf.Queue, and the copies in and out of its
 * ring (the code that uses them is in _queue.pxi).
 *
 * The ring is a byte stream of records, each a header (payload length, kind) and the
 * payload, padded to 8 bytes, copied across the end of the ring when it wraps.
 * Producers write under one lock and consumers read under another (robust locks,
 * _lock.pxi); each side publishes its progress with one atomic store of its cursor,
 * which packs the bytes it went through (in 8-byte units) with the messages it went
 * through, so that the two never disagree, whatever point a process dies at. A record
 * becomes visible only when the producer's cursor moves past it, after it is whole.
 *
 * Plain C: no Python state, callable without the GIL.
 */
#ifndef COWBUF_QUEUE_H
#define COWBUF_QUEUE_H

#include <stdint.h>
#include <string.h>

#include "_sync.h"

/* A cursor: the messages it went through in the high 24 bits, the bytes in 8-byte
 * units in the low 40, both counted modulo their width. The ring holds fewer than
 * 2**24 records (COWBUF_QUEUE_MAX_BYTES / 8), so differences of counts are exact. */
#define COWBUF_CURSOR_UNIT_BITS 40
#define COWBUF_CURSOR_UNIT_MASK ((UINT64_C(1) << COWBUF_CURSOR_UNIT_BITS) - 1)
#define COWBUF_QUEUE_MAX_BYTES (64u << 20)
#define COWBUF_RECORD_HEADER 8

/* Record kinds (the low byte of the header's `kind`). */
enum {
    COWBUF_RECORD_PICKLE = 1,      /* a pickle, in the ring */
    COWBUF_RECORD_BYTES = 2,       /* raw bytes (put_bytes), in the ring */
    COWBUF_RECORD_FAR_PICKLE = 3,  /* a reference to a Region that holds the pickle */
    COWBUF_RECORD_FAR_BYTES = 4,   /* a reference to a Region that holds the bytes */
};

typedef struct {
    cowbuf_sync_header head;
    /* Bytes of the ring, a multiple of 8; it follows this struct. */
    uint32_t capacity;
    /* The most messages the queue holds at once (0: no limit). */
    uint32_t maxsize;
    uint8_t unused[40];
    /* The producers' cache line: their lock, and how far they have written. The low
     * half of put_cursor is the word consumers sleep on. */
    cowbuf_lock_state put_lock;
    uint64_t put_cursor;
    /* Set by a consumer about to sleep on put_cursor: the next put wakes them all. */
    uint32_t get_waiting;
    uint8_t unused_put[12];
    /* The consumers' cache line: their lock, and how far they have read. The low half
     * of get_cursor is the word producers that wait for room sleep on. */
    cowbuf_lock_state get_lock;
    uint64_t get_cursor;
    /* Set by a producer about to sleep on get_cursor: the next get wakes them all. */
    uint32_t put_waiting;
    uint8_t unused_get[12];
} cowbuf_queue_state;

_Static_assert(sizeof(cowbuf_queue_state) == 192, "the queue's cache lines moved");

static inline uint64_t cowbuf_cursor(uint64_t messages, uint64_t units)
{
    return (messages << COWBUF_CURSOR_UNIT_BITS) | (units & COWBUF_CURSOR_UNIT_MASK);
}

static inline uint64_t cowbuf_cursor_units(uint64_t cursor)
{
    return cursor & COWBUF_CURSOR_UNIT_MASK;
}

static inline uint64_t cowbuf_cursor_messages(uint64_t cursor)
{
    return cursor >> COWBUF_CURSOR_UNIT_BITS;
}

/* Bytes between two cursors (`later` ahead of `earlier`). */
static inline uint64_t cowbuf_cursor_bytes(uint64_t later, uint64_t earlier)
{
    return ((later - earlier) & COWBUF_CURSOR_UNIT_MASK) * 8;
}

/* Messages between two cursors. */
static inline uint64_t cowbuf_cursor_count(uint64_t later, uint64_t earlier)
{
    return ((later >> COWBUF_CURSOR_UNIT_BITS) - (earlier >> COWBUF_CURSOR_UNIT_BITS))
           & ((UINT64_C(1) << (64 - COWBUF_CURSOR_UNIT_BITS)) - 1);
}

/* Bytes a record of `length` payload bytes takes in the ring. */
static inline uint64_t cowbuf_record_bytes(uint64_t length)
{
    return COWBUF_RECORD_HEADER + ((length + 7) & ~(uint64_t)7);
}

/* Copy n bytes to the ring at byte `pos` (modulo its capacity), across its end. */
static inline void cowbuf_ring_write(char *ring, uint64_t capacity, uint64_t pos,
                                     const void *src, uint64_t n)
{
    uint64_t at = pos % capacity;
    uint64_t first = n < capacity - at ? n : capacity - at;
    memcpy(ring + at, src, first);
    if (first < n)
        memcpy(ring, (const char *)src + first, n - first);
}

/* Copy n bytes from the ring at byte `pos` (modulo its capacity), across its end. */
static inline void cowbuf_ring_read(const char *ring, uint64_t capacity, uint64_t pos,
                                    void *dst, uint64_t n)
{
    uint64_t at = pos % capacity;
    uint64_t first = n < capacity - at ? n : capacity - at;
    memcpy(dst, ring + at, first);
    if (first < n)
        memcpy((char *)dst + first, ring, n - first);
}

#endif /* COWBUF_QUEUE_H */
