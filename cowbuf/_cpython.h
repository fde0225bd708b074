/* Helpers over CPython's C API for the hot paths of cowbuf's core. */
#ifndef COWBUF_CPYTHON_H
#define COWBUF_CPYTHON_H

#include <Python.h>

/* An exact int as an index, read from its digits when it is small; an int too large
 * for Py_ssize_t becomes PY_SSIZE_T_MIN, which no array can hold. Never fails. */
static inline Py_ssize_t
cowbuf_exact_index(PyObject *key)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)key)) {
        return (Py_ssize_t)PyUnstable_Long_CompactValue((PyLongObject *)key);
    }
#else
    Py_ssize_t size = Py_SIZE(key);
    if (size == 0 || size == 1 || size == -1) {
        return size * (Py_ssize_t)((PyLongObject *)key)->ob_digit[0];
    }
#endif
    Py_ssize_t i = PyLong_AsSsize_t(key);
    if (i == -1 && PyErr_Occurred()) {
        PyErr_Clear(); /* OverflowError: the only error for an exact int */
        return PY_SSIZE_T_MIN;
    }
    return i;
}

#endif /* COWBUF_CPYTHON_H */
