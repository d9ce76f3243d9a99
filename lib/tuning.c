/* Every tile size, work-group cap and local-memory budget of the kernels,
 * derived in one place from the device's limits (narrowed by PRESCORE_LIMITS,
 * lib/device_limits.h). The values become -D defines of the kernel build
 * (lib/program.c) and launch caps (lib/kernel_fit.c). Overrides for tuning
 * experiments, read through lib/settings.h: PRESCORE_SHAPE=cpu|gpu,
 * PRESCORE_CPU_QB=N, PRESCORE_GPU_GROUP=N, PRESCORE_GPU_KTILE=N (clamped to
 * what fits), PRESCORE_LSH_GROUP=N (LSH sort kernels, docs/LSH.md),
 * PRESCORE_LOOP_BUDGET=N. */
#include "internal.h"

#include "device_limits.h"
#include "settings.h"
#include "core/size_math.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

uint64_t ps_gpu_tile_local_bytes(unsigned key_tile)
{
    /* K and V tiles of key_tile rows of PS_MAX_HEAD_DIM floats (cl/common.cl). */
    return 2ull * key_tile * PS_MAX_HEAD_DIM * sizeof(float);
}

void ps_tuning_from_device(const ps_device_info *info, ps_kernel_shape requested,
                           ps_tuning *tuning)
{
    const char *env_shape = ps_setting_string(PS_SET_SHAPE);
    ps_kernel_shape shape = requested;

    if (shape == PS_SHAPE_AUTO && env_shape) {
        if (strcasecmp(env_shape, "cpu") == 0)
            shape = PS_SHAPE_CPU;
        else if (strcasecmp(env_shape, "gpu") == 0)
            shape = PS_SHAPE_GPU;
    }
    /* A GPU runs the GPU shape. Elsewhere the shape is measured once per
     * device (lib/shape_choice.c): PoCL runs a group's work-items one after
     * another and wants the CPU shape's register blocks, llvmpipe runs them as
     * SIMD lanes and wants the GPU shape; both report a CPU device type. */
    if (shape == PS_SHAPE_AUTO && info->type == PS_DEVICE_GPU)
        shape = PS_SHAPE_GPU;

    /* GPU shape: the largest key tile (8..64 rows, a power of two) whose K
     * and V tiles take at most half the local memory, so that two groups can
     * share a compute unit; 4 rows where only the whole local memory holds a
     * tile. A device without room for that gets the CPU shape (no __local). */
    unsigned ktile = 64;
    while (ktile > 4 && ps_gpu_tile_local_bytes(ktile) > info->local_mem_size / 2)
        ktile /= 2;
    const int gpu_fits = ps_gpu_tile_local_bytes(ktile) <= info->local_mem_size;
    if (!gpu_fits)
        shape = PS_SHAPE_CPU;
    tuning->shape = shape;
    tuning->cpu_query_block = ps_setting_unsigned(PS_SET_CPU_QB, 8, 1, 16);
    if (tuning->cpu_query_block != 1 && tuning->cpu_query_block != 2 &&
        tuning->cpu_query_block != 4 && tuning->cpu_query_block != 8 &&
        tuning->cpu_query_block != 16)
        tuning->cpu_query_block = 8;

    /* Work-group caps: 64 work-items (a multiple of every vendor's SIMD
     * width up to AMD's wavefront) unless the device allows fewer; each
     * kernel is capped again by its own CL_KERNEL_WORK_GROUP_SIZE. */
    const unsigned device_group = ps_pow2_floor(info->max_work_group_size);
    tuning->group_cap = device_group < 64 ? device_group : 64;
    tuning->gpu_group = ps_pow2_floor(
        ps_setting_unsigned(PS_SET_GPU_GROUP, tuning->group_cap, 1, device_group));
    tuning->lsh_group = ps_setting_unsigned(PS_SET_LSH_GROUP, tuning->group_cap, 1, 1024);
    /* Selection: groups of up to 256 (a histogram of 2048 bins is swept in
     * 8 steps), 16 candidates per work-item; a CPU work-item takes 4096;
     * at most 64 tiles per head bound the histograms and the scans. */
    tuning->select_group = device_group < 256 ? device_group : 256;
    tuning->select_gpu_items = 16;
    tuning->select_cpu_tile = 4096;
    tuning->select_max_tiles = 64;
    unsigned env_tile = ps_setting_unsigned(PS_SET_GPU_KTILE, ktile, 1, 256);
    while (env_tile > 1 && ps_gpu_tile_local_bytes(env_tile) > info->local_mem_size)
        env_tile /= 2; /* an override never builds a kernel the device refuses */
    tuning->gpu_key_tile = env_tile;
    tuning->local_mem_report_scale = 1; /* lib/kernel_fit.c measures it */
    tuning->loop_budget = ps_setting_unsigned(PS_SET_LOOP_BUDGET, PS_LOOP_BUDGET_PROBE, 0,
                                              PS_LOOP_BUDGET_PROBE - 1);
    tuning->limits_narrowed = 0;
}

ps_status ps_tuning_init(ps_context *ctx, ps_kernel_shape requested)
{
    ps_limits limits;
    char msg[256];
    const char *spec = ps_setting_string(PS_SET_LIMITS);
    if (ps_limits_parse(spec, &limits, msg, sizeof msg) != PS_OK)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "%s", msg);
    ps_limits_apply(&limits, &ctx->info);
    ps_tuning_from_device(&ctx->info, requested, &ctx->tuning);
    ctx->tuning.limits_narrowed = spec && *spec;
    return PS_OK;
}
