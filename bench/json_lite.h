/* A bounded JSON parser for file headers (safetensors): the text is
 * untrusted, so the node count and nesting depth are capped by the caller,
 * every token is checked against the JSON grammar (RFC 8259), and nothing
 * is allocated from a value read. Strings are kept as spans of the caller's
 * text (still escaped); json_string decodes one on demand. C99. */
#ifndef PRESCORE_BENCH_JSON_LITE_H
#define PRESCORE_BENCH_JSON_LITE_H

#include <stddef.h>
#include <stdint.h>

#define JSON_NONE ((size_t)-1)

typedef enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

/* One value. An object's children alternate key (a string) and value. */
typedef struct json_node {
    json_type type;
    size_t start, len;  /* span in the text: a string's contents without quotes */
    size_t first_child; /* JSON_NONE when empty or not a container */
    size_t next;        /* next sibling, JSON_NONE for the last */
    size_t count;       /* children (objects: 2 per member) */
} json_node;

typedef struct json_doc {
    const char *text;
    size_t size;
    json_node *nodes; /* nodes[0] is the root */
    size_t n;
} json_doc;

/** Parses @p text (@p size bytes, no NUL needed) into @p doc: at most
 * @p max_nodes values nested at most @p max_depth deep, nothing but
 * whitespace after the value. @return 0, or -1 with the reason and the
 * byte offset in @p message (doc left empty). */
int json_parse(const char *text, size_t size, size_t max_nodes, size_t max_depth, json_doc *doc,
               char *message, size_t message_size);

void json_free(json_doc *doc);

/** The value of member @p key of object @p obj; JSON_NONE when absent or
 * @p obj is not an object. Keys compare after decoding; *dup (may be NULL)
 * is set to 1 when the key occurs more than once. */
size_t json_member(const json_doc *doc, size_t obj, const char *key, int *dup);

/** A non-negative integer (no sign, fraction or exponent) below 2^64.
 * @return 0, or -1 when @p node is anything else. */
int json_u64(const json_doc *doc, size_t node, uint64_t *out);

/** Decodes string @p node into @p out (NUL-terminated, cut at @p out_size - 1
 * bytes; \\u escapes and surrogate pairs as UTF-8; the parser refused
 * \\u0000 and lone surrogates). @return 0, or -1 when not a string. */
int json_string(const json_doc *doc, size_t node, char *out, size_t out_size);

#endif
