/* The keyed hash of FrozenDict: SipHash-1-3 (Aumasson and Bernstein, "SipHash: a fast
 * short-input PRF", 2012), with one round per message word and three to finish, as
 * CPython hashes str and bytes.
 *
 * A map stores its own 128-bit key, drawn from os.urandom when it is built: every
 * process that maps it computes the same hashes (Python's own hash() differs from
 * process to process), and nobody who does not know the key can choose keys that
 * collide (hash flooding of the build or of the lookups).
 *
 * The message is one type byte followed by the key's bytes, so that the str "1", the
 * bytes b"1" and the int 1 hash apart; it is read as it stands in the caller's memory,
 * without a copy. Plain C: no Python state, callable without the GIL.
 * cowbuf_prefetch lets a batch of lookups (FrozenDict.get_many) overlap its cache misses.
 */
#ifndef COWBUF_HASH_H
#define COWBUF_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define COWBUF_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define COWBUF_SIPROUND(v0, v1, v2, v3) \
    do { \
        v0 += v1; v1 = COWBUF_ROTL(v1, 13); v1 ^= v0; v0 = COWBUF_ROTL(v0, 32); \
        v2 += v3; v3 = COWBUF_ROTL(v3, 16); v3 ^= v2; \
        v0 += v3; v3 = COWBUF_ROTL(v3, 21); v3 ^= v0; \
        v2 += v1; v1 = COWBUF_ROTL(v1, 17); v1 ^= v2; v2 = COWBUF_ROTL(v2, 32); \
    } while (0)

/* `n` (< 8) bytes at p as the low bytes of a little-endian word. */
static inline uint64_t
cowbuf_load_le_partial(const unsigned char *p, size_t n)
{
    uint64_t m = 0;
    for (size_t i = 0; i < n; i++) {
        m |= (uint64_t)p[i] << (8 * i);
    }
    return m;
}

/* The 8 bytes at p as a little-endian word, at any alignment. */
static inline uint64_t
cowbuf_load_le64(const unsigned char *p)
{
    uint64_t m;
    memcpy(&m, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    m = __builtin_bswap64(m);
#endif
    return m;
}

/* SipHash-c-d under the key (k0, k1) of the message `prefix` || data[0..n). */
static inline uint64_t
cowbuf_siphash_cd(uint64_t k0, uint64_t k1, unsigned char prefix, const void *data,
                  size_t n, int c_rounds, int d_rounds)
{
    const unsigned char *p = (const unsigned char *)data;
    const size_t total = n + 1;      /* bytes of the message */
    const size_t words = total / 8;  /* whole words of it */
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    uint64_t m;
    int r;

    /* Word k holds message bytes 8k..8k+7: the prefix and data[0..7) for the first,
     * data[8k-1..8k+7) after it. */
    for (size_t k = 0; k < words; k++) {
        m = k == 0 ? (uint64_t)prefix | cowbuf_load_le_partial(p, 7) << 8
                   : cowbuf_load_le64(p + 8 * k - 1);
        v3 ^= m;
        for (r = 0; r < c_rounds; r++) {
            COWBUF_SIPROUND(v0, v1, v2, v3);
        }
        v0 ^= m;
    }
    /* The last word: the bytes left (0 to 7) and the message length mod 256 on top. */
    if (words == 0) {
        m = (uint64_t)prefix | cowbuf_load_le_partial(p, n) << 8;
    } else {
        m = cowbuf_load_le_partial(p + 8 * words - 1, total - 8 * words);
    }
    m |= (uint64_t)(total & 0xff) << 56;
    v3 ^= m;
    for (r = 0; r < c_rounds; r++) {
        COWBUF_SIPROUND(v0, v1, v2, v3);
    }
    v0 ^= m;
    v2 ^= 0xff;
    for (r = 0; r < d_rounds; r++) {
        COWBUF_SIPROUND(v0, v1, v2, v3);
    }
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The hash FrozenDict uses: SipHash-1-3. */
static inline uint64_t
cowbuf_siphash13(uint64_t k0, uint64_t k1, unsigned char prefix, const void *data, size_t n)
{
    return cowbuf_siphash_cd(k0, k1, prefix, data, n, 1, 3);
}

/* A hint that the cache line at p is about to be read (a table lookup of a batch). */
static inline void
cowbuf_prefetch(const void *p)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#else
    (void)p;
#endif
}

#endif /* COWBUF_HASH_H */
