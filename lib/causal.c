/* The causal recursion (docs/HYPER.md "Causal"; reference lib/ref/causal.c).
 *
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
 * So key reuse (ps_attention_prepare_keys) keeps every node's key half.
 * A square of at most min_seq_len rows is one leaf: the call is then exact
 * causal attention over all keys, prefix included (decided at setup). */
#include "causal.h"

#include "exact.h"
#include "merge.h"
#include "pipeline.h"
#include "plan.h"
#include "stage_times.h"
#include "core/causal_walk.h"
#include "core/host_alloc.h"
#include "core/tensor_layout.h"

#include <stdlib.h>
#include <string.h>

/* A node of the recursion. */
typedef struct causal_node {
    ps_plan *plan;      /* non-causal child */
    cl_mem k, v;        /* its key rows [B*Hkv][nk][d | d_v] (own, or the scratch) */
    int own_kv;         /* 1: k, v belong to the node (HYPER without global keys) */
    size_t q0, nq;      /* square query rows (the prefix: all n_q) */
    size_t k0, nk;      /* absolute key rows */
} causal_node;

struct ps_causal_state {
    int recursive; /* 0: the square is one leaf, exact causal attention over all keys */
    /* Compact sub-range buffers of cap = ceil(n_sq / 2) rows per head, and
     * the row LSE when the caller passes none. */
    cl_kernel copy_rows, merge_rows, empty_rows;
    cl_mem qc, kc, vc, oc, lsec; /* [B*H][cap][d], [B*Hkv][cap_k][d|dv], [B*H][cap][dv|1] */
    cl_mem lse_own;              /* [B*H][n] */
    size_t cap;
    causal_node *nodes;         /* one per quarter, in ps_causal_walk order */
    size_t n_nodes, node_slots; /* quarters; allocated slots (quarters + 1) */
    causal_node *prefix;        /* the key prefix node, or NULL */
    cl_mem k, v;                /* K/V of the last key half (the leaves read them) */
    cl_mem ks, vs;              /* key-row scratch of the nodes without own rows */
};

/* The square of the recursion: the last min(n_q, n_k) queries and keys. */
static size_t square_rows(const ps_attention_desc *d)
{
    return d->n_q < d->n_k ? d->n_q : d->n_k;
}

/* ---- Setup ----------------------------------------------------------------- */

/* A node's child plan and key buffers. */
static ps_status node_create(ps_plan *plan, causal_node *nd, uint64_t id)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const size_t kh = d->batch * d->kv_heads, ke = ps_dtype_size(d->k_layout.dtype),
                 ve = ps_dtype_size(d->v_layout.dtype);
    ps_attention_desc cd;
    ps_status st = ps_causal_node_desc(d, nd->nq, nd->k0, nd->nk, id, &cd);
    if (st != PS_OK)
        return ps_fail(ctx, PS_ERR_INTERNAL,
                       "ps_plan_create: causal node %llu has no valid descriptor (%s)",
                       (unsigned long long)id, ps_status_string(st));
    st = ps_plan_create_node(ctx, &cd, &nd->plan);
    if (st != PS_OK)
        return st;
    nd->plan->sketch_optional = plan->sketch_optional; /* prepared keys: as the plan's */
    /* HYPER without global keys attends the node's key rows themselves, so
     * they must outlive the key half; every other child copies what it keeps
     * (selected or split rows) and reads them from the shared scratch. */
    if (cd.method == PS_METHOD_HYPER && cd.global_keys == 0) {
        nd->own_kv = 1;
        nd->k = ps_workspace_buffer(ctx, kh * nd->nk * d->d * ke, "causal node keys", &st);
        nd->v = ps_workspace_buffer(ctx, kh * nd->nk * d->d_v * ve, "causal node values", &st);
    }
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

/* The key-row scratch of the nodes that do not keep their rows: as many rows
 * as the largest of them. */
static ps_status scratch_setup(ps_plan *plan, ps_causal_state *cs)
{
    const ps_attention_desc *d = &plan->desc;
    const size_t kh = d->batch * d->kv_heads, ke = ps_dtype_size(d->k_layout.dtype),
                 ve = ps_dtype_size(d->v_layout.dtype);
    size_t rows = 0;
    for (size_t i = 0; i < cs->node_slots; i++)
        if (cs->nodes[i].plan && !cs->nodes[i].own_kv && cs->nodes[i].nk > rows)
            rows = cs->nodes[i].nk;
    if (rows == 0)
        return PS_OK;
    ps_status st = PS_OK;
    cs->ks = ps_workspace_buffer(plan->ctx, kh * rows * d->d * ke, "causal node key scratch", &st);
    cs->vs =
        ps_workspace_buffer(plan->ctx, kh * rows * d->d_v * ve, "causal node value scratch", &st);
    for (size_t i = 0; i < cs->node_slots && st == PS_OK; i++)
        if (cs->nodes[i].plan && !cs->nodes[i].own_kv) {
            cs->nodes[i].k = cs->ks;
            cs->nodes[i].v = cs->vs;
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
    ps_causal_state *cs = plan->causal;
    causal_node *nd = &cs->nodes[part->index];
    nd->q0 = part->mid;
    nd->nq = part->hi - part->mid;
    nd->k0 = plan->desc.n_k - square_rows(&plan->desc) + part->lo;
    nd->nk = part->mid - part->lo;
    cs->n_nodes = part->index + 1;
    return node_create(plan, nd, part->node);
}

/* Compact buffers of the leaves and the query halves, and one child plan per
 * node (the nodes of ps_causal_walk, plus the key prefix when it has at
 * least min_seq_len keys). */
ps_status ps_causal_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_causal_state *cs = ps_calloc(1, sizeof *cs);
    if (!cs)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->causal = cs;
    const size_t n_sq = square_rows(d);
    /* Few queries (or keys): the root is a leaf, exact attention over all keys. */
    cs->recursive = n_sq > d->min_seq_len;
    if (!cs->recursive)
        return PS_OK;
    const size_t qheads = d->batch * d->heads, kheads = d->batch * d->kv_heads;
    const size_t f = sizeof(float), off = d->n_k - n_sq;
    /* Copies of Q, K and V rows keep their storage types (exact copies). */
    const size_t qe = ps_dtype_size(d->q_layout.dtype), ke = ps_dtype_size(d->k_layout.dtype),
                 ve = ps_dtype_size(d->v_layout.dtype);
    /* Leaves and quarter queries: at most ceil(n_sq / 2) rows (the root is
     * never a leaf); an exact key prefix: off rows. */
    const size_t cap = (n_sq + 1) / 2;
    const size_t cap_k = off < d->min_seq_len && off > cap ? off : cap;
    ps_status st = PS_OK;
    cs->cap = cap;
    cs->qc = ps_workspace_buffer(ctx, qheads * cap * d->d * qe, "causal query rows", &st);
    cs->kc = ps_workspace_buffer(ctx, kheads * cap_k * d->d * ke, "causal key rows", &st);
    cs->vc = ps_workspace_buffer(ctx, kheads * cap_k * d->d_v * ve, "causal value rows", &st);
    cs->oc = ps_workspace_buffer(ctx, qheads * cap * d->d_v * f, "causal partial output", &st);
    cs->lsec = ps_workspace_buffer(ctx, qheads * cap * f, "causal partial lse", &st);
    cs->lse_own = ps_workspace_buffer(ctx, qheads * d->n_q * f, "causal row lse", &st);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "copy_rows", &cs->copy_rows);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "merge_rows", &cs->merge_rows);
    if (st == PS_OK && d->n_q > n_sq) /* rows that see no key */
        st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "empty_rows", &cs->empty_rows);
    if (st != PS_OK)
        return st;
    size_t quarters = 0;
    ps_causal_walk(n_sq, d->min_seq_len, count_visit, NULL, &quarters);
    /* The quarters, then one slot for the prefix. */
    cs->nodes = ps_calloc(quarters + 1, sizeof *cs->nodes);
    if (!cs->nodes)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    cs->node_slots = quarters + 1;
    st = ps_causal_walk(n_sq, d->min_seq_len, setup_visit, plan, NULL);
    if (st == PS_OK && off >= d->min_seq_len) {
        cs->prefix = &cs->nodes[quarters];
        cs->prefix->q0 = 0;
        cs->prefix->nq = d->n_q; /* off > 0: n_sq = n_q */
        cs->prefix->k0 = 0;
        cs->prefix->nk = off;
        st = node_create(plan, cs->prefix, 0);
    }
    if (st == PS_OK)
        st = scratch_setup(plan, cs);
    return st;
}

void ps_causal_release(ps_plan *plan)
{
    ps_causal_state *cs = plan->causal;
    if (!cs)
        return;
    cl_mem bufs[] = {cs->qc, cs->kc, cs->vc, cs->oc, cs->lsec, cs->lse_own, cs->ks, cs->vs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            clReleaseMemObject(bufs[i]);
    for (size_t i = 0; cs->nodes && i < cs->node_slots; i++)
        node_release(&cs->nodes[i]);
    free(cs->nodes);
    cl_kernel kernels[] = {cs->copy_rows, cs->merge_rows, cs->empty_rows};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    free(cs);
    plan->causal = NULL;
}

/* ---- One run ---------------------------------------------------------------- */

typedef struct causal_run {
    ps_plan *plan;
    ps_causal_state *cs;
    ps_tensor q, k, v, o; /* the caller's tensors, in the plan's layouts */
    cl_mem lse;           /* the caller's, or the plan's own row LSE */
    size_t off;  /* n_k - n_sq: key row of square position 0 */
    size_t qoff; /* n_q - n_sq: query row of square position 0 */
} causal_run;

static causal_run run_init(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse)
{
    const ps_attention_desc *d = &plan->desc;
    const size_t n_sq = square_rows(d);
    causal_run c = {plan,
                    plan->causal,
                    ps_plan_tensor(plan, PS_TENSOR_Q, q),
                    ps_plan_tensor(plan, PS_TENSOR_K, k),
                    ps_plan_tensor(plan, PS_TENSOR_V, v),
                    ps_plan_tensor(plan, PS_TENSOR_O, o),
                    lse,
                    d->n_k - n_sq,
                    d->n_q - n_sq};
    return c;
}

/* A compact copy of `rows` rows per head of the caller's tensor t. */
static ps_tensor compact(const ps_tensor *t, cl_mem mem, size_t rows, size_t dim)
{
    return ps_dense_tensor(mem, rows, dim, (int)t->view.f16);
}

static ps_status copy_rows(causal_run *c, const ps_tensor *src, const ps_tensor *dst,
                           size_t heads, size_t src_row0, size_t dst_row0, size_t count,
                           size_t width)
{
    return ps_copy_rows_enqueue(c->plan, c->cs->copy_rows, src, dst, heads, src_row0, dst_row0,
                                count, width);
}

/* Copies Q rows [q0, q0 + nq) of the square into qc (when nq > 0) and
 * K/V rows [k0, k0 + nk) (absolute) into kd/vd, each compact in the
 * caller's storage types. */
static ps_status gather(causal_run *c, size_t q0, size_t nq, size_t k0, size_t nk, cl_mem kd,
                        cl_mem vd)
{
    const ps_attention_desc *d = &c->plan->desc;
    const size_t qh = d->batch * d->heads, kh = d->batch * d->kv_heads;
    ps_status st = PS_OK;
    if (nq) {
        const ps_tensor qc = compact(&c->q, c->cs->qc, nq, d->d);
        st = copy_rows(c, &c->q, &qc, qh, c->qoff + q0, 0, nq, d->d);
    }
    if (st == PS_OK && nk) {
        const ps_tensor kc = compact(&c->k, kd, nk, d->d), vc = compact(&c->v, vd, nk, d->d_v);
        st = copy_rows(c, &c->k, &kc, kh, k0, 0, nk, d->d);
        if (st == PS_OK)
            st = copy_rows(c, &c->v, &vc, kh, k0, 0, nk, d->d_v);
    }
    return st;
}

/* Merges the compact (oc, lsec) of `count` rows into square rows
 * [row0, row0 + count). */
static ps_status merge_into(causal_run *c, size_t row0, size_t count)
{
    const ps_tensor oc = ps_dense_tensor(c->cs->oc, count, c->plan->desc.d_v, 0);
    return ps_merge_rows_enqueue(c->plan, c->cs->merge_rows, &c->o, c->lse, &oc, c->cs->lsec,
                                 c->qoff + row0, count);
}

static ps_status causal_leaf(causal_run *c, size_t lo, size_t hi)
{
    ps_plan *plan = c->plan;
    const ps_attention_desc *d = &plan->desc;
    ps_causal_state *cs = c->cs;
    const size_t cnt = hi - lo, qh = d->batch * d->heads;
    ps_attention_desc shape = *d;
    shape.causal = 1;
    ps_status st;
    shape.n_q = shape.n_k = cnt;
    const ps_tensor qc = compact(&c->q, cs->qc, cnt, d->d), kc = compact(&c->k, cs->kc, cnt, d->d),
                    vc = compact(&c->v, cs->vc, cnt, d->d_v),
                    oc = ps_dense_tensor(cs->oc, cnt, d->d_v, 0);
    st = gather(c, lo, cnt, c->off + lo, cnt, cs->kc, cs->vc);
    if (st == PS_OK)
        st = ps_exact_enqueue_shape(plan, &shape, &qc, &kc, &vc, &oc, cs->lsec);
    if (st != PS_OK)
        return st;
    if (c->off) /* the key prefix's part is already in O/LSE */
        return merge_into(c, lo, cnt);
    const ps_tensor lsec = ps_dense_tensor(cs->lsec, cnt, 1, 0),
                    lse = ps_dense_tensor(c->lse, d->n_q, 1, 0);
    st = copy_rows(c, &oc, &c->o, qh, 0, c->qoff + lo, cnt, d->d_v);
    if (st == PS_OK)
        st = copy_rows(c, &lsec, &lse, qh, 0, c->qoff + lo, cnt, 1);
    return st;
}

/* Diagnostic switches of the plan (lib/diagnostic.c) hold for its nodes. */
static void node_sync(const ps_plan *plan, ps_plan *node)
{
    node->diag_unit_residual_weight = plan->diag_unit_residual_weight;
}

/* The key half of a node: its key rows into its own buffers, then the
 * child's key half; a child with a query sketch reads the node's query rows
 * (a quarter's copied into qc first, the prefix's in place) when the call
 * has queries (c->q.mem; none for prepared keys). Child stage marks are
 * dropped (the parent times the recursion as a whole). */
static ps_status node_keys(causal_run *c, causal_node *nd, int prefix)
{
    node_sync(c->plan, nd->plan);
    const int sketch = nd->plan->sketch && c->q.mem;
    ps_status st = gather(c, sketch && !prefix ? nd->q0 : 0, sketch && !prefix ? nd->nq : 0,
                          nd->k0, nd->nk, nd->k, nd->v);
    cl_mem q = !sketch ? NULL : prefix ? c->q.mem : c->cs->qc;
    if (st == PS_OK)
        st = ps_pipeline_enqueue_keys(nd->plan, nd->k, nd->v, q);
    ps_marks_reset(nd->plan);
    return st;
}

/* The query half of a quarter node: its query rows into qc, the child's
 * query half into (oc, lsec), merged into rows [q0, q0 + nq). */
static ps_status node_queries(causal_run *c, causal_node *nd)
{
    ps_causal_state *cs = c->cs;
    node_sync(c->plan, nd->plan);
    ps_status st = gather(c, nd->q0, nd->nq, 0, 0, NULL, NULL);
    if (st == PS_OK)
        st = ps_pipeline_enqueue_queries(nd->plan, cs->qc, cs->oc, cs->lsec);
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
    ps_causal_state *cs = c->cs;
    ps_status st;
    if (cs->prefix) {
        node_sync(plan, cs->prefix->plan);
        st = ps_pipeline_enqueue_queries(cs->prefix->plan, c->q.mem, c->o.mem, c->lse);
        ps_marks_reset(cs->prefix->plan);
    } else {
        ps_attention_desc shape = *d;
        shape.causal = 0;
        shape.n_k = c->off;
        const ps_tensor kc = compact(&c->k, cs->kc, c->off, d->d),
                        vc = compact(&c->v, cs->vc, c->off, d->d_v);
        st = gather(c, 0, 0, 0, c->off, cs->kc, cs->vc);
        if (st == PS_OK)
            st = ps_exact_enqueue_shape(plan, &shape, &c->q, &kc, &vc, &c->o, c->lse);
    }
    return st;
}

static ps_status query_visit(void *user, const ps_causal_part *part)
{
    causal_run *c = user;
    if (!part->quarter)
        return causal_leaf(c, part->lo, part->hi);
    return node_queries(c, &c->cs->nodes[part->index]);
}

/* Query rows before the square (n_q > n_k) see no key: O = 0, LSE = -inf. */
static ps_status causal_empty_rows(causal_run *c)
{
    return ps_empty_rows_enqueue(c->plan, c->cs->empty_rows, &c->o, c->lse, c->qoff);
}

/* The key half of every node (q: the call's queries for the nodes' query
 * sketches, NULL for prepared keys); remembers k and v for the leaves. */
static ps_status causal_keys(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v)
{
    ps_causal_state *cs = plan->causal;
    causal_run c = run_init(plan, q, k, v, NULL, NULL);
    ps_status st = PS_OK;
    cs->k = k;
    cs->v = v;
    if (cs->prefix)
        st = node_keys(&c, cs->prefix, 1);
    for (size_t i = 0; i < cs->n_nodes && st == PS_OK; i++)
        st = node_keys(&c, &cs->nodes[i], 0);
    return st;
}

/* The query half: the prefix, then the walk (leaves read the K/V of the
 * last key half; quarters run their node's query half). */
static ps_status causal_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse)
{
    ps_causal_state *cs = plan->causal;
    const ps_attention_desc *d = &plan->desc;
    causal_run c = run_init(plan, q, cs->k, cs->v, o, lse ? lse : cs->lse_own);
    ps_status st = c.qoff ? causal_empty_rows(&c) : PS_OK;
    if (st == PS_OK && c.off)
        st = causal_prefix(&c);
    if (st == PS_OK)
        st = ps_causal_walk(square_rows(d), d->min_seq_len, query_visit, &c, NULL);
    return st;
}

/* ---- Entry points -------------------------------------------------------------- */

ps_status ps_causal_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse)
{
    ps_mark(plan, "causal");
    if (!plan->causal->recursive) {
        const ps_tensor tq = ps_plan_tensor(plan, PS_TENSOR_Q, q),
                        tk = ps_plan_tensor(plan, PS_TENSOR_K, k),
                        tv = ps_plan_tensor(plan, PS_TENSOR_V, v),
                        to = ps_plan_tensor(plan, PS_TENSOR_O, o);
        return ps_exact_enqueue(plan, &tq, &tk, &tv, &to, lse);
    }
    ps_status st = causal_keys(plan, q, k, v);
    if (st == PS_OK)
        st = causal_queries(plan, q, o, lse);
    return st;
}

ps_status ps_causal_enqueue_keys(ps_plan *plan, cl_mem k, cl_mem v)
{
    ps_causal_state *cs = plan->causal;
    cs->k = k;
    cs->v = v;
    if (!cs->recursive)
        return PS_OK; /* exact over all keys: nothing to prepare */
    ps_mark(plan, "causal");
    return causal_keys(plan, NULL, k, v);
}

ps_status ps_causal_enqueue_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse)
{
    ps_causal_state *cs = plan->causal;
    ps_mark(plan, "causal");
    if (!cs->recursive) {
        const ps_tensor tq = ps_plan_tensor(plan, PS_TENSOR_Q, q),
                        tk = ps_plan_tensor(plan, PS_TENSOR_K, cs->k),
                        tv = ps_plan_tensor(plan, PS_TENSOR_V, cs->v),
                        to = ps_plan_tensor(plan, PS_TENSOR_O, o);
        return ps_exact_enqueue(plan, &tq, &tk, &tv, &to, lse);
    }
    return causal_queries(plan, q, o, lse);
}
