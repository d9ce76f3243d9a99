/* Parser of the header of a NumPy .npy file (format versions 1.0, 2.0, 3.0):
 * magic, version, header length, and the dict literal
 * {'descr': ..., 'fortran_order': ..., 'shape': (...)}. Only what the
 * bench can read is accepted: little-endian float32 or float16, C order.
 * The header is untrusted input: every length is bounded and every token
 * checked; nothing is allocated from its values. */
#ifndef PRESCORE_BENCH_NPY_HEADER_H
#define PRESCORE_BENCH_NPY_HEADER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NPY_MAGIC "\x93NUMPY" /* 6 bytes */
#define NPY_MAGIC_SIZE 6u
#define NPY_MAX_HEADER 65536u /* bytes of dict literal accepted */
#define NPY_MAX_DIMS 8u

typedef struct npy_header {
    int fp16;                     /* 1: '<f2', 0: '<f4' */
    size_t ndim;
    uint64_t shape[NPY_MAX_DIMS];
    uint64_t data_offset;         /* bytes before the array data */
} npy_header;

/** Reads and parses the header from the start of @p fp. @return 0, or -1
 * with the reason in @p message. */
int npy_read_header(FILE *fp, npy_header *out, char *message, size_t message_size);

/** Parses the dict literal alone (@p text, @p size bytes, no NUL needed). */
int npy_parse_dict(const char *text, size_t size, npy_header *out, char *message,
                   size_t message_size);

#endif
