/* Shared by _cprocfs.c (the module, poll, records) and _cprocfs_refresh.c (refresh). */
#ifndef TELEMREC_CPROCFS_H
#define TELEMREC_CPROCFS_H

#define _GNU_SOURCE  /* memrchr */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define GATE_SIZE 128
#define STAT_SIZE 4096
#define STATM_SIZE 256

/* interned attribute names both files use */
extern PyObject *s_stat, *s_statm, *s_fields, *s_ran, *s_pid, *s_cmdline;

PyObject *cprocfs_refresh(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
int cprocfs_refresh_init(void);

#endif
