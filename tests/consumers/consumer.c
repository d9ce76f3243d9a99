/* A program outside the project, built against an installed or subproject
 * libprescore-cl the way an application would: the default device's exact
 * attention on host arrays against the library's plain-C reference.
 * Exit 0 on agreement, 77 (skipped) without a device, 1 with the library's
 * message otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <prescore/prescore.h>
#include <prescore/prescore_ref.h>

enum { HEADS = 2, N = 96, D = 32 };

static float q[HEADS * N * D], k[HEADS * N * D], v[HEADS * N * D];
static float o_device[HEADS * N * D], o_ref[HEADS * N * D];

int main(void)
{
    unsigned state = 12345u;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        float *arrays[3] = {q, k, v};
        for (int a = 0; a < 3; a++) {
            state = state * 1664525u + 1013904223u;
            arrays[a][i] = (float)(state >> 8) / (float)(1u << 24) - 0.5f;
        }
    }
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.heads = desc.kv_heads = HEADS;
    desc.n_q = desc.n_k = N;
    desc.d = desc.d_v = D;
    desc.method = PS_METHOD_EXACT;

    ps_context *ctx = NULL;
    ps_plan *plan = NULL;
    int rc = 1;
    ps_status st = ps_context_create(&ctx, NULL);
    if (st != PS_OK) {
        fprintf(stderr, "consumer: no context: %s: %s\n", ps_status_string(st),
                ps_context_last_error(NULL));
        return st == PS_ERR_NO_DEVICE ? 77 : 1;
    }
    st = ps_plan_create(ctx, &desc, &plan);
    if (st == PS_OK)
        st = ps_attention_host(plan, q, k, v, o_device, NULL);
    if (st != PS_OK) {
        fprintf(stderr, "consumer: %s: %s\n", ps_status_string(st),
                plan ? ps_plan_last_error(plan) : ps_context_last_error(ctx));
        goto done;
    }
    st = ps_ref_exact_attention(&desc, q, k, v, o_ref, NULL);
    if (st != PS_OK) {
        fprintf(stderr, "consumer: reference: %s\n", ps_status_string(st));
        goto done;
    }
    double worst = 0.0;
    for (size_t i = 0; i < sizeof o_ref / sizeof o_ref[0]; i++) {
        const double e = fabs((double)o_device[i] - (double)o_ref[i]);
        if (!(e <= worst)) /* NaN counts as the worst */
            worst = isnan(e) ? INFINITY : e;
    }
    printf("consumer: libprescore-cl %s, device vs reference max |diff| %.3g\n",
           ps_version_string(), worst);
    rc = worst < 1e-4 ? 0 : 1;
done:
    if (plan)
        ps_plan_destroy(plan);
    ps_context_destroy(ctx);
    return rc;
}
