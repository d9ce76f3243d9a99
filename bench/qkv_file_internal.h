/* What the readers of bench/qkv_file.c, qkv_npy.c and qkv_safetensors.c
 * share: messages, opening a regular file, and the shape and length checks
 * every format passes (bench/qkv_file.h). */
#ifndef PRESCORE_BENCH_QKV_FILE_INTERNAL_H
#define PRESCORE_BENCH_QKV_FILE_INTERNAL_H

#include "qkv_file.h"

void qkv_set_msg(char *buf, size_t size, const char *fmt, ...);

/** Opens @p path if it is a regular file, without blocking; *size its length. */
qkv_status qkv_open_regular(const char *path, FILE **out, uint64_t *size, char *message,
                            size_t message_size);

/** Checks the dimensions (non-zero, 32-bit, at most QKV_FILE_MAX_IDS layers
 * + heads, one head of n * d floats addressable here), sets the shape and
 * dtype fields of @p f, and writes to *bytes the size of @p tensors tensors
 * of [layers, heads, n, d] (overflow-checked). */
qkv_status qkv_set_shape(qkv_file *f, const char *path, int fp16, uint64_t layers,
                         uint64_t heads, uint64_t n, uint64_t d, unsigned tensors,
                         uint64_t *bytes, char *message, size_t message_size);

/** A file of @p size bytes must hold exactly @p header + @p data bytes. */
qkv_status qkv_check_length(const qkv_file *f, const char *path, uint64_t size, uint64_t header,
                            uint64_t data, char *message, size_t message_size);

/** Numbers the stored layers and heads from 0 and copies @p provenance
 * (cut at QKV_FILE_MAX_PROVENANCE bytes). */
qkv_status qkv_number_ids(qkv_file *f, const char *path, const char *provenance, char *message,
                          size_t message_size);

/** q, k and v interleaved per head, as PSQKV and the single .npy lay them:
 * [layers, heads, 3, n, d] after @p header bytes (sets fps, base,
 * head_stride, header_size). */
void qkv_set_interleaved(qkv_file *f, uint64_t header);

uint64_t qkv_le64(const unsigned char *p);

/* The formats besides PSQKV. f->fp is open at the file's start. */
qkv_status qkv_open_npy(qkv_file *f, const char *path, char *message, size_t message_size);
qkv_status qkv_open_npy_triple(qkv_file *f, const char *paths, char *message,
                               size_t message_size);
/** @p hlen: the header length (the first 8 bytes, little-endian). */
qkv_status qkv_open_safetensors(qkv_file *f, const char *path, uint64_t hlen, char *message,
                                size_t message_size);

#endif
