/* Unit suite: host allocation failure in the host reference. The hook of
 * lib/host_alloc.h makes allocation N = 0, 1, ... of each ps_ref_* call fail
 * until the call succeeds: every failure must answer
 * PS_ERR_OUT_OF_HOST_MEMORY and free what it had (leaks are caught when this
 * runs under ASan or valgrind, as .ci/run does), and the call must then give
 * the same output as without faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_alloc.h"
#include "prescore/prescore_ref.h"
#include "support.h"

typedef struct ref_case {
    const char *name;
    ps_attention_desc d;
    ts_tensors t;
    float *scores;
    uint32_t *idx, *cnt;
} ref_case;

typedef ps_status (*ref_call)(ref_case *c, float *o);

static ps_status call_attention(ref_case *c, float *o)
{
    return ps_ref_attention(&c->d, c->t.q, c->t.k, c->t.v, o, c->t.lse);
}

static ps_status call_exact(ref_case *c, float *o)
{
    return ps_ref_exact_attention(&c->d, c->t.q, c->t.k, c->t.v, o, c->t.lse);
}

static ps_status call_score(ref_case *c, float *o)
{
    (void)o;
    return ps_ref_score_keys(&c->d, c->t.k, c->scores);
}

static ps_status call_select(ref_case *c, float *o)
{
    (void)o;
    return ps_ref_select_keys(&c->d, c->scores, c->idx, c->cnt);
}

/* What a call writes: a fault-free call's bytes there are the reference. */
static void output_of(ref_case *c, ref_call call, void **out, size_t *bytes)
{
    const ps_attention_desc *d = &c->d;
    if (call == call_score) {
        *out = c->scores;
        *bytes = d->batch * d->kv_heads * d->n_k * sizeof(float);
    } else if (call == call_select) {
        *out = c->idx;
        *bytes = d->batch * d->kv_heads * d->n_k * sizeof(uint32_t);
    } else {
        *out = c->t.o;
        *bytes = d->batch * d->heads * d->n_q * d->d_v * sizeof(float);
    }
}

/* Sweeps the failing allocation over every allocation of `call`. */
static void sweep(ref_case *c, ref_call call, const char *what)
{
    void *out;
    size_t bytes;
    output_of(c, call, &out, &bytes);
    ps_host_alloc_fail_after(-1);
    assert_int_equal(call(c, c->t.o), PS_OK);
    unsigned char *expect = malloc(bytes);
    assert_non_null(expect);
    memcpy(expect, out, bytes);
    for (long n = 0;; n++) {
        ps_host_alloc_fail_after(n);
        if (call != call_select) /* selection reads the scores it would clear */
            memset(out, 0, bytes);
        const ps_status st = call(c, c->t.o);
        const long made = ps_host_alloc_count();
        ps_host_alloc_fail_after(-1);
        if (st == PS_OK) {
            assert_memory_equal(out, expect, bytes);
            if (made <= n) {
                printf("# %s %s: %ld host allocations, each failed once\n", c->name, what,
                       made);
                break;
            }
        } else if (st != PS_ERR_OUT_OF_HOST_MEMORY) {
            fail_msg("%s %s: allocation %ld failing gave %s", c->name, what, n,
                     ps_status_string(st));
        }
        assert_true(n < 100000);
    }
    free(expect);
}

static ps_attention_desc desc_of(ps_method method, ps_score score)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.heads = 2;
    d.n_q = d.n_k = 64;
    d.d = d.d_v = 16;
    d.want_lse = 1;
    d.method = method;
    d.score = score;
    d.budget = 40;
    d.block = 8;
    d.samples = 8;
    d.min_seq_len = 16;
    d.kmeans_iters = 3;
    d.seed = 3;
    return d;
}

static void run_case(const char *name, ps_attention_desc d)
{
    ref_case c;
    memset(&c, 0, sizeof c);
    c.name = name;
    c.d = d;
    assert_int_equal(ts_tensors_make(&c.t, &d, 91), 0);
    const size_t heads = d.batch * d.kv_heads;
    c.scores = calloc(heads * d.n_k, sizeof *c.scores);
    c.idx = calloc(heads * d.n_k, sizeof *c.idx);
    c.cnt = calloc(heads, sizeof *c.cnt);
    assert_true(c.scores && c.idx && c.cnt);
    sweep(&c, call_attention, "ps_ref_attention");
    if (d.method == PS_METHOD_PRESCORE) {
        sweep(&c, call_score, "ps_ref_score_keys");
        sweep(&c, call_select, "ps_ref_select_keys");
    }
    if (d.method == PS_METHOD_EXACT)
        sweep(&c, call_exact, "ps_ref_exact_attention");
    free(c.scores);
    free(c.idx);
    free(c.cnt);
    ts_tensors_free(&c.t);
}

static void test_reference_alloc_faults(void **state)
{
    (void)state;
    run_case("exact", desc_of(PS_METHOD_EXACT, PS_SCORE_KMEANS));
    run_case("hyper", desc_of(PS_METHOD_HYPER, PS_SCORE_NONE));
    run_case("prescore kmeans", desc_of(PS_METHOD_PRESCORE, PS_SCORE_KMEANS));
    run_case("prescore leverage", desc_of(PS_METHOD_PRESCORE, PS_SCORE_LEVERAGE));
    ps_attention_desc g = desc_of(PS_METHOD_PRESCORE, PS_SCORE_NORM);
    g.global_keys = 4;
    run_case("global keys", g);
    ps_attention_desc c = desc_of(PS_METHOD_HYPER, PS_SCORE_NONE);
    c.causal = 1;
    run_case("hyper causal", c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_alloc_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
