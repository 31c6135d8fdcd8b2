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

/* gather_columns(parts, sizes, gather, kinds_out, values_out, strs_out) -> None
 *
 * merge_pieces' rows of every column in one call: ``parts`` a list over columns of a list over
 * pieces of (kinds, values, strs) or None (the piece lacks the column: its rows absent); ``sizes``
 * the pieces' rows; ``gather`` int64, which row of the pieces' rows, one after the other, each
 * merged row takes; ``kinds_out`` uint8 and ``values_out`` int64 [columns, rows], written;
 * ``strs_out`` a list over columns of an object array of the merged rows (None-filled, written
 * where a piece holds a str) or None where no piece of that column has strs. */
typedef struct {
    Py_buffer kinds, values, strs;
    int has, has_strs;
} Part;

static void release_parts(Part *parts, Py_ssize_t n)
{
    for (Py_ssize_t p = 0; p < n; p++) {
        if (parts[p].has) {
            PyBuffer_Release(&parts[p].kinds);
            PyBuffer_Release(&parts[p].values);
        }
        if (parts[p].has_strs)
            PyBuffer_Release(&parts[p].strs);
    }
    memset(parts, 0, (size_t)n * sizeof(Part));
}

static int get_part(PyObject *item, Py_ssize_t rows, Part *part)
{
    PyObject *ko, *vo, *so;
    if (item == Py_None)
        return 0;
    if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "OOO", &ko, &vo, &so))
        goto bad;
    if (PyObject_GetBuffer(ko, &part->kinds, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (PyObject_GetBuffer(vo, &part->values, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&part->kinds);
        return -1;
    }
    part->has = 1;
    if (so != Py_None) {
        if (PyObject_GetBuffer(so, &part->strs, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            return -1;
        part->has_strs = 1;
        if (!part->strs.format || strcmp(part->strs.format, "O") != 0 || part->strs.len != rows * (Py_ssize_t)sizeof(PyObject *))
            goto bad;
    }
    if (part->kinds.len != rows || part->values.len != rows * 8)
        goto bad;
    return 0;
bad:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "gather_columns: a part is not (kinds, values, strs) of its piece's rows");
    return -1;
}

PyObject *ccodec_gather_columns(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *parts_list, *sizes, *go, *ko, *vo, *strs_list;
    if (!PyArg_ParseTuple(args, "O!O!OOOO!", &PyList_Type, &parts_list, &PyList_Type, &sizes, &go, &ko, &vo,
                          &PyList_Type, &strs_list))
        return NULL;
    Py_ssize_t n_cols = PyList_GET_SIZE(parts_list), n_pieces = PyList_GET_SIZE(sizes);
    Py_buffer gb = {0}, kb = {0}, vb = {0};
    int64_t *base = NULL;
    int32_t *owner = NULL;
    Part *parts = NULL;
    PyObject *result = NULL;
    if (PyList_GET_SIZE(strs_list) != n_cols) {
        PyErr_SetString(PyExc_ValueError, "gather_columns: one strs entry a column");
        return NULL;
    }
    if (PyObject_GetBuffer(go, &gb, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (PyObject_GetBuffer(ko, &kb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        goto done;
    if (PyObject_GetBuffer(vo, &vb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        goto done;
    Py_ssize_t total = gb.len / 8, rows = 0;
    base = PyMem_Malloc((size_t)(n_pieces + 1) * sizeof(int64_t));
    parts = PyMem_Calloc((size_t)(n_pieces ? n_pieces : 1), sizeof(Part));
    if (!base || !parts) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t p = 0; p < n_pieces; p++) {
        base[p] = rows;
        Py_ssize_t size = PyLong_AsSsize_t(PyList_GET_ITEM(sizes, p));
        if (size < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "gather_columns: a piece's size is negative");
            goto done;
        }
        rows += size;
    }
    base[n_pieces] = rows;
    if (gb.len % 8 || kb.len != n_cols * total || vb.len != n_cols * total * 8 || rows >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "gather_columns: the outputs are not [columns, rows]");
        goto done;
    }
    owner = PyMem_Malloc((size_t)(rows ? rows : 1) * sizeof(int32_t));
    if (!owner) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t p = 0; p < n_pieces; p++)
        for (int64_t r = base[p]; r < base[p + 1]; r++)
            owner[r] = (int32_t)p;
    const int64_t *gather = gb.buf;
    for (Py_ssize_t j = 0; j < total; j++)
        if (gather[j] < 0 || gather[j] >= rows) {
            PyErr_SetString(PyExc_IndexError, "gather_columns: a gathered row is outside the pieces");
            goto done;
        }
    for (Py_ssize_t c = 0; c < n_cols; c++) {
        PyObject *per_piece = PyList_GET_ITEM(parts_list, c), *so = PyList_GET_ITEM(strs_list, c);
        if (!PyList_Check(per_piece) || PyList_GET_SIZE(per_piece) != n_pieces) {
            PyErr_SetString(PyExc_ValueError, "gather_columns: a column needs one part a piece");
            goto done;
        }
        for (Py_ssize_t p = 0; p < n_pieces; p++)
            if (get_part(PyList_GET_ITEM(per_piece, p), base[p + 1] - base[p], &parts[p]) < 0)
                goto done;
        Py_buffer ob = {0};
        PyObject **out_strs = NULL;
        if (so != Py_None) {
            if (PyObject_GetBuffer(so, &ob, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
                goto done;
            if (!ob.format || strcmp(ob.format, "O") != 0 || ob.len != total * (Py_ssize_t)sizeof(PyObject *)) {
                PyBuffer_Release(&ob);
                PyErr_SetString(PyExc_ValueError, "gather_columns: a strs output is not an object array of the rows");
                goto done;
            }
            out_strs = ob.buf;
        }
        uint8_t *k_out = (uint8_t *)kb.buf + c * total;
        int64_t *v_out = (int64_t *)vb.buf + c * total;
        /* the numbers without the GIL: a merge of a 100 Hz recording's rows takes milliseconds,
           which a sampling thread must not wait for */
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t j = 0; j < total; j++) {
            int64_t src = gather[j];
            int32_t p = owner[src];
            const Part *part = &parts[p];
            int64_t off = src - base[p];
            if (part->has) {
                k_out[j] = ((const uint8_t *)part->kinds.buf)[off];
                v_out[j] = ((const int64_t *)part->values.buf)[off];
            } else {
                k_out[j] = 0, v_out[j] = 0;
            }
        }
        Py_END_ALLOW_THREADS
        for (Py_ssize_t j = 0; out_strs && j < total; j++) {
            int64_t src = gather[j];
            int32_t p = owner[src];
            if (parts[p].has_strs) {
                PyObject *v = ((PyObject **)parts[p].strs.buf)[src - base[p]];
                Py_XSETREF(out_strs[j], Py_NewRef(v ? v : Py_None));
            }
        }
        if (out_strs)
            PyBuffer_Release(&ob);
        release_parts(parts, n_pieces);
    }
    result = Py_NewRef(Py_None);
done:
    if (parts)
        release_parts(parts, n_pieces);
    PyMem_Free(parts);
    PyMem_Free(base);
    PyMem_Free(owner);
    if (gb.obj)
        PyBuffer_Release(&gb);
    if (kb.obj)
        PyBuffer_Release(&kb);
    if (vb.obj)
        PyBuffer_Release(&vb);
    return result;
}
