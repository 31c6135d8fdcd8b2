/* Compiled chunk decoder of trace formats 1 and 2, part of telemrec.trace._ccodec (optional:
 * telemrec/trace/_kernels.py is the reference).
 *
 * decode_columns() reads a column's stored chunks with pread at the file offsets HDF5
 * reported, inflates them (libdeflate) and decodes them into the column's slice of
 * the output block: unshuffle, unzigzag, undo the deltas (with the chunk's anchors in
 * format 2), scale decimals and store float64 or int64, in one pass per chunk, all
 * with the GIL released. decode() does the decoding alone, on chunks already inflated.
 * The NumPy kernels make five to eight passes over scratch arrays for the same work,
 * and the Python bindings of the inflaters hold the GIL, so two threads ran no faster
 * than one. The results are the NumPy kernels' bit for bit (tested): the integer
 * arithmetic wraps the way NumPy's int64 does, and (double)int64 / 10**scale is the
 * conversion and IEEE division NumPy performs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

/* Limits that keep every size computation far from overflow: HDF5 chunks are below 4 GiB,
 * so a chunk holds fewer than 2**29 8-byte values. */
#define MAX_CHUNK_ROWS ((Py_ssize_t)1 << 29)
#define MAX_VALUES (PY_SSIZE_T_MAX / 16)

static int aligned8(const void *p) { return ((uintptr_t)p & 7) == 0; }

/* a * b when it fits below MAX_VALUES (both >= 0), else -1 */
static Py_ssize_t product(Py_ssize_t a, Py_ssize_t b)
{
    Py_ssize_t r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > MAX_VALUES)
        return -1;
    return r;
}

/* Inflating one chunk: libdeflate, built from third_party/libdeflate (twice zlib's speed here). */
#include "libdeflate.h"
#include "_ccodec_common.h"
#define INFLATER_NAME "libdeflate " LIBDEFLATE_VERSION_STRING
typedef struct libdeflate_decompressor Inflater;

static Inflater *inflater_new(void) { return libdeflate_alloc_decompressor(); }
static void inflater_free(Inflater *z) { libdeflate_free_decompressor(z); }

/* 0 when ``in`` is one zlib stream of exactly ``size`` bytes (its Adler-32 checked), written to ``out`` */
static int inflate_exact(Inflater *z, const uint8_t *in, size_t n, uint8_t *out, size_t size)
{
    return libdeflate_zlib_decompress(z, in, n, out, size, NULL) == LIBDEFLATE_SUCCESS ? 0 : -1;
}

enum { MODE_DELTA = 0, MODE_XOR = 1, MODE_BITS = 2 };

#define INLINE static inline __attribute__((always_inline))

/* value j of a chunk from its ``width`` byte planes, ``plane`` bytes apart */
INLINE uint64_t gather(const uint8_t *p, Py_ssize_t plane, const int width, Py_ssize_t j)
{
    uint64_t u = p[j];
    for (int k = 1; k < width; k++)
        u |= (uint64_t)p[k * plane + j] << (8 * k);
    return u;
}

INLINE uint64_t unzigzag(uint64_t u) { return (u >> 1) ^ (0 - (u & 1)); }

/* Rows [0, rows) of a delta chunk of one width and order into out[j - skip] (int64 bits,
 * wrapping like NumPy's cumsum). The first ``order`` values come from the anchors when
 * given; after them each row is one add (order 1) or two (order 2). */
INLINE void delta_rows(const uint8_t *p, Py_ssize_t plane, const int width, const int order, Py_ssize_t rows,
                       Py_ssize_t skip, const int64_t *anchors, uint64_t *out)
{
    uint64_t x = 0, d = 0;
    Py_ssize_t j = 0;
    for (; j < rows && j < 2; j++) {
        uint64_t v = (anchors && j < order) ? (uint64_t)anchors[j] : unzigzag(gather(p, plane, width, j));
        if (j == 0 || order == 0)
            x = v;
        else if (order == 1)
            x += v;
        else
            x += (d = v);
        if (j >= skip)
            out[j - skip] = x;
    }
    Py_ssize_t stop = skip < rows ? skip : rows;
    for (; j < stop; j++) { /* rows before the requested range: needed for the running sums */
        uint64_t v = unzigzag(gather(p, plane, width, j));
        if (order == 0)
            x = v;
        else if (order == 1)
            x += v;
        else
            x += (d += v);
    }
    uint64_t *o = out - skip;
    if (order == 0)
        for (; j < rows; j++)
            o[j] = unzigzag(gather(p, plane, width, j));
    else if (order == 1)
        for (; j < rows; j++)
            o[j] = (x += unzigzag(gather(p, plane, width, j)));
    else
        for (; j < rows; j++)
            o[j] = (x += (d += unzigzag(gather(p, plane, width, j))));
}

INLINE void xor_rows(const uint8_t *p, Py_ssize_t plane, const int width, int accumulate, Py_ssize_t rows,
                     Py_ssize_t skip, uint64_t *out)
{
    uint64_t acc = 0;
    for (Py_ssize_t j = 0; j < rows; j++) {
        uint64_t u = gather(p, plane, width, j);
        acc = accumulate ? (acc ^ u) : u;
        if (j >= skip)
            out[j - skip] = acc;
    }
}

#define WIDTHS(call, ...) \
    switch (width) { \
    case 1: call(__VA_ARGS__, 1); break; \
    case 2: call(__VA_ARGS__, 2); break; \
    case 4: call(__VA_ARGS__, 4); break; \
    default: call(__VA_ARGS__, 8); break; \
    }
#define DELTA(order, w) delta_rows(p, plane, w, order, rows, skip, anchors, out)
#define XOR(acc, w) xor_rows(p, plane, w, acc, rows, skip, out)

static void decode_chunk(const uint8_t *p, Py_ssize_t plane, int width, Py_ssize_t rows, Py_ssize_t skip,
                         int mode, int order, double divisor, const int64_t *anchors, uint64_t *out, int out_float)
{
    if (mode == MODE_DELTA) {
        if (order == 0) {
            WIDTHS(DELTA, 0)
        } else if (order == 1) {
            WIDTHS(DELTA, 1)
        } else {
            WIDTHS(DELTA, 2)
        }
        if (out_float)
            to_double(out, rows - skip, divisor);
    } else if (mode == MODE_XOR) {
        WIDTHS(XOR, 1)
    } else {
        WIDTHS(XOR, 0)
    }
}

/* decode(data, width, chunk_rows, count, rows, skip, mode, order, divisor, anchors, out, out_float)
 *
 * data: uint8 buffer of ``count`` chunks, each ``width`` planes of ``chunk_rows`` bytes;
 * rows: the rows of each chunk to decode (<= chunk_rows), of which the first ``skip``
 * are not stored; out: writable buffer of count * (rows - skip) 8-byte values;
 * anchors: int64 buffer [count, 2] or None; divisor: 10**scale, or 0 for none. */
PyObject *v2_decode(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer data, out, anchors = {0};
    Py_ssize_t cr, count, rows, skip;
    int width, mode, order, out_float;
    double divisor;
    PyObject *anchors_obj;
    if (!PyArg_ParseTuple(args, "y*innnniidOw*p", &data, &width, &cr, &count, &rows, &skip, &mode, &order,
                          &divisor, &anchors_obj, &out, &out_float))
        return NULL;
    PyObject *result = NULL;
    int have_anchors = anchors_obj != Py_None;
    if (have_anchors && PyObject_GetBuffer(anchors_obj, &anchors, PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    if ((width != 1 && width != 2 && width != 4 && width != 8) || cr < 1 || cr > MAX_CHUNK_ROWS || count < 0 ||
        rows < 0 || rows > cr || skip < 0 || skip > rows || mode < MODE_DELTA || mode > MODE_BITS || order < 0 ||
        order > 2) {
        PyErr_SetString(PyExc_ValueError, "decode: argument out of range");
        goto done;
    }
    Py_ssize_t planes = product(count, width * cr), values = product(count, rows - skip);
    if (planes < 0 || values < 0 || data.len < planes || out.len / 8 < values ||
        (have_anchors && anchors.len / 16 < count)) {
        PyErr_SetString(PyExc_ValueError, "decode: buffer too small");
        goto done;
    }
    if (!aligned8(out.buf) || (have_anchors && !aligned8(anchors.buf))) {
        PyErr_SetString(PyExc_ValueError, "decode: out and anchors must be 8-byte aligned");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++)
        decode_chunk((const uint8_t *)data.buf + i * width * cr, cr, width, rows, skip, mode, order, divisor,
                     have_anchors ? (const int64_t *)anchors.buf + 2 * i : NULL,
                     (uint64_t *)out.buf + i * (rows - skip), out_float);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (have_anchors && anchors.obj)
        PyBuffer_Release(&anchors);
    return result;
}

/* The values of a chunk whose stored values are all 0 (width 0), from its anchors: what the
 * running sums of zeros give (format 2 writes such chunks without data). */
static void anchored_rows(int mode, int order, Py_ssize_t rows, Py_ssize_t skip, const int64_t *anchors, uint64_t *out)
{
    uint64_t x0 = 0, d1 = 0;
    if (mode == MODE_DELTA && anchors && order >= 1)
        x0 = (uint64_t)anchors[0];
    if (mode == MODE_DELTA && anchors && order == 2)
        d1 = (uint64_t)anchors[1];
    for (Py_ssize_t j = skip; j < rows; j++)
        out[j - skip] = x0 + (uint64_t)j * d1;
}

/* One column of a batch: rows [lo, hi) of a column stored in chunks of ``cr`` rows. */
typedef struct {
    Py_buffer desc, where, anchors, out;
    Py_ssize_t cr, lo, hi, chunks;
    int out_float, failed;
} Col;

static void release_col(Col *c)
{
    Py_buffer *views[] = {&c->desc, &c->where, &c->anchors, &c->out};
    for (int k = 0; k < 4; k++)
        if (views[k]->obj)
            PyBuffer_Release(views[k]);
}

/* -1 with an exception for arguments of the wrong type; else 0, with ``failed`` set when the
 * values do not describe a column this decoder can read (the caller decodes it through HDF5). */
static int parse_col(PyObject *item, Col *c)
{
    PyObject *anchors_obj;
    memset(c, 0, sizeof(*c));
    if (!PyTuple_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "decode_columns: each column must be a tuple");
        return -1;
    }
    if (!PyArg_ParseTuple(item, "y*y*Onnnw*p", &c->desc, &c->where, &anchors_obj, &c->cr, &c->lo, &c->hi, &c->out,
                          &c->out_float))
        return -1;
    if (anchors_obj != Py_None && PyObject_GetBuffer(anchors_obj, &c->anchors, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    c->chunks = c->desc.len / 3;
    Py_ssize_t values = c->hi - c->lo;
    c->failed = c->cr < 1 || c->cr > MAX_CHUNK_ROWS || c->lo < 0 || values < 0 || values > MAX_VALUES ||
                (values > 0 && (c->hi - 1) / c->cr >= c->chunks) || c->where.len / 24 < c->chunks ||
                (c->anchors.obj && c->anchors.len / 16 < c->chunks) || c->out.len / 8 < values ||
                !aligned8(c->out.buf) || !aligned8(c->where.buf) || (c->anchors.obj && !aligned8(c->anchors.buf));
    return 0;
}

typedef struct {
    Inflater *z;
    uint8_t *packed, *plain;
    size_t packed_cap, plain_cap;
} Scratch;

static uint8_t *grow(uint8_t **buf, size_t *cap, size_t size)
{
    if (size > *cap) {
        uint8_t *bigger = realloc(*buf, size);
        if (!bigger)
            return NULL;
        *buf = bigger;
        *cap = size;
    }
    return *buf;
}

static const double POW10[19] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
                                 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18};

/* Every chunk of a column's row range: read, inflate, decode into its slice of ``out``.
 * -1 when a chunk is not readable this way (unknown encoding, no file offset, a zlib
 * stream that is damaged or of the wrong size): the caller decodes the column again
 * through HDF5, which reports real damage. Encodings as in telemrec.trace._codec. */
static int do_col(int fd, Col *c, Scratch *w)
{
    const uint8_t *desc = (const uint8_t *)c->desc.buf;
    const int64_t *where = (const int64_t *)c->where.buf;
    const int64_t *anchors = c->anchors.obj ? (const int64_t *)c->anchors.buf : NULL;
    if (c->hi <= c->lo)
        return 0;
    for (Py_ssize_t k = c->lo / c->cr; k <= (c->hi - 1) / c->cr; k++) {
        Py_ssize_t first = k * c->cr;
        Py_ssize_t skip = (c->lo > first ? c->lo : first) - first;
        Py_ssize_t rows = c->hi - first < c->cr ? c->hi - first : c->cr;
        int enc = desc[3 * k], scale = desc[3 * k + 1], width = desc[3 * k + 2];
        int mode = enc <= 5 ? MODE_DELTA : enc == 7 ? MODE_XOR : (enc == 6 || enc == 8) ? MODE_BITS : -1;
        int decimal = enc >= 3 && enc <= 5;
        if (mode < 0 || scale > 18 || (width != 0 && width != 1 && width != 2 && width != 4 && width != 8) ||
            (!c->out_float && (mode != MODE_DELTA || (decimal && scale))))
            return -1;
        int order = mode == MODE_DELTA ? enc % 3 : 0;
        double divisor = decimal && scale ? POW10[scale] : 0.0;
        uint64_t *dst = (uint64_t *)c->out.buf + (first + skip - c->lo);
        const int64_t *anchor = anchors ? anchors + 2 * k : NULL;
        if (width == 0) {
            anchored_rows(mode, order, rows, skip, anchor, dst);
            if (mode == MODE_DELTA && c->out_float)
                to_double(dst, rows - skip, divisor);
            continue;
        }
        int64_t offset = where[3 * k], size = where[3 * k + 1], adler = where[3 * k + 2];
        size_t plain_size = (size_t)c->cr * (size_t)width;
        /* deflate never needs much more than its input (stored blocks: 5 bytes per 64 KiB) */
        if (offset < 0 || size <= 0 || (size_t)size > plain_size + plain_size / 8 + 64 || !grow(&w->packed, &w->packed_cap, (size_t)size) ||
            !grow(&w->plain, &w->plain_cap, plain_size))
            return -1;
        if (pread(fd, w->packed, (size_t)size, (off_t)offset) != (ssize_t)size)
            return -1;
        if (adler >= 0 && size >= 4) { /* from the chunk index: is this the stream it describes? */
            const uint8_t *t = w->packed + size - 4;
            uint32_t trailer = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
            if (trailer != (uint64_t)adler)
                return -1;
        }
        if (inflate_exact(w->z, w->packed, (size_t)size, w->plain, plain_size) < 0)
            return -1;
        decode_chunk(w->plain, c->cr, width, rows, skip, mode, order, divisor, anchor, dst, c->out_float);
    }
    return 0;
}

/* decode_columns(fd, columns) -> list of the indices of columns that could not be decoded
 * this way (the caller decodes those through HDF5).
 *
 * columns: a sequence of (descriptors, where, anchors, chunk_rows, lo, hi, out, out_float):
 * descriptors uint8 [chunks, 3] (encoding, decimal scale, byte width), where int64
 * [chunks, 3] (file offset, compressed size, the stream's Adler-32 trailer; -1 when unknown:
 * telemrec.trace._chunkindex), anchors int64 [chunks, 2]
 * or None, out a writable buffer of hi - lo 8-byte values (float64 when out_float, else
 * int64). All reading, inflating and decoding happens with the GIL released, so the
 * worker threads decode their batches at the same time. */
PyObject *v2_decode_columns(PyObject *Py_UNUSED(self), PyObject *args)
{
    int fd;
    PyObject *seq_obj;
    if (!PyArg_ParseTuple(args, "iO", &fd, &seq_obj))
        return NULL;
    /* a private tuple: the columns stay alive while their arguments are converted (a
     * conversion may run Python code that changes the caller's list) */
    PyObject *seq = PySequence_Tuple(seq_obj);
    if (!seq)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq), parsed = 0;
    PyObject *result = NULL;
    Scratch w = {0};
    Col *cols = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Col));
    if (!cols) {
        PyErr_NoMemory();
        goto done;
    }
    for (; parsed < n; parsed++) {
        if (parse_col(PyTuple_GET_ITEM(seq, parsed), &cols[parsed]) < 0) {
            parsed++;
            goto done;
        }
    }
    w.z = inflater_new();
    if (!w.z) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n; k++)
        if (!cols[k].failed)
            cols[k].failed = do_col(fd, &cols[k], &w) < 0;
    Py_END_ALLOW_THREADS
    result = PyList_New(0);
    for (Py_ssize_t k = 0; result && k < n; k++) {
        if (!cols[k].failed)
            continue;
        PyObject *index = PyLong_FromSsize_t(k);
        if (!index || PyList_Append(result, index) < 0)
            Py_CLEAR(result);
        Py_XDECREF(index);
    }
done:
    if (w.z)
        inflater_free(w.z);
    free(w.packed);
    free(w.plain);
    if (cols) {
        for (Py_ssize_t k = 0; k < parsed; k++)
            release_col(&cols[k]);
        PyMem_Free(cols);
    }
    Py_DECREF(seq);
    return result;
}

const char *v2_inflater_name = INFLATER_NAME;
