/* Small layout kernels shared by the stages. */

/* K [heads][n][d] -> Kt [heads][n_pad / 16][d][16]: for each tile of 16 keys
 * its d columns of 16 consecutive keys, zero in the padding, so the
 * CPU-shaped attention kernel reads one key dimension of a tile as a single
 * float16 and a whole tile from 4*16*d contiguous bytes. (A plain [d][n]
 * transpose put a tile's rows n*4 bytes apart: with n a power of two they all
 * fell into one L1 set and one TLB page each.) Global size: (n_pad, d, heads). */
__kernel void transpose_keys(__global const float *restrict k, __global float *restrict kt,
                             const int n, const int n_pad, const int d)
{
    const int j = get_global_id(0);
    const int c = get_global_id(1);
    const size_t h = get_global_id(2);
    if (j >= n_pad || c >= d)
        return;
    const float value = j < n ? k[(h * n + j) * d + c] : 0.0f;
    kt[h * (size_t)d * n_pad + ((size_t)(j / 16) * d + c) * 16 + j % 16] = value;
}

/* The library's Philox stream on the device, for checking it against the
 * host: draw i of (seed, stage, batch_head) as four words, and the same words
 * as uniform floats. Global size: count. */
__kernel void philox_fill(__global uint *restrict words, __global float *restrict uniforms,
                          const ulong seed, const uint stage, const uint batch_head,
                          const uint count)
{
    const uint i = get_global_id(0);
    if (i >= count)
        return;
    const ps_philox_u4 r = ps_philox_draw(seed, stage, batch_head, i);
    for (int w = 0; w < 4; w++) {
        words[4 * i + w] = r.v[w];
        uniforms[4 * i + w] = ps_philox_uniform(r.v[w]);
    }
}

/* Row copy between two [heads][rows][width] tensors of different row counts
 * (the causal recursion's gathers and scatters): row src_row0 + i of every
 * head of src goes to row dst_row0 + i of dst, for i < count.
 * Global size: (count, heads). */
__kernel void copy_rows(__global const float *restrict src, __global float *restrict dst,
                        const int src_rows, const int src_row0, const int dst_rows,
                        const int dst_row0, const int count, const int width)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= count)
        return;
    __global const float *s = src + (h * src_rows + src_row0 + i) * (size_t)width;
    __global float *t = dst + (h * dst_rows + dst_row0 + i) * (size_t)width;
    for (int c = 0; c < width; c++)
        t[c] = s[c];
}

/* Log-sum-exp merge of a partial attention result (o2 [heads][count][dv],
 * lse2 [heads][count], natural log) into rows row0 .. row0 + count - 1 of
 * (o [heads][rows][dv], lse [heads][rows]), both over disjoint key sets:
 *   lse = log(e^lse1 + e^lse2),  o = (e^lse1 o1 + e^lse2 o2) / e^lse.
 * Both LSE values are finite here (every row sees at least one key of each
 * part). Global size: (count, heads). */
__kernel void merge_rows(__global float *restrict o, __global float *restrict lse,
                         __global const float *restrict o2,
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
    __global float *a = o + r1 * dv;
    __global const float *b = o2 + r2 * dv;
    for (int c = 0; c < dv; c++)
        a[c] = (w1 * a[c] + w2 * b[c]) * inv;
    lse[r1] = m + log(w1 + w2);
}
