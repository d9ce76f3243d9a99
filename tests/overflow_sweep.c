/* The fp32 overflow range of each method (docs/RELIABILITY.md): Q, K and V
 * drawn N(0, 1), all three multiplied by a scale factor s, run with
 * desc.check_finite = 1; prints, per method, the largest s tried that gives
 * finite outputs and the smallest that does not (NaN/Inf in O, or NaN/+Inf
 * in LSE), first on powers of ten, then on steps of 10^(1/8) between them,
 * and the status of the float64 reference (ps_ref_attention) at the first
 * failing s. PRESCORE keeps n / 4 keys; global keys are on (the default).
 * Not a test (no pass/fail): a measurement to rerun on a device.
 *
 *   build/tests/overflow_sweep [n [d [causal]]]   (defaults: 4096 64 0)
 * SWEEP_VERBOSE=1 prints every run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prescore/prescore.h"
#include "prescore/prescore_ref.h"
#include "support.h"

typedef struct method_case {
    const char *name;
    ps_method method;
    ps_score score;
} method_case;

static ps_context *ctx;
static float *q0, *k0, *v0, *q, *k, *v, *o, *lse;
static size_t n, d;
static int causal;

/* 1: finite outputs at scale s; 0: PS_ERR_NON_FINITE; -1: another failure. */
static int finite_at(ps_plan *plan, double s, char *why, size_t why_size)
{
    const size_t count = n * d;
    for (size_t i = 0; i < count; i++) {
        q[i] = (float)(q0[i] * s);
        k[i] = (float)(k0[i] * s);
        v[i] = (float)(v0[i] * s);
    }
    const ps_status st = ps_attention_host(plan, q, k, v, o, lse);
    snprintf(why, why_size, "%s", ps_plan_last_error(plan));
    if (getenv("SWEEP_VERBOSE"))
        printf("#   s = %.3e: %s %s\n", s, ps_status_string(st), why);
    if (st == PS_OK)
        return 1;
    return st == PS_ERR_NON_FINITE ? 0 : -1;
}

int main(int argc, char **argv)
{
    n = argc > 1 ? (size_t)atol(argv[1]) : 4096;
    d = argc > 2 ? (size_t)atol(argv[2]) : 64;
    causal = argc > 3 ? atoi(argv[3]) != 0 : 0;
    const method_case cases[] = {
        {"EXACT", PS_METHOD_EXACT, PS_SCORE_KMEANS},
        {"HYPER", PS_METHOD_HYPER, PS_SCORE_KMEANS},
        {"PRESCORE KMEANS", PS_METHOD_PRESCORE, PS_SCORE_KMEANS},
        {"PRESCORE LEVERAGE", PS_METHOD_PRESCORE, PS_SCORE_LEVERAGE},
        {"PRESCORE NORM", PS_METHOD_PRESCORE, PS_SCORE_NORM},
    };
    if (ps_context_create(&ctx, NULL) != PS_OK) {
        fprintf(stderr, "context: %s\n", ps_context_last_error(NULL));
        return 1;
    }
    ps_device_info info;
    ps_context_device_info(ctx, &info);
    const size_t count = n * d;
    float **bufs[] = {&q0, &k0, &v0, &q, &k, &v, &o, &lse};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i] = malloc(count * sizeof(float))))
            return 1;
    ts_fill_normal(q0, count, ts_seed(), 1, 1.0f);
    ts_fill_normal(k0, count, ts_seed(), 2, 1.0f);
    ts_fill_normal(v0, count, ts_seed(), 3, 1.0f);
    printf("# overflow sweep: %s (%s), n_q = n_k = %zu, d = d_v = %zu, causal %d, "
           "Q, K, V ~ s * N(0, 1), seed %llu\n",
           info.name, info.platform_name, n, d, causal, (unsigned long long)ts_seed());
    int status = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ps_attention_desc desc;
        ps_attention_desc_default(&desc);
        desc.n_q = desc.n_k = n;
        desc.d = desc.d_v = d;
        desc.method = cases[c].method;
        desc.score = cases[c].score;
        desc.budget = n / 4;
        desc.min_seq_len = n < 4096 ? n : 4096; /* the approximate path */
        desc.causal = causal;
        desc.want_lse = 1;
        desc.check_finite = 1;
        ps_plan *plan = NULL;
        if (ps_plan_create(ctx, &desc, &plan) != PS_OK) {
            fprintf(stderr, "%s: plan: %s\n", cases[c].name, ps_context_last_error(ctx));
            status = 1;
            continue;
        }
        char why[512] = "", first_why[512] = "";
        double ok = 1.0, bad = 0.0;
        for (int e = 0; e <= 30; e++) { /* powers of ten up to 1e30 */
            const double s = pow(10.0, e);
            const int r = finite_at(plan, s, why, sizeof why);
            if (r < 0) {
                fprintf(stderr, "%s at s = %g: %s\n", cases[c].name, s, why);
                status = 1;
                break;
            }
            if (r == 0) {
                bad = s;
                snprintf(first_why, sizeof first_why, "%s", why);
                break;
            }
            ok = s;
        }
        const double base = ok;
        if (bad > 0.0) /* refine in steps of 10^(1/8) */
            for (int j = 1; j < 8; j++) {
                const double s = base * pow(10.0, j / 8.0);
                const int r = finite_at(plan, s, why, sizeof why);
                if (r == 0) {
                    bad = s;
                    snprintf(first_why, sizeof first_why, "%s", why);
                    break;
                }
                if (r == 1)
                    ok = s;
            }
        if (bad > 0.0) {
            /* The float64 reference on the same inputs: finite there too? */
            for (size_t i = 0; i < count; i++) {
                q[i] = (float)(q0[i] * bad);
                k[i] = (float)(k0[i] * bad);
                v[i] = (float)(v0[i] * bad);
            }
            const ps_status ref = ps_ref_attention(&desc, q, k, v, o, lse);
            printf("%-18s finite up to s = %.2e, non-finite from s = %.2e (reference there: "
                   "%s): %s\n",
                   cases[c].name, ok, bad, ps_status_string(ref), first_why);
        }
        else
            printf("%-18s finite up to s = %.2e (the largest tried)\n", cases[c].name, ok);
        fflush(stdout);
        ps_plan_destroy(plan);
    }
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(*bufs[i]);
    ps_context_destroy(ctx);
    return status;
}
