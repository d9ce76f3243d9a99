/* PRESCORE_LIMITS parsing and application (see device_limits.h). */
#include "device_limits.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_space(const char *s, const char *end)
{
    while (s < end && isspace((unsigned char)*s))
        s++;
    return s;
}

static const char *trim_end(const char *s, const char *end)
{
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    return end;
}

/* Decimal digits with an optional k/m/g suffix; no sign, no overflow. */
static int parse_size(const char *s, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (p == end || !isdigit((unsigned char)*p))
        return 0;
    for (; p < end && isdigit((unsigned char)*p); p++) {
        const unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return 0;
        v = v * 10 + digit;
    }
    unsigned shift = 0;
    if (p < end) {
        switch (tolower((unsigned char)*p)) {
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        default: return 0;
        }
        if (++p != end)
            return 0;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return 0;
    *out = v << shift;
    return 1;
}

static ps_status fail(char *msg, size_t msg_size, const char *what, const char *s,
                      size_t len)
{
    if (msg && msg_size)
        snprintf(msg, msg_size, "PRESCORE_LIMITS: %s: \"%.*s\"", what, (int)len, s);
    return PS_ERR_INVALID_ARGUMENT;
}

ps_status ps_limits_parse(const char *spec, ps_limits *out, char *msg, size_t msg_size)
{
    ps_limits l = {0, 0, 0, 0, -1, -1};
    if (msg && msg_size)
        msg[0] = '\0';
    if (!out)
        return PS_ERR_INVALID_ARGUMENT;
    *out = l;
    if (!spec)
        return PS_OK;
    const char *s = spec, *end_all = spec + strlen(spec);
    if (skip_space(s, end_all) == end_all)
        return PS_OK;
    while (s <= end_all) {
        const char *comma = memchr(s, ',', (size_t)(end_all - s));
        const char *item_end = comma ? comma : end_all;
        const char *a = skip_space(s, item_end), *b = trim_end(a, item_end);
        const char *eq = memchr(a, '=', (size_t)(b - a));
        if (!eq)
            return fail(msg, msg_size, "expected key=value", a, (size_t)(b - a));
        const char *key_end = trim_end(a, eq), *val = skip_space(eq + 1, b);
        const size_t key_len = (size_t)(key_end - a);
        uint64_t v = 0;
        if (!parse_size(val, b, &v))
            return fail(msg, msg_size, "not a size", a, (size_t)(b - a));
#define PS_KEY(name) (key_len == sizeof name - 1 && memcmp(a, name, key_len) == 0)
        int repeated = 0, bad = 0;
        if (PS_KEY("local_mem")) {
            repeated = l.local_mem != 0, bad = v == 0, l.local_mem = v;
        } else if (PS_KEY("max_work_group")) {
            repeated = l.max_work_group != 0, bad = v == 0 || v > SIZE_MAX;
            l.max_work_group = (size_t)v;
        } else if (PS_KEY("max_alloc")) {
            repeated = l.max_alloc != 0, bad = v == 0, l.max_alloc = v;
        } else if (PS_KEY("global_mem")) {
            repeated = l.global_mem != 0, bad = v == 0, l.global_mem = v;
        } else if (PS_KEY("fp16")) {
            repeated = l.fp16 != -1, bad = v > 1, l.fp16 = (int)v;
        } else if (PS_KEY("fp64")) {
            repeated = l.fp64 != -1, bad = v > 1, l.fp64 = (int)v;
        } else {
            return fail(msg, msg_size, "unknown key (local_mem, max_work_group, max_alloc, "
                                       "global_mem, fp16, fp64)",
                        a, (size_t)(b - a));
        }
#undef PS_KEY
        if (repeated)
            return fail(msg, msg_size, "key given twice", a, (size_t)(b - a));
        if (bad)
            return fail(msg, msg_size, "value out of range", a, (size_t)(b - a));
        if (!comma)
            break;
        s = comma + 1;
    }
    *out = l;
    return PS_OK;
}

void ps_limits_apply(const ps_limits *limits, ps_device_info *info)
{
    if (limits->local_mem && limits->local_mem < info->local_mem_size)
        info->local_mem_size = limits->local_mem;
    if (limits->max_work_group && limits->max_work_group < info->max_work_group_size)
        info->max_work_group_size = limits->max_work_group;
    if (limits->max_alloc && limits->max_alloc < info->max_mem_alloc_size)
        info->max_mem_alloc_size = limits->max_alloc;
    if (limits->global_mem && limits->global_mem < info->global_mem_size)
        info->global_mem_size = limits->global_mem;
    if (limits->fp16 == 0)
        info->has_fp16 = 0;
    if (limits->fp64 == 0)
        info->has_fp64 = 0;
}
