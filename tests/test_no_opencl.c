/* Unit test: the pure-C core (lib/core/) and the host reference (lib/ref/,
 * prescore_ref.h) compile without any OpenCL header, as docs/ARCHITECTURE.md
 * says; an OpenCL header pulled in by any of them stops the build here. The
 * layering itself is checked by tools/check_layers.py (test check_layers). */
#include "core/causal_walk.h"
#include "core/desc.h"
#include "core/global_params.h"
#include "core/host_alloc.h"
#include "core/lsh_rows.h"
#include "core/score_params.h"
#include "core/select_params.h"
#include "prescore/prescore_ref.h"
#include "ref/causal_ref.h"
#include "ref/exact_ref.h"
#include "ref/global_ref.h"
#include "ref/hyper_ref.h"
#include "ref/lsh_ref.h"
#include "ref/score_ref.h"

#if defined(CL_SUCCESS) || defined(__OPENCL_CL_H) || defined(__OPENCL_CL_PLATFORM_H)
#error "an OpenCL header was included by the core or the reference"
#endif

#include <stdio.h>

static ps_status count_part(void *user, const ps_causal_part *part)
{
    (void)part;
    ++*(size_t *)user;
    return PS_OK;
}

int main(void)
{
    /* Use the core a little, so the link is checked too. */
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.n_q = d.n_k = 100;
    d.d = d.d_v = 16;
    d.method = PS_METHOD_PRESCORE;
    d.budget = 40;
    ps_attention_desc r;
    if (ps_attention_desc_resolve(&d, &r, NULL, 0) != PS_OK || ps_candidate_count(&r) != 40)
        return 1;
    size_t parts = 0, quarters = 0;
    if (ps_causal_walk(100, 25, count_part, &parts, &quarters) != PS_OK || quarters != 3 ||
        parts != 7)
        return 1;
    printf("core and reference headers: no OpenCL\n");
    return 0;
}
