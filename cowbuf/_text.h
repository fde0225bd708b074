/* Text as StrArray and FrozenDict store it: UTF-8 with lone surrogates encoded as any
 * other code point ("surrogatepass"), so that every Python str round-trips exactly.
 *
 * cowbuf_utf8_size and cowbuf_utf8_encode read a str's code points where CPython keeps
 * them (1, 2 or 4 bytes each, PyUnicode_KIND) without asking CPython for its UTF-8, which
 * it would cache in the str object (memory, and a write to a page that may be shared)
 * and refuse for lone surrogates. cowbuf_str_from_utf8 is the one way back.
 */
#ifndef COWBUF_TEXT_H
#define COWBUF_TEXT_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

/* 1 if every byte of p[0..n) is ASCII. Plain C. Whole words, the last one overlapping
 * the one before: no loop over single bytes for the short strings of a table. */
static inline int
cowbuf_is_ascii(const char *p, Py_ssize_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    uint64_t any = 0, word;
    uint32_t half;
    if (n >= 8) {
        for (Py_ssize_t i = 0; i + 8 < n; i += 8) {
            memcpy(&word, s + i, 8);
            any |= word;
        }
        memcpy(&word, s + n - 8, 8);
        return ((any | word) & 0x8080808080808080ULL) == 0;
    }
    if (n >= 4) {
        memcpy(&half, s, 4);
        any = half;
        memcpy(&half, s + n - 4, 4);
        return ((any | half) & 0x80808080U) == 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        any |= s[i];
    }
    return (any & 0x80) == 0;
}

/* Bytes of the UTF-8 (surrogatepass) encoding of `len` code points of `kind` at data. */
static inline Py_ssize_t
cowbuf_utf8_size(int kind, const void *data, Py_ssize_t len)
{
    Py_ssize_t size = len;
    Py_ssize_t i;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *s = (const Py_UCS1 *)data;
        for (i = 0; i < len; i++) {
            size += s[i] >= 0x80;
        }
    } else if (kind == PyUnicode_2BYTE_KIND) {
        const Py_UCS2 *s = (const Py_UCS2 *)data;
        for (i = 0; i < len; i++) {
            size += (s[i] >= 0x80) + (s[i] >= 0x800);
        }
    } else {
        const Py_UCS4 *s = (const Py_UCS4 *)data;
        for (i = 0; i < len; i++) {
            size += (s[i] >= 0x80) + (s[i] >= 0x800) + (s[i] >= 0x10000);
        }
    }
    return size;
}

/* Write that encoding to out (cowbuf_utf8_size bytes). Plain C. */
static inline void
cowbuf_utf8_encode(int kind, const void *data, Py_ssize_t len, char *out)
{
    unsigned char *o = (unsigned char *)out;
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS4 c = kind == PyUnicode_1BYTE_KIND ? ((const Py_UCS1 *)data)[i]
                  : kind == PyUnicode_2BYTE_KIND ? ((const Py_UCS2 *)data)[i]
                  : ((const Py_UCS4 *)data)[i];
        if (c < 0x80) {
            *o++ = (unsigned char)c;
        } else if (c < 0x800) {
            *o++ = (unsigned char)(0xc0 | (c >> 6));
            *o++ = (unsigned char)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            *o++ = (unsigned char)(0xe0 | (c >> 12));
            *o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            *o++ = (unsigned char)(0x80 | (c & 0x3f));
        } else {
            *o++ = (unsigned char)(0xf0 | (c >> 18));
            *o++ = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
            *o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            *o++ = (unsigned char)(0x80 | (c & 0x3f));
        }
    }
}

/* 1 if the UTF-8 (surrogatepass) bytes p[0..n) hold a lone surrogate (U+D800..U+DFFF,
 * encoded ED A0..BF xx): bytes that strict UTF-8 readers, Arrow's among them, refuse.
 * Plain C. */
static inline int
cowbuf_utf8_has_surrogate(const char *p, Py_ssize_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    const unsigned char *end = s + n;
    while (s < end && (s = (const unsigned char *)memchr(s, 0xed, (size_t)(end - s))) != NULL) {
        if (s + 1 < end && s[1] >= 0xa0) {
            return 1;
        }
        s++;
    }
    return 0;
}

/* 1 if the str holds only ASCII: its characters are then its UTF-8 bytes. */
static inline int
cowbuf_str_is_ascii(PyObject *s)
{
    return PyUnicode_IS_ASCII(s);
}

/* A new str of the ASCII bytes p[0..n) (the caller checked them with cowbuf_is_ascii):
 * copied into a new compact ASCII str, without the decoder. A str is not tracked by the
 * garbage collector, so making one runs no Python code. NULL with MemoryError. */
static inline PyObject *
cowbuf_str_from_ascii(const char *p, Py_ssize_t n)
{
    PyObject *s = PyUnicode_New(n, 127);
    if (s != NULL && n > 0) {
        memcpy(PyUnicode_DATA(s), p, (size_t)n);
    }
    return s;
}

/* The ASCII bytes p[0..n) (checked by the caller) as a str, written into *spare if
 * nobody but the caller holds it any more: a str the caller made and keeps in *spare,
 * whose one reference is that one, compact ASCII of the same length, not interned. Rewriting such a
 * str in place, its hash forgotten, is invisible to every other object: CPython does as
 * much to a str of refcount 1 that it appends to, and zip() and enumerate() to the
 * tuple they return. It saves an iteration the allocation and the free of a str per
 * item. A new reference. */
static inline PyObject *
cowbuf_str_from_ascii_into(PyObject **slot, const char *p, Py_ssize_t n)
{
    PyObject *spare = *slot;
    if (spare != NULL && n > 0 && Py_REFCNT(spare) == 1 && PyUnicode_CheckExact(spare)
            && PyUnicode_IS_COMPACT_ASCII(spare) && PyUnicode_GET_LENGTH(spare) == n
            && !PyUnicode_CHECK_INTERNED(spare)
#if PY_VERSION_HEX < 0x030C0000
            && ((PyASCIIObject *)spare)->wstr == NULL /* (3.11's cached wchar_t copy) */
#endif
    ) {
        memcpy(PyUnicode_DATA(spare), p, (size_t)n);
        ((PyASCIIObject *)spare)->hash = -1;
        Py_INCREF(spare);
        return spare;
    }
    return cowbuf_str_from_ascii(p, n);
}

/* A new str from UTF-8 (surrogatepass) bytes; NULL with an exception set (bytes that
 * are not UTF-8 raise UnicodeDecodeError, and making that exception may run the garbage
 * collector). The ASCII check runs on every call, so bytes that are not ASCII never
 * reach an ASCII str, whoever wrote them. */
static inline PyObject *
cowbuf_str_from_utf8(const char *p, Py_ssize_t n)
{
    if (cowbuf_is_ascii(p, n)) {
        return cowbuf_str_from_ascii(p, n);
    }
    return PyUnicode_DecodeUTF8(p, n, "surrogatepass");
}

#endif /* COWBUF_TEXT_H */
