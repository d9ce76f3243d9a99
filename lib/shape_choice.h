/* The kernel shape of a device whose type does not decide it: both shapes of
 * exact attention are timed once on a small problem and the faster one is
 * kept, recorded in the program cache directory so that later contexts on the
 * same device, driver, library and limits read it instead of measuring. */
#ifndef PRESCORE_SHAPE_CHOICE_H
#define PRESCORE_SHAPE_CHOICE_H

#include "internal.h"

/* Problem timed: one head of PS_SHAPE_PROBE_N queries and keys, d = 64. */
#define PS_SHAPE_PROBE_N 128

struct ps_cache;

/** Sets ctx->tuning.shape when it is PS_SHAPE_AUTO (the programs without a
 * variant per shape and the driver probes must be done). A measurement
 * leaves the chosen shape's attention program built on the context.
 * @param options of the context: build options, verbosity
 * @param cache where the choice is read and written (an unusable cache: measure only) */
ps_status ps_shape_choose(ps_context *ctx, const ps_context_options *options,
                          struct ps_cache *cache);

/** Parses a recorded choice: "prescore-shape 1 cpu|gpu <cpu_us> <gpu_us>\n".
 * @return 1 and the shape when the text is exactly that, else 0. */
int ps_shape_record_parse(const unsigned char *text, size_t size, ps_kernel_shape *shape);

#endif
