/* Placeholder until the key cache lands (this commit only fixes the API). */
#include "internal.h"

ps_status ps_kv_cache_create(ps_context *ctx, const ps_attention_desc *desc, ps_kv_cache **out)
{
    (void)desc;
    if (out)
        *out = NULL;
    return ps_fail(ctx, PS_ERR_NOT_IMPLEMENTED, "ps_kv_cache_create: not implemented yet");
}
ps_status ps_kv_cache_destroy(ps_kv_cache *c) { (void)c; return PS_OK; }
ps_status ps_kv_cache_append(ps_kv_cache *c, cl_mem k, cl_mem v, size_t n)
{ (void)c; (void)k; (void)v; (void)n; return PS_ERR_NOT_IMPLEMENTED; }
ps_status ps_kv_cache_append_host(ps_kv_cache *c, const void *k, const void *v, size_t n)
{ (void)c; (void)k; (void)v; (void)n; return PS_ERR_NOT_IMPLEMENTED; }
ps_status ps_kv_cache_rescore(ps_kv_cache *c) { (void)c; return PS_ERR_NOT_IMPLEMENTED; }
ps_status ps_kv_cache_reset(ps_kv_cache *c) { (void)c; return PS_ERR_NOT_IMPLEMENTED; }
ps_status ps_kv_cache_decode(ps_kv_cache *c, cl_mem q, size_t n_q, cl_mem o, cl_mem lse,
                             ps_decode_mode m)
{ (void)c; (void)q; (void)n_q; (void)o; (void)lse; (void)m; return PS_ERR_NOT_IMPLEMENTED; }
ps_status ps_kv_cache_decode_host(ps_kv_cache *c, const void *q, size_t n_q, void *o,
                                  float *lse, ps_decode_mode m)
{ (void)c; (void)q; (void)n_q; (void)o; (void)lse; (void)m; return PS_ERR_NOT_IMPLEMENTED; }
ps_status ps_kv_cache_get_info(const ps_kv_cache *c, ps_kv_cache_info *i)
{ (void)c; (void)i; return PS_ERR_NOT_IMPLEMENTED; }
ps_status ps_kv_cache_kept(ps_kv_cache *c, uint32_t *p, uint32_t *n)
{ (void)c; (void)p; (void)n; return PS_ERR_NOT_IMPLEMENTED; }
const char *ps_kv_cache_last_error(const ps_kv_cache *c) { (void)c; return ""; }
