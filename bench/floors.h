/* The two key sets every selection is read between (bench/README.md,
 * "Metrics"): m uniformly random keys (a selection that knows nothing) and
 * the oracle, the m keys that carry the most exact attention mass over the
 * queries (the best a fixed key set chosen from the true attention can
 * do). Host code on dense fp32 arrays; check.c runs exact attention over
 * each set on the device for oracle_floor_error and random_floor_error. */
#ifndef PRESCORE_BENCH_FLOORS_H
#define PRESCORE_BENCH_FLOORS_H

#include <stddef.h>
#include <stdint.h>

#include "prescore/prescore.h"

/* Queries the oracle ranks keys by, at most: above it, an evenly strided
 * subset of the queries (the oracle is then an estimate). */
#define BENCH_ORACLE_MAX_QUERIES 4096

/** The @p m keys of each KV head with the most attention mass summed over its
 * query heads' queries: mass of key j = sum_i exp(scale q_i . k_j - lse_i).
 * @param q    dense [batch * heads][n_q][d]
 * @param k    dense [batch * kv_heads][n_k][d]
 * @param lse  exact LSE [batch * heads][n_q] (natural log); rows with a
 *             non-finite LSE are skipped
 * @param idx  out: [batch * kv_heads][m] key indices, ascending per head
 * @return PS_OK or PS_ERR_OUT_OF_HOST_MEMORY */
ps_status bench_oracle_keys(const ps_attention_desc *desc, const float *q, const float *k,
                            const float *lse, size_t m, uint32_t *idx);

/** @p m distinct keys per KV head drawn uniformly (a seeded partial
 * shuffle), ascending per head, into idx [batch * kv_heads][m].
 * @return PS_OK or PS_ERR_OUT_OF_HOST_MEMORY */
ps_status bench_random_keys(const ps_attention_desc *desc, size_t m, uint64_t seed,
                            uint32_t *idx);

/** floor_error of a weighted selection: rel_error against @p o_ref of exact
 * attention of every query over the kept keys idx ([kv head][cap], the first
 * cnt of each) with key j's logit raised by its log-weight w ([kv head][cap]),
 * on the host (double softmax; the device's exact kernel takes no weights).
 * @param q, k, v dense [batch * heads | kv_heads][n][d | d_v]
 * @param err out: the error (NaN for non-finite inputs, reported as such)
 * @return PS_OK or PS_ERR_OUT_OF_HOST_MEMORY */
ps_status bench_weighted_floor(const ps_attention_desc *desc, const float *q, const float *k,
                               const float *v, const uint32_t *idx, const float *w, size_t cap,
                               size_t cnt, const float *o_ref, double *err);

#endif
