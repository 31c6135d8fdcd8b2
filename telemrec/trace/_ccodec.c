/* Compiled codec of telemrec traces (optional: the NumPy modules are the reference).
 *
 * Format 3 column streams (docs/format.md section 4; telemrec/trace/_streams.py):
 *   encode()  rows of one column of a segment -> one compressed stream (libdeflate),
 *   decode()  one stream -> kinds and values (packed int64, or float64 as loaders want them),
 * both with the GIL released. The inflated bodies are _streams.py's byte for byte (tested):
 * the same choices (delta order by the same integer cost, the smallest exact decimal scale by
 * the same IEEE operations), the same layout. Format 1 and 2 chunks: see _ccodec_v2.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libdeflate.h"

#define INLINE static inline __attribute__((always_inline))

/* the v2 chunk decoder (_ccodec_v2.c) */
PyObject *v2_decode(PyObject *self, PyObject *args);
PyObject *v2_decode_columns(PyObject *self, PyObject *args);
extern const char *v2_inflater_name;

enum { ABSENT = 0, NONE = 1, INT = 2, FLOAT = 3, STR = 4 };
enum { INT_RAW = 0, DEC_RAW = 3, F64_BITS = 6, F64_XOR = 7, MIXED_RAW = 8 };
#define LAYOUT 1
#define HEADER 16
#define MAX_ROWS ((int64_t)1 << 31)
#define EXACT_LIMIT 9007199254740992.0 /* 2**53 */

/* One compressor per level and one decompressor per thread, kept: allocating them costs more
 * than encoding a small stream. (A thread that ends leaves its few hundred kB behind; telemrec's
 * threads are few and long-lived.) */
static __thread struct libdeflate_compressor *compressors[13];
static __thread struct libdeflate_decompressor *decompressor;

static struct libdeflate_compressor *compressor(int level)
{
    if (!compressors[level])
        compressors[level] = libdeflate_alloc_compressor(level);
    return compressors[level];
}

static struct libdeflate_decompressor *inflater(void)
{
    if (!decompressor)
        decompressor = libdeflate_alloc_decompressor();
    return decompressor;
}

static const double POW10[10] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

INLINE uint64_t zigzag(uint64_t x) { return (x << 1) ^ (uint64_t)((int64_t)x >> 63); }
INLINE uint64_t unzigzag(uint64_t u) { return (u >> 1) ^ (0 - (u & 1)); }
INLINE int bitlen(uint64_t u) { return u ? 64 - __builtin_clzll(u) : 0; }

static int width_of(uint64_t top)
{
    if (!top)
        return 0;
    if (top < 256)
        return 1;
    if (top < 65536)
        return 2;
    if (top < ((uint64_t)1 << 32))
        return 4;
    return 8;
}

/* The smallest k in 0..9 with round(x*10**k)/10**k == x bit for bit for every float row, as
 * _codec._decimal_scale: any non-finite value, or a scaled value reaching 2**53 at the k tried,
 * gives -1. */
static int decimal_scale(const uint8_t *kinds, const int64_t *values, int64_t n)
{
    double top = 0;
    for (int64_t i = 0; i < n; i++) {
        if (kinds[i] != FLOAT)
            continue;
        double x;
        memcpy(&x, &values[i], 8);
        if (!isfinite(x))
            return -1;
        if (fabs(x) > top)
            top = fabs(x);
    }
    for (int k = 0; k <= 9; k++) {
        double p = POW10[k];
        int may_overflow = top * p >= EXACT_LIMIT / 2;
        int exact = 1;
        for (int64_t i = 0; i < n; i++) {
            if (kinds[i] != FLOAT)
                continue;
            double x;
            memcpy(&x, &values[i], 8);
            double s = nearbyint(x * p);
            if (fabs(s) >= EXACT_LIMIT)
                return -1;
            if (exact) {
                double back = (double)(int64_t)s / p;
                if (memcmp(&back, &x, 8) != 0) {
                    exact = 0;
                    if (!may_overflow)
                        break;
                }
            }
        }
        if (exact)
            return k;
    }
    return -1;
}

/* residual of row i for a delta order, restarting at each run (wrapping arithmetic) */
static void residuals(const uint64_t *x, uint64_t *r, const int64_t *runs, int64_t n_runs, int order)
{
    int64_t at = 0;
    for (int64_t k = 0; k < n_runs; k++) {
        int64_t len = runs[k];
        const uint64_t *a = x + at;
        uint64_t *o = r + at;
        if (order == 0) {
            memcpy(o, a, (size_t)len * 8);
        } else if (order == 1) {
            o[0] = a[0];
            for (int64_t i = 1; i < len; i++)
                o[i] = a[i] - a[i - 1];
        } else {
            o[0] = a[0];
            if (len > 1)
                o[1] = a[1] - a[0];
            for (int64_t i = 2; i < len; i++)
                o[i] = (a[i] - a[i - 1]) - (a[i - 1] - a[i - 2]);
        }
        at += len;
    }
}

/* sum of the bit lengths of the zigzagged residuals, anchors excluded: _streams._cost */
static uint64_t cost_of(const uint64_t *x, const int64_t *runs, int64_t n_runs, int order)
{
    uint64_t cost = 0;
    int64_t at = 0;
    for (int64_t k = 0; k < n_runs; k++) {
        int64_t len = runs[k];
        const uint64_t *a = x + at;
        if (order == 0) {
            for (int64_t i = 0; i < len; i++)
                cost += bitlen(zigzag(a[i]));
        } else if (order == 1) {
            for (int64_t i = 1; i < len; i++)
                cost += bitlen(zigzag(a[i] - a[i - 1]));
        } else {
            for (int64_t i = 2; i < len; i++)
                cost += bitlen(zigzag((a[i] - a[i - 1]) - (a[i - 1] - a[i - 2])));
        }
        at += len;
    }
    return cost;
}

/* rows without a number repeat the previous number of their run (0 before the first) */
static void fill_forward(const uint8_t *kinds, const uint64_t *in, uint64_t *out, const int64_t *runs, int64_t n_runs,
                         int numeric_kind)
{
    int64_t at = 0;
    for (int64_t k = 0; k < n_runs; k++) {
        uint64_t last = 0;
        for (int64_t i = at; i < at + runs[k]; i++) {
            int numeric = numeric_kind < 0 ? (kinds[i] == INT || kinds[i] == FLOAT) : kinds[i] == numeric_kind;
            if (numeric)
                last = in[i];
            out[i] = last;
        }
        at += runs[k];
    }
}

static void shuffle(const uint64_t *v, int64_t n, int width, uint8_t *out)
{
    for (int b = 0; b < width; b++) {
        uint8_t *o = out + (int64_t)b * n;
        int shift = 8 * b;
        for (int64_t i = 0; i < n; i++)
            o[i] = (uint8_t)(v[i] >> shift);
    }
}

typedef struct {
    int encoding, scale, width, anchor_width, uniform, kind, mask;
    uint8_t *body;
    size_t body_size;
} Encoded;

/* the inflated body of one stream; -1 on memory exhaustion */
static int encode_body(const uint8_t *kinds, const int64_t *values, int64_t n, const int64_t *runs, int64_t n_runs,
                       const uint8_t *strings, size_t strings_size, Encoded *e)
{
    int64_t n_int = 0, n_float = 0;
    e->mask = 0;
    for (int64_t i = 0; i < n; i++) {
        e->mask |= 1 << kinds[i];
        n_int += kinds[i] == INT;
        n_float += kinds[i] == FLOAT;
    }
    e->uniform = n > 0 && (e->mask & (e->mask - 1)) == 0;
    e->kind = e->uniform ? kinds[0] : 255;
    e->encoding = INT_RAW;
    e->scale = 0;
    int order = 0, integer = 0;
    uint64_t *x = malloc((size_t)(n ? n : 1) * 8), *r = malloc((size_t)(n ? n : 1) * 8);
    uint64_t *anchors = malloc((size_t)(n_runs ? n_runs : 1) * 2 * 8);
    if (!x || !r || !anchors) {
        free(x), free(r), free(anchors);
        return -1;
    }
    int64_t n_stored = 0, n_anchors = 0;
    if (n_int && n_float) {
        e->encoding = MIXED_RAW;
        for (int64_t i = 0; i < n; i++)
            r[i] = (kinds[i] == INT || kinds[i] == FLOAT) ? (uint64_t)values[i] : 0;
        n_stored = n;
    } else if (n_float) {
        int k = decimal_scale(kinds, values, n);
        if (k >= 0) {
            double p = POW10[k];
            for (int64_t i = 0; i < n; i++) {
                if (kinds[i] == FLOAT) {
                    double v;
                    memcpy(&v, &values[i], 8);
                    r[i] = (uint64_t)(int64_t)nearbyint(v * p);
                }
            }
            fill_forward(kinds, r, x, runs, n_runs, FLOAT);
            e->encoding = DEC_RAW;
            e->scale = k;
            integer = 1;
        } else {
            fill_forward(kinds, (const uint64_t *)values, x, runs, n_runs, FLOAT);
            int64_t at = 0;
            for (int64_t k2 = 0; k2 < n_runs; k2++) {
                r[at] = x[at];
                for (int64_t i = at + 1; i < at + runs[k2]; i++)
                    r[i] = x[i] ^ x[i - 1];
                at += runs[k2];
            }
            e->encoding = F64_XOR;
            n_stored = n;
        }
    } else if (n_int) {
        fill_forward(kinds, (const uint64_t *)values, x, runs, n_runs, INT);
        integer = 1;
    }
    if (integer) {
        uint64_t best = 0;
        for (int o = 0; o < 3; o++) {
            uint64_t c = cost_of(x, runs, n_runs, o);
            if (o == 0 || (unsigned __int128)c * 50 < (unsigned __int128)best * 49) {
                best = c;
                order = o;
            }
        }
        e->encoding += order;
        residuals(x, r, runs, n_runs, order);
        if (order) {
            int64_t at = 0;
            for (int64_t k = 0; k < n_runs; k++) {
                for (int j = 0; j < order; j++) {
                    uint64_t a = 0;
                    if (runs[k] > j) {
                        a = r[at + j];
                        r[at + j] = 0;
                    }
                    anchors[n_anchors++] = zigzag(a);
                }
                at += runs[k];
            }
        }
        for (int64_t i = 0; i < n; i++)
            r[i] = zigzag(r[i]);
        n_stored = n;
    }
    uint64_t top = 0, atop = 0;
    for (int64_t i = 0; i < n_stored; i++)
        top = r[i] > top ? r[i] : top;
    for (int64_t i = 0; i < n_anchors; i++)
        atop = anchors[i] > atop ? anchors[i] : atop;
    e->width = width_of(top);
    e->anchor_width = width_of(atop);
    size_t size = HEADER + (e->uniform ? 0 : (size_t)n) + (size_t)n_anchors * e->anchor_width
                  + (size_t)n * e->width + strings_size;
    uint8_t *body = malloc(size ? size : 1);
    if (!body) {
        free(x), free(r), free(anchors);
        return -1;
    }
    uint8_t *p = body;
    p[0] = LAYOUT, p[1] = e->uniform ? 0 : 1, p[2] = (uint8_t)e->kind, p[3] = (uint8_t)e->encoding;
    p[4] = (uint8_t)e->scale, p[5] = (uint8_t)e->width, p[6] = (uint8_t)e->anchor_width, p[7] = 0;
    uint32_t rows32 = (uint32_t)n, runs32 = (uint32_t)n_runs;
    for (int b = 0; b < 4; b++)
        p[8 + b] = (uint8_t)(rows32 >> (8 * b)), p[12 + b] = (uint8_t)(runs32 >> (8 * b));
    p += HEADER;
    if (!e->uniform) {
        memcpy(p, kinds, (size_t)n);
        p += n;
    }
    if (e->anchor_width) {
        shuffle(anchors, n_anchors, e->anchor_width, p);
        p += n_anchors * e->anchor_width;
    }
    if (e->width) {
        shuffle(r, n, e->width, p);
        p += n * e->width;
    }
    if (strings_size)
        memcpy(p, strings, strings_size);
    free(x), free(r), free(anchors);
    e->body = body;
    e->body_size = size;
    return 0;
}

static int check_runs(const int64_t *runs, int64_t n_runs, int64_t n)
{
    int64_t total = 0;
    for (int64_t k = 0; k < n_runs; k++) {
        if (runs[k] <= 0 || runs[k] > n)
            return -1;
        total += runs[k];
    }
    return total == n ? 0 : -1;
}

static int get_buffer(PyObject *obj, Py_buffer *view, const char *what, int writable, Py_ssize_t itemsize)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->len % itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: a buffer of %zd-byte items is needed", what, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* encode(kinds, values, runs, strings, level) -> (stream, encoding, scale, width, raw_size, kinds_mask)
 * kinds: uint8[n]; values: int64[n], packed (an INT row's int, a FLOAT row's bits); runs: int64[r];
 * strings: the body's strings section (bytes, empty when no row is a str). */
static PyObject *encode(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *ko, *vo, *ro;
    Py_buffer strings;
    int level;
    if (!PyArg_ParseTuple(args, "OOOy*i", &ko, &vo, &ro, &strings, &level))
        return NULL;
    Py_buffer kb = {0}, vb = {0}, rb = {0};
    PyObject *result = NULL;
    if (get_buffer(ko, &kb, "kinds", 0, 1) < 0)
        goto done;
    if (get_buffer(vo, &vb, "values", 0, 8) < 0 || get_buffer(ro, &rb, "runs", 0, 8) < 0)
        goto done;
    int64_t n = kb.len, n_runs = rb.len / 8;
    if (vb.len / 8 != n || n >= MAX_ROWS || check_runs(rb.buf, n_runs, n) < 0 || level < 0 || level > 12) {
        PyErr_SetString(PyExc_ValueError, "encode: kinds, values and runs do not fit together");
        goto done;
    }
    Encoded e;
    int failed;
    uint8_t *out = NULL;
    size_t out_size = 0;
    Py_BEGIN_ALLOW_THREADS
    failed = encode_body(kb.buf, vb.buf, n, rb.buf, n_runs, strings.buf, (size_t)strings.len, &e);
    if (!failed) {
        struct libdeflate_compressor *c = compressor(level);
        size_t bound = c ? libdeflate_zlib_compress_bound(c, e.body_size) : 0;
        out = c ? malloc(bound) : NULL;
        out_size = out ? libdeflate_zlib_compress(c, e.body, e.body_size, out, bound) : 0;
        failed = out_size == 0;
        free(e.body);
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        free(out);
        PyErr_NoMemory();
        goto done;
    }
    PyObject *stream = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)out_size);
    free(out);
    if (stream)
        result = Py_BuildValue("(Niiini)", stream, e.encoding, e.scale, e.width, (Py_ssize_t)e.body_size, e.mask);
done:
    PyBuffer_Release(&strings);
    if (kb.obj)
        PyBuffer_Release(&kb);
    if (vb.obj)
        PyBuffer_Release(&vb);
    if (rb.obj)
        PyBuffer_Release(&rb);
    return result;
}

/* -- decoding ------------------------------------------------------------------------------------- */

INLINE uint64_t plane_value(const uint8_t *p, int64_t plane, int width, int64_t j)
{
    uint64_t u = p[j];
    for (int k = 1; k < width; k++)
        u |= (uint64_t)p[k * plane + j] << (8 * k);
    return u;
}

static const char *decode_body(const uint8_t *b, size_t size, const int64_t *runs, int64_t n_runs, int64_t n,
                               uint8_t *kinds, int64_t *values, int as_float, size_t *strings_at)
{
    if (size < HEADER)
        return "the stream ends early";
    int mode = b[1], kind = b[2], encoding = b[3], scale = b[4], width = b[5], anchor_width = b[6];
    uint32_t rows = 0, nr = 0;
    for (int k = 0; k < 4; k++)
        rows |= (uint32_t)b[8 + k] << (8 * k), nr |= (uint32_t)b[12 + k] << (8 * k);
    if (b[0] != LAYOUT)
        return "the stream layout is not 1";
    if ((int64_t)rows != n || (int64_t)nr != n_runs)
        return "the stream's rows or runs differ from the segment's";
    if (mode > 1 || (mode == 0 && kind > STR) || encoding > MIXED_RAW || scale > 9
        || (width != 0 && width != 1 && width != 2 && width != 4 && width != 8)
        || (anchor_width != 0 && anchor_width != 1 && anchor_width != 2 && anchor_width != 4 && anchor_width != 8))
        return "the stream header is not valid";
    int order = encoding <= 2 ? encoding : (encoding <= 5 ? encoding - 3 : 0);
    size_t need = HEADER + (mode ? (size_t)n : 0) + (size_t)n_runs * order * anchor_width + (size_t)n * width;
    if (need > size)
        return "the stream ends early";
    const uint8_t *p = b + HEADER;
    if (mode) {
        for (int64_t i = 0; i < n; i++)
            if (p[i] > STR)
                return "a row has an unknown kind";
        memcpy(kinds, p, (size_t)n);
        p += n;
    } else {
        memset(kinds, kind, (size_t)n);
    }
    const uint8_t *anchors = p;
    int64_t n_anchors = n_runs * order;
    p += n_anchors * anchor_width;
    const uint8_t *data = p;
    uint64_t *out = (uint64_t *)values;
    if (encoding <= 5) {
        int64_t at = 0;
        for (int64_t k = 0; k < n_runs; k++) {
            int64_t len = runs[k];
            uint64_t x = 0, d = 0;
            for (int64_t i = 0; i < len; i++) {
                int64_t j = at + i;
                uint64_t v;
                if (i < order)
                    v = anchor_width ? unzigzag(plane_value(anchors, n_anchors, anchor_width, k * order + i)) : 0;
                else
                    v = width ? unzigzag(plane_value(data, n, width, j)) : 0;
                if (order == 0 || i == 0)
                    x = v, d = v;
                else if (order == 1)
                    x += v;
                else if (i == 1)
                    d = v, x += d;
                else
                    d += v, x += d;
                out[j] = x;
            }
            at += len;
        }
        if (encoding >= DEC_RAW || as_float) {
            double div = POW10[encoding >= DEC_RAW ? scale : 0];
            for (int64_t j = 0; j < n; j++) {
                double f = encoding >= DEC_RAW ? (double)(int64_t)out[j] / div : (double)(int64_t)out[j];
                memcpy(&out[j], &f, 8);
            }
        }
    } else if (encoding == F64_XOR) {
        int64_t at = 0;
        for (int64_t k = 0; k < n_runs; k++) {
            uint64_t acc = 0;
            for (int64_t i = at; i < at + runs[k]; i++)
                out[i] = acc = (i == at ? 0 : acc) ^ (width ? plane_value(data, n, width, i) : 0);
            at += runs[k];
        }
    } else {
        for (int64_t j = 0; j < n; j++)
            out[j] = width ? plane_value(data, n, width, j) : 0;
        if (as_float)
            for (int64_t j = 0; j < n; j++)
                if (kinds[j] == INT) {
                    double f = (double)(int64_t)out[j];
                    memcpy(&out[j], &f, 8);
                }
    }
    if (as_float) {
        const double nan = NAN;
        for (int64_t j = 0; j < n; j++)
            if (kinds[j] != INT && kinds[j] != FLOAT)
                memcpy(&out[j], &nan, 8);
    }
    *strings_at = need;
    return NULL;
}

/* decode(stream, raw_size, runs, kinds_out, values_out, as_float) -> (encoding, strings_offset, body or None)
 * kinds_out: uint8[n]; values_out: int64/float64[n]; the body is returned only when rows are str
 * (its strings section, from strings_offset, is parsed by the caller). */
static PyObject *decode(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer stream;
    Py_ssize_t raw;
    PyObject *ro, *ko, *vo;
    int as_float;
    if (!PyArg_ParseTuple(args, "y*nOOOp", &stream, &raw, &ro, &ko, &vo, &as_float))
        return NULL;
    Py_buffer rb = {0}, kb = {0}, vb = {0};
    PyObject *result = NULL;
    uint8_t *body = NULL;
    if (get_buffer(ro, &rb, "runs", 0, 8) < 0 || get_buffer(ko, &kb, "kinds", 1, 1) < 0
        || get_buffer(vo, &vb, "values", 1, 8) < 0)
        goto done;
    int64_t n = kb.len, n_runs = rb.len / 8;
    if (vb.len / 8 != n || n >= MAX_ROWS || check_runs(rb.buf, n_runs, n) < 0 || raw < HEADER || raw > ((Py_ssize_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "decode: runs, outputs and raw size do not fit together");
        goto done;
    }
    const char *problem = NULL;
    size_t strings_at = 0;
    body = malloc((size_t)raw);
    if (!body) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    struct libdeflate_decompressor *z = inflater();
    if (!z || libdeflate_zlib_decompress(z, stream.buf, (size_t)stream.len, body, (size_t)raw, NULL) != LIBDEFLATE_SUCCESS)
        problem = "the stream does not inflate to its size";
    if (!problem)
        problem = decode_body(body, (size_t)raw, rb.buf, n_runs, n, kb.buf, vb.buf, as_float, &strings_at);
    Py_END_ALLOW_THREADS
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        goto done;
    }
    int has_str = 0;
    for (int64_t i = 0; i < n && !has_str; i++)
        has_str = ((uint8_t *)kb.buf)[i] == STR;
    if (has_str || strings_at != (size_t)raw) {
        PyObject *tail = PyBytes_FromStringAndSize((const char *)body + strings_at, raw - (Py_ssize_t)strings_at);
        if (tail)
            result = Py_BuildValue("(iN)", (int)body[3], tail);
    } else {
        result = Py_BuildValue("(iO)", (int)body[3], Py_None);
    }
done:
    free(body);
    PyBuffer_Release(&stream);
    if (rb.obj)
        PyBuffer_Release(&rb);
    if (kb.obj)
        PyBuffer_Release(&kb);
    if (vb.obj)
        PyBuffer_Release(&vb);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "Encode one column of a segment into a compressed stream (see the module source)."},
    {"decode", decode, METH_VARARGS, "Inflate and decode one stream (see the module source)."},
    {"decode_v2", v2_decode, METH_VARARGS, "Decode format 1/2 chunks (see _ccodec_v2.c)."},
    {"decode_columns_v2", v2_decode_columns, METH_VARARGS, "Read, inflate and decode format 1/2 columns (see _ccodec_v2.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_ccodec", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__ccodec(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddStringConstant(m, "INFLATER", v2_inflater_name) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
