/* Key-cache parameters from a descriptor (see kv_params.h). */
#include "kv_params.h"

#include "desc.h"

ps_status ps_kv_params_from_desc(const ps_attention_desc *desc, ps_kv_params *p,
                                 char *message, size_t message_size)
{
    ps_attention_desc r;
    ps_status st = ps_attention_desc_resolve(desc, &r, message, message_size);
    if (st != PS_OK)
        return st;
    if (r.method == PS_METHOD_HYPER)
        return ps_say(message, message_size, PS_ERR_UNSUPPORTED,
                      "method PS_METHOD_HYPER: a key cache is EXACT or PRESCORE (decode "
                      "attends its keys exactly; docs/API.md \"Decode\")");
    if (desc->cu_seqlens_q || desc->cu_seqlens_k)
        return ps_say(message, message_size, PS_ERR_UNSUPPORTED,
                      "cu_seqlens: a key cache holds one sequence per batch entry");
    if (desc->check_finite)
        return ps_say(message, message_size, PS_ERR_UNSUPPORTED,
                      "check_finite: not available for a key cache");
    if (desc->error_probes)
        return ps_say(message, message_size, PS_ERR_UNSUPPORTED,
                      "error_probes: not available for a key cache");
    if (ps_selection_weighted(desc->selection))
        return ps_say(message, message_size, PS_ERR_UNSUPPORTED,
                      "selection WEIGHTED or STRATIFIED: a key cache keeps its top-scored keys (its "
                      "streaming index ranks keys, it does not draw them)");
    p->rows = r.batch * r.kv_heads;
    p->capacity = r.n_k;
    p->max_queries = r.n_q;
    p->sink = r.sink;
    p->window = r.window;
    p->scored = r.method == PS_METHOD_PRESCORE;
    p->budget = desc->budget;
    p->keep_ratio = desc->budget ? 0.0f : desc->keep_ratio;
    p->rescore_growth = r.rescore_growth;
    p->kept_capacity = 0;
    if (p->scored) {
        const size_t full = p->budget ? p->budget
                                      : ps_keep_ratio_count(p->keep_ratio, p->capacity);
        p->kept_capacity = full < p->capacity ? full : p->capacity;
    }
    return PS_OK;
}
