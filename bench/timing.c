/* Monotonic clock and median/min/max of repeated timings. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "timing.h"

#include <math.h>
#include <time.h>

double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

bench_stats bench_stats_of(double *samples, size_t count)
{
    bench_stats s = {0.0, 0.0, 0.0};
    size_t i, j;

    if (count == 0)
        return s;
    /* Insertion sort: repeat counts are small. */
    for (i = 1; i < count; ++i) {
        double x = samples[i];
        for (j = i; j > 0 && samples[j - 1] > x; --j)
            samples[j] = samples[j - 1];
        samples[j] = x;
    }
    s.min_ms = samples[0];
    s.max_ms = samples[count - 1];
    if (count % 2)
        s.median_ms = samples[count / 2];
    else
        s.median_ms = 0.5 * (samples[count / 2 - 1] + samples[count / 2]);
    return s;
}

double bench_quantile(const double *sorted, size_t count, double q)
{
    double rank = ceil(q * (double)count);

    if (count == 0)
        return 0.0;
    if (rank < 1.0)
        rank = 1.0;
    return sorted[(size_t)rank <= count ? (size_t)rank - 1 : count - 1];
}
