/* Compiles the embedded kernels for the context's device: assembles each
 * program's source (philox.h + common.cl + the stage file), derives the build
 * options from the tuning, and goes through the on-disk binary cache.
 *
 * Environment: PRESCORE_KERNEL_DIR reads the .cl files from that directory
 * instead of the embedded copies (kernel development without rebuilding);
 * PRESCORE_BUILD_OPTIONS appends build options; PRESCORE_CACHE=0 disables the
 * cache; PRESCORE_CACHE_DIR relocates it. */
#include "internal.h"

#include "cl_sources.h"
#include "program_cache.h"
#include "host_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const program_files[PS_PROGRAM_COUNT] = {
    [PS_PROGRAM_UTIL] = "util.cl",
    [PS_PROGRAM_ATTENTION] = "flash_attention.cl",
    [PS_PROGRAM_SCORE] = "score.cl",
    [PS_PROGRAM_SELECT] = "select.cl",
    [PS_PROGRAM_LSH] = "lsh_sort.cl",
    [PS_PROGRAM_HYPER] = "hyper_attention.cl",
    [PS_PROGRAM_CHECK] = "check.cl",
};

/* The prelude every program starts with, in this order. */
static const char *const prelude_files[] = {"philox.h", "lsh_common.h", "common.cl"};

static char *read_file(const char *dir, const char *name, size_t *length)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = ps_malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[size] = '\0';
        *length = (size_t)size;
    }
    return buf;
}

/* Appends one source file (from disk in development mode, else embedded). */
static ps_status append_source(ps_context *ctx, char **text, size_t *len, const char *name)
{
    const char *dir = getenv("PRESCORE_KERNEL_DIR");
    char *disk = NULL;
    const char *src = NULL;
    size_t n = 0;

    if (dir && *dir) {
        disk = read_file(dir, name, &n);
        if (!disk)
            return ps_fail(ctx, PS_ERR_IO, "PRESCORE_KERNEL_DIR=%s: cannot read %s", dir,
                           name);
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

static ps_status build_options(ps_context *ctx, const ps_context_options *options,
                               char *out, size_t size)
{
    const ps_tuning *t = &ctx->tuning;
    const char *env = getenv("PRESCORE_BUILD_OPTIONS");
    const char *extra = options && options->build_options ? options->build_options : "";
    /* -cl-std only where the device compiles OpenCL C 1.2 or later. */
    const int cl12 = strstr(ctx->info.opencl_c_version, "OpenCL C 1.0") == NULL &&
                     strstr(ctx->info.opencl_c_version, "OpenCL C 1.1") == NULL;
    int n = snprintf(out, size,
                     "%s -cl-fast-relaxed-math -DPS_DMAX=%d -DPS_CPU_QB=%u "
                     "-DPS_GPU_KTILE=%u %s %s",
                     cl12 ? "-cl-std=CL1.2" : "", PS_MAX_HEAD_DIM, t->cpu_query_block,
                     t->gpu_key_tile, env ? env : "", extra);
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

/* Tries the cache; returns a built program or NULL on any miss or failure. */
static cl_program load_cached(ps_context *ctx, const char *dir, ps_cache_key key,
                              const char *options, int verbose)
{
    unsigned char *binary = NULL;
    size_t size = 0;
    cl_program program = NULL;
    cl_int err = CL_SUCCESS, binary_status = CL_SUCCESS;

    if (ps_cache_load(dir, key, &binary, &size) != PS_OK)
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
        if (verbose)
            fprintf(stderr, "prescore: cached binary rejected (%s), rebuilding\n",
                    ps_cl_error_name(err));
        if (program)
            clReleaseProgram(program);
        return NULL;
    }
    return program;
}

static void store_cached(ps_context *ctx, const char *dir, ps_cache_key key,
                         cl_program program, int verbose)
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
        ps_cache_store(dir, key, binary, size) != PS_OK && verbose)
        fprintf(stderr, "prescore: could not write the program cache in %s\n", dir);
    free(binary);
    (void)ctx;
}

static ps_status build_one(ps_context *ctx, ps_program_id id, const char *options,
                           const char *cache_dir, int verbose, int *from_cache)
{
    char *text = NULL;
    size_t len = 0;
    ps_status st = PS_OK;
    cl_program program = NULL;
    cl_int err = CL_SUCCESS;

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

    if (cache_dir)
        program = load_cached(ctx, cache_dir, key, options, verbose);
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
        if (cache_dir)
            store_cached(ctx, cache_dir, key, program, verbose);
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
    return (options && options->verbose) || ps_env_flag("PRESCORE_VERBOSE", 0);
}

char *ps_programs_cache_dir(const ps_context_options *options)
{
    if ((options && options->disable_cache) || !ps_cache_enabled_by_env())
        return NULL;
    return options && options->cache_dir ? strdup(options->cache_dir)
                                         : ps_cache_dir_default();
}

ps_status ps_programs_build(ps_context *ctx, const ps_context_options *options)
{
    char opts[2048];
    const int verbose = ps_programs_verbose(options);
    ps_status st = build_options(ctx, options, opts, sizeof opts);
    if (st != PS_OK)
        return st;

    char *cache_dir = ps_programs_cache_dir(options);
    int all_cached = 1;
    for (int id = 0; id < PS_PROGRAM_COUNT && st == PS_OK; id++) {
        int hit = 0;
        st = build_one(ctx, (ps_program_id)id, opts, cache_dir, verbose, &hit);
        all_cached &= hit;
    }
    ctx->programs_from_cache = st == PS_OK && all_cached;
    if (verbose && st == PS_OK)
        fprintf(stderr, "prescore: programs %s (options: %s)\n",
                ctx->programs_from_cache ? "loaded from cache" : "compiled", opts);
    free(cache_dir);
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

ps_status ps_launch(ps_context *ctx, cl_kernel kernel, const char *name, cl_uint dims,
                    const size_t *global, const size_t *local, cl_event *ev)
{
    const cl_int err =
        clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, global, local, 0, NULL, ev);
    if (err != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel (%s)", name);
        return ps_fail_cl(ctx, err, what);
    }
    return PS_OK;
}
