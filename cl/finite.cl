/* Input and output checks. Built with -cl-fast-relaxed-math, where isnan/isinf
 * may be folded away, so non-finite values are found from their bits: an
 * exponent field of all ones is Inf or NaN. */

/* Modes of find_nonfinite. */
#define PS_FINITE_ALL 0 /* any Inf or NaN (inputs, O) */
#define PS_FINITE_LSE 1 /* NaN or +Inf: -Inf is the LSE of a row that sees no key */

/* Sets flags[slot] when any of the n floats (read as uint) is non-finite in
 * the sense of `mode`. Any global size; each work-item strides over the array. */
__kernel void find_nonfinite(__global const uint *restrict x, const ulong n,
                             __global int *restrict flags, const int slot, const int mode)
{
    const size_t stride = get_global_size(0);
    const uint allowed = mode == PS_FINITE_LSE ? 0xff800000u : 0u; /* -Inf, or none */
    int found = 0;
    for (size_t i = get_global_id(0); i < n; i += stride) {
        const uint u = x[i];
        found |= (u & 0x7f800000u) == 0x7f800000u && u != allowed;
    }
    if (found)
        atomic_or(flags + slot, 1);
}
