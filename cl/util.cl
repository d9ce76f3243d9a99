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

/* ---- Global keys (docs/GLOBAL.md) ----------------------------------------
 * Per KV head h, the candidates are the n_cand keys the approximate part
 * would see (all keys for HYPER, the kept keys for PRESCORE, in ascending
 * position). The g best candidates by the global score (higher first, ties
 * to the lower candidate index; NaN lowest, as lib/core/select_params.h) become global:
 * attended exactly by every query; the other n_cand - g go to the hyper
 * stage, compacted in their original order. */

/* Order-preserving key of a score (select_common.h, the selection's order). */
static inline uint ps_global_key(float score) { return ps_select_key(as_uint(score)); }

/* gs[h][j], the global score of candidate j of head h:
 * mode 0: scores[h][idx[h][j]] (scores [heads][n_scores], idx [heads][n_cand]);
 * mode 1: the squared norm of row j of kc [heads][n_cand][d].
 * Global size: (n_cand, heads). */
__kernel void global_scores(__global const float *restrict scores,
                            __global const uint *restrict idx,
                            __global const float *restrict kc, __global float *restrict gs,
                            const int n_scores, const int n_cand, const int d, const int mode)
{
    const int j = get_global_id(0);
    const size_t h = get_global_id(1);
    if (j >= n_cand)
        return;
    float s = 0.0f;
    if (mode == 0) {
        const uint i = idx[h * n_cand + j];
        s = i < (uint)n_scores ? scores[h * n_scores + i] : 0.0f;
    } else {
        __global const float *row = kc + (h * n_cand + j) * (size_t)d;
        for (int c = 0; c < d; c++)
            s = fma(row[c], row[c], s);
    }
    gs[h * n_cand + j] = s;
}

/* gsel[h][0..g): the g best candidates of head h, in ascending candidate
 * order. A work-group per head, g rounds (O(g n_cand / group) per item):
 * round t takes the best candidate ranked below round t - 1's, each item
 * scanning a strided share and a __local max-reduction combining them.
 * Global size: heads * local, local a power of two; best is __local [local]. */
__kernel void global_pick(__global const float *restrict gs, __global uint *restrict gsel,
                          const int n_cand, const int g, __local ulong *best)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    const size_t h = get_group_id(0);
    __global const float *s = gs + h * n_cand;
    __global uint *out = gsel + h * g;
    ulong prev = ~(ulong)0; /* above every rank: keys never reach 0xffffffff */
    for (int t = 0; t < g; t++) {
        ulong mine = 0;
        for (int j = lid; j < n_cand; j += ls) {
            const ulong r = ((ulong)ps_global_key(s[j]) << 32) | (ulong)(0xffffffffu - (uint)j);
            if (r < prev && r > mine)
                mine = r;
        }
        best[lid] = mine;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int stride = ls / 2; stride > 0; stride /= 2) {
            if (lid < stride)
                best[lid] = max(best[lid], best[lid + stride]);
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        prev = best[0];
        barrier(CLK_LOCAL_MEM_FENCE); /* best[0] read by all before the next round */
        if (lid == 0) {
            const uint arg = prev ? 0xffffffffu - (uint)prev : 0u;
            int p = t; /* insertion into the ascending list */
            while (p > 0 && out[p - 1] > arg) {
                out[p] = out[p - 1];
                p--;
            }
            out[p] = arg;
        }
    }
}

/* Splits the candidate rows of kc [heads][n_cand][d], vc [..][dv]: global
 * candidate gsel[h][c] goes to row c of kg/vg [heads][g][d|dv], any other
 * candidate j to row j - (globals below j) of kr/vr [heads][n_cand - g][..].
 * Global size: (n_cand, heads). */
__kernel void global_split(__global const float *restrict kc, __global const float *restrict vc,
                           __global const uint *restrict gsel, __global float *restrict kg,
                           __global float *restrict vg, __global float *restrict kr,
                           __global float *restrict vr, const int n_cand, const int g,
                           const int d, const int dv)
{
    const int j = get_global_id(0);
    const size_t h = get_global_id(1);
    if (j >= n_cand)
        return;
    __global const uint *sel = gsel + h * g;
    int lo = 0, hi = g; /* number of globals below j */
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (sel[mid] < (uint)j)
            lo = mid + 1;
        else
            hi = mid;
    }
    const int is_global = lo < g && sel[lo] == (uint)j;
    const size_t rows = is_global ? (size_t)g : (size_t)(n_cand - g);
    const size_t row = is_global ? (size_t)lo : (size_t)(j - lo);
    __global float *tk = (is_global ? kg : kr) + (h * rows + row) * d;
    __global float *tv = (is_global ? vg : vr) + (h * rows + row) * dv;
    __global const float *sk = kc + (h * n_cand + j) * (size_t)d;
    __global const float *sv = vc + (h * n_cand + j) * (size_t)dv;
    for (int c = 0; c < d; c++)
        tk[c] = sk[c];
    for (int c = 0; c < dv; c++)
        tv[c] = sv[c];
}

/* Rows that see no key (causal, n_q > n_k, bottom-right aligned): O = 0 and
 * LSE = -inf (as the exact kernel writes them) for rows [0, count) of every
 * head of o [heads][rows][dv], lse [heads][rows]. Global size: (count, heads). */
__kernel void empty_rows(__global float *restrict o, __global float *restrict lse,
                         const int rows, const int count, const int dv)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= count)
        return;
    __global float *a = o + (h * rows + i) * (size_t)dv;
    for (int c = 0; c < dv; c++)
        a[c] = 0.0f;
    lse[h * rows + i] = -INFINITY;
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
