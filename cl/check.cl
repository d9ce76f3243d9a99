/* Input checks. Built with -cl-fast-relaxed-math, where isnan/isinf may be
 * folded away, so non-finite values are found from their bits: an exponent
 * field of all ones is Inf or NaN. */

/* Sets flags[slot] when any of the n floats (read as uint) is Inf or NaN.
 * Any global size; each work-item strides over the array. */
__kernel void find_nonfinite(__global const uint *restrict x, const ulong n,
                             __global int *restrict flags, const int slot)
{
    const size_t stride = get_global_size(0);
    int found = 0;
    for (size_t i = get_global_id(0); i < n; i += stride)
        found |= (x[i] & 0x7f800000u) == 0x7f800000u;
    if (found)
        atomic_or(flags + slot, 1);
}
