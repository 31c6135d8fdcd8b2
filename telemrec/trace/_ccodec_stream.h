/* What _ccodec.c shares with _ccodec_segment.c (the writer's per-flush work): one column's stream,
 * and the functions the module table names. Include after Python.h. */
#ifndef TELEMREC_CCODEC_STREAM_H
#define TELEMREC_CCODEC_STREAM_H

#include <stdint.h>

typedef struct {
    uint8_t *buf;          /* the stream (malloc'ed) */
    size_t size, raw;      /* its size, and its body's inflated size */
    uint32_t crc;
    int encoding, scale, width, mask;
    int64_t *run_masks;    /* each run's kinds (bits 1 << kind) where the rows hold several (malloc'ed), else NULL */
} EncodedStream;

int ccodec_encode_column(PyObject *ko, PyObject *vo, PyObject *so, const int64_t *runs, int64_t n_runs, int level,
                         int want_masks, EncodedStream *out);
PyObject *ccodec_segment_streams(PyObject *self, PyObject *args);
PyObject *ccodec_gather_columns(PyObject *self, PyObject *args);

#endif
