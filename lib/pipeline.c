/* The approximate pipelines behind ps_attention: HyperAttention over all keys
 * (PS_METHOD_HYPER) and over the pre-scored subset (PS_METHOD_PRESCORE):
 *
 *   PRESCORE: score keys -> select m per KV head -> gather K/V rows -> (*)
 *   HYPER:    (*) on all keys
 *   (*)       LSH hash + sort keys and queries -> blocks + residual + merge
 *
 * With global keys (g > 0; docs/GLOBAL.md) the g best of the
 * keys (*) would see are split off first: (*) runs on the other ones, exact
 * attention of every query over the g global rows is merged in LSE space.
 *
 * Causal plans run HyperAttention's recursion instead: exact causal leaves
 * and non-causal quarters, each a child plan running the whole non-causal
 * pipeline of the method on its own (earlier) keys, merged in log-sum-exp
 * space (see "Causal recursion" below and docs/HYPER.md "Causal").
 *
 * Everything is enqueued on the context's in-order queue; the workspace
 * between stages belongs to the plan (allocated in ps_pipeline_setup). */
#include "pipeline.h"
#include "handles.h"

#include "exact.h"
#include "hyper.h"
#include "kernel_fit.h"
#include "stage_times.h"
#include "lsh.h"
#include "core/causal_walk.h"
#include "core/global_params.h"
#include "score.h"
#include "select.h"
#include "core/host_alloc.h"

#include <stdlib.h>
#include <string.h>

/* A node of the causal recursion (see "Causal recursion" below). */
typedef struct causal_node {
    ps_plan *plan;      /* non-causal child */
    cl_mem k, v;        /* its key rows [B*Hkv][nk][d | d_v] (own, or the scratch) */
    int own_kv;         /* 1: k, v belong to the node (HYPER without global keys) */
    size_t q0, nq;      /* square query rows (the prefix: all n_q) */
    size_t k0, nk;      /* absolute key rows */
} causal_node;

struct ps_pipeline_state {
    cl_mem codes_q, perm_q, perm_inv_q; /* [batch * heads][n_q] */
    cl_mem codes_k, perm_k, perm_inv_k; /* [batch * kv_heads][keys used] */
    cl_mem scores;                      /* [batch * kv_heads][n_k] */
    cl_mem indices, counts;             /* [batch * kv_heads][capacity], [..] */
    cl_mem k_sel, v_sel;                /* [batch * kv_heads][capacity][d | d_v] */
    size_t keys_used;                   /* n_k (HYPER) or the selection capacity */
    /* The key set of the last key half: what the query half attends to. */
    cl_mem keys_cur, values_cur;
    size_t used_cur;
    /* Causal recursion: compact sub-range buffers of cap = ceil(n_sq / 2)
     * rows per head, and the row LSE when the caller passes none. */
    cl_kernel copy_rows, merge_rows, empty_rows;
    cl_mem qc, kc, vc, oc, lsec; /* [B*H][cap][d], [B*Hkv][cap_k][d|dv], [B*H][cap][dv|1] */
    cl_mem lse_own;              /* [B*H][n] */
    size_t cap;
    causal_node *nodes;        /* one per quarter, in ps_causal_walk order */
    size_t n_nodes, node_slots; /* quarters; allocated slots (quarters + 1) */
    causal_node *prefix;       /* the key prefix node, or NULL */
    cl_mem causal_k, causal_v;   /* K/V of the last key half (the leaves read them) */
    cl_mem ks, vs;               /* key-row scratch of the nodes without own rows */
    /* Global keys (non-causal, docs/GLOBAL.md): g of the keys_used candidates. */
    size_t g;
    cl_kernel global_scores, global_pick, global_split;
    size_t pick_group;   /* work-items of global_pick's group (one group per head) */
    cl_mem gscores;      /* [batch * kv_heads][keys_used] global score per candidate */
    cl_mem gsel;         /* [batch * kv_heads][g] candidate index, ascending */
    cl_mem kg, vg;       /* [batch * kv_heads][g][d | d_v] */
    cl_mem kr, vr;       /* [batch * kv_heads][keys_used - g][d | d_v] */
    cl_mem og, lseg;     /* [batch * heads][n_q][d_v], [..][n_q]: the exact part */
};

static ps_status causal_setup(ps_plan *plan, ps_pipeline_state *p);
static void node_release(causal_node *nd);
static int causal_recursive(const ps_attention_desc *d);
static ps_status causal_keys(ps_plan *plan, cl_mem k, cl_mem v, cl_event *first,
                             cl_event *done);
static ps_status causal_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse,
                                cl_event *first, cl_event *done);

ps_method ps_plan_path(const ps_plan *plan)
{
    if (ps_plan_check(plan, "ps_plan_path") != PS_OK)
        return PS_METHOD_EXACT;
    const ps_attention_desc *d = &plan->desc;
    /* Short sequences: exact attention is both faster and exact. */
    if (d->method == PS_METHOD_EXACT || d->n_k < d->min_seq_len)
        return PS_METHOD_EXACT;
    return d->method;
}

static cl_mem alloc(ps_context *ctx, size_t bytes, const char *what, ps_status *st)
{
    cl_int err = CL_SUCCESS;
    if (*st != PS_OK)
        return NULL;
    if (bytes > ctx->info.max_mem_alloc_size) {
        *st = ps_fail(ctx, PS_ERR_OUT_OF_DEVICE_MEMORY,
                      "%s needs %zu bytes, CL_DEVICE_MAX_MEM_ALLOC_SIZE is %llu", what, bytes,
                      (unsigned long long)ctx->info.max_mem_alloc_size);
        return NULL;
    }
    cl_mem m = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS)
        *st = ps_fail_cl(ctx, err, what);
    return m;
}

/* Global keys: checks the plan and allocates the split buffers. */
static ps_status global_setup(ps_plan *plan, ps_pipeline_state *p)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const size_t qheads = d->batch * d->heads, kheads = d->batch * d->kv_heads;
    const size_t f = sizeof(float), u32 = sizeof(cl_uint);
    const size_t g = d->global_keys, c = p->keys_used;
    char msg[256];
    ps_status st = ps_global_check(d, c, msg, sizeof msg);
    if (st != PS_OK)
        return ps_fail(ctx, st, "ps_plan_create: %s", msg);
    p->g = g;
    p->gscores = alloc(ctx, kheads * c * f, "global key scores", &st);
    p->gsel = alloc(ctx, kheads * g * u32, "global key indices", &st);
    p->kg = alloc(ctx, kheads * g * d->d * f, "global keys", &st);
    p->vg = alloc(ctx, kheads * g * d->d_v * f, "global values", &st);
    p->kr = alloc(ctx, kheads * (c - g) * d->d * f, "non-global keys", &st);
    p->vr = alloc(ctx, kheads * (c - g) * d->d_v * f, "non-global values", &st);
    p->og = alloc(ctx, qheads * d->n_q * d->d_v * f, "global part output", &st);
    p->lseg = alloc(ctx, qheads * d->n_q * f, "global part lse", &st);
    if (!p->lse_own)
        p->lse_own = alloc(ctx, qheads * d->n_q * f, "row lse", &st);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_GLOBAL, "global_scores", &p->global_scores);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_GLOBAL, "global_pick", &p->global_pick);
    if (st == PS_OK)
        st = ps_kernel_fit(ctx, p->global_pick, "global_pick", ctx->tuning.group_cap,
                           ctx->tuning.group_cap * sizeof(cl_ulong), &p->pick_group);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_GLOBAL, "global_split", &p->global_split);
    if (st == PS_OK && !p->merge_rows)
        st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "merge_rows", &p->merge_rows);
    return st;
}

ps_status ps_pipeline_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    ps_pipeline_state *p = ps_calloc(1, sizeof *p);
    if (!p)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->pipeline = p;
    /* Causal plans run child plans per node (the recursion below). */
    if (d->causal)
        return causal_setup(plan, p);
    const size_t qheads = d->batch * d->heads, kheads = d->batch * d->kv_heads;
    const size_t u32 = sizeof(cl_uint);
    p->keys_used = d->method == PS_METHOD_PRESCORE ? ps_plan_selected_capacity(plan) : d->n_k;

    p->codes_q = alloc(ctx, qheads * d->n_q * u32, "LSH query codes", &st);
    p->perm_q = alloc(ctx, qheads * d->n_q * u32, "LSH query order", &st);
    p->perm_inv_q = alloc(ctx, qheads * d->n_q * u32, "LSH query positions", &st);
    p->codes_k = alloc(ctx, kheads * p->keys_used * u32, "LSH key codes", &st);
    p->perm_k = alloc(ctx, kheads * p->keys_used * u32, "LSH key order", &st);
    p->perm_inv_k = alloc(ctx, kheads * p->keys_used * u32, "LSH key positions", &st);
    if (d->method == PS_METHOD_PRESCORE) {
        p->scores = alloc(ctx, kheads * d->n_k * sizeof(float), "key scores", &st);
        p->indices = alloc(ctx, kheads * p->keys_used * u32, "selected key indices", &st);
        p->counts = alloc(ctx, kheads * u32, "selected key counts", &st);
        p->k_sel = alloc(ctx, kheads * p->keys_used * d->d * sizeof(float), "selected keys", &st);
        p->v_sel =
            alloc(ctx, kheads * p->keys_used * d->d_v * sizeof(float), "selected values", &st);
    }
    if (st == PS_OK && d->global_keys > 0 && ps_plan_path(plan) != PS_METHOD_EXACT)
        st = global_setup(plan, p);
    return st;
}

void ps_pipeline_release(ps_plan *plan)
{
    ps_pipeline_state *p = plan->pipeline;
    if (!p)
        return;
    cl_mem all[] = {p->codes_q, p->perm_q, p->perm_inv_q, p->codes_k, p->perm_k,
                    p->perm_inv_k, p->scores, p->indices, p->counts, p->k_sel, p->v_sel,
                    p->qc, p->kc, p->vc, p->oc, p->lsec, p->lse_own, p->gscores, p->gsel,
                    p->kg, p->vg, p->kr, p->vr, p->og, p->lseg, p->ks, p->vs};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            clReleaseMemObject(all[i]);
    if (p->copy_rows)
        clReleaseKernel(p->copy_rows);
    for (size_t i = 0; p->nodes && i < p->node_slots; i++)
        node_release(&p->nodes[i]);
    free(p->nodes);
    cl_kernel kernels[] = {p->merge_rows, p->global_scores, p->global_pick, p->global_split,
                           p->empty_rows};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    free(p);
    plan->pipeline = NULL;
}

/* Keeps the first event of the whole run and the last one seen so far. */
static void track(cl_event *first, cl_event *last, cl_event stage_first, cl_event stage_last)
{
    if (stage_first && !*first) {
        *first = stage_first;
        clRetainEvent(stage_first);
    }
    if (stage_first)
        clReleaseEvent(stage_first);
    if (stage_last) {
        if (*last)
            clReleaseEvent(*last);
        *last = stage_last;
    }
}

/* ---- Causal recursion (docs/HYPER.md "Causal") ---------------------------
 * Bottom-right aligned: query r sees keys [0, r + n_k - n_q]. The square is
 * the last n_sq = min(n_q, n_k) queries and keys; off = n_k - n_sq keys or
 * qoff = n_q - n_sq queries come before it. Query rows [0, qoff) see no key
 * (O = 0, LSE = -inf). Keys [0, off) (the prefix) are visible to every
 * query: a non-causal part, enqueued first into O/LSE. The square part,
 * query qoff + r against key off + r, is ps_causal_walk(n_sq, min_seq_len):
 * exact causal leaves, and quarters "queries [mid, hi) vs keys [lo, mid)".
 * Every quarter (and a prefix of >= min_seq_len keys) is a node: a
 * non-causal CHILD plan of the plan's method (ps_causal_node_desc: its own
 * seed, budget, global keys), created with the plan, owning its workspace
 * and kernels. The key half copies each node's key rows (into the node's own
 * buffers when its query half reads them, else into a shared scratch) and
 * runs the child's key half (scores, selection, global keys, LSH of
 * the keys: nothing sees a key outside the node's range, all earlier than
 * every query of the node); the query half copies the node's query rows,
 * runs the child's query half and merges it into O/LSE in log-sum-exp space.
 * So key reuse (ps_attention_prepare_keys) keeps every node's key half. */

typedef struct causal_run {
    ps_plan *plan;
    cl_mem q, k, v, o, lse;
    size_t off;  /* n_k - n_sq: key row of square position 0 */
    size_t qoff; /* n_q - n_sq: query row of square position 0 */
    cl_event first, last;
} causal_run;

/* The square of the recursion: the last min(n_q, n_k) queries and keys. */
static size_t square_rows(const ps_attention_desc *d)
{
    return d->n_q < d->n_k ? d->n_q : d->n_k;
}

static causal_run run_init(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse)
{
    const ps_attention_desc *d = &plan->desc;
    const size_t n_sq = square_rows(d);
    causal_run c = {plan, q, k, v, o, lse, d->n_k - n_sq, d->n_q - n_sq, NULL, NULL};
    return c;
}

static ps_status copy_rows(causal_run *c, cl_mem src, cl_mem dst, size_t heads,
                           size_t src_rows, size_t src_row0, size_t dst_rows, size_t dst_row0,
                           size_t count, size_t width)
{
    ps_context *ctx = c->plan->ctx;
    const cl_int a6[6] = {(cl_int)src_rows, (cl_int)src_row0, (cl_int)dst_rows,
                          (cl_int)dst_row0, (cl_int)count, (cl_int)width};
    ps_arg_setter a = {c->plan->pipeline->copy_rows, 0, CL_SUCCESS};
    ps_arg(&a, sizeof src, &src);
    ps_arg(&a, sizeof dst, &dst);
    for (int i = 0; i < 6; i++)
        ps_arg(&a, sizeof a6[i], &a6[i]);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (copy_rows)");
    const size_t g[2] = {count, heads};
    cl_event ev = NULL;
    ps_status st = ps_launch(ctx, a.kernel, "copy_rows", 2, g, NULL, &ev);
    if (st != PS_OK)
        return st;
    if (!c->first) {
        c->first = ev;
        clRetainEvent(ev);
    }
    track(&c->first, &c->last, NULL, ev);
    return PS_OK;
}

/* Copies Q rows [q0, q0 + nq) of the square into p->qc (when nq > 0) and
 * K/V rows [k0, k0 + nk) (absolute) into kd/vd, each compact. */
static ps_status gather(causal_run *c, size_t q0, size_t nq, size_t k0, size_t nk, cl_mem kd,
                        cl_mem vd)
{
    const ps_attention_desc *d = &c->plan->desc;
    ps_pipeline_state *p = c->plan->pipeline;
    const size_t qh = d->batch * d->heads, kh = d->batch * d->kv_heads;
    ps_status st = PS_OK;
    if (nq)
        st = copy_rows(c, c->q, p->qc, qh, d->n_q, c->qoff + q0, nq, 0, nq, d->d);
    if (st == PS_OK && nk)
        st = copy_rows(c, c->k, kd, kh, d->n_k, k0, nk, 0, nk, d->d);
    if (st == PS_OK && nk)
        st = copy_rows(c, c->v, vd, kh, d->n_k, k0, nk, 0, nk, d->d_v);
    return st;
}

/* Merges a part (o2, lse2: `count` compact rows) into rows [row0, row0 +
 * count) of (o, lse) in log-sum-exp space: the causal parts and the global
 * keys' part share it. */
static ps_status merge_rows_enqueue(ps_plan *plan, cl_mem o, cl_mem lse, cl_mem o2, cl_mem lse2,
                                    size_t row0, size_t count, cl_event *ev)
{
    const ps_attention_desc *d = &plan->desc;
    const cl_int ai[4] = {(cl_int)d->n_q, (cl_int)row0, (cl_int)count, (cl_int)d->d_v};
    ps_arg_setter a = {plan->pipeline->merge_rows, 0, CL_SUCCESS};
    ps_arg(&a, sizeof o, &o);
    ps_arg(&a, sizeof lse, &lse);
    ps_arg(&a, sizeof o2, &o2);
    ps_arg(&a, sizeof lse2, &lse2);
    for (int i = 0; i < 4; i++)
        ps_arg(&a, sizeof ai[i], &ai[i]);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(plan->ctx, a.err, "clSetKernelArg (merge_rows)");
    const size_t g[2] = {count, d->batch * d->heads};
    return ps_launch(plan->ctx, a.kernel, "merge_rows", 2, g, NULL, ev);
}

/* Merges the compact (oc, lsec) of `count` rows into square rows
 * [row0, row0 + count). */
static ps_status merge_into(causal_run *c, size_t row0, size_t count)
{
    ps_pipeline_state *p = c->plan->pipeline;
    cl_event ev = NULL;
    ps_status st =
        merge_rows_enqueue(c->plan, c->o, c->lse, p->oc, p->lsec, c->qoff + row0, count, &ev);
    if (st == PS_OK)
        track(&c->first, &c->last, NULL, ev);
    return st;
}

static ps_status causal_leaf(causal_run *c, size_t lo, size_t hi)
{
    ps_plan *plan = c->plan;
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    const size_t cnt = hi - lo, n = d->n_q, qh = d->batch * d->heads;
    ps_attention_desc shape = *d;
    shape.causal = 1;
    cl_event a = NULL, b = NULL;
    ps_status st;
    shape.n_q = shape.n_k = cnt;
    st = gather(c, lo, cnt, c->off + lo, cnt, p->kc, p->vc);
    if (st == PS_OK)
        st = ps_exact_enqueue_shape(plan, &shape, p->qc, p->kc, p->vc, p->oc, p->lsec, &a, &b);
    track(&c->first, &c->last, a, b);
    if (st != PS_OK)
        return st;
    if (c->off) /* the key prefix's part is already in O/LSE */
        return merge_into(c, lo, cnt);
    st = copy_rows(c, p->oc, c->o, qh, cnt, 0, n, c->qoff + lo, cnt, d->d_v);
    if (st == PS_OK)
        st = copy_rows(c, p->lsec, c->lse, qh, cnt, 0, n, c->qoff + lo, cnt, 1);
    return st;
}

/* Diagnostic switches of the plan (lib/diagnostic.c) hold for its nodes. */
static void node_sync(const ps_plan *plan, ps_plan *node)
{
    node->diag_unit_residual_weight = plan->diag_unit_residual_weight;
}

/* The key half of a node: its key rows into its own buffers, then the
 * child's key half. Child stage marks are dropped (the parent times the
 * recursion as a whole). */
static ps_status node_keys(causal_run *c, causal_node *nd)
{
    cl_event a = NULL, b = NULL;
    node_sync(c->plan, nd->plan);
    ps_status st = gather(c, 0, 0, nd->k0, nd->nk, nd->k, nd->v);
    if (st == PS_OK)
        st = ps_pipeline_enqueue_keys(nd->plan, nd->k, nd->v, &a, &b);
    track(&c->first, &c->last, a, b);
    ps_marks_reset(nd->plan);
    return st;
}

/* The query half of a quarter node: its query rows into qc, the child's
 * query half into (oc, lsec), merged into rows [q0, q0 + nq). */
static ps_status node_queries(causal_run *c, causal_node *nd)
{
    ps_pipeline_state *p = c->plan->pipeline;
    cl_event a = NULL, b = NULL;
    node_sync(c->plan, nd->plan);
    ps_status st = gather(c, nd->q0, nd->nq, 0, 0, NULL, NULL);
    if (st == PS_OK)
        st = ps_pipeline_enqueue_queries(nd->plan, p->qc, p->oc, p->lsec, &a, &b);
    track(&c->first, &c->last, a, b);
    ps_marks_reset(nd->plan);
    if (st != PS_OK)
        return st;
    return merge_into(c, nd->q0, nd->nq);
}

/* Keys [0, off), seen by every query, written straight into O/LSE: the
 * prefix node's query half (all queries, read in place), or exact attention
 * when the prefix has fewer than min_seq_len keys. */
static ps_status causal_prefix(causal_run *c)
{
    ps_plan *plan = c->plan;
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    cl_event a = NULL, b = NULL;
    ps_status st;
    if (p->prefix) {
        node_sync(plan, p->prefix->plan);
        st = ps_pipeline_enqueue_queries(p->prefix->plan, c->q, c->o, c->lse, &a, &b);
        ps_marks_reset(p->prefix->plan);
    } else {
        ps_attention_desc shape = *d;
        shape.causal = 0;
        shape.n_k = c->off;
        st = gather(c, 0, 0, 0, c->off, p->kc, p->vc);
        if (st == PS_OK)
            st = ps_exact_enqueue_shape(plan, &shape, c->q, p->kc, p->vc, c->o, c->lse, &a,
                                        &b);
    }
    track(&c->first, &c->last, a, b);
    return st;
}

static ps_status query_visit(void *user, const ps_causal_part *part)
{
    causal_run *c = user;
    if (!part->quarter)
        return causal_leaf(c, part->lo, part->hi);
    return node_queries(c, &c->plan->pipeline->nodes[part->index]);
}

/* Whether the plan runs the recursion (else: exact over all keys). */
static int causal_recursive(const ps_attention_desc *d)
{
    return square_rows(d) > d->min_seq_len;
}

/* Query rows before the square (n_q > n_k) see no key: O = 0, LSE = -inf. */
static ps_status causal_empty_rows(causal_run *c)
{
    ps_context *ctx = c->plan->ctx;
    const ps_attention_desc *d = &c->plan->desc;
    cl_kernel kern = c->plan->pipeline->empty_rows;
    const cl_int rows = (cl_int)d->n_q, count = (cl_int)c->qoff, dv = (cl_int)d->d_v;
    ps_arg_setter a = {kern, 0, CL_SUCCESS};
    ps_arg(&a, sizeof c->o, &c->o);
    ps_arg(&a, sizeof c->lse, &c->lse);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof count, &count);
    ps_arg(&a, sizeof dv, &dv);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (empty_rows)");
    const size_t g[2] = {c->qoff, d->batch * d->heads};
    cl_event ev = NULL;
    ps_status st = ps_launch(ctx, kern, "empty_rows", 2, g, NULL, &ev);
    if (st == PS_OK)
        track(&c->first, &c->last, ev, NULL);
    return st;
}

static ps_status causal_finish(causal_run *c, ps_status st, cl_event *first, cl_event *done)
{
    if (st != PS_OK) {
        /* lib/attention.c waits for the parts enqueued before the failure. */
        if (c->first)
            clReleaseEvent(c->first);
        if (c->last)
            clReleaseEvent(c->last);
        return st;
    }
    *first = c->first;
    *done = c->last;
    return PS_OK;
}

/* The key half of every node; remembers k and v for the leaves. */
static ps_status causal_keys(ps_plan *plan, cl_mem k, cl_mem v, cl_event *first,
                             cl_event *done)
{
    ps_pipeline_state *p = plan->pipeline;
    causal_run c = run_init(plan, NULL, k, v, NULL, NULL);
    ps_status st = PS_OK;
    p->causal_k = k;
    p->causal_v = v;
    if (p->prefix)
        st = node_keys(&c, p->prefix);
    for (size_t i = 0; i < p->n_nodes && st == PS_OK; i++)
        st = node_keys(&c, &p->nodes[i]);
    return causal_finish(&c, st, first, done);
}

/* The query half: the prefix, then the walk (leaves read the K/V of the
 * last key half; quarters run their node's query half). */
static ps_status causal_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse,
                                cl_event *first, cl_event *done)
{
    ps_pipeline_state *p = plan->pipeline;
    const ps_attention_desc *d = &plan->desc;
    causal_run c = run_init(plan, q, p->causal_k, p->causal_v, o, lse ? lse : p->lse_own);
    ps_status st = c.qoff ? causal_empty_rows(&c) : PS_OK;
    if (st == PS_OK && c.off)
        st = causal_prefix(&c);
    if (st == PS_OK)
        st = ps_causal_walk(square_rows(d), d->min_seq_len, query_visit, &c, NULL);
    return causal_finish(&c, st, first, done);
}

static ps_status causal_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                cl_mem lse, cl_event *first, cl_event *done)
{
    const ps_attention_desc *d = &plan->desc;
    /* Few queries: exact causal attention over all keys, prefix included. */
    if (!causal_recursive(d))
        return ps_exact_enqueue(plan, q, k, v, o, lse, first, done);
    cl_event f1 = NULL, l1 = NULL, f2 = NULL, l2 = NULL;
    ps_status st = causal_keys(plan, k, v, &f1, &l1);
    if (st == PS_OK)
        st = causal_queries(plan, q, o, lse, &f2, &l2);
    track(&f1, &l1, f2, l2);
    if (st != PS_OK || !l1) {
        if (f1)
            clReleaseEvent(f1);
        if (l1)
            clReleaseEvent(l1);
        return st != PS_OK ? st
                           : ps_fail(plan->ctx, PS_ERR_INTERNAL, "ps_attention: empty causal run");
    }
    *first = f1;
    *done = l1;
    return PS_OK;
}

/* ---- Causal plan setup ---------------------------------------------------- */

/* A node's child plan and key buffers. */
static ps_status node_create(ps_plan *plan, causal_node *nd, uint64_t id)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const size_t kh = d->batch * d->kv_heads, f = sizeof(float);
    ps_attention_desc cd;
    ps_status st = ps_causal_node_desc(d, nd->nq, nd->k0, nd->nk, id, &cd);
    if (st != PS_OK)
        return ps_fail(ctx, PS_ERR_INTERNAL,
                       "ps_plan_create: causal node %llu has no valid descriptor (%s)",
                       (unsigned long long)id, ps_status_string(st));
    st = ps_plan_create_node(ctx, &cd, &nd->plan);
    if (st != PS_OK)
        return st;
    /* HYPER without global keys attends the node's key rows themselves, so
     * they must outlive the key half; every other child copies what it keeps
     * (selected or split rows) and reads them from the shared scratch. */
    if (cd.method == PS_METHOD_HYPER && cd.global_keys == 0) {
        nd->own_kv = 1;
        nd->k = alloc(ctx, kh * nd->nk * d->d * f, "causal node keys", &st);
        nd->v = alloc(ctx, kh * nd->nk * d->d_v * f, "causal node values", &st);
    }
    return st;
}

/* The key-row scratch of the nodes that do not keep their rows: as many rows
 * as the largest of them. */
static ps_status scratch_setup(ps_plan *plan, ps_pipeline_state *p)
{
    const ps_attention_desc *d = &plan->desc;
    const size_t kh = d->batch * d->kv_heads, f = sizeof(float);
    size_t rows = 0;
    for (size_t i = 0; i < p->node_slots; i++)
        if (p->nodes[i].plan && !p->nodes[i].own_kv && p->nodes[i].nk > rows)
            rows = p->nodes[i].nk;
    if (rows == 0)
        return PS_OK;
    ps_status st = PS_OK;
    p->ks = alloc(plan->ctx, kh * rows * d->d * f, "causal node key scratch", &st);
    p->vs = alloc(plan->ctx, kh * rows * d->d_v * f, "causal node value scratch", &st);
    for (size_t i = 0; i < p->node_slots && st == PS_OK; i++)
        if (p->nodes[i].plan && !p->nodes[i].own_kv) {
            p->nodes[i].k = p->ks;
            p->nodes[i].v = p->vs;
        }
    return st;
}

static ps_status count_visit(void *user, const ps_causal_part *part)
{
    (void)user;
    (void)part;
    return PS_OK;
}

static ps_status setup_visit(void *user, const ps_causal_part *part)
{
    ps_plan *plan = user;
    if (!part->quarter)
        return PS_OK;
    ps_pipeline_state *p = plan->pipeline;
    causal_node *nd = &p->nodes[part->index];
    nd->q0 = part->mid;
    nd->nq = part->hi - part->mid;
    nd->k0 = plan->desc.n_k - square_rows(&plan->desc) + part->lo;
    nd->nk = part->mid - part->lo;
    p->n_nodes = part->index + 1;
    return node_create(plan, nd, part->node);
}

/* Compact buffers of the leaves and the query halves, and one child plan per
 * node (the nodes of ps_causal_walk, plus the key prefix when it has at
 * least min_seq_len keys). */
static ps_status causal_setup(ps_plan *plan, ps_pipeline_state *p)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    if (ps_plan_path(plan) == PS_METHOD_EXACT || !causal_recursive(d))
        return PS_OK; /* exact attention over all keys */
    const size_t qheads = d->batch * d->heads, kheads = d->batch * d->kv_heads;
    const size_t n_sq = square_rows(d), f = sizeof(float);
    const size_t off = d->n_k - n_sq;
    /* Leaves and quarter queries: at most ceil(n_sq / 2) rows (the root is
     * never a leaf); an exact key prefix: off rows. */
    const size_t cap = (n_sq + 1) / 2;
    const size_t cap_k = off < d->min_seq_len && off > cap ? off : cap;
    ps_status st = PS_OK;
    p->cap = cap;
    p->qc = alloc(ctx, qheads * cap * d->d * f, "causal query rows", &st);
    p->kc = alloc(ctx, kheads * cap_k * d->d * f, "causal key rows", &st);
    p->vc = alloc(ctx, kheads * cap_k * d->d_v * f, "causal value rows", &st);
    p->oc = alloc(ctx, qheads * cap * d->d_v * f, "causal partial output", &st);
    p->lsec = alloc(ctx, qheads * cap * f, "causal partial lse", &st);
    p->lse_own = alloc(ctx, qheads * d->n_q * f, "causal row lse", &st);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "copy_rows", &p->copy_rows);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "merge_rows", &p->merge_rows);
    if (st == PS_OK && d->n_q > n_sq) /* rows that see no key */
        st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "empty_rows", &p->empty_rows);
    if (st != PS_OK)
        return st;
    size_t quarters = 0;
    ps_causal_walk(n_sq, d->min_seq_len, count_visit, NULL, &quarters);
    /* The quarters, then one slot for the prefix. */
    p->nodes = ps_calloc(quarters + 1, sizeof *p->nodes);
    if (!p->nodes)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    p->node_slots = quarters + 1;
    st = ps_causal_walk(n_sq, d->min_seq_len, setup_visit, plan, NULL);
    if (st == PS_OK && off >= d->min_seq_len) {
        p->prefix = &p->nodes[quarters];
        p->prefix->q0 = 0;
        p->prefix->nq = d->n_q; /* off > 0: n_sq = n_q */
        p->prefix->k0 = 0;
        p->prefix->nk = off;
        st = node_create(plan, p->prefix, 0);
    }
    if (st == PS_OK)
        st = scratch_setup(plan, p);
    return st;
}

static void node_release(causal_node *nd)
{
    ps_plan_destroy(nd->plan);
    if (nd->own_kv && nd->k)
        clReleaseMemObject(nd->k);
    if (nd->own_kv && nd->v)
        clReleaseMemObject(nd->v);
    memset(nd, 0, sizeof *nd);
}

/* ---- Global keys (docs/GLOBAL.md) ---------------------------------------- */

/* Global scores of the candidates (keys [kheads][c][d]), the top g, and the
 * split into kg/vg (global) and kr/vr (the rest, for the hyper stage). */
static ps_status global_split_enqueue(ps_plan *plan, cl_mem keys, cl_mem values,
                                      cl_event *first, cl_event *last)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    const size_t kheads = d->batch * d->kv_heads;
    const int own = d->method == PS_METHOD_PRESCORE && d->global_score == d->score;
    const cl_int n_scores = (cl_int)d->n_k, n_cand = (cl_int)p->keys_used, g = (cl_int)p->g,
                 dim = (cl_int)d->d, dv = (cl_int)d->d_v, mode = own ? 0 : 1;
    cl_mem scores = own ? p->scores : p->gscores, idx = own ? p->indices : p->gsel;
    const size_t per_key[2] = {p->keys_used, kheads};
    cl_event ev = NULL;
    ps_status st;

    ps_arg_setter a = {p->global_scores, 0, CL_SUCCESS};
    ps_arg(&a, sizeof scores, &scores);
    ps_arg(&a, sizeof idx, &idx);
    ps_arg(&a, sizeof keys, &keys);
    ps_arg(&a, sizeof p->gscores, &p->gscores);
    ps_arg(&a, sizeof n_scores, &n_scores);
    ps_arg(&a, sizeof n_cand, &n_cand);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof mode, &mode);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (global_scores)");
    st = ps_launch(ctx, a.kernel, "global_scores", 2, per_key, NULL, &ev);
    if (st != PS_OK)
        return st;
    track(first, last, ev, NULL);

    a = (ps_arg_setter){p->global_pick, 0, CL_SUCCESS};
    ps_arg(&a, sizeof p->gscores, &p->gscores);
    ps_arg(&a, sizeof p->gsel, &p->gsel);
    ps_arg(&a, sizeof n_cand, &n_cand);
    ps_arg(&a, sizeof g, &g);
    ps_arg(&a, p->pick_group * sizeof(cl_ulong), NULL);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (global_pick)");
    ev = NULL;
    const size_t pick_global[1] = {kheads * p->pick_group}, pick_local[1] = {p->pick_group};
    st = ps_launch(ctx, a.kernel, "global_pick", 1, pick_global, pick_local, &ev);
    if (st != PS_OK)
        return st;
    track(first, last, NULL, ev);

    a = (ps_arg_setter){p->global_split, 0, CL_SUCCESS};
    ps_arg(&a, sizeof keys, &keys);
    ps_arg(&a, sizeof values, &values);
    ps_arg(&a, sizeof p->gsel, &p->gsel);
    ps_arg(&a, sizeof p->kg, &p->kg);
    ps_arg(&a, sizeof p->vg, &p->vg);
    ps_arg(&a, sizeof p->kr, &p->kr);
    ps_arg(&a, sizeof p->vr, &p->vr);
    ps_arg(&a, sizeof n_cand, &n_cand);
    ps_arg(&a, sizeof g, &g);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof dv, &dv);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (global_split)");
    ev = NULL;
    st = ps_launch(ctx, a.kernel, "global_split", 2, per_key, NULL, &ev);
    if (st == PS_OK)
        track(first, last, NULL, ev);
    return st;
}

/* Exact attention of every query over the g global keys, merged into (o, lse)
 * in log-sum-exp space (both parts are over disjoint, non-empty key sets). */
static ps_status global_merge_enqueue(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse,
                                      cl_event *first, cl_event *last)
{
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    ps_attention_desc shape = *d;
    shape.causal = 0;
    shape.n_k = p->g;
    cl_event a = NULL, b = NULL;
    ps_status st = ps_exact_enqueue_shape(plan, &shape, q, p->kg, p->vg, p->og, p->lseg, &a, &b);
    track(first, last, a, b);
    if (st != PS_OK)
        return st;
    cl_event ev = NULL;
    st = merge_rows_enqueue(plan, o, lse, p->og, p->lseg, 0, d->n_q, &ev);
    if (st == PS_OK)
        track(first, last, NULL, ev);
    return st;
}

/* The query-independent half: scores, selection, gather, global split and
 * the keys' LSH sort; remembers the key set the query half attends to. */
ps_status ps_pipeline_enqueue_keys(ps_plan *plan, cl_mem k, cl_mem v, cl_event *first,
                                   cl_event *done)
{
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    ps_status st = PS_OK;
    cl_event ev_first = NULL, ev_last = NULL;
    if (d->causal) {
        p->causal_k = k;
        p->causal_v = v;
        *first = *done = NULL;
        if (!causal_recursive(d))
            return PS_OK; /* exact over all keys: nothing to prepare */
        ps_mark(plan, "causal");
        return causal_keys(plan, k, v, first, done);
    }

    cl_mem keys = k, values = v;
    if (d->method == PS_METHOD_PRESCORE) {
        /* The score and select stages enqueue without events: a marker dates
         * the start of the run for ps_plan_last_time_ms (none if it fails). */
        if (clEnqueueMarkerWithWaitList(plan->ctx->queue, 0, NULL, &ev_first) != CL_SUCCESS)
            ev_first = NULL;
        ps_mark(plan, "score");
        st = ps_score_enqueue(plan, k, p->scores);
        ps_mark(plan, "select");
        if (st == PS_OK)
            st = ps_select_enqueue(plan, p->scores, p->indices, p->counts);
        if (st == PS_OK)
            st = ps_select_gather_enqueue(plan, k, v, p->indices, p->counts, p->k_sel,
                                          p->v_sel);
        keys = p->k_sel;
        values = p->v_sel;
    }
    size_t used = p->keys_used;
    if (st == PS_OK && p->g) {
        /* The global keys leave the candidate set. */
        ps_mark(plan, "global_split");
        st = global_split_enqueue(plan, keys, values, &ev_first, &ev_last);
        keys = p->kr;
        values = p->vr;
        used -= p->g;
    }
    const ps_lsh_rows key_rows = {d->kv_heads, used, 0, used};
    cl_event a = NULL, b = NULL;
    ps_mark(plan, "lsh_keys");
    if (st == PS_OK)
        st = ps_lsh_enqueue(plan, &key_rows, keys, NULL, NULL, p->codes_k, p->perm_k,
                            p->perm_inv_k, &a, &b);
    track(&ev_first, &ev_last, a, b);
    p->keys_cur = keys;
    p->values_cur = values;
    p->used_cur = used;
    *first = ev_first;
    *done = ev_last;
    return st;
}

/* The query half against the key set of the last ps_pipeline_enqueue_keys. */
ps_status ps_pipeline_enqueue_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse,
                                      cl_event *first, cl_event *done)
{
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    ps_status st = PS_OK;
    cl_event ev_first = NULL, ev_last = NULL, a = NULL, b = NULL;
    if (d->causal) {
        ps_mark(plan, "causal");
        if (!causal_recursive(d))
            return ps_exact_enqueue(plan, q, p->causal_k, p->causal_v, o, lse, first, done);
        return causal_queries(plan, q, o, lse, first, done);
    }
    /* With global keys the hyper part needs a row LSE for the merge even when
     * the caller wants none. */
    cl_mem lse_h = lse ? lse : (p->g ? p->lse_own : NULL);

    const ps_lsh_rows query_rows = {d->heads, d->n_q, 0, d->n_q};
    ps_mark(plan, "lsh_queries");
    st = ps_lsh_enqueue(plan, &query_rows, q, NULL, NULL, p->codes_q, p->perm_q,
                        p->perm_inv_q, &a, &b);
    track(&ev_first, &ev_last, a, b);
    a = b = NULL;
    ps_mark(plan, "hyper");
    if (st == PS_OK)
        st = ps_hyper_enqueue(plan, q, p->keys_cur, p->values_cur, p->used_cur, p->perm_q,
                              p->perm_k, o, lse_h, &a, &b);
    track(&ev_first, &ev_last, a, b);
    if (p->g)
        ps_mark(plan, "global_merge");
    if (st == PS_OK && p->g)
        st = global_merge_enqueue(plan, q, o, lse_h, &ev_first, &ev_last);
    *first = ev_first;
    *done = ev_last;
    return st;
}

ps_status ps_pipeline_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem lse, cl_event *first, cl_event *done)
{
    cl_event ev_first = NULL, ev_last = NULL, a = NULL, b = NULL;
    if (plan->desc.causal) {
        ps_mark(plan, "causal");
        return causal_enqueue(plan, q, k, v, o, lse, first, done);
    }
    ps_status st = ps_pipeline_enqueue_keys(plan, k, v, &ev_first, &ev_last);
    if (st == PS_OK) {
        st = ps_pipeline_enqueue_queries(plan, q, o, lse, &a, &b);
        track(&ev_first, &ev_last, a, b);
    }
    if (st != PS_OK) {
        if (ev_first)
            clReleaseEvent(ev_first);
        if (ev_last)
            clReleaseEvent(ev_last);
        return st;
    }
    *first = ev_first;
    *done = ev_last;
    return PS_OK;
}
