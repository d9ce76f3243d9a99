/* --decode: the key cache (ps_kv_cache) under a prefill and token-by-token
 * decode steps, its decode timed against exact decode on the same cache
 * (bench/README.md, "Decode"). */
#ifndef PRESCORE_BENCH_DECODE_H
#define PRESCORE_BENCH_DECODE_H

#include <stddef.h>

#include "run.h"

/** One row: a cache of capacity n + steps, one timed append of n prefill
 * rows, then per step a timed append of one row and timed decodes
 * (PS_DECODE_CACHE, PS_DECODE_EXACT), after an untimed warm-up pass and
 * ps_kv_cache_reset. Inputs: the seeded workload of n + steps tokens, or
 * with --data the layer in @p run (n 0: its rows - steps, so the last rows
 * are the decode steps). @return an exit code */
int bench_decode_run(const bench_run *run, size_t n);

#endif
