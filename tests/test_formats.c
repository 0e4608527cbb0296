/* Quantized linear-layer formats (onebit, dbf, mdbf, rtn): forward on packed bits against a
 * double-precision x·Ŵᵀ from to_dense, save → safetensors → load round trips, exact bpw
 * accounting against the bytes on disk, load validation, OneBit's post-LN, and thread-count
 * independence. Layers are built from random data directly (no fitting code involved). */
#include "bitllm/format.h"
#include "bitllm/formats/dbf.h"
#include "bitllm/formats/mdbf.h"
#include "bitllm/formats/onebit.h"
#include "bitllm/formats/rtn.h"
#include "bitllm/io.h"
#include "bitllm/kernels.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

static const int64_t SHAPES[] = {1, 7, 8, 63, 65, 128, 513};
static const int64_t SHAPES_QUICK[] = {1, 7, 65, 128};
static const int64_t MIDS[] = {1, 9, 64};
static const char *PREFIX = "model.layers.3.mlp.up_proj";
static char tmpdir[64];
static int file_counter;

/* ---------- random layer data ---------- */

/* Random signs with the padding bits of each row left 0. */
static uint8_t *rand_bits(bl_rng *r, int64_t rows, int64_t used_bits) {
    int64_t rb = (used_bits + 7) / 8;
    uint8_t *b = malloc((size_t)(rows * rb) + 1);
    for (int64_t i = 0; i < rows * rb; i++) b[i] = (uint8_t)bl_rng_u64(r);
    if (used_bits % 8)
        for (int64_t i = 0; i < rows; i++) b[i * rb + rb - 1] &= (uint8_t)((1u << (used_bits % 8)) - 1);
    return b;
}

/* FP16-representable values: normal × scale (+ offset), rounded through F16. */
static float *rand_vec(bl_rng *r, int64_t n, float scale, float offset) {
    float *v = malloc((size_t)n * sizeof *v + 1);
    for (int64_t i = 0; i < n; i++) v[i] = bl_round_f16(offset + scale * bl_rng_normal(r));
    return v;
}

static void make_onebit_h(bl_rng *r, int64_t m, int64_t n, bool post_ln, float hscale,
                         bl_linear *L) {
    bl_onebit q = {.m = m, .n = n, .post_ln = post_ln};
    q.sign = rand_bits(r, m, n);
    q.g = rand_vec(r, n, 0.5f, 1.0f);
    q.h = rand_vec(r, m, hscale, 0.0f);
    bl_err err = {0};
    bl_status s = bl_linear_from_onebit(L, &q, &err);
    CHECK_MSG(s == BL_OK, "%s", err.msg);
    CHECK(q.sign == NULL); /* ownership moved */
    bl_onebit_free(&q);
}

static void make_onebit(bl_rng *r, int64_t m, int64_t n, bool post_ln, bl_linear *L) {
    make_onebit_h(r, m, n, post_ln, 0.02f, L);
}

static void make_dbf(bl_rng *r, int64_t m, int64_t n, int64_t k, bl_linear *L) {
    bl_dbf q = {.m = m, .n = n, .k = k};
    q.A = rand_bits(r, m, k);
    q.B = rand_bits(r, k, n);
    q.a = rand_vec(r, m, 0.1f, 0.0f);
    q.mu = rand_vec(r, k, 0.3f, 1.0f);
    q.b = rand_vec(r, n, 0.5f, 0.0f);
    bl_err err = {0};
    CHECK_MSG(bl_linear_from_dbf(L, &q, &err) == BL_OK, "%s", err.msg);
    bl_dbf_free(&q);
}

static void make_mdbf(bl_rng *r, int64_t m, int64_t n, int64_t rk, int l, int P, bl_linear *L) {
    bl_mdbf q = {.m = m, .n = n, .r = rk, .l = l, .P = P};
    q.paths = calloc((size_t)P, sizeof *q.paths);
    for (int p = 0; p < P; p++) {
        bl_mdbf_path *e = &q.paths[p];
        e->SA = rand_bits(r, m, rk);
        e->SB = rand_bits(r, rk, n);
        e->A_env = rand_vec(r, m * l, 0.1f, 0.05f);
        e->Q_U = rand_vec(r, rk * l, 0.5f, 0.5f);
        e->Q_V = rand_vec(r, rk * l, 0.5f, 0.5f);
        e->B_env = rand_vec(r, n * l, 0.3f, 0.2f);
    }
    bl_err err = {0};
    CHECK_MSG(bl_linear_from_mdbf(L, &q, &err) == BL_OK, "%s", err.msg);
    bl_mdbf_free(&q);
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void make_rtn(bl_rng *r, int64_t m, int64_t n, int bits, int group, bl_linear *L) {
    bl_rtn q = {.m = m, .n = n, .bits = bits, .group = group};
    int64_t G = bits >= 2 ? ceil_div(n, group) : 1;
    q.q = rand_bits(r, m, n * bits);
    q.scale = rand_vec(r, m * G, 0.01f, 0.03f);
    if (bits >= 2) {
        q.zero = malloc((size_t)(m * G) * sizeof *q.zero);
        for (int64_t i = 0; i < m * G; i++)
            q.zero[i] = bl_round_f16(bl_rng_uniform(r) * (float)((1 << bits) - 1));
    }
    bl_err err = {0};
    CHECK_MSG(bl_linear_from_rtn(L, &q, &err) == BL_OK, "%s", err.msg);
    bl_rtn_free(&q);
}

/* ---------- checks shared by every format ---------- */

static void fill_nan(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = NAN;
}

/* Threads and ISA level of the forward passes below (test_threads and test_isa_levels vary it). */
static bl_exec cur_ex = {NULL, BL_ISA_AUTO, BL_TABLES_F32};

/* forward() with an exactly sized workspace, NaN-filled so reads of stale data show up. */
static float *run_forward(const bl_linear *L, const float *x, int64_t T) {
    size_t nw = L->ops->workspace_floats(L, T);
    float *work = malloc(nw * sizeof *work + 1), *y = malloc((size_t)(T * L->m) * sizeof *y);
    fill_nan(work, nw);
    fill_nan(y, (size_t)(T * L->m));
    L->ops->forward(L, x, T, y, work, &cur_ex);
    free(work);
    return y;
}

static float *dense_of(const bl_linear *L) {
    float *W = malloc((size_t)(L->m * L->n) * sizeof *W);
    bl_err err = {0};
    CHECK_MSG(L->ops->to_dense(L, W, &err) == BL_OK, "%s", err.msg);
    return W;
}

/* LayerNorm without affine parameters (the OneBit post-LN), in double. */
static void ref_layer_norm(double *y, int64_t T, int64_t m) {
    for (int64_t t = 0; t < T; t++) {
        double *yr = y + t * m, mean = 0, var = 0;
        for (int64_t i = 0; i < m; i++) mean += yr[i];
        mean /= (double)m;
        for (int64_t i = 0; i < m; i++) var += (yr[i] - mean) * (yr[i] - mean);
        var /= (double)m;
        for (int64_t i = 0; i < m; i++) yr[i] = (yr[i] - mean) / sqrt(var + 1e-5);
    }
}

/* Worst errors seen per format, printed at the end (how much headroom forward_tol has). */
static double worst_rel[8], worst_plain[8];

static int fmt_index(const bl_linear *L) {
    static const char *names[] = {"onebit", "dbf", "mdbf", "rtn"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(L->ops->name, names[i])) return i;
    return 4;
}

/* The forward's float sums may cancel (a single output can be near 0), so the error is measured
 * against the magnitude of the terms:  ‖forward(x) − x·Ŵᵀ‖ / ‖|x|·|Ŵ|ᵀ‖  (Frobenius over the
 * T×m outputs, reference in double) must stay within forward_tol. With post-LN the reference is
 * LN(x·Ŵᵀ) and the error is relative to its norm (√(T·m) for a non-degenerate LN). */
static void check_forward(const bl_linear *L, bl_rng *r, int64_t T) {
    const int64_t m = L->m, n = L->n;
    float *x = rand_vec(r, T * n, 1.0f, 0.0f), *W = dense_of(L), *y = run_forward(L, x, T);
    double *ref = calloc((size_t)(T * m), sizeof *ref), mag = 0, num = 0, den = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < m; i++) {
            double s = 0, a = 0;
            for (int64_t j = 0; j < n; j++) {
                s += (double)x[t * n + j] * (double)W[i * n + j];
                a += fabs((double)x[t * n + j] * (double)W[i * n + j]);
            }
            ref[t * m + i] = s;
            mag += a * a;
        }
    bool ln = L->params.post_ln && fmt_index(L) == 0;
    if (ln) ref_layer_norm(ref, T, m);
    for (int64_t i = 0; i < T * m; i++) {
        num += (y[i] - ref[i]) * (y[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    double rel = sqrt(num / (ln ? (den > 0 ? den : 1) : (mag > 0 ? mag : 1)));
    double plain = den > 0 ? sqrt(num / den) : sqrt(num);
    int f = fmt_index(L);
    if (rel > worst_rel[f]) worst_rel[f] = rel;
    if (plain > worst_plain[f] && T * m >= 64) worst_plain[f] = plain;
    CHECK_MSG(rel <= L->ops->forward_tol, "%s %lldx%lld T=%lld: rel err %.3g > %.3g",
              L->ops->name, (long long)m, (long long)n, (long long)T, rel, L->ops->forward_tol);
    free(x);
    free(W);
    free(y);
    free(ref);
}

/* Bits of padding the canonical packing adds to a rows×cols packed matrix. */
static uint64_t pad_bits(int64_t rows, int64_t cols) {
    return (uint64_t)rows * (uint64_t)(8 * ((cols + 7) / 8) - cols);
}

/* stored_bits counts signs/codes at 1 (or `bits`) bit each; the file rounds each packed row up
 * to whole bytes. This is that difference, per format. */
static uint64_t layer_pad_bits(const bl_linear *L) {
    const bl_format_params *p = &L->params;
    const char *f = L->ops->name;
    if (!strcmp(f, "onebit")) return pad_bits(L->m, L->n);
    if (!strcmp(f, "dbf")) return pad_bits(L->m, p->mid) + pad_bits(p->mid, L->n);
    if (!strcmp(f, "mdbf"))
        return (uint64_t)p->paths * (pad_bits(L->m, p->mid) + pad_bits(p->mid, L->n));
    return pad_bits(L->m, L->n * p->bits);
}

static int layer_tensor_count(const bl_linear *L) {
    const char *f = L->ops->name;
    if (!strcmp(f, "onebit")) return 3;
    if (!strcmp(f, "dbf")) return 5;
    if (!strcmp(f, "mdbf")) return (L->params.rank_l == 1 ? 5 : 6) * L->params.paths; /* no Q_V */
    return L->params.bits >= 2 ? 3 : 2;
}

/* Saves L into a fresh file of tmpdir and opens it into ts. */
static bl_status save_open(const bl_linear *L, bl_tensor_set *ts, char *path, size_t cap) {
    bl_err err = {0};
    bl_st_writer *w = NULL;
    snprintf(path, cap, "%s/layer%d.safetensors", tmpdir, file_counter++);
    bl_status s = bl_st_writer_new(&w, &err);
    if (!s) s = L->ops->save(L, PREFIX, w, &err);
    if (!s) s = bl_st_writer_finish(w, path, &err);
    bl_st_writer_free(w);
    CHECK_MSG(s == BL_OK, "save: %s", err.msg);
    if (s) return s;
    memset(ts, 0, sizeof *ts);
    s = bl_safetensors_open(path, ts, NULL, &err);
    CHECK_MSG(s == BL_OK, "open: %s", err.msg);
    return s;
}

/* save → file → load: identical to_dense and bit-identical forward; the file's bytes equal
 * stored_bits/8 plus the documented row padding (exactly stored_bits/8 when nothing pads). */
static void check_roundtrip(const bl_linear *L, bl_rng *r) {
    char path[128];
    bl_tensor_set ts;
    if (save_open(L, &ts, path, sizeof path)) return;
    uint64_t bytes = 0;
    for (int i = 0; i < ts.n; i++) bytes += ts.t[i].nbytes;
    CHECK(ts.n == layer_tensor_count(L));
    uint64_t stored = bl_format_stored_bits(L->ops, L->m, L->n, &L->params), pad = layer_pad_bits(L);
    CHECK_MSG(8 * bytes == stored + pad, "%s %lldx%lld: 8×%llu bytes vs %llu bits + %llu pad",
              L->ops->name, (long long)L->m, (long long)L->n, (unsigned long long)bytes,
              (unsigned long long)stored, (unsigned long long)pad);
    if (pad == 0) CHECK(8 * bytes == stored);

    bl_linear L2 = {.ops = L->ops, .m = L->m, .n = L->n, .params = L->params};
    bl_err err = {0};
    bl_status s = L->ops->load(&L2, PREFIX, &ts, &err);
    CHECK_MSG(s == BL_OK, "load: %s", err.msg);
    if (s == BL_OK) {
        float *W1 = dense_of(L), *W2 = dense_of(&L2);
        CHECK(memcmp(W1, W2, (size_t)(L->m * L->n) * sizeof *W1) == 0);
        const int64_t T = 5;
        float *x = rand_vec(r, T * L->n, 1.0f, 0.0f);
        float *y1 = run_forward(L, x, T), *y2 = run_forward(&L2, x, T);
        CHECK(memcmp(y1, y2, (size_t)(T * L->m) * sizeof *y1) == 0);
        /* a copy of the loaded layer (whose signs are views into the file) outlives the file */
        bl_linear C = {0};
        CHECK_MSG(bl_linear_copy(&L2, &C, &err) == BL_OK, "copy: %s", err.msg);
        bl_linear_free(&L2);
        bl_tensor_set_free(&ts);
        float *W3 = dense_of(&C);
        CHECK(memcmp(W1, W3, (size_t)(L->m * L->n) * sizeof *W1) == 0);
        bl_linear_free(&C);
        free(W1);
        free(W2);
        free(W3);
        free(x);
        free(y1);
        free(y2);
    } else {
        bl_tensor_set_free(&ts);
    }
    unlink(path);
}

/* bl_linear_copy (generic, from the tensor table): the same shape, parameters, weights and
 * outputs bit for bit, in buffers of its own (it outlives the original). */
static void check_copy(bl_linear *L, bl_rng *r) {
    bl_linear C = {0};
    bl_err err = {0};
    bl_status s = bl_linear_copy(L, &C, &err);
    if (bl_linear_is_dense(L)) {
        CHECK(s == BL_ERR_UNSUPPORTED);
        return;
    }
    CHECK_MSG(s == BL_OK, "copy: %s", err.msg);
    if (s) return;
    CHECK(C.ops == L->ops && C.m == L->m && C.n == L->n &&
          memcmp(&C.params, &L->params, sizeof C.params) == 0);
    CHECK(C.ops->data(&C) != L->ops->data(L));
    const int64_t T = 3;
    float *x = rand_vec(r, T * L->n, 1.0f, 0.0f);
    float *W1 = dense_of(L), *y1 = run_forward(L, x, T);
    bl_linear_free(L); /* the copy does not share its buffers */
    float *W2 = dense_of(&C), *y2 = run_forward(&C, x, T);
    CHECK(memcmp(W1, W2, (size_t)(C.m * C.n) * sizeof *W1) == 0);
    CHECK(memcmp(y1, y2, (size_t)(T * C.m) * sizeof *y1) == 0);
    free(x), free(W1), free(W2), free(y1), free(y2);
    *L = C; /* the caller frees it */
}

static void check_layer(bl_linear *L, bl_rng *r) {
    check_forward(L, r, 1);
    check_forward(L, r, 5);
    check_copy(L, r);
    check_roundtrip(L, r);
    bl_linear_free(L);
}

static const int64_t *shapes(int *count) {
    if (test_quick()) {
        *count = (int)(sizeof SHAPES_QUICK / sizeof *SHAPES_QUICK);
        return SHAPES_QUICK;
    }
    *count = (int)(sizeof SHAPES / sizeof *SHAPES);
    return SHAPES;
}

/* ---------- the cases ---------- */

static void test_onebit(void) {
    bl_rng r;
    bl_rng_seed(&r, 1);
    int ns;
    const int64_t *S = shapes(&ns);
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b++)
            for (int ln = 0; ln < 2; ln++) {
                bl_linear L = {0};
                make_onebit(&r, S[a], S[b], ln, &L);
                check_layer(&L, &r);
            }
}

static void test_dbf(void) {
    bl_rng r;
    bl_rng_seed(&r, 2);
    int ns;
    const int64_t *S = shapes(&ns);
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b++)
            for (int k = 0; k < 3; k++) {
                bl_linear L = {0};
                make_dbf(&r, S[a], S[b], MIDS[k], &L);
                check_layer(&L, &r);
            }
}

static void test_mdbf(void) {
    bl_rng r;
    bl_rng_seed(&r, 3);
    int ns, combo = 0;
    const int64_t *S = shapes(&ns);
    static const int Ls[] = {1, 3}, Ps[] = {1, 2};
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b++)
            for (int k = 0; k < 3; k++)
                for (int li = 0; li < 2; li++)
                    for (int pi = 0; pi < 2; pi++, combo++) {
                        /* Quick mode (sanitizers) keeps every third (r, l, P) combination. */
                        if (test_quick() && combo % 3) continue;
                        bl_linear L = {0};
                        make_mdbf(&r, S[a], S[b], MIDS[k], Ls[li], Ps[pi], &L);
                        check_layer(&L, &r);
                    }
}

/* Middle dimensions above min(m, n) (and above max(m, n)): forward, kernels' workspace, and the
 * save/load round trip behave as for any other middle. */
static void test_wide_middle(void) {
    bl_rng r;
    bl_rng_seed(&r, 11);
    const int64_t dims[][2] = {{65, 128}, {128, 65}, {7, 3}};
    for (int d = 0; d < 3; d++) {
        const int64_t m = dims[d][0], n = dims[d][1], k = 2 * (m > n ? m : n) + 3;
        bl_linear L = {0};
        make_dbf(&r, m, n, k, &L);
        CHECK(L.params.mid == k);
        check_layer(&L, &r);
        static const int Ls[] = {1, 3}, Ps[] = {1, 2};
        for (int li = 0; li < 2; li++)
            for (int pi = 0; pi < 2; pi++) {
                make_mdbf(&r, m, n, k, Ls[li], Ps[pi], &L);
                check_layer(&L, &r);
            }
    }
}

/* MDBF with l = 1 stores Q_U ⊙ Q_V as one vector; a checkpoint written with a separate Q_V tensor
 * (the earlier layout) still loads and computes Q_U ⊙ Q_V. */
static void test_mdbf_l1_separate_qv(void) {
    bl_rng r;
    bl_rng_seed(&r, 12);
    const int64_t m = 20, n = 33, k = 9;
    bl_linear L = {0};
    make_mdbf(&r, m, n, k, 1, 2, &L);
    char path[128], legacy[160];
    bl_tensor_set ts;
    REQUIRE(save_open(&L, &ts, path, sizeof path) == BL_OK);
    CHECK(ts.n == 10); /* 5 tensors per path: no Q_V */
    /* the same layer written as Q_U/2 and Q_V = 2 (both exact in FP16) */
    bl_err err = {0};
    bl_st_writer *w = NULL;
    REQUIRE(bl_st_writer_new(&w, &err) == BL_OK);
    uint16_t two[9];
    for (int i = 0; i < 9; i++) two[i] = bl_f32_to_f16(2.0f);
    for (int i = 0; i < ts.n; i++) {
        const bl_tensor *t = &ts.t[i];
        uint16_t half[9];
        const void *data = t->data;
        if (strstr(t->name, ".Q_U")) {
            memcpy(half, t->data, sizeof half); /* file data need not be 2-byte aligned */
            for (int j = 0; j < 9; j++) half[j] = bl_f32_to_f16(bl_f16_to_f32(half[j]) / 2.0f);
            data = half;
        }
        CHECK(bl_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, data, t->nbytes, true,
                               &err) == BL_OK);
        if (strstr(t->name, ".Q_U")) {
            char qv[BL_MAX_NAME];
            snprintf(qv, sizeof qv, "%.*s.Q_V", (int)(strlen(t->name) - 4), t->name);
            CHECK(bl_st_writer_add(w, qv, BL_DT_F16, 2, t->shape, two, sizeof two, true, &err) ==
                  BL_OK);
        }
    }
    snprintf(legacy, sizeof legacy, "%s.legacy", path);
    REQUIRE(bl_st_writer_finish(w, legacy, &err) == BL_OK);
    bl_st_writer_free(w);
    bl_tensor_set ls = {0};
    REQUIRE(bl_safetensors_open(legacy, &ls, NULL, &err) == BL_OK);
    CHECK(ls.n == 12);
    bl_linear L2 = {.ops = L.ops, .m = m, .n = n, .params = L.params};
    REQUIRE(L.ops->load(&L2, PREFIX, &ls, &err) == BL_OK);
    float *W1 = dense_of(&L), *W2 = dense_of(&L2);
    CHECK(memcmp(W1, W2, sizeof(float) * (size_t)(m * n)) == 0);
    free(W1);
    free(W2);
    bl_linear_free(&L2);
    bl_linear_free(&L);
    bl_tensor_set_free(&ls);
    bl_tensor_set_free(&ts);
    unlink(path);
    unlink(legacy);
}

static void test_rtn(void) {
    bl_rng r;
    bl_rng_seed(&r, 4);
    int ns;
    const int64_t *S = shapes(&ns);
    static const int groups[] = {64, 128};
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b++)
            for (int bits = 1; bits <= 4; bits++)
                for (int gi = 0; gi < (bits == 1 ? 1 : 2); gi++) {
                    bl_linear L = {0};
                    make_rtn(&r, S[a], S[b], bits, groups[gi], &L);
                    check_layer(&L, &r);
                }
    /* 8-bit codes (byte aligned) and a group that does not divide n, at a larger shape. */
    bl_linear L = {0};
    make_rtn(&r, 33, 1000, 8, 96, &L);
    check_layer(&L, &r);
    make_rtn(&r, 17, 300, 3, 7, &L);
    check_layer(&L, &r);
}

/* The bpw formulas themselves, independent of any file (ALGORITHMS.md §1, 4, 5, 6). */
static void test_stored_bits(void) {
    const bl_format_ops *ob = bl_format_find("onebit"), *db = bl_format_find("dbf"),
                        *md = bl_format_find("mdbf"), *rt = bl_format_find("rtn");
    REQUIRE(ob && db && md && rt);
    bl_format_params p = {0};
    CHECK(bl_format_stored_bits(ob, 4096, 4096, &p) == 4096ull * 4096 + 16ull * 8192);
    bl_linear L = {.ops = ob, .m = 4096, .n = 4096};
    CHECK_NEAR(bl_linear_bpw(&L), 1.0078125, 1e-12);
    p.mid = 2000;
    CHECK(bl_format_stored_bits(db, 4096, 11008, &p) == 2000ull * 15104 + 16ull * (15104 + 2000));
    /* l = 1 stores one middle vector (μ = Q_U ⊙ Q_V), so it costs exactly DBF's bits */
    p.mid = 2028, p.rank_l = 1, p.paths = 1;
    uint64_t b1 = bl_format_stored_bits(md, 4096, 4096, &p);
    CHECK(b1 == 2028ull * 8192 + 16ull * (8192 + 2028));
    CHECK(b1 == bl_format_stored_bits(db, 4096, 4096, &p));
    CHECK(b1 <= 4096ull * 4096); /* r = 2028 is the largest rank within 1.0 bpw */
    p.mid = 1953, p.rank_l = 4, p.paths = 2;
    CHECK(bl_format_stored_bits(md, 4096, 4096, &p) == 2ull * (1953ull * 8192 + 64ull * (8192 + 3906)));
    p = (bl_format_params){.bits = 1};
    CHECK(bl_format_stored_bits(rt, 4096, 4096, &p) == 4096ull * 4096 + 16ull * 4096);
    p = (bl_format_params){.bits = 2, .group = 128};
    CHECK(bl_format_stored_bits(rt, 4096, 4096, &p) == 2ull * 4096 * 4096 + 32ull * 4096 * 32);
    p = (bl_format_params){.bits = 3, .group = 64};
    CHECK(bl_format_stored_bits(rt, 10, 100, &p) == 3000ull + 32ull * 10 * 2);
}

/* Post-LN: each token's outputs have mean 0 and (biased) variance var/(var+eps) ≈ 1. */
static void test_onebit_post_ln(void) {
    bl_rng r;
    bl_rng_seed(&r, 5);
    static const int64_t ms[] = {7, 65, 513};
    for (int a = 0; a < 3; a++) {
        bl_linear L = {0};
        make_onebit_h(&r, ms[a], 96, true, 1.0f, &L);
        const int64_t T = 5, m = ms[a];
        float *x = rand_vec(&r, T * 96, 1.0f, 0.0f), *y = run_forward(&L, x, T);
        for (int64_t t = 0; t < T; t++) {
            double mean = 0, var = 0;
            for (int64_t i = 0; i < m; i++) mean += y[t * m + i];
            mean /= (double)m;
            for (int64_t i = 0; i < m; i++) var += (y[t * m + i] - mean) * (y[t * m + i] - mean);
            var /= (double)m;
            CHECK_NEAR(mean, 0.0, 1e-6);
            CHECK_NEAR(var, 1.0, 1e-5);
        }
        /* m = 1: the output is exactly 0 (x − mean). */
        free(x);
        free(y);
        bl_linear_free(&L);
    }
    bl_linear L = {0};
    make_onebit(&r, 1, 40, true, &L);
    float *x = rand_vec(&r, 40, 1.0f, 0.0f), *y = run_forward(&L, x, 1);
    CHECK(y[0] == 0.0f);
    free(x);
    free(y);
    bl_linear_free(&L);
}

/* A copy of ts (views only) with tensor `skip` left out, or with its dtype/shape replaced. */
typedef enum { EDIT_DROP, EDIT_DTYPE, EDIT_SHAPE0, EDIT_SHAPE1, EDIT_PADDING } edit_kind;

static uint8_t scratch[1 << 21];

static void edited_set(const bl_tensor_set *ts, int which, edit_kind kind, bl_tensor_set *out) {
    memset(out, 0, sizeof *out);
    bl_err err = {0};
    for (int i = 0; i < ts->n; i++) {
        bl_tensor t = ts->t[i];
        if (i == which) {
            size_t elem = bl_dtype_info(t.dtype)->block_bytes;
            switch (kind) {
            case EDIT_DROP: continue;
            case EDIT_DTYPE: t.dtype = t.dtype == BL_DT_U8 ? BL_DT_I8 : BL_DT_BF16; break;
            case EDIT_SHAPE0: t.shape[0] += 1; break;
            case EDIT_SHAPE1:
                if (t.ndim == 1) t.ndim = 2, t.shape[1] = 1; /* [n] → [n, 1] */
                else t.shape[1] += 1;
                break;
            case EDIT_PADDING: /* set the last bit of row 0 (a padding bit when cols % 8 != 0) */
                memcpy(scratch, t.data, t.nbytes);
                scratch[t.shape[1] - 1] |= 0x80;
                t.data = scratch;
                break;
            }
            if (kind == EDIT_SHAPE0 || kind == EDIT_SHAPE1) {
                size_t numel = 1;
                for (int d = 0; d < t.ndim; d++) numel *= (size_t)t.shape[d];
                t.nbytes = numel * elem;
                t.data = scratch; /* large enough and zero: never read past validation */
            }
        }
        CHECK_MSG(bl_tensor_set_add(out, &t, &err) == BL_OK, "%s", err.msg);
    }
}

static void expect_load_error(const bl_linear *L, const bl_tensor_set *ts, const char *name,
                              const char *what) {
    bl_linear L2 = {.ops = L->ops, .m = L->m, .n = L->n, .params = L->params};
    bl_err err = {0};
    bl_status s = L->ops->load(&L2, PREFIX, ts, &err);
    CHECK_MSG(s != BL_OK, "%s: %s accepted", name, what);
    CHECK_MSG(s == BL_OK || strstr(err.msg, name) != NULL, "%s (%s): message '%s'", name, what,
              err.msg);
    if (s == BL_OK) bl_linear_free(&L2);
}

static void check_rejections(bl_linear *L) {
    char path[128];
    bl_tensor_set ts;
    if (save_open(L, &ts, path, sizeof path)) return;
    for (int i = 0; i < ts.n; i++) {
        const bl_tensor *t = &ts.t[i];
        bl_tensor_set bad;
        static const edit_kind kinds[] = {EDIT_DROP, EDIT_DTYPE, EDIT_SHAPE0, EDIT_SHAPE1};
        static const char *what[] = {"missing tensor", "wrong dtype", "wrong rows", "wrong cols"};
        for (int k = 0; k < 4; k++) {
            edited_set(&ts, i, kinds[k], &bad);
            expect_load_error(L, &bad, t->name, what[k]);
            bl_tensor_set_free(&bad);
        }
        if (t->dtype == BL_DT_U8) {
            edited_set(&ts, i, EDIT_PADDING, &bad);
            expect_load_error(L, &bad, t->name, "padding bit");
            bl_tensor_set_free(&bad);
        }
    }
    /* The exact message format. */
    if (!strcmp(L->ops->name, "onebit")) {
        bl_tensor_set bad;
        edited_set(&ts, 0, EDIT_SHAPE1, &bad);
        bl_linear L2 = {.ops = L->ops, .m = L->m, .n = L->n, .params = L->params};
        bl_err err = {0};
        CHECK(L->ops->load(&L2, PREFIX, &bad, &err) != BL_OK);
        char want[256];
        snprintf(want, sizeof want, "%s: expected U8 [%lld, %lld], got U8 [%lld, %lld]",
                 ts.t[0].name, (long long)L->m, (long long)ceil_div(L->n, 8), (long long)L->m,
                 (long long)ceil_div(L->n, 8) + 1);
        CHECK_MSG(strcmp(err.msg, want) == 0, "'%s' vs '%s'", err.msg, want);
        bl_tensor_set_free(&bad);
    }
    bl_tensor_set_free(&ts);
    unlink(path);
    bl_linear_free(L);
}

/* Shapes whose every packed matrix has padding (n, k, r not multiples of 8). */
static void test_load_rejects(void) {
    bl_rng r;
    bl_rng_seed(&r, 6);
    bl_linear L = {0};
    make_onebit(&r, 64, 171, false, &L);
    check_rejections(&L);
    make_dbf(&r, 20, 13, 9, &L);
    check_rejections(&L);
    make_mdbf(&r, 20, 13, 9, 3, 2, &L);
    check_rejections(&L);
    make_rtn(&r, 5, 13, 1, 64, &L);
    check_rejections(&L);
    make_rtn(&r, 5, 13, 3, 4, &L);
    check_rejections(&L);
}

/* Bad in-memory data is refused (and left with the caller); FP16 rounding is applied. */
static void test_from_validation(void) {
    bl_rng r;
    bl_rng_seed(&r, 7);
    bl_err err = {0};
    bl_linear L = {0};
    bl_onebit q = {.m = 3, .n = 5, .sign = rand_bits(&r, 3, 5), .g = rand_vec(&r, 5, 1, 0),
                   .h = rand_vec(&r, 3, 1, 0)};
    q.h[1] = 1e6f; /* overflows FP16 */
    CHECK(bl_linear_from_onebit(&L, &q, &err) == BL_ERR_NUMERIC);
    CHECK(strstr(err.msg, "onebit h") != NULL);
    CHECK(q.sign != NULL); /* not taken */
    q.h[1] = 1.0001f;      /* rounds to 1 in FP16 */
    q.sign[0] |= 0x80;     /* padding bit of row 0 */
    CHECK(bl_linear_from_onebit(&L, &q, &err) == BL_ERR_FORMAT);
    q.sign[0] &= 0x7f;
    float *g = q.g;
    q.g = NULL;
    CHECK(bl_linear_from_onebit(&L, &q, &err) == BL_ERR_ARG);
    q.g = g;
    REQUIRE(bl_linear_from_onebit(&L, &q, &err) == BL_OK);
    float W[15];
    REQUIRE(L.ops->to_dense(&L, W, &err) == BL_OK);
    CHECK(fabsf(W[5]) == fabsf(g[0])); /* Ŵ[1][0] = ±h[1]·g[0] with h[1] now exactly 1 */
    CHECK(L.ops == bl_format_find("onebit") && L.m == 3 && L.n == 5);
    bl_linear_free(&L);

    /* a missing buffer is named by format and tensor (the generic check over the table) */
    bl_mdbf np = {.m = 2, .n = 3, .r = 1, .l = 2, .P = 2};
    REQUIRE(bl_format_data_alloc(bl_format_find("mdbf"), 2, 3,
                                 &(bl_format_params){.mid = 1, .rank_l = 2, .paths = 2}, &np,
                                 &err) == BL_OK);
    float *qv = np.paths[1].Q_V;
    np.paths[1].Q_V = NULL;
    CHECK(bl_linear_from_mdbf(&L, &np, &err) == BL_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "mdbf p1.Q_V") != NULL, "%s", err.msg);
    np.paths[1].Q_V = qv;
    REQUIRE(bl_linear_from_mdbf(&L, &np, &err) == BL_OK); /* zeroed buffers: a valid layer */
    CHECK(np.paths == NULL && L.params.paths == 2 && L.params.rank_l == 2);
    float Wz[6] = {1, 1, 1, 1, 1, 1};
    REQUIRE(L.ops->to_dense(&L, Wz, &err) == BL_OK);
    for (int i = 0; i < 6; i++) CHECK(Wz[i] == 0.0f);
    bl_linear_free(&L);
    /* shapes the format cannot hold are refused before anything is allocated */
    bl_mdbf bad;
    CHECK(bl_format_data_alloc(bl_format_find("mdbf"), 2, 3,
                               &(bl_format_params){.mid = 1, .rank_l = 1, .paths = 65}, &bad,
                               &err) == BL_ERR_ARG);
    CHECK(bad.paths == NULL);

    bl_rtn rq = {.m = 2, .n = 10, .bits = 5, .group = 0};
    CHECK(bl_linear_from_rtn(&L, &rq, &err) == BL_ERR_ARG);
    bl_mdbf mq = {.m = 2, .n = 3, .r = 1, .l = 0, .P = 1};
    CHECK(bl_linear_from_mdbf(&L, &mq, &err) == BL_ERR_ARG);
}

/* forward at 1 and 2 threads is bitwise identical (large enough for every parallel path). */
static void test_threads(void) {
    bl_rng r;
    bl_rng_seed(&r, 8);
    const int64_t T = 64, m = 300, n = 513;
    bl_linear Ls[5] = {{0}};
    make_onebit(&r, m, n, true, &Ls[0]);
    make_dbf(&r, m, n, 64, &Ls[1]);
    make_mdbf(&r, m, n, 64, 3, 2, &Ls[2]);
    make_rtn(&r, m, n, 1, 0, &Ls[3]);
    make_rtn(&r, m, n, 3, 64, &Ls[4]);
    float *x = rand_vec(&r, T * n, 1.0f, 0.0f);
    bl_pool *two = NULL;
    REQUIRE(bl_pool_new(2, &two, NULL) == BL_OK);
    for (int f = 0; f < 5; f++) {
        cur_ex.pool = NULL;
        float *y1 = run_forward(&Ls[f], x, T);
        cur_ex.pool = two;
        float *y2 = run_forward(&Ls[f], x, T);
        CHECK_MSG(memcmp(y1, y2, (size_t)(T * m) * sizeof *y1) == 0, "%s", Ls[f].ops->name);
        free(y1);
        free(y2);
        bl_linear_free(&Ls[f]);
    }
    cur_ex.pool = NULL;
    bl_pool_free(two);
    free(x);
}

/* The sign products go through the dispatched kernels: check the forward at every ISA level
 * this CPU has (the same prepared layer serves every level). */
static void test_isa_levels(void) {
    bl_rng r;
    bl_rng_seed(&r, 9);
    bl_isa best = bl_cpu_best_isa();
    for (int isa = BL_ISA_REF; isa <= (int)best; isa++) {
        cur_ex.isa = (bl_isa)isa;
        bl_linear L = {0};
        make_onebit(&r, 65, 513, false, &L);
        check_forward(&L, &r, 5);
        bl_linear_free(&L);
        make_dbf(&r, 63, 130, 9, &L);
        check_forward(&L, &r, 5);
        bl_linear_free(&L);
        make_mdbf(&r, 65, 200, 64, 3, 2, &L);
        check_forward(&L, &r, 5);
        bl_linear_free(&L);
        make_rtn(&r, 65, 513, 1, 0, &L);
        check_forward(&L, &r, 5);
        bl_linear_free(&L);
    }
    cur_ex.isa = BL_ISA_AUTO;
}

/* Batch invariance of the 1-bit formats (what batched decoding relies on: a sequence's logits are
 * bit-identical alone or in a batch): for T = 1..9 every token's output rows equal, bit for bit,
 * those of the same token computed alone (T = 1), at every ISA level, on shapes with odd m and n
 * not a multiple of 64 or 512 (a partial 512-column chunk, a partial 16-row block, sign rows
 * whose last byte is partial). */
static void test_batch_invariance(void) {
    bl_rng r;
    bl_rng_seed(&r, 21);
    const int TMAX = 9;
    const bl_isa best = bl_cpu_best_isa();
    bl_linear Ls[4] = {{0}};
    make_onebit(&r, 77, 1037, false, &Ls[0]);
    make_dbf(&r, 33, 515, 101, &Ls[1]);
    make_mdbf(&r, 45, 579, 67, 2, 2, &Ls[2]);
    make_onebit(&r, 1, 63, false, &Ls[3]);
    for (int f = 0; f < 4; f++) {
        const bl_linear *L = &Ls[f];
        float *x = rand_vec(&r, TMAX * L->n, 1.0f, 0.0f);
        for (int isa = BL_ISA_REF; isa <= (int)best; isa++) {
            cur_ex.isa = (bl_isa)isa;
            float *alone = malloc((size_t)(TMAX * L->m) * sizeof *alone);
            for (int t = 0; t < TMAX; t++) {
                float *y = run_forward(L, x + t * L->n, 1);
                memcpy(alone + t * L->m, y, (size_t)L->m * sizeof *y);
                free(y);
            }
            int bad = 0;
            for (int T = 1; T <= TMAX; T++) {
                float *y = run_forward(L, x + (TMAX - T) * L->n, T); /* the last T tokens */
                bad += memcmp(y, alone + (TMAX - T) * L->m, (size_t)(T * L->m) * sizeof *y) != 0;
                free(y);
            }
            CHECK_MSG(bad == 0, "%s %lldx%lld at %s: %d of %d batch sizes differ from tokens alone",
                      L->ops->name, (long long)L->m, (long long)L->n, bl_isa_name((bl_isa)isa),
                      bad, TMAX);
            free(alone);
        }
        free(x);
        bl_linear_free(&Ls[f]);
    }
    cur_ex.isa = BL_ISA_AUTO;
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bitllm_formats_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    TEST_RUN(test_stored_bits);
    TEST_RUN(test_onebit);
    TEST_RUN(test_dbf);
    TEST_RUN(test_mdbf);
    TEST_RUN(test_rtn);
    TEST_RUN(test_wide_middle);
    TEST_RUN(test_mdbf_l1_separate_qv);
    TEST_RUN(test_onebit_post_ln);
    TEST_RUN(test_load_rejects);
    TEST_RUN(test_from_validation);
    TEST_RUN(test_threads);
    TEST_RUN(test_isa_levels);
    TEST_RUN(test_batch_invariance);
    rmdir(tmpdir);
    static const char *names[] = {"onebit", "dbf", "mdbf", "rtn"};
    for (int i = 0; i < 4; i++)
        fprintf(stderr, "%-6s worst forward error %.2e (vs |x||W|), %.2e (vs |xW|, T·m >= 64)\n",
                names[i], worst_rel[i], worst_plain[i]);
    return test_summary();
}
