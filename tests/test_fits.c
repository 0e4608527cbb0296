/* The single-matrix fits through bl_fit_layer (include/bitllm/quantize.h): scale equivariance of
 * every method, middle dimensions above min(m, n), the objective trajectory and the default
 * convergence stop, and MDBF(l = 1, P = 1) against DBF on calibrated stories260K layers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/formats/mdbf.h"
#include "bitllm/quantize.h"
#include "test.h"

typedef struct {
    const char *name;
    const char *method;
    int l, P, group;
    bool svd;
} method_case;

static const method_case METHODS[] = {
    {"rtn1", "rtn1", 1, 1, 128, false},       {"rtn2 g64", "rtn2", 1, 1, 64, false},
    {"rtn3 g64", "rtn3", 1, 1, 64, false},    {"rtn4 g64", "rtn4", 1, 1, 64, false},
    {"onebit svd", "onebit", 1, 1, 128, true}, {"onebit nmf", "onebit", 1, 1, 128, false},
    {"dbf", "dbf", 1, 1, 128, false},         {"mdbf l=1 P=1", "mdbf", 1, 1, 128, false},
    {"mdbf l=1 P=2", "mdbf", 1, 2, 128, false}, {"mdbf l=2 P=1", "mdbf", 2, 1, 128, false},
    {"mdbf l=2 P=2", "mdbf", 2, 2, 128, false},
};
enum { N_METHODS = sizeof METHODS / sizeof METHODS[0] };

static bl_layer_fit_opts opts_for(const method_case *c, double bpw, int iters) {
    bl_layer_fit_opts o;
    bl_layer_fit_opts_default(&o);
    o.method = test_method(c->method);
    o.bpw = bpw;
    o.method.params.rank_l = c->l;
    o.method.params.paths = c->P;
    o.method.params.group = c->group;
    o.fit.nmf = !c->svd;
    o.fit.seed = 5;
    o.fit.iters = iters;
    return o;
}

/* One fit measured by the library (rel_err from the dense reconstruction, in double). */
static bool fit(const float *W, int64_t m, int64_t n, const bl_layer_fit_opts *o,
                bl_layer_fit_result *res, bl_linear *keep) {
    bl_linear L;
    bl_err err = {0};
    if (bl_fit_layer(W, m, n, o, &L, res, &err) != BL_OK) {
        fprintf(stderr, "  bl_fit_layer: %s\n", err.msg);
        return false;
    }
    if (keep) *keep = L;
    else bl_linear_free(&L);
    return true;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Every method's relative error is the same for W and s·W, s = 10^-2 … 10^2 (regression: MDBF
 * with P ≥ 2 used to subtract U·Σ^½·Vᵀ as the first path's value, so its error depended on the
 * scale: 1024² l=1 P=2 at 1 bpw gave 0.93 / 0.47 / 0.44 for W×0.1 / W / W×10).
 *
 * Scaling by a non-power of two changes the last bit of every input, and the ADMM (nonconvex,
 * sign decisions) carries that into a few other signs, so one fit's error is a draw from a
 * narrow distribution: flipping the last bit of W's entries at random moves it by up to ~1e-3
 * (384×512 at 20 iterations: spread ~6e-4; the unchanged W itself sometimes lies 7e-4 off the
 * perturbed fits' centre), and the scaled fits fall inside that same distribution. The test
 * therefore compares each scale with the median over the five scales of the same matrix, and
 * requires the mean deviation over three matrices to stay within 1e-3 and every single fit
 * within 3e-3, far below what a scale dependence does. FP16 scales stay normal (≥ 6e-5) at
 * these magnitudes, so their relative rounding does not depend on s. */
static void test_scale_equivariance(void) {
    const int64_t m = 384, n = 512;
    enum { N_MAT = 3, N_SCALES = 5 };
    float *W[N_MAT], *Ws = malloc(sizeof(float) * (size_t)(m * n));
    for (int k = 0; k < N_MAT; k++) REQUIRE((W[k] = test_llm_matrix(m, n, 11 + (uint64_t)k)) != NULL);
    const double scales[N_SCALES] = {1.0, 1e-2, 1e2, 1e-1, 10.0};
    /* the sanitizer pass: 1 and the extreme scales, and of the ADMM fits DBF and the two P = 2 */
    const int n_scales = test_quick() ? 3 : N_SCALES;
    bl_layer_fit_result *res = malloc(sizeof *res);
    for (int c = 0; c < N_METHODS; c++) {
        if (test_quick() && (c == 7 || c == 9)) continue;
        bl_layer_fit_opts o = opts_for(&METHODS[c], 1.5, 20);
        double e[N_SCALES][N_MAT], med[N_MAT], worst_mean = 0.0, worst_one = 0.0;
        bool ok = true;
        for (int k = 0; k < N_MAT && ok; k++) {
            double sorted[N_SCALES];
            for (int s = 0; s < n_scales && ok; s++) {
                for (int64_t i = 0; i < m * n; i++) Ws[i] = (float)(W[k][i] * scales[s]);
                ok = fit(Ws, m, n, &o, res, NULL);
                e[s][k] = sorted[s] = res->rel_err;
            }
            qsort(sorted, (size_t)n_scales, sizeof *sorted, cmp_double);
            med[k] = sorted[n_scales / 2];
        }
        REQUIRE(ok);
        for (int s = 0; s < n_scales; s++) {
            double mean = 0.0;
            for (int k = 0; k < N_MAT; k++) {
                const double d = e[s][k] - med[k];
                mean += d / N_MAT;
                worst_one = fmax(worst_one, fabs(d));
                CHECK_MSG(fabs(d) <= 3e-3, "%s, matrix %d: rel_err %.5f at scale %g, median %.5f",
                          METHODS[c].name, k, e[s][k], scales[s], med[k]);
            }
            worst_mean = fmax(worst_mean, fabs(mean));
            CHECK_MSG(fabs(mean) <= 1e-3, "%s: mean deviation %.2e at scale %g", METHODS[c].name,
                      mean, scales[s]);
        }
        fprintf(stderr, "  %-13s rel_err %.4f, deviation from the median over scales: mean "
                        "%.1e, one fit %.1e\n",
                METHODS[c].name, med[0], worst_mean, worst_one);
    }
    free(res);
    free(Ws);
    for (int k = 0; k < N_MAT; k++) free(W[k]);
}

/* A power-of-two scale is exact in float and the fits normalize by one, so W and 4·W give
 * bit-identical sign matrices (the stored FP16 vectors differ only by their balancing, which
 * spreads the factor 4 over three vectors). */
static void test_power_of_two_scale_exact(void) {
    const int64_t m = 40, n = 56, r = 30;
    float *W = test_llm_matrix(m, n, 12), *W4 = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m * n; i++) W4[i] = W[i] * 4.0f;
    bl_fit_opts o;
    bl_fit_opts_default(&o);
    o.iters = 12;
    bl_mdbf q1, q4;
    bl_err err = {0};
    REQUIRE(bl_fit_mdbf(W, m, n, r, 1, 2, &o, &q1, &err) == BL_OK);
    REQUIRE(bl_fit_mdbf(W4, m, n, r, 1, 2, &o, &q4, &err) == BL_OK);
    for (int p = 0; p < 2; p++) {
        CHECK(memcmp(q1.paths[p].SA, q4.paths[p].SA, (size_t)(m * bl_sign_row_bytes(r))) == 0);
        CHECK(memcmp(q1.paths[p].SB, q4.paths[p].SB, (size_t)(r * bl_sign_row_bytes(n))) == 0);
    }
    bl_mdbf_free(&q1);
    bl_mdbf_free(&q4);
    free(W);
    free(W4);
}

/* 1024×2816 at 2.0 bpw (FP16 vectors counted): k = 1479 > min(m, n), the stored bits come within
 * one middle component of the target (before: k capped at 1024, 1.39 bpw stored), the wider
 * middle fits better than the capped one, and the layer's forward is x·Ŵᵀ. The sanitizer pass
 * uses 256×704, the same aspect ratio. */
static void test_wide_middle_fit(void) {
    const int64_t m = test_quick() ? 256 : 1024, n = test_quick() ? 704 : 2816;
    float *W = test_llm_matrix(m, n, 13);
    const method_case *dbf = &METHODS[6];
    bl_layer_fit_opts o = opts_for(dbf, 2.0, 3);
    const int64_t k = bl_layer_mid(&o, m, n);
    CHECK_MSG(k > m, "k = %lld", (long long)k);
    bl_layer_fit_result *res = malloc(sizeof *res);
    bl_linear L;
    REQUIRE(fit(W, m, n, &o, res, &L));
    const double step = (double)(m + n + 16) / ((double)m * (double)n); /* bpw of one component */
    CHECK_MSG(res->bpw <= 2.0 && res->bpw > 2.0 - step, "stored %.5f bpw for a 2.0 target",
              res->bpw);
    CHECK(res->mid == k && L.params.mid == k);
    const double wide = res->rel_err;
    o.method.params.mid = m; /* the old cap */
    REQUIRE(fit(W, m, n, &o, res, NULL));
    fprintf(stderr, "  %lldx%lld at 2.0 bpw: k=%lld stores %.4f bpw, rel_err %.4f; k=%lld: %.4f "
                    "bpw, %.4f\n",
            (long long)m, (long long)n, (long long)k, (double)((k * (m + n) + 16 * (m + n + k))) /
                                                          ((double)m * (double)n),
            wide, (long long)m, res->bpw, res->rel_err);
    CHECK_MSG(wide < res->rel_err - 0.01, "k=%lld: %g vs k=%lld: %g", (long long)k, wide,
              (long long)m, res->rel_err);
    /* forward of the fitted layer against its dense reconstruction, 3 tokens */
    float *Y = malloc(sizeof(float) * (size_t)(m * n)), *x = malloc(sizeof(float) * 3 * (size_t)n);
    float *y = malloc(sizeof(float) * 3 * (size_t)m);
    float *work = malloc(sizeof(float) * (L.ops->workspace_floats(&L, 3) + 1));
    bl_err err = {0};
    REQUIRE(L.ops->to_dense(&L, Y, &err) == BL_OK);
    bl_rng r;
    bl_rng_seed(&r, 14);
    for (int64_t i = 0; i < 3 * n; i++) x[i] = bl_rng_normal(&r);
    L.ops->forward(&L, x, 3, y, work, NULL);
    double num = 0, den = 0;
    for (int t = 0; t < 3; t++)
        for (int64_t i = 0; i < m; i++) {
            double s = 0, a = 0;
            for (int64_t j = 0; j < n; j++) {
                s += (double)x[t * n + j] * Y[i * n + j];
                a += fabs((double)x[t * n + j] * Y[i * n + j]);
            }
            num += (y[t * m + i] - s) * (y[t * m + i] - s);
            den += a * a;
        }
    CHECK_MSG(sqrt(num / den) <= L.ops->forward_tol, "forward vs x·Ŵᵀ: %g", sqrt(num / den));
    bl_linear_free(&L);
    free(res);
    free(W);
    free(Y);
    free(x);
    free(y);
    free(work);
}

/* The trajectory is the objective the ADMM minimizes, computed from its own products: its last
 * value matches the error of the stored layer (which differs only by the FP16 rounding of the
 * vectors, ~1e-3 relative); fixed iteration counts run exactly, every iteration is recorded. */
static void test_trajectory(void) {
    const int64_t m = 64, n = 96;
    float *W = test_llm_matrix(m, n, 15);
    bl_layer_fit_result *res = malloc(sizeof *res);
    for (int c = 6; c < N_METHODS; c++) {
        bl_layer_fit_opts o = opts_for(&METHODS[c], 3.0, 17);
        REQUIRE(fit(W, m, n, &o, res, NULL));
        const bl_fit_trace *t = &res->trace;
        CHECK(res->iters == 17 * METHODS[c].P && t->n_obj == res->iters);
        CHECK(t->paths_converged == 0); /* a fixed count never "converges" */
        const double last = t->obj[t->n_obj - 1];
        CHECK_MSG(fabs(last - res->rel_err) <= 2e-3 * res->rel_err,
                  "%s: objective %.6f vs stored rel_err %.6f", METHODS[c].name, last,
                  res->rel_err);
        bool finite = true;
        for (int i = 0; i < t->n_obj; i++) finite = finite && isfinite(t->obj[i]) && t->obj[i] >= 0;
        CHECK(finite);
        double phases = 0;
        for (int p = 0; p < BL_FIT_PHASES; p++) phases += t->seconds[p];
        CHECK(phases > 0 && phases <= res->seconds * 1.05 + 1e-3 && t->flops > 0);
    }
    free(res);
    free(W);
}

/* The default stop (penalty ramp over BL_FIT_RAMP iterations, then a relative improvement below
 * BL_FIT_TOL over BL_FIT_WINDOW) ends before the 260-iteration cap, on the convergence test, and
 * lands within 0.002 relative error of a fixed 260-iteration run of the same fitter. */
static void check_default_vs_260(const float *W, int64_t m, int64_t n, const method_case *c,
                                 double bpw, double *gap) {
    bl_layer_fit_result *res = malloc(sizeof *res);
    bl_layer_fit_opts o = opts_for(c, bpw, 0);
    if (fit(W, m, n, &o, res, NULL)) {
        CHECK_MSG(res->iters < c->P * BL_FIT_MAX_ITERS && res->iters > c->P * BL_FIT_RAMP,
                  "%s: %d iterations", c->name, res->iters);
        CHECK(res->trace.paths_converged == c->P);
        const double e_def = res->rel_err;
        o.fit.iters = BL_FIT_MAX_ITERS;
        if (fit(W, m, n, &o, res, NULL)) *gap = e_def - res->rel_err;
    }
    free(res);
}

static void test_default_stop_synthetic(void) {
    const int64_t m = test_quick() ? 96 : 256, n = test_quick() ? 128 : 256;
    float *W = test_llm_matrix(m, n, 16);
    double gap = INFINITY;
    check_default_vs_260(W, m, n, &METHODS[6], 1.0, &gap);
    fprintf(stderr, "  %lldx%lld dbf 1.0 bpw: default − 260 iterations = %+.4f\n", (long long)m,
            (long long)n, gap);
    /* At the sanitizer pass's 96×128 the gap is one draw from a distribution ~1e-3 wide that
     * any change of rounding moves: +0.0014 with OpenBLAS on two threads, +0.0021 on one (which
     * bitllm now always uses, so that fits do not depend on the thread count); 256² gives the
     * 0.002 bound room. */
    const double bound = test_quick() ? 0.003 : 0.002;
    CHECK_MSG(gap <= bound, "default is %.4f above the 260-iteration error (bound %.4f)", gap,
              bound);
    free(W);
}

static bl_model *stories(void) {
    const char *path = test_data_path("models/stories260K/stories260K.gguf");
    if (!test_file_exists(path)) return NULL;
    bl_model *m = NULL;
    bl_err err = {0};
    if (bl_model_load(path, NULL, &m, &err) != BL_OK) fprintf(stderr, "  %s\n", err.msg);
    return m;
}

/* Every projection of stories260K at OneBit's bpw: the mean gap over the 35 layers (single layers
 * of 32-172 columns move by up to ±0.008 between nearby iteration counts, so the mean is what is
 * asserted; the worst is printed). The sanitizer pass fits the 7 projections of the first layer
 * and checks the stop (a mean over 7 is too noisy for the 0.002 bound). */
static void test_default_stop_stories260k(void) {
    bl_model *mdl = stories();
    if (!mdl) SKIP("stories260K not found under %s", test_data_path(""));
    double sum = 0, worst = -INFINITY;
    int cnt = 0;
    for (int l = 0; l < (test_quick() ? 1 : mdl->cfg.n_layers); l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            char name[96];
            bl_proj_name(l, p, name, sizeof name);
            strcat(name, ".weight");
            float *W;
            int64_t m, n;
            bl_err err = {0};
            REQUIRE(bl_model_matrix(mdl, name, &W, &m, &n, &err) == BL_OK);
            double gap = INFINITY;
            check_default_vs_260(W, m, n, &METHODS[6], 0.0, &gap);
            sum += gap;
            worst = fmax(worst, gap);
            cnt++;
            free(W);
        }
    fprintf(stderr, "  stories260K dbf at OneBit's bpw: default − 260 iterations: mean %+.4f, "
                    "worst layer %+.4f\n",
            sum / cnt, worst);
    if (!test_quick()) CHECK_MSG(sum / cnt <= 0.002, "mean gap %.4f", sum / cnt);
    bl_model_free(mdl);
}

/* ---- MDBF(l = 1, P = 1) never loses to DBF on the weighted objective ---- */

typedef struct {
    double w[64];
    int n;
} layer_errs;

static void collect(void *ctx, const char *name, int64_t m, int64_t n,
                    const bl_layer_fit_result *r) {
    layer_errs *e = ctx;
    if (e->n < 64) e->w[e->n++] = r->wrel_err;
}

/* Calibrated (input second moments from WikiText-2 text, as quantize --calib --no-grad-stats)
 * at OneBit's bpw: MDBF with one envelope and one path stores what DBF stores and fits it the
 * same way, so its importance-weighted error is never above DBF's on any layer. (It was above on
 * every layer when l = 1 stored two middle vectors: fewer components at the same bits.) */
static void test_mdbf_l1_not_worse_than_dbf(void) {
    bl_model *mdl = stories();
    const char *wiki = test_data_path("data/wikitext-2/wiki.test.raw");
    if (!mdl || !test_file_exists(wiki)) {
        bl_model_free(mdl);
        SKIP("stories260K or WikiText-2 not found under %s", test_data_path(""));
    }
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    bl_err err = {0};
    REQUIRE(bl_read_file(wiki, &text, &len, &err) == BL_OK);
    if (len > 20000) len = 20000;
    REQUIRE(bl_tokenizer_encode(mdl->tok, text, len, false, &ids, &n_ids, &err) == BL_OK);
    layer_errs e[2] = {{{0}, 0}, {{0}, 0}};
    const char *const methods[2] = {"dbf", "mdbf"};
    for (int i = 0; i < 2; i++) {
        bl_quant_opts o;
        bl_quant_opts_default(&o);
        o.method = test_method(methods[i]);
        o.fit.seed = 1;
        o.fit.iters = test_quick() ? 6 : 40;
        o.calib_ids = ids;
        o.n_calib = n_ids;
        /* the diagonal-importance recipe (under H, test_fits_hessian checks bit-identity) */
        o.activation_aware = false;
        o.on_layer = collect;
        o.on_layer_ctx = &e[i];
        char dir[] = "/tmp/bitllm-fits-XXXXXX";
        REQUIRE(mkdtemp(dir));
        bl_quant_summary sum;
        CHECK_MSG(bl_quantize_model(mdl, &o, dir, &sum, &err) == BL_OK, "%s", err.msg);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    }
    REQUIRE(e[0].n == 35 && e[1].n == 35);
    int worse = 0;
    for (int i = 0; i < 35; i++) worse += e[1].w[i] > e[0].w[i];
    CHECK_MSG(worse == 0, "mdbf(l=1, P=1) has a higher weighted error than dbf on %d layers",
              worse);
    free(ids);
    free(text);
    bl_model_free(mdl);
}

int main(void) {
    TEST_RUN(test_scale_equivariance);
    TEST_RUN(test_power_of_two_scale_exact);
    TEST_RUN(test_wide_middle_fit);
    TEST_RUN(test_trajectory);
    TEST_RUN(test_default_stop_synthetic);
    TEST_RUN(test_default_stop_stories260k);
    TEST_RUN(test_mdbf_l1_not_worse_than_dbf);
    return test_summary();
}
