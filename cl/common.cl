/* Shared prelude of every program (after philox.h): constants and helpers.
 * Built with -cl-fast-relaxed-math, which assumes finite math, so masks use a
 * large finite negative logit instead of -INFINITY. */

/* Masked logit (log2 domain). exp2(PS_NEG_BIG - m) is 0 for any real m. */
#define PS_NEG_BIG (-1.0e30f)

#ifndef PS_DMAX
#define PS_DMAX 128
#endif

/* Horizontal reductions of a float16. */
inline float ps_hmax16(float16 v)
{
    float8 a = fmax(v.lo, v.hi);
    float4 b = fmax(a.lo, a.hi);
    float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

inline float ps_hsum16(float16 v)
{
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
    float2 c = b.lo + b.hi;
    return c.x + c.y;
}
