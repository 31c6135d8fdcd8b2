/* telemrec.readers._cprocfs: the per-tick hot path of the procfs process collector.

   poll(states): of the processes known from the last tick, for each whose files are kept
   open and which was idle then (Proc.quick is set), re-read its threads' schedstat, stat
   (only where the parent it names may have exited) and statm from their kept descriptors,
   with the GIL released, and tell whether all read back byte for byte as last time: then
   the process has not run and its last fields hold. See _procfs_native.py.
   records(cls, readings, mono, wall, source, version, out): one RawRecord per reading
   (fields with ``levels`` added, entity ``pid:<n>``, error from reading.error()), built
   without the frozen dataclass's __init__ (object.__setattr__ per field).

   _procfs_native.py holds the pure-Python equivalents, used where this module is not
   built; tests hold both to the same results. */

#define _GNU_SOURCE  /* memrchr */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GATE_SIZE 128
#define STAT_SIZE 4096
#define STATM_SIZE 256

static PyObject *s_fds, *s_quick, *s_stat, *s_statm, *s_fields, *s_ran, *s_pid, *s_levels, *s_problems, *s_error,
    *s_space, *s_mono_ns, *s_wall_ns, *s_entity, *s_source, *s_source_version, *s_levels_key;

typedef struct {
    int fd;
    const char *expected;
    Py_ssize_t len;
    Py_ssize_t size;
} Job;

typedef struct {
    Py_ssize_t first, ngate;  /* its jobs: the gate's, then stat, then statm */
    long pid, ppid;
    int planned, idle, same;
    int probe_fd, probed, alive;  /* a process not polled: its stat, read if a polled child asks */
} Entry;

/* the whole file equals `expected`: a read of one byte more than expected comes back exactly */
static int same_content(const Job *job, char *buf) {
    ssize_t n;
    do {
        n = pread(job->fd, buf, (size_t)job->size, 0);
    } while (n < 0 && errno == EINTR);
    return n >= 0 && n == job->len && n < job->size && memcmp(buf, job->expected, (size_t)n) == 0;
}

static int add_job(Job *job, PyObject *fd, PyObject *expected, Py_ssize_t size) {
    long value = PyLong_AsLong(fd);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (!PyBytes_Check(expected)) {
        PyErr_SetString(PyExc_TypeError, "expected bytes");
        return -1;
    }
    job->fd = (int)value;
    job->expected = PyBytes_AS_STRING(expected);
    job->len = PyBytes_GET_SIZE(expected);
    job->size = size;
    return 0;
}

static long attr_long(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    long out = PyLong_AsLong(value);
    Py_DECREF(value);
    return out;
}

/* st.quick is (stat fd, statm fd, ((gate fd, gate bytes), ...), ppid) */
static int plan_one(PyObject *st, PyObject *quick, Job **jobs, Py_ssize_t *njobs, Py_ssize_t *cap, Entry *entry) {
    if (!PyTuple_Check(quick) || PyTuple_GET_SIZE(quick) != 4 || !PyTuple_Check(PyTuple_GET_ITEM(quick, 2))) {
        PyErr_SetString(PyExc_TypeError, "Proc.quick must be (stat fd, statm fd, gate tuple, ppid)");
        return -1;
    }
    PyObject *gate = PyTuple_GET_ITEM(quick, 2);
    Py_ssize_t ngate = PyTuple_GET_SIZE(gate);
    if (*njobs + ngate + 2 > *cap) {
        Py_ssize_t grown = (*cap + ngate + 2) * 2;
        Job *more = PyMem_Realloc(*jobs, (size_t)grown * sizeof(Job));
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *jobs = more;
        *cap = grown;
    }
    entry->first = *njobs;
    Job *job = *jobs + *njobs;
    for (Py_ssize_t i = 0; i < ngate; i++, job++) {
        PyObject *pair = PyTuple_GET_ITEM(gate, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a gate entry must be (fd, bytes)");
            return -1;
        }
        if (add_job(job, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1), GATE_SIZE) < 0)
            return -1;
    }
    PyObject *stat = PyObject_GetAttr(st, s_stat);
    if (stat == NULL)
        return -1;
    int rc = add_job(job++, PyTuple_GET_ITEM(quick, 0), stat, STAT_SIZE);
    Py_DECREF(stat);  /* st keeps it alive */
    if (rc < 0)
        return -1;
    PyObject *statm = PyObject_GetAttr(st, s_statm);
    if (statm == NULL)
        return -1;
    rc = add_job(job++, PyTuple_GET_ITEM(quick, 1), statm, STATM_SIZE);
    Py_DECREF(statm);
    if (rc < 0)
        return -1;
    entry->ppid = PyLong_AsLong(PyTuple_GET_ITEM(quick, 3));
    if ((entry->pid = attr_long(st, s_pid)) == -1 && PyErr_Occurred())
        return -1;
    if (entry->ppid == -1 && PyErr_Occurred())
        return -1;
    entry->ngate = ngate;
    entry->planned = 1;
    *njobs += ngate + 2;
    return 0;
}

/* a process that is not polled (it ran, or is new): the descriptor of its stat, if kept */
static int plan_probe(PyObject *st, Entry *entry) {
    entry->probe_fd = -1;
    if ((entry->pid = attr_long(st, s_pid)) == -1 && PyErr_Occurred())
        return -1;
    PyObject *fds = PyObject_GetAttr(st, s_fds);
    if (fds == NULL)
        return -1;
    PyObject *fd = PyDict_Check(fds) ? PyDict_GetItemWithError(fds, s_stat) : NULL;  /* borrowed */
    if (fd != NULL) {
        long value = PyLong_AsLong(fd);
        if (value == -1 && PyErr_Occurred()) {
            Py_DECREF(fds);
            return -1;
        }
        entry->probe_fd = (int)value;
    }
    Py_DECREF(fds);
    return PyErr_Occurred() ? -1 : 0;
}

static int by_pid(const void *a, const void *b) {
    long x = (*(Entry *const *)a)->pid, y = (*(Entry *const *)b)->pid;
    return (x > y) - (x < y);
}

/* whether a process is alive and not a zombie, from its stat read now */
static int probe_alive(Entry *e, char *buf) {
    if (!e->probed) {
        e->probed = 1;
        ssize_t n;
        do {
            n = pread(e->probe_fd, buf, STAT_SIZE, 0);
        } while (n < 0 && errno == EINTR);
        const char *rpar = n > 0 ? memrchr(buf, ')', (size_t)n) : NULL;
        e->alive = rpar != NULL && rpar + 2 < buf + n && rpar[2] != 'Z' && rpar[2] != 'X' && rpar[2] != 'x';
    }
    return e->alive;
}

/* whether the parent named by the process's last stat is still its parent: only its exit
   re-parents the children, so it holds while the parent is init (or none), is idle itself
   (it has not run, so has not exited), or reads as alive and no zombie now */
static int parent_holds(const Entry *e, Entry **sorted, Py_ssize_t n, char *buf) {
    if (e->ppid <= 1)
        return 1;
    Entry key, *keyp = &key;
    key.pid = e->ppid;
    Entry **found = bsearch(&keyp, sorted, (size_t)n, sizeof(Entry *), by_pid);
    if (found == NULL)
        return 0;
    Entry *parent = *found;
    if (parent->planned)
        return parent->idle;
    return parent->probe_fd >= 0 && probe_alive(parent, buf);
}

static PyObject *poll(PyObject *module, PyObject *states) {
    (void)module;
    if (!PyList_Check(states)) {
        PyErr_SetString(PyExc_TypeError, "poll() takes a list of Proc");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(states), njobs = 0, cap = 0;
    Entry *entries = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Entry));
    Job *jobs = NULL;
    PyObject *out = NULL;
    if (entries == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *st = PyList_GET_ITEM(states, i);
        PyObject *quick = PyObject_GetAttr(st, s_quick);
        if (quick == NULL)
            goto done;
        int rc = quick == Py_None ? plan_probe(st, &entries[i]) : plan_one(st, quick, &jobs, &njobs, &cap, &entries[i]);
        Py_DECREF(quick);  /* the tuple stays alive in st.quick, and with it the gate's bytes */
        if (rc < 0)
            goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    char buf[STAT_SIZE];
    /* first every process's threads' schedstat: whether it ran since it was last read */
    for (Py_ssize_t i = 0; i < n; i++) {
        Entry *e = &entries[i];
        if (!e->planned)
            continue;
        e->idle = 1;
        for (Py_ssize_t j = e->first; j < e->first + e->ngate; j++) {
            if (!same_content(&jobs[j], buf)) {
                e->idle = 0;
                break;
            }
        }
    }
    /* then stat, where the parent it names may have exited (nothing else in it changes while the
       process does not run), and statm (memory can be reclaimed from a process that does not run) */
    Entry **sorted = malloc((size_t)(n ? n : 1) * sizeof(Entry *));
    if (sorted != NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            sorted[i] = &entries[i];
        qsort(sorted, (size_t)n, sizeof(Entry *), by_pid);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Entry *e = &entries[i];
        if (!e->idle)
            continue;
        Job *stat = &jobs[e->first + e->ngate];
        e->same = (sorted != NULL && parent_holds(e, sorted, n, buf)) || same_content(stat, buf);
        e->same = e->same && same_content(stat + 1, buf);
    }
    free(sorted);
    Py_END_ALLOW_THREADS
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = Py_None;
        if (entries[i].same) {
            PyObject *st = PyList_GET_ITEM(states, i);
            item = PyObject_GetAttr(st, s_fields);
            if (item == NULL || PyObject_SetAttr(st, s_ran, Py_False) < 0) {
                Py_XDECREF(item);
                Py_CLEAR(out);
                goto done;
            }
        } else {
            Py_INCREF(item);
        }
        PyList_SET_ITEM(out, i, item);
    }
done:
    PyMem_Free(entries);
    PyMem_Free(jobs);
    return out;
}

static int set_slot(PyObject *obj, PyObject *name, PyObject *value) {
    /* the frozen dataclass's __setattr__ refuses; object's (the slot's descriptor) is what its __init__ uses */
    return PyObject_GenericSetAttr(obj, name, value);
}

static PyObject *records(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "records(cls, readings, mono, wall, source, version, out)");
        return NULL;
    }
    PyObject *cls = args[0], *readings = args[1], *mono = args[2], *wall = args[3], *source = args[4],
             *version = args[5], *out = args[6];
    if (!PyType_Check(cls) || !PyList_Check(readings) || !PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "records() takes a type and two lists");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    Py_ssize_t n = PyList_GET_SIZE(readings);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(readings, i);
        PyObject *pid = NULL, *fields = NULL, *levels = NULL, *joined = NULL, *problems = NULL, *error = NULL,
                 *entity = NULL, *rec = NULL;
        int ok = 0;
        if ((pid = PyObject_GetAttr(r, s_pid)) == NULL || (fields = PyObject_GetAttr(r, s_fields)) == NULL ||
            (levels = PyObject_GetAttr(r, s_levels)) == NULL || (problems = PyObject_GetAttr(r, s_problems)) == NULL)
            goto next;
        if (!PyDict_Check(fields)) {
            PyErr_SetString(PyExc_TypeError, "a reading's fields must be a dict");
            goto next;
        }
        if ((joined = PyUnicode_Join(s_space, levels)) == NULL || PyDict_SetItem(fields, s_levels_key, joined) < 0)
            goto next;
        int has_problems = PyObject_IsTrue(problems);
        if (has_problems < 0)
            goto next;
        if (has_problems) {
            if ((error = PyObject_CallMethodNoArgs(r, s_error)) == NULL)
                goto next;
        } else {
            error = Py_NewRef(Py_None);
        }
        if ((entity = PyUnicode_FromFormat("pid:%S", pid)) == NULL)
            goto next;
        if ((rec = type->tp_alloc(type, 0)) == NULL)
            goto next;
        if (set_slot(rec, s_mono_ns, mono) < 0 || set_slot(rec, s_wall_ns, wall) < 0 ||
            set_slot(rec, s_entity, entity) < 0 || set_slot(rec, s_fields, fields) < 0 ||
            set_slot(rec, s_source, source) < 0 || set_slot(rec, s_source_version, version) < 0 ||
            set_slot(rec, s_error, error) < 0 || PyList_Append(out, rec) < 0)
            goto next;
        ok = 1;
    next:
        Py_XDECREF(pid);
        Py_XDECREF(fields);
        Py_XDECREF(levels);
        Py_XDECREF(joined);
        Py_XDECREF(problems);
        Py_XDECREF(error);
        Py_XDECREF(entity);
        Py_XDECREF(rec);
        if (!ok)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* -- refresh: one process that ran, read and parsed whole ------------------------------------ */

static PyObject *s_full, *s_split, *s_gate, *s_start, *s_comm, *s_slow, *s_parsed, *s_create_time, *s_threads,
    *s_name, *s_io, *s_cmdline;

static ssize_t read_at0(int fd, char *buf, size_t size) {
    ssize_t n;
    do {
        n = pread(fd, buf, size, 0);
    } while (n < 0 && errno == EINTR);
    return n;
}

/* the unsigned decimal at *p (after spaces); -1 if none */
static long long number_at(const char *p, const char *end, const char **after) {
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    long long v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (v > (LLONG_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*p++ - '0');
    }
    if (after)
        *after = p;
    return v;
}

/* the value of "key" (which starts a line) in a status-like text; -1 if absent */
static long long keyed(const char *text, Py_ssize_t n, const char *key) {
    size_t klen = strlen(key);
    const char *p = text, *end = text + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > klen && memcmp(p, key, klen) == 0)
            return number_at(p + klen, eol, NULL);
        p = eol + 1;
    }
    return -1;
}

static PyObject *float_ticks(const char *tok, double clk) {
    long long v = number_at(tok, tok + 24, NULL);
    return v < 0 ? NULL : PyFloat_FromDouble((double)v / clk);
}

/* refresh(st, consts) -> fields dict, or None where the Python path must read it (anything out of
   the ordinary: a new name, command line, thread count or start time, a file that fails, a
   number that does not parse). consts = (keys, status names, clock ticks, page size). */
static PyObject *refresh(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) != 4) {
        PyErr_SetString(PyExc_TypeError, "refresh(st, (keys, status names, clock ticks, page size))");
        return NULL;
    }
    PyObject *st = args[0], *keys = PyTuple_GET_ITEM(args[1], 0), *names = PyTuple_GET_ITEM(args[1], 1);
    double clk = PyFloat_AsDouble(PyTuple_GET_ITEM(args[1], 2));
    long long page = PyLong_AsLongLong(PyTuple_GET_ITEM(args[1], 3));
    if (PyErr_Occurred())
        return NULL;
    if (!PyTuple_Check(keys) || PyTuple_GET_SIZE(keys) != 22 || !PyDict_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "refresh: keys must be the 22 field names, status names a dict");
        return NULL;
    }
    PyObject *full = NULL, *old_stat = NULL, *old_statm = NULL, *gate = NULL, *start = NULL, *comm = NULL,
             *slow = NULL, *parsed = NULL, *fields = NULL, *split = NULL, *new_gate = NULL, *stat_b = NULL,
             *statm_b = NULL, *out = NULL, *vals[22] = {NULL};
    char stat[STAT_SIZE], statm[STATM_SIZE], text[8192];
    int fds[5];
    if ((full = PyObject_GetAttr(st, s_full)) == NULL)
        return NULL;
    if (full == Py_None)
        goto fallback;
    if (!PyTuple_Check(full) || PyTuple_GET_SIZE(full) != 6) {
        PyErr_SetString(PyExc_TypeError, "Proc.full must be (stat, statm, status, io, cmdline fds, gate fds)");
        goto error;
    }
    for (int i = 0; i < 5; i++) {
        fds[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(full, i));
        if (PyErr_Occurred())
            goto error;
    }
    PyObject *gate_fds = PyTuple_GET_ITEM(full, 5);
    if ((old_stat = PyObject_GetAttr(st, s_stat)) == NULL || (old_statm = PyObject_GetAttr(st, s_statm)) == NULL ||
        (gate = PyObject_GetAttr(st, s_gate)) == NULL || (start = PyObject_GetAttr(st, s_start)) == NULL ||
        (comm = PyObject_GetAttr(st, s_comm)) == NULL || (slow = PyObject_GetAttr(st, s_slow)) == NULL ||
        (parsed = PyObject_GetAttr(st, s_parsed)) == NULL || (fields = PyObject_GetAttr(st, s_fields)) == NULL ||
        (split = PyObject_GetAttr(st, s_split)) == NULL)
        goto error;
    if (!PyTuple_Check(gate_fds) || !PyList_Check(gate) || PyList_GET_SIZE(gate) != PyTuple_GET_SIZE(gate_fds) ||
        !PyBytes_Check(old_stat) || !PyBytes_Check(old_statm) || !PyBytes_Check(start) || !PyBytes_Check(comm) ||
        !PyTuple_Check(slow) || PyTuple_GET_SIZE(slow) != 5 || !PyDict_Check(parsed) || !PyDict_Check(fields) ||
        !PyList_Check(split))
        goto fallback;

    /* stat: the fields after the name */
    ssize_t n = read_at0(fds[0], stat, sizeof stat - 1);
    if (n <= 0 || n >= (ssize_t)sizeof stat - 1)
        goto fallback;
    stat[n] = '\0';
    int stat_same = n == PyBytes_GET_SIZE(old_stat) && memcmp(stat, PyBytes_AS_STRING(old_stat), (size_t)n) == 0;
    const char *lpar = memchr(stat, '(', (size_t)n), *rpar = memrchr(stat, ')', (size_t)n);
    if (lpar == NULL || rpar == NULL || rpar < lpar || rpar + 2 >= stat + n)
        goto fallback;
    if (rpar - lpar - 1 != PyBytes_GET_SIZE(comm) || memcmp(lpar + 1, PyBytes_AS_STRING(comm), (size_t)(rpar - lpar - 1)))
        goto fallback;  /* a new name (exec, prctl): the Python path works out psutil's name */
    const char *tok[40];
    int ntok = 0;
    for (const char *p = rpar + 2; p < stat + n && ntok < 40;) {
        while (p < stat + n && (*p == ' ' || *p == '\n'))
            p++;
        if (p >= stat + n)
            break;
        tok[ntok++] = p;
        while (p < stat + n && *p != ' ' && *p != '\n')
            p++;
    }
    if (ntok < 20)
        goto fallback;
    size_t start_len = strcspn(tok[19], " \n");
    if ((Py_ssize_t)start_len != PyBytes_GET_SIZE(start) || memcmp(tok[19], PyBytes_AS_STRING(start), start_len))
        goto fallback;  /* read by path and the pid names a new process: the Python path says Vanished */
    long long threads = number_at(tok[17], stat + n, NULL), ppid = number_at(tok[1], stat + n, NULL);
    if (threads != PyList_GET_SIZE(gate) || ppid < 0)
        goto fallback;
    char state = tok[0][0];

    /* statm */
    ssize_t m = read_at0(fds[1], statm, sizeof statm);
    const char *after;
    if (m <= 0 || m >= (ssize_t)sizeof statm)
        goto fallback;
    long long vms = number_at(statm, statm + m, &after);
    long long rss = vms < 0 ? -1 : number_at(after, statm + m, NULL);
    if (rss < 0)
        goto fallback;

    /* the threads' schedstat first, then what the process did up to it */
    Py_ssize_t ngate = PyList_GET_SIZE(gate);
    int ran = state == 'R';
    if ((new_gate = PyList_New(ngate)) == NULL)
        goto error;
    for (Py_ssize_t i = 0; i < ngate; i++) {
        PyObject *pair = PyList_GET_ITEM(gate, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(pair, 1)))
            goto fallback;
        int fd = (int)PyLong_AsLong(PyTuple_GET_ITEM(gate_fds, i));
        if (PyErr_Occurred())
            goto error;
        char sched[GATE_SIZE];
        ssize_t k = read_at0(fd, sched, sizeof sched);
        if (k <= 2 || k >= (ssize_t)sizeof sched || (sched[0] == '0' && sched[1] == ' '))
            goto fallback;
        PyObject *old = PyTuple_GET_ITEM(pair, 1);
        if (k == PyBytes_GET_SIZE(old) && memcmp(sched, PyBytes_AS_STRING(old), (size_t)k) == 0) {
            PyList_SET_ITEM(new_gate, i, Py_NewRef(pair));
            continue;
        }
        ran = 1;
        PyObject *data = PyBytes_FromStringAndSize(sched, k);
        PyObject *fresh = data ? PyTuple_Pack(2, PyTuple_GET_ITEM(pair, 0), data) : NULL;
        Py_XDECREF(data);
        if (fresh == NULL)
            goto error;
        PyList_SET_ITEM(new_gate, i, fresh);
    }
    if (!ran && stat_same && m == PyBytes_GET_SIZE(old_statm) && memcmp(statm, PyBytes_AS_STRING(old_statm), (size_t)m) == 0)
        goto fallback;  /* nothing changed: the Python path's cache (poll normally answers first) */

    /* status, io, cmdline where it ran; else their last values */
    PyObject *io_vals[6], *voluntary, *involuntary, *uid, *cmdline = PyTuple_GET_ITEM(slow, 4);
    PyObject *io_tuple = PyTuple_GET_ITEM(slow, 0), *new_io = NULL, *new_slow = NULL;
    if (!PyTuple_Check(io_tuple) || PyTuple_GET_SIZE(io_tuple) != 6 || cmdline == Py_None)
        goto fallback;
    if (ran) {
        ssize_t k = read_at0(fds[2], text, sizeof text);
        if (k <= 0 || k >= (ssize_t)sizeof text)
            goto fallback;
        long long vol = keyed(text, k, "voluntary_ctxt_switches:"), invol = keyed(text, k, "nonvoluntary_ctxt_switches:");
        long long real = keyed(text, k, "Uid:");
        if (vol < 0 || invol < 0 || real < 0)
            goto fallback;
        k = read_at0(fds[3], text, sizeof text);
        if (k <= 0 || k >= (ssize_t)sizeof text)
            goto fallback;
        PyObject *last_io = PyDict_GetItemWithError(parsed, s_io);  /* (text, ((values), problem)) */
        if (last_io == NULL && PyErr_Occurred())
            goto error;
        if (last_io != NULL && PyTuple_Check(last_io) && PyTuple_GET_SIZE(last_io) == 2 &&
            PyBytes_Check(PyTuple_GET_ITEM(last_io, 0)) && k == PyBytes_GET_SIZE(PyTuple_GET_ITEM(last_io, 0)) &&
            memcmp(text, PyBytes_AS_STRING(PyTuple_GET_ITEM(last_io, 0)), (size_t)k) == 0) {
            new_io = Py_NewRef(io_tuple);
        } else {
            static const char *io_keys[6] = {"syscr:", "syscw:", "read_bytes:", "write_bytes:", "rchar:", "wchar:"};
            long long v[6];
            for (int i = 0; i < 6; i++)
                if ((v[i] = keyed(text, k, io_keys[i])) < 0)
                    goto fallback;
            new_io = Py_BuildValue("(LLLLLL)", v[0], v[1], v[2], v[3], v[4], v[5]);
            if (new_io == NULL)
                goto error;
            PyObject *data = PyBytes_FromStringAndSize(text, k);
            PyObject *entry = data ? Py_BuildValue("(N(OO))", data, new_io, Py_None) : NULL;
            if (entry == NULL || PyDict_SetItem(parsed, s_io, entry) < 0) {
                Py_XDECREF(entry);
                Py_DECREF(new_io);
                goto error;
            }
            Py_DECREF(entry);
        }
        k = read_at0(fds[4], text, sizeof text);
        PyObject *last_cmd = PyDict_GetItemWithError(parsed, s_cmdline);  /* (text, (argv, cmdline)) */
        if (k <= 0 || k >= 4096 || last_cmd == NULL || !PyTuple_Check(last_cmd) || PyTuple_GET_SIZE(last_cmd) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(last_cmd, 0)) || k != PyBytes_GET_SIZE(PyTuple_GET_ITEM(last_cmd, 0)) ||
            memcmp(text, PyBytes_AS_STRING(PyTuple_GET_ITEM(last_cmd, 0)), (size_t)k) != 0) {
            Py_DECREF(new_io);
            goto fallback;  /* a new command line: the Python path parses and redacts it */
        }
        new_slow = Py_BuildValue("(NLLLO)", new_io, vol, invol, real, cmdline);
        if (new_slow == NULL)
            goto error;
    } else {
        new_slow = Py_NewRef(slow);
    }
    for (int i = 0; i < 6; i++)
        io_vals[i] = PyTuple_GET_ITEM(PyTuple_GET_ITEM(new_slow, 0), i);
    voluntary = PyTuple_GET_ITEM(new_slow, 1);
    involuntary = PyTuple_GET_ITEM(new_slow, 2);
    uid = PyTuple_GET_ITEM(new_slow, 3);

    /* the fields, in _procfs_process.FIELD_KEYS' order */
    PyObject *name = PyDict_GetItemWithError(fields, PyTuple_GET_ITEM(keys, 19));
    PyObject *create_time = PyObject_GetAttr(st, s_create_time);
    PyObject *state_b = PyBytes_FromStringAndSize(&state, 1);
    PyObject *status = state_b ? PyDict_GetItemWithError(names, state_b) : NULL;
    Py_XDECREF(state_b);
    if (name == NULL || create_time == NULL || (status == NULL && PyErr_Occurred())) {
        Py_XDECREF(create_time);
        Py_DECREF(new_slow);
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_KeyError))
            goto error;
        PyErr_Clear();
        goto fallback;
    }
    vals[0] = float_ticks(tok[11], clk);
    vals[1] = float_ticks(tok[12], clk);
    vals[2] = float_ticks(tok[13], clk);
    vals[3] = float_ticks(tok[14], clk);
    vals[4] = ntok > 39 ? float_ticks(tok[39], clk) : PyFloat_FromDouble(0.0);
    vals[5] = PyLong_FromLongLong(rss * page);
    vals[6] = PyLong_FromLongLong(vms * page);
    for (int i = 0; i < 6; i++)
        vals[7 + i] = Py_NewRef(io_vals[i]);
    vals[13] = Py_NewRef(voluntary);
    vals[14] = Py_NewRef(involuntary);
    vals[15] = Py_NewRef(uid);
    vals[16] = PyLong_FromLongLong(threads);
    vals[17] = PyLong_FromLongLong(ppid);
    vals[18] = create_time;
    vals[19] = Py_NewRef(name);
    vals[20] = status ? Py_NewRef(status) : PyUnicode_FromString("?");
    vals[21] = Py_NewRef(cmdline);
    PyObject *fresh = PyDict_New();
    int bad = fresh == NULL;
    for (int i = 0; i < 22 && !bad; i++)
        bad = vals[i] == NULL || PyDict_SetItem(fresh, PyTuple_GET_ITEM(keys, i), vals[i]) < 0;
    if (bad) {
        Py_XDECREF(fresh);
        Py_DECREF(new_slow);
        if (PyErr_Occurred())
            goto error;
        goto fallback;
    }
    /* the state the Python path keeps, as it would have left it */
    int rc = 0;
    if (!stat_same) {
        PyObject *rest = PyBytes_FromStringAndSize(rpar + 2, stat + n - (rpar + 2));
        PyObject *parts = rest ? PyObject_CallMethod(rest, "split", NULL) : NULL;
        stat_b = PyBytes_FromStringAndSize(stat, n);
        Py_XDECREF(rest);
        rc = parts == NULL || stat_b == NULL || PyObject_SetAttr(st, s_split, parts) < 0 ||
             PyObject_SetAttr(st, s_stat, stat_b) < 0;
        Py_XDECREF(parts);
    }
    statm_b = PyBytes_FromStringAndSize(statm, m);
    PyObject *nthreads = PyLong_FromLongLong(threads);
    rc = rc || statm_b == NULL || nthreads == NULL || PyObject_SetAttr(st, s_statm, statm_b) < 0 ||
         PyObject_SetAttr(st, s_threads, nthreads) < 0 || PyObject_SetAttr(st, s_gate, new_gate) < 0 ||
         PyObject_SetAttr(st, s_slow, new_slow) < 0 || PyObject_SetAttr(st, s_fields, fresh) < 0 ||
         PyObject_SetAttr(st, s_ran, ran ? Py_True : Py_False) < 0;
    Py_XDECREF(nthreads);
    Py_DECREF(new_slow);
    if (rc) {
        Py_DECREF(fresh);
        goto error;
    }
    out = fresh;
    goto cleanup;
fallback:
    out = Py_NewRef(Py_None);
    goto cleanup;
error:
    out = NULL;
cleanup:
    for (int i = 0; i < 22; i++)
        Py_XDECREF(vals[i]);
    Py_XDECREF(full);
    Py_XDECREF(old_stat);
    Py_XDECREF(old_statm);
    Py_XDECREF(gate);
    Py_XDECREF(start);
    Py_XDECREF(comm);
    Py_XDECREF(slow);
    Py_XDECREF(parsed);
    Py_XDECREF(fields);
    Py_XDECREF(split);
    Py_XDECREF(new_gate);
    Py_XDECREF(stat_b);
    Py_XDECREF(statm_b);
    return out;
}

static PyMethodDef methods[] = {
    {"poll", (PyCFunction)poll, METH_O,
     "poll(states) -> list: each Proc's cached fields if its files read back as last time, else None"},
    {"refresh", (PyCFunction)(void (*)(void))refresh, METH_FASTCALL,
     "refresh(st, consts) -> fields of a process that ran, read and parsed, or None for the Python path"},
    {"records", (PyCFunction)(void (*)(void))records, METH_FASTCALL,
     "records(cls, readings, mono, wall, source, version, out): append one record per reading to out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_cprocfs", "procfs collector hot path", -1, methods};

PyMODINIT_FUNC PyInit__cprocfs(void) {
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_full, "full"}, {&s_split, "split"}, {&s_gate, "gate"}, {&s_start, "start"}, {&s_comm, "comm"},
        {&s_slow, "slow"}, {&s_parsed, "parsed"}, {&s_create_time, "create_time"}, {&s_threads, "threads"},
        {&s_name, "name"}, {&s_io, "io"}, {&s_cmdline, "cmdline"},
        {&s_fds, "fds"}, {&s_quick, "quick"}, {&s_stat, "stat"}, {&s_statm, "statm"}, {&s_fields, "fields"}, {&s_ran, "ran"},
        {&s_pid, "pid"}, {&s_levels, "levels"}, {&s_problems, "problems"}, {&s_error, "error"},
        {&s_space, " "}, {&s_mono_ns, "mono_ns"}, {&s_wall_ns, "wall_ns"}, {&s_entity, "entity"},
        {&s_source, "source"}, {&s_source_version, "source_version"}, {&s_levels_key, "levels"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return NULL;
    }
    return PyModule_Create(&moduledef);
}
