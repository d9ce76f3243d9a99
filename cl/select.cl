/* Top-m key selection (pipeline step 2) and the gather of the kept rows (step 3).
 * Semantics and the NaN policy are in lib/select.h; lib/ref/select.c is the
 * reference twin.
 *
 * Per head of n keys the forced positions are a prefix [0, lo) and a suffix
 * [hi, n); the candidates are the contiguous range [lo, hi), cut into tiles.
 * The threshold is found by an MSB-first radix select over the digits
 * 11/11/10 bits of an order-preserving uint key of the score (histogram +
 * scan per digit): it ends with T, the `extra`-th largest candidate key, and
 * `need`, how many of the candidates equal to T to keep (the lowest
 * positions). After the first digit every tile compacts, in position order,
 * the candidates at or above the chosen bin (a superset of the kept ones,
 * usually a few percent of the keys) into its own region of the workspace;
 * the later digits, the counting and the output read only those. Then per
 * tile: count keys > T and == T, a per-head scan turns those into output
 * offsets and tie quotas, and each tile writes its kept positions in
 * ascending order. Counts are integers and every sum is order-independent,
 * so the results are deterministic (also where local atomics are used).
 *
 * Two shapes of the tile kernels (docs/ARCHITECTURE.md): *_cpu, one work-item per tile
 * with a private histogram and sequential loops; *_gpu, a work-group per tile
 * with a __local histogram (local atomic_inc) and a local scan; a program
 * holds those of the shape -DPS_GPU_SHAPE names (lib/program.c). The scan
 * kernels take any work-group size. Scores are read as uint: the transform
 * works on the bits, so -cl-fast-relaxed-math cannot fold a NaN test away. */

#ifndef PS_GPU_SHAPE
#error "PS_GPU_SHAPE undefined: program_shaped[] of lib/program.c must list this file"
#endif

/* PS_SEL_BINS and PS_SEL_PASSES come from select_common.h (the prelude). */

/* Bit position of the digit of `pass` (11, 11, then 10 bits). */
static inline int ps_select_shift(int pass) { return pass == 0 ? 21 : (pass == 1 ? 10 : 0); }

/* ps_select_key (the score order): select_common.h, in the program prelude. */

/* Whether `key` is still a candidate in radix pass `pass` >= 1 (its digits
 * above the current one equal the prefix found so far). */
static inline uint ps_select_match(uint key, uint prefix, int pass)
{
    const int above = ps_select_shift(pass - 1);
    return (key >> above) == (prefix >> above);
}

/* Workspace layout: tile t of head h owns entries [(h * tiles + t) * tile,
 * + tile) of fpos/fkey (its compacted candidates, flen[h * tiles + t] of
 * them); hist [heads][tiles][PS_SEL_BINS]; state [heads][2] = {prefix, need},
 * finally {T, need}; tilecnt and tileinfo [heads][tiles][2]. */

/* ---------------------------------------------------------------- histogram
 * Digit counts of the tile's candidates that match the prefix: pass 0 over
 * the scores, later passes over the compacted candidates. */

#if !PS_GPU_SHAPE /* CPU shape */
__kernel void select_hist_cpu(__global const uint *restrict scores,
                              __global const uint *restrict fkey,
                              __global const uint *restrict flen,
                              __global uint *restrict hist,
                              __global const uint *restrict state, const int n,
                              const int lo, const int hi, const int tile,
                              const int tiles, const int pass)
{
    const int t = get_global_id(0);
    const int h = get_global_id(1);
    if (t >= tiles)
        return;
    const size_t ht = (size_t)h * tiles + t;
    const int shift = ps_select_shift(pass);
    uint count[PS_SEL_BINS];
    for (int b = 0; b < PS_SEL_BINS; b++)
        count[b] = 0u;
    if (pass == 0) {
        scores += (size_t)h * n;
        const int end = min(hi, lo + (t + 1) * tile);
        for (int i = lo + t * tile; i < end; i++)
            count[ps_select_key(scores[i]) >> shift]++;
    } else {
        const uint prefix = state[2 * h], len = flen[ht];
        fkey += ht * tile;
        for (uint j = 0; j < len; j++) {
            const uint key = fkey[j];
            count[(key >> shift) & 0x7ffu] += ps_select_match(key, prefix, pass);
        }
    }
    __global uint *out = hist + ht * PS_SEL_BINS;
    for (int b = 0; b < PS_SEL_BINS; b++)
        out[b] = count[b];
}

#else /* GPU shape */
__kernel void select_hist_gpu(__global const uint *restrict scores,
                              __global const uint *restrict fkey,
                              __global const uint *restrict flen,
                              __global uint *restrict hist,
                              __global const uint *restrict state, const int n,
                              const int lo, const int hi, const int tile,
                              const int tiles, const int pass)
{
    __local uint count[PS_SEL_BINS];
    const int t = get_group_id(0);
    const int h = get_global_id(1);
    const int lid = get_local_id(0), ls = get_local_size(0);
    const size_t ht = (size_t)h * tiles + t;
    const int shift = ps_select_shift(pass);
    for (int b = lid; b < PS_SEL_BINS; b += ls)
        count[b] = 0u;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (pass == 0) {
        scores += (size_t)h * n;
        const int end = min(hi, lo + (t + 1) * tile);
        for (int i = lo + t * tile + lid; i < end; i += ls)
            atomic_inc(&count[ps_select_key(scores[i]) >> shift]);
    } else {
        const uint prefix = state[2 * h], len = flen[ht];
        fkey += ht * tile;
        for (uint j = lid; j < len; j += ls) {
            const uint key = fkey[j];
            if (ps_select_match(key, prefix, pass))
                atomic_inc(&count[(key >> shift) & 0x7ffu]);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    __global uint *out = hist + ht * PS_SEL_BINS;
    for (int b = lid; b < PS_SEL_BINS; b += ls)
        out[b] = count[b];
}
#endif /* PS_GPU_SHAPE */

/* Sums the tiles' histograms of a head and picks the digit holding the
 * `need`-th largest remaining key (pass 0 starts from need = extra). One
 * work-group per head, any size; `total` is __local [PS_SEL_BINS]. */
__kernel void select_radix_scan(__global const uint *restrict hist,
                                __global uint *restrict state, __local uint *total,
                                const int tiles, const int pass, const uint extra)
{
    const int h = get_group_id(1);
    const int lid = get_local_id(0), ls = get_local_size(0);
    hist += (size_t)h * tiles * PS_SEL_BINS;
    for (int b = lid; b < PS_SEL_BINS; b += ls) {
        uint s = 0u;
        for (int t = 0; t < tiles; t++)
            s += hist[(size_t)t * PS_SEL_BINS + b];
        total[b] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        uint prefix = pass ? state[2 * h] : 0u;
        const uint need = pass ? state[2 * h + 1] : extra;
        uint above = 0u;
        int b = PS_SEL_BINS - 1;
        for (; b > 0; b--) {
            if (above + total[b] >= need)
                break;
            above += total[b];
        }
        state[2 * h] = prefix | ((uint)b << ps_select_shift(pass));
        state[2 * h + 1] = need - above;
    }
}

#if PS_GPU_SHAPE /* used by the GPU shape only */
/* Exclusive prefix sums of (a, b) over the work-group (Hillis-Steele);
 * `scan` is __local [2 * local size]; every work-item must call it. */
static inline uint2 ps_select_group_scan(__local uint *scan, uint a, uint b)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    __local uint *sa = scan, *sb = scan + ls;
    sa[lid] = a;
    sb[lid] = b;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = 1; off < ls; off <<= 1) {
        const uint xa = lid >= off ? sa[lid - off] : 0u;
        const uint xb = lid >= off ? sb[lid - off] : 0u;
        barrier(CLK_LOCAL_MEM_FENCE);
        sa[lid] += xa;
        sb[lid] += xb;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return (uint2)(sa[lid] - a, sb[lid] - b);
}
#endif /* PS_GPU_SHAPE */

/* ------------------------------------------------------------------- filter
 * Compacts the tile's candidates with key >= state[0] (the lowest key of the
 * first digit's chosen bin; 0 keeps all, 0xffffffff none) into its region,
 * in position order. */

#if !PS_GPU_SHAPE /* CPU shape */
__kernel void select_filter_cpu(__global const uint *restrict scores,
                                __global uint *restrict fpos, __global uint *restrict fkey,
                                __global uint *restrict flen,
                                __global const uint *restrict state, const int n,
                                const int lo, const int hi, const int tile,
                                const int tiles)
{
    const int t = get_global_id(0);
    const int h = get_global_id(1);
    if (t >= tiles)
        return;
    const size_t ht = (size_t)h * tiles + t;
    const uint floor_key = state[2 * h];
    scores += (size_t)h * n;
    fpos += ht * tile;
    fkey += ht * tile;
    uint len = 0u;
    const int end = min(hi, lo + (t + 1) * tile);
    /* Branch-free: every key is stored at the next free entry, which only
     * advances past kept ones. The entry is always inside the tile's own
     * region (len <= keys read so far < tile). */
    for (int i = lo + t * tile; i < end; i++) {
        const uint key = ps_select_key(scores[i]);
        fpos[len] = (uint)i;
        fkey[len] = key;
        len += key >= floor_key;
    }
    flen[ht] = len;
}

#else /* GPU shape */
/* Work-item j owns the j-th contiguous run of the tile; a group scan gives
 * each run its place. `scan` is __local [2 * local size]. */
__kernel void select_filter_gpu(__global const uint *restrict scores,
                                __global uint *restrict fpos, __global uint *restrict fkey,
                                __global uint *restrict flen,
                                __global const uint *restrict state, __local uint *scan,
                                const int n, const int lo, const int hi, const int tile,
                                const int tiles)
{
    const int t = get_group_id(0);
    const int h = get_global_id(1);
    const int lid = get_local_id(0), ls = get_local_size(0);
    const size_t ht = (size_t)h * tiles + t;
    const uint floor_key = state[2 * h];
    scores += (size_t)h * n;
    fpos += ht * tile;
    fkey += ht * tile;
    const int tile_end = min(hi, lo + (t + 1) * tile);
    const int run = (tile + ls - 1) / ls;
    const int begin = min(tile_end, lo + t * tile + lid * run);
    const int end = min(tile_end, begin + run);
    uint kept = 0u;
    for (int i = begin; i < end; i++)
        kept += ps_select_key(scores[i]) >= floor_key;
    uint at = ps_select_group_scan(scan, kept, 0u).x;
    for (int i = begin; i < end; i++) {
        const uint key = ps_select_key(scores[i]);
        if (key >= floor_key) {
            fpos[at] = (uint)i;
            fkey[at] = key;
            at++;
        }
    }
    if (lid == ls - 1)
        flen[ht] = at;
}
#endif /* PS_GPU_SHAPE */

/* ------------------------------------------------------------------- counts
 * tilecnt = {keys > T, keys == T} of the tile's compacted candidates. */

#if !PS_GPU_SHAPE /* CPU shape */
__kernel void select_count_cpu(__global const uint *restrict fkey,
                               __global const uint *restrict flen,
                               __global uint *restrict tilecnt,
                               __global const uint *restrict state, const int tile,
                               const int tiles)
{
    const int t = get_global_id(0);
    const int h = get_global_id(1);
    if (t >= tiles)
        return;
    const size_t ht = (size_t)h * tiles + t;
    const uint thr = state[2 * h], len = flen[ht];
    fkey += ht * tile;
    uint gt = 0u, eq = 0u;
    for (uint j = 0; j < len; j++) {
        const uint key = fkey[j];
        gt += key > thr;
        eq += key == thr;
    }
    tilecnt[2 * ht] = gt;
    tilecnt[2 * ht + 1] = eq;
}

#else /* GPU shape */
__kernel void select_count_gpu(__global const uint *restrict fkey,
                               __global const uint *restrict flen,
                               __global uint *restrict tilecnt,
                               __global const uint *restrict state, const int tile,
                               const int tiles)
{
    __local uint sums[2];
    const int t = get_group_id(0);
    const int h = get_global_id(1);
    const int lid = get_local_id(0), ls = get_local_size(0);
    const size_t ht = (size_t)h * tiles + t;
    const uint thr = state[2 * h], len = flen[ht];
    fkey += ht * tile;
    if (lid == 0)
        sums[0] = sums[1] = 0u;
    barrier(CLK_LOCAL_MEM_FENCE);
    uint gt = 0u, eq = 0u;
    for (uint j = lid; j < len; j += ls) {
        const uint key = fkey[j];
        gt += key > thr;
        eq += key == thr;
    }
    if (gt)
        atomic_add(&sums[0], gt);
    if (eq)
        atomic_add(&sums[1], eq);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        tilecnt[2 * ht] = sums[0];
        tilecnt[2 * ht + 1] = sums[1];
    }
}
#endif /* PS_GPU_SHAPE */

/* Per head: tie quotas and output offsets of the tiles (tileinfo = {first
 * output slot, ties to keep}), the count, the forced prefix and suffix, and
 * the n_k filler of unused slots. One work-group per head, any size. */
__kernel void select_offsets(__global const uint *restrict tilecnt,
                             __global const uint *restrict state,
                             __global uint *restrict tileinfo,
                             __global uint *restrict indices, __global uint *restrict counts,
                             const int n, const int lo, const int hi, const int capacity,
                             const int tiles)
{
    __local uint kept;
    const int h = get_group_id(1);
    const int lid = get_local_id(0), ls = get_local_size(0);
    if (lid == 0) {
        uint need = state[2 * h + 1];
        uint slot = (uint)lo;
        for (int t = 0; t < tiles; t++) {
            const size_t at = 2 * ((size_t)h * tiles + t);
            const uint take = min(tilecnt[at + 1], need);
            need -= take;
            tileinfo[at] = slot;
            tileinfo[at + 1] = take;
            slot += tilecnt[at] + take;
        }
        /* Never past the capacity, whatever the counts say. */
        kept = min(slot - (uint)lo, (uint)(capacity - lo - (n - hi)));
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int suffix = lo + (int)kept; /* first slot of the forced suffix */
    const int count = suffix + (n - hi);
    indices += (size_t)h * capacity;
    for (int i = lid; i < lo; i += ls)
        indices[i] = (uint)i;
    for (int i = hi + lid; i < n; i += ls)
        indices[suffix + (i - hi)] = (uint)i;
    for (int i = count + lid; i < capacity; i += ls)
        indices[i] = (uint)n;
    if (lid == 0)
        counts[h] = (uint)count;
}

/* -------------------------------------------------------------------- write
 * Each tile writes its kept candidates (keys > T, and the first `take` keys
 * == T) in ascending position order from its first output slot. */

#if !PS_GPU_SHAPE /* CPU shape */
__kernel void select_write_cpu(__global const uint *restrict fpos,
                               __global const uint *restrict fkey,
                               __global const uint *restrict flen,
                               __global const uint *restrict tileinfo,
                               __global const uint *restrict state,
                               __global uint *restrict indices, const int tile,
                               const int tiles, const int capacity)
{
    const int t = get_global_id(0);
    const int h = get_global_id(1);
    if (t >= tiles)
        return;
    const size_t ht = (size_t)h * tiles + t;
    const uint thr = state[2 * h], len = flen[ht];
    uint slot = tileinfo[2 * ht], take = tileinfo[2 * ht + 1];
    fpos += ht * tile;
    fkey += ht * tile;
    indices += (size_t)h * capacity;
    for (uint j = 0; j < len; j++) {
        const uint key = fkey[j];
        uint keep = key > thr;
        if (key == thr && take) {
            keep = 1u;
            take--;
        }
        if (keep && slot < (uint)capacity)
            indices[slot++] = fpos[j];
    }
}

#else /* GPU shape */
/* Work-item j owns the j-th contiguous run of the compacted candidates; a
 * group scan of the runs' (>, ==) counts gives each run its slot and tie
 * quota. `scan` is __local [2 * local size]. */
__kernel void select_write_gpu(__global const uint *restrict fpos,
                               __global const uint *restrict fkey,
                               __global const uint *restrict flen,
                               __global const uint *restrict tileinfo,
                               __global const uint *restrict state,
                               __global uint *restrict indices, __local uint *scan,
                               const int tile, const int tiles, const int capacity)
{
    const int t = get_group_id(0);
    const int h = get_global_id(1);
    const int lid = get_local_id(0), ls = get_local_size(0);
    const size_t ht = (size_t)h * tiles + t;
    const uint thr = state[2 * h], len = flen[ht];
    const uint slot0 = tileinfo[2 * ht], take = tileinfo[2 * ht + 1];
    fpos += ht * tile;
    fkey += ht * tile;
    indices += (size_t)h * capacity;
    const uint run = (len + ls - 1) / ls;
    const uint begin = min(len, lid * run), end = min(len, begin + run);
    uint gt = 0u, eq = 0u;
    for (uint j = begin; j < end; j++) {
        const uint key = fkey[j];
        gt += key > thr;
        eq += key == thr;
    }
    const uint2 before = ps_select_group_scan(scan, gt, eq);
    uint slot = slot0 + before.x + min(before.y, take);
    uint quota = take > before.y ? take - before.y : 0u;
    for (uint j = begin; j < end; j++) {
        const uint key = fkey[j];
        uint keep = key > thr;
        if (key == thr && quota) {
            keep = 1u;
            quota--;
        }
        if (keep && slot < (uint)capacity)
            indices[slot++] = fpos[j];
    }
}
#endif /* PS_GPU_SHAPE */

/* ------------------------------------------------------------------- gather
 * k_sel [heads][capacity][d], v_sel [heads][capacity][dv] from the kept rows
 * of the views k and v, dense and in their storage types (exact copies);
 * slots past the count (or holding an index >= n) are zero. One work-item
 * per four elements of a row: global (max(d, dv) / 4, capacity, heads). */
__kernel void select_gather(__global const void *restrict k, const ps_view kv,
                            __global const void *restrict v, const ps_view vv,
                            __global const uint *restrict indices,
                            __global const uint *restrict counts,
                            __global void *restrict k_sel, __global void *restrict v_sel,
                            const int n, const int d4, const int dv4, const int capacity)
{
    const int c = get_global_id(0);
    const int s = get_global_id(1);
    const int h = get_global_id(2);
    const size_t row = (size_t)h * capacity + s;
    const uint idx = indices[row];
    const int valid = (uint)s < counts[h] && idx < (uint)n;
    const uint src = valid ? idx : 0u;
    const float4 zero = (float4)(0.0f);
    if (c < d4)
        ps_st4(k_sel, ps_view_flat(kv.f16), (row * d4 + c) * 4,
               valid ? ps_ld4(k, kv, ps_row(kv, h, src) + 4 * c) : zero);
    if (c < dv4)
        ps_st4(v_sel, ps_view_flat(vv.f16), (row * dv4 + c) * 4,
               valid ? ps_ld4(v, vv, ps_row(vv, h, src) + 4 * c) : zero);
}

/* ---------------------------------------------------------- weighted selection
 * PS_SELECTION_WEIGHTED (docs/SELECT.md; host: lib/select_weighted.c, twin:
 * ps_ref_select_keys_weighted). The heavy keys are the top-scored
 * non-forced keys (the radix select above, run for `heavy` ranked keys);
 * every other key gets a Philox draw priority; the radix select keeps the
 * forced keys and the highest priorities; wsel_weights gives each kept key
 * its log-weight. */

/* prio[h][pos]: PS_SELECT_HEAVY_PRIORITY for the heavy keys (the non-forced
 * positions of hsel [heads][hcap], ascending, which also lists the forced
 * keys), the draw priority for every other key (forced keys too: the select
 * keeps them whatever their value). Global (n, heads). */
__kernel void wsel_priority(__global const uint *restrict hsel, __global float *restrict prio,
                            const int n, const int lo, const int hi, const int hcap,
                            const uint seed_lo, const uint seed_hi)
{
    const int pos = get_global_id(0);
    const size_t h = get_global_id(1);
    if (pos >= n)
        return;
    __global const uint *sel = hsel + h * hcap;
    int a = 0, b = hcap; /* the first entry >= pos; a binary search, no long loop */
    while (a < b) {
        const int mid = (a + b) / 2;
        if (sel[mid] < (uint)pos)
            a = mid + 1;
        else
            b = mid;
    }
    const int heavy = a < hcap && sel[a] == (uint)pos && pos >= lo && pos < hi;
    const ulong seed = ((ulong)seed_hi << 32) | seed_lo;
    prio[h * (size_t)n + pos] =
        heavy ? PS_SELECT_HEAVY_PRIORITY : ps_select_draw_priority(seed, (uint)h, (uint)pos);
}

/* weights[h][i]: the log-weight of kept slot i (indices [heads][capacity],
 * counts [heads]): 0 for forced and heavy keys and empty slots,
 * drawn_log_weight for drawn keys. Global (capacity, heads). */
__kernel void wsel_weights(__global const uint *restrict indices,
                           __global const uint *restrict counts,
                           __global const float *restrict prio, __global float *restrict weights,
                           const int n, const int capacity, const int lo, const int hi,
                           const float drawn_log_weight)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= capacity)
        return;
    const uint pos = indices[h * (size_t)capacity + i];
    const int drawn = (uint)i < counts[h] && pos < (uint)n && pos >= (uint)lo &&
                      pos < (uint)hi && prio[h * (size_t)n + pos] != PS_SELECT_HEAVY_PRIORITY;
    weights[h * (size_t)capacity + i] = drawn ? drawn_log_weight : 0.0f;
}

/* ------------------------------------------------------------ stratified draw
 * PS_SELECTION_STRATIFIED (docs/SELECT.md "Stratified draw"; twin
 * ps_ref_select_keys_stratified): after wsel_priority marked the heavy keys,
 * the pool keys (in [lo, hi), not heavy) are counted per tile of `tile`
 * positions and k-means cluster, the counts scanned per cluster, the draw
 * shared out (ps_strata_* in select_common.h), and each pool key's number
 * within its cluster found from its tile's offset plus the earlier pool
 * keys of its cluster in the tile (at most tile - 1 trips; the host keeps
 * both tile and the tile count within the loop budget). sprio then holds PS_SELECT_HEAVY_PRIORITY for
 * heavy keys, 1 for drawn keys and 0 for the rest: the radix select keeps
 * the forced keys and exactly the heavy and drawn ones. */

static inline int ps_strata_in_pool(__global const float *hp, const int pos, const int lo,
                                    const int hi)
{
    return pos >= lo && pos < hi && hp[pos] != PS_SELECT_HEAVY_PRIORITY;
}

/* The cluster of key pos (assign[h][pos]), clamped into [0, clusters). */
static inline int ps_strata_cluster(__global const int *ah, const int pos, const int clusters)
{
    return clamp(ah[pos], 0, clusters - 1);
}

/* tcount[h][tile][c]: pool keys of cluster c in the tile (zeroed first).
 * Global (n, heads). */
__kernel void ssel_count(__global const float *restrict prio, __global const int *restrict assign,
                         __global uint *restrict tcount, const int n, const int lo, const int hi,
                         const int clusters, const int tiles, const int tile)
{
    const int pos = get_global_id(0);
    const size_t h = get_global_id(1);
    if (pos >= n || !ps_strata_in_pool(prio + h * n, pos, lo, hi))
        return;
    const int c = ps_strata_cluster(assign + h * n, pos, clusters);
    atomic_inc(tcount + (h * tiles + pos / tile) * clusters + c);
}

/* toff[h][tile][c]: pool keys of cluster c in the tiles before; pool[h][c]:
 * all of them. Global (clusters, heads). */
__kernel void ssel_scan(__global const uint *restrict tcount, __global uint *restrict toff,
                        __global uint *restrict pool, const int tiles, const int clusters)
{
    const int c = get_global_id(0);
    const size_t h = get_global_id(1);
    if (c >= clusters)
        return;
    uint sum = 0;
    for (int t = 0; t < tiles; t++) {
        const size_t i = (h * tiles + t) * clusters + c;
        toff[i] = sum;
        sum += tcount[i];
    }
    pool[h * clusters + c] = sum;
}

/* alloc[h][c], phase[h][c] and cweight[h][c] = ln(P_c / a_c) (0 when
 * a_c = 0) for `drawn` keys per head. Global (clusters, heads). */
__kernel void ssel_alloc(__global const uint *restrict pool, __global uint *restrict alloc,
                         __global uint *restrict phase, __global float *restrict cweight,
                         const int clusters, const uint drawn, const uint seed_lo,
                         const uint seed_hi)
{
    const int c = get_global_id(0);
    const size_t h = get_global_id(1);
    if (c >= clusters)
        return;
    __global const uint *ph = pool + h * clusters;
    ulong total = 0;
    for (int i = 0; i < clusters; i++)
        total += ph[i];
    uint a = 0;
    if (total > 0) {
        ulong given = 0;
        for (int i = 0; i < clusters; i++)
            given += (ulong)drawn * ph[i] / total;
        const ulong rem = (ulong)drawn * ph[c] % total;
        uint above = 0; /* clusters whose remainder outranks this one's */
        for (int i = 0; i < clusters; i++)
            above += ps_strata_outranks((ulong)drawn * ph[i] % total, (uint)i, rem, (uint)c);
        a = (uint)((ulong)drawn * ph[c] / total) + (above < drawn - given ? 1u : 0u);
    }
    const ulong seed = ((ulong)seed_hi << 32) | seed_lo;
    const uint pc = ph[c];
    alloc[h * clusters + c] = a;
    phase[h * clusters + c] = pc ? ps_strata_phase(seed, (uint)h, (uint)c, pc) : 0u;
    cweight[h * clusters + c] = a ? log((float)pc / (float)a) : 0.0f;
}

/* sprio[h][pos] (see above). Global (n, heads). */
__kernel void ssel_priority(__global const float *restrict prio,
                            __global const int *restrict assign,
                            __global const uint *restrict toff, __global const uint *restrict pool,
                            __global const uint *restrict alloc,
                            __global const uint *restrict phase, __global float *restrict sprio,
                            const int n, const int lo, const int hi, const int clusters,
                            const int tiles, const int tile)
{
    const int pos = get_global_id(0);
    const size_t h = get_global_id(1);
    if (pos >= n)
        return;
    __global const float *hp = prio + h * n;
    __global const int *ah = assign + h * n;
    float out = hp[pos] == PS_SELECT_HEAVY_PRIORITY ? PS_SELECT_HEAVY_PRIORITY : 0.0f;
    if (ps_strata_in_pool(hp, pos, lo, hi)) {
        const int c = ps_strata_cluster(ah, pos, clusters), at = pos / tile;
        uint t = toff[(h * tiles + at) * clusters + c];
        for (int i = at * tile; i < pos; i++)
            t += ps_strata_in_pool(hp, i, lo, hi) && ps_strata_cluster(ah, i, clusters) == c;
        const size_t hc = h * clusters + c;
        out = ps_strata_keep(t, alloc[hc], pool[hc], phase[hc]) ? 1.0f : 0.0f;
    }
    sprio[h * (size_t)n + pos] = out;
}

/* weights[h][i]: the cluster's cweight for a kept drawn key (sprio 1), 0
 * otherwise. Global (capacity, heads). */
__kernel void ssel_weights(__global const uint *restrict indices,
                           __global const uint *restrict counts,
                           __global const float *restrict sprio,
                           __global const int *restrict assign,
                           __global const float *restrict cweight,
                           __global float *restrict weights, const int n, const int capacity,
                           const int clusters)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= capacity)
        return;
    const uint pos = indices[h * (size_t)capacity + i];
    const int drawn = (uint)i < counts[h] && pos < (uint)n && sprio[h * (size_t)n + pos] == 1.0f;
    weights[h * (size_t)capacity + i] =
        drawn ? cweight[h * clusters + ps_strata_cluster(assign + h * n, (int)pos, clusters)]
              : 0.0f;
}

/* ------------------------------------------------------------- query sketch
 * The attention mass a Philox sample of queries puts on every key
 * (docs/SELECT.md "Query sketch"; twin ps_ref_sketch_keys): rows =
 * ps_sketch_rows(n_q, s) sampled rows per query head (ps_sketch_row), their
 * log-sum-exp over all keys of the KV head in `chunk`-key pieces merged in
 * log-sum-exp space, then per key the sum over the KV head's sampled rows of
 * exp(logit - lse). Log2 domain throughout: the rows are stored pre-scaled
 * by scale * log2(e). Plain NDRanges, no __local: the host sizes the key
 * chunks and the row parts of sketch_mass from the loop budget
 * (lib/kernel_fit.h ps_loop_items). */

/* qs[qh][i][c] = sampled row i of query head qh times scale_log2.
 * Global (rows, batch * heads). */
__kernel void sketch_gather(__global const void *restrict q, const ps_view qv,
                            __global float *restrict qs, const int d, const int n_q,
                            const int s, const uint seed_lo, const uint seed_hi,
                            const float scale_log2)
{
    const int i = get_global_id(0);
    const size_t qh = get_global_id(1);
    const int rows = (int)ps_sketch_rows((uint)n_q, (uint)s);
    if (i >= rows)
        return;
    const ulong seed = ((ulong)seed_hi << 32) | seed_lo;
    const uint t = ps_sketch_row(seed, (uint)qh, (uint)i, (uint)n_q, (uint)s);
    const size_t src = ps_row(qv, qh, t);
    __global float *dst = qs + (qh * rows + i) * (size_t)d;
    for (int c = 0; c < d; c += 4)
        vstore4(ps_ld4(q, qv, src + c) * scale_log2, 0, dst + c);
}

/* Logit of a sampled row against key row k_el of the view kv (log2 domain). */
static inline float ps_sketch_logit(__global const float *qrow, __global const void *k,
                                    const ps_view kv, const size_t k_el, const int d)
{
    float x = 0.0f;
    for (int c = 0; c < d; c += 4)
        x += dot(vload4(0, qrow + c), ps_ld4(k, kv, k_el + c));
    return x;
}

/* part[qh][i][chunk] = (running maximum, sum of exp2(logit - maximum)) of
 * sampled row i over keys [chunk * chunk_keys, + chunk_keys) of its KV head.
 * Global (rows, batch * heads, chunks): neighbouring work-items read the
 * same key. */
__kernel void sketch_partial(__global const float *restrict qs, __global const void *restrict k,
                             const ps_view kv, __global float2 *restrict part, const int d,
                             const int n_k, const int rows, const int group,
                             const int chunk_keys)
{
    const int i = get_global_id(0);
    const size_t qh = get_global_id(1);
    const int chunk = get_global_id(2), chunks = get_global_size(2);
    if (i >= rows)
        return;
    __global const float *qrow = qs + (qh * rows + i) * (size_t)d;
    const size_t kvh = qh / (size_t)group;
    const int j_end = min(n_k, (chunk + 1) * chunk_keys);
    float m = PS_NEG_BIG, l = 0.0f;
    for (int j = chunk * chunk_keys; j < j_end; j++) {
        const float x = ps_sketch_logit(qrow, k, kv, ps_row(kv, kvh, j), d);
        const float m_new = fmax(m, x);
        l = l * exp2(m - m_new) + exp2(x - m_new);
        m = m_new;
    }
    part[(qh * rows + i) * (size_t)chunks + chunk] = (float2)(m, l);
}

/* lse2[qh][i]: the chunks of part merged (log2 domain). Global (rows,
 * batch * heads). */
__kernel void sketch_lse(__global const float2 *restrict part, __global float *restrict lse2,
                         const int rows, const int chunks)
{
    const int i = get_global_id(0);
    const size_t qh = get_global_id(1);
    if (i >= rows)
        return;
    __global const float2 *p = part + (qh * rows + i) * (size_t)chunks;
    float m = PS_NEG_BIG;
    for (int c = 0; c < chunks; c++)
        m = p[c].y > 0.0f ? fmax(m, p[c].x) : m;
    float l = 0.0f;
    for (int c = 0; c < chunks; c++)
        l += p[c].y > 0.0f ? p[c].y * exp2(p[c].x - m) : 0.0f;
    lse2[qh * rows + i] = m + log2(l);
}

/* pmass[kvh][part][j]: for key j, the sum over rows [part * part_rows, +
 * part_rows) of the KV head's group * rows sampled rows (query head
 * kvh * group + t / rows, row t % rows) of exp2(logit - lse2): the share of
 * those rows' attention key j gets. Parts keep every work-item's loop
 * within the loop budget. Global (n_k, batch * kv_heads, parts). */
__kernel void sketch_mass(__global const float *restrict qs, __global const float *restrict lse2,
                          __global const void *restrict k, const ps_view kv,
                          __global float *restrict pmass, const int d, const int n_k,
                          const int rows, const int group, const int part_rows)
{
    const int j = get_global_id(0);
    const size_t kvh = get_global_id(1);
    const int part = get_global_id(2), parts = get_global_size(2);
    if (j >= n_k)
        return;
    const size_t k_el = ps_row(kv, kvh, j);
    const int t_end = min(group * rows, (part + 1) * part_rows);
    float acc = 0.0f;
    for (int t = part * part_rows; t < t_end; t++) {
        const size_t r = (kvh * group + t / rows) * rows + t % rows;
        acc += exp2(ps_sketch_logit(qs + r * d, k, kv, k_el, d) - lse2[r]);
    }
    pmass[(kvh * parts + part) * (size_t)n_k + j] = acc;
}

/* mass[kvh][j] = the sum of the parts. Global (n_k, batch * kv_heads). */
__kernel void sketch_sum(__global const float *restrict pmass, __global float *restrict mass,
                         const int n_k, const int parts)
{
    const int j = get_global_id(0);
    const size_t kvh = get_global_id(1);
    if (j >= n_k)
        return;
    float acc = 0.0f;
    for (int p = 0; p < parts; p++)
        acc += pmass[(kvh * parts + p) * (size_t)n_k + j];
    mass[kvh * (size_t)n_k + j] = acc;
}
