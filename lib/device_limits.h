/* PRESCORE_LIMITS: a narrowing of what the library believes about its device,
 * so that the suites can run on a generous device (PoCL) as a small mobile GPU
 * would constrain them. Pure logic, no OpenCL calls: unit-tested without a
 * device (tests/test_device_limits.c).
 *
 * Syntax: comma-separated key=value pairs, surrounding whitespace ignored:
 *   local_mem=N       CL_DEVICE_LOCAL_MEM_SIZE, bytes
 *   max_work_group=N  CL_DEVICE_MAX_WORK_GROUP_SIZE, work-items
 *   max_alloc=N       CL_DEVICE_MAX_MEM_ALLOC_SIZE, bytes
 *   global_mem=N      CL_DEVICE_GLOBAL_MEM_SIZE, bytes
 *   fp16=0|1, fp64=0|1  the cl_khr_fp16 / cl_khr_fp64 extensions
 * Sizes are decimal with an optional k, m or g suffix (powers of 1024), e.g.
 * "local_mem=16k,max_work_group=128,max_alloc=256m,fp16=0". A limit can only
 * narrow: a value above the device's own is ignored (fp16=1 on a device
 * without the extension does not add it). Unknown keys, repeated keys, zero
 * sizes and malformed numbers are errors, never silently ignored. */
#ifndef PRESCORE_DEVICE_LIMITS_H
#define PRESCORE_DEVICE_LIMITS_H

#include "prescore/prescore.h"

#include <stddef.h>
#include <stdint.h>

/* The smallest device the library promises to serve without refusing a plan
 * (the OpenCL embedded-profile-like floor most mobile GPUs exceed). */
#define PS_MIN_LOCAL_MEM 16384u
#define PS_MIN_WORK_GROUP 64u

typedef struct ps_limits {
    /* 0: not given. */
    uint64_t local_mem, max_alloc, global_mem;
    size_t max_work_group;
    /* -1: not given, else 0 or 1. */
    int fp16, fp64;
} ps_limits;

/** Parses @p spec (NULL or empty: no limits).
 * @param msg receives a one-line reason on failure (may be NULL)
 * @return PS_OK or PS_ERR_INVALID_ARGUMENT */
ps_status ps_limits_parse(const char *spec, ps_limits *out, char *msg, size_t msg_size);

/** Narrows @p info to @p limits. */
void ps_limits_apply(const ps_limits *limits, ps_device_info *info);

#endif
