/* telemrec.readers._csystem: the psutil reader's system level in one call a tick.

   sample(files, keys, per_cpu, disk_cache, disk_entity, net_cache, cls, mono, wall, source, version, out)
   reads <root>/stat, meminfo, vmstat, diskstats, net/dev (and, with glibc, the CPU online list
   that its sysconf(_SC_NPROCESSORS_ONLN) reads), the load average and the affinity mask, parses
   them as psutil 7 (and _procfs_system.py) do, and appends the records `system`, cpu<i>, disk:<name>
   and net:<nic> to `out`, returning True. Wherever psutil would take a path of its own (a file
   missing or unreadable, a line missing or laid out otherwise, a value that is not a plain decimal,
   a character outside printable ASCII where psutil decodes text) it appends nothing and returns
   False: the caller then runs the Python path, which gives psutil's own values, warnings and errors.

   files: (stat, meminfo, vmstat, diskstats, net/dev, cpu online); each an int (a kept descriptor on
   procfs or sysfs, read with pread at offset 0: the kernel formats the file anew for that read), a
   bytes path (opened and closed each time: a regular file, e.g. a test's fake root) or None (cpu
   online only: sysconf() answers). keys: the field names of system, cpu<i>, disk and net records, in
   order. disk_cache / net_cache map a device name to its entity (None: a disk left out); on a miss
   disk_entity(name) gives it. */

#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { F_STAT, F_MEMINFO, F_VMSTAT, F_DISKSTATS, F_NETDEV, F_ONLINE, NFILES };
enum { NCPU = 10, NVMEM = 10, NSWAP = 5, NSTATS = 4, NSYSTEM = 35, NDISK = 9, NNET = 8 };
#define CACHE_LIMIT 4096 /* device names seen; cleared past this (containers' veths come and go) */

static PyObject *s_mono_ns, *s_wall_ns, *s_entity, *s_fields, *s_source, *s_source_version, *s_error;
static long clock_ticks;


typedef struct {
    char *data;
    size_t len, cap;
} Buf;

/* the whole file into buf (grown as needed); 0 on success */
static int read_all(PyObject *file, Buf *buf) {
    int fd, kept = PyLong_Check(file);
    if (kept) {
        fd = (int)PyLong_AsLong(file);
    } else if (PyBytes_Check(file)) {
        do {
            fd = open(PyBytes_AS_STRING(file), O_RDONLY | O_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
    } else {
        return -1;
    }
    if (fd < 0)
        return -1;
    size_t cap = buf->data ? buf->cap : 8192, len = 0;
    char *data = buf->data ? buf->data : malloc(cap);
    int rc = -1;
    while (data != NULL) {
        ssize_t n = pread(fd, data + len, cap - len - 1, (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
        if (n == 0 || len < cap - 1) { /* procfs returns short only at its end */
            rc = 0;
            break;
        }
        char *bigger = realloc(data, cap * 4);
        if (bigger == NULL)
            break;
        data = bigger;
        cap *= 4;
    }
    if (!kept)
        close(fd);
    buf->data = data;
    buf->cap = cap;
    if (rc < 0)
        return -1;
    data[len] = '\0';
    buf->len = len;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

/* the whitespace-separated tokens of [p, end), as bytes.split() gives them; how many (at most max) */
static int tokens(const char *p, const char *end, const char **tok, size_t *tlen, int max) {
    int n = 0;
    while (n < max) {
        while (p < end && is_space(*p))
            p++;
        if (p >= end)
            break;
        tok[n] = p;
        while (p < end && !is_space(*p))
            p++;
        tlen[n] = (size_t)(p - tok[n]);
        n++;
    }
    return n;
}

/* a plain unsigned decimal that fits 64 bits; int() and float() take more, which the Python path handles */
static int parse_u64(const char *p, size_t n, uint64_t *out) {
    if (n == 0 || n > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int starts(const char *p, const char *end, const char *prefix) {
    size_t n = strlen(prefix);
    return (size_t)(end - p) >= n && memcmp(p, prefix, n) == 0;
}

static const char *line_end(const char *p, const char *end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

/* psutil decodes diskstats and net/dev as text (universal newlines, str.split()): plain ASCII
   reads the same as bytes; anything else is left to it */
static int plain_ascii(const Buf *b) {
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\v' && c != '\f') || c > 0x7e)
            return 0;
    }
    return 1;
}

/* scputimes from a cpu line: its 10 numbers after the label, over the clock ticks */
static int cpu_values(const char *p, const char *end, double *out) {
    const char *tok[NCPU + 1];
    size_t tlen[NCPU + 1];
    if (tokens(p, end, tok, tlen, NCPU + 1) < NCPU + 1)
        return -1;
    for (int i = 0; i < NCPU; i++) {
        uint64_t v;
        if (parse_u64(tok[i + 1], tlen[i + 1], &v) < 0)
            return -1;
        out[i] = (double)v / (double)clock_ticks;
    }
    return 0;
}

typedef struct {
    double cpu[NCPU];
    double *percpu; /* ncpus x NCPU */
    Py_ssize_t ncpus;
    int has[3];
    uint64_t stats[3]; /* ctxt intr softirq */
    double btime;
    uint64_t mem[NVMEM], swap[NSWAP];
    double load[3];
    long logical, affinity;
} System;

static int parse_stat(const Buf *b, int per_cpu, System *s) {
    const char *p = b->data, *end = b->data + b->len;
    static const char *const keys[3] = {"ctxt", "intr", "softirq"};
    int has_btime = 0, first = 1;
    Py_ssize_t cap = 0;
    for (;;) {
        const char *le = line_end(p, end);
        if (first) {
            if (cpu_values(p, le, s->cpu) < 0)
                return -1;
            first = 0;
        } else if (starts(p, le, "cpu")) {
            if (per_cpu) {
                if (s->ncpus == cap) {
                    double *more = PyMem_Realloc(s->percpu, sizeof(double) * NCPU * (size_t)(cap = cap ? cap * 2 : 64));
                    if (more == NULL)
                        return -1;
                    s->percpu = more;
                }
                if (cpu_values(p, le, s->percpu + NCPU * s->ncpus++) < 0)
                    return -1;
            }
        } else {
            const char *tok[2];
            size_t tlen[2];
            for (int k = 0; k < 3; k++) {
                if (!s->has[k] && starts(p, le, keys[k])) {
                    if (tokens(p, le, tok, tlen, 2) < 2 || parse_u64(tok[1], tlen[1], &s->stats[k]) < 0)
                        return -1;
                    s->has[k] = 1;
                }
            }
            if (!has_btime && starts(p, le, "btime")) {
                uint64_t v;
                if (tokens(p, le, tok, tlen, 2) < 2 || parse_u64(tok[1], tlen[1], &v) < 0)
                    return -1;
                s->btime = (double)v;
                has_btime = 1;
            }
        }
        if (le == end)
            break;
        p = le + 1;
    }
    return has_btime ? 0 : -1;
}

static int parse_memory(const Buf *meminfo, const Buf *vmstat, System *s) {
    enum { TOTAL, FREE, AVAIL, BUFFERS, CACHED, SRECL, SHMEM, ACTIVE, INACTIVE, SLAB, SWTOTAL, SWFREE, NKEYS };
    static const char *const names[NKEYS] = {"MemTotal:", "MemFree:", "MemAvailable:", "Buffers:", "Cached:",
        "SReclaimable:", "Shmem:", "Active:", "Inactive:", "Slab:", "SwapTotal:", "SwapFree:"};
    uint64_t v[NKEYS] = {0};
    int has[NKEYS] = {0};
    const char *p = meminfo->data, *end = meminfo->data + meminfo->len;
    while (p < end) {
        const char *le = line_end(p, end), *tok[2];
        size_t tlen[2];
        int n = tokens(p, le, tok, tlen, 2);
        if (n == 1)
            return -1;
        if (n == 2) {
            uint64_t value;
            if (parse_u64(tok[1], tlen[1], &value) < 0 || value > (UINT64_MAX >> 11))
                return -1;
            for (int k = 0; k < NKEYS; k++) {
                if (tlen[0] == strlen(names[k]) && memcmp(tok[0], names[k], tlen[0]) == 0) {
                    v[k] = value * 1024; /* the last of repeated lines, as a dict keeps it */
                    has[k] = 1;
                }
            }
        }
        p = le + 1;
    }
    static const int needed[] = {TOTAL, FREE, BUFFERS, CACHED, SHMEM, ACTIVE, INACTIVE, AVAIL, SWTOTAL, SWFREE};
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
        if (!has[needed[i]])
            return -1;
    if (v[AVAIL] == 0)
        return -1; /* psutil estimates it */
    uint64_t avail = v[AVAIL] > v[TOTAL] ? v[FREE] : v[AVAIL];
    if (avail > v[TOTAL] || v[SWFREE] > v[SWTOTAL])
        return -1; /* negative sizes: left to the Python path */
    uint64_t vm[NVMEM] = {v[TOTAL], avail, v[TOTAL] - avail, v[FREE], v[ACTIVE], v[INACTIVE], v[BUFFERS],
                          v[CACHED] + v[SRECL], v[SHMEM], v[SLAB]};
    memcpy(s->mem, vm, sizeof(vm));
    /* pswpin / pswpout: the first line after each "\npsw" that goes on "pin" / "pout" (psutil's split) */
    uint64_t swp[2];
    int found[2] = {0, 0};
    p = vmstat->data;
    end = vmstat->data + vmstat->len;
    for (const char *q = starts(p, end, "psw") ? p : memmem(p, (size_t)(end - p), "\npsw", 4); q != NULL;
         q = q + 1 < end ? memmem(q + 1, (size_t)(end - q - 1), "\npsw", 4) : NULL) {
        const char *seg = q + (*q == '\n' ? 4 : 3), *le = line_end(seg, end);
        int k = starts(seg, le, "pin") ? 0 : starts(seg, le, "pout") ? 1 : -1;
        if (k < 0 || found[k])
            continue;
        const char *sp = memchr(seg, ' ', (size_t)(le - seg));
        if (sp == NULL)
            return -1;
        const char *tok = sp + 1, *tend = memchr(tok, ' ', (size_t)(le - tok));
        if (parse_u64(tok, (size_t)((tend ? tend : le) - tok), &swp[k]) < 0 || swp[k] > (UINT64_MAX >> 12))
            return -1;
        found[k] = 1;
    }
    if (!found[0] || !found[1])
        return -1; /* psutil warns and gives 0 */
    uint64_t sw[NSWAP] = {v[SWTOTAL], v[SWTOTAL] - v[SWFREE], v[SWFREE], swp[0] * 4096, swp[1] * 4096};
    memcpy(s->swap, sw, sizeof(sw));
    return 0;
}

/* glibc's sysconf(_SC_NPROCESSORS_ONLN) is the count of this list's ranges ("0-3,8"); other
   forms are left to sysconf itself */
static long online_count(PyObject *file, Buf *b) {
    long count = 0;
    if (file != Py_None && read_all(file, b) == 0) {
        const char *p = b->data, *end = b->data + b->len;
        while (p < end && *p != '\n') {
            const char *q = p;
            uint64_t lo, hi;
            while (q < end && *q >= '0' && *q <= '9')
                q++;
            if (parse_u64(p, (size_t)(q - p), &lo) < 0)
                goto odd;
            hi = lo;
            if (q < end && *q == '-') {
                p = ++q;
                while (q < end && *q >= '0' && *q <= '9')
                    q++;
                if (parse_u64(p, (size_t)(q - p), &hi) < 0 || hi < lo || hi - lo > 1 << 20)
                    goto odd;
            }
            count += (long)(hi - lo + 1);
            p = q;
            if (p < end && *p == ',')
                p++;
            else if (p < end && *p != '\n')
                goto odd;
        }
        if (0) {
        odd:
            count = 0;
        }
    }
    return count > 0 ? count : sysconf(_SC_NPROCESSORS_ONLN);
}

/* len(os.sched_getaffinity(0)): the mask grown until the kernel takes it, as CPython does */
static long affinity_count(void) {
    for (int ncpus = 1024; ncpus < (1 << 22); ncpus *= 2) {
        cpu_set_t *mask = CPU_ALLOC(ncpus);
        size_t size = CPU_ALLOC_SIZE(ncpus);
        if (mask == NULL)
            return -1;
        if (sched_getaffinity(0, size, mask) == 0) {
            long n = CPU_COUNT_S(size, mask);
            CPU_FREE(mask);
            return n;
        }
        CPU_FREE(mask);
        if (errno != EINVAL)
            return -1;
    }
    return -1;
}

/* how many whitespace-separated tokens [p, end) holds, the first `max` of them stored */
static int count_tokens(const char *p, const char *end, const char **tok, size_t *tlen, int max) {
    int n = tokens(p, end, tok, tlen, max);
    if (n < max)
        return n;
    const char *q = tok[max - 1] + tlen[max - 1];
    while (q < end) {
        while (q < end && is_space(*q))
            q++;
        if (q >= end)
            break;
        n++;
        while (q < end && !is_space(*q))
            q++;
    }
    return n;
}

/* {key: None} for each keys tuple last seen: a copy of it is a dict sized for its fields at once */
static PyObject *template_keys[4], *templates[4];

static PyObject *template_for(PyObject *keys) {
    int slot = 0;
    while (slot < 3 && template_keys[slot] != keys && template_keys[slot] != NULL)
        slot++;
    if (template_keys[slot] != keys) {
        PyObject *t = PyDict_New();
        for (Py_ssize_t i = 0; t != NULL && i < PyTuple_GET_SIZE(keys); i++)
            if (PyDict_SetItem(t, PyTuple_GET_ITEM(keys, i), Py_None) < 0)
                Py_CLEAR(t);
        if (t == NULL)
            return NULL;
        Py_XSETREF(templates[slot], t);
        Py_XSETREF(template_keys[slot], Py_NewRef(keys));
    }
    return templates[slot];
}

/* {keys[i]: values[i]}, the values stolen (all of them, also on failure) */
static PyObject *fields_dict(PyObject *keys, PyObject **values, Py_ssize_t n) {
    PyObject *t = template_for(keys), *d = t ? PyDict_Copy(t) : NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (d != NULL && (values[i] == NULL || PyDict_SetItem(d, PyTuple_GET_ITEM(keys, i), values[i]) < 0))
            Py_CLEAR(d);
        Py_XDECREF(values[i]);
    }
    return d;
}

static PyObject *u64_fields(PyObject *keys, const uint64_t *v, Py_ssize_t n) {
    PyObject *values[NDISK];
    for (Py_ssize_t i = 0; i < n; i++)
        values[i] = PyLong_FromUnsignedLongLong(v[i]);
    return fields_dict(keys, values, n);
}

static PyObject *ascii_str(const char *p, size_t n) { return PyUnicode_DecodeASCII(p, (Py_ssize_t)n, "strict"); }

/* psutil's disk_io_counters(perdisk=True) as {name: fields}; NULL without an exception: not a plain case */
static PyObject *disk_table(const Buf *b, PyObject *keys) {
    PyObject *table = PyDict_New();
    const char *p = b->data, *end = b->data + b->len;
    while (table != NULL && p < end) {
        const char *le = line_end(p, end), *tok[15];
        size_t tlen[15];
        uint64_t t[15], v[NDISK];
        int n = count_tokens(p, le, tok, tlen, 15), first, last, name;
        p = le + 1;
        if (n == 15) {
            first = 2, last = 13, name = 3; /* Linux 2.4 */
        } else if (n == 14 || n >= 18) {
            first = 3, last = 13, name = 2;
        } else if (n == 7) {
            first = 3, last = 6, name = 2; /* a partition on 2.6 */
        } else {
            goto odd;
        }
        for (int i = first; i <= last; i++)
            if (i != name && parse_u64(tok[i], tlen[i], &t[i]) < 0)
                goto odd;
        if (n == 7) {
            uint64_t part[NDISK] = {t[3], t[5], t[4], t[6], 0, 0, 0, 0, 0};
            memcpy(v, part, sizeof(v));
        } else {
            /* Linux 2.4's 15 fields: the reads before the name, the rest where 2.6 has them */
            uint64_t disk[NDISK] = {n == 15 ? t[2] : t[3], t[7], t[5], t[9], t[6], t[10], t[4], t[8], t[12]};
            memcpy(v, disk, sizeof(v));
        }
        if (v[2] > UINT64_MAX / 512 || v[3] > UINT64_MAX / 512)
            goto odd;
        v[2] *= 512, v[3] *= 512;
        PyObject *key = ascii_str(tok[name], tlen[name]), *fields = key ? u64_fields(keys, v, NDISK) : NULL;
        if (fields == NULL || PyDict_SetItem(table, key, fields) < 0) /* a repeated name: the last, in the first's place */
            Py_CLEAR(table);
        Py_XDECREF(key);
        Py_XDECREF(fields);
        continue;
    odd:
        Py_CLEAR(table);
    }
    return table;
}

/* psutil's net_io_counters(pernic=True) as {nic: fields}; NULL without an exception: not a plain case */
static PyObject *net_table(const Buf *b, PyObject *keys) {
    PyObject *table = PyDict_New();
    const char *p = b->data, *end = b->data + b->len;
    for (int skip = 0; skip < 2 && p < end; skip++) /* the two header lines */
        p = line_end(p, end) + 1;
    while (table != NULL && p < end) {
        const char *le = line_end(p, end), *tok[16], *start = p;
        size_t tlen[16];
        uint64_t f[16];
        const char *c = memrchr(p, ':', (size_t)(le - p));
        const char *ns = p, *ne = c;
        p = le + 1;
        if (c == NULL || c == start || count_tokens(c + 1, le, tok, tlen, 16) != 16)
            goto odd;
        for (int i = 0; i < 16; i++)
            if (parse_u64(tok[i], tlen[i], &f[i]) < 0)
                goto odd;
        while (ns < ne && is_space(*ns))
            ns++;
        while (ne > ns && is_space(ne[-1]))
            ne--;
        uint64_t v[NNET] = {f[8], f[0], f[9], f[1], f[2], f[10], f[3], f[11]};
        PyObject *key = ascii_str(ns, (size_t)(ne - ns)), *fields = key ? u64_fields(keys, v, NNET) : NULL;
        if (fields == NULL || PyDict_SetItem(table, key, fields) < 0)
            Py_CLEAR(table);
        Py_XDECREF(key);
        Py_XDECREF(fields);
        continue;
    odd:
        Py_CLEAR(table);
    }
    return table;
}

/* a RawRecord without the frozen dataclass's __init__: object's __setattr__ (the slots'), as __init__ does */
static int append_record(PyObject *out, PyTypeObject *type, PyObject *entity, PyObject *fields, PyObject *const *common) {
    PyObject *rec = type->tp_alloc(type, 0);
    int rc = rec == NULL || PyObject_GenericSetAttr(rec, s_mono_ns, common[0]) < 0 ||
             PyObject_GenericSetAttr(rec, s_wall_ns, common[1]) < 0 || PyObject_GenericSetAttr(rec, s_entity, entity) < 0 ||
             PyObject_GenericSetAttr(rec, s_fields, fields) < 0 || PyObject_GenericSetAttr(rec, s_source, common[2]) < 0 ||
             PyObject_GenericSetAttr(rec, s_source_version, common[3]) < 0 ||
             PyObject_GenericSetAttr(rec, s_error, Py_None) < 0 || PyList_Append(out, rec) < 0 ? -1 : 0;
    Py_XDECREF(rec);
    return rc;
}

/* the records of a device table, its entities from the cache (a miss asks `make`, or prefixes "net:") */
static int device_records(PyObject *out, PyTypeObject *type, PyObject *table, PyObject *cache, PyObject *make,
                          PyObject *const *common) {
    Py_ssize_t pos = 0;
    PyObject *name, *fields;
    if (PyDict_GET_SIZE(cache) > CACHE_LIMIT)
        PyDict_Clear(cache);
    while (PyDict_Next(table, &pos, &name, &fields)) {
        PyObject *entity = PyDict_GetItemWithError(cache, name);
        if (entity == NULL) {
            if (PyErr_Occurred())
                return -1;
            entity = make != Py_None ? PyObject_CallOneArg(make, name) : PyUnicode_FromFormat("net:%U", name);
            if (entity == NULL || PyDict_SetItem(cache, name, entity) < 0) {
                Py_XDECREF(entity);
                return -1;
            }
            Py_DECREF(entity); /* the cache holds it */
        }
        if (entity != Py_None && append_record(out, type, entity, fields, common) < 0)
            return -1;
    }
    return 0;
}

static PyObject *sample(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 12 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != NFILES || !PyTuple_Check(args[1]) ||
        PyTuple_GET_SIZE(args[1]) != 4 || !PyDict_Check(args[3]) || !PyDict_Check(args[5]) || !PyType_Check(args[6]) ||
        !PyList_Check(args[11])) {
        PyErr_SetString(PyExc_TypeError, "sample(files, keys, per_cpu, disk_cache, disk_entity, net_cache, cls, "
                                         "mono, wall, source, version, out)");
        return NULL;
    }
    static const Py_ssize_t nkeys[4] = {NSYSTEM, NCPU, NDISK, NNET};
    PyObject *keys[4];
    for (int i = 0; i < 4; i++) {
        keys[i] = PyTuple_GET_ITEM(args[1], i);
        if (!PyTuple_Check(keys[i]) || PyTuple_GET_SIZE(keys[i]) != nkeys[i]) {
            PyErr_SetString(PyExc_ValueError, "sample(): keys must be 4 tuples of 35, 10, 9 and 8 names");
            return NULL;
        }
    }
    int per_cpu = PyObject_IsTrue(args[2]);
    if (per_cpu < 0)
        return NULL;
    PyObject *files = args[0], *out = args[11], *result = NULL, *disks = NULL, *nets = NULL, *records = NULL;
    PyTypeObject *type = (PyTypeObject *)args[6];
    PyObject *const *common = args + 7; /* mono, wall, source, version */
    /* the buffers kept from call to call (pages already mapped, warmer); a call made meanwhile
       (another thread's, while this one runs Python code) has its own */
    static Buf kept[NFILES];
    static int busy;
    Buf own[NFILES] = {{NULL, 0, 0}}, *buf = busy ? own : kept;
    int mine = !busy;
    busy = 1;
    System s = {0};
    for (int i = 0; i < F_ONLINE; i++)
        if (read_all(PyTuple_GET_ITEM(files, i), &buf[i]) < 0)
            goto python;
    if (parse_stat(&buf[F_STAT], per_cpu, &s) < 0 || parse_memory(&buf[F_MEMINFO], &buf[F_VMSTAT], &s) < 0 ||
        getloadavg(s.load, 3) != 3 || (s.logical = online_count(PyTuple_GET_ITEM(files, F_ONLINE), &buf[F_ONLINE])) < 1 ||
        (s.affinity = affinity_count()) < 0 || !plain_ascii(&buf[F_DISKSTATS]) || !plain_ascii(&buf[F_NETDEV]))
        goto python;
    if ((disks = disk_table(&buf[F_DISKSTATS], keys[2])) == NULL || (nets = net_table(&buf[F_NETDEV], keys[3])) == NULL)
        goto python;

    PyObject *values[NSYSTEM];
    int k = 0;
    for (int i = 0; i < NCPU; i++)
        values[k++] = PyFloat_FromDouble(s.cpu[i]);
    for (int i = 0; i < NVMEM; i++)
        values[k++] = PyLong_FromUnsignedLongLong(s.mem[i]);
    for (int i = 0; i < NSWAP; i++)
        values[k++] = PyLong_FromUnsignedLongLong(s.swap[i]);
    for (int i = 0; i < 3; i++)
        values[k++] = s.has[i] ? PyLong_FromUnsignedLongLong(s.stats[i]) : Py_NewRef(Py_None);
    values[k++] = PyLong_FromLong(0); /* syscalls: Linux has no count */
    for (int i = 0; i < 3; i++)
        values[k++] = PyFloat_FromDouble(s.load[i]);
    values[k++] = PyLong_FromLong(s.logical);
    values[k++] = PyLong_FromLong(s.affinity);
    values[k++] = PyFloat_FromDouble(s.btime);
    PyObject *system = fields_dict(keys[0], values, NSYSTEM), *entity = PyUnicode_FromString("system");
    if ((records = PyList_New(0)) == NULL || system == NULL || entity == NULL ||
        append_record(records, type, entity, system, common) < 0) {
        Py_XDECREF(system);
        Py_XDECREF(entity);
        goto done;
    }
    Py_DECREF(system);
    Py_DECREF(entity);
    for (Py_ssize_t i = 0; i < s.ncpus; i++) {
        PyObject *v[NCPU];
        for (int j = 0; j < NCPU; j++)
            v[j] = PyFloat_FromDouble(s.percpu[i * NCPU + j]);
        PyObject *fields = fields_dict(keys[1], v, NCPU), *name = PyUnicode_FromFormat("cpu%zd", i);
        int rc = fields == NULL || name == NULL ? -1 : append_record(records, type, name, fields, common);
        Py_XDECREF(fields);
        Py_XDECREF(name);
        if (rc < 0)
            goto done;
    }
    if (device_records(records, type, disks, args[3], args[4], common) < 0 ||
        device_records(records, type, nets, args[5], Py_None, common) < 0)
        goto done;
    Py_ssize_t n = PyList_GET_SIZE(out);
    if (PyList_SetSlice(out, n, n, records) == 0)
        result = Py_NewRef(Py_True);
    goto done;
python:
    if (!PyErr_Occurred())
        result = Py_NewRef(Py_False);
done:
    if (mine)
        busy = 0;
    else
        for (int i = 0; i < NFILES; i++)
            free(own[i].data);
    PyMem_Free(s.percpu);
    Py_XDECREF(disks);
    Py_XDECREF(nets);
    Py_XDECREF(records);
    return result;
}

#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif
#define SYSFS_MAGIC_ 0x62656572
#include <sys/vfs.h>

/* whether a descriptor may be kept and re-read at offset 0 for the file's current content */
static PyObject *regenerated(PyObject *module, PyObject *fd) {
    (void)module;
    struct statfs st;
    long value = PyLong_AsLong(fd);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(fstatfs((int)value, &st) == 0 &&
                           (st.f_type == PROC_SUPER_MAGIC || st.f_type == SYSFS_MAGIC_));
}

static PyMethodDef methods[] = {
    {"sample", (PyCFunction)(void (*)(void))sample, METH_FASTCALL,
     "sample(files, keys, per_cpu, disk_cache, disk_entity, net_cache, cls, mono, wall, source, version, out) "
     "-> True with the system level's records appended to out, or False: the Python path must read them"},
    {"regenerated", (PyCFunction)regenerated, METH_O,
     "regenerated(fd) -> whether fd is on procfs or sysfs (a read at offset 0 gives the current content)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_csystem", "psutil reader's system level", -1, methods,
                                        NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__csystem(void) {
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {{&s_mono_ns, "mono_ns"}, {&s_wall_ns, "wall_ns"}, {&s_entity, "entity"}, {&s_fields, "fields"},
                 {&s_source, "source"}, {&s_source_version, "source_version"}, {&s_error, "error"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return NULL;
    clock_ticks = sysconf(_SC_CLK_TCK);
    return PyModule_Create(&moduledef);
}
