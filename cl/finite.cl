/* Input and output checks. Built with -cl-fast-relaxed-math, where isnan/isinf
 * may be folded away, so non-finite values are found from their bits: an
 * exponent field of all ones is Inf or NaN. */

/* Modes of find_nonfinite. */
#define PS_FINITE_ALL 0 /* any Inf or NaN (inputs, O) */
#define PS_FINITE_LSE 1 /* NaN or +Inf: -Inf is the LSE of a row that sees no key */

/* Sets flags[slot] when any element of the tensor x (view xv: `heads` flat
 * heads of `rows` rows of `dim` elements) is non-finite in the sense of
 * `mode` (PS_FINITE_LSE: fp32 only). Any global size; each work-item strides
 * over the elements. */
__kernel void find_nonfinite(__global const void *restrict x, const ps_view xv,
                             const uint heads, const uint rows, const uint dim,
                             __global int *restrict flags, const int slot, const int mode)
{
    const size_t stride = get_global_size(0);
    const size_t n = (size_t)heads * rows * dim;
    const uint allowed = mode == PS_FINITE_LSE ? 0xff800000u : 0u; /* -Inf, or none */
    int found = 0;
    for (size_t e = get_global_id(0); e < n; e += stride) {
        const size_t row = e / dim;
        const size_t i = ps_row(xv, row / rows, row % rows) + e % dim;
        if (xv.f16) {
            const uint u = ((__global const ushort *)x)[i];
            found |= (u & 0x7c00u) == 0x7c00u;
        } else {
            const uint u = ((__global const uint *)x)[i];
            found |= (u & 0x7f800000u) == 0x7f800000u && u != allowed;
        }
    }
    if (found)
        atomic_or(flags + slot, 1);
}
