/* Shared by _csystem_parse.c (the files read and parsed, no Python objects but the file
   arguments) and _csystem.c (the objects, the records, the module). */
#ifndef TELEMREC_CSYSTEM_H
#define TELEMREC_CSYSTEM_H

#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

enum { F_STAT, F_MEMINFO, F_VMSTAT, F_DISKSTATS, F_NETDEV, F_ONLINE, NFILES };
enum { NCPU = 10, NVMEM = 10, NSWAP = 5, NSTATS = 4, NSYSTEM = 35, NDISK = 9, NNET = 8 };

typedef struct {
    char *data;
    size_t len, cap;
} Buf;


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


extern long clock_ticks;

static inline int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

static inline const char *line_end(const char *p, const char *end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

int read_all(PyObject *file, Buf *buf);
int tokens(const char *p, const char *end, const char **tok, size_t *tlen, int max);
int count_tokens(const char *p, const char *end, const char **tok, size_t *tlen, int max);
int parse_u64(const char *p, size_t n, uint64_t *out);
int starts(const char *p, const char *end, const char *prefix);
int plain_ascii(const Buf *b);
int parse_stat(const Buf *b, int per_cpu, System *s);
int parse_memory(const Buf *meminfo, const Buf *vmstat, System *s);
long online_count(PyObject *file, Buf *b);
long affinity_count(void);

#endif
