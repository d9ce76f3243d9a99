/* Bounded JSON parser (bench/json_lite.h): recursive descent over the
 * caller's text, values appended to one node array in document order. */
#include "json_lite.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s;
    size_t size, pos;
    json_doc *doc;
    size_t max_nodes, max_depth;
    char *msg;
    size_t msg_size;
} parser;

static int fail(parser *p, const char *fmt, ...)
{
    if (p->msg && p->msg_size) {
        char what[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(p->msg, p->msg_size, "JSON header: %s at byte %zu", what, p->pos);
    }
    return -1;
}

static void skip_space(parser *p)
{
    while (p->pos < p->size && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                                p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static size_t new_node(parser *p, json_type type)
{
    if (p->doc->n >= p->max_nodes)
        return JSON_NONE;
    json_node *nd = &p->doc->nodes[p->doc->n];
    nd->type = type;
    nd->start = p->pos;
    nd->len = 0;
    nd->first_child = nd->next = JSON_NONE;
    nd->count = 0;
    return p->doc->n++;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(const char *h)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        const char c = h[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* A \uXXXX escape at @p at: its value in *out, or -1 (message set). */
static int scan_u_escape(parser *p, size_t at, unsigned *out)
{
    if (at + 6 > p->size || p->s[at] != '\\' || p->s[at + 1] != 'u')
        return fail(p, "bad \\u escape");
    for (int i = 2; i < 6; i++)
        if (!is_hex(p->s[at + i]))
            return fail(p, "bad \\u escape");
    *out = hex_value(p->s + at + 2);
    return 0;
}

/* At the opening quote: checks the string (escapes, no NUL, surrogates in
 * pairs) and leaves pos after the closing quote. */
static int scan_string(parser *p, size_t *start, size_t *len)
{
    p->pos++; /* the quote */
    *start = p->pos;
    while (p->pos < p->size) {
        const unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            *len = p->pos - *start;
            p->pos++;
            return 0;
        }
        if (c < 0x20)
            return fail(p, "control character in a string");
        if (c == '\\') {
            if (p->pos + 1 >= p->size)
                break;
            const char e = p->s[p->pos + 1];
            if (e == 'u') {
                unsigned u;
                if (scan_u_escape(p, p->pos, &u) != 0)
                    return -1;
                p->pos += 6;
                if (u == 0)
                    return fail(p, "\\u0000 in a string");
                if (u >= 0xdc00 && u <= 0xdfff)
                    return fail(p, "lone low surrogate");
                if (u >= 0xd800 && u <= 0xdbff) { /* needs its low half next */
                    unsigned low;
                    if (scan_u_escape(p, p->pos, &low) != 0 || low < 0xdc00 || low > 0xdfff)
                        return fail(p, "lone high surrogate");
                    p->pos += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0')
                return fail(p, "bad escape");
            p->pos += 2;
            continue;
        }
        p->pos++;
    }
    return fail(p, "unterminated string");
}

static int scan_digits(parser *p)
{
    const size_t from = p->pos;
    while (p->pos < p->size && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
        p->pos++;
    return p->pos > from ? 0 : -1;
}

static int scan_number(parser *p)
{
    if (p->pos < p->size && p->s[p->pos] == '-')
        p->pos++;
    if (p->pos < p->size && p->s[p->pos] == '0')
        p->pos++;
    else if (scan_digits(p) != 0)
        return fail(p, "bad number");
    if (p->pos < p->size && p->s[p->pos] == '.') {
        p->pos++;
        if (scan_digits(p) != 0)
            return fail(p, "bad fraction");
    }
    if (p->pos < p->size && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->size && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (scan_digits(p) != 0)
            return fail(p, "bad exponent");
    }
    return 0;
}

static int parse_value(parser *p, size_t depth, size_t *out);

/* Links @p child after @p last under @p parent. */
static void append_child(json_doc *doc, size_t parent, size_t *last, size_t child)
{
    if (*last == JSON_NONE)
        doc->nodes[parent].first_child = child;
    else
        doc->nodes[*last].next = child;
    *last = child;
    doc->nodes[parent].count++;
}

static int parse_container(parser *p, size_t depth, size_t self, char close)
{
    const int object = close == '}';
    size_t last = JSON_NONE;
    p->pos++; /* the opening bracket */
    skip_space(p);
    if (p->pos < p->size && p->s[p->pos] == close) {
        p->pos++;
        return 0;
    }
    for (;;) {
        size_t child;
        skip_space(p);
        if (object) {
            if (p->pos >= p->size || p->s[p->pos] != '"')
                return fail(p, "expected a member name");
            if (parse_value(p, depth + 1, &child) != 0)
                return -1;
            append_child(p->doc, self, &last, child);
            skip_space(p);
            if (p->pos >= p->size || p->s[p->pos] != ':')
                return fail(p, "expected ':'");
            p->pos++;
            skip_space(p);
        }
        if (parse_value(p, depth + 1, &child) != 0)
            return -1;
        append_child(p->doc, self, &last, child);
        skip_space(p);
        if (p->pos < p->size && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->size && p->s[p->pos] == close) {
            p->pos++;
            return 0;
        }
        return fail(p, "expected ',' or '%c'", close);
    }
}

static int parse_value(parser *p, size_t depth, size_t *out)
{
    if (depth > p->max_depth)
        return fail(p, "nested deeper than %zu", p->max_depth);
    skip_space(p);
    if (p->pos >= p->size)
        return fail(p, "unexpected end");
    const char c = p->s[p->pos];
    json_type type = c == '{'   ? JSON_OBJECT
                     : c == '[' ? JSON_ARRAY
                     : c == '"' ? JSON_STRING
                     : c == 't' || c == 'f' ? JSON_BOOL
                     : c == 'n' ? JSON_NULL
                                : JSON_NUMBER;
    const size_t self = new_node(p, type);
    if (self == JSON_NONE)
        return fail(p, "more than %zu values", p->max_nodes);
    *out = self;
    int rc = 0;
    const size_t from = p->pos;
    if (type == JSON_OBJECT || type == JSON_ARRAY) {
        rc = parse_container(p, depth, self, type == JSON_OBJECT ? '}' : ']');
    } else if (type == JSON_STRING) {
        size_t start = p->pos, len = 0;
        rc = scan_string(p, &start, &len);
        p->doc->nodes[self].start = start;
        p->doc->nodes[self].len = len;
        return rc;
    } else if (type == JSON_BOOL || type == JSON_NULL) {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        const size_t n = strlen(word);
        if (p->size - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
            return fail(p, "unknown literal");
        p->pos += n;
    } else {
        rc = scan_number(p);
    }
    p->doc->nodes[self].len = p->pos - from;
    return rc;
}

int json_parse(const char *text, size_t size, size_t max_nodes, size_t max_depth, json_doc *doc,
               char *message, size_t message_size)
{
    parser p = {text, size, 0, doc, max_nodes, max_depth, message, message_size};
    size_t root;
    memset(doc, 0, sizeof *doc);
    if (!text || max_nodes == 0)
        return fail(&p, "no text");
    doc->text = text;
    doc->size = size;
    doc->nodes = malloc(max_nodes * sizeof *doc->nodes);
    if (!doc->nodes)
        return fail(&p, "out of memory for %zu nodes", max_nodes);
    if (parse_value(&p, 0, &root) == 0) {
        skip_space(&p);
        if (p.pos == size)
            return 0;
        fail(&p, "trailing characters");
    }
    json_free(doc);
    return -1;
}

void json_free(json_doc *doc)
{
    if (!doc)
        return;
    free(doc->nodes);
    memset(doc, 0, sizeof *doc);
}

int json_string(const json_doc *doc, size_t node, char *out, size_t out_size)
{
    if (!doc || node >= doc->n || doc->nodes[node].type != JSON_STRING || out_size == 0)
        return -1;
    const char *s = doc->text + doc->nodes[node].start;
    const size_t len = doc->nodes[node].len;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char buf[4];
        size_t n = 1;
        buf[0] = s[i];
        if (s[i] != '\\') {
            i++;
        } else if (s[i + 1] != 'u') { /* the parser checked every escape */
            const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
            buf[0] = to[strchr(from, s[i + 1]) - from];
            i += 2;
        } else {
            unsigned u = hex_value(s + i + 2);
            i += 6;
            if (u >= 0xd800 && u <= 0xdbff) { /* the parser checked the low half follows */
                u = 0x10000 + ((u - 0xd800) << 10) + (hex_value(s + i + 2) - 0xdc00);
                i += 6;
            }
            if (u < 0x80) {
                buf[0] = (char)u;
            } else if (u < 0x800) {
                buf[0] = (char)(0xc0 | u >> 6);
                buf[1] = (char)(0x80 | (u & 0x3f));
                n = 2;
            } else if (u < 0x10000) {
                buf[0] = (char)(0xe0 | u >> 12);
                buf[1] = (char)(0x80 | (u >> 6 & 0x3f));
                buf[2] = (char)(0x80 | (u & 0x3f));
                n = 3;
            } else {
                buf[0] = (char)(0xf0 | u >> 18);
                buf[1] = (char)(0x80 | (u >> 12 & 0x3f));
                buf[2] = (char)(0x80 | (u >> 6 & 0x3f));
                buf[3] = (char)(0x80 | (u & 0x3f));
                n = 4;
            }
        }
        if (o + n >= out_size)
            break;
        memcpy(out + o, buf, n);
        o += n;
    }
    out[o] = '\0';
    return 0;
}

/* Key of member @p key_node equals @p key after decoding. */
static int key_is(const json_doc *doc, size_t key_node, const char *key)
{
    char buf[256];
    const size_t want = strlen(key);
    if (want >= sizeof buf || doc->nodes[key_node].len > 6 * sizeof buf)
        return 0;
    if (json_string(doc, key_node, buf, sizeof buf) != 0)
        return 0;
    return strlen(buf) == want && memcmp(buf, key, want) == 0;
}

size_t json_member(const json_doc *doc, size_t obj, const char *key, int *dup)
{
    size_t found = JSON_NONE;
    if (dup)
        *dup = 0;
    if (!doc || obj >= doc->n || doc->nodes[obj].type != JSON_OBJECT)
        return JSON_NONE;
    for (size_t k = doc->nodes[obj].first_child; k != JSON_NONE;) {
        const size_t v = doc->nodes[k].next;
        if (key_is(doc, k, key)) {
            if (found != JSON_NONE && dup)
                *dup = 1;
            if (found == JSON_NONE)
                found = v;
        }
        k = doc->nodes[v].next;
    }
    return found;
}

int json_u64(const json_doc *doc, size_t node, uint64_t *out)
{
    if (!doc || node >= doc->n || doc->nodes[node].type != JSON_NUMBER)
        return -1;
    const char *s = doc->text + doc->nodes[node].start;
    const size_t len = doc->nodes[node].len;
    uint64_t v = 0;
    if (len == 0 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        const uint64_t digit = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}
