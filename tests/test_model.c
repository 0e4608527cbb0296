/* The model end to end: golden greedy decoding and logits of stories260K from all three
 * checkpoint forms, perplexity against an independent float64 forward pass, batched vs
 * token-by-token equivalence, and synthetic Qwen2/Qwen3/Llama-3 variants. */
#include <cjson/cJSON.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitllm/eval.h"
#include "bitllm/io.h"
#include "bitllm/model.h"
#include "ref_model.h"
#include "test.h"

#define S260 "models/stories260K/"

static const char *story =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball. She wanted to play with it, but it was too high. "
    "Lily asked her mom for help. Her mom smiled and said, \"Let's get it together!\" They "
    "jumped and laughed until the ball came down. Lily was very happy. The end.\n"
    "Tom had a small dog named Max. Max liked to run and bark at the birds. One morning, Max "
    "ran away into the woods. Tom was sad and looked everywhere. At last he found Max under a "
    "tree, sleeping in the sun. Tom hugged Max and they went home for lunch.\n";

typedef struct {
    int32_t tokens[64];
    int n;
    double logits[4][512];
    double mean_nll;
    int ok;
} reference;

static reference ref;

static void load_reference(void) {
    char *js;
    size_t len;
    if (bl_read_file(test_data_path(S260 "reference_greedy.json"), &js, &len, NULL)) return;
    cJSON *o = cJSON_Parse(js);
    free(js);
    cJSON *toks = cJSON_GetObjectItem(o, "tokens"), *lg = cJSON_GetObjectItem(o, "logits");
    ref.n = cJSON_GetArraySize(toks);
    for (int i = 0; i < ref.n && i < 64; i++) ref.tokens[i] = cJSON_GetArrayItem(toks, i)->valueint;
    for (int p = 0; p < 4; p++) {
        char k[8];
        snprintf(k, sizeof k, "%d", p);
        cJSON *a = cJSON_GetObjectItem(lg, k);
        for (int i = 0; i < 512; i++) ref.logits[p][i] = cJSON_GetArrayItem(a, i)->valuedouble;
    }
    ref.mean_nll = cJSON_GetObjectItem(o, "teacher_forced_mean_nll")->valuedouble;
    ref.ok = ref.n == 49;
    cJSON_Delete(o);
}

/* form 0 = gguf, 1 = llama2.c bin, 2 = hf directory */
static bl_model *load_form(int form) {
    char path[4096], tok[4096];
    const char *rel[] = {S260 "stories260K.gguf", S260 "stories260K.bin", S260 "hf"};
    snprintf(path, sizeof path, "%s", test_data_path(rel[form]));
    snprintf(tok, sizeof tok, "%s", test_data_path(S260 "tok512.bin"));
    bl_load_opts o = {.tokenizer_path = form == 0 ? NULL : tok};
    bl_model *m = NULL;
    bl_err err = {0};
    if (bl_model_load(path, &o, &m, &err) != BL_OK) {
        fprintf(stderr, "  load %s: %s\n", path, err.msg);
        return NULL;
    }
    return m;
}

static void test_greedy_and_logits_all_forms(void) {
    if (!ref.ok) SKIP("stories260K reference not found under %s", test_data_path(""));
    for (int form = 0; form < 3; form++) {
        bl_model *m = load_form(form);
        REQUIRE(m);
        CHECK(m->cfg.dim == 64 && m->cfg.n_layers == 5 && m->cfg.n_kv_heads == 4);
        bl_state *st;
        REQUIRE(bl_state_new(m, 64, 16, 0, &st, NULL) == BL_OK);
        float logits[4 * 512];
        /* teacher-forced logits at positions 0..3 in one batch */
        REQUIRE(bl_forward(st, ref.tokens, 4, logits, true, NULL) == BL_OK);
        double worst = 0;
        for (int p = 0; p < 4; p++)
            for (int i = 0; i < 512; i++) {
                double d = fabs(logits[p * 512 + i] - ref.logits[p][i]);
                if (d > worst) worst = d;
            }
        CHECK_MSG(worst <= 1e-4, "form %d: max |logit - ref| = %g", form, worst);
        /* greedy decoding of 48 tokens from BOS */
        bl_state_reset(st);
        int32_t tok = ref.tokens[0];
        int match = 1;
        for (int i = 1; i < ref.n; i++) {
            REQUIRE(bl_forward(st, &tok, 1, logits, false, NULL) == BL_OK);
            int best = 0;
            for (int v = 1; v < 512; v++)
                if (logits[v] > logits[best]) best = v;
            if (best != ref.tokens[i]) match = 0;
            tok = best;
        }
        CHECK_MSG(match, "form %d: greedy tokens differ from reference", form);
        bl_state_free(st);
        bl_model_free(m);
    }
}

static void test_teacher_forced_nll(void) {
    if (!ref.ok) SKIP("stories260K reference not found");
    bl_model *m = load_form(0);
    REQUIRE(m);
    bl_state *st;
    REQUIRE(bl_state_new(m, 64, 64, 0, &st, NULL) == BL_OK);
    float *lg = malloc(sizeof(float) * 512 * 64);
    REQUIRE(bl_forward(st, ref.tokens, ref.n - 1, lg, true, NULL) == BL_OK);
    double nll = 0;
    for (int i = 0; i < ref.n - 1; i++) nll -= bl_log_prob(lg + i * 512, 512, ref.tokens[i + 1]);
    CHECK_NEAR(nll / (ref.n - 1), ref.mean_nll, 1e-4 * ref.mean_nll);
    free(lg);
    bl_state_free(st);
    bl_model_free(m);
}

static void test_ppl_forms_and_float64(void) {
    if (!ref.ok) SKIP("stories260K not found");
    double ppl[3];
    int32_t *ids = NULL;
    size_t n = 0;
    for (int form = 0; form < 3; form++) {
        bl_model *m = load_form(form);
        REQUIRE(m && m->tok);
        int32_t *my;
        size_t nm;
        REQUIRE(bl_tokenizer_encode(m->tok, story, strlen(story), false, &my, &nm, NULL) == BL_OK);
        if (!ids) {
            ids = my;
            n = nm;
        } else {
            CHECK(nm == n && memcmp(my, ids, n * sizeof *ids) == 0);
            free(my);
        }
        bl_ppl_result r;
        bl_err err = {0};
        REQUIRE(bl_perplexity(m, ids, n, 64, 16, NULL, NULL, &r, &err) == BL_OK);
        CHECK(r.tokens == (int64_t)n && r.ctx == 64);
        ppl[form] = r.ppl;
        if (form == 1) {
            ref_model rm;
            REQUIRE(ref_model_init(&rm, &m->cfg, &m->tensors, 1, 64));
            long long scored;
            double nll = ref_ppl_nll(&rm, ids, n, 64, m->cfg.bos_id, &scored);
            double ref_ppl = exp(nll / scored);
            fprintf(stderr, "  ppl %.6f (float64 reference %.6f) over %zu tokens, ctx 64\n",
                    r.ppl, ref_ppl, n);
            CHECK(scored == (long long)n);
            CHECK_NEAR(r.ppl / ref_ppl, 1.0, 1e-4);
            ref_model_free(&rm);
        }
        bl_model_free(m);
    }
    CHECK_NEAR(ppl[0] / ppl[1], 1.0, 1e-5);
    CHECK_NEAR(ppl[2] / ppl[1], 1.0, 1e-5);
    free(ids);
}

static void test_batched_equals_sequential_and_threads(void) {
    if (!ref.ok) SKIP("stories260K not found");
    bl_model *m = load_form(2);
    REQUIRE(m);
    const int T = 40;
    int32_t toks[40];
    for (int i = 0; i < T; i++) toks[i] = ref.tokens[i % ref.n];
    float *a = malloc(sizeof(float) * 512 * T), *b = malloc(sizeof(float) * 512 * T),
          *c = malloc(sizeof(float) * 512 * T);
    bl_state *st;
    REQUIRE(bl_state_new(m, 64, 64, 0, &st, NULL) == BL_OK);
    REQUIRE(bl_forward(st, toks, T, a, true, NULL) == BL_OK);
    bl_state_reset(st);
    for (int i = 0; i < T; i++) REQUIRE(bl_forward(st, toks + i, 1, b + i * 512, false, NULL) == BL_OK);
    double worst = 0;
    for (int i = 0; i < 512 * T; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    CHECK_MSG(worst < 1e-4, "batched vs sequential max diff %g", worst);
    bl_state_free(st);
    REQUIRE(bl_state_new(m, 64, 64, 1, &st, NULL) == BL_OK);
    CHECK(bl_state_threads(st) == 1);
    REQUIRE(bl_forward(st, toks, T, c, true, NULL) == BL_OK);
    bl_state_free(st);
    REQUIRE(bl_state_new(m, 64, 64, 2, &st, NULL) == BL_OK);
    CHECK(bl_state_threads(st) == 2);
    REQUIRE(bl_forward(st, toks, T, a, true, NULL) == BL_OK);
    bl_state_free(st);
    CHECK_MSG(memcmp(a, c, sizeof(float) * 512 * T) == 0, "1 vs 2 threads differ");
    /* out-of-range tokens and a full context are errors, not crashes */
    REQUIRE(bl_state_new(m, 8, 4, 0, &st, NULL) == BL_OK);
    int32_t bad = 512;
    bl_err err = {0};
    CHECK(bl_forward(st, &bad, 1, a, false, &err) == BL_ERR_ARG && err.msg[0]);
    CHECK(bl_forward(st, toks, 9, a, false, &err) == BL_ERR_ARG);
    bl_state_free(st);
    free(a), free(b), free(c);
    bl_model_free(m);
}

/* ---- synthetic variants written as HF checkpoints ---- */

static void add_rand(bl_st_writer *w, bl_rng *rng, const char *name, int64_t r, int64_t c,
                     float scale, float offset, bl_dtype dt) {
    int64_t shape[2] = {r, c};
    size_t n = (size_t)(r * c);
    if (dt == BL_DT_F32) {
        float *d = malloc(n * 4);
        for (size_t i = 0; i < n; i++) d[i] = offset + scale * bl_rng_normal(rng);
        bl_st_writer_add(w, name, dt, c ? 2 : 1, shape[1] ? shape : &shape[0], d, n * 4, true, NULL);
        free(d);
    } else {
        uint16_t *d = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            float v = offset + scale * bl_rng_normal(rng);
            d[i] = dt == BL_DT_F16 ? bl_f32_to_f16(v) : bl_f32_to_bf16(v);
        }
        bl_st_writer_add(w, name, dt, c ? 2 : 1, shape, d, n * 2, true, NULL);
        free(d);
    }
}

static void add_vec(bl_st_writer *w, bl_rng *rng, const char *name, int64_t n, float scale,
                    float offset) {
    float *d = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) d[i] = offset + scale * bl_rng_normal(rng);
    bl_st_writer_add(w, name, BL_DT_F32, 1, &n, d, (size_t)n * 4, true, NULL);
    free(d);
}

static int write_synthetic(const char *dir, const char *config_json, const bl_config *c,
                           bl_dtype dt, int untied, uint64_t seed) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (bl_write_file_atomic(p, config_json, strlen(config_json), NULL)) return 0;
    bl_st_writer *w;
    if (bl_st_writer_new(&w, NULL)) return 0;
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    const int64_t D = c->dim, H = c->hidden_dim, hd = c->head_dim, qd = c->n_heads * hd,
                  kvd = c->n_kv_heads * hd, V = c->vocab_size;
    add_rand(w, &rng, "model.embed_tokens.weight", V, D, 1.0f, 0, dt);
    add_vec(w, &rng, "model.norm.weight", D, 0.1f, 1.0f);
    if (untied) add_rand(w, &rng, "lm_head.weight", V, D, 0.3f, 0, dt);
    for (int l = 0; l < c->n_layers; l++) {
        char n[128];
#define NM(s) (snprintf(n, sizeof n, "model.layers.%d.%s", l, s), n)
        add_vec(w, &rng, NM("input_layernorm.weight"), D, 0.1f, 1.0f);
        add_vec(w, &rng, NM("post_attention_layernorm.weight"), D, 0.1f, 1.0f);
        add_rand(w, &rng, NM("self_attn.q_proj.weight"), qd, D, 0.3f, 0, dt);
        add_rand(w, &rng, NM("self_attn.k_proj.weight"), kvd, D, 0.3f, 0, dt);
        add_rand(w, &rng, NM("self_attn.v_proj.weight"), kvd, D, 0.3f, 0, dt);
        add_rand(w, &rng, NM("self_attn.o_proj.weight"), D, qd, 0.2f, 0, dt);
        add_rand(w, &rng, NM("mlp.gate_proj.weight"), H, D, 0.3f, 0, dt);
        add_rand(w, &rng, NM("mlp.up_proj.weight"), H, D, 0.3f, 0, dt);
        add_rand(w, &rng, NM("mlp.down_proj.weight"), D, H, 0.2f, 0, dt);
        if (c->qkv_bias) {
            add_vec(w, &rng, NM("self_attn.q_proj.bias"), qd, 0.2f, 0);
            add_vec(w, &rng, NM("self_attn.k_proj.bias"), kvd, 0.2f, 0);
            add_vec(w, &rng, NM("self_attn.v_proj.bias"), kvd, 0.2f, 0);
        }
        if (c->qk_norm) {
            add_vec(w, &rng, NM("self_attn.q_norm.weight"), hd, 0.1f, 1.0f);
            add_vec(w, &rng, NM("self_attn.k_norm.weight"), hd, 0.1f, 1.0f);
        }
#undef NM
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    int ok = bl_st_writer_finish(w, p, NULL) == BL_OK;
    bl_st_writer_free(w);
    return ok;
}

static void check_variant(const char *name, const char *json, bl_dtype dt, int untied) {
    char dir[] = "/tmp/bitllm-model-XXXXXX";
    REQUIRE(mkdtemp(dir));
    bl_config want;
    REQUIRE(bl_config_from_hf_json(json, name, &want, NULL) == BL_OK);
    REQUIRE(write_synthetic(dir, json, &want, dt, untied, 1234));
    bl_model *m = NULL;
    bl_err err = {0};
    bl_status s = bl_model_load(dir, NULL, &m, &err);
    CHECK_MSG(s == BL_OK, "%s: %s", name, err.msg);
    if (s == BL_OK) {
        ref_model rm;
        REQUIRE(ref_model_init(&rm, &m->cfg, &m->tensors, 0, 32));
        const int T = 12, V = m->cfg.vocab_size;
        int32_t toks[12];
        for (int i = 0; i < T; i++) toks[i] = (i * 7 + 3) % V;
        bl_state *st;
        REQUIRE(bl_state_new(m, 32, 8, 0, &st, NULL) == BL_OK);
        float *lg = malloc(sizeof(float) * (size_t)V * T);
        double *rl = malloc(sizeof(double) * (size_t)V);
        REQUIRE(bl_forward(st, toks, T, lg, true, NULL) == BL_OK);
        double worst = 0, scale = 0;
        for (int t = 0; t < T; t++) {
            ref_model_step(&rm, toks[t], t, rl);
            for (int i = 0; i < V; i++) {
                worst = fmax(worst, fabs(lg[(size_t)t * V + i] - rl[i]));
                scale = fmax(scale, fabs(rl[i]));
            }
        }
        CHECK_MSG(worst <= 1e-4 * fmax(1.0, scale), "%s: max logit diff %g (scale %g)", name,
                  worst, scale);
        free(lg), free(rl);
        bl_state_free(st);
        ref_model_free(&rm);
        bl_model_free(m);
    }
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_arch_variants(void) {
    check_variant("qwen2 (qkv bias, GQA, untied, f32)",
                  "{\"model_type\":\"qwen2\",\"hidden_size\":32,\"intermediate_size\":48,"
                  "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                  "\"vocab_size\":97,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-6,"
                  "\"rope_theta\":1000000.0,\"tie_word_embeddings\":false,\"bos_token_id\":1,"
                  "\"eos_token_id\":2}",
                  BL_DT_F32, 1);
    check_variant("qwen3 (q/k norm, head_dim != dim/heads, tied, bf16)",
                  "{\"model_type\":\"qwen3\",\"hidden_size\":32,\"intermediate_size\":40,"
                  "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":1,"
                  "\"head_dim\":16,\"vocab_size\":61,\"max_position_embeddings\":64,"
                  "\"rms_norm_eps\":1e-6,\"rope_theta\":1000000.0,\"tie_word_embeddings\":true}",
                  BL_DT_BF16, 0);
    check_variant("llama3 (rope scaling, f16)",
                  "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":96,"
                  "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":4,"
                  "\"vocab_size\":50,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5,"
                  "\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\","
                  "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                  "\"original_max_position_embeddings\":16},\"tie_word_embeddings\":false}",
                  BL_DT_F16, 1);
    check_variant("llama (linear rope scaling, factor 4)",
                  "{\"model_type\":\"llama\",\"hidden_size\":32,\"intermediate_size\":48,"
                  "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                  "\"vocab_size\":50,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5,"
                  "\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0}}",
                  BL_DT_F32, 1);
    check_variant("mistral (GQA)",
                  "{\"model_type\":\"mistral\",\"hidden_size\":32,\"intermediate_size\":64,"
                  "\"num_hidden_layers\":1,\"num_attention_heads\":8,\"num_key_value_heads\":2,"
                  "\"vocab_size\":40,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5}",
                  BL_DT_F32, 1);
}

/* Mistral's sliding window (7 positions) against the float64 reference, which masks as Hugging
 * Face does (key t seen by query p when t > p - 7): a 150-token prefill (three query blocks, the
 * later ones starting inside the window), then decoding one token at a time after a 70-token
 * prefill — with f32 keys and values (1e-4, as the other variants) and with the FP16 and int8
 * caches, whose decode kernels read the window's rows in place (their rounding: 2e-2). The window
 * must matter: the unwindowed model differs by more than 1e-2. */
static void test_sliding_window(void) {
    static const char *json =
        "{\"model_type\":\"mistral\",\"hidden_size\":32,\"intermediate_size\":48,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
        "\"vocab_size\":40,\"max_position_embeddings\":160,\"rms_norm_eps\":1e-5,"
        "\"sliding_window\":7}";
    char dir[] = "/tmp/bitllm-swa-XXXXXX";
    REQUIRE(mkdtemp(dir));
    bl_config cfg;
    REQUIRE(bl_config_from_hf_json(json, "swa", &cfg, NULL) == BL_OK);
    CHECK(cfg.sliding_window == 7);
    REQUIRE(write_synthetic(dir, json, &cfg, BL_DT_F32, 1, 99));
    const int T = 150, P0 = 70, ND = 10;
    int32_t toks[150];
    for (int i = 0; i < T; i++) toks[i] = (i * 13 + 5) % cfg.vocab_size;
    const int V = cfg.vocab_size;
    double *want = malloc(sizeof(double) * (size_t)V * T), *plain = malloc(sizeof(double) * V);
    ref_model rm, rfull;
    {
        bl_model *m = NULL;
        REQUIRE(bl_model_load(dir, NULL, &m, NULL) == BL_OK);
        REQUIRE(ref_model_init(&rm, &m->cfg, &m->tensors, 0, T));
        bl_config nowin = m->cfg;
        nowin.sliding_window = 0;
        REQUIRE(ref_model_init(&rfull, &nowin, &m->tensors, 0, T));
        double differs = 0;
        for (int t = 0; t < T; t++) {
            ref_model_step(&rm, toks[t], t, want + (size_t)t * V);
            ref_model_step(&rfull, toks[t], t, plain);
            for (int i = 0; i < V; i++) differs = fmax(differs, fabs(plain[i] - want[(size_t)t * V + i]));
        }
        CHECK_MSG(differs > 1e-2, "the window changes nothing (%g)", differs);
        ref_model_free(&rm);
        ref_model_free(&rfull);
        bl_model_free(m);
    }
    const bl_kv_type types[] = {BL_KV_F32, BL_KV_F16, BL_KV_Q8};
    for (int k = 0; k < 3; k++) {
        bl_load_opts lo = {.kv_cache = types[k]};
        bl_model *m = NULL;
        bl_err err = {0};
        const bl_status ls = bl_model_load(dir, &lo, &m, &err);
        CHECK_MSG(ls == BL_OK, "%s", err.msg);
        REQUIRE(ls == BL_OK);
        const double tol = types[k] == BL_KV_F32 ? 1e-4 : 2e-2;
        float *lg = malloc(sizeof(float) * (size_t)V * T);
        bl_state *st;
        double worst = 0, scale = 0;
        if (types[k] == BL_KV_F32) { /* the whole prefill in one call */
            REQUIRE(bl_state_new(m, T, T, 0, &st, NULL) == BL_OK);
            REQUIRE(bl_forward(st, toks, T, lg, true, NULL) == BL_OK);
            for (size_t i = 0; i < (size_t)V * T; i++) {
                worst = fmax(worst, fabs(lg[i] - want[i]));
                scale = fmax(scale, fabs(want[i]));
            }
            CHECK_MSG(worst <= tol * fmax(1.0, scale), "prefill of %d: max logit diff %g", T, worst);
            bl_state_free(st);
        }
        REQUIRE(bl_state_new(m, T, T, 0, &st, NULL) == BL_OK);
        REQUIRE(bl_forward(st, toks, P0, lg, true, NULL) == BL_OK);
        worst = scale = 0;
        for (int t = P0; t < P0 + ND; t++) {
            REQUIRE(bl_forward(st, toks + t, 1, lg, false, NULL) == BL_OK);
            for (int i = 0; i < V; i++) {
                worst = fmax(worst, fabs(lg[i] - want[(size_t)t * V + i]));
                scale = fmax(scale, fabs(want[(size_t)t * V + i]));
            }
        }
        CHECK_MSG(worst <= tol * fmax(1.0, scale), "%s cache, decode after %d: max logit diff %g "
                  "(scale %g)", bl_kv_cache_name(types[k]), P0, worst, scale);
        bl_state_free(st);
        free(lg);
        bl_model_free(m);
    }
    free(want), free(plain);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_bad_configs(void) {
    bl_config c;
    bl_err err = {0};
    CHECK(bl_config_from_hf_json("[1,2]", "x.json", &c, &err) == BL_ERR_FORMAT);
    CHECK(bl_config_from_hf_json("{\"model_type\":\"gpt2\"}", "x.json", &c, &err) ==
          BL_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "x.json") != NULL);
    CHECK(bl_config_from_hf_json("{\"model_type\":\"llama\",\"hidden_size\":64}", "x", &c, &err) ==
          BL_ERR_FORMAT);
    CHECK(bl_config_from_hf_json(
              "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":8,"
              "\"num_hidden_layers\":1,\"num_attention_heads\":3,\"num_key_value_heads\":2,"
              "\"vocab_size\":10}",
              "x", &c, &err) == BL_ERR_FORMAT);
    CHECK(bl_config_from_hf_json(
              "{\"model_type\":\"llama\",\"hidden_size\":-64,\"intermediate_size\":8,"
              "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10}",
              "x", &c, &err) == BL_ERR_FORMAT);
}

int main(void) {
    load_reference();
    TEST_RUN(test_greedy_and_logits_all_forms);
    TEST_RUN(test_teacher_forced_nll);
    TEST_RUN(test_ppl_forms_and_float64);
    TEST_RUN(test_batched_equals_sequential_and_threads);
    TEST_RUN(test_arch_variants);
    TEST_RUN(test_sliding_window);
    TEST_RUN(test_bad_configs);
    return test_summary();
}
