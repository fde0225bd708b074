/* The Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html)
 * and its PyCapsule protocol: an ArrowSchema and an ArrowArray in two capsules, named
 * "arrow_schema" and "arrow_array", that the consumer (pyarrow, polars...) moves out.
 *
 * The array's buffers point into cowbuf memory and stay valid until the consumer calls
 * the release callback, maybe from a thread of its own without the GIL, maybe never
 * (a capsule dropped unread): what holds the memory is a Py_buffer taken from the owner
 * through its buffer protocol, so that the export is counted like any memoryview and the
 * region can be neither closed nor unmapped under the consumer. The release callback
 * takes the GIL to release it; the capsule's destructor releases a struct nobody moved.
 */
#ifndef COWBUF_ARROW_H
#define COWBUF_ARROW_H

#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */

/* Buffers of one array: the validity bitmap (always NULL: cowbuf has no nulls), and
 * up to two more (offsets and data, or the values). */
#define COWBUF_ARROW_MAX_BUFFERS 3

/* What an exported ArrowArray owns. */
typedef struct {
    Py_buffer view;  /* the owner's memory, held until release */
    const void *buffers[COWBUF_ARROW_MAX_BUFFERS];
} cowbuf_arrow_private;

static void
cowbuf_arrow_schema_release(struct ArrowSchema *schema)
{
    /* the format string is a literal, and there are no children or dictionary */
    schema->release = NULL;
}

static void
cowbuf_arrow_array_release(struct ArrowArray *array)
{
    cowbuf_arrow_private *private_data = (cowbuf_arrow_private *)array->private_data;
    array->release = NULL;
    array->private_data = NULL;
    if (private_data == NULL) {
        return;
    }
    /* At interpreter exit there is no GIL to take: the process is going, and so is its
     * memory. */
    if (Py_IsInitialized()) {
        PyGILState_STATE state = PyGILState_Ensure();
        PyBuffer_Release(&private_data->view);
        PyGILState_Release(state);
    }
    free(private_data);
}

static void
cowbuf_arrow_schema_capsule_free(PyObject *capsule)
{
    struct ArrowSchema *schema =
        (struct ArrowSchema *)PyCapsule_GetPointer(capsule, "arrow_schema");
    if (schema == NULL) {
        PyErr_WriteUnraisable(capsule);
        return;
    }
    if (schema->release != NULL) {
        schema->release(schema);
    }
    free(schema);
}

static void
cowbuf_arrow_array_capsule_free(PyObject *capsule)
{
    struct ArrowArray *array = (struct ArrowArray *)PyCapsule_GetPointer(capsule, "arrow_array");
    if (array == NULL) {
        PyErr_WriteUnraisable(capsule);
        return;
    }
    if (array->release != NULL) {
        array->release(array);
    }
    free(array);
}

/* A capsule "arrow_schema" of a type without children: `format` must be a literal. */
static PyObject *
cowbuf_arrow_schema_capsule(const char *format)
{
    struct ArrowSchema *schema = (struct ArrowSchema *)calloc(1, sizeof(*schema));
    if (schema == NULL) {
        return PyErr_NoMemory();
    }
    schema->format = format;
    schema->name = "";
    schema->flags = ARROW_FLAG_NULLABLE;
    schema->release = cowbuf_arrow_schema_release;
    PyObject *capsule = PyCapsule_New(schema, "arrow_schema", cowbuf_arrow_schema_capsule_free);
    if (capsule == NULL) {
        free(schema);
    }
    return capsule;
}

/* A capsule "arrow_array" over the buffer of `owner` (taken read-only with
 * PyBUF_SIMPLE: the export is counted by the owner until release). The buffers of the
 * array are the owner's first byte plus buffer_offsets[k], or NULL where it is -1. */
static PyObject *
cowbuf_arrow_array_capsule(PyObject *owner, int64_t length, int64_t offset,
                           int n_buffers, const Py_ssize_t *buffer_offsets)
{
    if (n_buffers < 1 || n_buffers > COWBUF_ARROW_MAX_BUFFERS) {
        PyErr_SetString(PyExc_SystemError, "bad number of Arrow buffers");
        return NULL;
    }
    cowbuf_arrow_private *private_data =
        (cowbuf_arrow_private *)calloc(1, sizeof(*private_data));
    struct ArrowArray *array = (struct ArrowArray *)calloc(1, sizeof(*array));
    if (private_data == NULL || array == NULL) {
        free(private_data);
        free(array);
        return PyErr_NoMemory();
    }
    if (PyObject_GetBuffer(owner, &private_data->view, PyBUF_SIMPLE) == -1) {
        free(private_data);
        free(array);
        return NULL;
    }
    for (int k = 0; k < n_buffers; k++) {
        Py_ssize_t at = buffer_offsets[k];
        private_data->buffers[k] = at < 0 ? NULL : (const char *)private_data->view.buf + at;
    }
    array->length = length;
    array->null_count = 0;
    array->offset = offset;
    array->n_buffers = n_buffers;
    array->buffers = private_data->buffers;
    array->release = cowbuf_arrow_array_release;
    array->private_data = private_data;
    PyObject *capsule = PyCapsule_New(array, "arrow_array", cowbuf_arrow_array_capsule_free);
    if (capsule == NULL) {
        array->release(array);
        free(array);
    }
    return capsule;
}

#endif /* COWBUF_ARROW_H */
