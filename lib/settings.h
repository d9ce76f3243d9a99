/* The environment: every variable the library reads, in one table
 * (lib/settings.c, the only file that calls getenv). Values are read when
 * asked for; a context reads what it needs while it is created. README.md
 * "Environment" documents each (checked by tools/check_layers.py). Pure C. */
#ifndef PRESCORE_SETTINGS_H
#define PRESCORE_SETTINGS_H

#include <stddef.h>

typedef enum ps_setting {
    PS_SET_DEVICE = 0,    /* PRESCORE_DEVICE: device selector */
    PS_SET_PROFILE,       /* PRESCORE_PROFILE: profiling queue */
    PS_SET_VERBOSE,       /* PRESCORE_VERBOSE: report build and cache decisions */
    PS_SET_CACHE,         /* PRESCORE_CACHE: 0/off/no/false disables the cache */
    PS_SET_CACHE_DIR,     /* PRESCORE_CACHE_DIR */
    PS_SET_SECRET_DIR,    /* PRESCORE_SECRET_DIR */
    PS_SET_KERNEL_DIR,    /* PRESCORE_KERNEL_DIR: .cl files from disk */
    PS_SET_BUILD_OPTIONS, /* PRESCORE_BUILD_OPTIONS */
    PS_SET_SHAPE,         /* PRESCORE_SHAPE: cpu | gpu */
    PS_SET_LIMITS,        /* PRESCORE_LIMITS (lib/device_limits.h) */
    PS_SET_LOOP_BUDGET,   /* PRESCORE_LOOP_BUDGET */
    PS_SET_CPU_QB,        /* PRESCORE_CPU_QB */
    PS_SET_GPU_GROUP,     /* PRESCORE_GPU_GROUP */
    PS_SET_GPU_KTILE,     /* PRESCORE_GPU_KTILE */
    PS_SET_LSH_GROUP,     /* PRESCORE_LSH_GROUP */
    PS_SET_LSH_ORDER,     /* PRESCORE_LSH_ORDER: gray-rank | gray-code | binary */
    PS_SETTING_COUNT
} ps_setting;

/** The variable's name ("PRESCORE_DEVICE"). */
const char *ps_setting_name(ps_setting which);

/** The value, or NULL when unset or empty. */
const char *ps_setting_string(ps_setting which);

/** 0 when the value is "0", "off", "no" or "false" (any case), 1 for any
 * other value, @p fallback when unset or empty. */
int ps_setting_flag(ps_setting which, int fallback);

/** The value as a decimal in [lo, hi]; @p fallback when unset, empty, not a
 * number or out of range (nonsense is ignored rather than built). */
unsigned ps_setting_unsigned(ps_setting which, unsigned fallback, unsigned lo, unsigned hi);

/** Whether the program cache is on: PRESCORE_CACHE unset, or not off. */
int ps_cache_enabled_by_env(void);

/** Cache directory: PRESCORE_CACHE_DIR if set and non-empty; else
 * $XDG_CACHE_HOME/prescore-cl (only when absolute, as the XDG spec asks);
 * else $HOME/.cache/prescore-cl; else NULL.
 * @return a malloc'd string for the caller to free, or NULL (no cache) */
char *ps_cache_dir_default(void);

/** Where the cache's secret lives, whatever directory the entries go to: the
 * user's state directory, not the cache tree, so that a restored or unpacked
 * ~/.cache (a CI cache, a container layer) brings no trusted entries:
 * PRESCORE_SECRET_DIR if set and non-empty (services without a home); else
 * $XDG_STATE_HOME/prescore-cl (only when absolute); else
 * $HOME/.local/state/prescore-cl; else NULL.
 * @return a malloc'd string for the caller to free, or NULL */
char *ps_cache_secret_dir_default(void);

#endif
