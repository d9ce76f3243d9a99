/* The device selector: parsing and choosing (see device_select.h). No OpenCL
 * calls here; lib/context.c lists the devices and opens the chosen one. */
#include "device_select.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A message under construction in a caller's buffer that may be NULL or
 * small: every write is bounded, and a cut message ends in "...". */
typedef struct msg_buf {
    char *text;
    size_t size;
    size_t len;
    int cut;
} msg_buf;

static void msg_init(msg_buf *m, char *text, size_t size)
{
    m->text = size > 0 ? text : NULL;
    m->size = text ? size : 0;
    m->len = 0;
    m->cut = 0;
    if (m->text)
        m->text[0] = '\0';
}

static void msg_add(msg_buf *m, const char *fmt, ...)
{
    if (!m->text || m->cut)
        return;
    va_list ap;
    va_start(ap, fmt);
    const size_t room = m->size - m->len;
    const int n = vsnprintf(m->text + m->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        m->text[m->len] = '\0'; /* an encoding error: keep what was there */
        return;
    }
    if ((size_t)n < room) {
        m->len += (size_t)n;
        return;
    }
    /* vsnprintf wrote room - 1 characters and the terminator. */
    m->len = m->size - 1;
    m->cut = 1;
    if (m->size >= 4)
        memcpy(m->text + m->size - 4, "...", 4);
}

static int lower(int c)
{
    return tolower((unsigned char)c);
}

static int equal_nocase(const char *a, size_t a_len, const char *b)
{
    const size_t b_len = strlen(b);
    if (a_len != b_len)
        return 0;
    for (size_t i = 0; i < a_len; i++)
        if (lower(a[i]) != lower(b[i]))
            return 0;
    return 1;
}

/* Case-insensitive strstr; the empty needle matches (never asked for: an
 * empty selector is the default). */
static int contains_nocase(const char *haystack, const char *needle)
{
    const size_t n = strlen(needle);
    for (const char *h = haystack; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] && lower(h[i]) == lower(needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* Parses all of [s, s + len) as a decimal unsigned; 0 on an empty field,
 * another character or overflow. */
static int parse_unsigned(const char *s, size_t len, unsigned *value)
{
    unsigned v = 0;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        const unsigned digit = (unsigned)(s[i] - '0');
        if (v > (UINT_MAX - digit) / 10u)
            return 0;
        v = v * 10u + digit;
    }
    *value = v;
    return 1;
}

/* True for text that can only have been meant as "P:D": digits, signs and at
 * least one ':'. Such text is validated strictly instead of being taken as a
 * name, which would only fail later with a less helpful "not found". */
static int looks_like_index(const char *s, size_t len)
{
    int colon = 0;
    for (size_t i = 0; i < len; i++) {
        const char c = s[i];
        if (c == ':')
            colon = 1;
        else if (!((c >= '0' && c <= '9') || c == '+' || c == '-'))
            return 0;
    }
    return colon;
}

ps_status ps_selector_parse(const char *text, ps_selector *out, char *msg, size_t msg_size)
{
    msg_buf m;
    msg_init(&m, msg, msg_size);
    if (!out) {
        msg_add(&m, "no selector to write to (out is NULL)");
        return PS_ERR_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    out->kind = PS_SELECT_DEFAULT;
    if (!text)
        return PS_OK;

    /* Trim: values from the environment or a config file often carry spaces
     * or a newline. */
    const char *s = text;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;

    if (len == 0 || equal_nocase(s, len, "default"))
        return PS_OK;
    if (equal_nocase(s, len, "gpu")) {
        out->kind = PS_SELECT_GPU;
        return PS_OK;
    }
    if (equal_nocase(s, len, "cpu")) {
        out->kind = PS_SELECT_CPU;
        return PS_OK;
    }
    if (looks_like_index(s, len)) {
        const char *colon = memchr(s, ':', len);
        const size_t p_len = (size_t)(colon - s);
        if (!parse_unsigned(s, p_len, &out->platform) ||
            !parse_unsigned(colon + 1, len - p_len - 1, &out->device)) {
            msg_add(&m,
                    "device selector \"%.*s\": expected PLATFORM:DEVICE, two unsigned "
                    "decimal indices such as 0:1",
                    (int)(len > 64 ? 64 : len), s);
            memset(out, 0, sizeof *out);
            return PS_ERR_INVALID_ARGUMENT;
        }
        out->kind = PS_SELECT_INDEX;
        return PS_OK;
    }
    if (len >= sizeof out->name) {
        msg_add(&m, "device selector \"%.32s...\": name longer than %d characters", s,
                PS_INFO_STRING_MAX - 1);
        return PS_ERR_INVALID_ARGUMENT;
    }
    out->kind = PS_SELECT_NAME;
    memcpy(out->name, s, len);
    out->name[len] = '\0';
    return PS_OK;
}

/* "no device matches ...; devices: 0:0 gpu "name" (platform), ..." */
static void describe_devices(msg_buf *m, const ps_device_info *devices, size_t count)
{
    msg_add(m, "; devices present:");
    for (size_t i = 0; i < count; i++)
        msg_add(m, "%s %u:%u %s \"%s\" (%s)", i ? "," : "", devices[i].platform_index,
                devices[i].device_index, ps_device_type_string(devices[i].type), devices[i].name,
                devices[i].platform_name);
}

static size_t find_type(const ps_device_info *devices, size_t count, ps_device_type type)
{
    for (size_t i = 0; i < count; i++)
        if (devices[i].type == type)
            return i;
    return count;
}

static size_t find_name(const ps_device_info *devices, size_t count, const char *name)
{
    /* Three passes so a device-name match anywhere beats a vendor match
     * earlier in the list: the name is what users read in --list-devices. */
    for (size_t i = 0; i < count; i++)
        if (contains_nocase(devices[i].name, name))
            return i;
    for (size_t i = 0; i < count; i++)
        if (contains_nocase(devices[i].vendor, name))
            return i;
    for (size_t i = 0; i < count; i++)
        if (contains_nocase(devices[i].platform_name, name))
            return i;
    return count;
}

ps_status ps_selector_choose(const ps_selector *sel, const ps_device_info *devices,
                             size_t count, size_t *chosen, char *msg, size_t msg_size)
{
    msg_buf m;
    msg_init(&m, msg, msg_size);
    if (!sel || !chosen || (!devices && count > 0)) {
        msg_add(&m, "device selection: %s is NULL",
                !sel ? "the selector" : !chosen ? "chosen" : "the device list");
        return PS_ERR_INVALID_ARGUMENT;
    }
    if (count == 0) {
        msg_add(&m, "no OpenCL device present");
        return PS_ERR_NO_DEVICE;
    }

    size_t found = count;
    switch (sel->kind) {
    case PS_SELECT_DEFAULT:
        found = find_type(devices, count, PS_DEVICE_GPU);
        if (found == count)
            found = 0;
        break;
    case PS_SELECT_GPU:
        found = find_type(devices, count, PS_DEVICE_GPU);
        break;
    case PS_SELECT_CPU:
        found = find_type(devices, count, PS_DEVICE_CPU);
        break;
    case PS_SELECT_INDEX:
        for (size_t i = 0; i < count && found == count; i++)
            if (devices[i].platform_index == sel->platform &&
                devices[i].device_index == sel->device)
                found = i;
        break;
    case PS_SELECT_NAME:
        /* A selector not built by ps_selector_parse may lack its NUL. */
        if (!memchr(sel->name, '\0', sizeof sel->name)) {
            msg_add(&m, "device selector: name is not terminated");
            return PS_ERR_INVALID_ARGUMENT;
        }
        found = find_name(devices, count, sel->name);
        break;
    default:
        msg_add(&m, "device selector: unknown kind %d", (int)sel->kind);
        return PS_ERR_INVALID_ARGUMENT;
    }
    if (found < count) {
        *chosen = found;
        return PS_OK;
    }

    switch (sel->kind) {
    case PS_SELECT_GPU:
        msg_add(&m, "device selector \"gpu\": no GPU device");
        break;
    case PS_SELECT_CPU:
        msg_add(&m, "device selector \"cpu\": no CPU device");
        break;
    case PS_SELECT_INDEX:
        msg_add(&m, "device selector \"%u:%u\": no such platform:device", sel->platform,
                sel->device);
        break;
    default:
        msg_add(&m, "device selector \"%s\": no device name, vendor or platform contains it",
                sel->name);
        break;
    }
    describe_devices(&m, devices, count);
    return PS_ERR_DEVICE_NOT_FOUND;
}
