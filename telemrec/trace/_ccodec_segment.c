/* segment_streams(columns, runs, level) -> (streams, run_kinds, data)
 *
 * A provisional segment's streams for the writer's journal in one call (_segments.provisional_frame):
 * ``columns`` a list of (column number, kinds, values, strings), each column as encode_many takes
 * it; ``runs`` int64, rows per run. Returns the header's "streams" and "run_kinds" lists as JSON
 * text (bytes), what Segment.header() gives encoded, and the streams of the columns with a value,
 * concatenated in that order. A flush journals a few short segments of tens of columns each: built
 * here, they cost no Segment, NumPy stream table, header dict or JSON encoder per segment. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "_ccodec_stream.h"

typedef struct {
    char *buf;
    size_t len, cap;
} Text;

static int grow(Text *t, size_t more)
{
    if (t->len + more <= t->cap)
        return 0;
    size_t cap = (t->cap ? t->cap * 2 : 256) + more;
    char *buf = realloc(t->buf, cap);
    if (!buf)
        return -1;
    t->buf = buf, t->cap = cap;
    return 0;
}

static int put(Text *t, const char *s, size_t n)
{
    if (grow(t, n) < 0)
        return -1;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    return 0;
}

static int put_int(Text *t, int64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRId64, v);
    return put(t, digits, (size_t)n);
}

/* "[a,b,...]" of n int64 */
static int put_ints(Text *t, const int64_t *v, Py_ssize_t n)
{
    if (put(t, "[", 1) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if ((i && put(t, ",", 1) < 0) || put_int(t, v[i]) < 0)
            return -1;
    return put(t, "]", 1);
}

PyObject *ccodec_segment_streams(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *columns, *ro;
    int level;
    if (!PyArg_ParseTuple(args, "O!Oi", &PyList_Type, &columns, &ro, &level))
        return NULL;
    if (level < 0 || level > 12) {
        PyErr_SetString(PyExc_ValueError, "segment_streams: level outside 0-12");
        return NULL;
    }
    Py_buffer rb = {0};
    if (PyObject_GetBuffer(ro, &rb, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (rb.len % 8) {
        PyBuffer_Release(&rb);
        PyErr_SetString(PyExc_ValueError, "segment_streams: runs must be int64");
        return NULL;
    }
    const int64_t *runs = rb.buf;
    int64_t n_runs = rb.len / 8;
    Text streams = {0}, kinds = {0}, data = {0};
    PyObject *out = NULL;
    Py_ssize_t count = PyList_GET_SIZE(columns), written = 0;
    int failed = put(&streams, "[", 1) < 0 || put(&kinds, "[", 1) < 0;
    for (Py_ssize_t i = 0; !failed && i < count; i++) {
        PyObject *item = PyList_GET_ITEM(columns, i), *ko, *vo, *so;
        Py_ssize_t column;
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "nOOO", &column, &ko, &vo, &so)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "segment_streams: a column is not (number, kinds, values, strings)");
            goto done;
        }
        EncodedStream st;
        int got = ccodec_encode_column(ko, vo, so, runs, n_runs, level, 1, &st);
        if (got < 0)
            goto done;
        if (!got)
            continue;
        int64_t row[8] = {column, (int64_t)st.size, st.crc, (int64_t)st.raw, st.encoding, st.scale, st.width, st.mask};
        failed = (written && put(&streams, ",", 1) < 0) || put_ints(&streams, row, 8) < 0 ||
                 put(&data, (const char *)st.buf, st.size) < 0;
        if (!failed && st.run_masks) {
            failed = (kinds.len > 1 && put(&kinds, ",", 1) < 0) || put(&kinds, "[", 1) < 0 ||
                     put_int(&kinds, written) < 0 || put(&kinds, ",", 1) < 0 ||
                     put_ints(&kinds, st.run_masks, n_runs) < 0 || put(&kinds, "]", 1) < 0;
        }
        free(st.buf);
        free(st.run_masks);
        written++;
    }
    if (failed || put(&streams, "]", 1) < 0 || put(&kinds, "]", 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    out = Py_BuildValue("(y#y#y#)", streams.buf, (Py_ssize_t)streams.len, kinds.buf, (Py_ssize_t)kinds.len,
                        data.buf ? data.buf : "", (Py_ssize_t)data.len);
done:
    free(streams.buf);
    free(kinds.buf);
    free(data.buf);
    PyBuffer_Release(&rb);
    return out;
}
