/* Global keys (docs/GLOBAL.md; host: lib/global.c), between pipeline steps 3
 * and 4. Per KV head h, the candidates are the n_cand keys the approximate
 * part would see (all keys for HYPER, the kept keys for PRESCORE, in
 * ascending position). The g best candidates by the global score (higher
 * first, ties to the lower candidate index; NaN lowest, as
 * lib/core/select_params.h) become global: attended exactly by every query
 * (the exact kernel, then merge_rows of cl/merge.cl); the other n_cand - g go
 * to the hyper stage, compacted in their original order. */

/* Order-preserving key of a score (select_common.h, the selection's order). */
static inline uint ps_global_key(float score) { return ps_select_key(as_uint(score)); }

/* gs[h][j], the global score of candidate j of head h:
 * mode 0: scores[h][idx[h][j]] (scores [heads][n_scores], idx [heads][n_cand]);
 * mode 1: the squared norm of row j of kc [heads][n_cand][d] (a view).
 * Global size: (n_cand, heads). */
__kernel void global_scores(__global const float *restrict scores,
                            __global const uint *restrict idx,
                            __global const void *restrict kc, const ps_view kcv,
                            __global float *restrict gs, const int n_scores, const int n_cand,
                            const int d, const int mode)
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
        const size_t row = ps_row(kcv, h, j);
        for (int c = 0; c < d; c++) {
            const float x = ps_ld(kc, kcv, row + c);
            s = fma(x, x, s);
        }
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

/* Splits the candidate rows of kc [heads][n_cand][d], vc [..][dv] (views):
 * global candidate gsel[h][c] goes to row c of kg/vg [heads][g][d|dv], any
 * other candidate j to row j - (globals below j) of kr/vr [heads][n_cand -
 * g][..], dense and in kc's and vc's storage types (exact copies). With
 * weighted candidates (weighted != 0), the log-weights wc [heads][n_cand] of
 * the others go to wr [heads][n_cand - g] the same way (a weighted
 * selection's global keys all weigh 1: docs/GLOBAL.md).
 * Global size: (n_cand, heads). */
__kernel void global_split(__global const void *restrict kc, const ps_view kcv,
                           __global const void *restrict vc, const ps_view vcv,
                           __global const uint *restrict gsel, __global void *restrict kg,
                           __global void *restrict vg, __global void *restrict kr,
                           __global void *restrict vr, __global const float *restrict wc,
                           __global float *restrict wr, const int weighted, const int n_cand,
                           const int g, const int d, const int dv)
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
    __global void *tk = is_global ? kg : kr, *tv = is_global ? vg : vr;
    const ps_view tkv = ps_view_flat(kcv.f16), tvv = ps_view_flat(vcv.f16);
    const size_t sk = ps_row(kcv, h, j), sv = ps_row(vcv, h, j);
    if (weighted && !is_global)
        wr[h * rows + row] = wc[h * (size_t)n_cand + j];
    for (int c = 0; c < d; c += 4)
        ps_st4(tk, tkv, (h * rows + row) * d + c, ps_ld4(kc, kcv, sk + c));
    for (int c = 0; c < dv; c += 4)
        ps_st4(tv, tvv, (h * rows + row) * dv + c, ps_ld4(vc, vcv, sv + c));
}
