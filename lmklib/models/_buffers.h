/* Shared by lmklib's compiled kernels (_xnor.c, _loops.c): checking a buffer argument. */
#ifndef LMKLIB_BUFFERS_H
#define LMKLIB_BUFFERS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* 1 when buffer b holds exactly `bytes` bytes; otherwise 0 with a ValueError naming the kernel
 * `fn` and the argument `name`. */
static inline int need_bytes(const char *fn, Py_buffer *b, Py_ssize_t bytes, const char *name) {
    if (b->len != bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %s holds %zd bytes, expected %zd", fn, name, b->len,
                     bytes);
        return 0;
    }
    return 1;
}

#endif
