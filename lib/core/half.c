/* binary16 <-> binary32 by bit manipulation (lib/core/half.h). */
#include "half.h"

#include <string.h>

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float ps_half_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* Inf or NaN: keep the payload's top bits */
        return float_of(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in binary32 */
        const float mag = (float)man * float_of(0x33800000u); /* 2^-24 */
        return sign ? -mag : mag;
    }
    return float_of(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t ps_float_to_half(float f)
{
    const uint32_t u = bits_of(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t exp = (u >> 23) & 0xffu;
    uint32_t man = u & 0x7fffffu;
    if (exp == 0xff) /* Inf, or NaN kept quiet and non-zero */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0u));
    const int e = (int)exp - 127 + 15; /* the half's biased exponent */
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* subnormal half (or zero): shift the implicit bit in */
        if (e < -10)
            return sign; /* below half the smallest subnormal: rounds to zero */
        man |= 0x800000u;
        const unsigned shift = (unsigned)(14 - e);
        const uint32_t rest = man & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
        uint32_t h = man >> shift;
        if (rest > halfway || (rest == halfway && (h & 1u)))
            h++; /* may carry into the smallest normal: still the right bits */
        return (uint16_t)(sign | h);
    }
    const uint32_t rest = man & 0x1fffu;
    uint32_t h = ((uint32_t)e << 10) | (man >> 13);
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is right, up to Inf */
    return (uint16_t)(sign | h);
}
