/* --check: the method's output against exact attention on the same device,
 * and its metrics: rel_error, lse_error,
 * heavy_recall, floor_error, oracle_floor_error, random_floor_error
 * (bench/README.md, "Metrics"). */
#ifndef PRESCORE_BENCH_CHECK_H
#define PRESCORE_BENCH_CHECK_H

#include <stdint.h>

#include "prescore/prescore.h"
#include "report.h" /* BENCH_MAX_EST_HEADS */
#include "workload.h"

/* Exact attention of one set of inputs, on the host, computed once and
 * compared against every method run on the same inputs. */
typedef struct bench_reference {
    float *o;   /* [batch][heads][n_q][d_v] */
    float *lse; /* [batch][heads][n_q] */
    size_t no, nl;
    double heavy_mass; /* heavy workload: measured mean exact mass share of
                          the planted keys; NaN otherwise */
    int heavy_mass_measured; /* heavy_mass was computed (NaN then means broken inputs) */
    size_t floors_keys;  /* keys per KV head of the two floors below; 0: none yet */
    double oracle_floor; /* rel_error of exact over the oracle's keys (floors.h) */
    double random_floor; /* the same over uniformly random keys */
} bench_reference;

/** Runs exact attention (with LSE) for @p desc's shapes on q, k, v into
 * @p ref. With @p workload HEAVY, also measures ref->heavy_mass from the
 * planted positions of @p data_seed.
 * @return PS_OK or the failing call's status (message on the context) */
ps_status bench_reference_make(ps_context *ctx, const ps_attention_desc *desc, cl_mem q,
                               cl_mem k, cl_mem v, bench_workload workload,
                               uint64_t data_seed, bench_reference *ref);

void bench_reference_free(bench_reference *ref);

typedef struct bench_check_result {
    double rel_error;    /* ||O - O_exact||_F / ||O_exact||_F */
    double lse_error;    /* mean |LSE - LSE_exact| over rows that see a key */
    double heavy_recall; /* mean_q exp(LSE_unit - LSE_exact); NaN: not measured */
    double floor_error;  /* rel_error of exact over the kept keys; NaN: not measured */
    double keys_kept;    /* mean keys kept per KV head; NaN: not measured */
    double oracle_floor_error; /* floor_error of the oracle's as many keys; NaN: not */
    double random_floor_error; /* the same for uniformly random keys */
    unsigned measured;   /* BENCH_METRIC_* bits of the metrics computed above */
    /* desc.error_probes > 0: per query head (flat batch * heads, at most
     * BENCH_MAX_EST_HEADS; est_heads 0 otherwise) the measured errors and
     * the plan's estimate of them (ps_plan_error_estimate). */
    size_t est_heads;
    double head_rel[BENCH_MAX_EST_HEADS], head_lse[BENCH_MAX_EST_HEADS];
    double est_rel[BENCH_MAX_EST_HEADS], est_lse[BENCH_MAX_EST_HEADS];
} bench_check_result;

/* Bits of bench_check_result.measured: a metric not measured is NaN by
 * design, a measured one that is NaN or infinite is a failure. */
enum {
    BENCH_METRIC_REL_ERROR = 1u,
    BENCH_METRIC_LSE_ERROR = 2u,
    BENCH_METRIC_HEAVY_RECALL = 4u,
    BENCH_METRIC_FLOOR_ERROR = 8u,
    BENCH_METRIC_KEYS_KEPT = 16u,
    BENCH_METRIC_ORACLE_FLOOR = 32u,
    BENCH_METRIC_RANDOM_FLOOR = 64u,
    BENCH_METRIC_ALL = 127u
};

/** @return the name of the first measured metric of @p r that is NaN or
 * infinite ("rel_error", "lse_error", ...), or NULL when all are finite. */
const char *bench_check_non_finite(const bench_check_result *r);

/** Runs @p plan (resolved descriptor @p desc) on q, k, v with LSE and
 * compares with @p ref; then the same plan with unit residual weight
 * (heavy_recall) and, for PRESCORE, exact attention over the keys that
 * ps_score_keys + ps_select_keys keep (floor_error; non-causal only) and
 * over as many oracle and random keys (computed once per @p ref and count,
 * cached there).
 * @return PS_OK or the failing call's status (message on the context) */
ps_status bench_check(ps_context *ctx, ps_plan *plan, const ps_attention_desc *desc,
                      cl_mem q, cl_mem k, cl_mem v, bench_reference *ref,
                      bench_check_result *result);

#endif
