/* Compiles the embedded kernels for the context's device: assembles each
 * program's source (the prelude of shared headers and common.cl, then the
 * stage file), derives the build options from the tuning (with the kernel
 * shape for the programs that hold a variant per shape), and goes through
 * the on-disk binary cache.
 *
 * Environment: PRESCORE_KERNEL_DIR reads the .cl files from that directory
 * instead of the embedded copies (kernel development without rebuilding);
 * PRESCORE_BUILD_OPTIONS appends build options; PRESCORE_CACHE=0 disables the
 * cache; PRESCORE_CACHE_DIR relocates it. */
#define _POSIX_C_SOURCE 200809L

#include "internal.h"

#include "cl_sources.h"
#include "program_cache.h"
#include "settings.h"
#include "core/host_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const program_files[PS_PROGRAM_COUNT] = {
    [PS_PROGRAM_UTIL] = "util.cl",
    [PS_PROGRAM_EXACT] = "exact.cl",
    [PS_PROGRAM_SCORE] = "score.cl",
    [PS_PROGRAM_SELECT] = "select.cl",
    [PS_PROGRAM_LSH] = "lsh.cl",
    [PS_PROGRAM_HYPER] = "hyper.cl",
    [PS_PROGRAM_FINITE] = "finite.cl",
    [PS_PROGRAM_GLOBAL] = "global.cl",
    [PS_PROGRAM_MERGE] = "merge.cl",
    [PS_PROGRAM_DECODE] = "decode.cl",
    [PS_PROGRAM_ESTIMATE] = "estimate.cl",
};

/* Programs holding a variant of some kernel per shape (named <base>_cpu and
 * <base>_gpu): built with -DPS_GPU_SHAPE=0 or 1, one shape per program. The
 * others are built without it and serve both shapes. */
static const int program_shaped[PS_PROGRAM_COUNT] = {
    [PS_PROGRAM_EXACT] = 1,
    [PS_PROGRAM_SCORE] = 1,
    [PS_PROGRAM_SELECT] = 1,
    [PS_PROGRAM_HYPER] = 1,
    [PS_PROGRAM_DECODE] = 1,
};

/* The prelude every program starts with, in this order. */
static const char *const prelude_files[] = {"philox.h", "lsh_common.h", "score_common.h",
                                            "select_common.h", "tiles.h",
                                            "attention_params.h", "tensor_view.h",
                                            "common.cl"};

/* Largest kernel source file PRESCORE_KERNEL_DIR may supply. */
#define PS_MAX_SOURCE_FILE ((size_t)16 * 1024 * 1024)

/* Reads "<dir>/<name>" into a malloc'd NUL-terminated buffer. Never blocks in
 * open (O_NONBLOCK: a FIFO there is refused, not waited on) and reads only
 * regular files of at most PS_MAX_SOURCE_FILE bytes. NULL with @p why set on
 * failure. */
static char *read_file(const char *dir, const char *name, size_t *length, const char **why)
{
    char path[4096];
    struct stat sb;
    char *buf = NULL;
    *why = "cannot open";
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        *why = "path too long";
        return NULL;
    }
    int fd;
    do
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        *why = "not a regular file";
    } else if ((uint64_t)sb.st_size > PS_MAX_SOURCE_FILE) {
        *why = "larger than 16 MiB";
    } else if ((buf = ps_malloc((size_t)sb.st_size + 1)) == NULL) {
        *why = "out of host memory";
    } else {
        size_t got = 0;
        while (got < (size_t)sb.st_size) {
            const ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got != (size_t)sb.st_size) {
            *why = "short read";
            free(buf);
            buf = NULL;
        } else {
            buf[got] = '\0';
            *length = got;
        }
    }
    close(fd);
    return buf;
}

/* Appends one source file (from disk in development mode, else embedded). */
static ps_status append_source(ps_context *ctx, char **text, size_t *len, const char *name)
{
    const char *dir = ps_setting_string(PS_SET_KERNEL_DIR);
    char *disk = NULL;
    const char *src = NULL;
    size_t n = 0;

    if (dir && *dir) {
        const char *why = NULL;
        disk = read_file(dir, name, &n, &why);
        if (!disk)
            return ps_fail(ctx, PS_ERR_IO, "PRESCORE_KERNEL_DIR=%s: cannot read %s (%s)",
                           dir, name, why);
        src = disk;
    } else {
        for (size_t i = 0; i < ps_cl_source_count; i++)
            if (strcmp(ps_cl_sources[i].name, name) == 0) {
                src = (const char *)ps_cl_sources[i].bytes;
                n = ps_cl_sources[i].length;
            }
        if (!src)
            return ps_fail(ctx, PS_ERR_INTERNAL, "kernel source %s is not embedded", name);
    }
    char *grown = ps_realloc(*text, *len + n + 2);
    if (!grown) {
        free(disk);
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "no memory for kernel source");
    }
    memcpy(grown + *len, src, n);
    *len += n;
    grown[(*len)++] = '\n';
    grown[*len] = '\0';
    *text = grown;
    free(disk);
    return PS_OK;
}

/* 1 when @p options define or undefine a PS_* macro ("-DPS_X", "-D PS_X",
 * "-UPS_X", quoted or not): those are the library's own and set its buffer
 * sizes, so a user's value would give wrong answers, not an error. */
static int redefines_library_macro(const char *options, char *name, size_t size)
{
    const char *p = options;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        const char *token = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n')
            p++;
        if (p - token < 2 || token[0] != '-' || (token[1] != 'D' && token[1] != 'U'))
            continue;
        const char *macro = token + 2;
        if (macro == p) { /* "-D NAME": the name is the next token */
            while (*p == ' ' || *p == '\t' || *p == '\n')
                p++;
            macro = p;
        }
        while (*macro == '"' || *macro == '\'')
            macro++;
        if (strncmp(macro, "PS_", 3) == 0) {
            size_t n = 0;
            while (n + 1 < size && macro[n] && macro[n] != '=' && macro[n] != ' ' &&
                   macro[n] != '"' && macro[n] != '\'')
                n++;
            memcpy(name, macro, n);
            name[n] = '\0';
            return 1;
        }
    }
    return 0;
}

#define PS_BUILD_OPTIONS_MAX 2048

/* The library's defines come last, after the user's options, so that even a
 * spelling the check above misses cannot override them (the last -D wins). */
static ps_status build_options(ps_context *ctx, const ps_context_options *options,
                               char *out, size_t size)
{
    const ps_tuning *t = &ctx->tuning;
    const char *env = ps_setting_string(PS_SET_BUILD_OPTIONS);
    const char *extra = options && options->build_options ? options->build_options : "";
    char macro[64];
    if (env && redefines_library_macro(env, macro, sizeof macro))
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "PRESCORE_BUILD_OPTIONS sets %s: PS_* macros are the library's own",
                       macro);
    if (redefines_library_macro(extra, macro, sizeof macro))
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "options->build_options sets %s: PS_* macros are the library's own",
                       macro);
    /* -cl-std only where the device compiles OpenCL C 1.2 or later. */
    const int cl12 = strstr(ctx->info.opencl_c_version, "OpenCL C 1.0") == NULL &&
                     strstr(ctx->info.opencl_c_version, "OpenCL C 1.1") == NULL;
    int n = snprintf(out, size,
                     "%s -cl-fast-relaxed-math %s %s -DPS_DMAX=%d -DPS_CPU_QB=%u "
                     "-DPS_GPU_KTILE=%u",
                     cl12 ? "-cl-std=CL1.2" : "", env ? env : "", extra, PS_MAX_HEAD_DIM,
                     t->cpu_query_block, t->gpu_key_tile);
    if (n < 0 || (size_t)n >= size)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "build options longer than %zu bytes",
                       size);
    return PS_OK;
}

static void record_build_log(ps_context *ctx, cl_program program, const char *file,
                             const char *options, cl_int err)
{
    size_t log_size = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL,
                              &log_size) == CL_SUCCESS &&
        log_size > 0 && (log = ps_malloc(log_size + 1)) != NULL &&
        clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, log_size, log,
                              NULL) == CL_SUCCESS)
        log[log_size] = '\0';
    ps_fail(ctx, PS_ERR_BUILD, "building %s failed (%s) with options \"%s\"; build log:\n%s",
            file, ps_cl_error_name(err), options, log ? log : "(none)");
    free(log);
}

static int is_ident(char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The next kernel name declared in @p *p ("__kernel void name" or "kernel
 * void name", comments skipped), copied into @p name; 0 at the end. */
static int next_kernel_name(const char **p, char *name, size_t size)
{
    const char *s = *p;
    while (*s) {
        if (s[0] == '/' && s[1] == '/') {
            while (*s && *s != '\n')
                s++;
            continue;
        }
        if (s[0] == '/' && s[1] == '*') {
            const char *end = strstr(s + 2, "*/");
            s = end ? end + 2 : s + strlen(s);
            continue;
        }
        if (!is_ident(*s)) {
            s++;
            continue;
        }
        const char *word = s;
        while (is_ident(*s))
            s++;
        const size_t len = (size_t)(s - word);
        if (!((len == 8 && strncmp(word, "__kernel", 8) == 0) ||
              (len == 6 && strncmp(word, "kernel", 6) == 0)))
            continue;
        const char *q = s;
        while (is_space(*q))
            q++;
        if (strncmp(q, "void", 4) != 0 || !is_space(q[4]))
            continue;
        q += 4;
        while (is_space(*q))
            q++;
        size_t n = 0;
        while (n + 1 < size && is_ident(q[n]))
            n++;
        if (n == 0)
            continue;
        memcpy(name, q, n);
        name[n] = '\0';
        *p = q + n;
        return 1;
    }
    *p = s;
    return 0;
}

static const char *shape_suffix(ps_kernel_shape shape)
{
    return shape == PS_SHAPE_GPU ? "_gpu" : "_cpu";
}

static int ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Every kernel the source declares must be creatable from a program loaded
 * from the cache, except those named with @p other_shape's suffix, which
 * the preprocessor left out (NULL: none left out); @return 1, or 0 with
 * @p missing set. */
static int has_every_kernel(cl_program program, const char *source, const char *other_shape,
                            char *missing, size_t size)
{
    const char *p = source;
    while (next_kernel_name(&p, missing, size)) {
        if (other_shape && ends_with(missing, other_shape))
            continue;
        cl_int err = CL_SUCCESS;
        cl_kernel k = clCreateKernel(program, missing, &err);
        if (k)
            clReleaseKernel(k);
        if (err != CL_SUCCESS)
            return 0;
    }
    return 1;
}

/* Out of memory or resources says nothing about the entry: not deleted. */
static int transient(cl_int err)
{
    return err == CL_OUT_OF_HOST_MEMORY || err == CL_OUT_OF_RESOURCES ||
           err == CL_MEM_OBJECT_ALLOCATION_FAILURE;
}

/* Tries the cache; returns a built program or NULL on any miss or refusal.
 * An entry the driver rejects, or that lacks a kernel of the source, is
 * deleted so that the rebuilt program replaces it. */
static cl_program load_cached(ps_context *ctx, ps_cache *cache, ps_cache_key key,
                              const char *source, const char *options,
                              const char *other_shape)
{
    unsigned char *binary = NULL;
    size_t size = 0;
    cl_program program = NULL;
    cl_int err = CL_SUCCESS, binary_status = CL_SUCCESS;
    char detail[128];

    if (ps_cache_load(cache, key, &binary, &size) != PS_OK)
        return NULL;
    const unsigned char *bins[1] = {binary};
    program = clCreateProgramWithBinary(ctx->cl_ctx, 1, &ctx->device, &size, bins,
                                        &binary_status, &err);
    if (err == CL_SUCCESS && binary_status == CL_SUCCESS)
        err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
    else if (err == CL_SUCCESS)
        err = binary_status;
    free(binary);
    if (err != CL_SUCCESS) {
        snprintf(detail, sizeof detail, "%s", ps_cl_error_name(err));
        if (!transient(err))
            ps_cache_discard(cache, key, PS_CACHE_REFUSED_PROGRAM, detail);
        if (program)
            clReleaseProgram(program);
        return NULL;
    }
    char name[96] = "kernel ";
    if (!has_every_kernel(program, source, other_shape, name + 7, sizeof name - 7)) {
        snprintf(detail, sizeof detail, "no kernel %s", name + 7);
        ps_cache_discard(cache, key, PS_CACHE_REFUSED_PROGRAM, detail);
        clReleaseProgram(program);
        return NULL;
    }
    return program;
}

static void store_cached(ps_cache *cache, ps_cache_key key, cl_program program)
{
    size_t size = 0;
    unsigned char *binary = NULL;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) !=
            CL_SUCCESS ||
        size == 0 || (binary = ps_malloc(size)) == NULL)
        return;
    unsigned char *bins[1] = {binary};
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) ==
            CL_SUCCESS &&
        ps_cache_store(cache, key, binary, size) != PS_OK && cache->verbose)
        fprintf(stderr, "prescore: could not write the program cache in %s\n", cache->dir);
    free(binary);
}

/* Builds program @p id, which the context lacks, for ctx->tuning.shape;
 * clears ctx->programs_from_cache when it compiles. */
static ps_status build_one(ps_context *ctx, ps_program_id id, const char *common_options,
                           ps_cache *cache, int *from_cache)
{
    char *text = NULL;
    size_t len = 0;
    ps_status st = PS_OK;
    cl_program program = NULL;
    cl_int err = CL_SUCCESS;
    char options[PS_BUILD_OPTIONS_MAX + 32];
    const int shaped = program_shaped[id];
    const int gpu = ctx->tuning.shape == PS_SHAPE_GPU;
    /* The define is part of the options, so the cache key tells shapes apart. */
    snprintf(options, sizeof options, shaped ? "%s -DPS_GPU_SHAPE=%d" : "%s", common_options,
             gpu);

    for (size_t i = 0; i < sizeof prelude_files / sizeof prelude_files[0]; i++) {
        st = append_source(ctx, &text, &len, prelude_files[i]);
        PS_GOTO_IF(st != PS_OK, st);
    }
    st = append_source(ctx, &text, &len, program_files[id]);
    PS_GOTO_IF(st != PS_OK, st);

    const char *parts[] = {text,
                           options,
                           ctx->info.name,
                           ctx->info.vendor,
                           ctx->info.device_version,
                           ctx->info.driver_version,
                           ctx->info.platform_name};
    size_t lengths[sizeof parts / sizeof parts[0]];
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        lengths[i] = i == 0 ? len : strlen(parts[i]);
    ps_cache_key key = ps_cache_key_make(parts, lengths, sizeof parts / sizeof parts[0]);

    if (cache)
        program = load_cached(ctx, cache, key, text, options,
                              shaped ? shape_suffix(gpu ? PS_SHAPE_CPU : PS_SHAPE_GPU) : NULL);
    *from_cache = program != NULL;
    if (!program) {
        const char *srcs[1] = {text};
        program = clCreateProgramWithSource(ctx->cl_ctx, 1, srcs, &len, &err);
        PS_GOTO_IF(err != CL_SUCCESS, ps_fail_cl(ctx, err, "clCreateProgramWithSource"));
        err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
        if (err != CL_SUCCESS) {
            record_build_log(ctx, program, program_files[id], options, err);
            PS_GOTO_IF(1, PS_ERR_BUILD);
        }
        if (cache)
            store_cached(cache, key, program);
        ctx->programs_from_cache = 0;
    }
    ctx->programs[id] = program;
    program = NULL;
cleanup:
    if (program)
        clReleaseProgram(program);
    free(text);
    return st;
}

int ps_programs_verbose(const ps_context_options *options)
{
    return (options && options->verbose) || ps_setting_flag(PS_SET_VERBOSE, 0);
}

ps_status ps_programs_open_cache(const ps_context_options *options, ps_cache *cache)
{
    const int verbose = ps_programs_verbose(options);
    memset(cache, 0, sizeof *cache);
    cache->dir_fd = -1;
    cache->verbose = verbose;
    if ((options && options->disable_cache) || !ps_cache_enabled_by_env())
        return PS_ERR_IO;
    char *dir = options && options->cache_dir ? strdup(options->cache_dir)
                                              : ps_cache_dir_default();
    char *secret_dir = ps_cache_secret_dir_default();
    ps_status st = PS_ERR_IO;
    if (dir && secret_dir)
        st = ps_cache_open(cache, dir, secret_dir, verbose);
    else if (verbose)
        fprintf(stderr, "prescore: no program cache (%s)\n",
                dir ? "no directory for the secret key: set PRESCORE_SECRET_DIR, "
                      "XDG_STATE_HOME or HOME"
                    : "no cache directory");
    free(dir);
    free(secret_dir);
    return st;
}

ps_status ps_program_build(ps_context *ctx, const ps_context_options *options,
                           ps_cache *cache, ps_program_id id)
{
    char opts[PS_BUILD_OPTIONS_MAX];
    int hit = 0;
    ps_status st = build_options(ctx, options, opts, sizeof opts);
    if (st == PS_OK)
        st = build_one(ctx, id, opts, cache, &hit);
    return st;
}

ps_status ps_programs_build(ps_context *ctx, const ps_context_options *options,
                            ps_cache *cache)
{
    char opts[PS_BUILD_OPTIONS_MAX];
    const int verbose = ps_programs_verbose(options);
    const int chosen = ctx->tuning.shape != PS_SHAPE_AUTO;
    ps_status st = build_options(ctx, options, opts, sizeof opts);
    if (st != PS_OK)
        return st;

    int built = 0, cached = 0;
    for (int id = 0; id < PS_PROGRAM_COUNT && st == PS_OK; id++) {
        if (ctx->programs[id] || (program_shaped[id] && !chosen))
            continue;
        int hit = 0;
        st = build_one(ctx, (ps_program_id)id, opts, cache, &hit);
        built++;
        cached += hit;
    }
    if (verbose && st == PS_OK && built)
        fprintf(stderr, "prescore: %d programs built, %d of them from the cache, for %s "
                        "shape (options: %s)\n",
                built, cached, !chosen ? "either" : shape_suffix(ctx->tuning.shape) + 1, opts);
    if (st != PS_OK)
        ps_programs_release(ctx);
    return st;
}

void ps_programs_release(ps_context *ctx)
{
    for (int id = 0; id < PS_PROGRAM_COUNT; id++) {
        if (ctx->programs[id])
            clReleaseProgram(ctx->programs[id]);
        ctx->programs[id] = NULL;
    }
}

ps_status ps_kernel_create(ps_context *ctx, ps_program_id program, const char *name,
                           cl_kernel *out)
{
    cl_int err = CL_SUCCESS;
    *out = clCreateKernel(ctx->programs[program], name, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return ps_fail_cl(ctx, err, name);
    }
    return PS_OK;
}

const char *ps_kernel_shaped_name(const ps_context *ctx, const char *base, char *name,
                                  size_t size)
{
    snprintf(name, size, "%s%s", base, shape_suffix(ctx->tuning.shape));
    return name;
}

ps_status ps_kernel_create_shaped(ps_context *ctx, ps_program_id program, const char *base,
                                  cl_kernel *out)
{
    char name[PS_KERNEL_NAME_MAX];
    return ps_kernel_create(ctx, program, ps_kernel_shaped_name(ctx, base, name, sizeof name),
                            out);
}

ps_status ps_args_done(ps_context *ctx, const ps_arg_setter *a, const char *kernel)
{
    if (a->err == CL_SUCCESS)
        return PS_OK;
    char what[PS_KERNEL_NAME_MAX + 20];
    snprintf(what, sizeof what, "clSetKernelArg (%s)", kernel);
    return ps_fail_cl(ctx, a->err, what);
}

ps_status ps_launch(ps_context *ctx, cl_kernel kernel, const char *name, cl_uint dims,
                    const size_t *global, const size_t *local)
{
    const cl_int err =
        clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, global, local, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel (%s)", name);
        return ps_fail_cl(ctx, err, what);
    }
    return PS_OK;
}

ps_status ps_wait_enqueued(ps_context *ctx, const char *what)
{
    cl_event marker = NULL;
    cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &marker);
    if (err == CL_SUCCESS)
        err = clWaitForEvents(1, &marker);
    if (err == CL_SUCCESS) {
        cl_int exec = CL_COMPLETE;
        clGetEventInfo(marker, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof exec, &exec, NULL);
        err = exec < 0 ? exec : CL_SUCCESS;
    }
    if (marker)
        clReleaseEvent(marker);
    if (err == CL_SUCCESS)
        return PS_OK;
    return what ? ps_fail_cl(ctx, err, what) : PS_ERR_OPENCL;
}
