/* Small kernels of no one stage: the CPU shape's key transpose, the Philox
 * check and the driver probes (lib/kernel_fit.c). */

/* K [heads][n][d] (view kv) -> Kt [heads][n_pad / 16][d][16] (dense, in
 * K's storage type: fp16 stays fp16, exactly): for each tile of 16 keys its
 * d columns of 16 consecutive keys, zero in the padding, so the CPU-shaped
 * attention kernel reads one key dimension of a tile as a single float16 and
 * a whole tile from 16*d contiguous elements. (A plain [d][n] transpose put a
 * tile's rows n elements apart: with n a power of two they all fell into one
 * L1 set and one TLB page each.) Global size: (n_pad, d, heads). */
__kernel void transpose_keys(__global const void *restrict k, const ps_view kv,
                             __global void *restrict kt, const int n, const int n_pad,
                             const int d)
{
    const int j = get_global_id(0);
    const int c = get_global_id(1);
    const size_t h = get_global_id(2);
    if (j >= n_pad || c >= d)
        return;
    const float value = j < n ? ps_ld(k, kv, ps_row(kv, h, j) + c) : 0.0f;
    const ps_view ktv = ps_view_flat(kv.f16);
    ps_st(kt, ktv, h * (size_t)d * n_pad + ((size_t)(j / 16) * d + c) * 16 + j % 16, value);
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

/* Never launched: declares PS_LOCAL_PROBE_WORDS words of __local memory so
 * that the host can compare the driver's CL_KERNEL_LOCAL_MEM_SIZE with what
 * a kernel declares (lib/kernel_fit.c; Mesa 22.3 rusticl reports twice). */
#define PS_LOCAL_PROBE_WORDS 256
__kernel void local_probe(__global uint *restrict out)
{
    __local uint words[PS_LOCAL_PROBE_WORDS];
    const int lid = get_local_id(0);
    words[lid % PS_LOCAL_PROBE_WORDS] = (uint)lid;
    barrier(CLK_LOCAL_MEM_FENCE);
    out[get_global_id(0)] = words[(lid + 1) % PS_LOCAL_PROBE_WORDS];
}

/* Loop-budget probe (lib/kernel_fit.c; lib/exact.c splits its key loop by
 * the result): some drivers (Mesa gallivm: llvmpipe under rusticl or clover)
 * end every loop of a work-item once the work-item has taken 65535 loop
 * back-edges in total, silently. One work-item counts the
 * iterations of a data-dependent loop of n steps; a count below n is the
 * budget. */
__kernel void loop_budget_probe(__global const uint *restrict in, __global uint *restrict out,
                                const uint n)
{
    uint count = 0, h = 0;
    for (uint i = 0; i < n; i++) {
        h = h * 31u + in[i & 15u];
        count++;
    }
    out[0] = count;
    out[1] = h;
}
