/* The causal recursion's row kernels and the log-sum-exp merge of two
 * attention results over disjoint key sets (host: lib/merge.c; used by the
 * causal recursion, lib/causal.c, and the global keys, lib/global.c). */

/* Row copy between two [heads][rows][width] tensors of different row counts
 * (the causal recursion's gathers and scatters), both views (any storage
 * type: values are widened and rounded as tensor_view.h does): row
 * src_row0 + i of every head of src goes to row dst_row0 + i of dst, for
 * i < count. Global size: (count, heads). */
__kernel void copy_rows(__global const void *restrict src, const ps_view sv,
                        __global void *restrict dst, const ps_view dv, const int src_row0,
                        const int dst_row0, const int count, const int width)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= count)
        return;
    const size_t s = ps_row(sv, h, src_row0 + i), t = ps_row(dv, h, dst_row0 + i);
    for (int c = 0; c < width; c++)
        ps_st(dst, dv, t + c, ps_ld(src, sv, s + c));
}

/* Log-sum-exp merge of a partial attention result (o2 [heads][count][dv], a view,
 * lse2 [heads][count], natural log) into rows row0 .. row0 + count - 1 of
 * (o [heads][rows][dv], a view; lse [heads][rows]), both over disjoint key sets:
 *   lse = log(e^lse1 + e^lse2),  o = (e^lse1 o1 + e^lse2 o2) / e^lse.
 * Both LSE values are finite here (every row sees at least one key of each
 * part). Global size: (count, heads). */
__kernel void merge_rows(__global void *restrict o, const ps_view ov,
                         __global float *restrict lse,
                         __global const void *restrict o2, const ps_view o2v,
                         __global const float *restrict lse2, const int rows,
                         const int row0, const int count, const int dv)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= count)
        return;
    const size_t r1 = h * rows + row0 + i, r2 = h * count + i;
    const float l1 = lse[r1], l2 = lse2[r2];
    const float m = fmax(l1, l2);
    const float w1 = exp(l1 - m), w2 = exp(l2 - m);
    const float inv = 1.0f / (w1 + w2);
    const size_t a = ps_row(ov, h, row0 + i);
    const size_t b = ps_row(o2v, h, i);
    for (int c = 0; c < dv; c += 4) /* dv is a multiple of 16 */
        ps_st4(o, ov, a + c, (w1 * ps_ld4(o, ov, a + c) + w2 * ps_ld4(o2, o2v, b + c)) * inv);
    lse[r1] = m + log(w1 + w2);
}

/* Rows that see no key (causal, n_q > n_k, bottom-right aligned): O = 0 and
 * LSE = -inf (as the exact kernel writes them) for rows [0, count) of every
 * head of o [heads][rows][dv], lse [heads][rows]. Global size: (count, heads). */
__kernel void empty_rows(__global void *restrict o, const ps_view ov,
                         __global float *restrict lse,
                         const int rows, const int count, const int dv)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= count)
        return;
    const size_t a = ps_row(ov, h, i);
    for (int c = 0; c < dv; c++)
        ps_st(o, ov, a + c, 0.0f);
    lse[h * rows + i] = -INFINITY;
}
