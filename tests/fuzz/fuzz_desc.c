/* Fuzz harness: bytes -> a ps_attention_desc (every field, absurd values
 * included) and tiny tensors; validation must answer a known status with a
 * message, and a valid tiny descriptor must run through the host reference
 * with sane outputs. Built two ways: with -DPS_FUZZ_LIBFUZZER as a libFuzzer
 * target (meson -Dfuzz=true, tools/fuzz.sh), and without it as a plain
 * function that tests/fuzz/replay.c feeds the corpus and regressions to. */
#include "fuzz_desc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/desc.h"
#include "prescore/prescore.h"
#include "prescore/prescore_ref.h"

/* A property that must hold: report and abort (the fuzzer records a crash). */
#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_desc: check failed: %s: ", #cond);           \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Byte reader: past the end every read gives zeros. */
typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t u8(reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static uint64_t u64(reader *r, int bytes)
{
    uint64_t x = 0;
    for (int i = 0; i < bytes; i++)
        x |= (uint64_t)u8(r) << (8 * i);
    return x;
}

/* A size: mostly small, sometimes on or past a limit, sometimes raw. */
static size_t size_field(reader *r)
{
    static const uint64_t edges[] = {0,
                                     1,
                                     (uint64_t)1 << 30,
                                     ((uint64_t)1 << 30) + 1,
                                     (uint64_t)1 << 31,
                                     (uint64_t)1 << 32,
                                     ((uint64_t)1 << 32) + 16,
                                     (uint64_t)1 << 40,
                                     (uint64_t)SIZE_MAX / 2,
                                     (uint64_t)SIZE_MAX / 4 + 1,
                                     (uint64_t)SIZE_MAX - 1,
                                     (uint64_t)SIZE_MAX};
    const uint8_t mode = u8(r);
    if (mode < 192)
        return u8(r) % 80; /* tiny: the reference runs on these */
    if (mode < 240)
        return (size_t)edges[u8(r) % (sizeof edges / sizeof edges[0])];
    return (size_t)u64(r, 8);
}

/* A flag or enum: mostly in range, sometimes any int. */
static int int_field(reader *r, int lo, int hi)
{
    const uint8_t mode = u8(r);
    if (mode < 224)
        return lo + (int)(u8(r) % (uint8_t)(hi - lo + 1));
    return (int)(uint32_t)u64(r, 4);
}

static float float_field(reader *r)
{
    static const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.125f, 1e-30f, 1e30f,
                                     3.4e38f, NAN, INFINITY, -INFINITY, 1e-45f};
    const uint8_t mode = u8(r);
    if (mode < 128)
        return 0.0f; /* the automatic default */
    if (mode < 224)
        return specials[u8(r) % (sizeof specials / sizeof specials[0])];
    const uint32_t bits = (uint32_t)u64(r, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void decode_desc(reader *r, ps_attention_desc *d)
{
    ps_attention_desc_default(d);
    d->batch = size_field(r);
    d->heads = size_field(r);
    d->kv_heads = size_field(r);
    d->n_q = size_field(r);
    d->n_k = size_field(r);
    /* Head dims: mostly the two the reference runs, else anything. */
    const uint8_t dm = u8(r);
    d->d = dm < 200 ? (size_t)(16 << (dm & 1)) : size_field(r);
    const uint8_t dvm = u8(r);
    d->d_v = dvm < 200 ? (size_t)(16 << (dvm & 1)) : size_field(r);
    d->causal = int_field(r, 0, 1);
    d->scale = float_field(r);
    d->want_lse = int_field(r, 0, 1);
    d->method = (ps_method)int_field(r, -1, 3);
    d->score = (ps_score)int_field(r, -2, 4);
    d->budget = size_field(r);
    d->clusters = size_field(r);
    d->kmeans_iters = size_field(r);
    d->sink = size_field(r);
    d->window = size_field(r);
    d->global_keys = size_field(r);
    d->block = size_field(r);
    d->samples = size_field(r);
    const uint8_t bits = u8(r);
    d->lsh_bits = bits < 240 ? bits % 18u : (unsigned)u64(r, 4);
    d->min_seq_len = size_field(r);
    d->seed = u64(r, 8);
    d->leverage_lambda = float_field(r);
    d->global_score = (ps_score)int_field(r, -2, 4);
    d->check_finite = int_field(r, 0, 1);
    const uint8_t res = u8(r);
    if (res >= 250) /* any slot of reserved */
        d->reserved[res % (sizeof d->reserved / sizeof d->reserved[0])] =
            (uint32_t)u64(r, 4) | 1u;
    /* The selection from the same byte (values that were unused), so the
     * inputs written before the field still decode as they did: 240-244
     * WEIGHTED, 245 STRATIFIED, 246-249 values that are not a ps_selection. */
    if (res >= 240 && res < 250)
        d->selection = res < 245 ? PS_SELECTION_WEIGHTED : (ps_selection)(res - 243);
    /* A weighted selection with a query sketch from two more values of it:
     * 238 a valid count, 239 one past the most. */
    /* An error estimate from two more: 236 probes, 235 probes and a tolerance. */
    if (res == 235 || res == 236) {
        d->error_probes = 1u + u8(r) % 32u;
        d->error_tolerance = res == 235 ? float_field(r) : 0.0f;
    }
    if (res == 238 || res == 239) {
        d->selection = PS_SELECTION_WEIGHTED;
        d->sketch_queries = res == 239 ? PS_SKETCH_MAX_QUERIES + 1u : 1u + u8(r) % 64u;
    }
}

static int known_status(ps_status st)
{
    return strcmp(ps_status_string(st), "unknown status") != 0;
}

/* Validation answers a known status; a failure names something. */
static ps_status check_validation(const ps_attention_desc *d)
{
    char msg[256];
    memset(msg, 'x', sizeof msg);
    ps_status st = ps_attention_desc_validate(d, msg, sizeof msg);
    FUZZ_CHECK(known_status(st), "status %d", (int)st);
    FUZZ_CHECK(memchr(msg, '\0', sizeof msg) != NULL, "message not terminated");
    FUZZ_CHECK((st == PS_OK) == (msg[0] == '\0'), "status %d with message \"%s\"", (int)st,
               msg);
    char tiny[8];
    FUZZ_CHECK(ps_attention_desc_validate(d, tiny, sizeof tiny) == st, "unstable status");
    FUZZ_CHECK(memchr(tiny, '\0', sizeof tiny) != NULL, "short message not terminated");
    FUZZ_CHECK(ps_attention_desc_validate(d, NULL, 0) == st, "status depends on message");
    return st;
}

/* Resolution of a valid descriptor: same status, every automatic field set
 * within its documented range, explicit fields untouched. */
static void check_resolution(const ps_attention_desc *d)
{
    ps_attention_desc r;
    FUZZ_CHECK(ps_attention_desc_resolve(d, &r, NULL, 0) == PS_OK, "resolve refused");
    FUZZ_CHECK(r.scale != 0.0f && isfinite(r.scale), "scale %g", (double)r.scale);
    FUZZ_CHECK(r.block >= 1 && r.samples >= 1 && r.lsh_bits >= 1 && r.min_seq_len >= 1 &&
                   r.kmeans_iters >= 1,
               "an automatic field stayed 0");
    FUZZ_CHECK(r.budget >= 1 && r.budget <= r.n_k, "budget %zu of n_k %zu", r.budget, r.n_k);
    FUZZ_CHECK(r.clusters >= 1 && r.clusters <= r.n_k, "clusters %zu", r.clusters);
    FUZZ_CHECK(r.global_score != PS_SCORE_AUTO, "global_score unresolved");
    FUZZ_CHECK(r.n_q == d->n_q && r.n_k == d->n_k && r.d == d->d && r.d_v == d->d_v &&
                   r.method == d->method && r.causal == d->causal && r.seed == d->seed &&
                   r.sink == d->sink && r.window == d->window &&
                   (r.global_keys == d->global_keys ||
                    (d->global_keys == PS_GLOBAL_KEYS_AUTO && r.global_keys <= 64)),
               "resolution changed an explicit field");
    FUZZ_CHECK(d->scale == 0.0f || r.scale == d->scale, "explicit scale changed");
}

/* Small enough for the host reference to finish quickly. */
static int tiny(const ps_attention_desc *d)
{
    return d->batch * d->heads <= 4 && d->n_q <= 64 && d->n_k <= 64 &&
           (d->d == 16 || d->d == 32) && (d->d_v == 16 || d->d_v == 32) &&
           d->kmeans_iters <= 16 && d->samples <= 256 && d->clusters <= 64;
}

/* Tensor values from the remaining bytes (cycled), in [-2, 2), with an
 * occasional Inf/NaN when the input says so. */
static float *make_tensor(reader *r, size_t n, int allow_nonfinite)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    FUZZ_CHECK(x != NULL, "out of memory");
    const uint8_t *p = r->p;
    const size_t len = r->n;
    for (size_t i = 0; i < n; i++) {
        const uint8_t b = len ? p[i % len] : (uint8_t)(i * 37u);
        x[i] = ((float)b - 128.0f) / 64.0f;
    }
    if (allow_nonfinite && n && len && p[0] == 0xff)
        x[(size_t)p[len - 1] % n] = p[len / 2] & 1 ? NAN : INFINITY;
    return x;
}

static void check_outputs(const ps_attention_desc *d, const float *o, const float *lse)
{
    const size_t rows = d->batch * d->heads * d->n_q;
    for (size_t i = 0; i < rows * d->d_v; i++)
        FUZZ_CHECK(isfinite(o[i]), "o[%zu] = %g from finite inputs", i, o[i]);
    for (size_t i = 0; lse && i < rows; i++)
        FUZZ_CHECK(!isnan(lse[i]) && lse[i] != INFINITY, "lse[%zu] = %g", i, lse[i]);
}

static size_t resolved_min_seq(const ps_attention_desc *d)
{
    return d->min_seq_len ? d->min_seq_len : 4096; /* documented default */
}

static void run_reference(const ps_attention_desc *d, reader *r)
{
    const size_t nq = d->batch * d->heads * d->n_q * d->d;
    const size_t nk = d->batch * d->kv_heads * d->n_k * d->d;
    const size_t nv = d->batch * d->kv_heads * d->n_k * d->d_v;
    const size_t no = d->batch * d->heads * d->n_q * d->d_v, nl = d->batch * d->heads * d->n_q;
    const int nonfinite_ok = d->check_finite;
    float *q = make_tensor(r, nq, nonfinite_ok), *k = make_tensor(r, nk, nonfinite_ok);
    float *v = make_tensor(r, nv, nonfinite_ok);
    float *o = calloc(no, sizeof *o), *lse = calloc(nl, sizeof *lse);
    FUZZ_CHECK(o && lse, "out of memory");
    int finite = 1;
    for (size_t i = 0; i < nq; i++)
        finite &= isfinite(q[i]) != 0;
    for (size_t i = 0; i < nk; i++)
        finite &= isfinite(k[i]) != 0;
    for (size_t i = 0; i < nv; i++)
        finite &= isfinite(v[i]) != 0;

    ps_status st = ps_ref_attention(d, q, k, v, o, d->want_lse ? lse : NULL);
    /* On the exact path the full reference is the exact reference. */
    if (st == PS_OK && finite && (d->method == PS_METHOD_EXACT || d->n_k < resolved_min_seq(d))) {
        float *o2 = calloc(no, sizeof *o2);
        FUZZ_CHECK(o2 != NULL, "out of memory");
        FUZZ_CHECK(ps_ref_exact_attention(d, q, k, v, o2, NULL) == PS_OK, "exact refused");
        FUZZ_CHECK(memcmp(o, o2, no * sizeof *o) == 0, "exact path differs from exact");
        free(o2);
    }
    FUZZ_CHECK(known_status(st), "reference status %d", (int)st);
    if (!finite)
        FUZZ_CHECK(st != PS_OK || !d->check_finite, "non-finite input accepted");
    /* Finite outputs are promised while the logits fit in fp32: inputs
     * here are in [-2, 2), so |logit| <= |scale| * 4 * d. */
    const int logits_fit = fabs((double)d->scale) * 4.0 * (double)d->d < 1e30;
    if (st == PS_OK && finite && logits_fit)
        check_outputs(d, o, d->want_lse ? lse : NULL);

    /* Score and selection, as the PRESCORE pipeline runs them. */
    const size_t heads = d->batch * d->kv_heads;
    float *scores = calloc(heads * d->n_k, sizeof *scores);
    FUZZ_CHECK(scores != NULL, "out of memory");
    st = ps_ref_score_keys(d, k, scores);
    FUZZ_CHECK(known_status(st), "score status %d", (int)st);
    if (st == PS_OK) {
        const size_t cap = d->n_k; /* capacity never exceeds n_k */
        uint32_t *idx = calloc(heads * cap, sizeof *idx), *cnt = calloc(heads, sizeof *cnt);
        FUZZ_CHECK(idx && cnt, "out of memory");
        st = ps_ref_select_keys(d, scores, idx, cnt);
        FUZZ_CHECK(st == PS_OK, "selection of valid scores: %d", (int)st);
        /* Selected positions: ascending, in range, count within capacity. */
        size_t want = d->budget == 0 || d->budget > d->n_k ? d->n_k : d->budget;
        const size_t sw = d->sink > SIZE_MAX - d->window ? SIZE_MAX : d->sink + d->window;
        if (sw > want)
            want = sw < d->n_k ? sw : d->n_k;
        for (size_t h = 0; h < heads; h++) {
            FUZZ_CHECK(cnt[h] <= want, "head %zu keeps %u > %zu", h, cnt[h], want);
            const uint32_t *ih = idx + h * want;
            for (size_t j = 0; j < cnt[h]; j++) {
                FUZZ_CHECK(ih[j] < d->n_k, "index %u >= n_k", ih[j]);
                FUZZ_CHECK(j == 0 || ih[j] > ih[j - 1], "indices not ascending");
            }
        }
        free(idx);
        free(cnt);
    }
    free(scores);
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
}

size_t ps_fuzz_desc_decode(const uint8_t *data, size_t size, ps_attention_desc *desc)
{
    reader r = {data, size};
    decode_desc(&r, desc);
    return size - r.n;
}

int ps_fuzz_desc_tiny(const ps_attention_desc *desc) { return tiny(desc); }

int ps_fuzz_desc_one(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    ps_attention_desc d;
    decode_desc(&r, &d);
    const ps_status st = check_validation(&d);
    if (st == PS_OK)
        check_resolution(&d);
    if (st == PS_OK && tiny(&d)) {
        run_reference(&d, &r);
        return 1;
    }
    return 0;
}

#ifdef PS_FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_fuzz_desc_one(data, size);
    return 0;
}
#endif
