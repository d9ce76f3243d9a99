/* Fuzz harness of the benchmark's tensor-file readers (bench/qkv_file.c:
 * PSQKV, .npy, safetensors): a file given to --data is untrusted input
 * (docs/DATA.md). The first input byte picks how the rest becomes the file:
 *   0: the bytes are the whole file;
 *   1: the bytes are a safetensors JSON header (8-byte length prefixed),
 *      followed by 3 KiB of zero data;
 *   2: the bytes are an .npy header dict (magic, version 1, padded),
 *      followed by 3 KiB of zero data.
 * Properties: opening never crashes, leaks or blocks; a refusal leaves no
 * handle and a message; an accepted file has a non-zero shape whose data
 * fits in the file, and its first and last heads read back (or are refused
 * as non-finite), never beyond the file. */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_tensor_file.h"

#include "../../bench/qkv_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ZERO_DATA 3072u

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_tensor_file: property failed: %s (line %d)\n", \
                    #cond, __LINE__);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

static char file_path[64];

static void remove_file(void)
{
    unlink(file_path);
}

static void write_file(const uint8_t *data, size_t size)
{
    static const unsigned char zeros[ZERO_DATA];
    const int mode = size ? data[0] % 3 : 0;
    FILE *f = fopen(file_path, "wb");
    CHECK(f != NULL);
    if (size) {
        data++;
        size--;
    }
    if (mode == 1) {
        unsigned char len[8];
        for (int i = 0; i < 8; i++)
            len[i] = (unsigned char)((uint64_t)size >> (8 * i));
        CHECK(fwrite(len, 1, 8, f) == 8);
    } else if (mode == 2) {
        const size_t padded = (10 + size + 1 + 63) / 64 * 64 - 10;
        unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
        head[8] = (unsigned char)padded;
        head[9] = (unsigned char)(padded >> 8);
        CHECK(fwrite(head, 1, 10, f) == 10);
        CHECK(fwrite(data, 1, size, f) == size);
        for (size_t i = size; i + 1 < padded; i++)
            CHECK(fputc(' ', f) != EOF);
        CHECK(fputc('\n', f) != EOF);
        size = 0; /* written */
    }
    CHECK(fwrite(data, 1, size, f) == size);
    if (mode != 0)
        CHECK(fwrite(zeros, 1, sizeof zeros, f) == sizeof zeros);
    CHECK(fclose(f) == 0);
}

static void read_heads(qkv_file *f)
{
    const size_t values = f->n * f->d;
    float *buf = malloc(3 * values * sizeof *buf);
    CHECK(buf != NULL);
    const size_t last[2] = {f->layers - 1, f->heads - 1};
    for (int i = 0; i < 2; i++) {
        const size_t l = i ? last[0] : 0, h = i ? last[1] : 0;
        const qkv_status st = qkv_file_read_head(f, l, h, buf, buf + values, buf + 2 * values);
        CHECK(st == QKV_OK || st == QKV_ERR_NON_FINITE);
    }
    CHECK(qkv_file_read_head(f, f->layers, 0, buf, NULL, NULL) == QKV_ERR_ARGUMENT);
    free(buf);
}

int ps_fuzz_tensor_file_one(const uint8_t *data, size_t size)
{
    if (!file_path[0]) {
        snprintf(file_path, sizeof file_path, "/tmp/ps_fuzz_tensor_%ld", (long)getpid());
        atexit(remove_file);
    }
    write_file(data, size);
    qkv_file *f = (qkv_file *)0x1;
    char message[512];
    const qkv_status st = qkv_file_open(file_path, &f, message, sizeof message);
    if (st != QKV_OK) {
        CHECK(f == NULL);
        CHECK(message[0] != '\0');
        return 0;
    }
    CHECK(f != NULL && f->layers && f->heads && f->n && f->d);
    const uint64_t esize = f->dtype == QKV_DTYPE_FP16 ? 2 : 4;
    /* three tensors of layers x heads x n x d inside the file */
    CHECK((uint64_t)f->n * f->d * esize <= f->file_size);
    for (int t = 0; t < 3; t++)
        CHECK(f->base[t] + (uint64_t)(f->layers * f->heads - 1) * f->head_stride +
                  (uint64_t)f->n * f->d * esize <=
              f->file_size);
    read_heads(f);
    qkv_file_close(f);
    return 1;
}

#ifdef PS_FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_fuzz_tensor_file_one(data, size);
    return 0;
}
#endif
