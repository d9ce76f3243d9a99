/* NumPy .npy input (bench/qkv_file.h): one [layers, heads, 3, n, d] array,
 * or three files holding q, k and v each as [layers, heads, n, d],
 * [heads, n, d] or [n, d]. Headers are parsed by bench/npy_header.c. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "qkv_file_internal.h"

#include "npy_header.h"

#include <stdlib.h>
#include <string.h>

qkv_status qkv_open_npy(qkv_file *f, const char *path, char *message, size_t message_size)
{
    npy_header h;
    char detail[256];
    uint64_t bytes;
    qkv_status st;

    rewind(f->fp);
    if (npy_read_header(f->fp, &h, detail, sizeof detail) != 0) {
        qkv_set_msg(message, message_size, "%s: %s", path, detail);
        return QKV_ERR_HEADER;
    }
    if (h.ndim != 5 || h.shape[2] != 3) {
        qkv_set_msg(message, message_size,
                    "%s: npy array of %zu dimensions; the bench reads [layers, heads, 3, n, d] "
                    "(q, k, v on the third axis), or three files \"q.npy,k.npy,v.npy\"",
                    path, h.ndim);
        return QKV_ERR_HEADER;
    }
    st = qkv_set_shape(f, path, h.fp16, h.shape[0], h.shape[1], h.shape[3], h.shape[4], 3,
                       &bytes, message, message_size);
    if (st == QKV_OK)
        st = qkv_check_length(f, path, f->file_size, h.data_offset, bytes, message, message_size);
    if (st == QKV_OK)
        st = qkv_number_ids(f, path, "NumPy .npy file (no provenance recorded)", message,
                            message_size);
    if (st == QKV_OK)
        qkv_set_interleaved(f, h.data_offset);
    f->version = 0;
    return st;
}

/* One tensor's file of the "q,k,v" form: its header, shape as [layers,
 * heads, n, d] (missing leading axes are 1). */
static qkv_status open_tensor_file(qkv_file *f, int t, const char *path, npy_header *h,
                                   uint64_t dims[4], uint64_t *size, char *message,
                                   size_t message_size)
{
    char detail[256];
    qkv_status st = qkv_open_regular(path, &f->fps[t], size, message, message_size);
    if (st != QKV_OK)
        return st;
    if (npy_read_header(f->fps[t], h, detail, sizeof detail) != 0) {
        qkv_set_msg(message, message_size, "%s: %s", path, detail);
        return QKV_ERR_HEADER;
    }
    if (h->ndim < 2 || h->ndim > 4) {
        qkv_set_msg(message, message_size,
                    "%s: npy array of %zu dimensions; a tensor file holds [layers, heads, n, d], "
                    "[heads, n, d] or [n, d]",
                    path, h->ndim);
        return QKV_ERR_HEADER;
    }
    for (size_t i = 0; i < 4; ++i)
        dims[i] = i < 4 - h->ndim ? 1 : h->shape[i - (4 - h->ndim)];
    return QKV_OK;
}

qkv_status qkv_open_npy_triple(qkv_file *f, const char *paths, char *message,
                               size_t message_size)
{
    const size_t len = strlen(paths);
    char *copy = malloc(len + 1), *name[3];
    uint64_t dims[3][4], bytes = 0;
    npy_header h[3];
    qkv_status st = QKV_OK;
    char provenance[128];

    if (!copy) {
        qkv_set_msg(message, message_size, "%s: out of memory", paths);
        return QKV_ERR_MEMORY;
    }
    memcpy(copy, paths, len + 1);
    name[0] = copy;
    for (int t = 1; t < 3; ++t) {
        char *comma = name[t - 1] ? strchr(name[t - 1], ',') : NULL;
        name[t] = comma ? comma + 1 : NULL;
        if (comma)
            *comma = '\0';
    }
    if (!name[2] || strchr(name[2], ',') || !name[0][0] || !name[1][0] || !name[2][0]) {
        qkv_set_msg(message, message_size,
                    "%s: a path with commas names three .npy files, \"q.npy,k.npy,v.npy\"",
                    paths);
        free(copy);
        return QKV_ERR_ARGUMENT;
    }
    for (int t = 0; t < 3 && st == QKV_OK; ++t) {
        uint64_t size;
        st = open_tensor_file(f, t, name[t], &h[t], dims[t], &size, message, message_size);
        if (st == QKV_OK && t > 0 &&
            (memcmp(dims[t], dims[0], sizeof dims[0]) != 0 || h[t].fp16 != h[0].fp16)) {
            qkv_set_msg(message, message_size, "%s: shape or dtype differs from %s's", name[t],
                        name[0]);
            st = QKV_ERR_HEADER;
        }
        if (st == QKV_OK && t == 0)
            st = qkv_set_shape(f, name[0], h[0].fp16, dims[0][0], dims[0][1], dims[0][2],
                               dims[0][3], 1, &bytes, message, message_size);
        if (st == QKV_OK)
            st = qkv_check_length(f, name[t], size, h[t].data_offset, bytes, message,
                                  message_size);
        if (st == QKV_OK) {
            f->base[t] = h[t].data_offset;
            f->file_size += size;
        }
    }
    if (st == QKV_OK) {
        f->fp = f->fps[0];
        f->head_stride = (uint64_t)f->n * f->d * (f->dtype == QKV_DTYPE_FP16 ? 2 : 4);
        f->header_size = h[0].data_offset;
        f->version = 0;
        snprintf(provenance, sizeof provenance, "NumPy .npy files q, k, v (no provenance recorded)");
        st = qkv_number_ids(f, paths, provenance, message, message_size);
    }
    free(copy);
    return st;
}
