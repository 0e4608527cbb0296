/* The element-wise and attention kernels (SwiGLU gate, softmax, attention of a group of queries) at every
 * ISA level this CPU runs, against double-precision computations of the same formulas, and a
 * query attended in a group against the same query alone.
 *
 * Tolerances, from the operations each result goes through (ε = FLT_EPSILON = 2^−23, one ulp of
 * a float in [1, 2)):
 * - silu(h)·u: the exp within 2 ulp (expf: < 1), then 1 + e, the division and the product, each
 *   rounded once: at most ~4.5 ulp of the result, checked at 5ε relative. Below h ≈ −88.7
 *   e^(−h) overflows to inf in both versions (as in expf) and the result is −0 where the exact
 *   value is at most ~1e-36 in magnitude: 1e-35 absolute is allowed there.
 * - softmax: each e^(x − max) within 2 ulp, the sum of n terms at most (n − 1)·ε/2 relative
 *   (any order), the division and product: (n + 8)·ε relative per probability.
 * - attention: a score's dot product of hd terms is off by at most hd·ε·Σ|q_i·K_ki| (any order),
 *   times the scale; an absolute error δ in the scores changes every probability by a relative
 *   2δ at most; then the weighted sum of n values errs by (n + 4)·ε relative to Σ p_k·|V_k|.
 *   So |out_i − exact_i| ≤ (2·δ_max + (n + hd + 8)·ε)·Σ_k p_k·|V_ki| with δ_max from the case's
 *   own data. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/kernels.h"
#include "kernels/act_kernels.h"
#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [0, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* G queries, rows hd apart in q and out, at one ISA level (bl_attend runs the level asked for). */
static void attend_at(bl_isa isa, const float *q, int G, const float *K, const float *V,
                      int64_t ld, int hd, int n, float scale, float *P, float *out) {
    bl_attend(q, hd, G, K, V, ld, hd, n, scale, P, out, hd, isa);
}

/* The levels with a kernel of their own: the reference, AVX2 and AVX-512 where the CPU has them. */
static int levels(bl_isa out[3]) {
    int k = 0;
    out[k++] = BL_ISA_REF;
    if (bl_cpu_best_isa() >= BL_ISA_AVX2) out[k++] = BL_ISA_AVX2;
    if (bl_cpu_best_isa() >= BL_ISA_AVX512) out[k++] = BL_ISA_AVX512;
    return k;
}

/* silu(h)·u over a sweep of h from −110 to 110 (exp's underflow and overflow both reached) and
 * random u, odd lengths so the vector tails run; special values keep their IEEE meaning. */
static void test_silu(void) {
    enum { N = 200003 };
    float *h = malloc(sizeof(float) * N), *u = malloc(sizeof(float) * N);
    float *got = malloc(sizeof(float) * N);
    REQUIRE(h && u && got);
    for (int i = 0; i < N; i++) {
        h[i] = (float)(-110.0 + 220.0 * i / (N - 1));
        if (i % 7 == 3) h[i] = (float)((urand() - 0.5) * 8.0); /* dense near 0 */
        u[i] = (float)(0.25 + urand() * 3.0);
    }
    bl_isa lv[3];
    const int nl = levels(lv);
    for (int l = 0; l < nl; l++) {
        int bad = 0;
        for (int k = 0; k < N; k++) got[k] = h[k];
        bl_silu_mul(got, u, N, lv[l]);
        for (int i = 0; i < N; i++) {
            const double x = h[i], want = x / (1.0 + exp(-x)) * u[i];
            const double err = fabs(got[i] - want);
            if (!(err <= 5.0 * FLT_EPSILON * fabs(want) + (x < -88.7 ? 1e-35 : 0.0)) && bad++ < 5)
                CHECK_MSG(0, "%s: silu(%.9g)*%.9g = %.9g, want %.9g", bl_isa_name(lv[l]), x,
                          (double)u[i], (double)got[i], want);
        }
        CHECK_MSG(bad == 0, "%s: %d values outside 5 ulp", bl_isa_name(lv[l]), bad);
        /* special values: the reference's IEEE results, and a short vector (tail only) */
        float sh[5] = {NAN, INFINITY, -INFINITY, 0.0f, 1e30f}, su[5] = {1, 2, 1, 1, 0.5f};
        bl_silu_mul(sh, su, 5, lv[l]);
        CHECK_MSG(isnan(sh[0]), "%s: NaN in must give NaN", bl_isa_name(lv[l]));
        CHECK_MSG(isinf(sh[1]) && sh[1] > 0, "%s: silu(inf)*2 = %g", bl_isa_name(lv[l]), sh[1]);
        CHECK_MSG(isnan(sh[2]), "%s: silu(-inf) = -inf/inf is NaN, got %g", bl_isa_name(lv[l]),
                  sh[2]);
        CHECK_MSG(sh[3] == 0.0f, "%s: silu(0) = %g", bl_isa_name(lv[l]), sh[3]);
        CHECK_MSG(sh[4] == 0.5e30f, "%s: silu(1e30)*0.5 = %g", bl_isa_name(lv[l]), sh[4]);
    }
    free(h), free(u), free(got);
}

/* softmax over lengths 1..40 and 1000, values spread over ±30 (so most terms underflow far from
 * the maximum), plus a row with equal values. */
static void test_softmax(void) {
    const int lens[] = {1, 2, 5, 15, 16, 17, 31, 33, 40, 1000};
    float x[1000], got[1000];
    double want[1000];
    bl_isa lv[3];
    const int nl = levels(lv);
    for (int li = 0; li < (int)(sizeof lens / sizeof *lens); li++) {
        const int n = lens[li];
        for (int k = 0; k < n; k++) x[k] = (float)((urand() - 0.5) * 60.0);
        double mx = -INFINITY, sum = 0.0;
        for (int k = 0; k < n; k++) mx = x[k] > mx ? x[k] : mx;
        for (int k = 0; k < n; k++) sum += (want[k] = exp(x[k] - mx));
        for (int k = 0; k < n; k++) want[k] /= sum;
        for (int l = 0; l < nl; l++) {
            memcpy(got, x, sizeof(float) * (size_t)n);
            bl_softmax(got, n, lv[l]);
            int bad = 0;
            for (int k = 0; k < n; k++)
                if (!(fabs(got[k] - want[k]) <= (n + 8) * FLT_EPSILON * want[k] + 1e-44)) bad++;
            CHECK_MSG(bad == 0, "%s n=%d: %d probabilities outside (n+8) ulp", bl_isa_name(lv[l]),
                      n, bad);
        }
    }
    for (int l = 0; l < nl; l++) { /* equal scores: exactly uniform */
        for (int k = 0; k < 24; k++) got[k] = 3.5f;
        bl_softmax(got, 24, lv[l]);
        int bad = 0;
        for (int k = 0; k < 24; k++) bad += fabsf(got[k] - 1.0f / 24) > 2 * FLT_EPSILON / 24;
        CHECK_MSG(bad == 0, "%s: softmax of equal values is not uniform", bl_isa_name(lv[l]));
    }
}

/* Groups of 1, 3 and 20 queries (more than one chunk of 16) over n positions: head dims 12, 64,
 * 80, 128 and 200 (tails, several slice groups), n from 1 to 300 (partial key blocks and value
 * blocks), rows wider than the head (a GQA cache's stride); every query against the double
 * computation, and the same bits as the query alone. */
static void test_attend(void) {
    const int hds[] = {12, 64, 80, 128, 200}, ns[] = {1, 2, 15, 16, 17, 33, 64, 65, 300};
    const int Gs[] = {1, 3, 20};
    bl_isa lv[3];
    const int nl = levels(lv);
    for (int a = 0; a < (int)(sizeof hds / sizeof *hds); a++)
        for (int b = 0; b < (int)(sizeof ns / sizeof *ns); b++)
            for (int gi = 0; gi < 3; gi++) {
                const int hd = hds[a], n = ns[b], G = Gs[gi];
                const int64_t ld = 3 * hd + 5;
                const float scale = 1.0f / sqrtf((float)hd);
                float *K = malloc(sizeof(float) * (size_t)(n * ld));
                float *V = malloc(sizeof(float) * (size_t)(n * ld));
                float *q = malloc(sizeof(float) * (size_t)(G * hd));
                float *out = malloc(sizeof(float) * (size_t)(G * hd)), one[200];
                float *P = malloc(sizeof(float) * (size_t)(G * n));
                double *p = malloc(sizeof(double) * (size_t)n);
                double *want = malloc(sizeof(double) * (size_t)hd);
                double *absw = malloc(sizeof(double) * (size_t)hd);
                REQUIRE(K && V && q && out && P && p && want && absw);
                for (int64_t i = 0; i < n * ld; i++) {
                    K[i] = (float)((urand() - 0.5) * 4.0);
                    V[i] = (float)((urand() - 0.5) * 2.0 + (i % 3 == 0 ? 1.0 : 0.0));
                }
                for (int i = 0; i < G * hd; i++) q[i] = (float)((urand() - 0.5) * 4.0);
                for (int l = 0; l < nl; l++) {
                    for (int i = 0; i < G * hd; i++) out[i] = NAN;
                    attend_at(lv[l], q, G, K, V, ld, hd, n, scale, P, out);
                    int bad = 0, differ = 0;
                    double worst = 0.0, rel = 0.0;
                    for (int g = 0; g < G; g++) {
                        const float *qg = q + g * hd;
                        double mx = -INFINITY, sum = 0.0, dmax = 0.0;
                        for (int k = 0; k < n; k++) {
                            double d = 0.0, da = 0.0;
                            for (int i = 0; i < hd; i++) {
                                d += (double)qg[i] * K[k * ld + i];
                                da += fabs((double)qg[i] * K[k * ld + i]);
                            }
                            p[k] = d * scale;
                            mx = p[k] > mx ? p[k] : mx;
                            dmax = da > dmax ? da : dmax;
                        }
                        for (int k = 0; k < n; k++) sum += (p[k] = exp(p[k] - mx));
                        for (int i = 0; i < hd; i++) want[i] = absw[i] = 0.0;
                        for (int k = 0; k < n; k++)
                            for (int i = 0; i < hd; i++) {
                                want[i] += p[k] / sum * V[k * ld + i];
                                absw[i] += p[k] / sum * fabs((double)V[k * ld + i]);
                            }
                        const double delta = hd * FLT_EPSILON * scale * dmax;
                        rel = 2.0 * delta + (n + hd + 8) * FLT_EPSILON;
                        for (int i = 0; i < hd; i++) {
                            const double e = fabs(out[g * hd + i] - want[i]) / absw[i];
                            worst = e > worst ? e : worst;
                            if (!(e <= rel)) bad++;
                        }
                        if (g == 0 || g == G - 1) { /* the same bits alone */
                            attend_at(lv[l], qg, 1, K, V, ld, hd, n, scale, P, one);
                            differ += memcmp(one, out + g * hd, sizeof(float) * (size_t)hd) != 0;
                        }
                    }
                    CHECK_MSG(bad == 0,
                              "%s hd=%d n=%d G=%d: %d outputs off, worst %.3g of Σp|V| (tol %.3g)",
                              bl_isa_name(lv[l]), hd, n, G, bad, worst, rel);
                    CHECK_MSG(differ == 0, "%s hd=%d n=%d G=%d: a query in the group differs "
                              "from the same query alone", bl_isa_name(lv[l]), hd, n, G);
                }
                free(K), free(V), free(q), free(out), free(P), free(p), free(want), free(absw);
            }
}

/* The SIMD versions of bl_kv_q8_quantize_ref on this CPU give its codes and scales for x[0..n)
 * bit for bit (a NaN scale as a NaN) and write no byte past the row. */
static void check_q8_levels(const float *x, int n) {
    bl_isa lv[3];
    const int nl = levels(lv);
    int8_t c[128];
    float sc[4];
    int8_t rc[128];
    float rs[4];
    bl_kv_q8_quantize_ref(x, n, rc, rs);
    for (int l = 1; l < nl; l++) {
        memset(c, 0x55, sizeof c);
        (lv[l] == BL_ISA_AVX512 ? bl_kv_q8_quantize_avx512 : bl_kv_q8_quantize_avx2)(x, n, c, sc);
        CHECK_MSG(memcmp(c, rc, (size_t)n) == 0 && (n == 128 || c[n] == 0x55),
                  "%s n %d: codes differ from the reference's (or a byte past the row written)",
                  bl_isa_name(lv[l]), n);
        for (int b = 0; b < bl_kv_q8_scales(n); b++)
            CHECK_MSG(sc[b] == rs[b] || (isnan(sc[b]) && isnan(rs[b])), "%s n %d: scale %d %g vs %g",
                      bl_isa_name(lv[l]), n, b, (double)sc[b], (double)rs[b]);
    }
}

/* The int8 KV cache's rows (bl_kv_q8_quantize): per block of 32 values (the last of a row
 * shorter) the scale is max|x|/127, every code within ±127, the largest value's code ±127, every
 * value within half a step of code·scale (the rounding of x·127/max|x| adds at most a few ulps of
 * the step: bound 0.5001·scale), ties to even; a block of zeros gives scale 0 and codes 0, a block
 * holding an Inf or NaN scale NaN and codes 0 without touching its neighbours; dequantizing gives
 * code·scale in f32. */
static void test_kv_q8(void) {
    const int ns[] = {1, 8, 32, 45, 128};
    float x[128], y[128], sc[4];
    int8_t c[128];
    for (int a = 0; a < 5; a++)
        for (int rep = 0; rep < 50; rep++) {
            const int n = ns[a], nb = bl_kv_q8_scales(n);
            CHECK(nb == (n + 31) / 32);
            for (int j = 0; j < n; j++) /* magnitudes from 1e-3 to 1e3 per block */
                x[j] = (float)((2.0 * urand() - 1.0) * pow(10.0, (double)((j / 32 + rep) % 7) - 3.0));
            bl_kv_q8_quantize_ref(x, n, c, sc);
            bl_kv_q8_dequantize(c, sc, n, y);
            check_q8_levels(x, n);
            for (int b = 0; b < nb; b++) {
                const int j0 = 32 * b, j1 = j0 + 32 < n ? j0 + 32 : n;
                float amax = 0.0f;
                for (int j = j0; j < j1; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
                CHECK(sc[b] == amax / 127.0f);
                bool top = false;
                for (int j = j0; j < j1; j++) {
                    CHECK(c[j] >= -127 && c[j] <= 127);
                    CHECK(y[j] == (float)c[j] * sc[b]);
                    CHECK_MSG(fabsf(x[j] - y[j]) <= 0.5001f * sc[b], "n %d value %d: %g -> %d x %g",
                              n, j, (double)x[j], c[j], (double)sc[b]);
                    top |= fabsf(x[j]) == amax && (c[j] == 127 || c[j] == -127);
                }
                CHECK(top);
            }
        }
    /* ties to even: max 127 makes the step 1 */
    const float t[6] = {127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 1.5f};
    const int8_t want[6] = {127, 2, 4, -2, 0, 2};
    bl_kv_q8_quantize_ref(t, 6, c, sc);
    check_q8_levels(t, 6);
    CHECK(sc[0] == 1.0f);
    for (int j = 0; j < 6; j++) CHECK_MSG(c[j] == want[j], "%g -> %d", (double)t[j], c[j]);
    /* zeros, and a non-finite value in the second block of three */
    for (int j = 0; j < 96; j++) x[j] = j < 32 ? 0.0f : (float)j;
    x[40] = INFINITY;
    bl_kv_q8_quantize_ref(x, 96, c, sc);
    check_q8_levels(x, 96);
    CHECK(sc[0] == 0.0f && isnan(sc[1]) && sc[2] == 95.0f / 127.0f);
    for (int j = 0; j < 64; j++) CHECK(c[j] == 0);
    CHECK(c[95] == 127);
    x[40] = NAN;
    bl_kv_q8_quantize_ref(x, 96, c, sc);
    check_q8_levels(x, 90); /* a short last block too */
    CHECK(isnan(sc[1]) && sc[2] == 95.0f / 127.0f);
}

/* Attention on an int8 cache (bl_attend_q8): at AVX2 and AVX-512 the results of bl_attend on the
 * dequantized values, bit for bit (head dims with a short last scale block and with a tail of
 * the vector width, groups larger than a chunk, row strides that are not the head dimension or
 * the scale count); at the reference it refuses (false). */
static void test_attend_q8(void) {
    const int hds[] = {12, 40, 64, 128}, ns[] = {1, 17, 65, 300}, Gs[] = {1, 3, 20};
    bl_isa lv[3];
    const int nl = levels(lv);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int gi = 0; gi < 3; gi++) {
                const int hd = hds[a], n = ns[b], G = Gs[gi], nb = bl_kv_q8_scales(hd);
                const int64_t ld = 2 * hd + 3, lds = nb + 1;
                int8_t *K8 = malloc((size_t)(n * ld)), *V8 = malloc((size_t)(n * ld));
                float *Ks = malloc(sizeof(float) * (size_t)(n * lds));
                float *Vs = malloc(sizeof(float) * (size_t)(n * lds));
                float *K = malloc(sizeof(float) * (size_t)(n * ld)), *V = malloc(sizeof(float) * (size_t)(n * ld));
                float *q = malloc(sizeof(float) * (size_t)(G * hd)), *P = malloc(sizeof(float) * (size_t)(G * n));
                float *x = malloc(sizeof(float) * (size_t)(G * hd)), *y = malloc(sizeof(float) * (size_t)(G * hd));
                float row[128];
                REQUIRE(K8 && V8 && Ks && Vs && K && V && q && P && x && y);
                for (int r = 0; r < n; r++) {
                    for (int j = 0; j < hd; j++) row[j] = (float)(2.0 * urand() - 1.0);
                    bl_kv_q8_quantize(row, hd, K8 + r * ld, Ks + r * lds);
                    bl_kv_q8_dequantize(K8 + r * ld, Ks + r * lds, hd, K + r * ld);
                    for (int j = 0; j < hd; j++) row[j] = (float)(4.0 * urand() - 2.0);
                    bl_kv_q8_quantize(row, hd, V8 + r * ld, Vs + r * lds);
                    bl_kv_q8_dequantize(V8 + r * ld, Vs + r * lds, hd, V + r * ld);
                }
                for (int i = 0; i < G * hd; i++) q[i] = (float)(2.0 * urand() - 1.0);
                const float scale = 1.0f / sqrtf((float)hd);
                CHECK(!bl_attend_q8(q, hd, G, K8, Ks, V8, Vs, ld, lds, hd, n, scale, P, y, hd,
                                    BL_ISA_REF));
                for (int l = 1; l < nl; l++) {
                    bl_attend(q, hd, G, K, V, ld, hd, n, scale, P, x, hd, lv[l]);
                    CHECK(bl_attend_q8(q, hd, G, K8, Ks, V8, Vs, ld, lds, hd, n, scale, P, y, hd,
                                       lv[l]));
                    CHECK_MSG(memcmp(x, y, sizeof(float) * (size_t)(G * hd)) == 0,
                              "%s hd %d n %d G %d: int8 cache differs from its dequantized values",
                              bl_isa_name(lv[l]), hd, n, G);
                }
                free(K8), free(V8), free(Ks), free(Vs), free(K), free(V);
                free(q), free(P), free(x), free(y);
            }
}

/* Attention on an FP16 cache (bl_attend_f16): at AVX2 and AVX-512 the results of bl_attend on the
 * widened values, bit for bit (shapes with tails in both the keys and the head dimension, groups
 * larger than a chunk, a row stride that is not the head dimension); at the reference it refuses
 * (false). */
static void test_attend_f16(void) {
    const int hds[] = {12, 64, 128}, ns[] = {1, 17, 65, 300}, Gs[] = {1, 3, 20};
    bl_isa lv[3];
    const int nl = levels(lv);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++)
            for (int gi = 0; gi < 3; gi++) {
                const int hd = hds[a], n = ns[b], G = Gs[gi];
                const int64_t ld = 2 * hd + 3;
                uint16_t *K16 = malloc(sizeof(uint16_t) * (size_t)(n * ld));
                uint16_t *V16 = malloc(sizeof(uint16_t) * (size_t)(n * ld));
                float *K = malloc(sizeof(float) * (size_t)(n * ld)), *V = malloc(sizeof(float) * (size_t)(n * ld));
                float *q = malloc(sizeof(float) * (size_t)(G * hd)), *P = malloc(sizeof(float) * (size_t)(G * n));
                float *x = malloc(sizeof(float) * (size_t)(G * hd)), *y = malloc(sizeof(float) * (size_t)(G * hd));
                REQUIRE(K16 && V16 && K && V && q && P && x && y);
                for (int64_t i = 0; i < n * ld; i++) {
                    K16[i] = bl_f32_to_f16((float)(2.0 * urand() - 1.0));
                    V16[i] = bl_f32_to_f16((float)(4.0 * urand() - 2.0));
                    K[i] = bl_f16_to_f32(K16[i]), V[i] = bl_f16_to_f32(V16[i]);
                }
                for (int i = 0; i < G * hd; i++) q[i] = (float)(2.0 * urand() - 1.0);
                const float scale = 1.0f / sqrtf((float)hd);
                CHECK(!bl_attend_f16(q, hd, G, K16, V16, ld, hd, n, scale, P, y, hd, BL_ISA_REF));
                for (int l = 1; l < nl; l++) {
                    bl_attend(q, hd, G, K, V, ld, hd, n, scale, P, x, hd, lv[l]);
                    CHECK(bl_attend_f16(q, hd, G, K16, V16, ld, hd, n, scale, P, y, hd, lv[l]));
                    CHECK_MSG(memcmp(x, y, sizeof(float) * (size_t)(G * hd)) == 0,
                              "%s hd %d n %d G %d: FP16 cache differs from its widened values",
                              bl_isa_name(lv[l]), hd, n, G);
                }
                free(K16), free(V16), free(K), free(V), free(q), free(P), free(x), free(y);
            }
}

/* The dispatchers, which the cases above call, run the level asked for: each kernel's entry point
 * agrees bit for bit with its dispatcher at that level. */
static void test_dispatch(void) {
    float q[128], K[64 * 20], V[64 * 20], P[40], a[128], b[128];
    for (int i = 0; i < 128; i++) q[i] = (float)(urand() - 0.5);
    for (int i = 0; i < 64 * 20; i++) K[i] = (float)(urand() - 0.5), V[i] = (float)urand();
    bl_isa lv[3];
    const int nl = levels(lv);
    for (int l = 0; l < nl; l++) {
        const bl_isa isa = lv[l];
        bl_attend(q, 64, 2, K, V, 64, 64, 20, 0.125f, P, a, 64, isa);
        (isa == BL_ISA_AVX512 ? bl_attend_avx512 : isa == BL_ISA_AVX2 ? bl_attend_avx2
                                                                      : bl_attend_ref)(
            q, 64, 2, K, V, 64, 64, 20, 0.125f, P, b, 64);
        CHECK_MSG(memcmp(a, b, sizeof a) == 0, "bl_attend at %s", bl_isa_name(isa));
        const float *u = V; /* 128 gates, 128 multipliers */
        memcpy(a, K, sizeof a), memcpy(b, K, sizeof b);
        bl_silu_mul(a, u, 128, isa);
        (isa == BL_ISA_AVX512 ? bl_silu_mul_avx512 : isa == BL_ISA_AVX2 ? bl_silu_mul_avx2
                                                                        : bl_silu_mul_ref)(b, u, 128);
        CHECK_MSG(memcmp(a, b, sizeof a) == 0, "bl_silu_mul at %s", bl_isa_name(isa));
        memcpy(a, K, sizeof a), memcpy(b, K, sizeof b);
        bl_softmax(a, 128, isa);
        (isa == BL_ISA_AVX512 ? bl_softmax_avx512 : isa == BL_ISA_AVX2 ? bl_softmax_avx2
                                                                       : bl_softmax_ref)(b, 128);
        CHECK_MSG(memcmp(a, b, sizeof a) == 0, "bl_softmax at %s", bl_isa_name(isa));
    }
}

int main(void) {
    TEST_RUN(test_silu);
    TEST_RUN(test_softmax);
    TEST_RUN(test_attend);
    TEST_RUN(test_attend_f16);
    TEST_RUN(test_kv_q8);
    TEST_RUN(test_attend_q8);
    TEST_RUN(test_dispatch);
    return test_summary();
}
