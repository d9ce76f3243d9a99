/* Reader of recorded per-head Q, K, V of a real transformer (formats and
 * provenance: docs/DATA.md): PSQKV files; NumPy .npy files holding one
 * [layers, heads, 3, n, d] float32/float16 array (the same data layout), or
 * three, one per tensor ("q.npy,k.npy,v.npy"); safetensors files with
 * tensors named q, k and v. C99 and POSIX (open, fstat, fdopen).
 * Every failure returns a status and leaves a message in the handle (or in
 * the caller's buffer for qkv_file_open); a truncated or corrupt file is an
 * error, never a crash. */
#ifndef PRESCORE_BENCH_QKV_FILE_H
#define PRESCORE_BENCH_QKV_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define QKV_FILE_MAGIC "PSQKV\0\0\0" /* 8 bytes */
#define QKV_FILE_VERSION 1u
#define QKV_FILE_FIXED_HEADER 40u /* magic + 8 little-endian uint32 */
#define QKV_FILE_MAX_PROVENANCE 65536u
#define QKV_FILE_MAX_IDS 4096u /* layers + heads listed in the header */

typedef enum qkv_dtype { QKV_DTYPE_FP16 = 1, QKV_DTYPE_FP32 = 2 } qkv_dtype;

typedef enum qkv_status {
    QKV_OK = 0,
    QKV_ERR_ARGUMENT = 1,  /* NULL pointer, layer/head out of range */
    QKV_ERR_OPEN = 2,      /* open / fstat failed, or not a regular file */
    QKV_ERR_MAGIC = 3,     /* none of the formats read */
    QKV_ERR_VERSION = 4,   /* a version this reader does not know */
    QKV_ERR_HEADER = 5,    /* a header field out of range or inconsistent */
    QKV_ERR_SIZE = 6,      /* file length differs from what the header implies */
    QKV_ERR_READ = 7,      /* short read or read error */
    QKV_ERR_MEMORY = 8,    /* allocation failed */
    QKV_ERR_NON_FINITE = 9 /* a stored value is NaN or infinite */
} qkv_status;

typedef struct qkv_file {
    FILE *fp;
    uint32_t version;
    qkv_dtype dtype;
    size_t layers, heads, n, d;
    uint32_t *layer_ids; /* [layers]: the model's layer index of each stored layer */
    uint32_t *head_ids;  /* [heads]: the model's head index of each stored head */
    char *provenance;    /* NUL-terminated UTF-8 */
    uint64_t header_size, file_size;
    FILE *fps[3];         /* where q, k and v lie: fp, or a file each (three .npy files) */
    uint64_t base[3];     /* byte offset of each tensor's first stored head */
    uint64_t head_stride; /* bytes from one stored (layer, head) of a tensor to the next */
    char message[512];   /* detail of the last failure */
} qkv_file;

/** @return a short static name of @p st. */
const char *qkv_status_string(qkv_status st);

/** Opens and validates @p path: PSQKV, .npy or safetensors, told apart by
 * their first bytes, or three .npy files (q, k, v) named by @p path as
 * "Q,K,V" (a path with a comma is read that way). Magic, version, dtype,
 * shapes and sizes against the file lengths are checked, all
 * overflow-checked. Never blocks in open: anything but
 * a regular file (a FIFO, directory, socket or device) is refused with
 * QKV_ERR_OPEN and a message naming what it is. The shapes are not checked
 * against any consumer's limits (any d): a caller checks what it supports
 * before allocating from them. On failure *out is NULL and @p message (may
 * be NULL) receives the reason. */
qkv_status qkv_file_open(const char *path, qkv_file **out, char *message, size_t message_size);

/** Reads stored layer @p layer, stored head @p head (indices into the stored
 * lists, not model indices) as float arrays of n * d each (row-major
 * [token][dim]); fp16 is converted exactly. Any of q, k, v may be NULL. */
qkv_status qkv_file_read_head(qkv_file *f, size_t layer, size_t head, float *q, float *k,
                              float *v);

/** Index of model layer @p model_layer / head @p model_head in the stored
 * lists, or (size_t)-1 when the file does not hold it. */
size_t qkv_file_find_layer(const qkv_file *f, uint32_t model_layer);
size_t qkv_file_find_head(const qkv_file *f, uint32_t model_head);

/** Closes and frees. Accepts NULL. */
void qkv_file_close(qkv_file *f);

/** IEEE 754 binary16 bits to float (subnormals, infinities and NaN included). */
float qkv_half_to_float(uint16_t h);

#endif
