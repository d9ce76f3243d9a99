/* ps_context: device choice, OpenCL context and queue (own or wrapped), and
 * the kernels compiled for that device. */
#include "internal.h"

#include "device_select.h"
#include "handles.h"
#include "kernel_fit.h"
#include "program_cache.h"
#include "settings.h"
#include "shape_choice.h"
#include "core/host_alloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void ps_context_options_default(ps_context_options *options)
{
    if (options)
        memset(options, 0, sizeof *options);
}

static ps_status context_alloc(ps_context **out)
{
    ps_context *ctx = ps_calloc(1, sizeof *ctx);
    if (!ctx || ps_handles_add_context(ctx) != PS_OK) {
        free(ctx);
        ps_keep_create_message("context: no host memory for the context object");
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    *out = ctx;
    return PS_OK;
}

static void keep_cache_stats(ps_context *ctx, const ps_cache *cache)
{
    ps_cache_stats *s = &ctx->cache_stats;
    s->loaded = cache->loaded;
    s->stored = cache->stored;
    s->refused_unsafe = cache->refused[PS_CACHE_REFUSED_DIRECTORY] +
                        cache->refused[PS_CACHE_REFUSED_SECRET] +
                        cache->refused[PS_CACHE_REFUSED_NOT_FILE] +
                        cache->refused[PS_CACHE_REFUSED_OWNER];
    s->refused_foreign = cache->refused[PS_CACHE_REFUSED_MAC];
    s->refused_damaged = cache->refused[PS_CACHE_REFUSED_FORMAT];
    s->refused_unusable = cache->refused[PS_CACHE_REFUSED_PROGRAM];
}

/* Shared tail of both constructors: tuning and program builds. */
static ps_status context_finish(ps_context *ctx, const ps_context_options *options)
{
    if (options && (options->shape < PS_SHAPE_AUTO || options->shape > PS_SHAPE_GPU))
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "options->shape: %d is not a ps_kernel_shape", (int)options->shape);
    ps_status st = ps_tuning_init(ctx, options ? options->shape : PS_SHAPE_AUTO);
    if (st != PS_OK)
        return st;
    ps_cache cache;
    (void)ps_programs_open_cache(options, &cache); /* unusable: everything compiles */
    ctx->programs_from_cache = 1; /* until a build compiles */
    /* While the shape is still to be chosen, the first build leaves out the
     * programs with a variant per shape; the choice builds exact attention in
     * both and keeps the faster, the second build makes the rest. */
    st = ps_programs_build(ctx, options, &cache);
    if (st == PS_OK)
        st = ps_kernel_fit_probe(ctx);
    if (st == PS_OK && ctx->tuning.shape == PS_SHAPE_AUTO)
        st = ps_shape_choose(ctx, options, &cache);
    if (st == PS_OK)
        st = ps_programs_build(ctx, options, &cache);
    keep_cache_stats(ctx, &cache);
    ps_cache_close(&cache);
    return st;
}

ps_status ps_context_create(ps_context **out, const ps_context_options *options)
{
    ps_context *ctx = NULL;
    ps_device_info *devices = NULL;
    size_t count = 0, chosen = 0;
    ps_selector sel;
    char msg[1024] = "";
    ps_status st;
    cl_int err = CL_SUCCESS;

    if (!out) {
        ps_keep_create_message("ps_context_create: out is NULL");
        return PS_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    st = context_alloc(&ctx);
    if (st != PS_OK)
        return st;

    const char *selector = options && options->device ? options->device
                                                      : ps_setting_string(PS_SET_DEVICE);
    st = ps_selector_parse(selector, &sel, msg, sizeof msg);
    PS_GOTO_IF(st != PS_OK, ps_fail(ctx, st, "device selector: %s", msg));
    st = ps_device_list(NULL, 0, &count);
    PS_GOTO_IF(st != PS_OK, ps_fail(ctx, st, "listing OpenCL devices failed"));
    PS_GOTO_IF(count == 0, ps_fail(ctx, PS_ERR_NO_DEVICE,
                                   "no OpenCL device found (is an ICD such as "
                                   "pocl-opencl-icd installed?)"));
    devices = ps_calloc(count, sizeof *devices);
    PS_GOTO_IF(!devices, PS_ERR_OUT_OF_HOST_MEMORY);
    st = ps_device_list(devices, count, &count);
    PS_GOTO_IF(st != PS_OK, ps_fail(ctx, st, "listing OpenCL devices failed"));
    st = ps_selector_choose(&sel, devices, count, &chosen, msg, sizeof msg);
    PS_GOTO_IF(st != PS_OK, ps_fail(ctx, st, "%s", msg));
    ctx->info = devices[chosen];
    st = ps_device_ids(ctx->info.platform_index, ctx->info.device_index, &ctx->platform,
                       &ctx->device);
    PS_GOTO_IF(st != PS_OK, ps_fail(ctx, st, "device %u:%u disappeared",
                                    ctx->info.platform_index, ctx->info.device_index));

    cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                     (cl_context_properties)ctx->platform, 0};
    ctx->cl_ctx = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
    PS_CL_GOTO(ctx, err, "clCreateContext");
    ctx->owns_cl = 1;
    ctx->profiling = (options && options->profiling) || ps_setting_flag(PS_SET_PROFILE, 0);
    ctx->queue = clCreateCommandQueue(ctx->cl_ctx, ctx->device,
                                      ctx->profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    PS_CL_GOTO(ctx, err, "clCreateCommandQueue");
    st = context_finish(ctx, options);
cleanup:
    free(devices);
    if (st != PS_OK) {
        ps_keep_create_error(ctx, st);
        ps_context_destroy(ctx);
        return st;
    }
    *out = ctx;
    return PS_OK;
}

ps_status ps_context_create_from_cl(ps_context **out, cl_context cl_ctx,
                                    cl_device_id device, cl_command_queue queue,
                                    const ps_context_options *options)
{
    ps_context *ctx = NULL;
    cl_context queue_ctx = NULL;
    cl_device_id queue_dev = NULL;
    cl_command_queue_properties qprops = 0;
    cl_platform_id platform = NULL;
    ps_status st;

    if (!out || !cl_ctx || !device || !queue) {
        if (out)
            *out = NULL;
        ps_keep_create_message("ps_context_create_from_cl: out, cl_ctx, device and queue "
                               "must be non-NULL");
        return PS_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    if (clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof queue_ctx, &queue_ctx,
                              NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof queue_dev, &queue_dev,
                              NULL) != CL_SUCCESS ||
        clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL) !=
            CL_SUCCESS)
    {
        ps_keep_create_message("ps_context_create_from_cl: queue or device is not a valid "
                               "OpenCL object");
        return PS_ERR_INVALID_ARGUMENT;
    }
    if (queue_ctx != cl_ctx || queue_dev != device) {
        ps_keep_create_message("ps_context_create_from_cl: the queue belongs to another "
                               "cl_context or device");
        return PS_ERR_CONTEXT_MISMATCH;
    }
    /* Stages chain kernels through the queue's order. */
    clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qprops, &qprops, NULL);
    if (qprops & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) {
        ps_keep_create_message("ps_context_create_from_cl: out-of-order queues are not "
                               "supported; pass an in-order queue");
        return PS_ERR_UNSUPPORTED;
    }
    st = context_alloc(&ctx);
    if (st != PS_OK)
        return st;
    clRetainContext(cl_ctx);
    clRetainCommandQueue(queue);
    ctx->cl_ctx = cl_ctx;
    ctx->queue = queue;
    ctx->device = device;
    ctx->platform = platform;
    ctx->profiling = (qprops & CL_QUEUE_PROFILING_ENABLE) != 0;
    st = ps_device_info_query(platform, device, 0, 0, &ctx->info);
    if (st == PS_OK)
        st = context_finish(ctx, options);
    if (st != PS_OK) {
        ps_keep_create_error(ctx, st);
        ps_context_destroy(ctx);
        return st;
    }
    *out = ctx;
    return PS_OK;
}

ps_status ps_context_destroy(ps_context *ctx)
{
    if (!ctx)
        return PS_OK;
    size_t plans = 0;
    const int removed = ps_handles_remove_context(ctx, &plans);
    if (removed < 0)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_context_destroy: %zu plan(s) of this context are still live; "
                       "destroy them first (the context was kept)",
                       plans);
    if (removed == 0)
        return ps_context_check(ctx, "ps_context_destroy");
    ps_programs_release(ctx);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->cl_ctx)
        clReleaseContext(ctx->cl_ctx);
    ps_forget_errors(ctx);
    free(ctx);
    return PS_OK;
}

ps_status ps_context_device_info(const ps_context *ctx, ps_device_info *info)
{
    const ps_status st = ps_context_check(ctx, "ps_context_device_info");
    if (st != PS_OK || !info)
        return PS_ERR_INVALID_ARGUMENT;
    *info = ctx->info;
    return PS_OK;
}

ps_kernel_shape ps_context_kernel_shape(const ps_context *ctx)
{
    return ps_context_check(ctx, "ps_context_kernel_shape") == PS_OK ? ctx->tuning.shape
                                                                      : PS_SHAPE_AUTO;
}

ps_status ps_context_cl_handles(const ps_context *ctx, cl_context *cl_ctx,
                                cl_device_id *device, cl_command_queue *queue)
{
    const ps_status st = ps_context_check(ctx, "ps_context_cl_handles");
    if (st != PS_OK)
        return st;
    if (cl_ctx)
        *cl_ctx = ctx->cl_ctx;
    if (device)
        *device = ctx->device;
    if (queue)
        *queue = ctx->queue;
    return PS_OK;
}

int ps_context_programs_from_cache(const ps_context *ctx)
{
    return ps_context_check(ctx, "ps_context_programs_from_cache") == PS_OK
               ? ctx->programs_from_cache
               : 0;
}

ps_status ps_context_cache_stats(const ps_context *ctx, ps_cache_stats *stats)
{
    const ps_status st = ps_context_check(ctx, "ps_context_cache_stats");
    if (st != PS_OK || !stats)
        return PS_ERR_INVALID_ARGUMENT;
    *stats = ctx->cache_stats;
    return PS_OK;
}
