/* Kernel shape and tile sizes derived from the device's limits. The values
 * become -D defines of the kernel build (lib/program.c); environment variables
 * override them for tuning experiments:
 *   PRESCORE_SHAPE=cpu|gpu, PRESCORE_CPU_QB=N, PRESCORE_GPU_GROUP=N,
 *   PRESCORE_GPU_KTILE=N. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static unsigned env_unsigned(const char *name, unsigned fallback, unsigned lo,
                             unsigned hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return fallback; /* ignore nonsense rather than build something invalid */
    return (unsigned)v;
}

static unsigned pow2_floor(size_t v)
{
    unsigned p = 1;
    while ((size_t)p * 2 <= v && p < (1u << 30))
        p *= 2;
    return p;
}

void ps_tuning_from_device(const ps_device_info *info, ps_kernel_shape requested,
                           ps_tuning *tuning)
{
    const char *env_shape = getenv("PRESCORE_SHAPE");
    ps_kernel_shape shape = requested;

    if (shape == PS_SHAPE_AUTO && env_shape) {
        if (strcasecmp(env_shape, "cpu") == 0)
            shape = PS_SHAPE_CPU;
        else if (strcasecmp(env_shape, "gpu") == 0)
            shape = PS_SHAPE_GPU;
    }
    /* GPU-shaped tiles need real on-chip local memory; where __local is
     * emulated in global memory (PoCL, most CPU drivers) register blocks win. */
    if (shape == PS_SHAPE_AUTO)
        shape = (info->type == PS_DEVICE_CPU || info->local_mem_is_global) ? PS_SHAPE_CPU
                                                                           : PS_SHAPE_GPU;

    /* GPU shape: K and V tiles of `ktile` rows of PS_MAX_HEAD_DIM floats in
     * __local; use at most half the local memory so two groups can share a
     * compute unit. Too little local memory for the smallest tile: CPU shape. */
    unsigned ktile = 64;
    const uint64_t row_bytes = 2u * PS_MAX_HEAD_DIM * sizeof(float);
    while (ktile > 8 && (uint64_t)ktile * row_bytes > info->local_mem_size / 2)
        ktile /= 2;
    if (shape == PS_SHAPE_GPU && (uint64_t)ktile * row_bytes > info->local_mem_size)
        shape = PS_SHAPE_CPU;

    tuning->shape = shape;
    tuning->cpu_query_block = env_unsigned("PRESCORE_CPU_QB", 8, 1, 16);
    if (tuning->cpu_query_block != 1 && tuning->cpu_query_block != 2 &&
        tuning->cpu_query_block != 4 && tuning->cpu_query_block != 8 &&
        tuning->cpu_query_block != 16)
        tuning->cpu_query_block = 8;
    tuning->gpu_group =
        env_unsigned("PRESCORE_GPU_GROUP", pow2_floor(info->max_work_group_size < 64
                                                          ? info->max_work_group_size
                                                          : 64),
                     1, 1024);
    tuning->gpu_key_tile = env_unsigned("PRESCORE_GPU_KTILE", ktile, 1, 256);
}
