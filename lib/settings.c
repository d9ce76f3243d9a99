/* The environment, read in one place: see settings.h. */
#include "settings.h"

#include "core/host_alloc.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[PS_SETTING_COUNT] = {
    [PS_SET_DEVICE] = "PRESCORE_DEVICE",
    [PS_SET_PROFILE] = "PRESCORE_PROFILE",
    [PS_SET_VERBOSE] = "PRESCORE_VERBOSE",
    [PS_SET_CACHE] = "PRESCORE_CACHE",
    [PS_SET_CACHE_DIR] = "PRESCORE_CACHE_DIR",
    [PS_SET_SECRET_DIR] = "PRESCORE_SECRET_DIR",
    [PS_SET_KERNEL_DIR] = "PRESCORE_KERNEL_DIR",
    [PS_SET_BUILD_OPTIONS] = "PRESCORE_BUILD_OPTIONS",
    [PS_SET_SHAPE] = "PRESCORE_SHAPE",
    [PS_SET_LIMITS] = "PRESCORE_LIMITS",
    [PS_SET_LOOP_BUDGET] = "PRESCORE_LOOP_BUDGET",
    [PS_SET_CPU_QB] = "PRESCORE_CPU_QB",
    [PS_SET_GPU_GROUP] = "PRESCORE_GPU_GROUP",
    [PS_SET_GPU_KTILE] = "PRESCORE_GPU_KTILE",
    [PS_SET_LSH_GROUP] = "PRESCORE_LSH_GROUP",
    [PS_SET_LSH_ORDER] = "PRESCORE_LSH_ORDER",
};

const char *ps_setting_name(ps_setting which)
{
    return which >= 0 && which < PS_SETTING_COUNT ? names[which] : "";
}

/* NULL when unset or empty. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

const char *ps_setting_string(ps_setting which) { return env(ps_setting_name(which)); }

static int ascii_equal_nocase(const char *s, const char *lower)
{
    for (; *s && *lower; s++, lower++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != *lower)
            return 0;
    }
    return *s == '\0' && *lower == '\0';
}

int ps_setting_flag(ps_setting which, int fallback)
{
    static const char *const off[] = {"0", "off", "no", "false"};
    const char *v = ps_setting_string(which);
    if (!v)
        return fallback;
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        if (ascii_equal_nocase(v, off[i]))
            return 0;
    return 1;
}

unsigned ps_setting_unsigned(ps_setting which, unsigned fallback, unsigned lo, unsigned hi)
{
    const char *s = ps_setting_string(which);
    if (!s)
        return fallback;
    char *end = NULL;
    const unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return fallback;
    return (unsigned)v;
}

int ps_cache_enabled_by_env(void) { return ps_setting_flag(PS_SET_CACHE, 1); }

char *ps_cache_secret_dir_default(void)
{
    const char *v = ps_setting_string(PS_SET_SECRET_DIR);
    if (v)
        return ps_str_concat(v, "");
    v = env("XDG_STATE_HOME");
    if (v && v[0] == '/')
        return ps_str_concat(v, "/prescore-cl");
    v = env("HOME");
    if (v)
        return ps_str_concat(v, "/.local/state/prescore-cl");
    return NULL;
}

char *ps_cache_dir_default(void)
{
    const char *v = ps_setting_string(PS_SET_CACHE_DIR);
    if (v)
        return ps_str_concat(v, "");
    v = env("XDG_CACHE_HOME");
    if (v && v[0] == '/')
        return ps_str_concat(v, "/prescore-cl");
    v = env("HOME");
    if (v)
        return ps_str_concat(v, "/.cache/prescore-cl");
    return NULL;
}
