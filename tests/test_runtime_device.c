/* Device suite: the runtime around the kernels. Device listing and choice,
 * wrapping an application's OpenCL objects, the program-binary cache (hit,
 * disabled, corrupt entry), build failure with its log, every invalid
 * argument of the public calls, and the Philox stream on the device against
 * the host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "philox.h"
#include "prescore/prescore.h"
#include "prescore/prescore_ref.h"
#include "support.h"

static char cache_root[256];

static ps_context *make_context(const char *cache_dir, int disable_cache)
{
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.cache_dir = cache_dir;
    opt.disable_cache = disable_cache;
    ps_context *ctx = NULL;
    ps_status st = ps_context_create(&ctx, &opt);
    if (st != PS_OK)
        fail_msg("context: %s: %s", ps_status_string(st), ps_context_last_error(NULL));
    return ctx;
}

static size_t count_files(const char *dir)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

static void test_device_list(void **state)
{
    (void)state;
    size_t count = 0;
    assert_int_equal(ps_device_list(NULL, 0, &count), PS_OK);
    assert_true(count >= 1);
    assert_int_equal(ps_device_list(NULL, 0, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_device_list(NULL, 3, &count), PS_ERR_INVALID_ARGUMENT);
    ps_device_info *infos = calloc(count, sizeof *infos);
    assert_int_equal(ps_device_list(infos, count, &count), PS_OK);
    for (size_t i = 0; i < count; i++) {
        assert_true(infos[i].name[0] != '\0');
        assert_true(infos[i].max_work_group_size >= 1);
        assert_true(infos[i].compute_units >= 1);
    }
    free(infos);
}

static void test_selectors(void **state)
{
    (void)state;
    ps_device_info first;
    size_t count = 0;
    assert_int_equal(ps_device_list(&first, 1, &count), PS_OK);
    char sel[64];
    snprintf(sel, sizeof sel, "%u:%u", first.platform_index, first.device_index);
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.device = sel;
    ps_context *ctx = NULL;
    assert_int_equal(ps_context_create(&ctx, &opt), PS_OK);
    ps_device_info got;
    assert_int_equal(ps_context_device_info(ctx, &got), PS_OK);
    assert_string_equal(got.name, first.name);
    ps_context_destroy(ctx);

    opt.device = "no-such-device-xyz";
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_DEVICE_NOT_FOUND);
    assert_null(ctx);
    assert_non_null(strstr(ps_context_last_error(NULL), "no-such-device-xyz"));
    opt.device = "99:0";
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_DEVICE_NOT_FOUND);
    opt.device = "1:";
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_INVALID_ARGUMENT);

    /* PRESCORE_DEVICE applies when the options name no device. */
    setenv("PRESCORE_DEVICE", "no-such-device-xyz", 1);
    assert_int_equal(ps_context_create(&ctx, NULL), PS_ERR_DEVICE_NOT_FOUND);
    unsetenv("PRESCORE_DEVICE");
    assert_int_equal(ps_context_create(NULL, NULL), PS_ERR_INVALID_ARGUMENT);
}

static void test_cache(void **state)
{
    (void)state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/cache", cache_root);

    ps_context *ctx = make_context(dir, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 0); /* cold: compiled */
    ps_context_destroy(ctx);
    const size_t files = count_files(dir);
    assert_true(files >= 1);

    ctx = make_context(dir, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 1); /* warm: hit */
    ps_context_destroy(ctx);

    /* Disabled: compiled, and nothing new written anywhere. */
    char other[300];
    snprintf(other, sizeof other, "%s/unused", cache_root);
    ctx = make_context(other, 1);
    assert_int_equal(ps_context_programs_from_cache(ctx), 0);
    ps_context_destroy(ctx);
    assert_int_equal(count_files(other), 0);
    setenv("PRESCORE_CACHE", "off", 1);
    ctx = make_context(dir, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 0);
    ps_context_destroy(ctx);
    unsetenv("PRESCORE_CACHE");

    /* Corrupt every entry: the context still builds, then rewrites them. */
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char path[600];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r+b");
        assert_non_null(f);
        fseek(f, 40, SEEK_SET);
        fputs("garbage garbage garbage", f);
        fclose(f);
    }
    closedir(d);
    ctx = make_context(dir, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 0);
    ps_context_destroy(ctx);
    ctx = make_context(dir, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 1);
    ps_context_destroy(ctx);
    remove_dir(dir);
    remove_dir(other);
}

/* A program with a variant per shape holds its context's shape only. */
static void assert_one_shape(ps_context *ctx, ps_kernel_shape shape)
{
    static const ps_program_id ids[4] = {PS_PROGRAM_EXACT, PS_PROGRAM_SCORE,
                                         PS_PROGRAM_SELECT, PS_PROGRAM_HYPER};
    static const char *const bases[4] = {"flash_attention", "km_assign", "select_write",
                                         "hyper_residual"};
    const int gpu = shape == PS_SHAPE_GPU;
    for (int i = 0; i < 4; i++) {
        char own[64], other[64];
        snprintf(own, sizeof own, "%s_%s", bases[i], gpu ? "gpu" : "cpu");
        snprintf(other, sizeof other, "%s_%s", bases[i], gpu ? "cpu" : "gpu");
        cl_int err = CL_SUCCESS;
        cl_kernel k = clCreateKernel(ctx->programs[ids[i]], own, &err);
        assert_int_equal(err, CL_SUCCESS);
        clReleaseKernel(k);
        k = clCreateKernel(ctx->programs[ids[i]], other, &err);
        assert_null(k);
        assert_int_equal(err, CL_INVALID_KERNEL_NAME);
    }
}

/* PS_SHAPE_AUTO: on a device whose type does not decide, the first context
 * measures (exact attention built once in each shape: nothing loaded, the
 * programs, the other shape's attention and the record stored); the next
 * reads the record and loads every program once, storing nothing. */
static void test_shape_choice(void **state)
{
    (void)state;
    char dir[300], env[16] = "";
    snprintf(dir, sizeof dir, "%s/shape", cache_root);
    const char *set = getenv("PRESCORE_SHAPE");
    if (set)
        snprintf(env, sizeof env, "%s", set);
    unsetenv("PRESCORE_SHAPE");

    ps_cache_stats s;
    ps_context *ctx = make_context(dir, 0);
    const ps_kernel_shape shape = ps_context_kernel_shape(ctx);
    assert_true(shape == PS_SHAPE_CPU || shape == PS_SHAPE_GPU);
    const int measured = ctx->info.type != PS_DEVICE_GPU;
    assert_int_equal(ps_context_cache_stats(ctx, &s), PS_OK);
    assert_int_equal(s.loaded, 0);
    assert_int_equal(s.stored, PS_PROGRAM_COUNT + (measured ? 2 : 0));
    assert_int_equal(ps_context_programs_from_cache(ctx), 0);
    assert_one_shape(ctx, shape);
    ps_context_destroy(ctx);

    ctx = make_context(dir, 0);
    assert_int_equal(ps_context_kernel_shape(ctx), shape);
    assert_int_equal(ps_context_cache_stats(ctx, &s), PS_OK);
    assert_int_equal(s.loaded, PS_PROGRAM_COUNT + (measured ? 1 : 0));
    assert_int_equal(s.stored, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 1);
    assert_one_shape(ctx, shape);
    ps_context_destroy(ctx);

    /* A forced shape, either one. */
    const ps_kernel_shape shapes[2] = {PS_SHAPE_CPU, PS_SHAPE_GPU};
    for (int i = 0; i < 2; i++) {
        if (!ts_shape_wanted(shapes[i], "runtime_device"))
            continue;
        ps_context_options opt;
        ps_context_options_default(&opt);
        opt.cache_dir = dir;
        opt.shape = shapes[i];
        assert_int_equal(ps_context_create(&ctx, &opt), PS_OK);
        assert_one_shape(ctx, ps_context_kernel_shape(ctx)); /* GPU: local memory allowing */
        ps_context_destroy(ctx);
    }
    if (env[0])
        setenv("PRESCORE_SHAPE", env, 1);
    remove_dir(dir);
}

static void test_build_failure(void **state)
{
    (void)state;
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.disable_cache = 1;
    opt.build_options = "-Dfloat=not_a_type -DNOT_A_NUMBER";
    ps_context *ctx = NULL;
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_BUILD);
    assert_null(ctx);
    assert_non_null(strstr(ps_context_last_error(NULL), "build log"));

    /* The library's own macros size its buffers: a user's value is refused
     * before anything compiles, however it is spelled. */
    static const char *const overrides[] = {"-DPS_DMAX=16", "-cl-mad-enable -D PS_CPU_QB=3",
                                            "-UPS_DMAX", "-D'PS_GPU_KTILE=2'",
                                            "-D\"PS_DMAX=16\""};
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++) {
        opt.build_options = overrides[i];
        assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_INVALID_ARGUMENT);
        assert_null(ctx);
        assert_non_null(strstr(ps_context_last_error(NULL), "PS_"));
        assert_non_null(strstr(ps_context_last_error(NULL), "library's own"));
    }
    opt.build_options = NULL;
    setenv("PRESCORE_BUILD_OPTIONS", "-DPS_DMAX=16", 1);
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "PRESCORE_BUILD_OPTIONS sets PS_DMAX"));
    unsetenv("PRESCORE_BUILD_OPTIONS");

    opt.shape = (ps_kernel_shape)9;
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
}

static void test_wrap_application_objects(void **state)
{
    (void)state;
    ps_context *owner = make_context(NULL, 1);
    cl_context cl_ctx;
    cl_device_id dev;
    cl_command_queue queue;
    assert_int_equal(ps_context_cl_handles(owner, &cl_ctx, &dev, &queue), PS_OK);
    ps_context *wrapped = NULL;
    /* A queue of another cl_context is refused. */
    ps_context *stranger = make_context(NULL, 0);
    cl_command_queue other_queue;
    ps_context_cl_handles(stranger, NULL, NULL, &other_queue);
    assert_int_equal(ps_context_create_from_cl(&wrapped, cl_ctx, dev, other_queue, NULL),
                     PS_ERR_CONTEXT_MISMATCH);
    assert_null(wrapped);
    ps_context_destroy(stranger);
    /* Stages rely on in-order execution: an out-of-order queue is refused. */
    cl_int err;
    cl_command_queue ooo =
        clCreateCommandQueue(cl_ctx, dev, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    if (err == CL_SUCCESS) {
        assert_int_equal(ps_context_create_from_cl(&wrapped, cl_ctx, dev, ooo, NULL),
                         PS_ERR_UNSUPPORTED);
        assert_non_null(strstr(ps_context_last_error(NULL), "out-of-order"));
        clReleaseCommandQueue(ooo);
    } else {
        printf("# out-of-order queues unsupported here (%d): check not run\n", (int)err);
    }
    assert_int_equal(ps_context_create_from_cl(&wrapped, cl_ctx, dev, queue, NULL), PS_OK);
    ps_device_info a, b;
    ps_context_device_info(owner, &a);
    ps_context_device_info(wrapped, &b);
    assert_string_equal(a.name, b.name);
    /* The wrapped context retains the objects: it outlives the owner. */
    ps_context_destroy(owner);
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = 40;
    desc.d = desc.d_v = 32;
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(wrapped, &desc, &plan), PS_OK);
    float x[40 * 32], o[40 * 32];
    ts_fill_normal(x, 40 * 32, ts_seed(), 5, 1.0f);
    assert_int_equal(ps_attention_host(plan, x, x, x, o, NULL), PS_OK);
    ps_plan_destroy(plan);
    ps_context_destroy(wrapped);

    assert_int_equal(ps_context_create_from_cl(&wrapped, NULL, dev, queue, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_create_from_cl(NULL, cl_ctx, dev, queue, NULL),
                     PS_ERR_INVALID_ARGUMENT);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    ps_context *ctx = make_context(NULL, 0), *other = make_context(NULL, 0);
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = 64;
    desc.d = desc.d_v = 32;
    desc.want_lse = 1;
    ps_plan *plan = NULL;

    /* ps_plan_create */
    assert_int_equal(ps_plan_create(NULL, &desc, &plan), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_plan_create(ctx, NULL, &plan), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(ctx), "desc"));
    assert_int_equal(ps_plan_create(ctx, &desc, NULL), PS_ERR_INVALID_ARGUMENT);
    ps_attention_desc bad = desc;
    bad.d = 40;
    assert_int_equal(ps_plan_create(ctx, &bad, &plan), PS_ERR_UNSUPPORTED);
    assert_null(plan);
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));

    assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_OK);
    ps_attention_desc resolved;
    assert_int_equal(ps_plan_desc(plan, &resolved), PS_OK);
    assert_true(fabsf(resolved.scale - 1.0f / sqrtf(32.0f)) < 1e-7f);
    assert_int_equal(ps_plan_desc(NULL, &resolved), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_plan_desc(plan, NULL), PS_ERR_INVALID_ARGUMENT);

    cl_context cl_ctx, cl_other;
    ps_context_cl_handles(ctx, &cl_ctx, NULL, NULL);
    ps_context_cl_handles(other, &cl_other, NULL, NULL);
    cl_int err;
    const size_t bytes = 64 * 32 * sizeof(float);
    cl_mem q = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    cl_mem k = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    cl_mem v = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    cl_mem o = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    cl_mem lse = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, 64 * sizeof(float), NULL, &err);
    cl_mem small = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, bytes - 4, NULL, &err);
    cl_mem foreign = clCreateBuffer(cl_other, CL_MEM_READ_WRITE, bytes, NULL, &err);
    float zeros[64 * 32] = {0};
    cl_command_queue queue;
    ps_context_cl_handles(ctx, NULL, NULL, &queue);
    clEnqueueWriteBuffer(queue, q, CL_TRUE, 0, bytes, zeros, 0, NULL, NULL);
    clEnqueueWriteBuffer(queue, k, CL_TRUE, 0, bytes, zeros, 0, NULL, NULL);
    clEnqueueWriteBuffer(queue, v, CL_TRUE, 0, bytes, zeros, 0, NULL, NULL);

    /* A context-level failure first: the plan's calls below record their
     * messages on the plan only and leave this one alone. */
    ps_plan *unused = NULL;
    assert_int_equal(ps_plan_create(ctx, &bad, &unused), PS_ERR_UNSUPPORTED);
    assert_null(unused);
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));

    assert_int_equal(ps_attention(NULL, q, k, v, o, lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention(plan, NULL, k, v, o, lse), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "q is NULL"));
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));
    assert_int_equal(ps_attention(plan, q, NULL, v, o, lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention(plan, q, k, NULL, o, lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention(plan, q, k, v, NULL, lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention(plan, q, k, v, o, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "lse"));
    assert_int_equal(ps_attention(plan, small, k, v, o, lse), PS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(ps_attention(plan, q, k, small, o, lse), PS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(ps_attention(plan, q, k, v, small, lse), PS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(ps_attention(plan, q, k, v, o, q), PS_ERR_INVALID_ARGUMENT); /* alias */
    assert_int_equal(ps_attention(plan, q, foreign, v, o, lse), PS_ERR_CONTEXT_MISMATCH);
    assert_int_equal(ps_attention(plan, q, k, v, q, lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention(plan, q, k, v, o, lse), PS_OK);
    /* A success empties the plan's message, not the context's. */
    assert_string_equal(ps_plan_last_error(plan), "");
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));

    float host[64 * 32], out[64 * 32], l[64];
    memset(host, 0, sizeof host);
    assert_int_equal(ps_attention_host(NULL, host, host, host, out, l), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_host(plan, NULL, host, host, out, l), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_host(plan, host, NULL, host, out, l), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_host(plan, host, host, NULL, out, l), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_host(plan, host, host, host, NULL, l), PS_ERR_INVALID_ARGUMENT);
    assert_string_equal(ps_plan_last_error(plan), "ps_attention_host: o is NULL");
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));
    assert_int_equal(ps_attention_host(plan, host, host, host, out, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "ps_attention_host: lse is NULL"));
    assert_int_equal(ps_attention_host(plan, host, host, host, out, l), PS_OK);
    assert_string_equal(ps_plan_last_error(plan), "");
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));
    assert_true(fabsf(l[0] - logf(64.0f)) < 1e-4f); /* all logits 0: log n */

    /* Context calls. */
    ps_device_info info;
    assert_int_equal(ps_context_device_info(NULL, &info), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_device_info(ctx, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_cl_handles(NULL, NULL, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_kernel_shape(NULL), PS_SHAPE_AUTO);
    assert_true(ps_plan_last_time_ms(NULL) < 0);
    ps_plan_destroy(NULL);
    ps_context_destroy(NULL);

    clReleaseMemObject(q);
    clReleaseMemObject(k);
    clReleaseMemObject(v);
    clReleaseMemObject(o);
    clReleaseMemObject(lse);
    clReleaseMemObject(small);
    clReleaseMemObject(foreign);
    ps_plan_destroy(plan);
    ps_context_destroy(ctx);
    ps_context_destroy(other);
}

static void test_profiling_time(void **state)
{
    (void)state;
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.profiling = 1;
    ps_context *ctx = NULL;
    assert_int_equal(ps_context_create(&ctx, &opt), PS_OK);
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = 256;
    desc.d = desc.d_v = 64;
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_OK);
    float *x = calloc(256 * 64, sizeof *x), *o = calloc(256 * 64, sizeof *o);
    assert_true(ps_plan_last_time_ms(plan) < 0);
    assert_int_equal(ps_attention_host(plan, x, x, x, o, NULL), PS_OK);
    assert_true(ps_plan_last_time_ms(plan) > 0);
    free(x);
    free(o);
    ps_plan_destroy(plan);
    ps_context_destroy(ctx);
}

/* The kernels' Philox stream equals the host's, word for word and float for
 * float, for several seeds, stages and heads. */
static void test_philox_device_matches_host(void **state)
{
    (void)state;
    ps_context *ctx = make_context(NULL, 0);
    const cl_uint count = 1000;
    cl_int err;
    cl_mem words = clCreateBuffer(ctx->cl_ctx, CL_MEM_WRITE_ONLY, 4 * count * sizeof(cl_uint),
                                  NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem uni = clCreateBuffer(ctx->cl_ctx, CL_MEM_WRITE_ONLY, 4 * count * sizeof(float), NULL,
                                &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_kernel kernel = NULL;
    assert_int_equal(ps_kernel_create(ctx, PS_PROGRAM_UTIL, "philox_fill", &kernel), PS_OK);
    cl_uint *w = malloc(4 * count * sizeof *w);
    float *u = malloc(4 * count * sizeof *u);
    const cl_ulong seeds[] = {0, 1, 0xdeadbeefcafef00dull, ts_seed()};
    for (size_t si = 0; si < 4; si++)
        for (cl_uint stage = 0; stage < 4; stage++) {
            const cl_uint head = stage * 7 + (cl_uint)si;
            clSetKernelArg(kernel, 0, sizeof words, &words);
            clSetKernelArg(kernel, 1, sizeof uni, &uni);
            clSetKernelArg(kernel, 2, sizeof seeds[si], &seeds[si]);
            clSetKernelArg(kernel, 3, sizeof stage, &stage);
            clSetKernelArg(kernel, 4, sizeof head, &head);
            clSetKernelArg(kernel, 5, sizeof count, &count);
            const size_t global = count;
            assert_int_equal(clEnqueueNDRangeKernel(ctx->queue, kernel, 1, NULL, &global, NULL,
                                                    0, NULL, NULL),
                             CL_SUCCESS);
            clEnqueueReadBuffer(ctx->queue, words, CL_TRUE, 0, 4 * count * sizeof *w, w, 0,
                                NULL, NULL);
            clEnqueueReadBuffer(ctx->queue, uni, CL_TRUE, 0, 4 * count * sizeof *u, u, 0, NULL,
                                NULL);
            for (cl_uint i = 0; i < count; i++) {
                const ps_philox_u4 r = ps_philox_draw(seeds[si], stage, head, i);
                for (int j = 0; j < 4; j++) {
                    if (w[4 * i + j] != r.v[j])
                        fail_msg("word %u.%d differs (seed %llu stage %u)", i, j,
                                 (unsigned long long)seeds[si], stage);
                    assert_true(u[4 * i + j] == ps_philox_uniform(r.v[j]));
                }
            }
        }
    free(w);
    free(u);
    clReleaseKernel(kernel);
    clReleaseMemObject(words);
    clReleaseMemObject(uni);
    ps_context_destroy(ctx);
}

/* desc.check_finite: Inf or NaN in any input is refused with a status naming
 * the tensor (device and reference alike); without it, no crash. */
static void test_check_finite(void **state)
{
    (void)state;
    ps_context *ctx = make_context(NULL, 0);
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = 100;
    desc.d = desc.d_v = 32;
    desc.check_finite = 1;
    const size_t n = 100 * 32;
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *o = malloc(n * 4);
    ts_fill_normal(q, n, ts_seed(), 31, 1.0f);
    ts_fill_normal(k, n, ts_seed(), 32, 1.0f);
    ts_fill_normal(v, n, ts_seed(), 33, 1.0f);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_OK);
    assert_int_equal(ps_attention_host(plan, q, k, v, o, NULL), PS_OK);
    k[1234] = NAN;
    assert_int_equal(ps_attention_host(plan, q, k, v, o, NULL), PS_ERR_NON_FINITE);
    assert_non_null(strstr(ps_plan_last_error(plan), "k holds"));
    assert_int_equal(ps_ref_exact_attention(&desc, q, k, v, o, NULL), PS_ERR_NON_FINITE);
    k[1234] = 0.5f;
    v[n - 1] = -INFINITY;
    assert_int_equal(ps_attention_host(plan, q, k, v, o, NULL), PS_ERR_NON_FINITE);
    assert_non_null(strstr(ps_plan_last_error(plan), "v holds"));
    v[n - 1] = 0.5f;
    q[0] = INFINITY;
    assert_int_equal(ps_attention_host(plan, q, k, v, o, NULL), PS_ERR_NON_FINITE);
    assert_non_null(strstr(ps_plan_last_error(plan), "q holds"));
    ps_plan_destroy(plan);
    /* Without the check the call runs (output unspecified for that row). */
    desc.check_finite = 0;
    assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_OK);
    assert_int_equal(ps_attention_host(plan, q, k, v, o, NULL), PS_OK);
    ps_plan_destroy(plan);
    desc.check_finite = 2;
    assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_ERR_INVALID_ARGUMENT);
    free(q);
    free(k);
    free(v);
    free(o);
    ps_context_destroy(ctx);
}

/* desc.check_finite on the outputs: finite inputs beyond the fp32 range of a
 * method (here Q, K, V ~ 1e20 * N(0, 1): logits near 1e40) give NaN in O;
 * the call then fails with PS_ERR_NON_FINITE naming o, and the reference,
 * which checks its own outputs the same way, agrees (its LSE, ~1e40 in
 * double, is +Inf as a float). Without the check the call still returns
 * PS_OK (output unspecified). Inputs of normal magnitude pass on both. */
static void test_check_finite_outputs(void **state)
{
    (void)state;
    ps_context *ctx = make_context(NULL, 0);
    static const struct {
        const char *name;
        ps_method method;
        ps_score score;
    } cases[] = {
        {"EXACT", PS_METHOD_EXACT, PS_SCORE_KMEANS},
        {"HYPER", PS_METHOD_HYPER, PS_SCORE_KMEANS},
        {"PRESCORE KMEANS", PS_METHOD_PRESCORE, PS_SCORE_KMEANS},
        {"PRESCORE LEVERAGE", PS_METHOD_PRESCORE, PS_SCORE_LEVERAGE},
        {"PRESCORE NORM", PS_METHOD_PRESCORE, PS_SCORE_NORM},
    };
    const size_t n = 128, d = 32, count = n * d;
    float *q = malloc(count * 4), *k = malloc(count * 4), *v = malloc(count * 4);
    float *o = malloc(count * 4), *lse = malloc(n * 4);
    assert_true(q && k && v && o && lse);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ps_attention_desc desc;
        ps_attention_desc_default(&desc);
        desc.n_q = desc.n_k = n;
        desc.d = desc.d_v = d;
        desc.method = cases[c].method;
        desc.score = cases[c].score;
        desc.budget = 64;
        desc.block = 32;
        desc.samples = 32;
        desc.min_seq_len = 64;
        desc.want_lse = 1;
        desc.check_finite = 1;
        for (int big = 0; big < 2; big++) {
            const float s = big ? 1e20f : 1.0f;
            ts_fill_normal(q, count, ts_seed(), 41, 1.0f);
            ts_fill_normal(k, count, ts_seed(), 42, 1.0f);
            ts_fill_normal(v, count, ts_seed(), 43, 1.0f);
            for (size_t i = 0; i < count; i++) {
                q[i] *= s;
                k[i] *= s;
                v[i] *= s;
            }
            const ps_status want = big ? PS_ERR_NON_FINITE : PS_OK;
            ps_plan *plan = NULL;
            desc.check_finite = 1;
            assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_OK);
            const ps_status dev = ps_attention_host(plan, q, k, v, o, lse);
            if (dev != want)
                fail_msg("%s, scale %g: device %s (%s)", cases[c].name, (double)s,
                         ps_status_string(dev), ps_plan_last_error(plan));
            if (big)
                assert_non_null(strstr(ps_plan_last_error(plan),
                                       "ps_attention: o holds NaN or Inf after the run"));
            if (big && cases[c].method != PS_METHOD_EXACT) {
                /* Key reuse: the query half's outputs are checked too. */
                cl_int err;
                cl_mem bufs[5];
                const size_t bytes[5] = {count * 4, count * 4, count * 4, count * 4, n * 4};
                float *src[5] = {q, k, v, NULL, NULL};
                for (int i = 0; i < 5; i++) {
                    bufs[i] = clCreateBuffer(ctx->cl_ctx,
                                             CL_MEM_READ_WRITE |
                                                 (src[i] ? CL_MEM_COPY_HOST_PTR : 0),
                                             bytes[i], src[i], &err);
                    assert_int_equal(err, CL_SUCCESS);
                }
                assert_int_equal(ps_attention_prepare_keys(plan, bufs[1], bufs[2]), PS_OK);
                assert_int_equal(ps_attention_prepared(plan, bufs[0], bufs[3], bufs[4]),
                                 PS_ERR_NON_FINITE);
                assert_non_null(strstr(ps_plan_last_error(plan),
                                       "ps_attention_prepared: o holds NaN or Inf"));
                for (int i = 0; i < 5; i++)
                    clReleaseMemObject(bufs[i]);
            }
            ps_plan_destroy(plan);
            const ps_status ref = ps_ref_attention(&desc, q, k, v, o, lse);
            if (ref != want)
                fail_msg("%s, scale %g: reference %s", cases[c].name, (double)s,
                         ps_status_string(ref));
            /* Without the check: runs, output unspecified. */
            desc.check_finite = 0;
            assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_OK);
            assert_int_equal(ps_attention_host(plan, q, k, v, o, lse), PS_OK);
            ps_plan_destroy(plan);
            assert_int_equal(ps_ref_attention(&desc, q, k, v, o, lse), PS_OK);
        }
    }
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
    ps_context_destroy(ctx);
}

/* An LSE of -Inf is no error: causal rows that see no key (n_q > n_k) get
 * O = 0 and LSE = -inf, with the check on, on the device and the reference. */
static void test_check_finite_lse_minus_inf(void **state)
{
    (void)state;
    ps_context *ctx = make_context(NULL, 0);
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = 96;
    desc.n_k = 64;
    desc.d = desc.d_v = 16;
    desc.causal = 1;
    desc.want_lse = 1;
    desc.check_finite = 1;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &desc, 44), 0);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_OK);
    assert_int_equal(ps_attention_host(plan, t.q, t.k, t.v, t.o, t.lse), PS_OK);
    assert_true(isinf(t.lse[0]) && t.lse[0] < 0); /* row 0 sees no key */
    assert_true(isfinite(t.lse[95]));
    assert_int_equal(ps_ref_attention(&desc, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    assert_true(isinf(t.lse_ref[0]) && t.lse_ref[0] < 0);
    ps_plan_destroy(plan);
    ts_tensors_free(&t);
    ps_context_destroy(ctx);
}

/* Faults: a workspace beyond the device's allocation limit and a kernel
 * build broken through the environment each get their status, and leave the
 * library usable. */
static void test_faults_leave_context_usable(void **state)
{
    (void)state;
    ps_context *ctx = make_context(NULL, 0);
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = (size_t)1 << 26;
    desc.d = desc.d_v = 128; /* 32 GiB per tensor: beyond any allocation limit */
    ps_plan *plan = NULL;
    const ps_status st = ps_plan_create(ctx, &desc, &plan);
    assert_true(st == PS_ERR_OUT_OF_DEVICE_MEMORY || st == PS_ERR_UNSUPPORTED);
    assert_null(plan);
    printf("# huge plan: %s: %s\n", ps_status_string(st), ps_context_last_error(ctx));
    desc.n_q = desc.n_k = 64; /* the same context still works */
    float x[64 * 128] = {0}, o[64 * 128];
    assert_int_equal(ps_plan_create(ctx, &desc, &plan), PS_OK);
    assert_int_equal(ps_attention_host(plan, x, x, x, o, NULL), PS_OK);
    ps_plan_destroy(plan);
    ps_context_destroy(ctx);

    setenv("PRESCORE_BUILD_OPTIONS", "-Dfloat=(", 1);
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.disable_cache = 1;
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_BUILD);
    assert_null(ctx);
    assert_non_null(strstr(ps_context_last_error(NULL), "float=("));
    unsetenv("PRESCORE_BUILD_OPTIONS");
    assert_int_equal(ps_context_create(&ctx, &opt), PS_OK);
    ps_context_destroy(ctx);
}

int main(void)
{
    if (!ts_have_device("runtime_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("runtime_device");
    snprintf(cache_root, sizeof cache_root, "/tmp/prescore-test-XXXXXX");
    if (!mkdtemp(cache_root))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_list),
        cmocka_unit_test(test_selectors),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_shape_choice),
        cmocka_unit_test(test_build_failure),
        cmocka_unit_test(test_wrap_application_objects),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_profiling_time),
        cmocka_unit_test(test_philox_device_matches_host),
        cmocka_unit_test(test_check_finite),
        cmocka_unit_test(test_check_finite_outputs),
        cmocka_unit_test(test_check_finite_lse_minus_inf),
        cmocka_unit_test(test_faults_leave_context_usable),
    };
    int failed = cmocka_run_group_tests_name("runtime_device", tests, NULL, NULL);
    rmdir(cache_root);
    return failed ? 1 : 0;
}
