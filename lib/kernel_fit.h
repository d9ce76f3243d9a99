/* Launch geometry of a kernel from the device's limits: the one place that
 * reads CL_KERNEL_WORK_GROUP_SIZE and CL_KERNEL_LOCAL_MEM_SIZE. */
#ifndef PRESCORE_KERNEL_FIT_H
#define PRESCORE_KERNEL_FIT_H

#include "internal.h"

/* Words of __local memory declared by cl/util.cl local_probe. */
#define PS_LOCAL_PROBE_WORDS 256

/** Measures two driver properties once per context (needs the built
 * programs): how it reports a kernel's __local bytes against what the kernel
 * declares (ctx->tuning.local_mem_report_scale, 1 where honest), and how many
 * loop back-edges a work-item may take before its loops are cut short
 * (ctx->tuning.loop_budget, 0: no limit; Mesa llvmpipe: 65535). */
ps_status ps_kernel_fit_probe(ps_context *ctx);

/** Items (keys, rows) one work-item may walk when each costs @p per_item
 * loop back-edges: half the loop budget over @p per_item (the margin
 * lib/exact.c keeps), at most @p cap, at least 1; @p cap where there is no
 * budget. */
size_t ps_loop_items(const ps_context *ctx, size_t per_item, size_t cap);

/** Work-group size for @p kernel: the largest power of two no larger than
 * @p cap, the device's max work-group size and the kernel's
 * CL_KERNEL_WORK_GROUP_SIZE. Fails with PS_ERR_UNSUPPORTED, naming the kernel
 * and the limit, when its static __local bytes plus @p dynamic_local (the
 * __local arguments it will get) exceed the device's local memory.
 * @p group may be NULL when only the local-memory check is wanted. */
ps_status ps_kernel_fit(ps_context *ctx, cl_kernel kernel, const char *name, size_t cap,
                        uint64_t dynamic_local, size_t *group);

#endif
