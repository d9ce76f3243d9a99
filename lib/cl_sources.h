/* The OpenCL C sources embedded at build time (tools/embed_cl.py). */
#ifndef PRESCORE_CL_SOURCES_H
#define PRESCORE_CL_SOURCES_H

#include <stddef.h>

typedef struct ps_cl_source {
    const char *name;           /* file name, e.g. "exact.cl" */
    const unsigned char *bytes; /* NUL-terminated for convenience */
    size_t length;              /* without the NUL */
} ps_cl_source;

extern const ps_cl_source ps_cl_sources[];
extern const size_t ps_cl_source_count;
/* SHA-256 (hex) of the embedded sources, names and lengths included. */
extern const char ps_cl_source_hash[];

#endif
