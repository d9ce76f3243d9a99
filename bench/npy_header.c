/* .npy header parser (npy_header.h). The dict is NumPy's repr of a Python
 * dict with three keys; it is tokenised by hand rather than evaluated, and
 * anything but the three keys with the accepted values is refused. */
#include "npy_header.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct cursor {
    const char *p, *end;
    char *message;
    size_t message_size;
} cursor;

static int fail(cursor *c, const char *fmt, ...)
{
    va_list ap;
    if (c->message && c->message_size) {
        va_start(ap, fmt);
        vsnprintf(c->message, c->message_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n'))
        c->p++;
}

static int expect_char(cursor *c, char ch)
{
    skip_space(c);
    if (c->p >= c->end || *c->p != ch)
        return fail(c, "npy header: expected '%c'", ch);
    c->p++;
    return 0;
}

/* A quoted string (' or ", no escapes: NumPy writes none in these values). */
static int read_string(cursor *c, char *buf, size_t size)
{
    char quote;
    size_t len = 0;
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return fail(c, "npy header: expected a quoted string");
    quote = *c->p++;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || *c->p == '\0' || len + 1 >= size)
            return fail(c, "npy header: string too long, escaped or holding a NUL");
        buf[len++] = *c->p++;
    }
    if (c->p >= c->end)
        return fail(c, "npy header: unterminated string");
    c->p++;
    buf[len] = '\0';
    return 0;
}

static int read_bool(cursor *c, int *out)
{
    skip_space(c);
    if ((size_t)(c->end - c->p) >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *out = 1;
        return 0;
    }
    if ((size_t)(c->end - c->p) >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *out = 0;
        return 0;
    }
    return fail(c, "npy header: fortran_order is neither True nor False");
}

/* A tuple of non-negative integers: "()", "(5,)", "(2, 3)", "(2, 3,)". */
static int read_shape(cursor *c, npy_header *h)
{
    if (expect_char(c, '('))
        return -1;
    h->ndim = 0;
    for (;;) {
        uint64_t v = 0;
        int digits = 0;
        skip_space(c);
        if (c->p < c->end && *c->p == ')') {
            c->p++;
            return 0;
        }
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (UINT64_MAX - 9) / 10)
                return fail(c, "npy header: a dimension overflows 64 bits");
            v = v * 10 + (uint64_t)(*c->p++ - '0');
            digits++;
        }
        if (!digits)
            return fail(c, "npy header: shape holds something other than integers");
        if (h->ndim == NPY_MAX_DIMS)
            return fail(c, "npy header: more than %u dimensions", NPY_MAX_DIMS);
        h->shape[h->ndim++] = v;
        skip_space(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == ')') {
            c->p++;
            return 0;
        }
        return fail(c, "npy header: malformed shape tuple");
    }
}

int npy_parse_dict(const char *text, size_t size, npy_header *out, char *message,
                   size_t message_size)
{
    cursor c = {text, text + size, message, message_size};
    int seen_descr = 0, seen_order = 0, seen_shape = 0, fortran = 0;
    char key[32], descr[16];

    memset(out, 0, sizeof *out);
    if (expect_char(&c, '{'))
        return -1;
    for (;;) {
        skip_space(&c);
        if (c.p < c.end && *c.p == '}') {
            c.p++;
            break;
        }
        if (read_string(&c, key, sizeof key) || expect_char(&c, ':'))
            return -1;
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            seen_descr = 1;
            if (read_string(&c, descr, sizeof descr))
                return -1;
            if (strcmp(descr, "<f4") == 0)
                out->fp16 = 0;
            else if (strcmp(descr, "<f2") == 0)
                out->fp16 = 1;
            else
                return fail(&c, "npy: dtype '%s' not supported (little-endian float32 "
                                "'<f4' or float16 '<f2')", descr);
        } else if (strcmp(key, "fortran_order") == 0 && !seen_order) {
            seen_order = 1;
            if (read_bool(&c, &fortran))
                return -1;
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            seen_shape = 1;
            if (read_shape(&c, out))
                return -1;
        } else {
            return fail(&c, "npy header: unexpected or repeated key '%s'", key);
        }
        skip_space(&c);
        if (c.p < c.end && *c.p == ',')
            c.p++;
        else if (c.p >= c.end || *c.p != '}')
            return fail(&c, "npy header: expected ',' or '}' after a value");
    }
    skip_space(&c);
    if (c.p != c.end)
        return fail(&c, "npy header: bytes after the dict");
    if (!seen_descr || !seen_order || !seen_shape)
        return fail(&c, "npy header: needs descr, fortran_order and shape");
    if (fortran)
        return fail(&c, "npy: Fortran-ordered arrays not supported (save a C-ordered copy)");
    return 0;
}

int npy_read_header(FILE *fp, npy_header *out, char *message, size_t message_size)
{
    unsigned char pre[12];
    size_t prefix, len;
    char *text;
    int rc;
    cursor c = {NULL, NULL, message, message_size};

    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, NPY_MAGIC, NPY_MAGIC_SIZE) != 0)
        return fail(&c, "npy: missing magic or short file");
    if (pre[6] == 1) {
        prefix = 10;
        len = (size_t)pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, fp) != 2)
            return fail(&c, "npy: short file");
        prefix = 12;
        len = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
              (size_t)pre[11] << 24;
    } else {
        return fail(&c, "npy: format version %u.%u not supported", pre[6], pre[7]);
    }
    if (len == 0 || len > NPY_MAX_HEADER)
        return fail(&c, "npy: header length %zu outside 1..%u", len, NPY_MAX_HEADER);
    text = malloc(len);
    if (!text)
        return fail(&c, "npy: out of memory");
    if (fread(text, 1, len, fp) != len) {
        free(text);
        return fail(&c, "npy: short header");
    }
    rc = npy_parse_dict(text, len, out, message, message_size);
    free(text);
    out->data_offset = prefix + len;
    return rc;
}
