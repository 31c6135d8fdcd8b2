/* The system level's files read and parsed as psutil 7 (and _procfs_system.py) parse them;
   each parser fails (-1) wherever psutil would take a path of its own. See _csystem.c. */

#include "_csystem.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

long clock_ticks;

/* the whole file into buf (grown as needed); 0 on success */
int read_all(PyObject *file, Buf *buf) {
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


/* the whitespace-separated tokens of [p, end), as bytes.split() gives them; how many (at most max) */
int tokens(const char *p, const char *end, const char **tok, size_t *tlen, int max) {
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
int parse_u64(const char *p, size_t n, uint64_t *out) {
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


int starts(const char *p, const char *end, const char *prefix) {
    size_t n = strlen(prefix);
    return (size_t)(end - p) >= n && memcmp(p, prefix, n) == 0;
}


/* psutil decodes diskstats and net/dev as text (universal newlines, str.split()): plain ASCII
   reads the same as bytes; anything else is left to it */
int plain_ascii(const Buf *b) {
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

int parse_stat(const Buf *b, int per_cpu, System *s) {
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

int parse_memory(const Buf *meminfo, const Buf *vmstat, System *s) {
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
long online_count(PyObject *file, Buf *b) {
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
long affinity_count(void) {
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
int count_tokens(const char *p, const char *end, const char **tok, size_t *tlen, int max) {
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

