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

#include "structmember.h"

#include "libdeflate.h"
#include "_ccodec_common.h"
#include "_ccodec_stream.h"

#define INLINE static inline __attribute__((always_inline))

INLINE uint64_t plane_value(const uint8_t *p, int64_t plane, int width, int64_t j)
{
    uint64_t u = p[j];
    for (int k = 1; k < width; k++)
        u |= (uint64_t)p[k * plane + j] << (8 * k);
    return u;
}

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

/* list.append(int(value)); -1 on failure */
static int append_size(PyObject *list, Py_ssize_t value)
{
    PyObject *num = PyLong_FromSsize_t(value);
    int bad = !num || PyList_Append(list, num) < 0;
    Py_XDECREF(num);
    return bad ? -1 : 0;
}

/* The strings section of a body from a column's str values (``_streams.strings_section``):
 * u32 count, u32 repeats[count], u32 lengths[count], then the UTF-8 (surrogatepass) of the first
 * value of each run of equal consecutive str rows. ``strs`` an object array of n (None: no str). */
static PyObject *strings_section_of(const uint8_t *kinds, Py_ssize_t n, PyObject *strs)
{
    if (strs == Py_None)
        return PyBytes_FromStringAndSize(NULL, 0);
    Py_buffer ob = {0};
    if (PyObject_GetBuffer(strs, &ob, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    PyObject *out = NULL, *runs = NULL;
    uint32_t *repeats = NULL;
    if (!ob.format || strcmp(ob.format, "O") != 0 || ob.itemsize != (Py_ssize_t)sizeof(PyObject *) ||
        ob.len / ob.itemsize != n) {
        PyErr_SetString(PyExc_ValueError, "encode_many: a column's strings are not an object array of its rows");
        goto done;
    }
    PyObject **items = ob.buf;
    Py_ssize_t count = 0, total = 0;
    PyObject *last = NULL;
    runs = PyList_New(0);  /* the encoded first value of each run; its rows in repeats */
    repeats = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    if (!runs || !repeats) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t r = 0; r <= n; r++) {
        PyObject *v = NULL;
        if (r < n) {
            if (kinds[r] != STR)
                continue;
            v = items[r];
            if (!v || !PyUnicode_Check(v)) {
                PyErr_SetString(PyExc_TypeError, "encode_many: a str row's value is not a str");
                goto done;
            }
            if (last && (v == last || PyUnicode_Compare(v, last) == 0)) {
                repeats[count - 1]++;
                continue;
            }
            if (PyErr_Occurred())
                goto done;
        }
        if (!v)
            break;
        PyObject *b = PyUnicode_AsEncodedString(v, "utf-8", "surrogatepass");
        if (!b || PyList_Append(runs, b) < 0) {
            Py_XDECREF(b);
            goto done;
        }
        total += PyBytes_GET_SIZE(b);
        Py_DECREF(b);
        last = v, repeats[count++] = 1;
    }
    if (!count) {
        out = PyBytes_FromStringAndSize(NULL, 0);
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, 4 + 8 * count + total);
    if (!out)
        goto done;
    uint8_t *w = (uint8_t *)PyBytes_AS_STRING(out);
    uint32_t c32 = (uint32_t)count;
    memcpy(w, &c32, 4);  /* little-endian hosts only, as the rest of this codec */
    for (Py_ssize_t i = 0; i < count; i++) {
        uint32_t len = (uint32_t)PyBytes_GET_SIZE(PyList_GET_ITEM(runs, i));
        memcpy(w + 4 + 4 * i, &repeats[i], 4);
        memcpy(w + 4 + 4 * count + 4 * i, &len, 4);
    }
    uint8_t *at = w + 4 + 8 * count;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *b = PyList_GET_ITEM(runs, i);
        memcpy(at, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        at += PyBytes_GET_SIZE(b);
    }
done:
    Py_XDECREF(runs);
    PyMem_Free(repeats);
    PyBuffer_Release(&ob);
    return out;
}

/* One column of a segment as its stream (encode_many's work for one column; _ccodec_segment.c
 * shares it): 1 with *out filled (out->buf and out->run_masks malloc'ed, the caller frees them),
 * 0 when every row is absent (no stream), -1 with an exception set. ``strs`` the body's strings
 * section (bytes) or the column's str values (an object array, or None). With ``want_masks``,
 * a stream whose rows hold several kinds gets each run's kinds (bits 1 << kind) in run_masks. */
int ccodec_encode_column(PyObject *ko, PyObject *vo, PyObject *so, const int64_t *runs, int64_t n_runs, int level,
                         int want_masks, EncodedStream *out)
{
    memset(out, 0, sizeof(*out));
    Py_buffer kb = {0}, vb = {0}, sb = {0};
    if (get_buffer(ko, &kb, "kinds", 0, 1) < 0)
        return -1;
    PyObject *section = PyBytes_Check(so) ? Py_NewRef(so) : strings_section_of(kb.buf, kb.len, so);
    if (!section || get_buffer(vo, &vb, "values", 0, 8) < 0 || PyObject_GetBuffer(section, &sb, PyBUF_SIMPLE) < 0) {
        Py_XDECREF(section);
        PyBuffer_Release(&kb);
        if (vb.obj)
            PyBuffer_Release(&vb);
        return -1;
    }
    const uint8_t *kinds = kb.buf;
    int64_t n = kb.len;
    int result = -1;
    int bad = vb.len / 8 != n || n >= MAX_ROWS || check_runs(runs, n_runs, n) < 0;
    int any = 0;
    for (int64_t r = 0; !bad && r < n && !any; r++)
        any = kinds[r] != ABSENT;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "encode_many: kinds, values and runs do not fit together");
    } else if (!any) {
        result = 0;
    } else {
        Encoded e;
        int failed;
        uint8_t *buf = NULL;
        size_t size = 0;
        Py_BEGIN_ALLOW_THREADS
        failed = encode_body(kinds, vb.buf, n, runs, n_runs, sb.buf, (size_t)sb.len, &e);
        if (!failed) {
            struct libdeflate_compressor *c = compressor(level);
            size_t bound = c ? libdeflate_zlib_compress_bound(c, e.body_size) : 0;
            buf = c ? malloc(bound) : NULL;
            size = buf ? libdeflate_zlib_compress(c, e.body, e.body_size, buf, bound) : 0;
            failed = size == 0;
            free(e.body);
            if (!failed) {
                out->buf = buf, out->size = size, out->crc = libdeflate_crc32(0, buf, size);
                out->raw = e.body_size, out->encoding = e.encoding, out->scale = e.scale, out->width = e.width;
                out->mask = e.mask;
                if (want_masks && (e.mask & (e.mask - 1))) {
                    out->run_masks = malloc((size_t)(n_runs ? n_runs : 1) * sizeof(int64_t));
                    failed = out->run_masks == NULL;
                    for (int64_t k = 0, row = 0; !failed && k < n_runs; k++) {
                        int64_t m = 0;
                        for (int64_t end = row + runs[k]; row < end; row++)
                            m |= (int64_t)1 << kinds[row];
                        out->run_masks[k] = m;
                    }
                }
            }
        }
        Py_END_ALLOW_THREADS
        if (failed) {
            free(buf);
            free(out->run_masks);
            memset(out, 0, sizeof(*out));
            PyErr_NoMemory();
        } else {
            result = 1;
        }
    }
    PyBuffer_Release(&kb);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&sb);
    Py_DECREF(section);
    return result;
}

/* encode_many(columns, runs, level) -> [None | (stream, encoding, scale, width, raw_size, kinds_mask, crc32)]
 * The columns of one segment in one call, each a compressed stream: ``columns`` a list of
 * (kinds, values, strings), kinds uint8[n], values int64[n] packed (an INT row's int, a FLOAT
 * row's bits), strings the body's strings section (bytes, empty when no row is a str) or the
 * column's str values (an object array of n, or None), of which it is made here; runs
 * int64[r], rows per run. A column whose rows are all absent gives None (it gets no stream). */
static PyObject *encode_many(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *columns, *ro;
    int level;
    if (!PyArg_ParseTuple(args, "O!Oi", &PyList_Type, &columns, &ro, &level))
        return NULL;
    Py_buffer rb = {0};
    if (get_buffer(ro, &rb, "runs", 0, 8) < 0)
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(columns);
    PyObject *out = PyList_New(count);
    if (!out || level < 0 || level > 12) {
        if (out)
            PyErr_SetString(PyExc_ValueError, "encode_many: level outside 0-12");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(columns, i);
        PyObject *ko, *vo, *so;
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "OOO", &ko, &vo, &so)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "encode_many: a column is not (kinds, values, strings)");
            goto fail;
        }
        EncodedStream st;
        int got = ccodec_encode_column(ko, vo, so, rb.buf, rb.len / 8, level, 0, &st);
        if (got < 0)
            goto fail;
        PyObject *entry = Py_NewRef(Py_None);
        if (got) {
            Py_DECREF(entry);
            PyObject *stream = PyBytes_FromStringAndSize((const char *)st.buf, (Py_ssize_t)st.size);
            free(st.buf);
            entry = stream ? Py_BuildValue("(NiiiniI)", stream, st.encoding, st.scale, st.width, (Py_ssize_t)st.raw,
                                           st.mask, (unsigned int)st.crc) : NULL;
            if (!entry)
                goto fail;
        }
        PyList_SET_ITEM(out, i, entry);
    }
    PyBuffer_Release(&rb);
    return out;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&rb);
    return NULL;
}

/* -- decoding ------------------------------------------------------------------------------------- */

typedef struct {
    int mode, kind, encoding, scale, width, anchor_width, order;
    const uint8_t *kinds;    /* per-row kinds, or NULL when uniform */
    const uint8_t *anchors;  /* n_runs * order values, shuffled */
    const uint8_t *numbers;  /* n values, shuffled */
    int64_t n, n_runs;
    size_t strings_at;       /* offset of the strings section in the body */
} Body;

static const char *parse_body(const uint8_t *b, size_t size, int64_t n, int64_t n_runs, Body *h)
{
    if (size < HEADER)
        return "the stream ends early";
    h->mode = b[1], h->kind = b[2], h->encoding = b[3], h->scale = b[4], h->width = b[5], h->anchor_width = b[6];
    uint32_t rows = 0, nr = 0;
    for (int k = 0; k < 4; k++)
        rows |= (uint32_t)b[8 + k] << (8 * k), nr |= (uint32_t)b[12 + k] << (8 * k);
    if (b[0] != LAYOUT)
        return "the stream layout is not 1";
    if ((int64_t)rows != n || (int64_t)nr != n_runs)
        return "the stream's rows or runs differ from the segment's";
    int w = h->width, aw = h->anchor_width;
    if (h->mode > 1 || (h->mode == 0 && h->kind > STR) || h->encoding > MIXED_RAW || h->scale > 9
        || (w != 0 && w != 1 && w != 2 && w != 4 && w != 8) || (aw != 0 && aw != 1 && aw != 2 && aw != 4 && aw != 8))
        return "the stream header is not valid";
    h->order = h->encoding <= 2 ? h->encoding : (h->encoding <= 5 ? h->encoding - 3 : 0);
    size_t need = HEADER + (h->mode ? (size_t)n : 0) + (size_t)n_runs * h->order * aw + (size_t)n * w;
    if (need > size)
        return "the stream ends early";
    const uint8_t *p = b + HEADER;
    h->kinds = NULL;
    if (h->mode) {
        for (int64_t i = 0; i < n; i++)
            if (p[i] > STR)
                return "a row has an unknown kind";
        h->kinds = p;
        p += n;
    }
    h->anchors = p;
    p += n_runs * h->order * aw;
    h->numbers = p;
    h->n = n, h->n_runs = n_runs;
    h->strings_at = need;
    return NULL;
}

/* the stored numbers of rows [j0, j1), unshuffled into out[0 .. j1 - j0) */
static void unshuffle(const uint8_t *planes, int64_t n, int width, int64_t j0, int64_t j1, uint64_t *out)
{
    int64_t m = j1 - j0;
    const uint8_t *p = planes + j0;
    switch (width) {
    case 0:
        memset(out, 0, (size_t)m * 8);
        break;
    case 1:
        for (int64_t i = 0; i < m; i++)
            out[i] = p[i];
        break;
    case 2:
        for (int64_t i = 0; i < m; i++)
            out[i] = (uint64_t)p[i] | (uint64_t)p[n + i] << 8;
        break;
    case 4:
        for (int64_t i = 0; i < m; i++)
            out[i] = (uint64_t)p[i] | (uint64_t)p[n + i] << 8 | (uint64_t)p[2 * n + i] << 16 | (uint64_t)p[3 * n + i] << 24;
        break;
    default:
        for (int64_t i = 0; i < m; i++) {
            uint64_t u = 0;
            for (int k = 0; k < 8; k++)
                u |= (uint64_t)p[k * n + i] << (8 * k);
            out[i] = u;
        }
    }
}

/* The stored value j of a run from its ``width`` byte planes (``n`` bytes apart). */
#define GATHER(p, n, w, j) \
    ((w) == 1 ? (uint64_t)(p)[j] \
     : (w) == 2 ? ((uint64_t)(p)[j] | (uint64_t)(p)[(n) + (j)] << 8) \
     : (w) == 4 ? ((uint64_t)(p)[j] | (uint64_t)(p)[(n) + (j)] << 8 | (uint64_t)(p)[2 * (n) + (j)] << 16 \
                   | (uint64_t)(p)[3 * (n) + (j)] << 24) \
     : plane_value(p, n, 8, j))

/* Integer runs: rows [0, b) of one run of a delta order, the first ``order`` from ``first``; rows
 * [a, b) written to out (wrapping int64 arithmetic, like NumPy's cumsum). One pass per width and
 * order, so the compiler keeps each loop free of branches. */
#define DELTA_LOOP(W) \
    static void delta_w##W(const uint8_t *p, int64_t n, int order, const uint64_t *first, int64_t a, int64_t b, \
                           uint64_t *out) \
    { \
        uint64_t x = 0, d = 0; \
        int64_t i = 0; \
        for (; i < b && i < (order > 0 ? order : 1); i++) { \
            uint64_t v = order > i ? first[i] : unzigzag(GATHER(p, n, W, i)); \
            if (i == 0) \
                x = d = v; \
            else \
                d = v, x += d; \
            if (i >= a) \
                out[i - a] = x; \
        } \
        if (order == 0) { \
            for (; i < b; i++) \
                if (i >= a) \
                    out[i - a] = unzigzag(GATHER(p, n, W, i)); \
        } else if (order == 1) { \
            for (; i < a; i++) \
                x += unzigzag(GATHER(p, n, W, i)); \
            for (; i < b; i++) \
                out[i - a] = (x += unzigzag(GATHER(p, n, W, i))); \
        } else { \
            for (; i < a; i++) \
                x += (d += unzigzag(GATHER(p, n, W, i))); \
            for (; i < b; i++) \
                out[i - a] = (x += (d += unzigzag(GATHER(p, n, W, i)))); \
        } \
    }
DELTA_LOOP(1)
DELTA_LOOP(2)
DELTA_LOOP(4)
DELTA_LOOP(8)

static void delta_w0(int order, const uint64_t *first, int64_t a, int64_t b, uint64_t *out)
{
    /* every stored residual is 0: x0, x0 + d0, x0 + 2 d0, ... */
    uint64_t x = order ? first[0] : 0, d = order == 2 ? first[1] : 0;
    for (int64_t i = 0; i < b; i++) {
        if (i)
            x += d;
        if (i >= a)
            out[i - a] = x;
    }
}

/* Rows [a, b) of run k (its first row is ``start``) into out (int64 packed values, or float64 with
 * NaN where a row holds no number) and kinds_out (when not NULL). */
static void decode_run(const Body *h, int64_t k, int64_t start, int64_t a, int64_t b, uint64_t *out,
                       uint8_t *kinds_out, int as_float, uint64_t *scratch)
{
    int enc = h->encoding, order = h->order, w = h->width;
    const uint8_t *p = h->numbers + start;
    if (enc <= 5) {
        uint64_t first[2] = {0, 0};
        for (int i = 0; i < order; i++)
            first[i] = h->anchor_width ? unzigzag(plane_value(h->anchors, h->n_runs * order, h->anchor_width, k * order + i)) : 0;
        switch (w) {
        case 0: delta_w0(order, first, a, b, out); break;
        case 1: delta_w1(p, h->n, order, first, a, b, out); break;
        case 2: delta_w2(p, h->n, order, first, a, b, out); break;
        case 4: delta_w4(p, h->n, order, first, a, b, out); break;
        default: delta_w8(p, h->n, order, first, a, b, out); break;
        }
        if (enc >= DEC_RAW)
            to_double(out, b - a, POW10[h->scale]);
        else if (as_float)
            to_double(out, b - a, 1.0);
    } else {
        unshuffle(h->numbers, h->n, w, start, start + b, scratch);
        if (enc == F64_XOR) {
            uint64_t acc = 0;
            for (int64_t i = 0; i < b; i++)
                scratch[i] = acc ^= scratch[i];
        }
        memcpy(out, scratch + a, (size_t)(b - a) * 8);
        if (as_float && enc != F64_XOR) {
            for (int64_t i = a; i < b; i++)
                if ((h->kinds ? h->kinds[start + i] : h->kind) == INT) {
                    double f = (double)(int64_t)out[i - a];
                    memcpy(&out[i - a], &f, 8);
                }
        }
    }
    if (h->kinds) {
        if (kinds_out)
            memcpy(kinds_out, h->kinds + start + a, (size_t)(b - a));
        if (as_float) {
            const double nan = NAN;
            for (int64_t i = a; i < b; i++) {
                uint8_t kd = h->kinds[start + i];
                if (kd != INT && kd != FLOAT)
                    memcpy(&out[i - a], &nan, 8);
            }
        }
    } else {
        if (kinds_out)
            memset(kinds_out, h->kind, (size_t)(b - a));
        if (as_float && h->kind != INT && h->kind != FLOAT) {
            const double nan = NAN;
            for (int64_t i = a; i < b; i++)
                memcpy(&out[i - a], &nan, 8);
        }
    }
}

typedef struct {
    int64_t run, a, b;       /* rows [a, b) of run ``run`` */
    uint64_t *out;
    uint8_t *kinds;
    Py_buffer view, kview;
} Dest;

static int inflate_checked(const uint8_t *stream, size_t size, uint32_t crc, uint8_t *body, size_t raw,
                           const char **problem)
{
    if (libdeflate_crc32(0, stream, size) != crc) {
        *problem = "the stream's bytes fail their CRC-32";
        return -1;
    }
    struct libdeflate_decompressor *z = inflater();
    if (!z || libdeflate_zlib_decompress(z, stream, size, body, raw, NULL) != LIBDEFLATE_SUCCESS) {
        *problem = "the stream does not inflate to its size";
        return -1;
    }
    return 0;
}

/* The first row of every run (malloc'd; the caller frees it), their total and the longest, after
 * checking the runs and the stream's raw size; NULL with an exception set when they are not valid. */
static int64_t *run_starts(const int64_t *runs, int64_t n_runs, Py_ssize_t raw, int64_t *n, int64_t *longest)
{
    int64_t *starts = malloc((size_t)(n_runs ? n_runs : 1) * 8);
    if (!starts)
        return (int64_t *)PyErr_NoMemory();
    *n = *longest = 0;
    for (int64_t k = 0; k < n_runs; k++) {
        if (runs[k] <= 0 || runs[k] >= MAX_ROWS || *n >= MAX_ROWS) {
            PyErr_SetString(PyExc_ValueError, "decode: the runs are not valid");
            free(starts);
            return NULL;
        }
        starts[k] = *n;
        *n += runs[k];
        *longest = runs[k] > *longest ? runs[k] : *longest;
    }
    if (raw < HEADER || raw > ((Py_ssize_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "decode: the raw size is not valid");
        free(starts);
        return NULL;
    }
    return starts;
}

/* What decode() returns once the runs are decoded: None, or the body's strings section (bytes) when a
 * row is a str or the section is not empty. */
static PyObject *strings_section(const Body *h, const uint8_t *body, Py_ssize_t raw, int64_t n)
{
    int has_str = h->kinds ? memchr(h->kinds, STR, (size_t)n) != NULL : (h->kind == STR && n > 0);
    if (has_str || h->strings_at != (size_t)raw)
        return PyBytes_FromStringAndSize((const char *)body + h->strings_at, raw - (Py_ssize_t)h->strings_at);
    return Py_NewRef(Py_None);
}

/* Check, inflate and parse the stream, decode every destination's rows (the GIL released), and
 * return what decode() returns; NULL with an exception set when the stream is damaged. */
static PyObject *decode_dests(const Py_buffer *stream, Py_ssize_t raw, unsigned long crc, int64_t n_runs,
                              const int64_t *starts, int64_t n, int64_t longest, const Dest *dests, Py_ssize_t n_dest,
                              int as_float)
{
    PyObject *result = NULL;
    uint8_t *body = malloc((size_t)raw);
    uint64_t *scratch = malloc((size_t)(longest ? longest : 1) * 8);
    if (!body || !scratch) {
        PyErr_NoMemory();
        goto done;
    }
    const char *problem = NULL;
    Body h;
    Py_BEGIN_ALLOW_THREADS
    if (inflate_checked(stream->buf, (size_t)stream->len, (uint32_t)crc, body, (size_t)raw, &problem) == 0)
        problem = parse_body(body, (size_t)raw, n, n_runs, &h);
    if (!problem)
        for (Py_ssize_t i = 0; i < n_dest; i++) {
            const Dest *d = &dests[i];
            if (d->b > d->a)
                decode_run(&h, d->run, starts[d->run], d->a, d->b, d->out, d->kinds, as_float, scratch);
        }
    Py_END_ALLOW_THREADS
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        goto done;
    }
    result = strings_section(&h, body, raw, n);
done:
    free(body), free(scratch);
    return result;
}

/* decode(stream, raw_size, crc, runs, dests, as_float) -> None, or the body's strings section (bytes)
 *   when a row is a str: ``dests`` is a list of (run, a, b, out, kinds_out or None): rows [a, b) of
 *   run ``run`` go to ``out`` (int64 or float64 buffer of b - a items) and ``kinds_out`` (uint8).
 * Runs that no destination asks for are not decoded (deltas restart at every run). */
static PyObject *decode(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer stream;
    Py_ssize_t raw;
    unsigned long crc;
    PyObject *ro, *dl;
    int as_float;
    if (!PyArg_ParseTuple(args, "y*nkOO!p", &stream, &raw, &crc, &ro, &PyList_Type, &dl, &as_float))
        return NULL;
    Py_buffer rb = {0};
    PyObject *result = NULL;
    int64_t *starts = NULL;
    Py_ssize_t n_dest = PyList_GET_SIZE(dl), made = 0;
    Dest *dests = calloc((size_t)(n_dest ? n_dest : 1), sizeof(Dest));
    if (!dests) {
        PyErr_NoMemory();
        goto done;
    }
    if (get_buffer(ro, &rb, "runs", 0, 8) < 0)
        goto done;
    int64_t n_runs = rb.len / 8, n = 0, longest = 0;
    const int64_t *runs = rb.buf;
    if (!(starts = run_starts(runs, n_runs, raw, &n, &longest)))
        goto done;
    for (; made < n_dest; made++) {
        Dest *d = &dests[made];
        PyObject *ko = Py_None, *oo;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(dl, made), "LLLO|O", &d->run, &d->a, &d->b, &oo, &ko))
            goto done;
        if (get_buffer(oo, &d->view, "out", 1, 8) < 0)
            goto done;
        if (ko != Py_None && get_buffer(ko, &d->kview, "kinds_out", 1, 1) < 0)
            goto done;
        if (d->run < 0 || d->run >= n_runs || d->a < 0 || d->a > d->b || d->b > runs[d->run]
            || d->view.len / 8 < d->b - d->a || (ko != Py_None && d->kview.len < d->b - d->a)) {
            PyErr_SetString(PyExc_ValueError, "decode: a destination does not fit its run");
            made++;
            goto done;
        }
        d->out = d->view.buf;
        d->kinds = ko != Py_None ? d->kview.buf : NULL;
    }
    result = decode_dests(&stream, raw, crc, n_runs, starts, n, longest, dests, n_dest, as_float);
done:
    for (Py_ssize_t i = 0; i < made && dests; i++) {
        if (dests[i].view.obj)
            PyBuffer_Release(&dests[i].view);
        if (dests[i].kview.obj)
            PyBuffer_Release(&dests[i].kview);
    }
    free(dests), free(starts);
    PyBuffer_Release(&stream);
    if (rb.obj)
        PyBuffer_Release(&rb);
    return result;
}

/* decode_into(stream, raw_size, crc, runs, dests, outs, as_float) -> None, or the strings section
 *   like decode(). ``dests``: a C-contiguous int64 array of rows (run, a, b, out, at): rows [a, b) of
 *   run ``run`` go to items [at, at + b - a) of ``outs[out]`` (writable buffers of 8-byte items; the
 *   loaders' 2-D blocks). One array instead of a tuple and a view per destination: a load of many
 *   entities asks for thousands of them, and building those in Python cost more than decoding. */
static PyObject *decode_into(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer stream, rb = {0}, db = {0};
    Py_ssize_t raw;
    unsigned long crc;
    PyObject *ro, *dobj, *ol;
    int as_float;
    if (!PyArg_ParseTuple(args, "y*nkOOO!p", &stream, &raw, &crc, &ro, &dobj, &PyList_Type, &ol, &as_float))
        return NULL;
    PyObject *result = NULL;
    int64_t *starts = NULL;
    Dest *targets = NULL;
    Py_ssize_t n_out = PyList_GET_SIZE(ol), opened = 0;
    Py_buffer *outs = calloc((size_t)(n_out ? n_out : 1), sizeof(Py_buffer));
    if (!outs) {
        PyErr_NoMemory();
        goto done;
    }
    if (get_buffer(ro, &rb, "runs", 0, 8) < 0 || get_buffer(dobj, &db, "dests", 0, 8) < 0)
        goto done;
    for (; opened < n_out; opened++)
        if (get_buffer(PyList_GET_ITEM(ol, opened), &outs[opened], "out", 1, 8) < 0)
            goto done;
    int64_t n_runs = rb.len / 8, n = 0, longest = 0, n_dest = db.len / 40;
    const int64_t *runs = rb.buf, *dest = db.buf;
    if (db.len % 40) {
        PyErr_SetString(PyExc_ValueError, "decode_into: dests is not rows of (run, a, b, out, at)");
        goto done;
    }
    if (!(starts = run_starts(runs, n_runs, raw, &n, &longest)))
        goto done;
    for (int64_t i = 0; i < n_dest; i++) {
        const int64_t *d = dest + 5 * i;
        if (d[0] < 0 || d[0] >= n_runs || d[1] < 0 || d[1] > d[2] || d[2] > runs[d[0]] || d[3] < 0 || d[3] >= n_out
            || d[4] < 0 || d[4] > outs[d[3]].len / 8 - (d[2] - d[1])) {
            PyErr_SetString(PyExc_ValueError, "decode: a destination does not fit its run");
            goto done;
        }
    }
    if (!(targets = calloc((size_t)(n_dest ? n_dest : 1), sizeof(Dest)))) {
        PyErr_NoMemory();
        goto done;
    }
    for (int64_t i = 0; i < n_dest; i++) {
        const int64_t *d = dest + 5 * i;
        targets[i].run = d[0], targets[i].a = d[1], targets[i].b = d[2];
        targets[i].out = (uint64_t *)outs[d[3]].buf + d[4];
    }
    result = decode_dests(&stream, raw, crc, n_runs, starts, n, longest, targets, n_dest, as_float);
done:
    for (Py_ssize_t i = 0; i < opened; i++)
        PyBuffer_Release(&outs[i]);
    free(outs), free(targets), free(starts);
    PyBuffer_Release(&stream);
    if (rb.obj)
        PyBuffer_Release(&rb);
    if (db.obj)
        PyBuffer_Release(&db);
    return result;
}

/* -- records --------------------------------------------------------------------------------------- */

/* The member offsets of a slotted class's attributes (RawRecord's), or -1 when one is not a slot. */
static int slot_offsets(PyTypeObject *cls, const char *const *names, int count, Py_ssize_t *offsets)
{
    for (int i = 0; i < count; i++) {
        PyObject *descr = PyDict_GetItemString(cls->tp_dict, names[i]);
        if (!descr || !PyObject_TypeCheck(descr, &PyMemberDescr_Type))
            return -1;
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX && member->type != T_OBJECT)
            return -1;
        offsets[i] = member->offset;
    }
    return 0;
}

/* One column of build_records' input: a list of n objects, or a float64/int64 array whose items
 * become Python objects here, a repeated value sharing the object of the row before (telemetry
 * repeats itself: zero counters, constant clocks), which spares an allocation and a free. */
typedef struct {
    PyObject *list;  /* borrowed, or NULL for an array */
    Py_buffer view;
    char kind;       /* 'L' list, 'd' float64, 'q' int64 */
    PyObject *last;  /* owned: the object made for the row before, when an array */
    uint64_t last_bits;
} column_t;

static int column_open(column_t *c, PyObject *obj, Py_ssize_t n, const char *what)
{
    memset(c, 0, sizeof(*c));
    if (PyList_Check(obj)) {
        c->kind = 'L', c->list = obj;
        if (PyList_GET_SIZE(obj) == n)
            return 0;
    } else if (PyObject_GetBuffer(obj, &c->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
        const char *f = c->view.format ? c->view.format : "B";
        if (*f == '<' || *f == '=' || *f == '@')
            f++;
        c->kind = (f[0] == 'd' && !f[1]) ? 'd' : ((f[0] == 'q' || f[0] == 'l') && !f[1]) ? 'q' : 0;
        if (c->kind && c->view.itemsize == 8 && c->view.len == 8 * n)
            return 0;
    } else {
        return -1;
    }
    if (c->view.obj)
        PyBuffer_Release(&c->view);
    PyErr_Format(PyExc_ValueError, "build_records: %s is not a list or float64/int64 array of n items", what);
    return -1;
}

/* Row i's object, a new reference. */
static PyObject *column_item(column_t *c, Py_ssize_t i)
{
    if (c->kind == 'L')
        return Py_NewRef(PyList_GET_ITEM(c->list, i));
    uint64_t bits = ((const uint64_t *)c->view.buf)[i];
    if (!c->last || bits != c->last_bits) {
        double d;
        memcpy(&d, &bits, 8);
        PyObject *made = c->kind == 'd' ? PyFloat_FromDouble(d) : PyLong_FromLongLong((long long)bits);
        if (!made)
            return NULL;
        Py_XSETREF(c->last, made);
        c->last_bits = bits;
    }
    return Py_NewRef(c->last);
}

static void column_close(column_t *c)
{
    Py_CLEAR(c->last);
    if (c->view.obj)
        PyBuffer_Release(&c->view);
}

/* build_records(cls, mono, wall, entity, names, values, present, source, versions, errors) -> list
 * n records of the slotted class ``cls`` (RawRecord: mono_ns, wall_ns, entity, fields, source,
 * source_version, error): mono and wall lists or int64 arrays of n items, versions and errors
 * lists of n items, one column of values per field name (a list, or a float64/int64 array) and,
 * per field, None (every record has it) or a bytes/bool array (which do). Returns None when
 * ``cls`` is not such a class (the caller builds them in Python). */
static PyObject *build_records(PyObject *Py_UNUSED(self), PyObject *args)
{
    static const char *const attrs[7] = {"mono_ns", "wall_ns", "entity", "fields", "source", "source_version", "error"};
    PyTypeObject *cls;
    PyObject *mono_o, *wall_o, *entity, *names, *values, *present, *source, *versions, *errors;
    if (!PyArg_ParseTuple(args, "O!OOOO!O!O!OO!O!", &PyType_Type, &cls, &mono_o, &wall_o, &entity,
                          &PyTuple_Type, &names, &PyList_Type, &values, &PyList_Type, &present, &source,
                          &PyList_Type, &versions, &PyList_Type, &errors))
        return NULL;
    Py_ssize_t offsets[7];
    if (slot_offsets(cls, attrs, 7, offsets) < 0 || cls->tp_alloc == NULL)
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(versions), k = PyTuple_GET_SIZE(names);
    if (PyList_GET_SIZE(errors) != n || PyList_GET_SIZE(values) != k || PyList_GET_SIZE(present) != k) {
        PyErr_SetString(PyExc_ValueError, "build_records: the lists do not have matching lengths");
        return NULL;
    }
    Py_buffer *masks = calloc((size_t)(k ? k : 1), sizeof(Py_buffer));
    column_t *cols = calloc((size_t)k + 2, sizeof(column_t)), *mono = cols + k, *wall = cols + k + 1;
    PyObject *out = NULL;
    Py_ssize_t got = 0, opened = 0;
    if (!masks || !cols) {
        PyErr_NoMemory();
        goto done;
    }
    if (column_open(mono, mono_o, n, "mono") < 0 || column_open(wall, wall_o, n, "wall") < 0)
        goto done;
    for (; got < k; got++) {
        PyObject *mask = PyList_GET_ITEM(present, got);
        if (column_open(&cols[got], PyList_GET_ITEM(values, got), n, "a value column") < 0)
            goto done;
        opened = got + 1;
        if (mask != Py_None) {
            if (PyObject_GetBuffer(mask, &masks[got], PyBUF_C_CONTIGUOUS) < 0)
                goto done;
            if (masks[got].len != n) {
                PyErr_SetString(PyExc_ValueError, "build_records: a presence mask does not have n items");
                got++;
                goto done;
            }
        }
    }
    out = PyList_New(n);
    if (!out)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *fields = _PyDict_NewPresized(k);
        if (!fields)
            goto fail;
        int atomic = 1;
        for (Py_ssize_t f = 0; f < k; f++) {
            if (masks[f].obj && !((const uint8_t *)masks[f].buf)[i])
                continue;
            PyObject *value = column_item(&cols[f], i);
            if (!value) {
                Py_DECREF(fields);
                goto fail;
            }
            atomic &= !PyObject_IS_GC(value);
            int bad = PyDict_SetItem(fields, PyTuple_GET_ITEM(names, f), value);
            Py_DECREF(value);
            if (bad < 0) {
                Py_DECREF(fields);
                goto fail;
            }
        }
        /* A dict of numbers and strings cannot be part of a cycle: untracked, as the collector
         * itself would leave it after its first pass (the dict tracks itself again if a
         * container is ever stored in it), so replay's records cost the collector half as much. */
        if (atomic)
            PyObject_GC_UnTrack(fields);
        PyObject *rec = cls->tp_alloc(cls, 0);
        PyObject *m = column_item(mono, i), *w = column_item(wall, i);
        if (!rec || !m || !w) {
            Py_XDECREF(rec), Py_XDECREF(m), Py_XDECREF(w);
            Py_DECREF(fields);
            goto fail;
        }
        PyObject *items[7] = {m, w, Py_NewRef(entity), fields, Py_NewRef(source),
                              Py_NewRef(PyList_GET_ITEM(versions, i)), Py_NewRef(PyList_GET_ITEM(errors, i))};
        for (int a = 0; a < 7; a++)
            Py_XSETREF(*(PyObject **)((char *)rec + offsets[a]), items[a]);
        /* A record of numbers and strings holds no container either: untracked too, so the
         * hundreds of thousands alive in a replay are never scanned by the collector (a third of
         * the record iterator's time at 24 h). One a caller later makes part of a cycle through
         * its slots is never collected: a leak of that record, not a fault. */
        if (atomic && !PyObject_IS_GC(items[6]) && !PyObject_IS_GC(items[5]))
            PyObject_GC_UnTrack(rec);
        PyList_SET_ITEM(out, i, rec);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    for (Py_ssize_t f = 0; f < got && masks; f++)
        if (masks[f].obj)
            PyBuffer_Release(&masks[f]);
    if (cols) {
        for (Py_ssize_t f = 0; f < opened; f++)
            column_close(&cols[f]);
        column_close(mono), column_close(wall);
    }
    free(masks), free(cols);
    return out;
}

/* fill_table's summary of a table's filled outputs (see there) */
static PyObject *held_fields(const uint8_t *kinds, Py_ssize_t n, Py_ssize_t k, PyObject *counts, Py_ssize_t done,
                             PyObject *strs)
{
    Py_ssize_t m = PyList_GET_SIZE(counts), present = 0, at = 0;
    PyObject *marks = PyBytes_FromStringAndSize(NULL, m * k), *used = PyList_New(0), *result = NULL;
    if (!marks || !used)
        goto done;
    uint8_t *mk = (uint8_t *)PyBytes_AS_STRING(marks);
    for (Py_ssize_t j = 0; j < m; j++) {
        Py_ssize_t c = PyLong_AsSsize_t(PyList_GET_ITEM(counts, j));
        if (c < 0 || at + c > n) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "fill_table: counts do not sum to the rows");
            goto done;
        }
        for (Py_ssize_t f = 0; f < k; f++) {
            const uint8_t *row = kinds + f * n + at;
            Py_ssize_t held = 0;
            for (Py_ssize_t r = 0; r < c; r++)
                held += row[r] != ABSENT;
            mk[j * k + f] = held > 0;
            present += held;
        }
        at += c;
    }
    if (at != n) {
        PyErr_SetString(PyExc_ValueError, "fill_table: counts do not sum to the rows");
        goto done;
    }
    for (Py_ssize_t f = 0; f < k; f++) {
        int any = 0;
        for (Py_ssize_t j = 0; j < m && !any; j++)
            any = mk[j * k + f];
        if (any && append_size(used, f) < 0)
            goto done;
    }
    result = Py_BuildValue("(nOOOn)", done, strs, marks, used, present);
done:
    Py_XDECREF(marks);
    Py_XDECREF(used);
    return result;
}

/* fill_table(fields, index, kinds, values[, counts]) -> (rows done, {field: [str or None] * n}[, marks, used, present])
 * Typed columns from records' field dicts, whatever names each holds (some fields absent in some
 * rows): ``index`` maps a field name to its row of the outputs [k, n], which the caller zeroes
 * (ABSENT); the str values of a field holding any are a list of n by field number, None in the
 * rows without one. With ``counts`` (rows of each entity in turn, summing to n) and every row done,
 * also: marks, bytes [entities, k], 1 where the entity holds the field in some row; used, the
 * field numbers some row holds, ascending; present, the number of values present.
 * Stops at the first record that is not a dict or names a field ``index`` does not have (a new
 * field: the caller learns it and takes the slow path, dropping the outputs). */
static PyObject *fill_table(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *fields, *index, *ko, *vo, *counts = NULL;
    if (!PyArg_ParseTuple(args, "O!O!OO|O!", &PyList_Type, &fields, &PyDict_Type, &index, &ko, &vo,
                          &PyList_Type, &counts))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(fields), k = PyDict_GET_SIZE(index), done = 0;
    Py_buffer kb = {0}, vb = {0};
    PyObject *strs = NULL, *result = NULL, **col_strs = NULL;
    if (get_buffer(ko, &kb, "kinds", 1, 1) < 0 || get_buffer(vo, &vb, "values", 1, 8) < 0)
        goto done;
    if (kb.len != k * n || vb.len != 8 * k * n) {
        PyErr_SetString(PyExc_ValueError, "fill_table: the outputs are not [k, n]");
        goto done;
    }
    strs = PyDict_New();
    col_strs = calloc(k ? k : 1, sizeof(PyObject *));
    if (!strs || !col_strs)
        goto done;
    uint8_t *kinds = kb.buf;
    int64_t *values = vb.buf;
    for (; done < n; done++) {
        PyObject *d = PyList_GET_ITEM(fields, done);
        if (!PyDict_CheckExact(d) || PyDict_GET_SIZE(d) > k)
            break;
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        int known = 1;
        while (PyDict_Next(d, &pos, &key, &value)) {
            PyObject *column = PyDict_GetItemWithError(index, key);
            if (!column) {
                if (PyErr_Occurred())
                    PyErr_Clear();
                known = 0;  /* the caller drops what this call filled and takes the slow path */
                break;
            }
            Py_ssize_t f = PyLong_AsSsize_t(column);
            if (f < 0 || f >= k) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "fill_table: a column number outside the outputs");
                goto done;
            }
            Py_ssize_t at = f * n + done;
            PyTypeObject *t = Py_TYPE(value);
            if (t == &PyFloat_Type) {
                double x = PyFloat_AS_DOUBLE(value);
                kinds[at] = FLOAT;
                memcpy(&values[at], &x, 8);
            } else if (t == &PyLong_Type) {
                int overflow = 0;
                long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
                if (overflow) {
                    PyErr_Format(PyExc_OverflowError, "field %R holds an int that does not fit in int64", key);
                    goto done;
                }
                kinds[at] = INT;
                values[at] = x;
            } else if (t == &PyUnicode_Type) {
                kinds[at] = STR;
                values[at] = 0;
                if (!col_strs[f]) {  /* a list of n, None where a row holds no str */
                    col_strs[f] = PyList_New(n);
                    if (!col_strs[f])
                        goto done;
                    for (Py_ssize_t i = 0; i < n; i++) {
                        Py_INCREF(Py_None);
                        PyList_SET_ITEM(col_strs[f], i, Py_None);
                    }
                }
                Py_INCREF(value);
                Py_SETREF(PyList_GET_ITEM(col_strs[f], done), value);
            } else if (value == Py_None) {
                kinds[at] = NONE;
                values[at] = 0;
            } else {
                PyErr_Format(PyExc_TypeError, "field %R has a value of type %s; allowed: float, int, str, None", key,
                             t->tp_name);
                goto done;
            }
        }
        if (!known)
            break;
    }
    for (Py_ssize_t f = 0; f < k; f++) {
        if (col_strs[f]) {
            PyObject *fk = PyLong_FromSsize_t(f);
            int bad = !fk || PyDict_SetItem(strs, fk, col_strs[f]) < 0;
            Py_XDECREF(fk);
            if (bad)
                goto done;
        }
    }
    if (counts && done == n) {
        result = held_fields(kinds, n, k, counts, done, strs);
        goto done;
    }
    result = Py_BuildValue("(nO)", done, strs);
done:
    if (col_strs)
        for (Py_ssize_t f = 0; f < k; f++)
            Py_XDECREF(col_strs[f]);
    free(col_strs);
    Py_XDECREF(strs);
    if (kb.obj)
        PyBuffer_Release(&kb);
    if (vb.obj)
        PyBuffer_Release(&vb);
    return result;
}

static PyMethodDef methods[] = {
    {"fill_table", fill_table, METH_VARARGS, "Typed columns from field dicts of differing names (see the module source)."},
    {"build_records", build_records, METH_VARARGS, "Build records from columns (see the module source)."},
    {"encode_many", encode_many, METH_VARARGS, "Encode the columns of a segment (see the module source)."},
    {"segment_streams", ccodec_segment_streams, METH_VARARGS, "A segment's streams and their header text (see _ccodec_segment.c)."},
    {"gather_columns", ccodec_gather_columns, METH_VARARGS, "Rows of every column of pieces, gathered (see _ccodec_segment.c)."},
    {"decode", decode, METH_VARARGS, "Check, inflate and decode runs of one stream (see the module source)."},
    {"decode_into", decode_into, METH_VARARGS, "Decode runs of one stream into rows of blocks (see the module source)."},
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
