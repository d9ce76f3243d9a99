/* safetensors input (bench/qkv_file.h): an 8-byte little-endian header
 * length, a JSON object naming each tensor's dtype, shape and byte range in
 * the data that follows, then the data. The bench reads the tensors named
 * q, k and v (F32 or F16, the same shape: [layers, heads, n, d], [heads, n,
 * d] or [n, d]); other tensors are ignored; "__metadata__" (string values)
 * becomes the provenance. The header is parsed by bench/json_lite.c with
 * its size, node count and depth capped. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "qkv_file_internal.h"

#include "json_lite.h"

#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (1u << 20) /* bytes of JSON accepted */
#define ST_MAX_NODES 65536u
#define ST_MAX_DEPTH 8u

typedef struct st_tensor {
    int fp16;
    uint64_t dims[4]; /* layers, heads, n, d */
    uint64_t begin, end;
} st_tensor;

/* Tensor @p name of the header: dtype, shape and data range. */
static qkv_status read_entry(const json_doc *doc, const char *path, const char *name,
                             st_tensor *t, char *message, size_t message_size)
{
    int dup = 0;
    char dtype[16];
    const size_t node = json_member(doc, 0, name, &dup);
    if (node == JSON_NONE || dup || doc->nodes[node].type != JSON_OBJECT) {
        qkv_set_msg(message, message_size,
                    "%s: safetensors header %s tensor '%s' (the bench reads q, k and v)", path,
                    dup ? "repeats" : node == JSON_NONE ? "lacks" : "has a malformed", name);
        return QKV_ERR_HEADER;
    }
    const size_t d_node = json_member(doc, node, "dtype", NULL);
    const size_t s_node = json_member(doc, node, "shape", NULL);
    const size_t o_node = json_member(doc, node, "data_offsets", NULL);
    if (json_string(doc, d_node, dtype, sizeof dtype) != 0 ||
        (strcmp(dtype, "F32") != 0 && strcmp(dtype, "F16") != 0)) {
        qkv_set_msg(message, message_size, "%s: tensor '%s': dtype must be F32 or F16", path,
                    name);
        return QKV_ERR_HEADER;
    }
    t->fp16 = strcmp(dtype, "F16") == 0;
    const size_t rank = s_node != JSON_NONE && doc->nodes[s_node].type == JSON_ARRAY
                            ? doc->nodes[s_node].count
                            : 0;
    if (rank < 2 || rank > 4) {
        qkv_set_msg(message, message_size,
                    "%s: tensor '%s': shape must be [layers, heads, n, d], [heads, n, d] or "
                    "[n, d]",
                    path, name);
        return QKV_ERR_HEADER;
    }
    size_t i = 0;
    for (size_t e = doc->nodes[s_node].first_child; e != JSON_NONE; e = doc->nodes[e].next, ++i)
        if (json_u64(doc, e, &t->dims[4 - rank + i]) != 0) {
            qkv_set_msg(message, message_size, "%s: tensor '%s': a dimension is not an integer",
                        path, name);
            return QKV_ERR_HEADER;
        }
    for (i = 0; i < 4 - rank; ++i)
        t->dims[i] = 1;
    if (o_node == JSON_NONE || doc->nodes[o_node].type != JSON_ARRAY ||
        doc->nodes[o_node].count != 2 ||
        json_u64(doc, doc->nodes[o_node].first_child, &t->begin) != 0 ||
        json_u64(doc, doc->nodes[doc->nodes[o_node].first_child].next, &t->end) != 0 ||
        t->begin > t->end) {
        qkv_set_msg(message, message_size,
                    "%s: tensor '%s': data_offsets must be [begin, end], begin <= end", path,
                    name);
        return QKV_ERR_HEADER;
    }
    return QKV_OK;
}

/* Appends @p text to @p out (@p size bytes, *used of them written), cut to fit. */
static void append(char *out, size_t size, size_t *used, const char *text)
{
    size_t n = strlen(text);
    if (*used + 1 >= size)
        return;
    if (n > size - 1 - *used)
        n = size - 1 - *used;
    memcpy(out + *used, text, n);
    *used += n;
    out[*used] = '\0';
}

static void append_json_string(const json_doc *doc, size_t node, char *out, size_t size,
                               size_t *used)
{
    if (*used + 1 >= size)
        return;
    json_string(doc, node, out + *used, size - *used);
    *used += strlen(out + *used);
}

/* "__metadata__" as "key: value; ..." (string values only, as the format says). */
static qkv_status read_metadata(const json_doc *doc, const char *path, char *out,
                                size_t out_size, char *message, size_t message_size)
{
    const size_t meta = json_member(doc, 0, "__metadata__", NULL);
    size_t used = 0;
    out[0] = '\0';
    append(out, out_size, &used, "safetensors file");
    if (meta == JSON_NONE)
        return QKV_OK;
    if (doc->nodes[meta].type != JSON_OBJECT) {
        qkv_set_msg(message, message_size, "%s: __metadata__ is not an object", path);
        return QKV_ERR_HEADER;
    }
    for (size_t k = doc->nodes[meta].first_child; k != JSON_NONE;) {
        const size_t v = doc->nodes[k].next;
        if (doc->nodes[v].type != JSON_STRING) {
            qkv_set_msg(message, message_size, "%s: a __metadata__ value is not a string", path);
            return QKV_ERR_HEADER;
        }
        append(out, out_size, &used, "; ");
        append_json_string(doc, k, out, out_size, &used);
        append(out, out_size, &used, ": ");
        append_json_string(doc, v, out, out_size, &used);
        k = doc->nodes[v].next;
    }
    return QKV_OK;
}

qkv_status qkv_open_safetensors(qkv_file *f, const char *path, uint64_t hlen, char *message,
                                size_t message_size)
{
    static const char *names[3] = {"q", "k", "v"};
    st_tensor t[3];
    json_doc doc = {0};
    char detail[256], *text = NULL, *provenance = NULL;
    uint64_t bytes = 0;
    qkv_status st = QKV_OK;

    if (hlen > ST_MAX_HEADER) {
        qkv_set_msg(message, message_size, "%s: safetensors header of %llu bytes (max %u)", path,
                    (unsigned long long)hlen, ST_MAX_HEADER);
        return QKV_ERR_HEADER;
    }
    text = malloc((size_t)hlen + 1);
    provenance = malloc(QKV_FILE_MAX_PROVENANCE + 1);
    if (!text || !provenance) {
        qkv_set_msg(message, message_size, "%s: out of memory", path);
        st = QKV_ERR_MEMORY;
        goto done;
    }
    if (fseek(f->fp, 8, SEEK_SET) != 0 || fread(text, 1, (size_t)hlen, f->fp) != hlen) {
        qkv_set_msg(message, message_size, "%s: short read in the safetensors header", path);
        st = QKV_ERR_READ;
        goto done;
    }
    if (json_parse(text, (size_t)hlen, ST_MAX_NODES, ST_MAX_DEPTH, &doc, detail,
                   sizeof detail) != 0 ||
        doc.nodes[0].type != JSON_OBJECT) {
        qkv_set_msg(message, message_size, "%s: %s", path,
                    doc.nodes ? "safetensors header is not a JSON object" : detail);
        st = QKV_ERR_HEADER;
        goto done;
    }
    for (int i = 0; i < 3 && st == QKV_OK; ++i) {
        st = read_entry(&doc, path, names[i], &t[i], message, message_size);
        if (st == QKV_OK && i > 0 &&
            (memcmp(t[i].dims, t[0].dims, sizeof t[0].dims) != 0 || t[i].fp16 != t[0].fp16)) {
            qkv_set_msg(message, message_size, "%s: tensor '%s' differs from q in shape or dtype",
                        path, names[i]);
            st = QKV_ERR_HEADER;
        }
    }
    if (st == QKV_OK)
        st = qkv_set_shape(f, path, t[0].fp16, t[0].dims[0], t[0].dims[1], t[0].dims[2],
                           t[0].dims[3], 1, &bytes, message, message_size);
    /* The data follows the header; each tensor exactly its bytes, inside the file. */
    for (int i = 0; i < 3 && st == QKV_OK; ++i) {
        if (t[i].end - t[i].begin != bytes || t[i].end > f->file_size - 8 - hlen) {
            qkv_set_msg(message, message_size,
                        "%s: tensor '%s' spans bytes [%llu, %llu) of %llu data bytes; its shape "
                        "needs %llu",
                        path, names[i], (unsigned long long)t[i].begin,
                        (unsigned long long)t[i].end,
                        (unsigned long long)(f->file_size - 8 - hlen), (unsigned long long)bytes);
            st = QKV_ERR_SIZE;
        }
        f->fps[i] = f->fp;
        f->base[i] = 8 + hlen + t[i].begin;
    }
    /* As the format requires: no two tensors share a byte. */
    for (int i = 0; i < 3 && st == QKV_OK; ++i)
        for (int j = i + 1; j < 3 && st == QKV_OK; ++j)
            if (t[i].begin < t[j].end && t[j].begin < t[i].end) {
                qkv_set_msg(message, message_size, "%s: tensors '%s' and '%s' overlap", path,
                            names[i], names[j]);
                st = QKV_ERR_HEADER;
            }
    if (st == QKV_OK)
        st = read_metadata(&doc, path, provenance, QKV_FILE_MAX_PROVENANCE + 1, message,
                           message_size);
    if (st == QKV_OK)
        st = qkv_number_ids(f, path, provenance, message, message_size);
    f->head_stride = (uint64_t)f->n * f->d * (f->dtype == QKV_DTYPE_FP16 ? 2 : 4);
    f->header_size = 8 + hlen;
    f->version = 0;
done:
    json_free(&doc);
    free(text);
    free(provenance);
    return st;
}
