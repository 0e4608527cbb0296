/* Sign-matrix kernels against the scalar reference: every ISA level this CPU runs, every compiled
 * variant, awkward shapes, batches T = 1..17 and 64, prepared and unprepared matrices, 1 and 2
 * threads (which must agree bit for bit), and batch invariance (a token's output does not depend
 * on the batch it is computed in). Tolerance: float summation error, |y − y_ref| ≤ 1e-5·Σ|x| + 1e-6, where Σ|x|
 * is over the inputs of that output. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/format.h"
#include "bitllm/kernels.h"
#include "formats/forward_util.h"
#include "kernels/qmat_kernels.h"
#include "kernels/sign_kernels.h"
#include "test.h"

typedef struct {
    int64_t m, n, T;
    uint8_t *bits;
    float *X, *V;        /* T×n and T×m inputs */
    float *Yref, *Zref;  /* T×m and T×n */
    float *xabs, *vabs;  /* Σ|x| per token of X and of V */
} problem;

static void problem_free(problem *p) {
    free(p->bits);
    free(p->X);
    free(p->V);
    free(p->Yref);
    free(p->Zref);
    free(p->xabs);
    free(p->vabs);
}

/* Random signs (padding bits left 0, as the format requires) and standard normal inputs. */
static int problem_make(problem *p, int64_t m, int64_t n, int64_t T, uint64_t seed) {
    memset(p, 0, sizeof *p);
    p->m = m, p->n = n, p->T = T;
    const int64_t rb = bl_sign_row_bytes(n);
    p->bits = calloc((size_t)(m * rb + 1), 1);
    p->X = malloc((size_t)(T * n + 1) * sizeof(float));
    p->V = malloc((size_t)(T * m + 1) * sizeof(float));
    p->Yref = malloc((size_t)(T * m + 1) * sizeof(float));
    p->Zref = malloc((size_t)(T * n + 1) * sizeof(float));
    p->xabs = calloc((size_t)T, sizeof(float));
    p->vabs = calloc((size_t)T, sizeof(float));
    if (!p->bits || !p->X || !p->V || !p->Yref || !p->Zref || !p->xabs || !p->vabs) return 0;
    bl_rng r;
    bl_rng_seed(&r, seed);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            if (bl_rng_u64(&r) >> 63) p->bits[i * rb + (j >> 3)] |= (uint8_t)(1u << (j & 7));
    for (int64_t k = 0; k < T * n; k++) p->X[k] = bl_rng_normal(&r);
    for (int64_t k = 0; k < T * m; k++) p->V[k] = bl_rng_normal(&r);
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < n; j++) p->xabs[t] += fabsf(p->X[t * n + j]);
        for (int64_t i = 0; i < m; i++) p->vabs[t] += fabsf(p->V[t * m + i]);
    }
    bl_signmat S;
    bl_signmat_init(&S, m, n, p->bits);
    bl_sign_matmul_ref(&S, p->X, T, p->Yref);
    bl_sign_matmul_t_ref(&S, p->V, T, p->Zref);
    return 1;
}

/* Largest |got − ref| / tolerance over a T×len result (≤ 1 passes). */
static double worst_ratio(const float *got, const float *ref, const float *abssum, int64_t T,
                          int64_t len) {
    double worst = 0.0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < len; k++) {
            double d = fabs((double)got[t * len + k] - (double)ref[t * len + k]);
            double r = d / (1e-5 * abssum[t] + 1e-6);
            if (!(r <= worst)) worst = r; /* NaN sticks */
        }
    return worst;
}

static bl_pool *two_threads; /* made in main */

/* Whether a BL_TABLES_I8 result differs (bitwise) from the specification's. */
static bool i8_mismatch(const bl_signmat *S, const float *X, int64_t T, const float *got) {
    float *want = malloc((size_t)(T * S->m + 1) * sizeof *want);
    if (!want) return true;
    bl_sign_matmul_i8_ref(S, X, T, want);
    const bool bad = memcmp(want, got, (size_t)(T * S->m) * sizeof *want) != 0;
    free(want);
    return bad;
}

/* Runs variant k (or the public entry point for `isa` when k < 0) at 1 and 2 threads into
 * out1/out2; returns whether the two are bitwise equal. */
static int run_threads(int k, bool transposed, bl_isa isa, const bl_signmat *S, const float *in,
                       int64_t T, float *out1, float *out2, size_t len) {
    const bl_exec one = {NULL, isa, BL_TABLES_F32}, two = {two_threads, isa, BL_TABLES_F32};
    if (k >= 0) {
        bl_sign_variant_run(k, S, in, T, out1, &one);
        bl_sign_variant_run(k, S, in, T, out2, &two);
    } else if (transposed) {
        bl_sign_matmul_t(S, in, T, out1, &one);
        bl_sign_matmul_t(S, in, T, out2, &two);
    } else {
        bl_sign_matmul(S, in, T, out1, &one);
        bl_sign_matmul(S, in, T, out2, &two);
    }
    return memcmp(out1, out2, len * sizeof(float)) == 0;
}

/* Checks the public entry points at one ISA level on one problem. */
static void check_problem(const problem *p, bl_isa isa, bool prepare) {
    bl_signmat S;
    bl_signmat_init(&S, p->m, p->n, p->bits);
    if (prepare) {
        bl_err err;
        CHECK(bl_signmat_prepare(&S, isa, NULL, &err) == BL_OK);
    }
    size_t ylen = (size_t)(p->T * p->m), zlen = (size_t)(p->T * p->n);
    float *y1 = malloc((ylen + 1) * sizeof(float)), *y2 = malloc((ylen + 1) * sizeof(float));
    float *z1 = malloc((zlen + 1) * sizeof(float)), *z2 = malloc((zlen + 1) * sizeof(float));
    if (y1 && y2 && z1 && z2) {
        int same = run_threads(-1, false, isa, &S, p->X, p->T, y1, y2, ylen);
        double wy = worst_ratio(y1, p->Yref, p->xabs, p->T, p->m);
        CHECK_MSG(same, "%s m=%lld n=%lld T=%lld prep=%d: 1 vs 2 threads differ",
                  bl_isa_name(isa), (long long)p->m, (long long)p->n, (long long)p->T, prepare);
        CHECK_MSG(wy <= 1.0, "%s m=%lld n=%lld T=%lld prep=%d: error %.3g x tolerance",
                  bl_isa_name(isa), (long long)p->m, (long long)p->n, (long long)p->T, prepare,
                  wy);
        same = run_threads(-1, true, isa, &S, p->V, p->T, z1, z2, zlen);
        double wz = worst_ratio(z1, p->Zref, p->vabs, p->T, p->n);
        CHECK_MSG(same, "%s (t) m=%lld n=%lld T=%lld: 1 vs 2 threads differ", bl_isa_name(isa),
                  (long long)p->m, (long long)p->n, (long long)p->T);
        CHECK_MSG(wz <= 1.0, "%s (t) m=%lld n=%lld T=%lld: error %.3g x tolerance",
                  bl_isa_name(isa), (long long)p->m, (long long)p->n, (long long)p->T, wz);
    } else {
        CHECK(!"out of memory");
    }
    free(y1), free(y2), free(z1), free(z2);
    bl_signmat_release(&S);
}

/* Each shape at each batch size, on every ISA level, prepared and not. */
static void check_shapes(const int64_t (*shapes)[2], int nshapes, const int64_t *Ts, int nT) {
    const bl_isa best = bl_cpu_best_isa();
    uint64_t seed = 1;
    for (int s = 0; s < nshapes; s++)
        for (int k = 0; k < nT; k++) {
            problem p;
            if (!problem_make(&p, shapes[s][0], shapes[s][1], Ts[k], seed++)) {
                problem_free(&p);
                CHECK(!"out of memory");
                return;
            }
            /* The ref level only proves that dispatch reaches the reference: small cases do. */
            int first = p.m * p.n * p.T <= (1 << 16) ? BL_ISA_REF : BL_ISA_AVX2;
            for (int isa = first; isa <= (int)best; isa++) {
                check_problem(&p, (bl_isa)isa, true);
                if (isa != BL_ISA_REF) check_problem(&p, (bl_isa)isa, false);
            }
            problem_free(&p);
        }
}

static const int64_t small_sizes[] = {1, 7, 63, 64, 65, 511, 513};
#define NSMALL (int)(sizeof small_sizes / sizeof small_sizes[0])

static void test_small_shapes(void) {
    int64_t shapes[NSMALL * NSMALL][2];
    int ns = 0;
    for (int a = 0; a < NSMALL; a++)
        for (int b = 0; b < NSMALL; b++) shapes[ns][0] = small_sizes[a], shapes[ns++][1] = small_sizes[b];
    static const int64_t Ts[] = {1, 2, 3, 8, 17, 64}, Tq[] = {1, 3, 17};
    if (test_quick())
        check_shapes((const int64_t(*)[2])shapes, ns, Tq, 3);
    else
        check_shapes((const int64_t(*)[2])shapes, ns, Ts, 6);
}

static void test_large_shapes(void) {
    static const int64_t shapes[][2] = {{4095, 7}, {7, 4095}, {4095, 65}, {65, 4095},
                                        {513, 4095}, {4095, 513}, {4095, 4095}};
    static const int64_t Ts[] = {1, 17}, T3[] = {3};
    if (test_quick()) {
        check_shapes(shapes, 4, T3, 1); /* the sanitizer build skips the biggest ones */
    } else {
        check_shapes(shapes, 6, Ts, 2);
        check_shapes(shapes + 6, 1, T3, 1);
    }
}

/* Every compiled variant (including the non-default alternatives) against the reference, at 1
 * and 2 threads; and batch invariance: every T from 1 to 17 gives each token exactly the output
 * it gets alone (every variant sums a token's terms in an order that does not depend on T). */
static void test_all_variants(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 63, 3}, {65, 513, 8}, {513, 65, 17},
                                        {64, 64, 64}, {511, 1000, 5}, {300, 1100, 17}};
    int nv;
    const bl_sign_variant *v = bl_sign_variants(&nv);
    const bl_isa best = bl_cpu_best_isa();
    const int nshapes = test_quick() ? 6 : 7;
    for (int s = 0; s < nshapes; s++) {
        problem p;
        if (!problem_make(&p, shapes[s][0], shapes[s][1], shapes[s][2], 100 + (uint64_t)s)) {
            problem_free(&p);
            CHECK(!"out of memory");
            return;
        }
        for (int k = 0; k < nv; k++) {
            if (v[k].isa > best) continue;
            bl_signmat S;
            bl_signmat_init(&S, p.m, p.n, p.bits);
            if (v[k].packed) REQUIRE(bl_signmat_prepare(&S, v[k].isa, NULL, NULL) == BL_OK);
            const int64_t len = v[k].transposed ? p.n : p.m;
            const float *in = v[k].transposed ? p.V : p.X;
            const int64_t in_len = v[k].transposed ? p.m : p.n;
            float *o1 = malloc((size_t)(p.T * len + 1) * sizeof(float));
            float *o2 = malloc((size_t)(p.T * len + 1) * sizeof(float));
            REQUIRE(o1 && o2);
            int same = run_threads(k, false, v[k].isa, &S, in, p.T, o1, o2, (size_t)(p.T * len));
            double w = v[k].transposed ? worst_ratio(o1, p.Zref, p.vabs, p.T, p.n)
                                       : worst_ratio(o1, p.Yref, p.xabs, p.T, p.m);
            if (v[k].tables == BL_TABLES_I8) /* its specification, bit for bit */
                w = i8_mismatch(&S, p.X, p.T, o1) ? INFINITY : 0.0;
            CHECK_MSG(same && w <= 1.0, "%s/%s m=%lld n=%lld T=%lld: same=%d error %.3g x tol",
                      bl_isa_name(v[k].isa), v[k].name, (long long)p.m, (long long)p.n,
                      (long long)p.T, same, w);
            /* batch invariance: sub-batches [t0, t0+T') against the full batch's rows */
            int bad = 0;
            for (int64_t Tp = 1; Tp <= p.T && Tp <= 17; Tp++)
                for (int64_t t0 = 0; t0 + Tp <= p.T; t0 += Tp > 5 ? p.T : 3) {
                    const bl_exec two = {two_threads, v[k].isa, BL_TABLES_F32};
                    bl_sign_variant_run(k, &S, in + t0 * in_len, Tp, o2, &two);
                    bad += memcmp(o2, o1 + t0 * len, (size_t)(Tp * len) * sizeof(float)) != 0;
                }
            CHECK_MSG(bad == 0, "%s/%s m=%lld n=%lld: %d sub-batches differ from the full batch",
                      bl_isa_name(v[k].isa), v[k].name, (long long)p.m, (long long)p.n, bad);
            free(o1), free(o2);
            bl_signmat_release(&S);
        }
        problem_free(&p);
    }
}

/* Properties the kernels document: the packed layout is shared by AVX2 and AVX-512 (a matrix
 * prepared under one level runs under the other), and at each level the prepared and unprepared
 * lookup-table paths give bit-identical results. */
static void test_layout_shared_and_bit_identical(void) {
    if (bl_cpu_best_isa() < BL_ISA_AVX2) SKIP("no AVX2");
    problem p;
    REQUIRE(problem_make(&p, 333, 1111, 5, 7));
    bl_signmat S, U;
    bl_signmat_init(&S, p.m, p.n, p.bits);
    bl_signmat_init(&U, p.m, p.n, p.bits); /* never prepared */
    REQUIRE(bl_signmat_prepare(&S, BL_ISA_AVX2, NULL, NULL) == BL_OK);
    CHECK(S.packed != NULL);
    const bl_sb_geom g = bl_sb_geometry(p.m, p.n);
    CHECK(S.packed_bytes == bl_sb_packed_bytes(&g));
    CHECK(S.packed_bytes == bl_signmat_packed_bytes(p.m, p.n));
    size_t len = (size_t)(p.T * p.m);
    float *a = malloc(len * sizeof(float)), *b = malloc(len * sizeof(float));
    REQUIRE(a && b);
    for (int isa = BL_ISA_AVX2; isa <= (int)bl_cpu_best_isa(); isa++) {
        const bl_exec ex = {two_threads, (bl_isa)isa, BL_TABLES_F32};
        bl_sign_matmul(&S, p.X, p.T, a, &ex);
        bl_sign_matmul(&U, p.X, p.T, b, &ex);
        CHECK_MSG(memcmp(a, b, len * sizeof(float)) == 0, "%s", bl_isa_name((bl_isa)isa));
        CHECK(worst_ratio(a, p.Yref, p.xabs, p.T, p.m) <= 1.0);
    }
    free(a), free(b);
    bl_signmat_release(&S);
    CHECK(S.packed == NULL && S.packed_bytes == 0);
    bl_signmat_release(&S); /* idempotent */
    problem_free(&p);
}

/* Repacking split across threads gives the same bytes as on one thread. */
static void test_pack_threads(void) {
    problem p;
    REQUIRE(problem_make(&p, 2049, 2100, 1, 77));
    bl_signmat A, B;
    bl_signmat_init(&A, p.m, p.n, p.bits);
    bl_signmat_init(&B, p.m, p.n, p.bits);
    REQUIRE(bl_signmat_prepare(&A, BL_ISA_AVX2, NULL, NULL) == BL_OK);
    REQUIRE(bl_signmat_prepare(&B, BL_ISA_AVX2, two_threads, NULL) == BL_OK);
    if (bl_cpu_best_isa() >= BL_ISA_AVX2) {
        REQUIRE(A.packed && B.packed && A.packed_bytes == B.packed_bytes);
        CHECK(memcmp(A.packed, B.packed, A.packed_bytes) == 0);
    } else {
        CHECK(!A.packed && !B.packed); /* the reference needs no packing */
    }
    bl_signmat_release(&A);
    bl_signmat_release(&B);
    problem_free(&p);
}

/* The packing against bl_sign_get, bit by bit. */
static void test_pack_layout(void) {
    static const int64_t shapes[][2] = {{1, 1}, {17, 33}, {40, 1100}};
    for (size_t s = 0; s < 3; s++) {
        problem p;
        REQUIRE(problem_make(&p, shapes[s][0], shapes[s][1], 1, 55 + s));
        const bl_sb_geom g = bl_sb_geometry(p.m, p.n);
        uint32_t *pk = malloc(bl_sb_packed_bytes(&g));
        REQUIRE(pk);
        bl_sb_pack(p.m, p.n, p.bits, pk);
        const int64_t rb = bl_sign_row_bytes(p.n);
        int bad = 0;
        for (int64_t i = 0; i < g.blocks * BL_SB_ROWS; i++)
            for (int64_t j = 0; j < g.words * 32; j++) {
                int64_t c = j / BL_SB_CHUNK_COLS, w = j / 32 - c * BL_SB_CHUNK_WORDS;
                uint32_t word = pk[bl_sb_offset(&g, c, i / BL_SB_ROWS, w) + i % BL_SB_ROWS];
                int bit = (int)(word >> (j % 32)) & 1;
                int want = (i < p.m && j < p.n) ? bl_sign_get(p.bits, rb, i, j) < 0 : 0;
                bad += bit != want;
            }
        CHECK_MSG(bad == 0, "%lld x %lld: %d bits wrong", (long long)p.m, (long long)p.n, bad);
        free(pk);
        problem_free(&p);
    }
}

/* Padding bits must be 0 in a valid matrix, but no kernel may let them leak into a result. */
static void test_padding_bits_ignored(void) {
    problem p;
    REQUIRE(problem_make(&p, 37, 13, 3, 9));
    const int64_t rb = bl_sign_row_bytes(p.n);
    for (int64_t i = 0; i < p.m; i++) p.bits[i * rb + rb - 1] |= 0xE0; /* columns 13..15 */
    int nv;
    const bl_sign_variant *v = bl_sign_variants(&nv);
    for (int k = 0; k < nv; k++) {
        if (v[k].isa > bl_cpu_best_isa()) continue;
        bl_signmat S;
        bl_signmat_init(&S, p.m, p.n, p.bits);
        if (v[k].packed) REQUIRE(bl_signmat_prepare(&S, v[k].isa, NULL, NULL) == BL_OK);
        float out[3 * 37];
        bl_sign_variant_run(k, &S, v[k].transposed ? p.V : p.X, p.T, out, NULL);
        double w = v[k].transposed ? worst_ratio(out, p.Zref, p.vabs, p.T, p.n)
                                   : worst_ratio(out, p.Yref, p.xabs, p.T, p.m);
        if (v[k].tables == BL_TABLES_I8) /* the specification reads no bit past column n */
            w = i8_mismatch(&S, p.X, p.T, out) ? INFINITY : 0.0;
        CHECK_MSG(w <= 1.0, "%s/%s: error %.3g x tol", bl_isa_name(v[k].isa), v[k].name, w);
        bl_signmat_release(&S);
    }
    problem_free(&p);
}

/* Empty shapes, and the dispatcher's bookkeeping. */
static void test_edges_and_dispatch(void) {
    const bl_isa best = bl_cpu_best_isa();
    CHECK(strcmp(bl_isa_name(BL_ISA_REF), "ref") == 0);
    CHECK(strcmp(bl_isa_name(BL_ISA_AVX2), "avx2") == 0);
    CHECK(strcmp(bl_isa_name(BL_ISA_AVX512), "avx512") == 0);
    CHECK(strcmp(bl_isa_name(BL_ISA_AUTO), "auto") == 0);
    bl_isa parsed;
    CHECK(bl_isa_from_name("avx2", &parsed) && parsed == BL_ISA_AVX2);
    CHECK(!bl_isa_from_name("sse", &parsed) && !bl_isa_from_name(NULL, &parsed));
    CHECK(bl_isa_clamp(BL_ISA_AVX512) == best); /* clamped to the CPU */
    CHECK(bl_isa_clamp(BL_ISA_REF) == BL_ISA_REF);
    CHECK(bl_isa_clamp(BL_ISA_AUTO) == bl_default_isa());
    CHECK((int)bl_default_isa() <= (int)best && bl_default_isa() != BL_ISA_AUTO);
    bl_signmat S;
    uint8_t bits[4] = {0xFF, 0x00, 0x00, 0x01};
    bl_signmat_init(&S, 2, 9, bits);
    CHECK(bl_signmat_prepare(&S, BL_ISA_REF, NULL, NULL) == BL_OK);
    CHECK(S.packed == NULL); /* the reference needs no repacking */
    bl_err err;
    bl_signmat_init(&S, 3, 3, NULL);
    CHECK(bl_signmat_prepare(&S, BL_ISA_AVX512, NULL, &err) == BL_ERR_ARG);
    for (int isa = BL_ISA_REF; isa <= (int)best; isa++) {
        const bl_exec ex = {two_threads, (bl_isa)isa, BL_TABLES_F32};
        float x[4] = {1, 2, 3, 4}, y[4] = {7, 7, 7, 7};
        bl_signmat_init(&S, 2, 0, NULL); /* n = 0: y = 0 */
        CHECK(bl_signmat_prepare(&S, (bl_isa)isa, NULL, NULL) == BL_OK);
        bl_sign_matmul(&S, x, 2, y, &ex);
        CHECK(y[0] == 0.0f && y[1] == 0.0f && y[2] == 0.0f && y[3] == 0.0f && x[0] == 1.0f);
        bl_signmat_init(&S, 0, 4, NULL); /* m = 0: z = 0 */
        float z[4] = {7, 7, 7, 7};
        bl_sign_matmul_t(&S, x, 1, z, &ex);
        CHECK(z[0] == 0.0f && z[3] == 0.0f);
        bl_sign_matmul(&S, x, 1, y, &ex); /* writes nothing */
        bl_signmat_init(&S, 2, 9, bits); /* T = 0 */
        bl_sign_matmul(&S, x, 0, y, &ex);
        /* a hand-checked 2×9 case: row 0 = −1 for columns 0..7, +1 for 8; row 1 = −1 for 8 */
        float x9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 100}, y2[2];
        CHECK(bl_signmat_prepare(&S, (bl_isa)isa, NULL, NULL) == BL_OK);
        bl_sign_matmul(&S, x9, 1, y2, &ex);
        CHECK(y2[0] == 64.0f && y2[1] == -64.0f);
        bl_signmat_release(&S);
    }
    bl_sign_variant_run(-1, &S, NULL, 1, NULL, NULL); /* an unknown variant does nothing */
}

/* ---- group-quantized (qsym) products ---- */

/* Random codes (known values, packed here independently of the library: LSB first, 4-bit codes
 * two per byte, low nibble first) and FP16-representable group scales. */
typedef struct {
    bl_qmat Q;
    uint8_t *qs;
    float *d;
    int *code; /* m×n, the values packed */
} qprob;

static void qprob_make(qprob *p, int64_t m, int64_t n, int bits, int group, bl_rng *r) {
    const int64_t rb = bl_qmat_row_bytes(n, bits), G = (n + group - 1) / group;
    p->qs = calloc((size_t)(m * rb) + 1, 1);
    p->d = malloc(sizeof(float) * (size_t)(m * G));
    p->code = malloc(sizeof(int) * (size_t)(m * n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const int c = (int)(bl_rng_u64(r) % ((1u << bits) - 1u)) + 1;
            p->code[i * n + j] = c;
            for (int b = 0; b < bits; b++)
                if (c >> b & 1) p->qs[i * rb + (j * bits + b) / 8] |= (uint8_t)(1u << ((j * bits + b) % 8));
        }
    for (int64_t k = 0; k < m * G; k++) p->d[k] = bl_round_f16(0.01f + 0.02f * bl_rng_uniform(r));
    p->Q = (bl_qmat){m, n, bits, group, p->qs, p->d};
}

static void qprob_free(qprob *p) {
    free(p->qs);
    free(p->d);
    free(p->code);
}

/* The SIMD levels of the qsym products this CPU runs, for the notes of the tests below. */
static void qmat_levels_note(const char *what, bool i8) {
    fprintf(stderr, "  (%s: ref", what);
    if (bl_cpu_best_isa() >= BL_ISA_AVX2) fprintf(stderr, ", avx2");
    if (bl_cpu_best_isa() == BL_ISA_AVX512 && (!i8 || bl_cpu_has_vnni())) fprintf(stderr, ", avx512");
    if (bl_cpu_best_isa() == BL_ISA_AVX512 && i8 && !bl_cpu_has_vnni())
        fprintf(stderr, ", avx512 without VNNI (the AVX2 kernel)");
    fprintf(stderr, ")\n");
}

/* Sub-batches whose outputs must equal their tokens' in the whole batch of QT_ALL tokens: sizes
 * 1, 3, 8 and 9 from the first token, from the middle and ending at the last. They cover every
 * tile shape of the kernels (AVX2: 4 tokens and the rest 3, 2, 1; AVX-512: 2 and 1 for f32 inputs,
 * 8, 4, 2, 1 for int8 ones). */
#define QT_ALL 64
static const int64_t qt_sizes[] = {1, 3, 8, 9};
static int64_t qt_start(int64_t Tp, int k) { return k == 0 ? 0 : k == 1 ? 29 : QT_ALL - Tp; }

/* The decoding formula, the reference against the dense dequantized product, and bl_qmat_matmul
 * at every level this CPU runs (REF: the reference itself, bit for bit; AVX2 and AVX-512: their
 * kernels) against the reference: awkward shapes (n below 8, not a multiple of 16 or of the
 * group, m not a multiple of 4), bits 4 and 8, groups 16, 32, 64 and 128, a batch of 64 tokens;
 * 1 and 2 threads agree bit for bit and every token's outputs equal those it gets in batches of
 * 1, 3, 8 and 9 (batch invariance). Tolerance of a kernel against the double reference:
 * |y − y_ref| ≤ 1e-5·Σ_j|w_j·x_j| + 1e-30. The weights are exact, and an output is a chain of
 * FMAs per lane, then a tree over the lanes: AVX2 sums ceil(n/16) products per lane, then
 * a0 + a1 and 3 levels; AVX-512 ceil(n/32), then a0 + a1 and 4 levels; either way at most
 * (n/16 + 5)·2⁻²⁴ relative to Σ|w·x| (≤ 8.2e-6 for n ≤ 2100). */
static void test_qmat(void) {
    bl_rng r;
    bl_rng_seed(&r, 77);
    const int64_t shapes[][2] = {{1, 16}, {3, 7}, {7, 33}, {13, 100}, {6, 200},
                                 {33, 515}, {5, 1037}, {10, 2100}};
    const int bitss[] = {4, 8}, groups[] = {16, 32, 64, 128};
    const bl_isa best = bl_cpu_best_isa();
    qmat_levels_note("qsym f32-input levels exercised", false);
    const int64_t T = QT_ALL;
    for (int si = 0; si < 8; si++)
        for (int bi = 0; bi < 2; bi++)
            for (int gi = 0; gi < 4; gi++) {
                const int64_t m = shapes[si][0], n = shapes[si][1];
                const int bits = bitss[bi], group = groups[gi];
                qprob p;
                qprob_make(&p, m, n, bits, group, &r);
                const int64_t G = (n + group - 1) / group;
                int bad_w = 0;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++)
                        bad_w += bl_qmat_weight(&p.Q, i, j) !=
                                 p.d[i * G + j / group] * (float)(p.code[i * n + j] - (1 << (bits - 1)));
                CHECK_MSG(bad_w == 0, "bits %d: %d weights decoded wrong", bits, bad_w);
                const size_t ybytes = sizeof(float) * (size_t)(T * m);
                float *X = malloc(sizeof(float) * (size_t)(T * n)), *ref = malloc(ybytes);
                float *y1 = malloc(ybytes), *y2 = malloc(ybytes);
                double *mag = malloc(sizeof(double) * (size_t)(T * m));
                for (int64_t k = 0; k < T * n; k++) X[k] = bl_rng_normal(&r);
                bl_qmat_matmul_ref(&p.Q, X, T, ref);
                int bad_ref = 0;
                for (int64_t t = 0; t < T; t++)
                    for (int64_t i = 0; i < m; i++) {
                        double acc = 0, a = 0;
                        for (int64_t j = 0; j < n; j++) {
                            const double w = bl_qmat_weight(&p.Q, i, j), x = X[t * n + j];
                            acc += w * x;
                            a += fabs(w * x);
                        }
                        mag[t * m + i] = a;
                        bad_ref += fabs(ref[t * m + i] - acc) > 1e-6 * a + 1e-30;
                    }
                CHECK_MSG(bad_ref == 0, "reference %lldx%lld bits %d: %d outputs off", (long long)m, (long long)n, bits, bad_ref);
                for (int isa = BL_ISA_REF; isa <= (int)best; isa++) {
                    const bl_exec one = {NULL, (bl_isa)isa, BL_TABLES_F32},
                                  two = {two_threads, (bl_isa)isa, BL_TABLES_F32};
                    CHECK(bl_qmat_simd_ok(&p.Q, &one) == (isa >= BL_ISA_AVX2));
                    memset(y1, 0xFF, ybytes);
                    bl_qmat_matmul(&p.Q, X, T, y1, &one);
                    bl_qmat_matmul(&p.Q, X, T, y2, &two);
                    const int bad_thr = memcmp(y1, y2, ybytes) != 0;
                    int bad_tol = 0, bad_inv = 0;
                    for (int64_t k = 0; k < T * m; k++)
                        bad_tol += isa == BL_ISA_REF ? memcmp(&y1[k], &ref[k], sizeof(float)) != 0
                                                     : !(fabs((double)y1[k] - ref[k]) <= 1e-5 * mag[k] + 1e-30);
                    for (int s = 0; s < 4; s++)
                        for (int k = 0; k < 3; k++) {
                            const int64_t Tp = qt_sizes[s], t0 = qt_start(Tp, k);
                            bl_qmat_matmul(&p.Q, X + t0 * n, Tp, y2, k == 1 ? &two : &one);
                            bad_inv += memcmp(y2, y1 + t0 * m, sizeof(float) * (size_t)(Tp * m)) != 0;
                        }
                    CHECK_MSG(bad_tol == 0 && bad_thr == 0 && bad_inv == 0,
                              "%s %lldx%lld bits %d group %d: %d outside tolerance, threads differ "
                              "%d, %d sub-batches differ", bl_isa_name((bl_isa)isa), (long long)m,
                              (long long)n, bits, group, bad_tol, bad_thr, bad_inv);
                }
                free(X), free(ref), free(y1), free(y2), free(mag);
                qprob_free(&p);
            }
    /* layouts without a SIMD kernel are refused by bl_qmat_simd_ok, never computed wrong */
    bl_qmat odd = {4, 40, 6, 32, NULL, NULL}, g8 = {4, 40, 8, 8, NULL, NULL};
    const bl_exec e = {NULL, BL_ISA_AVX512, BL_TABLES_F32};
    CHECK(!bl_qmat_simd_ok(&odd, &e) && !bl_qmat_simd_ok(&g8, &e));
    const bl_exec eref = {NULL, BL_ISA_REF, BL_TABLES_F32};
    bl_qmat q8 = {4, 40, 8, 32, NULL, NULL};
    CHECK(!bl_qmat_simd_ok(&q8, &eref));
    CHECK(bl_qmat_simd_ok(&q8, &e) == (best >= BL_ISA_AVX2));
}

/* BL_TABLES_I8 for group-quantized matrices (bl_qmat_matmul_i8): at every level the public entry
 * point equals the specification bit for bit, with 1 and 2 threads, and every token's outputs
 * equal those it gets in batches of 1, 3, 8 and 9; the specification stays within its bound of
 * the exact product of the same weights. Bound, per output: each input is off q·dx by at most
 * half a step dx_g/2 (times 1 + 2⁻¹³ for the rounding of x·inv) plus 2.4e-7·|x| (inv·dx is 1
 * within two roundings), each weighted by |ŵ|; the integers are exact, and the f32 products,
 * FMAs and tree add at most (n/64 + 6)·2⁻²⁴ ≤ 1e-5 relative to Σ|ŵ|·(|x| + dx_g). Shapes: n not
 * a multiple of 64 or of the group, odd m, groups 32, 64, 96 (straddling blocks) and 128, bits 4
 * and 8, a batch of 64 tokens; inputs normal, and normal with an outlier 1000× larger per 97
 * columns. */
static void test_qmat_i8(void) {
    bl_rng r;
    bl_rng_seed(&r, 78);
    const int64_t shapes[][2] = {{1, 32}, {7, 33}, {13, 100}, {33, 515}, {5, 1037}, {9, 4096}};
    const int bitss[] = {4, 8}, groups[] = {32, 64, 96, 128};
    const bl_isa best = bl_cpu_best_isa();
    CHECK(bl_qmat_i8_native(BL_ISA_AVX512) == (best >= BL_ISA_AVX2));
    CHECK(bl_qmat_i8_native(BL_ISA_AVX2) == (best >= BL_ISA_AVX2) && !bl_qmat_i8_native(BL_ISA_REF));
    qmat_levels_note("qsym int8-input levels exercised", true);
    const int64_t T = QT_ALL;
    for (int si = 0; si < 6; si++)
        for (int bi = 0; bi < 2; bi++)
            for (int gi = 0; gi < 4; gi++)
                for (int outliers = 0; outliers < 2; outliers++) {
                    const int64_t m = shapes[si][0], n = shapes[si][1];
                    const int bits = bitss[bi], group = groups[gi];
                    qprob p;
                    qprob_make(&p, m, n, bits, group, &r);
                    CHECK(bl_qmat_i8_ok(&p.Q));
                    const size_t ybytes = sizeof(float) * (size_t)(T * m);
                    float *X = malloc(sizeof(float) * (size_t)(T * n));
                    float *ref = malloc(ybytes), *y = malloc(ybytes);
                    void *work = malloc(bl_qmat_i8_work_bytes(n, T));
                    for (int64_t k = 0; k < T * n; k++)
                        X[k] = (outliers && k % 97 == 5 ? 1000.0f : 1.0f) * bl_rng_normal(&r);
                    bl_qmat_matmul_i8_ref(&p.Q, X, T, ref, work);
                    int bad_bound = 0, bad_level = 0, bad_inv = 0;
                    /* the specification's bound (the sanitizer pass: on the first 9 tokens) */
                    for (int64_t t = 0; t < (test_quick() ? 9 : T); t++) {
                        const float *x = X + t * n;
                        for (int64_t i = 0; i < m; i++) {
                            double exact = 0, bound = 0, mag = 0;
                            for (int64_t g0 = 0; g0 < n; g0 += group) {
                                const int64_t g1 = g0 + group < n ? g0 + group : n;
                                double mx = 0;
                                for (int64_t j = g0; j < g1; j++) mx = fmax(mx, fabs((double)x[j]));
                                const double dx = mx / 127.0;
                                for (int64_t j = g0; j < g1; j++) {
                                    const double w = fabs((double)bl_qmat_weight(&p.Q, i, j));
                                    exact += (double)bl_qmat_weight(&p.Q, i, j) * x[j];
                                    bound += w * (0.5 * dx * (1.0 + 1.0 / 8192) + 2.4e-7 * fabs((double)x[j]));
                                    mag += w * (fabs((double)x[j]) + dx);
                                }
                            }
                            bad_bound += !(fabs(ref[t * m + i] - exact) <= bound + 1e-5 * mag + 1e-30);
                        }
                    }
                    for (int isa = BL_ISA_REF; isa <= BL_ISA_AVX512; isa++) {
                        const bl_exec one = {NULL, (bl_isa)isa, BL_TABLES_I8},
                                      two = {two_threads, (bl_isa)isa, BL_TABLES_I8};
                        for (int th = 0; th < 2; th++) {
                            memset(y, 0xFF, ybytes);
                            bl_qmat_matmul_i8(&p.Q, X, T, y, work, th ? &two : &one);
                            bad_level += memcmp(y, ref, ybytes) != 0;
                        }
                        for (int s = 0; s < 4; s++)
                            for (int k = 0; k < 3; k++) {
                                const int64_t Tp = qt_sizes[s], t0 = qt_start(Tp, k);
                                bl_qmat_matmul_i8(&p.Q, X + t0 * n, Tp, y, work, k == 1 ? &two : &one);
                                bad_inv += memcmp(y, ref + t0 * m, sizeof(float) * (size_t)(Tp * m)) != 0;
                            }
                    }
                    CHECK_MSG(bad_bound == 0 && bad_level == 0 && bad_inv == 0,
                              "i8 %lldx%lld bits %d group %d outliers %d: %d outside the bound, %d "
                              "levels/threads differ, %d sub-batches differ",
                              (long long)m, (long long)n, bits, group, outliers, bad_bound,
                              bad_level, bad_inv);
                    free(X), free(ref), free(y), free(work);
                    qprob_free(&p);
                }
    /* layouts it does not serve: groups not a multiple of 32, other code widths */
    const bl_qmat g16 = {4, 40, 4, 16, NULL, NULL}, b6 = {4, 40, 6, 32, NULL, NULL};
    CHECK(!bl_qmat_i8_ok(&g16) && !bl_qmat_i8_ok(&b6));
    CHECK(bl_qmat_i8_work_bytes(65, 2) == 2 * 128 * 2); /* 2 blocks of 64 columns, 2 tokens */
}

/* The int8 kernels' integers at their extremes, on prepared inputs written here (the rounding of
 * bl_qmat_i8_prepare never gives q = −128): signed codes c − 2^(bits−1) of −128 and 127 (q8_0:
 * codes 0 and 255) or −8 and 7 (q4_0), inputs q = −128 and 127, whole rows and tokens of one
 * extreme (a lane then sums 4·(−128)·(−128) = 65536, and a pair of products is 32768: what
 * VPMADDUBSW or a pair in int16 would saturate) and random mixes of the extremes and other
 * values. Every kernel this CPU runs equals bl_qmat_i8_ref_prepared bit for bit, batched (T = 9:
 * tiles of several tokens and of one) and alone (T = 1: the decode route), 1 to 9 rows. */
static void test_qmat_i8_extremes(void) {
    bl_rng r;
    bl_rng_seed(&r, 79);
    typedef void (*kernel)(const bl_qmat_i8_job *, int64_t, int64_t);
    kernel ks[2];
    const char *names[2];
    int nk = 0;
    if (bl_cpu_best_isa() >= BL_ISA_AVX2) ks[nk] = bl_qmat_i8_avx2, names[nk++] = "avx2";
    if (bl_cpu_best_isa() == BL_ISA_AVX512 && bl_cpu_has_vnni())
        ks[nk] = bl_qmat_i8_avx512, names[nk++] = "avx512";
    if (nk == 0) SKIP("no int8 qsym kernel on this CPU");
    const int64_t shapes[][2] = {{9, 64}, {5, 200}, {6, 1000}, {3, 33}};
    for (int si = 0; si < 4; si++)
        for (int bits = 4; bits <= 8; bits += 4)
            for (int gi = 0; gi < 2; gi++)
                for (int64_t T = 1; T <= 9; T += 8) {
                    const int64_t m = shapes[si][0], n = shapes[si][1], group = gi ? 64 : 32;
                    const int64_t rb = bl_qmat_row_bytes(n, bits), G = (n + group - 1) / group;
                    const int cmax = (1 << bits) - 1, nb = (int)bl_qmat_i8_blocks(n);
                    uint8_t *qs = calloc((size_t)(m * rb), 1);
                    float *d = malloc(sizeof(float) * (size_t)(m * G));
                    for (int64_t i = 0; i < m; i++)
                        for (int64_t j = 0; j < n; j++) {
                            const uint64_t u = bl_rng_u64(&r);
                            /* row 0: all the lowest code, row 1: all the highest, others mixed */
                            const int c = i == 0 ? 0 : i == 1 ? cmax
                                                   : u % 3 == 0 ? 0
                                                   : u % 3 == 1 ? cmax
                                                                : (int)((u >> 8) % (uint64_t)(cmax + 1));
                            if (bits == 8) qs[i * rb + j] = (uint8_t)c;
                            else qs[i * rb + j / 2] |= (uint8_t)(c << (4 * (j & 1)));
                        }
                    for (int64_t k = 0; k < m * G; k++) d[k] = bl_round_f16(0.5f + bl_rng_uniform(&r));
                    const bl_qmat Q = {m, n, bits, (int)group, qs, d};
                    void *work = calloc(bl_qmat_i8_work_bytes(n, T), 1);
                    for (int64_t t = 0; t < T; t++)
                        for (int64_t b = 0; b < nb; b++) {
                            uint8_t *slot = bl_qmat_i8_slot(work, T, b, t);
                            for (int p = 0; p < BL_QMAT_I8_BLOCK; p++) {
                                const int64_t j = b * BL_QMAT_I8_BLOCK + bl_qmat_i8_col(bits, p);
                                const uint64_t u = bl_rng_u64(&r);
                                /* token 0: q = −128 throughout, token 1: 127, others mixed */
                                const int q = t == 0 ? -128 : t == 1 ? 127
                                              : u % 3 == 0 ? -128
                                              : u % 3 == 1 ? 127
                                                           : (int)((u >> 8) % 256) - 128;
                                BL_QMAT_I8_QU(slot)[p] = (uint8_t)(j < n ? q + 128 : 128);
                            }
                            for (int l = 0; l < 16; l++)
                                BL_QMAT_I8_DX(slot)[l] =
                                    b * BL_QMAT_I8_BLOCK + 32 * (l / 8) < n ? 0.001f * (float)(1 + t + l / 8) : 0.0f;
                        }
                    float *want = malloc(sizeof(float) * (size_t)(T * m)), *got = malloc(sizeof(float) * (size_t)(T * m));
                    bl_qmat_i8_ref_prepared(&Q, T, work, want);
                    for (int k = 0; k < nk; k++) {
                        memset(got, 0xFF, sizeof(float) * (size_t)(T * m));
                        const bl_qmat_i8_job job = {&Q, T, work, got};
                        ks[k](&job, 0, (m + BL_QMAT_ROWS - 1) / BL_QMAT_ROWS);
                        int bad = 0;
                        for (int64_t e = 0; e < T * m; e++) bad += memcmp(&got[e], &want[e], sizeof(float)) != 0;
                        CHECK_MSG(bad == 0, "%s i8 extremes %lldx%lld bits %d group %lld T %lld: %d "
                                  "outputs differ from the specification (first: %.9g vs %.9g)",
                                  names[k], (long long)m, (long long)n, bits, (long long)group,
                                  (long long)T, bad, got[0], want[0]);
                    }
                    /* the lanes of the all-lowest row against the all −128 token: 4·128·128 */
                    if (T == 9) CHECK(want[0] > 0.0f);
                    free(qs), free(d), free(work), free(want), free(got);
                }
}

/* BL_TABLES_I8: the public entry point at every level equals the specification bit for bit
 * (prepared or not, 1 or 2 threads), and the specification's error against the exact product
 * stays within its bound. Bound, per output: a word's step is mult_w·unit ≤ max_w/127 + unit
 * (mult_w is max_w·k rounded up, unit = M/32385 with M the block's largest max_w); each of the
 * word's 8 group codes is off its f32 entry by at most half a step plus the roundings of k,
 * 127·k/mult_w and entry·inv (< 2⁻²¹ relative), and the entry off the exact group sum by 3
 * roundings of its size (≤ 2⁻²³·a_q ≤ 2⁻²³·max_w): 4·(max_w/127 + M/32385)·(1 + 2⁻¹⁶) +
 * 8·2⁻²³·max_w per word; the f32 FMA chain over the blocks adds at most 1e-5·Σ|x| as for the
 * f32 kernels. Inputs: normal, and normal with one outlier 1000× larger per 97 columns (the
 * case int8 tables handle worst: the outlier's word loses the small inputs, and its block's
 * other words are stepped in units of the outlier's), and subnormal inputs (blocks below 2^-100
 * count as zero: the bound's absolute 1e-6 covers them; kernel and specification must agree), and
 * a few NaN and ±inf inputs (no bound; kernel and specification must still agree bit for bit). */
static void test_i8_tables(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {17, 33, 3}, {65, 513, 9}, {300, 1100, 8},
                                        {64, 4096, 2}};
    const bl_isa best = bl_cpu_best_isa();
    for (int s = 0; s < 5; s++)
        for (int outliers = 0; outliers < 4; outliers++) {
            problem p;
            REQUIRE(problem_make(&p, shapes[s][0], shapes[s][1], shapes[s][2], 500 + (uint64_t)s));
            if (outliers == 3) /* non-finite inputs: no bound, but kernel = specification */
                for (int64_t k = 0; k < p.T * p.n; k += 293)
                    p.X[k] = k % 3 == 0 ? NAN : k % 3 == 1 ? INFINITY : -INFINITY;
            if (outliers == 1)
                for (int64_t k = 0; k < p.T * p.n; k += 97) p.X[k] *= 1000.0f;
            if (outliers == 2) /* subnormal inputs: 255 / (the block's largest sum) overflows */
                for (int64_t k = 0; k < p.T * p.n; k++) p.X[k] *= 1e-39f;
            bl_signmat U;
            bl_signmat_init(&U, p.m, p.n, p.bits);
            float *want = malloc((size_t)(p.T * p.m) * sizeof *want);
            float *got = malloc((size_t)(p.T * p.m) * sizeof *got);
            REQUIRE(want && got);
            bl_sign_matmul_i8_ref(&U, p.X, p.T, want);
            /* the error bound, against the double-accumulating reference (of the scaled X) */
            bl_sign_matmul_ref(&U, p.X, p.T, p.Yref);
            const int64_t words = (p.n + 31) / 32;
            double worst = 0.0;
            for (int64_t t = 0; t < p.T; t++) {
                const float *x = p.X + t * p.n;
                double tol = 0.0, xabs = 0.0, maxw[BL_SIGN_I8_BLOCK / 32], M = 0.0;
                for (int64_t w = 0; w < words; w++) {
                    const int64_t wb = w % (BL_SIGN_I8_BLOCK / 32);
                    maxw[wb] = 0.0;
                    for (int64_t j0 = 32 * w; j0 < 32 * w + 32 && j0 < p.n; j0 += 4) {
                        float a = 0.0f;
                        for (int64_t j = j0; j < j0 + 4 && j < p.n; j++) a += fabsf(x[j]);
                        maxw[wb] = a > maxw[wb] ? a : maxw[wb];
                    }
                    M = maxw[wb] > M ? maxw[wb] : M;
                    if (wb == BL_SIGN_I8_BLOCK / 32 - 1 || w == words - 1) { /* block done */
                        for (int64_t v = 0; v <= wb; v++)
                            tol += 4.0 * (maxw[v] / 127.0 + M / 32385.0) * (1.0 + 1.0 / 65536.0) +
                                   8.0 * ldexp(maxw[v], -23);
                        M = 0.0;
                    }
                }
                for (int64_t j = 0; j < p.n; j++) xabs += fabsf(x[j]);
                tol += 1e-5 * xabs + 1e-6;
                for (int64_t i = 0; i < p.m; i++) {
                    const double d = fabs((double)want[t * p.m + i] - (double)p.Yref[t * p.m + i]);
                    if (!(d / tol <= worst)) worst = d / tol;
                }
            }
            CHECK_MSG(outliers == 3 || worst <= 1.0,
                      "i8 spec %lldx%lld outliers=%d: error %.3g x its bound", (long long)p.m,
                      (long long)p.n, outliers, worst);
            /* the public entry point at every level, prepared and not, 1 and 2 threads */
            for (int isa = BL_ISA_REF; isa <= (int)best; isa++)
                for (int prep = 0; prep < 2; prep++)
                    for (int th = 0; th < 2; th++) {
                        bl_signmat S;
                        bl_signmat_init(&S, p.m, p.n, p.bits);
                        if (prep) REQUIRE(bl_signmat_prepare(&S, (bl_isa)isa, NULL, NULL) == BL_OK);
                        const bl_exec ex = {th ? two_threads : NULL, (bl_isa)isa, BL_TABLES_I8};
                        memset(got, 0xFF, (size_t)(p.T * p.m) * sizeof *got);
                        bl_sign_matmul(&S, p.X, p.T, got, &ex);
                        CHECK_MSG(memcmp(got, want, (size_t)(p.T * p.m) * sizeof *got) == 0,
                                  "i8 %s %lldx%lld T=%lld prepared=%d threads=%d: not the spec",
                                  bl_isa_name((bl_isa)isa), (long long)p.m, (long long)p.n,
                                  (long long)p.T, prep, th + 1);
                        bl_signmat_release(&S);
                    }
            free(want), free(got);
            problem_free(&p);
        }
}

/* The int8-table kernels at the batch sizes decoding runs (T = 1; 2, 7, 8 and 9 around the
 * 8-token passes; 64), on shapes with a partial 16-row block, an odd number of blocks (the AVX2
 * kernel takes blocks in pairs: one and two threads pair them differently, and a range can end
 * with a lone block), a partial last word, fewer than 32 columns and a last chunk of one word;
 * prepared (the kernel) and not (the specification), 1 and 2 threads: bit for bit the
 * specification, and with the scalings fused (bl_sign_matmul_scaled, which a prepared matrix
 * takes at every SIMD level) bit for bit the three steps. Says which kernels this CPU runs. */
static void test_i8_kernel_batches(void) {
    static const int64_t shapes[][2] = {{5, 20}, {37, 97}, {100, 1537}, {300, 1100}, {33, 2080}};
    static const int64_t Ts[] = {1, 2, 7, 8, 9, 64}, Tq[] = {1, 9};
    const bl_isa best = bl_cpu_best_isa();
    int nv;
    const bl_sign_variant *v = bl_sign_variants(&nv);
    for (int k = 0; k < nv; k++)
        if (v[k].tables == BL_TABLES_I8 && v[k].isa != BL_ISA_REF)
            fprintf(stderr, "  (int8 sign tables, %s/%s: %s)\n", bl_isa_name(v[k].isa), v[k].name,
                    v[k].isa > best                                     ? "not exercised, no such ISA here"
                    : v[k].isa == BL_ISA_AVX512 && !bl_cpu_has_vbmi_vnni() ? "runs the AVX2 kernel, no VBMI/VNNI here"
                                                                           : "exercised");
    if (best < BL_ISA_AVX2) SKIP("no AVX2");
    const int nT = test_quick() ? 2 : 6;
    for (int s = 0; s < 5; s++)
        for (int it = 0; it < nT; it++) {
            const int64_t m = shapes[s][0], n = shapes[s][1], T = test_quick() ? Tq[it] : Ts[it];
            problem p;
            REQUIRE(problem_make(&p, m, n, T, 1300 + (uint64_t)(8 * s + it)));
            float *g = malloc((size_t)n * sizeof *g), *h = malloc((size_t)m * sizeof *h);
            float *u = malloc((size_t)(T * n) * sizeof *u);
            float *want = malloc((size_t)(T * m) * sizeof *want);
            float *wants = malloc((size_t)(T * m) * sizeof *wants);
            float *got = malloc((size_t)(T * m) * sizeof *got);
            REQUIRE(g && h && u && want && wants && got);
            bl_rng r;
            bl_rng_seed(&r, 77 + (uint64_t)s);
            for (int64_t j = 0; j < n; j++)
                g[j] = ldexpf(1.0f + (float)bl_rng_uniform(&r), (int)(j % 11) - 5) * (j % 3 ? 1.0f : -1.0f);
            for (int64_t i = 0; i < m; i++)
                h[i] = ldexpf(1.0f + (float)bl_rng_uniform(&r), (int)(i % 7) - 3) * (i % 4 ? 1.0f : -1.0f);
            bl_signmat U;
            bl_signmat_init(&U, m, n, p.bits);
            bl_sign_matmul_i8_ref(&U, p.X, T, want);
            for (int64_t k = 0; k < T * n; k++) u[k] = p.X[k] * g[k % n];
            bl_sign_matmul_i8_ref(&U, u, T, wants);
            for (int64_t k = 0; k < T * m; k++) wants[k] *= h[k % m];
            for (int isa = BL_ISA_AVX2; isa <= (int)best; isa++)
                for (int prep = 0; prep < 2; prep++)
                    for (int th = 0; th < 2; th++) {
                        bl_signmat S;
                        bl_signmat_init(&S, m, n, p.bits);
                        if (prep) REQUIRE(bl_signmat_prepare(&S, (bl_isa)isa, NULL, NULL) == BL_OK);
                        const bl_exec ex = {th ? two_threads : NULL, (bl_isa)isa, BL_TABLES_I8};
                        memset(got, 0xFF, (size_t)(T * m) * sizeof *got);
                        bl_sign_matmul(&S, p.X, T, got, &ex);
                        CHECK_MSG(memcmp(got, want, (size_t)(T * m) * sizeof *got) == 0,
                                  "i8 %s %lldx%lld T=%lld prepared=%d threads=%d: not the spec",
                                  bl_isa_name((bl_isa)isa), (long long)m, (long long)n,
                                  (long long)T, prep, th + 1);
                        memset(got, 0xFF, (size_t)(T * m) * sizeof *got);
                        const bool fused = bl_sign_matmul_scaled(&S, p.X, g, T, h, got, &ex);
                        CHECK_MSG(fused == (prep == 1), "i8 %s prepared=%d: fused=%d",
                                  bl_isa_name((bl_isa)isa), prep, fused);
                        CHECK_MSG(!fused || memcmp(got, wants, (size_t)(T * m) * sizeof *got) == 0,
                                  "i8 scaled %s %lldx%lld T=%lld threads=%d: not the three steps",
                                  bl_isa_name((bl_isa)isa), (long long)m, (long long)n,
                                  (long long)T, th + 1);
                        bl_signmat_release(&S);
                    }
            free(g), free(h), free(u), free(want), free(wants), free(got);
            problem_free(&p);
        }
}

/* The scaled sign product of the formats (bl_qc_sign_scaled: fused by bl_sign_matmul_scaled where
 * the kernel can, else three passes): bit for bit the three steps (X⊙g, product, ⊙h) at every
 * level, with f32 and int8 tables, prepared and not, 1 and 2 threads, g and h each present or
 * not; shapes with a partial row block, a partial word and several column chunks (the output
 * scaling is applied after the last one), and a zero-column matrix. Scalings span 2^±8 with a
 * few zeros and negative entries. bl_sign_matmul_scaled answers as bl_sign_fuses_scales does,
 * and fused kernels run at AVX2 (int8 tables) and AVX-512. */
static void test_scaled_product(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {17, 33, 3}, {65, 1100, 9}, {300, 513, 8},
                                        {40, 0, 2}};
    const bl_isa best = bl_cpu_best_isa();
    for (int s = 0; s < 5; s++) {
        const int64_t m = shapes[s][0], n = shapes[s][1], T = shapes[s][2];
        problem p;
        REQUIRE(problem_make(&p, m, n, T, 900 + (uint64_t)s));
        float *g = malloc((size_t)(n + 1) * sizeof *g), *h = malloc((size_t)m * sizeof *h);
        float *u = malloc((size_t)(T * n + 1) * sizeof *u), *want = malloc((size_t)(T * m) * sizeof *want);
        float *got = malloc((size_t)(T * m) * sizeof *got), *work = malloc((size_t)(T * n + 1) * sizeof *work);
        REQUIRE(g && h && u && want && got && work);
        bl_rng r;
        bl_rng_seed(&r, 31 + (uint64_t)s);
        for (int64_t j = 0; j < n; j++)
            g[j] = j % 29 == 5 ? 0.0f : ldexpf(1.0f + (float)bl_rng_uniform(&r), (int)(j % 17) - 8) * (j % 3 ? 1.0f : -1.0f);
        for (int64_t i = 0; i < m; i++)
            h[i] = i % 23 == 7 ? 0.0f : ldexpf(1.0f + (float)bl_rng_uniform(&r), (int)(i % 13) - 6) * (i % 4 ? 1.0f : -1.0f);
        int fused = 0;
        for (int tables = 0; tables < 2; tables++)
            for (int isa = BL_ISA_REF; isa <= (int)best; isa++)
                for (int prep = 0; prep < 2; prep++)
                    for (int th = 0; th < 2; th++)
                        for (int which = 1; which < 4; which++) { /* bit 0: g, bit 1: h */
                            const float *gs = which & 1 ? g : NULL, *hs = which & 2 ? h : NULL;
                            bl_signmat S;
                            bl_signmat_init(&S, m, n, p.bits);
                            if (prep) REQUIRE(bl_signmat_prepare(&S, (bl_isa)isa, NULL, NULL) == BL_OK);
                            const bl_exec ex = {th ? two_threads : NULL, (bl_isa)isa,
                                                tables ? BL_TABLES_I8 : BL_TABLES_F32};
                            for (int64_t k = 0; k < T * n; k++) u[k] = gs ? p.X[k] * gs[k % n] : p.X[k];
                            bl_sign_matmul(&S, u, T, want, &ex);
                            if (hs)
                                for (int64_t k = 0; k < T * m; k++) want[k] *= hs[k % m];
                            memset(got, 0xFF, (size_t)(T * m) * sizeof *got);
                            bl_qc_sign_scaled(&S, p.X, gs, T, hs, got, work, &ex);
                            const bool fuses = bl_sign_fuses_scales(&S, &ex);
                            fused += fuses;
                            CHECK_MSG(memcmp(got, want, (size_t)(T * m) * sizeof *got) == 0,
                                      "scaled %s %s %lldx%lld T=%lld prepared=%d threads=%d g=%d h=%d: "
                                      "not the three steps", tables ? "i8" : "f32",
                                      bl_isa_name((bl_isa)isa), (long long)m, (long long)n,
                                      (long long)T, prep, th + 1, which & 1, which >> 1);
                            CHECK(bl_sign_matmul_scaled(&S, p.X, gs, T, hs, want, &ex) == fuses);
                            bl_signmat_release(&S);
                        }
        if (best == BL_ISA_AVX512 || (best == BL_ISA_AVX2 && n > 0)) /* AVX2: i8, packed */
            CHECK_MSG(fused > 0, "no fused product ran at %s", bl_isa_name(best));
        free(g), free(h), free(u), free(want), free(got), free(work);
        problem_free(&p);
    }
}

int main(void) {
    fprintf(stderr, "cpu best ISA: %s\n", bl_isa_name(bl_cpu_best_isa()));
    if (bl_pool_new(2, &two_threads, NULL) != BL_OK) return 1;
    TEST_RUN(test_pack_threads);
    TEST_RUN(test_edges_and_dispatch);
    TEST_RUN(test_pack_layout);
    TEST_RUN(test_padding_bits_ignored);
    TEST_RUN(test_layout_shared_and_bit_identical);
    TEST_RUN(test_all_variants);
    TEST_RUN(test_i8_tables);
    TEST_RUN(test_i8_kernel_batches);
    TEST_RUN(test_scaled_product);
    TEST_RUN(test_small_shapes);
    TEST_RUN(test_large_shapes);
    TEST_RUN(test_qmat);
    TEST_RUN(test_qmat_i8);
    TEST_RUN(test_qmat_i8_extremes);
    bl_pool_free(two_threads);
    return test_summary();
}
