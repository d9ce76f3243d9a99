/* Unit suite: the tensor-file readers of bench/qkv_file.c (PSQKV, .npy,
 * q,k,v .npy triples, safetensors). Files are written by the
 * test itself (fp16 and fp32), read back exactly, then damaged: truncated,
 * extended, wrong magic, version, dtype, shapes that overflow, a NaN; every
 * one must be rejected with its status, never crash. A FIFO, a directory, a
 * socket and a character device are refused at once, without blocking. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../bench/qkv_file.h"

#define L 2
#define H 3
#define N 5
#define D 4

static char path[320];
static char tmp_dir[256]; /* the suite's private directory (mkdtemp) */

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Value of element (l, h, t, i, c), exactly representable in fp16. */
static float value_of(size_t l, size_t h, size_t t, size_t i, size_t c)
{
    long x = (long)(((l * 7 + h * 5 + t * 3 + i * 11 + c * 13) % 61)) - 30;
    return (float)x * 0.125f;
}

/* fp16 bits of a value that is a multiple of 1/8 with |v| <= 30. */
static uint16_t to_half(float v)
{
    uint16_t sign = v < 0 ? 0x8000u : 0;
    float a = fabsf(v);
    int e;
    if (a == 0.0f)
        return sign;
    frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    {
        const int exp = e - 1 + 15;
        const float mant = a / ldexpf(1.0f, e - 1) - 1.0f; /* in [0, 1) */
        return (uint16_t)(sign | (uint16_t)(exp << 10) | (uint16_t)(mant * 1024.0f));
    }
}

/* Little-endian fp16 or fp32 bytes of @p v. */
static void put_value(unsigned char *b, float v, int fp16)
{
    if (fp16) {
        const uint16_t x = to_half(v);
        b[0] = (unsigned char)x;
        b[1] = (unsigned char)(x >> 8);
    } else {
        uint32_t x;
        memcpy(&x, &v, 4);
        put32(b, x);
    }
}

/* Writes a valid file; returns its size. Layer ids 10, 11; head ids 0, 4, 8. */
static size_t write_file(const char *p, int fp16, const char *prov)
{
    unsigned char hdr[256];
    const uint32_t prov_len = (uint32_t)strlen(prov);
    const uint32_t header_size = (40 + 4 * (L + H) + prov_len + 63) / 64 * 64;
    const size_t esize = fp16 ? 2 : 4;
    size_t l, h, t, i, c, total;
    FILE *f = fopen(p, "wb");

    assert_non_null(f);
    assert_true(header_size <= sizeof hdr);
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, "PSQKV\0\0\0", 8);
    put32(hdr + 8, 1);
    put32(hdr + 12, header_size);
    put32(hdr + 16, fp16 ? 1 : 2);
    put32(hdr + 20, L);
    put32(hdr + 24, H);
    put32(hdr + 28, N);
    put32(hdr + 32, D);
    put32(hdr + 36, prov_len);
    put32(hdr + 40, 10);
    put32(hdr + 44, 11);
    put32(hdr + 48, 0);
    put32(hdr + 52, 4);
    put32(hdr + 56, 8);
    memcpy(hdr + 60, prov, prov_len);
    assert_int_equal(fwrite(hdr, 1, header_size, f), header_size);
    for (l = 0; l < L; l++)
        for (h = 0; h < H; h++)
            for (t = 0; t < 3; t++)
                for (i = 0; i < N; i++)
                    for (c = 0; c < D; c++) {
                        unsigned char b[4];
                        put_value(b, value_of(l, h, t, i, c), fp16);
                        assert_int_equal(fwrite(b, 1, esize, f), esize);
                    }
    total = header_size + (size_t)L * H * 3 * N * D * esize;
    assert_int_equal(fclose(f), 0);
    return total;
}

static void read_whole(const char *p, unsigned char **buf, size_t *size)
{
    FILE *f = fopen(p, "rb");
    long end;
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    end = ftell(f);
    assert_true(end > 0);
    rewind(f);
    *size = (size_t)end;
    *buf = malloc(*size + 16);
    assert_non_null(*buf);
    assert_int_equal(fread(*buf, 1, *size, f), *size);
    fclose(f);
}

static void write_bytes(const char *p, const unsigned char *buf, size_t size)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, size, f), size);
    fclose(f);
}

/* Reads every head of @p f and compares with the test data. */
static void check_values(qkv_file *f)
{
    float q[N * D], k[N * D], v[N * D];
    for (size_t l = 0; l < f->layers; l++)
        for (size_t h = 0; h < f->heads; h++) {
            assert_int_equal(qkv_file_read_head(f, l, h, q, k, v), QKV_OK);
            for (size_t i = 0; i < N * D; i++) {
                assert_true(q[i] == value_of(l, h, 0, i / D, i % D));
                assert_true(k[i] == value_of(l, h, 1, i / D, i % D));
                assert_true(v[i] == value_of(l, h, 2, i / D, i % D));
            }
        }
}

/* Opens `path` and checks the shape of the test data in @p fp16. */
static qkv_file *open_full(int fp16)
{
    qkv_file *f = NULL;
    char msg[512];
    assert_int_equal(qkv_file_open(path, &f, msg, sizeof msg), QKV_OK);
    assert_int_equal(f->layers, L);
    assert_int_equal(f->heads, H);
    assert_int_equal(f->n, N);
    assert_int_equal(f->d, D);
    assert_int_equal(f->dtype, fp16 ? QKV_DTYPE_FP16 : QKV_DTYPE_FP32);
    return f;
}

static void check_round_trip(int fp16)
{
    float q[N * D], k[N * D], v[N * D];

    write_file(path, fp16, "test provenance: synthetic");
    qkv_file *f = open_full(fp16);
    assert_string_equal(f->provenance, "test provenance: synthetic");
    assert_int_equal(qkv_file_find_layer(f, 11), 1);
    assert_int_equal(qkv_file_find_layer(f, 3), (size_t)-1);
    assert_int_equal(qkv_file_find_head(f, 8), 2);
    check_values(f);
    /* NULL outputs are skipped; out of range is an argument error */
    assert_int_equal(qkv_file_read_head(f, 1, 2, NULL, k, NULL), QKV_OK);
    assert_int_equal(qkv_file_read_head(f, L, 0, q, k, v), QKV_ERR_ARGUMENT);
    assert_true(strlen(f->message) > 0);
    assert_int_equal(qkv_file_read_head(f, 0, H, q, k, v), QKV_ERR_ARGUMENT);
    qkv_file_close(f);
}

static void test_round_trip_fp16(void **state)
{
    (void)state;
    check_round_trip(1);
}

static void test_round_trip_fp32(void **state)
{
    (void)state;
    check_round_trip(0);
}

static void test_half_conversion(void **state)
{
    (void)state;
    assert_true(qkv_half_to_float(0x3C00) == 1.0f);
    assert_true(qkv_half_to_float(0xC000) == -2.0f);
    assert_true(qkv_half_to_float(0x7BFF) == 65504.0f);
    assert_true(qkv_half_to_float(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(qkv_half_to_float(0x0400) == ldexpf(1.0f, -14)); /* smallest normal */
    assert_true(qkv_half_to_float(0x3555) == 1365.0f / 4096.0f);
    assert_true(qkv_half_to_float(0x8000) == 0.0f && signbit(qkv_half_to_float(0x8000)));
    assert_true(isinf(qkv_half_to_float(0x7C00)) && qkv_half_to_float(0xFC00) < 0);
    assert_true(isnan(qkv_half_to_float(0x7E00)));
}

/* Opens the (damaged) file and expects @p want with a non-empty message. */
static void expect_open(const unsigned char *buf, size_t size, qkv_status want)
{
    qkv_file *f = (qkv_file *)0x1;
    char msg[512];
    qkv_status st;

    write_bytes(path, buf, size);
    st = qkv_file_open(path, &f, msg, sizeof msg);
    printf("# %zu bytes -> %s: %s\n", size, qkv_status_string(st), msg);
    assert_int_equal(st, want);
    assert_null(f);
    assert_true(strlen(msg) > 0);
}

static void test_truncated_and_extended(void **state)
{
    unsigned char *buf;
    size_t size, cut;
    (void)state;

    write_file(path, 1, "p");
    read_whole(path, &buf, &size);
    expect_open(buf, 0, QKV_ERR_SIZE);
    expect_open(buf, 7, QKV_ERR_SIZE);
    expect_open(buf, 39, QKV_ERR_SIZE);
    expect_open(buf, 41, QKV_ERR_SIZE);
    for (cut = 1; cut < 64; cut += 7)
        expect_open(buf, size - cut, QKV_ERR_SIZE);
    memset(buf + size, 0, 16);
    expect_open(buf, size + 2, QKV_ERR_SIZE);
    free(buf);
}

static void test_corrupt_header(void **state)
{
    unsigned char *buf;
    size_t size;
    unsigned char saved[4];
    (void)state;

    write_file(path, 0, "provenance");
    read_whole(path, &buf, &size);

    buf[0] = 'X';
    expect_open(buf, size, QKV_ERR_MAGIC);
    buf[0] = 'P';
    expect_open((const unsigned char *)"hello, this is not a PSQKV file at all....", 42,
                QKV_ERR_MAGIC);

#define FIELD(off, val, want)                                                                   \
    do {                                                                                        \
        memcpy(saved, buf + (off), 4);                                                          \
        put32(buf + (off), (val));                                                              \
        expect_open(buf, size, (want));                                                         \
        memcpy(buf + (off), saved, 4);                                                          \
    } while (0)

    FIELD(8, 2, QKV_ERR_VERSION);
    FIELD(8, 0, QKV_ERR_VERSION);
    FIELD(16, 3, QKV_ERR_HEADER);          /* dtype */
    FIELD(16, 1, QKV_ERR_SIZE);            /* fp16 claims half the bytes */
    FIELD(20, 0, QKV_ERR_HEADER);          /* zero layers */
    FIELD(28, 0, QKV_ERR_HEADER);          /* zero tokens */
    FIELD(20, 0xFFFFFFFFu, QKV_ERR_HEADER); /* too many ids */
    FIELD(28, 0xFFFFFFFFu, QKV_ERR_SIZE);  /* huge n: size mismatch, no overflow */
    FIELD(12, 8, QKV_ERR_HEADER);          /* header size below its content */
    FIELD(12, 0xFFFFFFF0u, QKV_ERR_SIZE);  /* header size past the end */
    FIELD(36, 0x7FFFFFFFu, QKV_ERR_HEADER); /* provenance length */
    /* layers * heads * 3 * n * d * 4 overflowing 64 bits */
    {
        unsigned char s2[4], s3[4];
        memcpy(s2, buf + 28, 4);
        memcpy(s3, buf + 32, 4);
        put32(buf + 28, 0xFFFFFFFFu);
        put32(buf + 32, 0xFFFFFFFFu);
        expect_open(buf, size, QKV_ERR_HEADER);
        memcpy(buf + 28, s2, 4);
        memcpy(buf + 32, s3, 4);
    }
#undef FIELD
    /* the restored original still opens */
    {
        qkv_file *f = NULL;
        char msg[512];
        write_bytes(path, buf, size);
        assert_int_equal(qkv_file_open(path, &f, msg, sizeof msg), QKV_OK);
        qkv_file_close(f);
    }
    free(buf);
}

static void test_nan_in_data(void **state)
{
    unsigned char *buf;
    size_t size;
    qkv_file *f = NULL;
    char msg[512];
    float q[N * D], k[N * D], v[N * D];
    (void)state;

    write_file(path, 1, "p");
    read_whole(path, &buf, &size);
    buf[size - 1] = 0x7E; /* last element (layer 1, head 2, V) becomes NaN */
    buf[size - 2] = 0x00;
    write_bytes(path, buf, size);
    assert_int_equal(qkv_file_open(path, &f, msg, sizeof msg), QKV_OK);
    assert_int_equal(qkv_file_read_head(f, 0, 0, q, k, v), QKV_OK);
    assert_int_equal(qkv_file_read_head(f, 1, 2, q, k, v), QKV_ERR_NON_FINITE);
    printf("# %s\n", f->message);
    assert_non_null(strstr(f->message, "V"));
    qkv_file_close(f);
    free(buf);
}

static void test_missing_file(void **state)
{
    qkv_file *f = NULL;
    char msg[512];
    (void)state;
    assert_int_equal(qkv_file_open("/nonexistent/dir/x.psqkv", &f, msg, sizeof msg),
                     QKV_ERR_OPEN);
    assert_null(f);
    assert_int_equal(qkv_file_open(NULL, &f, msg, sizeof msg), QKV_ERR_ARGUMENT);
    qkv_file_close(NULL);
}

/* Opens a path that is not a regular file: QKV_ERR_OPEN, a message naming
 * @p kind, and no wait. alarm(5) is the guard: a blocking open() would be
 * killed by SIGALRM (default action), failing the suite instead of hanging. */
static void expect_refused(const char *p, const char *kind)
{
    qkv_file *f = (qkv_file *)0x1;
    char msg[512];
    qkv_status st;

    alarm(5);
    st = qkv_file_open(p, &f, msg, sizeof msg);
    alarm(0);
    printf("# %s -> %s: %s\n", p, qkv_status_string(st), msg);
    assert_int_equal(st, QKV_ERR_OPEN);
    assert_null(f);
    assert_non_null(strstr(msg, kind));
    assert_non_null(strstr(msg, "not a regular file"));
}

static void test_fifo_refused(void **state)
{
    char fifo[300];
    (void)state;
    snprintf(fifo, sizeof fifo, "%s/fifo", tmp_dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_refused(fifo, "FIFO"); /* no writer: a blocking open() would wait forever */
    remove(fifo);
}

static void test_directory_refused(void **state)
{
    (void)state;
    expect_refused(tmp_dir, "directory");
}

static void test_socket_refused(void **state)
{
    struct sockaddr_un addr;
    int fd;
    (void)state;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    assert_true(strlen(tmp_dir) + 6 < sizeof addr.sun_path);
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/sock", tmp_dir);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (const struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(fd, 1), 0); /* a listening socket: open() gives ENXIO */
    expect_refused(addr.sun_path, "socket");
    close(fd);
    remove(addr.sun_path);
}

static void test_device_refused(void **state)
{
    struct stat sb;
    (void)state;
    if (stat("/dev/null", &sb) != 0 || !S_ISCHR(sb.st_mode))
        skip();
    expect_refused("/dev/null", "character device");
}

/* Writes the PSQKV test file's data (layout [L, H, 3, N, D]) behind an .npy
 * header whose dict is @p dict, padded as NumPy pads (to 64 bytes, '\n'
 * last); returns the file's size. */
static size_t write_npy(const char *p, int fp16, const char *dict, unsigned version)
{
    unsigned char *psqkv, hdr[512];
    size_t psqkv_size, prefix = version == 1 ? 10 : 12, len, data;
    FILE *f;

    write_file(p, fp16, "");
    read_whole(p, &psqkv, &psqkv_size);
    data = (size_t)L * H * 3 * N * D * (fp16 ? 2 : 4);
    len = (prefix + strlen(dict) + 1 + 63) / 64 * 64 - prefix;
    assert_true(prefix + len <= sizeof hdr);
    memset(hdr, ' ', sizeof hdr);
    memcpy(hdr, "\x93NUMPY", 6);
    hdr[6] = (unsigned char)version;
    hdr[7] = 0;
    put32(hdr + 8, (uint32_t)len); /* version 1 reads the low 2 bytes; the dict follows */
    memcpy(hdr + prefix, dict, strlen(dict));
    hdr[prefix + len - 1] = '\n';
    f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(hdr, 1, prefix + len, f), prefix + len);
    assert_int_equal(fwrite(psqkv + psqkv_size - data, 1, data, f), data);
    fclose(f);
    free(psqkv);
    return prefix + len + data;
}

#define NPY_DICT(descr, order, shape)                                                      \
    "{'descr': '" descr "', 'fortran_order': " order ", 'shape': " shape ", }"

/* An .npy [L, H, 3, N, D] array reads as the PSQKV file with the same data;
 * layers and heads numbered from 0. Both dtypes, format versions 1 and 2. */
static void test_npy_round_trip(void **state)
{
    (void)state;
    for (int fp16 = 0; fp16 < 2; fp16++)
        for (unsigned version = 1; version <= 2; version++) {
            write_npy(path, fp16, fp16 ? NPY_DICT("<f2", "False", "(2, 3, 3, 5, 4)")
                                       : NPY_DICT("<f4", "False", "(2, 3, 3, 5, 4)"),
                      version);
            qkv_file *f = open_full(fp16);
            assert_int_equal(qkv_file_find_layer(f, 1), 1);
            assert_int_equal(qkv_file_find_head(f, 2), 2);
            check_values(f);
            qkv_file_close(f);
        }
}

static void expect_npy_refused(const char *dict, int fp16, qkv_status want, const char *word)
{
    qkv_file *f = (qkv_file *)0x1;
    char msg[512];
    qkv_status st;
    write_npy(path, fp16, dict, 1);
    st = qkv_file_open(path, &f, msg, sizeof msg);
    printf("# %s -> %s: %s\n", dict, qkv_status_string(st), msg);
    assert_int_equal(st, want);
    assert_null(f);
    assert_non_null(strstr(msg, word));
}

/* What the bench cannot read is refused with a message, before any
 * allocation sized by the header: other dtypes, Fortran order, another
 * rank or axis of 3, a shape the file's length does not hold, malformed
 * or unknown dict entries; a truncated file. */
static void test_npy_refused(void **state)
{
    unsigned char *buf;
    size_t size;
    (void)state;
    expect_npy_refused(NPY_DICT("<f8", "False", "(2, 3, 3, 5, 4)"), 0, QKV_ERR_HEADER, "<f8");
    expect_npy_refused(NPY_DICT(">f4", "False", "(2, 3, 3, 5, 4)"), 0, QKV_ERR_HEADER, ">f4");
    expect_npy_refused(NPY_DICT("<f4", "True", "(2, 3, 3, 5, 4)"), 0, QKV_ERR_HEADER,
                       "Fortran");
    expect_npy_refused(NPY_DICT("<f4", "False", "(6, 3, 5, 4)"), 0, QKV_ERR_HEADER,
                       "dimensions");
    expect_npy_refused(NPY_DICT("<f4", "False", "(2, 3, 1, 15, 4)"), 0, QKV_ERR_HEADER,
                       "dimensions");
    expect_npy_refused(NPY_DICT("<f4", "False", "(2, 3, 3, 5, 5)"), 0, QKV_ERR_SIZE,
                       "truncated");
    expect_npy_refused(NPY_DICT("<f4", "False", "(1, 3, 3, 5, 4)"), 0, QKV_ERR_SIZE,
                       "trailing");
    expect_npy_refused(NPY_DICT("<f4", "False", "(2, 3, 3, 0, 4)"), 0, QKV_ERR_HEADER, "zero");
    expect_npy_refused(NPY_DICT("<f4", "False", "(2, 3, 3, 99999999999999999999, 4)"), 0,
                       QKV_ERR_HEADER, "overflows");
    expect_npy_refused(NPY_DICT("<f4", "False", "(4294967296, 3, 3, 4294967296, 4)"), 0,
                       QKV_ERR_HEADER, "32 bits");
    expect_npy_refused(NPY_DICT("<f4", "False", "(2, 3, 3, 5, x)"), 0, QKV_ERR_HEADER,
                       "integers");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False}", 0, QKV_ERR_HEADER, "needs");
    expect_npy_refused("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': "
                       "(2, 3, 3, 5, 4)}",
                       0, QKV_ERR_HEADER, "repeated");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 3, 5, 4)} x",
                       0, QKV_ERR_HEADER, "after");
    expect_npy_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 3, 5, 4",
                       0, QKV_ERR_HEADER, "shape");
    expect_npy_refused("{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3, 3, 5, 4)}", 0,
                       QKV_ERR_HEADER, "expected ','");
    /* truncated inside the header and inside the data */
    size = write_npy(path, 0, NPY_DICT("<f4", "False", "(2, 3, 3, 5, 4)"), 1);
    read_whole(path, &buf, &size);
    expect_open(buf, 9, QKV_ERR_HEADER);
    expect_open(buf, 40, QKV_ERR_HEADER);
    expect_open(buf, size - 4, QKV_ERR_SIZE);
    free(buf);
}

/* Tensor @p t (0 q, 1 k, 2 v) of the test data for @p layers x @p heads
 * heads, [layers][heads][N][D]; @p out holds layers * heads * N * D values. */
static size_t tensor_bytes(int fp16, int t, size_t layers, size_t heads, unsigned char *out)
{
    const size_t esize = fp16 ? 2 : 4;
    size_t o = 0;
    for (size_t l = 0; l < layers; l++)
        for (size_t h = 0; h < heads; h++)
            for (size_t i = 0; i < N * D; i++, o += esize)
                put_value(out + o, value_of(l, h, (size_t)t, i / D, i % D), fp16);
    return o;
}

/* A safetensors file: @p json as its header, then q, k, v of the test data
 * for @p layers x @p heads heads (@p data_bytes of them written: a shorter
 * count truncates). */
static void write_safetensors(const char *p, const char *json, int fp16, size_t layers,
                              size_t heads, size_t data_bytes)
{
    static unsigned char data[3 * L * H * N * D * 4];
    size_t o = 0;
    unsigned char len[8];
    const uint64_t n = strlen(json);
    for (int t = 0; t < 3; t++)
        o += tensor_bytes(fp16, t, layers, heads, data + o);
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(n >> (8 * i));
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(fwrite(json, 1, n, f), n);
    assert_int_equal(fwrite(data, 1, data_bytes < o ? data_bytes : o, f),
                     data_bytes < o ? data_bytes : o);
    fclose(f);
}

/* The header of a valid file: q, k, v back to back, each of @p shape. */
static void st_header(char *out, size_t size, int fp16, const char *shape, size_t tensor,
                      const char *extra)
{
    const char *dt = fp16 ? "F16" : "F32";
    snprintf(out, size,
             "{\"q\": {\"dtype\": \"%s\", \"shape\": %s, \"data_offsets\": [0, %zu]}, "
             "\"k\": {\"dtype\": \"%s\", \"shape\": %s, \"data_offsets\": [%zu, %zu]}, "
             "\"v\": {\"dtype\": \"%s\", \"shape\": %s, \"data_offsets\": [%zu, %zu]}%s}",
             dt, shape, tensor, dt, shape, tensor, 2 * tensor, dt, shape, 2 * tensor,
             3 * tensor, extra);
}

/* Tensors q, k, v of [L, H, N, D] (both dtypes) and of [N, D] read back
 * exactly; __metadata__ becomes the provenance (escapes decoded); other
 * tensors are ignored. */
static void test_safetensors_round_trip(void **state)
{
    char json[1024], msg[512];
    qkv_file *f = NULL;
    (void)state;
    for (int fp16 = 0; fp16 < 2; fp16++) {
        const size_t tensor = (size_t)L * H * N * D * (fp16 ? 2 : 4);
        st_header(json, sizeof json, fp16, "[2, 3, 5, 4]", tensor,
                  ", \"__metadata__\": {\"model\": \"MiniLM \\u00e9\\ud83d\\ude00\\n\", "
                  "\"layer\": \"2\"}"
                  ", \"extra\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [0, 1]}");
        write_safetensors(path, json, fp16, L, H, SIZE_MAX);
        f = open_full(fp16);
        assert_string_equal(f->provenance,
                            "safetensors file; model: MiniLM \xc3\xa9\xf0\x9f\x98\x80\n; layer: 2");
        check_values(f);
        qkv_file_close(f);
    }
    st_header(json, sizeof json, 0, "[5, 4]", (size_t)N * D * 4, "");
    write_safetensors(path, json, 0, 1, 1, SIZE_MAX);
    assert_int_equal(qkv_file_open(path, &f, msg, sizeof msg), QKV_OK);
    assert_int_equal(f->layers * f->heads, 1);
    check_values(f);
    qkv_file_close(f);
}

static void expect_st_refused(const char *json, size_t data_bytes, qkv_status want,
                              const char *word)
{
    qkv_file *f = (qkv_file *)0x1;
    char msg[512];
    write_safetensors(path, json, 0, L, H, data_bytes);
    const qkv_status st = qkv_file_open(path, &f, msg, sizeof msg);
    printf("# %.60s -> %s: %s\n", json, qkv_status_string(st), msg);
    assert_int_equal(st, want);
    assert_null(f);
    assert_non_null(strstr(msg, word));
}

/* Headers that do not describe q, k and v inside the file are refused with
 * a message: missing or repeated tensors, other dtypes or ranks, shapes
 * that differ, overflow or are zero, ranges outside the data or of the
 * wrong length, malformed JSON, nesting past the cap, non-string metadata. */
static void test_safetensors_refused(void **state)
{
    char json[1024], bad[1200];
    const size_t tensor = (size_t)L * H * N * D * 4;
    (void)state;
    st_header(json, sizeof json, 0, "[2, 3, 5, 4]", tensor, "");
    expect_st_refused("{\"q\": {}, \"k\": {}}", SIZE_MAX, QKV_ERR_HEADER, "dtype");
    snprintf(bad, sizeof bad, "{\"q\": {\"dtype\": \"F32\", \"shape\": [2, 3, 5, 4], "
             "\"data_offsets\": [0, %zu]}, %s", tensor, json + 1);
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "repeats tensor 'q'");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, 4]", tensor, "");
    memcpy(strstr(bad, "\"v\""), "\"w\"", 3);
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "lacks tensor 'v'");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, 4]", tensor, "");
    memcpy(strstr(bad, "F32"), "I32", 3);
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "F32 or F16");
    st_header(bad, sizeof bad, 0, "[1, 2, 3, 5, 4]", tensor, "");
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "shape must be");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, -4]", tensor, "");
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "not an integer");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, 4.0]", tensor, "");
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "not an integer");
    st_header(bad, sizeof bad, 0, "[2, 3, 0, 4]", tensor, "");
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "zero");
    st_header(bad, sizeof bad, 0, "[2, 3, 4294967296, 4294967296]", tensor, "");
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "32 bits");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, 4]", tensor, "");
    strchr(strstr(bad, "\"k\""), '[')[1] = '1'; /* k of [1, 3, 5, 4] */
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "differs from q");
    expect_st_refused(json, 3 * tensor - 4, QKV_ERR_SIZE, "spans bytes");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, 4]", tensor - 4, "");
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_SIZE, "its shape needs");
    snprintf(bad, sizeof bad, "{\"q\": {\"dtype\": \"F32\", \"shape\": [2, 3, 5, 4], "
             "\"data_offsets\": [%zu, 0]}, %s", tensor, strstr(json, "\"k\""));
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "begin <= end");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, 4]", tensor, ", \"__metadata__\": {\"n\": 3}");
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "not a string");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, 4]", tensor, ", \"x\": [[[[[[[[[[1]]]]]]]]]]");
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "nested deeper");
    expect_st_refused("{\"q\": [1, 2,]}  ", SIZE_MAX, QKV_ERR_HEADER, "JSON header");
    expect_st_refused("{\"q\": \"a\001\"}", SIZE_MAX, QKV_ERR_HEADER, "control character");
    expect_st_refused("{\"q\": \"\\x\"}", SIZE_MAX, QKV_ERR_HEADER, "bad escape");
    expect_st_refused("{\"q\": 1} {", SIZE_MAX, QKV_ERR_HEADER, "trailing");
    expect_st_refused("{\"q\": tru}", SIZE_MAX, QKV_ERR_HEADER, "literal");
    expect_st_refused("{\"q\": 01}", SIZE_MAX, QKV_ERR_HEADER, "expected");
    expect_st_refused("[1]", SIZE_MAX, QKV_ERR_MAGIC, "bad magic");
    expect_st_refused("{\"q\\u0000zz\": 1}", SIZE_MAX, QKV_ERR_HEADER, "\\u0000");
    expect_st_refused("{\"q\": \"\\ud800x\"}", SIZE_MAX, QKV_ERR_HEADER, "lone high");
    expect_st_refused("{\"q\": \"\\udc00\"}", SIZE_MAX, QKV_ERR_HEADER, "lone low");
    st_header(bad, sizeof bad, 0, "[2, 3, 5, 4]", tensor, "");
    memcpy(strstr(bad, "[960, 1440]"), "[0, 480]   ", 11); /* v over q's bytes */
    expect_st_refused(bad, SIZE_MAX, QKV_ERR_HEADER, "overlap");
}

/* Writes tensor @p t of the test data as an .npy file of @p shape (dict
 * literal) holding @p layers x @p heads heads. */
static void write_tensor_npy(const char *p, int t, const char *shape, size_t layers,
                             size_t heads)
{
    static unsigned char data[L * H * N * D * 4];
    char dict[160];
    unsigned char hdr[128];
    snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shape);
    const size_t len = (10 + strlen(dict) + 1 + 63) / 64 * 64 - 10;
    const size_t bytes = tensor_bytes(0, t, layers, heads, data);
    assert_true(10 + len <= sizeof hdr);
    memset(hdr, ' ', sizeof hdr);
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    hdr[8] = (unsigned char)len;
    hdr[9] = (unsigned char)(len >> 8);
    memcpy(hdr + 10, dict, strlen(dict));
    hdr[10 + len - 1] = '\n';
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(hdr, 1, 10 + len, f), 10 + len);
    assert_int_equal(fwrite(data, 1, bytes, f), bytes);
    fclose(f);
}

/* "q.npy,k.npy,v.npy": three files read as one, [L, H, N, D] and [N, D];
 * refused when there are not three names, a file is missing, or the files
 * differ in shape. */
static void test_npy_triple(void **state)
{
    char names[3][340], spec[1100], msg[512];
    qkv_file *f = NULL;
    (void)state;
    for (int t = 0; t < 3; t++) {
        snprintf(names[t], sizeof names[t], "%s/%c.npy", tmp_dir, "qkv"[t]);
        write_tensor_npy(names[t], t, "(2, 3, 5, 4)", L, H);
    }
    snprintf(spec, sizeof spec, "%s,%s,%s", names[0], names[1], names[2]);
    assert_int_equal(qkv_file_open(spec, &f, msg, sizeof msg), QKV_OK);
    assert_int_equal(f->layers, L);
    assert_int_equal(f->heads, H);
    check_values(f);
    qkv_file_close(f);

    snprintf(spec, sizeof spec, "%s,%s", names[0], names[1]);
    assert_int_equal(qkv_file_open(spec, &f, msg, sizeof msg), QKV_ERR_ARGUMENT);
    assert_non_null(strstr(msg, "three .npy files"));
    snprintf(spec, sizeof spec, "%s,%s,%s/none.npy", names[0], names[1], tmp_dir);
    assert_int_equal(qkv_file_open(spec, &f, msg, sizeof msg), QKV_ERR_OPEN);
    assert_null(f);
    write_tensor_npy(names[2], 2, "(5, 4)", 1, 1);
    snprintf(spec, sizeof spec, "%s,%s,%s", names[0], names[1], names[2]);
    assert_int_equal(qkv_file_open(spec, &f, msg, sizeof msg), QKV_ERR_HEADER);
    assert_non_null(strstr(msg, "differs"));
    for (int t = 0; t < 3; t++)
        write_tensor_npy(names[t], t, "(5, 4)", 1, 1);
    assert_int_equal(qkv_file_open(spec, &f, msg, sizeof msg), QKV_OK);
    assert_int_equal(f->layers * f->heads, 1);
    check_values(f);
    qkv_file_close(f);
    write_tensor_npy(names[1], 1, "(5, 5)", 1, 1);
    assert_int_equal(qkv_file_open(spec, &f, msg, sizeof msg), QKV_ERR_HEADER);
    for (int t = 0; t < 3; t++)
        unlink(names[t]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_conversion),
        cmocka_unit_test(test_round_trip_fp16),
        cmocka_unit_test(test_round_trip_fp32),
        cmocka_unit_test(test_truncated_and_extended),
        cmocka_unit_test(test_corrupt_header),
        cmocka_unit_test(test_nan_in_data),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_fifo_refused),
        cmocka_unit_test(test_directory_refused),
        cmocka_unit_test(test_socket_refused),
        cmocka_unit_test(test_device_refused),
        cmocka_unit_test(test_npy_round_trip),
        cmocka_unit_test(test_npy_refused),
        cmocka_unit_test(test_safetensors_round_trip),
        cmocka_unit_test(test_safetensors_refused),
        cmocka_unit_test(test_npy_triple),
    };
    const char *dir = getenv("TMPDIR");
    int rc;
    snprintf(tmp_dir, sizeof tmp_dir, "%s/ps_test_qkv_XXXXXX", dir && *dir ? dir : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/file.psqkv", tmp_dir);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    remove(path);
    rmdir(tmp_dir);
    return rc;
}
