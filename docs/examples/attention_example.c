/* A complete program using libprescore-cl: exact attention on the default
 * device through the host-pointer call, checked against the reference.
 * Build against the installed library:
 *   cc attention_example.c $(pkg-config --cflags --libs prescore-cl) -lm
 * The test suite compiles and runs this file, so it cannot rot. */
#include <prescore/prescore.h>
#include <prescore/prescore_ref.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    ps_context *ctx = NULL;
    ps_status st = ps_context_create(&ctx, NULL); /* PRESCORE_DEVICE or first GPU */
    if (st == PS_ERR_NO_DEVICE) {
        printf("no OpenCL device: %s\n", ps_context_last_error(NULL));
        return 77; /* "skipped" for the test harness */
    }
    if (st != PS_OK) {
        fprintf(stderr, "context: %s: %s\n", ps_status_string(st), ps_context_last_error(NULL));
        return 1;
    }
    ps_device_info info;
    ps_context_device_info(ctx, &info);
    printf("device: %s (%s)\n", info.name, ps_device_type_string(info.type));

    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.heads = 4;
    desc.kv_heads = 2; /* grouped-query attention */
    desc.n_q = desc.n_k = 1000;
    desc.d = desc.d_v = 64;
    desc.causal = 1;
    desc.want_lse = 1;

    ps_plan *plan = NULL;
    if ((st = ps_plan_create(ctx, &desc, &plan)) != PS_OK) {
        fprintf(stderr, "plan: %s: %s\n", ps_status_string(st), ps_context_last_error(ctx));
        ps_context_destroy(ctx);
        return 1;
    }
    const size_t nq = desc.heads * desc.n_q * desc.d, nk = desc.kv_heads * desc.n_k * desc.d;
    float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
    float *o = malloc(nq * sizeof *o), *o_ref = malloc(nq * sizeof *o_ref);
    float *lse = malloc(desc.heads * desc.n_q * sizeof *lse);
    int rc = 1;
    if (!q || !k || !v || !o || !o_ref || !lse)
        goto done;
    for (size_t i = 0; i < nq; i++)
        q[i] = sinf(0.37f * (float)i);
    for (size_t i = 0; i < nk; i++) {
        k[i] = cosf(0.11f * (float)i);
        v[i] = sinf(0.05f * (float)i + 1.0f);
    }
    if ((st = ps_attention_host(plan, q, k, v, o, lse)) != PS_OK) {
        fprintf(stderr, "attention: %s: %s\n", ps_status_string(st), ps_plan_last_error(plan));
        goto done;
    }
    ps_ref_exact_attention(&desc, q, k, v, o_ref, NULL);
    double err = 0.0;
    for (size_t i = 0; i < nq; i++)
        err = fmax(err, fabs((double)o[i] - (double)o_ref[i]));
    printf("max |device - reference| = %.3g\n", err);
    rc = err < 1e-4 ? 0 : 1;
done:
    free(q);
    free(k);
    free(v);
    free(o);
    free(o_ref);
    free(lse);
    ps_plan_destroy(plan);
    ps_context_destroy(ctx);
    return rc;
}
