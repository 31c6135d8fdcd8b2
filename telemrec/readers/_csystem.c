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


#include "_csystem.h"

#include <stdlib.h>
#include <sys/vfs.h>

#define CACHE_LIMIT 4096 /* device names seen; cleared past this (containers' veths come and go) */

static PyObject *s_mono_ns, *s_wall_ns, *s_entity, *s_fields, *s_source, *s_source_version, *s_error;

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

/* table[name] = the fields of v (a repeated name: the last values, in the first's place, as psutil's dict) */
static int table_set(PyObject *table, const char *name, size_t len, PyObject *keys, const uint64_t *v, Py_ssize_t n) {
    PyObject *key = PyUnicode_DecodeASCII(name, (Py_ssize_t)len, "strict");
    PyObject *fields = key ? u64_fields(keys, v, n) : NULL;
    int rc = fields == NULL ? -1 : PyDict_SetItem(table, key, fields);
    Py_XDECREF(key);
    Py_XDECREF(fields);
    return rc;
}

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
        if (table_set(table, tok[name], tlen[name], keys, v, NDISK) < 0)
            Py_CLEAR(table);
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
        if (table_set(table, ns, (size_t)(ne - ns), keys, v, NNET) < 0)
            Py_CLEAR(table);
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
