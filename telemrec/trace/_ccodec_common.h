/* Shared by the two halves of telemrec.trace._ccodec (_ccodec.c: format 3; _ccodec_v2.c: formats 1, 2). */
#ifndef TELEMREC_CCODEC_COMMON_H
#define TELEMREC_CCODEC_COMMON_H

#include <stdint.h>

/* int64 -> float64 in place, divided by ``divisor`` unless it is 0 or 1: the conversion and the IEEE
 * division NumPy does, so the bits agree; cloned for wider vector units where the compiler can. */
#if defined(__x86_64__) && defined(__GLIBC__) && !defined(__clang__) && __GNUC__ >= 12
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) /* needs glibc's ifunc */
#endif
static void to_double(void *buf, int64_t n, double divisor)
{
    const int64_t *v = (const int64_t *)buf;
    double *o = (double *)buf;
    if (divisor != 0.0 && divisor != 1.0)
        for (int64_t i = 0; i < n; i++)
            o[i] = (double)v[i] / divisor;
    else
        for (int64_t i = 0; i < n; i++)
            o[i] = (double)v[i];
}

#endif
