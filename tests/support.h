/* Shared helpers of the test suites: the seed, seeded inputs, error metrics
 * and the device check. Inputs come from splitmix64 + Box-Muller, independent
 * of the library's own RNG so a broken Philox cannot hide itself. */
#ifndef PRESCORE_TEST_SUPPORT_H
#define PRESCORE_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "prescore/prescore.h"

/* PRESCORE_TEST_SEED or a fixed default; printed by ts_report_seed. */
uint64_t ts_seed(void);
void ts_report_seed(const char *suite);

/* N(0, sigma^2) values from (seed, stream). */
void ts_fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, float sigma);

/* ||a - ref||_F / ||ref||_F, in double (ref all zero: ||a||). */
double ts_rel_error(const float *a, const float *ref, size_t n);
/* max_i |a_i - ref_i|, treating equal infinities as equal and NaN as +inf. */
double ts_max_abs_diff(const float *a, const float *ref, size_t n);

/* Host tensors of one attention case: inputs N(0, 0.25) for Q and K, N(0, 1)
 * for V from (seed, stream..stream+2), outputs and references allocated. */
typedef struct ts_tensors {
    float *q, *k, *v, *o, *o_ref, *lse, *lse_ref;
} ts_tensors;
/* @return 0, or -1 when memory ran out (everything freed). */
int ts_tensors_make(ts_tensors *t, const ps_attention_desc *d, uint64_t stream);
void ts_tensors_free(ts_tensors *t);

/* 1 when an OpenCL device exists; otherwise prints a loud SKIP line. */
int ts_have_device(const char *suite);

/* Whether the suites run `shape`: PRESCORE_TEST_SHAPES = "cpu", "gpu" or
 * "cpu,gpu" (unset: both). A device runs one shape in use (rusticl/llvmpipe
 * the GPU shape); CI runs it there and both on PoCL. Prints a line when not. */
int ts_shape_wanted(ps_kernel_shape shape, const char *suite);
/* The first shape the suites run: the CPU shape unless only the GPU one is
 * wanted. Silent. */
ps_kernel_shape ts_first_shape(void);

/* 1 when `test` is named in PRESCORE_TEST_SKIP (comma-separated): a test
 * that a proven driver defect fails on one implementation is skipped there by
 * name (.ci/run, evidence in docs/DEVICES.md). Prints why. */
int ts_skip_by_name(const char *test);

/* Exit code that makes meson report a skipped test. */
#define TS_EXIT_SKIP 77

#endif
