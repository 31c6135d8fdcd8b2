/* telemrec.readers._cprocfs: the per-tick hot path of the procfs process collector.

   poll(states): of the processes known from the last tick, for each whose files are kept
   open and which was idle then (Proc.quick is set), re-read its threads' schedstat, stat
   (only where the parent it names may have exited) and statm from their kept descriptors,
   and tell whether all read back byte for byte as last time: then
   the process has not run and its last fields hold. See _procfs_native.py.
   records(cls, readings, mono, wall, source, version, out): one RawRecord per reading
   (fields with ``levels`` added, entity ``pid:<n>``, error from reading.error()), built
   without the frozen dataclass's __init__ (object.__setattr__ per field); a reading of a
   Proc's kept fields gets the last record's fields where they are the same (shared_fields).
   refresh(st, consts): a process that ran, in _cprocfs_refresh.c.

   _procfs_native.py holds the pure-Python equivalents, used where this module is not
   built; tests hold both to the same results. */

#include "_cprocfs.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

PyObject *s_stat, *s_statm, *s_fields, *s_ran, *s_pid, *s_cmdline;
static PyObject *s_fds, *s_quick, *s_levels, *s_problems, *s_error, *s_tick,
    *s_space, *s_mono_ns, *s_wall_ns, *s_entity, *s_source, *s_source_version, *s_levels_key, *s_proc, *s_record;

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
    /* the GIL is kept: released, the trace writer takes it and the sampling thread waits up to
       the switch interval (5 ms) to go on, late for the next tick at 100 Hz */
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

/* The fields of a record of a reading of kept fields (``proc`` its Proc): the last record's,
   where made from the same fields with the same levels (Proc.record), else a copy with ``levels``,
   kept as Proc.record. New reference. */
static PyObject *shared_fields(PyObject *proc, PyObject *fields, PyObject *joined) {
    PyObject *cached = PyObject_GetAttr(proc, s_record);
    if (cached == NULL)
        return NULL;
    if (PyTuple_Check(cached) && PyTuple_GET_SIZE(cached) == 3 && PyTuple_GET_ITEM(cached, 0) == fields) {
        int same = PyUnicode_Compare(PyTuple_GET_ITEM(cached, 1), joined);
        if (same == 0) {
            PyObject *out = Py_NewRef(PyTuple_GET_ITEM(cached, 2));
            Py_DECREF(cached);
            return out;
        }
        if (PyErr_Occurred()) {
            Py_DECREF(cached);
            return NULL;
        }
    }
    Py_DECREF(cached);
    PyObject *copy = PyDict_Copy(fields), *entry = NULL;
    if (copy == NULL || PyDict_SetItem(copy, s_levels_key, joined) < 0 ||
        (entry = PyTuple_Pack(3, fields, joined, copy)) == NULL || PyObject_SetAttr(proc, s_record, entry) < 0) {
        Py_XDECREF(copy);
        Py_XDECREF(entry);
        return NULL;
    }
    Py_DECREF(entry);
    return copy;
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
                 *entity = NULL, *rec = NULL, *proc = NULL, *own = NULL;
        int ok = 0;
        if ((pid = PyObject_GetAttr(r, s_pid)) == NULL || (fields = PyObject_GetAttr(r, s_fields)) == NULL ||
            (levels = PyObject_GetAttr(r, s_levels)) == NULL || (problems = PyObject_GetAttr(r, s_problems)) == NULL)
            goto next;
        if (!PyDict_Check(fields)) {
            PyErr_SetString(PyExc_TypeError, "a reading's fields must be a dict");
            goto next;
        }
        if ((joined = PyUnicode_Join(s_space, levels)) == NULL || (proc = PyObject_GetAttr(r, s_proc)) == NULL)
            goto next;
        if (proc == Py_None) {
            if (PyDict_SetItem(fields, s_levels_key, joined) < 0)
                goto next;
            own = Py_NewRef(fields);
        } else if ((own = shared_fields(proc, fields, joined)) == NULL) {
            goto next;
        }
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
            set_slot(rec, s_entity, entity) < 0 || set_slot(rec, s_fields, own) < 0 ||
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
        Py_XDECREF(proc);
        Py_XDECREF(own);
        if (!ok)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* steady(last, quiet, states, memo, tick, cls) -> (readings, todo)
   The steady path's readings of the members that have not run (``quiet``: pid -> their cached
   fields): for each (pid, levels) of ``last``, cls(pid, the fields (not copied), a copy of the
   Proc's problems, the levels as a list, the Proc), also put in ``memo``, the Proc's tick set. The others are None
   in ``readings`` and their positions listed in ``todo``, for the Python path. */
static PyObject *steady(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 6 || !PyList_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[2]) ||
        !PyDict_Check(args[3]) || !PyCallable_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "steady(last: list, quiet: dict, states: dict, memo: dict, tick, cls)");
        return NULL;
    }
    PyObject *last = args[0], *quiet = args[1], *states = args[2], *memo = args[3], *tick = args[4], *cls = args[5];
    Py_ssize_t n = PyList_GET_SIZE(last);
    PyObject *readings = PyList_New(n), *todo = PyList_New(0);
    if (readings == NULL || todo == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(last, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "steady(): last holds (pid, levels) pairs");
            goto fail;
        }
        PyObject *pid = PyTuple_GET_ITEM(item, 0), *levels = PyTuple_GET_ITEM(item, 1);
        PyObject *fields = PyDict_GetItemWithError(quiet, pid);
        PyObject *st = fields ? PyDict_GetItemWithError(states, pid) : NULL;
        if (PyErr_Occurred())
            goto fail;
        if (fields == NULL || st == NULL || !PyDict_Check(fields)) {
            PyObject *at = PyLong_FromSsize_t(i);
            int bad = at == NULL || PyList_Append(todo, at) < 0;
            Py_XDECREF(at);
            if (bad)
                goto fail;
            PyList_SET_ITEM(readings, i, Py_NewRef(Py_None));
            continue;
        }
        PyObject *problems = NULL, *kept = NULL, *lv = NULL, *reading = NULL;
        int ok = PyObject_SetAttr(st, s_tick, tick) == 0 &&
                 (problems = PyObject_GetAttr(st, s_problems)) != NULL &&
                 (kept = PySequence_List(problems)) != NULL && (lv = PySequence_List(levels)) != NULL &&
                 (reading = PyObject_CallFunctionObjArgs(cls, pid, fields, kept, lv, st, NULL)) != NULL &&
                 PyDict_SetItem(memo, pid, reading) == 0;
        Py_XDECREF(problems);
        Py_XDECREF(kept);
        Py_XDECREF(lv);
        if (!ok) {
            Py_XDECREF(reading);
            goto fail;
        }
        PyList_SET_ITEM(readings, i, reading);
    }
    return Py_BuildValue("(NN)", readings, todo);
fail:
    Py_XDECREF(readings);
    Py_XDECREF(todo);
    return NULL;
}

static PyMethodDef methods[] = {
    {"poll", (PyCFunction)poll, METH_O,
     "poll(states) -> list: each Proc's cached fields if its files read back as last time, else None"},
    {"refresh", (PyCFunction)(void (*)(void))cprocfs_refresh, METH_FASTCALL,
     "refresh(st, consts) -> fields of a process that ran, read and parsed, or None for the Python path"},
    {"steady", (PyCFunction)(void (*)(void))steady, METH_FASTCALL,
     "steady(last, quiet, states, memo, tick, cls) -> (readings, todo): the readings of members that have not run"},
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
        {&s_cmdline, "cmdline"},
        {&s_fds, "fds"}, {&s_quick, "quick"}, {&s_stat, "stat"}, {&s_statm, "statm"}, {&s_fields, "fields"}, {&s_ran, "ran"},
        {&s_pid, "pid"}, {&s_levels, "levels"}, {&s_problems, "problems"}, {&s_error, "error"}, {&s_tick, "tick"},
        {&s_space, " "}, {&s_mono_ns, "mono_ns"}, {&s_wall_ns, "wall_ns"}, {&s_entity, "entity"},
        {&s_source, "source"}, {&s_source_version, "source_version"}, {&s_levels_key, "levels"},
        {&s_proc, "proc"}, {&s_record, "record"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return NULL;
    }
    if (cprocfs_refresh_init() < 0)
        return NULL;
    return PyModule_Create(&moduledef);
}
