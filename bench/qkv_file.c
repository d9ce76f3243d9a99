/* PSQKV reader, format dispatch and the checks every format shares
 * (docs/DATA.md; .npy in qkv_npy.c, safetensors in qkv_safetensors.c).
 * The header is parsed from explicit
 * little-endian bytes, so the reader works on any host byte order; sizes
 * are computed in uint64_t with overflow checks before any allocation.
 * The path is opened without blocking (O_NONBLOCK: a FIFO without a writer
 * would block a plain open() forever) and only a regular file is read. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "qkv_file_internal.h"

#include "npy_header.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QKV_CHUNK 4096u

const char *qkv_status_string(qkv_status st)
{
    switch (st) {
    case QKV_OK:
        return "success";
    case QKV_ERR_ARGUMENT:
        return "invalid argument";
    case QKV_ERR_OPEN:
        return "cannot open file";
    case QKV_ERR_MAGIC:
        return "not a PSQKV, .npy or safetensors file";
    case QKV_ERR_VERSION:
        return "unsupported PSQKV version";
    case QKV_ERR_HEADER:
        return "corrupt or unsupported header";
    case QKV_ERR_SIZE:
        return "file size does not match the header";
    case QKV_ERR_READ:
        return "read failed";
    case QKV_ERR_MEMORY:
        return "out of memory";
    case QKV_ERR_NON_FINITE:
        return "non-finite value in file";
    }
    return "unknown status";
}

void qkv_set_msg(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    if (!buf || size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* a * b into *out; 1 on overflow. */
static int mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return 1;
    *out = a * b;
    return 0;
}

float qkv_half_to_float(uint16_t h)
{
    const unsigned sign = (h >> 15) & 1u, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    float v;

    if (exp == 0)
        v = ldexpf((float)mant, -24); /* zero or subnormal: mant * 2^-24 */
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant | 0x400u), (int)exp - 25); /* 1.mant * 2^(exp-15) */
    return sign ? -v : v;
}

/* What a non-regular file is, for the messages. */
static const char *file_kind(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISDIR(mode))
        return "a directory";
#ifdef S_ISSOCK
    if (S_ISSOCK(mode))
        return "a socket";
#endif
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    return "a special file";
}

/* Opens @p path for reading if it is a regular file, without ever blocking:
 * open() with O_NONBLOCK (a FIFO opens at once instead of waiting for a
 * writer), then fstat() of that descriptor (no race with a renamed path),
 * and only then a FILE. On success *size is the file's length. */
qkv_status qkv_open_regular(const char *path, FILE **out, uint64_t *size, char *message,
                            size_t message_size)
{
    struct stat sb;
    int fd, flags, err;

    *out = NULL;
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        /* a socket cannot be opened at all (ENXIO): name it */
        if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
            qkv_set_msg(message, message_size, "%s: %s, not a regular file", path,
                    file_kind(sb.st_mode));
        else
            qkv_set_msg(message, message_size, "%s: cannot open for reading: %s", path,
                    strerror(err));
        return QKV_ERR_OPEN;
    }
    if (fstat(fd, &sb) != 0) {
        qkv_set_msg(message, message_size, "%s: fstat failed: %s", path, strerror(errno));
        close(fd);
        return QKV_ERR_OPEN;
    }
    if (!S_ISREG(sb.st_mode)) {
        qkv_set_msg(message, message_size, "%s: %s, not a regular file", path,
                file_kind(sb.st_mode));
        close(fd);
        return QKV_ERR_OPEN;
    }
    if (sb.st_size < 0) {
        qkv_set_msg(message, message_size, "%s: negative file length", path);
        close(fd);
        return QKV_ERR_OPEN;
    }
    /* Regular files ignore O_NONBLOCK; cleared all the same, so that the
     * stream's reads are plain blocking reads. */
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        qkv_set_msg(message, message_size, "%s: fcntl failed: %s", path, strerror(errno));
        close(fd);
        return QKV_ERR_OPEN;
    }
    *out = fdopen(fd, "rb");
    if (!*out) {
        qkv_set_msg(message, message_size, "%s: fdopen failed: %s", path, strerror(errno));
        close(fd);
        return QKV_ERR_OPEN;
    }
    *size = (uint64_t)sb.st_size;
    return QKV_OK;
}

static void free_file(qkv_file *f)
{
    if (!f)
        return;
    for (int t = 0; t < 3; ++t)
        if (f->fps[t] && f->fps[t] != f->fp)
            fclose(f->fps[t]);
    if (f->fp)
        fclose(f->fp);
    free(f->layer_ids);
    free(f->head_ids);
    free(f->provenance);
    free(f);
}

qkv_status qkv_set_shape(qkv_file *f, const char *path, int fp16, uint64_t layers,
                         uint64_t heads, uint64_t n, uint64_t d, unsigned tensors,
                         uint64_t *bytes, char *message, size_t message_size)
{
    uint64_t elems;

    if (layers == 0 || heads == 0 || n == 0 || d == 0) {
        qkv_set_msg(message, message_size, "%s: zero in layers %llu, heads %llu, n %llu or d %llu",
                    path, (unsigned long long)layers, (unsigned long long)heads,
                    (unsigned long long)n, (unsigned long long)d);
        return QKV_ERR_HEADER;
    }
    if (layers > QKV_FILE_MAX_IDS || heads > QKV_FILE_MAX_IDS ||
        layers + heads > QKV_FILE_MAX_IDS || n > UINT32_MAX || d > UINT32_MAX) {
        qkv_set_msg(message, message_size,
                    "%s: %llu layers + %llu heads (max %u together) or n %llu / d %llu beyond "
                    "32 bits",
                    path, (unsigned long long)layers, (unsigned long long)heads, QKV_FILE_MAX_IDS,
                    (unsigned long long)n, (unsigned long long)d);
        return QKV_ERR_HEADER;
    }
    if (mul_u64(layers, heads, &elems) || mul_u64(elems, tensors, &elems) ||
        mul_u64(elems, n, &elems) || mul_u64(elems, d, &elems) ||
        mul_u64(elems, fp16 ? 2 : 4, bytes)) {
        qkv_set_msg(message, message_size, "%s: shape overflows 64 bits", path);
        return QKV_ERR_HEADER;
    }
    if (n > (size_t)-1 / sizeof(float) / d) {
        qkv_set_msg(message, message_size, "%s: one head does not fit in memory here", path);
        return QKV_ERR_HEADER;
    }
    f->dtype = fp16 ? QKV_DTYPE_FP16 : QKV_DTYPE_FP32;
    f->layers = (size_t)layers;
    f->heads = (size_t)heads;
    f->n = (size_t)n;
    f->d = (size_t)d;
    return QKV_OK;
}

qkv_status qkv_check_length(const qkv_file *f, const char *path, uint64_t size, uint64_t header,
                            uint64_t data, char *message, size_t message_size)
{
    if (data > UINT64_MAX - header) {
        qkv_set_msg(message, message_size, "%s: shape overflows 64 bits", path);
        return QKV_ERR_HEADER;
    }
    if (size != header + data) {
        qkv_set_msg(message, message_size,
                    "%s: %llu bytes, but the header (%zu layers, %zu heads, n %zu, d %zu, %s) "
                    "implies %llu%s",
                    path, (unsigned long long)size, f->layers, f->heads, f->n, f->d,
                    f->dtype == QKV_DTYPE_FP16 ? "fp16" : "fp32",
                    (unsigned long long)(header + data),
                    size < header + data ? " (truncated)" : " (trailing bytes)");
        return QKV_ERR_SIZE;
    }
    return QKV_OK;
}

qkv_status qkv_number_ids(qkv_file *f, const char *path, const char *provenance, char *message,
                          size_t message_size)
{
    size_t i, len = strlen(provenance);
    if (len > QKV_FILE_MAX_PROVENANCE)
        len = QKV_FILE_MAX_PROVENANCE;
    f->layer_ids = malloc(f->layers * sizeof *f->layer_ids);
    f->head_ids = malloc(f->heads * sizeof *f->head_ids);
    f->provenance = malloc(len + 1);
    if (!f->layer_ids || !f->head_ids || !f->provenance) {
        qkv_set_msg(message, message_size, "%s: out of memory reading the header", path);
        return QKV_ERR_MEMORY;
    }
    for (i = 0; i < f->layers; ++i)
        f->layer_ids[i] = (uint32_t)i;
    for (i = 0; i < f->heads; ++i)
        f->head_ids[i] = (uint32_t)i;
    memcpy(f->provenance, provenance, len);
    f->provenance[len] = '\0';
    return QKV_OK;
}

void qkv_set_interleaved(qkv_file *f, uint64_t header)
{
    const uint64_t tensor = (uint64_t)f->n * f->d * (f->dtype == QKV_DTYPE_FP16 ? 2 : 4);
    for (int t = 0; t < 3; ++t) {
        f->fps[t] = f->fp;
        f->base[t] = header + (uint64_t)t * tensor;
    }
    f->head_stride = 3 * tensor;
    f->header_size = header;
}

uint64_t qkv_le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

qkv_status qkv_file_open(const char *path, qkv_file **out, char *message, size_t message_size)
{
    unsigned char fixed[QKV_FILE_FIXED_HEADER];
    unsigned char *ids = NULL;
    qkv_file *f = NULL;
    qkv_status st = QKV_OK;
    uint32_t version, header_size, dtype, layers, heads, n, d, prov_len;
    uint64_t ids_count, min_header, data_bytes;
    size_t i, got;

    qkv_set_msg(message, message_size, "%s", "");
    if (!out || !path) {
        qkv_set_msg(message, message_size, "qkv_file_open: NULL argument");
        return QKV_ERR_ARGUMENT;
    }
    *out = NULL;
    f = calloc(1, sizeof *f);
    if (!f) {
        qkv_set_msg(message, message_size, "%s: out of memory", path);
        return QKV_ERR_MEMORY;
    }
    if (strchr(path, ',')) {
        st = qkv_open_npy_triple(f, path, message, message_size);
        if (st != QKV_OK)
            goto fail;
        *out = f;
        return QKV_OK;
    }
    st = qkv_open_regular(path, &f->fp, &f->file_size, message, message_size);
    if (st != QKV_OK)
        goto fail;
    memset(fixed, 0, sizeof fixed);
    got = fread(fixed, 1, sizeof fixed, f->fp);
    if (got >= NPY_MAGIC_SIZE && memcmp(fixed, NPY_MAGIC, NPY_MAGIC_SIZE) == 0) {
        st = qkv_open_npy(f, path, message, message_size);
        if (st != QKV_OK)
            goto fail;
        *out = f;
        return QKV_OK;
    }
    /* safetensors: an 8-byte header length, then a JSON object */
    if (got > 8 && fixed[8] == '{' && qkv_le64(fixed) <= f->file_size - 8) {
        st = qkv_open_safetensors(f, path, qkv_le64(fixed), message, message_size);
        if (st != QKV_OK)
            goto fail;
        *out = f;
        return QKV_OK;
    }
    if (got != sizeof fixed) {
        if (got >= 8 && memcmp(fixed, QKV_FILE_MAGIC, 8) != 0) {
            qkv_set_msg(message, message_size, "%s: not a PSQKV, .npy or safetensors file (bad magic)", path);
            st = QKV_ERR_MAGIC;
        } else {
            qkv_set_msg(message, message_size, "%s: %llu bytes, shorter than the %u-byte header",
                    path, (unsigned long long)f->file_size, QKV_FILE_FIXED_HEADER);
            st = QKV_ERR_SIZE;
        }
        goto fail;
    }
    if (memcmp(fixed, QKV_FILE_MAGIC, 8) != 0) {
        qkv_set_msg(message, message_size, "%s: not a PSQKV, .npy or safetensors file (bad magic)", path);
        st = QKV_ERR_MAGIC;
        goto fail;
    }
    version = le32(fixed + 8);
    header_size = le32(fixed + 12);
    dtype = le32(fixed + 16);
    layers = le32(fixed + 20);
    heads = le32(fixed + 24);
    n = le32(fixed + 28);
    d = le32(fixed + 32);
    prov_len = le32(fixed + 36);
    if (version != QKV_FILE_VERSION) {
        qkv_set_msg(message, message_size, "%s: PSQKV version %u, this reader knows %u", path,
                version, QKV_FILE_VERSION);
        st = QKV_ERR_VERSION;
        goto fail;
    }
    if (dtype != QKV_DTYPE_FP16 && dtype != QKV_DTYPE_FP32) {
        qkv_set_msg(message, message_size, "%s: unknown dtype code %u (1 fp16, 2 fp32)", path, dtype);
        st = QKV_ERR_HEADER;
        goto fail;
    }
    ids_count = (uint64_t)layers + heads;
    if (ids_count > QKV_FILE_MAX_IDS || prov_len > QKV_FILE_MAX_PROVENANCE) {
        qkv_set_msg(message, message_size,
                "%s: header lists %llu layers+heads (max %u) or %u provenance bytes (max %u)",
                path, (unsigned long long)ids_count, QKV_FILE_MAX_IDS, prov_len,
                QKV_FILE_MAX_PROVENANCE);
        st = QKV_ERR_HEADER;
        goto fail;
    }
    min_header = QKV_FILE_FIXED_HEADER + 4 * ids_count + prov_len;
    if (header_size < min_header) {
        qkv_set_msg(message, message_size, "%s: header size %u below the %llu bytes it holds", path,
                header_size, (unsigned long long)min_header);
        st = QKV_ERR_HEADER;
        goto fail;
    }
    st = qkv_set_shape(f, path, dtype == QKV_DTYPE_FP16, layers, heads, n, d, 3, &data_bytes,
                       message, message_size);
    if (st == QKV_OK)
        st = qkv_check_length(f, path, f->file_size, header_size, data_bytes, message,
                              message_size);
    if (st != QKV_OK)
        goto fail;

    ids = malloc((size_t)ids_count * 4);
    f->layer_ids = malloc((size_t)layers * sizeof *f->layer_ids);
    f->head_ids = malloc((size_t)heads * sizeof *f->head_ids);
    f->provenance = malloc((size_t)prov_len + 1);
    if (!ids || !f->layer_ids || !f->head_ids || !f->provenance) {
        qkv_set_msg(message, message_size, "%s: out of memory reading the header", path);
        st = QKV_ERR_MEMORY;
        goto fail;
    }
    if (fread(ids, 4, (size_t)ids_count, f->fp) != (size_t)ids_count ||
        (prov_len && fread(f->provenance, 1, prov_len, f->fp) != prov_len)) {
        qkv_set_msg(message, message_size, "%s: short read in the header", path);
        st = QKV_ERR_READ;
        goto fail;
    }
    f->provenance[prov_len] = '\0';
    if (memchr(f->provenance, '\0', prov_len)) {
        qkv_set_msg(message, message_size, "%s: NUL byte inside the provenance string", path);
        st = QKV_ERR_HEADER;
        goto fail;
    }
    for (i = 0; i < layers; ++i)
        f->layer_ids[i] = le32(ids + 4 * i);
    for (i = 0; i < heads; ++i)
        f->head_ids[i] = le32(ids + 4 * (layers + i));
    free(ids);

    f->version = version;
    qkv_set_interleaved(f, header_size);
    *out = f;
    return QKV_OK;

fail:
    free(ids);
    free_file(f);
    return st;
}

/* Reads count values at byte @p offset into dst (floats), converting. */
static qkv_status read_values(qkv_file *f, FILE *fp, uint64_t offset, size_t count, float *dst)
{
    unsigned char buf[QKV_CHUNK * 4];
    const size_t esize = f->dtype == QKV_DTYPE_FP16 ? 2 : 4;
    const size_t per = sizeof buf / esize;
    size_t done = 0;

    if (offset > (uint64_t)LONG_MAX) {
        snprintf(f->message, sizeof f->message, "offset %llu beyond this platform's fseek",
                 (unsigned long long)offset);
        return QKV_ERR_READ;
    }
    if (fseek(fp, (long)offset, SEEK_SET) != 0) {
        snprintf(f->message, sizeof f->message, "seek to %llu failed",
                 (unsigned long long)offset);
        return QKV_ERR_READ;
    }
    while (done < count) {
        size_t len = count - done < per ? count - done : per, i;
        if (fread(buf, esize, len, fp) != len) {
            snprintf(f->message, sizeof f->message, "short read at value %zu of %zu", done,
                     count);
            return QKV_ERR_READ;
        }
        for (i = 0; i < len; ++i) {
            float v;
            if (esize == 2) {
                v = qkv_half_to_float((uint16_t)(buf[2 * i] | buf[2 * i + 1] << 8));
            } else {
                uint32_t bits = le32(buf + 4 * i);
                memcpy(&v, &bits, sizeof v);
            }
            if (!isfinite(v)) {
                snprintf(f->message, sizeof f->message, "non-finite value at element %zu",
                         done + i);
                return QKV_ERR_NON_FINITE;
            }
            dst[done + i] = v;
        }
        done += len;
    }
    return QKV_OK;
}

qkv_status qkv_file_read_head(qkv_file *f, size_t layer, size_t head, float *q, float *k,
                              float *v)
{
    float *dst[3];
    uint64_t head_offset;
    int t;

    if (!f)
        return QKV_ERR_ARGUMENT;
    f->message[0] = '\0';
    if (layer >= f->layers || head >= f->heads) {
        snprintf(f->message, sizeof f->message,
                 "layer %zu / head %zu out of range (file holds %zu layers, %zu heads)", layer,
                 head, f->layers, f->heads);
        return QKV_ERR_ARGUMENT;
    }
    dst[0] = q;
    dst[1] = k;
    dst[2] = v;
    /* open() checked that every tensor lies inside its file */
    head_offset = ((uint64_t)layer * f->heads + head) * f->head_stride;
    for (t = 0; t < 3; ++t) {
        qkv_status st;
        if (!dst[t])
            continue;
        st = read_values(f, f->fps[t], f->base[t] + head_offset, f->n * f->d, dst[t]);
        if (st != QKV_OK) {
            char detail[sizeof f->message];
            memcpy(detail, f->message, sizeof detail);
            snprintf(f->message, sizeof f->message, "layer %zu head %zu %c: %.400s", layer,
                     head, "QKV"[t], detail);
            return st;
        }
    }
    return QKV_OK;
}

size_t qkv_file_find_layer(const qkv_file *f, uint32_t model_layer)
{
    size_t i;
    for (i = 0; f && i < f->layers; ++i)
        if (f->layer_ids[i] == model_layer)
            return i;
    return (size_t)-1;
}

size_t qkv_file_find_head(const qkv_file *f, uint32_t model_head)
{
    size_t i;
    for (i = 0; f && i < f->heads; ++i)
        if (f->head_ids[i] == model_head)
            return i;
    return (size_t)-1;
}

void qkv_file_close(qkv_file *f)
{
    free_file(f);
}
