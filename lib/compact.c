/* Compact copies of strided inputs (lib/compact.h). */
#include "compact.h"

#include "merge.h"
#include "core/tensor_layout.h"

ps_status ps_compaction_setup(ps_plan *plan, int id, const char *what, ps_compaction *c)
{
    const ps_attention_desc *d = &plan->desc;
    size_t dims[4];
    ps_desc_dims(d, (ps_tensor_id)id, dims);
    c->heads = dims[0] * dims[1];
    c->dim = dims[3];
    if (ps_layout_rows_adjacent(d, (ps_tensor_id)id))
        return PS_OK;
    const size_t bytes =
        c->heads * dims[2] * c->dim * ps_dtype_size(ps_desc_layout(d, (ps_tensor_id)id)->dtype);
    ps_status st = ps_buffer_create(plan->ctx, bytes, what, &c->buf);
    if (st == PS_OK)
        st = ps_kernel_create(plan->ctx, PS_PROGRAM_MERGE, "copy_rows", &c->copy_rows);
    return st;
}

void ps_compaction_release(ps_compaction *c)
{
    if (c->buf)
        clReleaseMemObject(c->buf);
    if (c->copy_rows)
        clReleaseKernel(c->copy_rows);
    c->buf = NULL;
    c->copy_rows = NULL;
}

ps_status ps_compaction_enqueue(ps_plan *plan, const ps_compaction *c, const ps_tensor *t,
                                size_t rows, ps_tensor *out)
{
    *out = *t;
    if (!c->buf || rows <= 1 || t->view.s_token == c->dim)
        return PS_OK;
    *out = ps_tensor_make(c->buf, ps_view_dense(rows, c->dim, (int)t->view.f16));
    return ps_copy_rows_enqueue(plan, c->copy_rows, t, out, c->heads, 0, 0, rows, c->dim);
}
