/* Decode against a key cache (lib/decode.c, lib/kv_index.c; docs/API.md
 * "Decode"): a few queries, the last positions of the sequence, against
 * every cached key or against the sinks, kept keys and window.
 *
 * Split-K (flash-decoding): a query's keys are cut into `splits` ranges of
 * split_keys virtual keys (cl/attention_params.h, ps_decode_params); each
 * range yields an unnormalised partial output with its running maximum and
 * sum (log2 domain), and decode_merge combines the ranges in log-sum-exp
 * space. The query rows of one KV head (its group of query heads times the
 * call's queries) share every key they load:
 *
 *  decode_partial_cpu: a work-item owns PS_CPU_QB rows and one range, walks
 *    it in tiles of 16 keys with float16 arithmetic; no __local, no barriers.
 *  decode_partial_gpu: a work-group owns row_block rows and one range; per
 *    tile of one key per work-item, each work-item scores its key for every
 *    row, the row's work-item updates its maximum and sum, and every
 *    work-item accumulates its share of the row_block * dv outputs (adjacent
 *    work-items read adjacent V elements).
 *
 * The key cache's index kernels follow: scoring appended keys against the
 * statistics of the last full scoring, admitting keys that leave the window
 * into the kept set, and filling the kept set from a full selection. */

#ifndef PS_GPU_SHAPE
#error "PS_GPU_SHAPE undefined: program_shaped[] of lib/program.c must list this file"
#endif

/* PS_DEC_ROWS, PS_DEC_OUT, PS_DEC_TILE: cl/tiles.h, shared with lib/decode.c. */

/* Where virtual key j of flat KV head bhk lies (see ps_decode_params): in the
 * kept copy or the cache, its row's first K and V elements, its position. */
typedef struct ps_dec_key {
    size_t k_el, v_el;
    int kept, pos;
} ps_dec_key;

static inline ps_dec_key ps_dec_locate(const ps_decode_params p, const ps_view kcv,
                                       const ps_view vcv, const ps_view kkv,
                                       const ps_view vkv, __global const uint *kept_pos,
                                       const size_t bhk, const int j)
{
    ps_dec_key r;
    int row = j;
    r.kept = 0;
    if (j >= p.sink_len + p.kept) {
        row = p.win_start + (j - p.sink_len - p.kept);
    } else if (j >= p.sink_len) {
        row = j - p.sink_len;
        r.kept = 1;
    }
    r.pos = r.kept ? (int)kept_pos[bhk * p.kept_rows + row] : row;
    r.k_el = r.kept ? ps_row(kkv, bhk, row) : ps_row(kcv, bhk, row);
    r.v_el = r.kept ? ps_row(vkv, bhk, row) : ps_row(vcv, bhk, row);
    return r;
}

/* Query row r of KV head bhk: its flat query head and query index. */
static inline size_t ps_dec_query_head(const ps_decode_params p, const size_t bhk, const int r)
{
    const size_t kv_heads = (size_t)(p.heads / p.group);
    return (bhk / kv_heads) * p.heads + (bhk % kv_heads) * p.group + r / p.n_q;
}

/* Last position query row r sees: query i is position length - n_q + i. */
static inline int ps_dec_limit(const ps_decode_params p, const int r)
{
    return p.length - p.n_q + r % p.n_q;
}

#if !PS_GPU_SHAPE /* CPU shape */
/* One work-item's range of keys for `rows` (a compile-time constant of each
 * kernel below: the loops unroll and the accumulators stay in registers)
 * query rows from r0. */
static inline void ps_dec_partial_cpu(__global const void *restrict q, const ps_view qv,
                                      __global const void *restrict kc, const ps_view kcv,
                                      __global const void *restrict vc, const ps_view vcv,
                                      __global const void *restrict kk, const ps_view kkv,
                                      __global const void *restrict vk, const ps_view vkv,
                                      __global const uint *restrict kept_pos,
                                      __global float *restrict part_o,
                                      __global float2 *restrict part_ml,
                                      const ps_decode_params p, const int rows)
{
    const int split = get_global_id(0);
    const int r0 = get_global_id(1) * rows;
    const size_t bhk = get_global_id(2);
    if (split >= p.splits || r0 >= p.rows)
        return;
    const int nr = min(rows, p.rows - r0);
    float qp[PS_CPU_QB * PS_DMAX], acc[PS_CPU_QB * PS_DMAX];
    float m[PS_CPU_QB], l[PS_CPU_QB], alpha[PS_CPU_QB], pt[PS_CPU_QB * PS_KTILE_CPU];
    float sc[PS_CPU_QB * PS_KTILE_CPU];
    int lim[PS_CPU_QB];
    size_t vrow[PS_KTILE_CPU];
    int vkept[PS_KTILE_CPU];
    for (int i = 0; i < rows; i++) {
        const int r = r0 + min(i, nr - 1); /* clamp: stay in bounds */
        const size_t qrow = ps_row(qv, ps_dec_query_head(p, bhk, r), r % p.n_q);
        for (int c = 0; c < p.d; c += 16)
            vstore16(ps_ld16(q, qv, qrow + c) * p.scale_log2, 0, qp + i * PS_DMAX + c);
        lim[i] = ps_dec_limit(p, r);
        m[i] = PS_M_INIT;
        l[i] = 0.0f;
    }
    for (int i = 0; i < rows * PS_DMAX; i++)
        acc[i] = 0.0f;

    const int j_begin = split * p.split_keys;
    const int j_end = min(p.total, j_begin + p.split_keys);
    for (int j0 = j_begin; j0 < j_end; j0 += PS_KTILE_CPU) {
        const int tile = min(PS_KTILE_CPU, j_end - j0);
        for (int t = 0; t < PS_KTILE_CPU; t++) {
            const ps_dec_key key =
                ps_dec_locate(p, kcv, vcv, kkv, vkv, kept_pos, bhk, j0 + min(t, tile - 1));
            vrow[t] = key.v_el;
            vkept[t] = key.kept;
            float16 s[PS_CPU_QB];
            #pragma unroll
            for (int i = 0; i < rows; i++)
                s[i] = (float16)(0.0f);
            for (int c = 0; c < p.d; c += 16) {
                const float16 k16 = key.kept ? ps_ld16(kk, kkv, key.k_el + c)
                                             : ps_ld16(kc, kcv, key.k_el + c);
                #pragma unroll
                for (int i = 0; i < rows; i++)
                    s[i] = fma(vload16(0, qp + i * PS_DMAX + c), k16, s[i]);
            }
            #pragma unroll
            for (int i = 0; i < rows; i++)
                sc[i * PS_KTILE_CPU + t] =
                    t < tile && key.pos <= lim[i] ? ps_hsum16(s[i]) : PS_NEG_BIG;
        }
        #pragma unroll
        for (int i = 0; i < rows; i++)
            alpha[i] = ps_cpu_tile_softmax(vload16(0, sc + i * PS_KTILE_CPU), &m[i], &l[i],
                                           pt + i * PS_KTILE_CPU);
        for (int c = 0; c < p.dv; c += 16) {
            float16 a[PS_CPU_QB];
            #pragma unroll
            for (int i = 0; i < rows; i++)
                a[i] = vload16(0, acc + i * PS_DMAX + c) * alpha[i];
            for (int t = 0; t < tile; t++) {
                const float16 v16 = vkept[t] ? ps_ld16(vk, vkv, vrow[t] + c)
                                             : ps_ld16(vc, vcv, vrow[t] + c);
                #pragma unroll
                for (int i = 0; i < rows; i++)
                    a[i] = fma((float16)(pt[i * PS_KTILE_CPU + t]), v16, a[i]);
            }
            #pragma unroll
            for (int i = 0; i < rows; i++)
                vstore16(a[i], 0, acc + i * PS_DMAX + c);
        }
    }
    for (int i = 0; i < nr; i++) {
        const size_t idx = ((bhk * p.rows + r0 + i) * p.splits + split);
        part_ml[idx] = (float2)(m[i], l[i]);
        for (int c = 0; c < p.dv; c += 16)
            vstore16(vload16(0, acc + i * PS_DMAX + c), 0, part_o + idx * p.dv + c);
    }
}

/* The row-block variants: lib/decode.c launches the smallest that holds a KV
 * head's query rows (a single query against 8 KV heads wants 1, not
 * PS_CPU_QB rows of which 7 would be computed for nothing). Spelled out, not
 * generated by a macro: the program cache checks every kernel the source
 * names (lib/program.c has_every_kernel). */
#define PS_DEC_PARTIAL_ARGS                                                               \
    __global const void *restrict q, const ps_view qv, __global const void *restrict kc,  \
        const ps_view kcv, __global const void *restrict vc, const ps_view vcv,           \
        __global const void *restrict kk, const ps_view kkv,                              \
        __global const void *restrict vk, const ps_view vkv,                              \
        __global const uint *restrict kept_pos, __global float *restrict part_o,          \
        __global float2 *restrict part_ml, const ps_decode_params p
#define PS_DEC_PARTIAL_CALL(rows)                                                         \
    ps_dec_partial_cpu(q, qv, kc, kcv, vc, vcv, kk, kkv, vk, vkv, kept_pos, part_o, part_ml, \
                       p, rows)

__kernel void decode_partial_cpu(PS_DEC_PARTIAL_ARGS) { PS_DEC_PARTIAL_CALL(PS_CPU_QB); }
__kernel void decode_partial_r1_cpu(PS_DEC_PARTIAL_ARGS) { PS_DEC_PARTIAL_CALL(1); }
__kernel void decode_partial_r2_cpu(PS_DEC_PARTIAL_ARGS) { PS_DEC_PARTIAL_CALL(min(2, PS_CPU_QB)); }
__kernel void decode_partial_r4_cpu(PS_DEC_PARTIAL_ARGS) { PS_DEC_PARTIAL_CALL(min(4, PS_CPU_QB)); }

#else /* GPU shape */
__kernel void decode_partial_gpu(__global const void *restrict q, const ps_view qv,
                                 __global const void *restrict kc, const ps_view kcv,
                                 __global const void *restrict vc, const ps_view vcv,
                                 __global const void *restrict kk, const ps_view kkv,
                                 __global const void *restrict vk, const ps_view vkv,
                                 __global const uint *restrict kept_pos,
                                 __global float *restrict part_o,
                                 __global float2 *restrict part_ml, const ps_decode_params p)
{
    __local float qs[PS_DEC_ROWS * PS_DMAX];
    __local float sc[PS_DEC_ROWS * PS_DEC_TILE];
    __local float row_m[PS_DEC_ROWS], row_l[PS_DEC_ROWS], row_alpha[PS_DEC_ROWS];
    __local uint voff[PS_DEC_TILE];
    __local int vsel[PS_DEC_TILE];
    const int lid = get_local_id(0);
    const int group_size = get_local_size(0);
    const int split = get_group_id(0);
    const int r0 = get_global_id(1) * p.row_block;
    const size_t bhk = get_global_id(2);
    const int nr = min(p.row_block, p.rows - r0); /* >= 1: the host sizes dimension 1 */

    for (int idx = lid; idx < nr * p.d; idx += group_size) {
        const int i = idx / p.d, c = idx % p.d, r = r0 + i;
        const size_t qrow = ps_row(qv, ps_dec_query_head(p, bhk, r), r % p.n_q);
        qs[i * PS_DMAX + c] = ps_ld(q, qv, qrow + c) * p.scale_log2;
    }
    if (lid < nr) {
        row_m[lid] = PS_M_INIT;
        row_l[lid] = 0.0f;
    }
    float acc[PS_DEC_OUT];
    for (int u = 0; u < PS_DEC_OUT; u++)
        acc[u] = 0.0f;
    const int nout = nr * p.dv;

    const int j_begin = split * p.split_keys;
    const int j_end = min(p.total, j_begin + p.split_keys);
    for (int j0 = j_begin; j0 < j_end; j0 += group_size) {
        const int tile = min(group_size, j_end - j0);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed; qs is written */
        if (lid < tile) {
            const ps_dec_key key = ps_dec_locate(p, kcv, vcv, kkv, vkv, kept_pos, bhk, j0 + lid);
            voff[lid] = (uint)key.v_el;
            vsel[lid] = key.kept;
            float s[PS_DEC_ROWS];
            for (int i = 0; i < PS_DEC_ROWS; i++)
                s[i] = 0.0f;
            for (int c = 0; c < p.d; c += 4) {
                const float4 k4 = key.kept ? ps_ld4(kk, kkv, key.k_el + c)
                                           : ps_ld4(kc, kcv, key.k_el + c);
                for (int i = 0; i < nr; i++)
                    s[i] += dot(vload4(0, qs + i * PS_DMAX + c), k4);
            }
            for (int i = 0; i < nr; i++)
                sc[i * PS_DEC_TILE + lid] =
                    key.pos <= ps_dec_limit(p, r0 + i) ? s[i] : PS_NEG_BIG;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < nr) { /* the row's online-softmax step over the tile */
            __local float *row = sc + lid * PS_DEC_TILE;
            float tile_max = PS_NEG_BIG;
            for (int t = 0; t < tile; t++)
                tile_max = fmax(tile_max, row[t]);
            const float m_new = fmax(row_m[lid], tile_max);
            float sum = 0.0f;
            for (int t = 0; t < tile; t++) {
                const float e = exp2(row[t] - m_new);
                row[t] = e;
                sum += e;
            }
            const float alpha = exp2(row_m[lid] - m_new);
            row_alpha[lid] = alpha;
            row_l[lid] = row_l[lid] * alpha + sum;
            row_m[lid] = m_new;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int u = 0; u < PS_DEC_OUT; u++) {
            const int idx = lid + u * group_size;
            if (idx >= nout)
                break;
            const int i = idx / p.dv, c = idx % p.dv;
            __local const float *w = sc + i * PS_DEC_TILE;
            float a = acc[u] * row_alpha[i];
            for (int t = 0; t < tile; t++)
                a = fma(w[t], vsel[t] ? ps_ld(vk, vkv, voff[t] + c) : ps_ld(vc, vcv, voff[t] + c),
                        a);
            acc[u] = a;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const size_t base = (bhk * p.rows + r0) * p.splits + split;
    for (int u = 0; u < PS_DEC_OUT; u++) {
        const int idx = lid + u * group_size;
        if (idx >= nout)
            break;
        const int i = idx / p.dv, c = idx % p.dv;
        part_o[(base + (size_t)i * p.splits) * p.dv + c] = acc[u];
    }
    if (lid < nr)
        part_ml[base + (size_t)lid * p.splits] = (float2)(row_m[lid], row_l[lid]);
}
#endif /* PS_GPU_SHAPE */

/* Merges the splits of query row r of KV head bhk in log-sum-exp space and
 * writes its output (view ov) and LSE (natural log; NULL: none). A row that
 * saw no key gets O = 0 and LSE = -inf. Global (rows, batch * kv_heads). */
__kernel void decode_merge(__global const float *restrict part_o,
                           __global const float2 *restrict part_ml, __global void *restrict o,
                           const ps_view ov, __global float *restrict lse,
                           const ps_decode_params p)
{
    const int r = get_global_id(0);
    const size_t bhk = get_global_id(1);
    if (r >= p.rows)
        return;
    const size_t base = (bhk * p.rows + r) * p.splits;
    float mx = PS_NEG_BIG;
    for (int s = 0; s < p.splits; s++) {
        const float2 ml = part_ml[base + s];
        if (ml.y > 0.0f)
            mx = fmax(mx, ml.x);
    }
    float acc[PS_DMAX];
    for (int c = 0; c < p.dv; c++)
        acc[c] = 0.0f;
    float total = 0.0f;
    for (int s = 0; s < p.splits; s++) {
        const float2 ml = part_ml[base + s];
        if (ml.y <= 0.0f)
            continue;
        const float w = exp2(ml.x - mx);
        total += w * ml.y;
        __global const float *po = part_o + (base + s) * p.dv;
        for (int c = 0; c < p.dv; c++)
            acc[c] = fma(w, po[c], acc[c]);
    }
    const size_t bh = ps_dec_query_head(p, bhk, r);
    const int i = r % p.n_q;
    const size_t orow = ps_row(ov, bh, i);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    for (int c = 0; c < p.dv; c++)
        ps_st(o, ov, orow + c, acc[c] * inv);
    if (lse)
        lse[bh * p.n_q + i] = total > 0.0f ? (mx + log2(total)) * M_LN2_F : -INFINITY;
}

/* ------------------------------------------------------------- the index */

/* Scores of cache rows [row0, row0 + count) of every KV head against the
 * statistics of the last full scoring (lib/score.h ps_score_statistics),
 * written to scores[bhk * cache_rows + row]: NORM as score_norm; NONE 1;
 * KMEANS the nearest centroid's ||c - mu||^2 plus the squared distance,
 * rounded as km_score_write; LEVERAGE ||minv^T k||^2 rounded as lev_apply.
 * Global (count, batch * kv_heads). */
__kernel void kv_score_rows(__global const void *restrict k, const ps_view kv,
                            __global float *restrict scores, const int row0, const int count,
                            const int cache_rows, const int d, const int method,
                            const int clusters, __global const float *restrict cent,
                            __global const float *restrict cterm,
                            __global const float *restrict minv)
{
    const int i = get_global_id(0);
    const size_t bhk = get_global_id(1);
    if (i >= count)
        return;
    const size_t row = ps_row(kv, bhk, row0 + i);
    float score = 1.0f;
    if (method == 2) { /* PS_SCORE_NORM */
        float16 acc = (float16)(0.0f);
        for (int t = 0; t < d; t += 16) {
            const float16 v = ps_ld16(k, kv, row + t);
            acc = fma(v, v, acc);
        }
        score = ps_hsum16(acc);
    } else if (method == 0) { /* PS_SCORE_KMEANS */
        float best = 0.0f;
        int best_j = 0;
        for (int j = 0; j < clusters; j++) {
            __global const float *cj = cent + (bhk * clusters + j) * d;
            float16 acc = (float16)(0.0f);
            for (int t = 0; t < d; t += 16) {
                const float16 diff = ps_ld16(k, kv, row + t) - vload16(0, cj + t);
                acc = fma(diff, diff, acc);
            }
            const float dist = ps_hsum16(acc);
            if (j == 0 || dist < best) {
                best = dist;
                best_j = j;
            }
        }
        score = ps_score_round(cterm[bhk * clusters + best_j] + best, PS_KMEANS_SCORE_BITS);
    } else if (method == 1) { /* PS_SCORE_LEVERAGE */
        __global const float *mt = minv + bhk * d * d;
        float sq = 0.0f;
        for (int b = 0; b < d; b++) {
            float y = 0.0f;
            for (int c = 0; c < d; c++)
                y = fma(ps_ld(k, kv, row + c), mt[c * d + b], y);
            sq = fma(y, y, sq);
        }
        score = ps_score_round(sq, PS_LEVERAGE_SCORE_BITS);
    }
    scores[bhk * cache_rows + row0 + i] = score;
}

/* Copies cache row `pos` of KV head bhk (K and V) into kept slot `slot`;
 * work-item `part` of `parts` copies every parts-th element. */
static inline void ps_kv_copy_row(__global const void *kc, const ps_view kcv,
                                  __global const void *vc, const ps_view vcv,
                                  __global void *kk, const ps_view kkv, __global void *vk,
                                  const ps_view vkv, const size_t bhk, const int pos,
                                  const int slot, const int d, const int dv, const int part,
                                  const int parts)
{
    const size_t ks = ps_row(kcv, bhk, pos), kd = ps_row(kkv, bhk, slot);
    const size_t vs = ps_row(vcv, bhk, pos), vd = ps_row(vkv, bhk, slot);
    for (int c = part; c < d; c += parts)
        ps_st(kk, kkv, kd + c, ps_ld(kc, kcv, ks + c));
    for (int c = part; c < dv; c += parts)
        ps_st(vk, vkv, vd + c, ps_ld(vc, vcv, vs + c));
}

/* Admits the keys at positions [first, first + count) (they have left the
 * window) into the kept set of each KV head, in position order
 * (lib/core/kv_params.h): while the set is below targets[t] the key is
 * added; else it replaces the weakest kept key (lowest score order, the
 * later position on a tie) if its score order is strictly higher. One
 * work-group per KV head; global (group, batch * kv_heads). */
__kernel void kv_admit(__global const void *restrict kc, const ps_view kcv,
                       __global const void *restrict vc, const ps_view vcv,
                       __global void *restrict kk, const ps_view kkv, __global void *restrict vk,
                       const ps_view vkv, __global const float *restrict scores,
                       __global uint *restrict kept_pos, __global uint *restrict kept_key,
                       __global uint *restrict kept_count, __global const uint *restrict targets,
                       const int first, const int count, const int cache_rows,
                       const int kept_rows, const int d, const int dv)
{
    __local uint red_key[PS_SCORE_RED], red_pos[PS_SCORE_RED], red_slot[PS_SCORE_RED];
    __local uint weak_valid;
    const int lid = get_local_id(0), n = get_local_size(0);
    const size_t bhk = get_global_id(1);
    __global uint *pos_h = kept_pos + bhk * kept_rows;
    __global uint *key_h = kept_key + bhk * kept_rows;
    uint kept = kept_count[bhk];
    if (lid == 0)
        weak_valid = 0u;
    for (int t = 0; t < count; t++) {
        const int pos = first + t;
        const uint key = ps_select_key(as_uint(scores[bhk * cache_rows + pos]));
        int slot = -1;
        barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
        if (kept < targets[t]) {
            slot = (int)kept;
            kept++;
        } else if (kept > 0u) {
            if (!weak_valid) { /* find the weakest: lowest key, later position */
                uint wk = 0xffffffffu, wp = 0u, ws = 0u;
                for (uint s = lid; s < kept; s += n) {
                    const uint k2 = key_h[s], p2 = pos_h[s];
                    if (k2 < wk || (k2 == wk && p2 > wp)) {
                        wk = k2;
                        wp = p2;
                        ws = s;
                    }
                }
                red_key[lid] = wk;
                red_pos[lid] = wp;
                red_slot[lid] = ws;
                barrier(CLK_LOCAL_MEM_FENCE);
                if (lid == 0) {
                    for (int u = 1; u < n; u++)
                        if (red_key[u] < red_key[0] ||
                            (red_key[u] == red_key[0] && red_pos[u] > red_pos[0])) {
                            red_key[0] = red_key[u];
                            red_pos[0] = red_pos[u];
                            red_slot[0] = red_slot[u];
                        }
                    weak_valid = 1u;
                }
                barrier(CLK_LOCAL_MEM_FENCE);
            }
            if (key > red_key[0])
                slot = (int)red_slot[0];
        }
        /* Every work-item has read weak_valid and the weakest before work-item
         * 0 changes them (slot and kept are the same on every work-item). */
        barrier(CLK_LOCAL_MEM_FENCE);
        if (slot >= 0) {
            ps_kv_copy_row(kc, kcv, vc, vcv, kk, kkv, vk, vkv, bhk, pos, slot, d, dv, lid, n);
            if (lid == 0) {
                pos_h[slot] = (uint)pos;
                key_h[slot] = key;
                weak_valid = 0u; /* the set changed */
            }
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    if (lid == 0)
        kept_count[bhk] = kept;
}

/* After a full selection (lib/select.c, over the cache's first `length`
 * keys with the sinks and window forced): the selected positions in
 * [sink_len, win_start), ascending, become the kept set, with their score
 * order and their K and V rows. indices [bhk][index_rows], counts [bhk]
 * from the selection, scores [bhk][length]. One work-item per kept slot;
 * global (kept_rows, batch * kv_heads). */
__kernel void kv_fill(__global const void *restrict kc, const ps_view kcv,
                      __global const void *restrict vc, const ps_view vcv,
                      __global void *restrict kk, const ps_view kkv, __global void *restrict vk,
                      const ps_view vkv, __global const uint *restrict indices,
                      __global const uint *restrict counts, __global const float *restrict scores,
                      __global uint *restrict kept_pos, __global uint *restrict kept_key,
                      __global uint *restrict kept_count, const int index_rows,
                      const int length, const int sink_len, const int win_start,
                      const int kept_rows, const int d, const int dv)
{
    const int s = get_global_id(0);
    const size_t bhk = get_global_id(1);
    const int forced = sink_len + (length - win_start);
    const int kept = clamp((int)counts[bhk] - forced, 0, kept_rows);
    if (s == 0)
        kept_count[bhk] = (uint)kept;
    if (s >= kept)
        return;
    const int pos = (int)indices[bhk * index_rows + sink_len + s];
    ps_kv_copy_row(kc, kcv, vc, vcv, kk, kkv, vk, vkv, bhk, pos, s, d, dv, 0, 1);
    kept_pos[bhk * kept_rows + s] = (uint)pos;
    kept_key[bhk * kept_rows + s] = ps_select_key(as_uint(scores[bhk * length + pos]));
}
