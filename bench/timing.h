/* Monotonic wall-clock time and the summary statistics every figure of
 * prescore-bench is reported with (median, min, max over repeated runs). */
#ifndef PRESCORE_BENCH_TIMING_H
#define PRESCORE_BENCH_TIMING_H

#include <stddef.h>

/** @return milliseconds on CLOCK_MONOTONIC (arbitrary origin). */
double bench_now_ms(void);

typedef struct bench_stats {
    double median_ms;
    double min_ms;
    double max_ms;
} bench_stats;

/** Summarises @p count samples (count >= 1). Sorts @p samples in place.
 * The median of an even count is the mean of the two middle samples. */
bench_stats bench_stats_of(double *samples, size_t count);

/** The nearest-rank @p q quantile (0 < q <= 1) of @p count sorted samples
 * (bench_stats_of sorts them): sorted[ceil(q * count) - 1]; 0 for none. */
double bench_quantile(const double *sorted, size_t count, double q);

#endif
