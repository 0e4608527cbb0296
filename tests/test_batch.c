/* Multi-sequence batched decoding (bl_forward_batch): every sequence's logits are bit-identical to
 * running it alone through bl_forward with the same chunks, for every weight format (dense F32,
 * F16, BF16 and the quantized formats with random factors), at every ISA level this CPU runs,
 * with prompts and single tokens mixed in one call, slots in any order and a slot reused after
 * truncation, the batched state on two threads and the single ones on one; bad batches are
 * refused with a message. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitllm/kernels.h"
#include "bitllm/quantize.h"
#include "test.h"

/* Awkward small dimensions: GQA, head_dim 12, an MLP width that is no multiple of 8 or 16. */
static bl_config small_config(void) { return test_small_config(48, 12); }

static void rm_rf(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  cannot remove %s\n", dir);
}

/* The model at path, its inference states running at kernel level isa with those sign tables and
 * that KV cache type. */
static bl_model *load_kv(const char *path, bl_isa isa, bl_sign_tables tables, bl_kv_type kv) {
    bl_model *m = NULL;
    bl_err err = {0};
    const bl_load_opts o = {.isa = isa, .sign_tables = tables, .kv_cache = kv};
    if (bl_model_load(path, &o, &m, &err) != BL_OK) fprintf(stderr, "  load: %s\n", err.msg);
    return m;
}
static bl_model *load_tables(const char *path, bl_isa isa, bl_sign_tables tables) {
    return load_kv(path, isa, tables, BL_KV_F32);
}
static bl_model *load(const char *path, bl_isa isa) { return load_tables(path, isa, BL_TABLES_F32); }

/* The schedule every model runs. Sequence s has its own token stream; each step lists, per
 * sequence, how many of its next tokens the step feeds (0: not in this step). Sequence 3 starts
 * in slot 1 once sequence 1 has finished there and the slot has been truncated to 0. */
enum { NSEQ = 4, NSTEP = 7, MAXTOK = 24 };
static const int slot_of[NSEQ] = {2, 1, 0, 1};
static const int feed[NSTEP][NSEQ] = {
    {5, 1, 0, 0},  /* two prompts of different lengths */
    {1, 1, 9, 0},  /* two decode tokens and a third prompt */
    {1, 1, 1, 0},  /* decode */
    {1, 0, 1, 0},  /* sequence 1 done; slot 1 freed */
    {3, 0, 1, 6},  /* a chunk of more tokens for 0, sequence 3 starts in slot 1 */
    {1, 0, 1, 1},
    {1, 0, 1, 1},
};

static int32_t token(int s, int i, int V) { return (int32_t)((s * 37 + i * 11 + 5) % V); }

/* Returns the number of logit vectors that differed (0 when batched == alone everywhere). */
static int run_schedule(const bl_model *m, const char *what) {
    const int V = m->cfg.vocab_size;
    bl_state *batch = NULL, *alone[NSEQ] = {0};
    bl_err err = {0};
    int bad = 0;
    float *lb = malloc(sizeof(float) * (size_t)V * NSEQ), *la = malloc(sizeof(float) * (size_t)V);
    if (!lb || !la || bl_state_new_slots(m, 3, 40, 16, 2, &batch, &err) != BL_OK) {
        fprintf(stderr, "  %s: setup: %s\n", what, err.msg);
        free(lb), free(la);
        return -1;
    }
    for (int s = 0; s < NSEQ; s++)
        if (bl_state_new(m, 40, 16, 1, &alone[s], &err) != BL_OK) bad = -1;
    int32_t toks[NSEQ][MAXTOK];
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < MAXTOK; i++) toks[s][i] = token(s, i, V);
    int done[NSEQ] = {0};
    for (int step = 0; step < NSTEP && bad == 0; step++) {
        if (step == 3) bl_state_slot_truncate(batch, 1, 0); /* sequence 1 finished */
        bl_seq_batch q[NSEQ];
        int n = 0, which[NSEQ];
        /* list the sequences in an order that differs from their slot order */
        for (int k = NSEQ - 1; k >= 0; k--) {
            int s = (k + step) % NSEQ;
            if (!feed[step][s]) continue;
            q[n] = (bl_seq_batch){.slot = slot_of[s], .tokens = toks[s] + done[s],
                                  .n = feed[step][s], .logits = lb + (size_t)n * V};
            which[n++] = s;
        }
        if (bl_forward_batch(batch, q, n, &err) != BL_OK) {
            fprintf(stderr, "  %s step %d: %s\n", what, step, err.msg);
            bad = -1;
            break;
        }
        for (int k = 0; k < n; k++) {
            int s = which[k];
            if (bl_forward(alone[s], toks[s] + done[s], feed[step][s], la, false, &err) != BL_OK) {
                bad = -1;
                break;
            }
            if (memcmp(la, lb + (size_t)k * V, sizeof(float) * (size_t)V) != 0) {
                fprintf(stderr, "  %s step %d seq %d: batched logits differ from alone\n", what,
                        step, s);
                bad++;
            }
            done[s] += feed[step][s];
            if (bl_state_slot_pos(batch, slot_of[s]) != done[s]) {
                fprintf(stderr, "  %s: slot %d holds %d tokens, expected %d\n", what, slot_of[s],
                        bl_state_slot_pos(batch, slot_of[s]), done[s]);
                bad++;
            }
        }
    }
    for (int s = 0; s < NSEQ; s++) bl_state_free(alone[s]);
    bl_state_free(batch);
    free(lb), free(la);
    return bad;
}

static char base_dir[64];

static void make_base(void) {
    snprintf(base_dir, sizeof base_dir, "/tmp/bitllm-batch-XXXXXX");
    if (!mkdtemp(base_dir)) base_dir[0] = 0;
}

/* A synthetic model of dtype dt in <base>/<name>. */
static bool synth(const char *name, bl_dtype dt, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", base_dir, name);
    bl_config c = small_config();
    bl_err err = {0};
    if (bl_synth_model(&c, dt, 11, out, &err) != BL_OK) {
        fprintf(stderr, "  synth %s: %s\n", name, err.msg);
        return false;
    }
    return true;
}

/* The schedule on the model in dir, loaded (and its sign matrices prepared) at every ISA level,
 * with f32 and, for quantized models, int8 sign tables. */
static void check_every_isa(const char *dir, const char *name, int n_tables) {
    const bl_isa best = bl_cpu_best_isa();
    for (int tb = 0; tb < n_tables; tb++)
        for (int isa = BL_ISA_REF; isa <= (int)best; isa++) {
            bl_model *m = load_tables(dir, (bl_isa)isa, (bl_sign_tables)tb);
            CHECK_MSG(m != NULL, "%s: cannot load", name);
            if (!m) break;
            char what[64];
            snprintf(what, sizeof what, "%s/%s/%s", name, bl_isa_name((bl_isa)isa),
                     bl_sign_tables_name((bl_sign_tables)tb));
            CHECK_MSG(run_schedule(m, what) == 0, "%s", what);
            bl_model_free(m);
        }
}

/* Last-position logits of one prompt on the model in dir with the given sign tables and cache. */
static bool prompt_logits_kv(const char *dir, bl_sign_tables tables, bl_kv_type kv, float *out) {
    bl_model *m = load_kv(dir, BL_ISA_AUTO, tables, kv);
    bl_state *st = NULL;
    bl_err err = {0};
    int32_t toks[12];
    bool ok = m && bl_state_new(m, 16, 12, 1, &st, &err) == BL_OK;
    for (int i = 0; ok && i < 12; i++) toks[i] = token(0, i, m->cfg.vocab_size);
    ok = ok && bl_forward(st, toks, 12, out, false, &err) == BL_OK;
    bl_state_free(st);
    bl_model_free(m);
    return ok;
}
static bool prompt_logits(const char *dir, bl_sign_tables tables, float *out) {
    return prompt_logits_kv(dir, tables, BL_KV_F32, out);
}

/* --sign-tables i8 reaches the model's products: its logits differ from the f32 tables' (so the
 * option is not ignored) yet stay close. Bound: the kernel's error per product is at most
 * ~4·(max|group sum|/127 + unit) per 32 inputs, the unit 1/255 of the block's largest step
 * (tests/test_kernels.c), i.e. ≲ 3 % of Σ|x| and, for the
 * ±random-sign sums here, well under that in L2; 5 % relative L2 on the logits leaves room for
 * the error's passage through a few small layers while catching a wrong table or scale (≥ 30 %). */
static void check_i8_close(const char *dir, const char *name) {
    bl_model *m = load(dir, BL_ISA_AUTO);
    REQUIRE(m);
    const int V = m->cfg.vocab_size;
    bl_model_free(m);
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    REQUIRE(a && b);
    REQUIRE(prompt_logits(dir, BL_TABLES_F32, a) && prompt_logits(dir, BL_TABLES_I8, b));
    double d2 = 0, n2 = 0;
    for (int k = 0; k < V; k++) d2 += (double)(a[k] - b[k]) * (a[k] - b[k]), n2 += (double)a[k] * a[k];
    const double rel = sqrt(d2 / (n2 + 1e-30));
    CHECK_MSG(rel > 0 && rel < 0.05, "%s: i8 against f32 tables, logits relative L2 %.3g", name,
              rel);
    free(a), free(b);
}

static void test_dense_formats(void) {
    REQUIRE(base_dir[0]);
    const struct { const char *name; bl_dtype dt; } forms[] = {
        {"f32", BL_DT_F32}, {"f16", BL_DT_F16}, {"bf16", BL_DT_BF16}};
    for (int f = 0; f < 3; f++) {
        char dir[256];
        REQUIRE(synth(forms[f].name, forms[f].dt, dir, sizeof dir));
        check_every_isa(dir, forms[f].name, 1);
    }
}

static void test_quantized_formats(void) {
    REQUIRE(base_dir[0]);
    char src_dir[256];
    REQUIRE(synth("src", BL_DT_F16, src_dir, sizeof src_dir));
    bl_model *src = load(src_dir, BL_ISA_AUTO);
    REQUIRE(src);
    /* q4_0 layers and a q4_0 head: BL_TABLES_I8 gives their products int8 inputs */
    const struct { const char *q; double bpw; const char *head; } methods[] = {
        {"onebit", 0, NULL}, {"dbf", 1.5, NULL}, {"mdbf", 2.0, NULL}, {"rtn1", 0, NULL},
        {"rtn2", 0, NULL},   {"q4_0", 0, NULL},  {"onebit", 0, "q4_0"}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        bl_quant_opts o;
        bl_quant_opts_default(&o);
        o.method = test_method(methods[i].q);
        if (methods[i].bpw > 0) o.bpw = methods[i].bpw;
        o.method.params.group = 32;
        o.random_factors = true;
        o.head = methods[i].head;
        char dir[256];
        snprintf(dir, sizeof dir, "%s/%s%s%s", base_dir, methods[i].q, methods[i].head ? "-head-" : "",
                 methods[i].head ? methods[i].head : "");
        bl_err err = {0};
        bl_quant_summary sum;
        bl_status s = bl_quantize_model(src, &o, dir, &sum, &err);
        CHECK_MSG(s == BL_OK, "quantize %s: %s", methods[i].q, err.msg);
        if (s) continue;
        check_every_isa(dir, methods[i].q, 2);
        if (strcmp(methods[i].q, "rtn2") != 0) check_i8_close(dir, methods[i].q); /* rtn2: no signs */
    }
    bl_model_free(src);
}

/* The FP16 and int8 KV caches: the schedule (prompts through the blocked products, decode through
 * the grouped kernel, slots reused) batched == alone at every ISA level, and the logits close to
 * the f32 cache's but not equal. FP16 rounds each key and value with relative error ≤ 2⁻¹¹; int8
 * with absolute error ≤ max|block|/254, ≤ 0.4 % of the largest of its 32 values (measured:
 * ~1e-4 and ~2e-3 relative L2 on the logits), so 1e-2 leaves room for the errors' passage
 * through the layers while a wrong scale or code (errors of tens of percent) fails. */
static void test_kv_types(void) {
    REQUIRE(base_dir[0]);
    char dirs[2][256];
    REQUIRE(synth("kv", BL_DT_F32, dirs[0], sizeof dirs[0]));
    snprintf(dirs[1], sizeof dirs[1], "%s/onebit", base_dir); /* test_quantized_formats' */
    const bl_isa best = bl_cpu_best_isa();
    const bl_kv_type types[] = {BL_KV_F16, BL_KV_Q8};
    for (int d = 0; d < 2; d++)
        for (int ti = 0; ti < 2; ti++) {
            const bl_kv_type kv = types[ti];
            for (int isa = BL_ISA_REF; isa <= (int)best; isa++) {
                bl_model *m = load_kv(dirs[d], (bl_isa)isa, BL_TABLES_F32, kv);
                CHECK_MSG(m != NULL, "%s: cannot load", dirs[d]);
                if (!m) break;
                CHECK(m->kv_cache == kv);
                char what[64];
                snprintf(what, sizeof what, "%s/%s/kv %s", d ? "onebit" : "f32",
                         bl_isa_name((bl_isa)isa), bl_kv_cache_name(kv));
                CHECK_MSG(run_schedule(m, what) == 0, "%s", what);
                bl_model_free(m);
            }
            bl_model *m = load(dirs[d], BL_ISA_AUTO);
            REQUIRE(m);
            const int V = m->cfg.vocab_size;
            bl_model_free(m);
            float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
            REQUIRE(a && b);
            REQUIRE(prompt_logits_kv(dirs[d], BL_TABLES_F32, BL_KV_F32, a) &&
                    prompt_logits_kv(dirs[d], BL_TABLES_F32, kv, b));
            double d2 = 0, n2 = 0;
            for (int k = 0; k < V; k++)
                d2 += (double)(a[k] - b[k]) * (a[k] - b[k]), n2 += (double)a[k] * a[k];
            const double rel = sqrt(d2 / (n2 + 1e-30));
            printf("  %s, %s cache against f32: logits relative L2 %.3g\n", d ? "onebit" : "f32",
                   bl_kv_cache_name(kv), rel);
            CHECK_MSG(rel > 0 && rel < 1e-2, "%s: %s against f32 cache, logits relative L2 %.3g",
                      d ? "onebit" : "f32", bl_kv_cache_name(kv), rel);
            free(a), free(b);
        }
}

/* bl_state_slot_copy: a slot given the first 8 tokens of another (over a sequence of its own)
 * and then fed the same 3 tokens gives the logits of the original, bit for bit, with f32, FP16
 * and int8 caches (codes and scales copied); copies beyond the source's position or onto itself change nothing. */
static void test_slot_copy(void) {
    REQUIRE(base_dir[0]);
    char dir[256];
    REQUIRE(synth("copy", BL_DT_F32, dir, sizeof dir));
    for (int kv = BL_KV_F32; kv <= BL_KV_Q8; kv++) {
        bl_model *m = load_kv(dir, BL_ISA_AUTO, BL_TABLES_F32, (bl_kv_type)kv);
        REQUIRE(m);
        const int V = m->cfg.vocab_size;
        bl_state *st = NULL;
        bl_err err = {0};
        REQUIRE(bl_state_new_slots(m, 2, 40, 16, 2, &st, &err) == BL_OK);
        int32_t t[16];
        for (int i = 0; i < 16; i++) t[i] = token(7, i, V);
        float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
        REQUIRE(a && b);
        bl_seq_batch q[2] = {{0, t, 8, NULL, false}, {1, t + 8, 5, NULL, false}}; /* slot 1: another sequence */
        REQUIRE(bl_forward_batch(st, q, 2, &err) == BL_OK);
        bl_seq_batch rest = {0, t + 8, 3, a, false};
        REQUIRE(bl_forward_batch(st, &rest, 1, &err) == BL_OK);
        bl_state_slot_copy(st, 1, 0, 100); /* beyond slot 0's 11 tokens: nothing */
        bl_state_slot_copy(st, 0, 0, 4);   /* onto itself: nothing */
        CHECK(bl_state_slot_pos(st, 0) == 11 && bl_state_slot_pos(st, 1) == 5);
        bl_state_slot_copy(st, 1, 0, 8);
        CHECK(bl_state_slot_pos(st, 1) == 8);
        rest = (bl_seq_batch){1, t + 8, 3, b, false};
        REQUIRE(bl_forward_batch(st, &rest, 1, &err) == BL_OK);
        CHECK_MSG(memcmp(a, b, sizeof(float) * (size_t)V) == 0, "%s cache: copied prefix",
                  bl_kv_cache_name((bl_kv_type)kv));
        CHECK(bl_state_slot_pos(st, 1) == 11);
        free(a), free(b);
        bl_state_free(st);
        bl_model_free(m);
    }
}

/* all_logits: a sequence's every row of logits in a batched call (beside a decoding sequence
 * and a last-row-only one) equals bl_forward's all_logits for it alone, bit for bit. */
static void test_all_logits(void) {
    REQUIRE(base_dir[0]);
    char dir[256];
    REQUIRE(synth("all", BL_DT_F32, dir, sizeof dir));
    bl_model *m = load(dir, BL_ISA_AUTO);
    REQUIRE(m);
    const int V = m->cfg.vocab_size, N = 7;
    bl_state *st = NULL, *one = NULL;
    bl_err err = {0};
    REQUIRE(bl_state_new_slots(m, 3, 32, 16, 2, &st, &err) == BL_OK);
    REQUIRE(bl_state_new(m, 32, 16, 2, &one, &err) == BL_OK);
    int32_t t[16];
    for (int i = 0; i < 16; i++) t[i] = token(11, i, V);
    float *all = malloc(sizeof(float) * (size_t)(N * V)), *ref = malloc(sizeof(float) * (size_t)(N * V));
    float *l0 = malloc(sizeof(float) * (size_t)V), *l2 = malloc(sizeof(float) * (size_t)V);
    float *r0 = malloc(sizeof(float) * (size_t)V);
    REQUIRE(all && ref && l0 && l2 && r0);
    bl_seq_batch warm = {0, t + 8, 3, NULL, false};
    REQUIRE(bl_forward_batch(st, &warm, 1, &err) == BL_OK);
    bl_seq_batch q[3] = {{0, t + 11, 1, l0, false}, {1, t, N, all, true}, {2, t + 2, 4, l2, false}};
    REQUIRE(bl_forward_batch(st, q, 3, &err) == BL_OK);
    REQUIRE(bl_forward(one, t, N, ref, true, &err) == BL_OK);
    CHECK(memcmp(all, ref, sizeof(float) * (size_t)(N * V)) == 0);
    CHECK(bl_state_slot_pos(st, 1) == N);
    /* the other two got their last rows as before */
    bl_state_reset(one);
    REQUIRE(bl_forward(one, t + 8, 4, r0, false, &err) == BL_OK);
    CHECK(memcmp(l0, r0, sizeof(float) * (size_t)V) == 0);
    bl_state_reset(one);
    REQUIRE(bl_forward(one, t + 2, 4, r0, false, &err) == BL_OK);
    CHECK(memcmp(l2, r0, sizeof(float) * (size_t)V) == 0);
    free(all), free(ref), free(l0), free(l2), free(r0);
    bl_state_free(st);
    bl_state_free(one);
    bl_model_free(m);
}

static void test_bad_batches(void) {
    REQUIRE(base_dir[0]);
    char dir[256];
    REQUIRE(synth("bad", BL_DT_F32, dir, sizeof dir));
    bl_model *m = load(dir, BL_ISA_AUTO);
    REQUIRE(m);
    bl_state *st = NULL;
    bl_err err = {0};
    REQUIRE(bl_state_new_slots(m, 2, 8, 6, 0, &st, &err) == BL_OK);
    CHECK(bl_state_slots(st) == 2 && bl_state_max_batch(st) == 6);
    int32_t t[8] = {3, 4, 5, 6, 7, 8, 9, 10}, big = m->cfg.vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    bl_seq_batch dup[2] = {{0, t, 1, lg, false}, {0, t, 1, NULL, false}};
    err.msg[0] = 0;
    CHECK(bl_forward_batch(st, dup, 2, &err) == BL_ERR_ARG && strstr(err.msg, "twice"));
    bl_seq_batch range = {2, t, 1, lg, false};
    CHECK(bl_forward_batch(st, &range, 1, &err) == BL_ERR_ARG && strstr(err.msg, "slot 2"));
    bl_seq_batch rows[2] = {{0, t, 4, NULL, false}, {1, t, 3, lg, false}};
    CHECK(bl_forward_batch(st, rows, 2, &err) == BL_ERR_ARG && strstr(err.msg, "6 rows"));
    bl_seq_batch tok = {1, &big, 1, lg, false};
    CHECK(bl_forward_batch(st, &tok, 1, &err) == BL_ERR_ARG && strstr(err.msg, "out of range"));
    bl_seq_batch empty = {1, t, 0, lg, false};
    CHECK(bl_forward_batch(st, &empty, 1, &err) == BL_ERR_ARG);
    CHECK(bl_forward_batch(st, NULL, 0, &err) == BL_ERR_ARG);
    /* nothing of the refused calls reached the caches */
    CHECK(bl_state_slot_pos(st, 0) == 0 && bl_state_slot_pos(st, 1) == 0);
    bl_seq_batch fill[2] = {{0, t, 6, NULL, false}, {1, t, 0, NULL, false}};
    REQUIRE(bl_forward_batch(st, fill, 1, &err) == BL_OK);
    fill[0].n = 3; /* 6 + 3 > 8 */
    CHECK(bl_forward_batch(st, fill, 1, &err) == BL_ERR_ARG && strstr(err.msg, "context full"));
    CHECK(bl_state_slot_pos(st, 0) == 6 && bl_state_slot_pos(st, 1) == 0);
    bl_state_slot_truncate(st, 0, 0);
    CHECK(bl_state_slot_pos(st, 0) == 0);
    free(lg);
    bl_state_free(st);
    bl_model_free(m);
}

int main(void) {
    make_base();
    TEST_RUN(test_dense_formats);
    TEST_RUN(test_quantized_formats);
    TEST_RUN(test_kv_types); /* after test_quantized_formats: uses its onebit model */
    TEST_RUN(test_bad_batches);
    TEST_RUN(test_slot_copy);
    TEST_RUN(test_all_logits);
    if (base_dir[0]) rm_rf(base_dir);
    return test_summary();
}
