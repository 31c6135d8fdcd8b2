/* telemrec.readers._cprocfs.refresh: a process that ran since the last tick, its files read and
   parsed and its fields built as _procfs_process.ProcessFiles.read would, for the common case;
   None sends anything else to that Python path. */

#include "_cprocfs.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

static PyObject *s_full, *s_split, *s_gate, *s_start, *s_comm, *s_slow, *s_parsed, *s_create_time, *s_threads,
    *s_io;

int cprocfs_refresh_init(void) {
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_full, "full"}, {&s_split, "split"}, {&s_gate, "gate"}, {&s_start, "start"}, {&s_comm, "comm"},
        {&s_slow, "slow"}, {&s_parsed, "parsed"}, {&s_create_time, "create_time"}, {&s_threads, "threads"},
        {&s_io, "io"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    }
    return 0;
}

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
PyObject *cprocfs_refresh(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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

