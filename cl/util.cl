/* Small layout kernels shared by the stages. */

/* K [heads][n][d] -> Kt [heads][d][n_pad], zero in the padding columns, so the
 * CPU-shaped attention kernel reads 16 consecutive keys of one dimension as a
 * single float16. Global size: (n_pad, d, heads). */
__kernel void transpose_keys(__global const float *restrict k, __global float *restrict kt,
                             const int n, const int n_pad, const int d)
{
    const int j = get_global_id(0);
    const int c = get_global_id(1);
    const size_t h = get_global_id(2);
    if (j >= n_pad || c >= d)
        return;
    const float value = j < n ? k[(h * n + j) * d + c] : 0.0f;
    kt[(h * d + c) * n_pad + j] = value;
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
