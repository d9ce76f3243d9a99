/* Size arithmetic of launch geometry and buffer padding, pure C. */
#ifndef PRESCORE_CORE_SIZE_MATH_H
#define PRESCORE_CORE_SIZE_MATH_H

#include <stddef.h>
#include <stdint.h>

/* ceil(a / b), b > 0 (callers keep a + b - 1 far from SIZE_MAX: sizes are
 * validated below 2^30 tokens and 2^30 heads). */
static inline size_t ps_div_up(size_t a, size_t b) { return (a + b - 1) / b; }

/* The smallest multiple of m that is >= v, m > 0. */
static inline size_t ps_round_up(size_t v, size_t m) { return ps_div_up(v, m) * m; }

/* The largest power of two <= v (1 for v < 2), capped at 2^30: work-group
 * sizes and tile counts. */
static inline unsigned ps_pow2_floor(uint64_t v)
{
    unsigned p = 1;
    while ((uint64_t)p * 2 <= v && p < (1u << 30))
        p *= 2;
    return p;
}

#endif
