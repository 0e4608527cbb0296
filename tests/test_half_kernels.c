/* Dense kernels (the FP baseline) against the scalar reference: every ISA level this CPU runs,
 * F16, BF16 and F32 weights, awkward shapes and batches, 1 and 2 threads and each token alone
 * (all of which must agree bit for bit), and the dense layer that uses them. */
#include <stdint.h>

#include "bitllm/format.h"
#include "bitllm/kernels.h"
#include "kernels/half_kernels.h"
#include "test.h"

static bl_pool *two_threads; /* made in main */

/* The conversion at one ISA level (bl_half_to_f32 itself runs at the default level). */
static void convert_at(bl_isa isa, bl_dtype dt, const uint16_t *src, float *dst, size_t n) {
    if (isa == BL_ISA_AVX512) bl_half_to_f32_avx512(dt, src, dst, n);
    else if (isa == BL_ISA_AVX2) bl_half_to_f32_avx2(dt, src, dst, n);
    else bl_half_to_f32_ref(dt, src, dst, n);
}

static const bl_dtype dtypes[] = {BL_DT_F16, BL_DT_BF16, BL_DT_F32};

static uint16_t to_half(bl_dtype dt, float v) {
    return dt == BL_DT_BF16 ? bl_f32_to_bf16(v) : bl_f32_to_f16(v);
}

/* Every 16-bit pattern, converted at every level from an odd start and with an odd count (so
 * the vector tails run), equals the scalar conversion; NaNs only need to stay NaN. */
static void test_convert_every_value(void) {
    uint16_t *src = malloc(65536 * sizeof *src);
    float *ref = malloc(65536 * sizeof *ref), *got = malloc(65536 * sizeof *got);
    REQUIRE(src && ref && got);
    for (uint32_t i = 0; i < 65536; i++) src[i] = (uint16_t)i;
    const bl_isa best = bl_cpu_best_isa();
    for (int d = 0; d < 2; d++) {
        bl_half_to_f32_ref(dtypes[d], src, ref, 65536);
        for (int isa = BL_ISA_REF; isa <= (int)best; isa++) {
            const size_t starts[] = {0, 1, 7}, counts[] = {65536, 65535 - 9, 5};
            for (int k = 0; k < 3; k++) {
                size_t s0 = starts[k], cnt = counts[k];
                memset(got, 0xAB, 65536 * sizeof *got);
                convert_at((bl_isa)isa, dtypes[d], src + s0, got + s0, cnt);
                int bad = 0;
                for (size_t i = s0; i < s0 + cnt; i++) {
                    bool same = isnan(ref[i]) ? isnan(got[i])
                                              : memcmp(&ref[i], &got[i], sizeof(float)) == 0;
                    if (!same && bad++ < 3)
                        fprintf(stderr, "  %s %s 0x%04x: %g vs %g\n", bl_isa_name((bl_isa)isa),
                                d ? "bf16" : "f16", (unsigned)src[i], got[i], ref[i]);
                }
                CHECK_MSG(bad == 0, "%d values differ", bad);
                /* nothing written past the count */
                if (s0 + cnt < 65536) CHECK(memcmp(&got[s0 + cnt], &(uint32_t){0xABABABABu}, 4) == 0);
            }
        }
    }
    /* the public entry point (default level) too */
    bl_half_to_f32(BL_DT_F16, src, got, 65536);
    bl_half_to_f32_ref(BL_DT_F16, src, ref, 65536);
    for (size_t i = 0; i < 65536; i++)
        CHECK(isnan(ref[i]) ? isnan(got[i]) : memcmp(&ref[i], &got[i], sizeof(float)) == 0);
    free(src), free(ref), free(got);
}

/* One problem: W (m×n, normal·0.05 rounded to dt, a few large and tiny values mixed in) and X
 * (T×n standard normal), checked at every level against the double-accumulated reference with
 * the float-summation tolerance |y − y_ref| ≤ 1e-5·Σ_j|w_ij·x_j| + 1e-6. */
static const char *dt_name(bl_dtype dt) {
    return dt == BL_DT_BF16 ? "bf16" : dt == BL_DT_F16 ? "f16" : "f32";
}

/* The product through the public entry for dt (W holds 16-bit values, or floats for F32);
 * ex NULL: the scalar reference. */
static void matmul(bl_dtype dt, const void *W, int64_t m, int64_t n, const float *X, int64_t T,
                   float *Y, const bl_exec *ex) {
    if (!ex && dt == BL_DT_F32) bl_f32_matmul_ref(W, m, n, X, T, Y);
    else if (!ex) bl_half_matmul_ref(dt, W, m, n, X, T, Y);
    else if (dt == BL_DT_F32) bl_f32_matmul(W, m, n, X, T, Y, ex);
    else bl_half_matmul(dt, W, m, n, X, T, Y, ex);
}

static float weight_at(bl_dtype dt, const void *W, int64_t k) {
    if (dt == BL_DT_F32) return ((const float *)W)[k];
    float v;
    bl_half_to_f32_ref(dt, (const uint16_t *)W + k, &v, 1);
    return v;
}

static void check_problem(bl_dtype dt, int64_t m, int64_t n, int64_t T, uint64_t seed) {
    const size_t wsize = dt == BL_DT_F32 ? 4 : 2;
    void *W = malloc((size_t)(m * n) * wsize);
    float *X = malloc((size_t)(T * n) * sizeof *X), *Yref = malloc((size_t)(T * m) * sizeof(float));
    float *Y1 = malloc((size_t)(T * m) * sizeof(float)), *Y2 = malloc((size_t)(T * m) * sizeof(float));
    double *mag = calloc((size_t)(T * m), sizeof(double));
    REQUIRE(W && X && Yref && Y1 && Y2 && mag);
    bl_rng r;
    bl_rng_seed(&r, seed);
    for (int64_t k = 0; k < m * n; k++) {
        float v = 0.05f * bl_rng_normal(&r);
        if (k % 97 == 5) v *= 1000.0f;
        if (k % 89 == 3) v *= 1e-6f; /* subnormal in F16 */
        if (dt == BL_DT_F32) ((float *)W)[k] = v;
        else ((uint16_t *)W)[k] = to_half(dt, v);
    }
    for (int64_t k = 0; k < T * n; k++) X[k] = bl_rng_normal(&r);
    matmul(dt, W, m, n, X, T, Yref, NULL);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                mag[t * m + i] += fabs((double)weight_at(dt, W, i * n + j) * X[t * n + j]);
    const bl_isa best = bl_cpu_best_isa();
    for (int isa = BL_ISA_REF; isa <= (int)best; isa++) {
        const bl_exec one = {NULL, (bl_isa)isa, BL_TABLES_F32}, two = {two_threads, (bl_isa)isa, BL_TABLES_F32};
        matmul(dt, W, m, n, X, T, Y1, &one);
        matmul(dt, W, m, n, X, T, Y2, &two);
        double worst = 0;
        for (int64_t k = 0; k < T * m; k++) {
            double e = fabs((double)Y1[k] - Yref[k]) / (1e-5 * mag[k] + 1e-6);
            if (!(e <= worst)) worst = e;
        }
        CHECK_MSG(memcmp(Y1, Y2, (size_t)(T * m) * sizeof(float)) == 0,
                  "%s %s m=%lld n=%lld T=%lld: 1 vs 2 threads differ", bl_isa_name((bl_isa)isa),
                  dt_name(dt), (long long)m, (long long)n, (long long)T);
        /* batch invariance: each token alone gives exactly its row of the batch (what batched
         * decoding of several sequences relies on) */
        int differ = 0;
        for (int64_t t = 0; t < T; t++) {
            matmul(dt, W, m, n, X + t * n, 1, Y2, &two);
            differ += memcmp(Y2, Y1 + t * m, (size_t)m * sizeof(float)) != 0;
        }
        CHECK_MSG(differ == 0, "%s %s m=%lld n=%lld T=%lld: %d tokens differ alone and batched",
                  bl_isa_name((bl_isa)isa), dt_name(dt), (long long)m, (long long)n,
                  (long long)T, differ);
        CHECK_MSG(worst <= 1.0, "%s %s m=%lld n=%lld T=%lld: error %.3g x tolerance",
                  bl_isa_name((bl_isa)isa), dt_name(dt), (long long)m,
                  (long long)n, (long long)T, worst);
    }
    free(W), free(X), free(Yref), free(Y1), free(Y2), free(mag);
}

/* f32 → f16 (the FP16 KV cache): the AVX-512 and AVX2 conversions equal the scalar bl_f32_to_f16 bit for
 * bit on every finite f16 value, the midpoints between neighbours (ties to even) and a quarter
 * step either side, values past 65504 (→ inf, or down to 65504 below the midpoint), below the
 * smallest subnormal and infinities; NaNs stay NaN. Odd start and count, so the tail runs. */
static void test_to_f16(void) {
    const size_t cap = 65536 * 4 + 64;
    float *src = malloc(cap * sizeof *src);
    uint16_t *ref = malloc(cap * sizeof *ref), *got = malloc(cap * sizeof *got);
    REQUIRE(src && ref && got);
    size_t n = 0;
    for (uint32_t h = 0; h < 65535; h++) {
        const float a = bl_f16_to_f32((uint16_t)h), b = bl_f16_to_f32((uint16_t)(h + 1));
        if (!isfinite(a)) continue;
        src[n++] = a;
        if (isfinite(b) && (h & 0x7fff) != 0x7fff) {
            const float mid = a + (b - a) * 0.5f; /* exact: f16 neighbours are 11-bit values */
            src[n++] = mid;
            src[n++] = mid + (b - a) * 0.25f;
            src[n++] = mid - (b - a) * 0.25f;
        }
    }
    const float extra[] = {65504.0f, 65519.0f, 65520.0f, 1e6f, -1e6f, 1e-9f, -1e-9f, 3e-8f,
                           INFINITY, -INFINITY, NAN, -0.0f, 0.0f};
    for (size_t k = 0; k < sizeof extra / sizeof extra[0]; k++) src[n++] = extra[k];
    bl_f32_to_f16_n_ref(src, ref, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += ref[i] != bl_f32_to_f16(src[i]);
    CHECK(bad == 0);
    for (int isa = BL_ISA_AVX2; isa <= (int)bl_cpu_best_isa(); isa++) {
        const size_t starts[] = {0, 1, 7}, counts[] = {n, n - 9, 5};
        for (int k = 0; k < 3; k++) {
            memset(got, 0xAB, cap * sizeof *got);
            (isa == BL_ISA_AVX512 ? bl_f32_to_f16_n_avx512 : bl_f32_to_f16_n_avx2)(
                src + starts[k], got + starts[k], counts[k]);
            bad = 0;
            for (size_t i = starts[k]; i < starts[k] + counts[k]; i++) {
                const bool nan = isnan(src[i]);
                const bool same = nan ? (got[i] & 0x7c00) == 0x7c00 && (got[i] & 0x3ff) : got[i] == ref[i];
                if (!same && bad++ < 3)
                    fprintf(stderr, "  f32 %a: 0x%04x vs 0x%04x\n", (double)src[i], got[i], ref[i]);
            }
            CHECK_MSG(bad == 0, "%s: %d conversions differ", bl_isa_name((bl_isa)isa), bad);
            if (starts[k] + counts[k] < cap) CHECK(got[starts[k] + counts[k]] == 0xABAB);
        }
    }
    bl_f32_to_f16_n(src, got, n); /* the public entry point (default level) */
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isnan(src[i]) && got[i] != ref[i];
    CHECK(bad == 0);
    free(src), free(ref), free(got);
}

static void test_small_shapes(void) {
    static const int64_t sizes[] = {1, 7, 63, 64, 65, 511, 513};
    static const int64_t Ts[] = {1, 2, 3, 5, 7};
    uint64_t seed = 1;
    for (int d = 0; d < 3; d++)
        for (int a = 0; a < 7; a++)
            for (int b = 0; b < 7; b++)
                for (int t = 0; t < 5; t++)
                    if (sizes[a] * sizes[b] * Ts[t] <= (1 << 18))
                        check_problem(dtypes[d], sizes[a], sizes[b], Ts[t], seed++);
}

/* Besides the row and column remainders: rows over several column blocks of the summation order
 * (BL_HALF_KBLOCK = 1024, the last one partial and not a multiple of 16), and the last two,
 * batches whose X exceeds 1 MiB, which the kernels sweep column block by column block, in blocks
 * of tokens that end in a partial tile. */
static void test_large_shapes(void) {
    static const int64_t shapes[][3] = {{4095, 65, 1}, {65, 4095, 3}, {513, 4095, 1},
                                        {4095, 513, 2}, {300, 1000, 17}, {45, 2100, 9},
                                        {37, 2100, 130},  {13, 3001, 90}};
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    /* the sanitizer pass (BITLLM_TEST_QUICK) leaves F32 to the small shapes: it runs the same
     * tiles as the 16-bit kinds, only the loads differ */
    const char *q = getenv("BITLLM_TEST_QUICK");
    const int kinds = q && *q && strcmp(q, "0") != 0 ? 2 : 3;
    for (int d = 0; d < kinds; d++)
        for (int s = 0; s < nshapes; s++)
            check_problem(dtypes[d], shapes[s][0], shapes[s][1], shapes[s][2], 100 + (uint64_t)s);
}

/* The dense layer over a 16-bit or f32 tensor equals x·Ŵᵀ (Ŵ from its own to_dense) for
 * batches of every tile remainder. */
static void test_dense_layer(void) {
    const int64_t m = 37, n = 129;
    for (int d = 0; d < 3; d++) {
        const size_t wsize = dtypes[d] == BL_DT_F32 ? 4 : 2;
        void *w = malloc((size_t)(m * n) * wsize);
        float *Wf = malloc((size_t)(m * n) * sizeof *Wf);
        REQUIRE(w && Wf);
        bl_rng r;
        bl_rng_seed(&r, 7);
        for (int64_t k = 0; k < m * n; k++) {
            float v = 0.1f * bl_rng_normal(&r);
            if (dtypes[d] == BL_DT_F32) ((float *)w)[k] = v;
            else ((uint16_t *)w)[k] = to_half(dtypes[d], v);
        }
        bl_tensor t = {.name = "w", .dtype = dtypes[d], .ndim = 2, .shape = {m, n}, .data = w,
                       .nbytes = (size_t)(m * n) * wsize};
        bl_linear L;
        bl_err err;
        REQUIRE(bl_linear_dense_init(&L, &t, &err) == BL_OK);
        REQUIRE(L.ops->to_dense(&L, Wf, &err) == BL_OK);
        for (int64_t T = 1; T <= 20; T += 3) {
            float *X = malloc((size_t)(T * n) * sizeof *X), *Y = malloc((size_t)(T * m) * sizeof *Y);
            float *work = malloc((L.ops->workspace_floats(&L, T) + 1) * sizeof(float));
            REQUIRE(X && Y && work);
            for (int64_t k = 0; k < T * n; k++) X[k] = bl_rng_normal(&r);
            L.ops->forward(&L, X, T, Y, work, NULL);
            for (int64_t tt = 0; tt < T; tt++)
                for (int64_t i = 0; i < m; i++) {
                    double acc = 0, mag = 0;
                    for (int64_t j = 0; j < n; j++) {
                        acc += (double)Wf[i * n + j] * X[tt * n + j];
                        mag += fabs((double)Wf[i * n + j] * X[tt * n + j]);
                    }
                    CHECK_NEAR(Y[tt * m + i], acc, 1e-5 * mag + 1e-6);
                }
            free(X), free(Y), free(work);
        }
        bl_linear_free(&L);
        free(w), free(Wf);
    }
}

int main(void) {
    fprintf(stderr, "cpu best ISA: %s\n", bl_isa_name(bl_cpu_best_isa()));
    if (bl_pool_new(2, &two_threads, NULL) != BL_OK) return 1;
    TEST_RUN(test_convert_every_value);
    TEST_RUN(test_to_f16);
    TEST_RUN(test_small_shapes);
    TEST_RUN(test_large_shapes);
    TEST_RUN(test_dense_layer);
    bl_pool_free(two_threads);
    return test_summary();
}
