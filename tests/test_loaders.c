/* What the loaders do with model and data files that are wrong: config.json fields of the wrong
 * type or out of range, checkpoints with fewer or more tensors than the configuration, files of
 * another format than their name says, non-finite weights, tokenizers for another vocabulary, a
 * shard index that misplaces a tensor, and task files with trailing bytes or absurd values. Each
 * must be refused with a message naming the file and the problem (or, for a misnamed file, load
 * by its content). The good inputs are the seed files of fuzz/corpus (tiny, made by
 * fuzz/make_seeds.py); the bad ones are made from them here. */
#include <sys/stat.h>
#include <unistd.h>

#include "bitllm/model.h"
#include "bitllm/tasks.h"
#include "test.h"

static char tmp[64];

static const char *tmp_path(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmp, name);
    return p[k];
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "  cannot write %s\n", path);
        return;
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

/* A seed file of fuzz/corpus/<target>/<name> (malloc'ed, NUL-terminated). */
static unsigned char *read_seed(const char *target, const char *name, size_t *len) {
    char p[4096];
    snprintf(p, sizeof p, "%s/fuzz/corpus/%s/%s", BITLLM_SOURCE_DIR, target, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)n + 1);
    *len = fread(d, 1, (size_t)n, f);
    d[*len] = 0;
    fclose(f);
    return d;
}

/* The tiny model of fuzz/corpus/model_dir/ok-llama-f32 (dim 16, 1 layer, vocab 32): its
 * config.json text and its tensors (views into *keep, which the caller frees). */
static char *seed_model(bl_tensor_set *ts, unsigned char **keep) {
    size_t len;
    unsigned char *d = read_seed("model_dir", "ok-llama-f32", &len);
    *keep = d;
    if (!d) return NULL;
    uint32_t clen;
    memcpy(&clen, d, 4);
    char *cfg = malloc(clen + 1);
    memcpy(cfg, d + 4, clen);
    cfg[clen] = 0;
    memset(ts, 0, sizeof *ts);
    write_file(tmp_path("seed.safetensors"), d + 4 + clen, len - 4 - clen);
    if (bl_safetensors_open(tmp_path("seed.safetensors"), ts, NULL, NULL) != BL_OK) {
        free(cfg);
        return NULL;
    }
    return cfg;
}

/* Replaces the first occurrence of from in s (malloc'ed result). */
static char *replace(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) {
        fprintf(stderr, "  '%s' not in the text\n", from);
        return strdup(s);
    }
    size_t a = (size_t)(at - s), n = strlen(s) - strlen(from) + strlen(to);
    char *r = malloc(n + 1);
    memcpy(r, s, a);
    strcpy(r + a, to);
    strcat(r, at + strlen(from));
    return r;
}

/* Writes dir/config.json and dir/model.safetensors: the tensors of ts, with `drop` left out (may
 * be NULL) and `extra` tensors added (copies of `like` under new names); poke, if non-NULL,
 * overwrites element index of tensor poke_name (F32) with value. */
typedef struct {
    const char *drop;
    const char *extra[8];
    const char *like;
    int64_t extra_shape[2]; /* 0: like's shape */
    const char *poke_name;
    int64_t poke_index;
    float poke_value;
} edit;

static void write_model(const char *dir, const char *cfg, const bl_tensor_set *ts, const edit *e) {
    mkdir(dir, 0700);
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, cfg);
    bl_st_writer *w;
    if (bl_st_writer_new(&w, NULL) != BL_OK) return;
    float *poked = NULL;
    for (int i = 0; i < ts->n; i++) {
        const bl_tensor *t = &ts->t[i];
        if (e && e->drop && strcmp(t->name, e->drop) == 0) continue;
        const void *data = t->data;
        if (e && e->poke_name && strcmp(t->name, e->poke_name) == 0) {
            poked = malloc(t->nbytes);
            memcpy(poked, t->data, t->nbytes);
            poked[e->poke_index] = e->poke_value;
            data = poked;
        }
        bl_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, data, t->nbytes, true, NULL);
    }
    for (int k = 0; e && k < 8 && e->extra[k]; k++) {
        const bl_tensor *t = bl_tensor_set_find(ts, e->like);
        int64_t shape[2] = {t->shape[0], t->ndim > 1 ? t->shape[1] : 0};
        int ndim = t->ndim;
        size_t nbytes = t->nbytes;
        if (e->extra_shape[0]) {
            shape[0] = e->extra_shape[0], shape[1] = e->extra_shape[1];
            ndim = shape[1] ? 2 : 1;
            nbytes = (size_t)(shape[0] * (shape[1] ? shape[1] : 1)) * 4;
        }
        void *z = calloc(1, nbytes);
        bl_st_writer_add(w, e->extra[k], BL_DT_F32, ndim, shape, z, nbytes, true, NULL);
        free(z);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    bl_st_writer_finish(w, p, NULL);
    bl_st_writer_free(w);
    free(poked);
}

/* Loads path; expects failure with every one of the texts in the message (NULL-terminated). */
#define EXPECT_LOAD_FAIL(path, opts, ...)                                                        \
    do {                                                                                         \
        bl_model *m_ = NULL;                                                                     \
        bl_err e_ = {0};                                                                         \
        bl_status s_ = bl_model_load(path, opts, &m_, &e_);                                      \
        const char *want_[] = {__VA_ARGS__, NULL};                                               \
        bool ok_ = s_ != BL_OK && m_ == NULL;                                                    \
        for (int i_ = 0; want_[i_]; i_++) ok_ = ok_ && strstr(e_.msg, want_[i_]) != NULL;       \
        CHECK_MSG(ok_, "%s: status %d, message: %s", path, (int)s_, e_.msg);                    \
        bl_model_free(m_);                                                                       \
    } while (0)

static bl_model *load_ok(const char *path, const bl_load_opts *opts) {
    bl_model *m = NULL;
    bl_err err = {0};
    bl_status s = bl_model_load(path, opts, &m, &err);
    CHECK_MSG(s == BL_OK, "%s: %s", path, err.msg);
    return m;
}

static void config_case(const char *base, const char *from, const char *to, const char *want) {
    char *j = replace(base, from, to);
    bl_config c;
    bl_err err = {0};
    bl_status s = bl_config_from_hf_json(j, "dir/config.json", &c, &err);
    CHECK_MSG(s != BL_OK && strstr(err.msg, "dir/config.json") && strstr(err.msg, want),
              "%s -> %s: status %d, message: %s", from, to, (int)s, err.msg);
    free(j);
}

static void test_config_fields(void) {
    size_t len;
    char *base = (char *)read_seed("config", "ok-llama", &len);
    REQUIRE(base);
    bl_config c;
    bl_err err = {0};
    REQUIRE(bl_config_from_hf_json(base, "config.json", &c, &err) == BL_OK);
    /* wrong types: never replaced by a default */
    config_case(base, "\"hidden_size\": 16", "\"hidden_size\": \"16\"",
                "\"hidden_size\" must be an integer, got the string \"16\"");
    config_case(base, "\"num_hidden_layers\": 1", "\"num_hidden_layers\": 1.5",
                "\"num_hidden_layers\" must be an integer, got 1.5");
    config_case(base, "\"vocab_size\": 32", "\"vocab_size\": true", "\"vocab_size\" must be");
    config_case(base, "\"num_key_value_heads\": 1", "\"num_key_value_heads\": [1]",
                "\"num_key_value_heads\" must be an integer, got an array");
    config_case(base, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": \"1e-5\"", "\"rms_norm_eps\"");
    config_case(base, "\"rope_theta\": 10000.0", "\"rope_theta\": {}", "\"rope_theta\"");
    config_case(base, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": \"yes\"",
                "\"tie_word_embeddings\" must be true or false");
    config_case(base, "\"eos_token_id\": 2", "\"eos_token_id\": [\"2\"]", "\"eos_token_id\"");
    config_case(base, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act");
    config_case(base, "\"hidden_act\": \"silu\"", "\"rope_scaling\": \"llama3\"",
                "\"rope_scaling\" must be an object");
    config_case(base, "\"hidden_act\": \"silu\"",
                "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": \"8\"}",
                "\"rope_scaling.factor\" must be a finite number");
    config_case(base, "\"hidden_act\": \"silu\"", "\"rope_scaling\": {\"rope_type\": \"yarn\"}",
                "rope_scaling type \"yarn\"");
    /* sliding windows: Mistral's must be positive; Qwen's layer-dependent one is refused; Qwen
     * without it and LLaMA ignore the field, as Hugging Face's classes do */
    {
        char *mis = replace(base, "\"model_type\": \"llama\"", "\"model_type\": \"mistral\"");
        char *qw = replace(base, "\"model_type\": \"llama\"", "\"model_type\": \"qwen2\"");
        config_case(mis, "\"hidden_act\": \"silu\"", "\"sliding_window\": 0",
                    "\"sliding_window\" = 0 must be positive");
        config_case(qw, "\"hidden_act\": \"silu\"",
                    "\"use_sliding_window\": true, \"sliding_window\": 8",
                    "\"use_sliding_window\": true (a window on some layers) is not supported");
        const struct { const char *base; int want; } ok[] = {{mis, 8}, {qw, 0}, {base, 0}};
        for (int i = 0; i < 3; i++) {
            char *j = replace(ok[i].base, "\"hidden_act\": \"silu\"",
                              "\"use_sliding_window\": false, \"sliding_window\": 8");
            if (i == 0) { /* (Mistral has no use_sliding_window) */
                free(j);
                j = replace(ok[i].base, "\"hidden_act\": \"silu\"", "\"sliding_window\": 8");
            }
            bl_config w;
            CHECK(bl_config_from_hf_json(j, "config.json", &w, &err) == BL_OK &&
                  w.sliding_window == ok[i].want);
            free(j);
        }
        free(mis);
        free(qw);
    }
    config_case(base, "\"hidden_act\": \"silu\"", "\"rope_scaling\": {\"rope_type\": \"linear\"}",
                "rope_scaling of type \"linear\" has no \"factor\"");
    config_case(base, "\"hidden_act\": \"silu\"",
                "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": -2}",
                "linear rope scaling factor must be a positive number (got -2)");
    /* zero, negative, absurd and inconsistent sizes, named */
    config_case(base, "\"hidden_size\": 16", "\"hidden_size\": 0", "hidden_size = 0 is out of range");
    config_case(base, "\"intermediate_size\": 32", "\"intermediate_size\": -32",
                "intermediate_size = -32 is out of range");
    config_case(base, "\"intermediate_size\": 32", "\"intermediate_size\": 1e9",
                "intermediate_size = 1000000000 is out of range");
    config_case(base, "\"num_hidden_layers\": 1", "\"num_hidden_layers\": 1e12",
                "\"num_hidden_layers\" must be an integer");
    config_case(base, "\"num_attention_heads\": 2", "\"num_attention_heads\": 3",
                "hidden_size = 16 is not a multiple of num_attention_heads = 3");
    config_case(base, "\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3",
                "num_attention_heads = 2 is not a multiple of num_key_value_heads = 3");
    config_case(base, "\"num_key_value_heads\": 1", "\"num_key_value_heads\": 1, \"head_dim\": 7",
                "head_dim = 7 must be even");
    config_case(base, "\"bos_token_id\": 1", "\"bos_token_id\": 32",
                "bos_token_id = 32 is not a token id");
    config_case(base, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", "rms_norm_eps = 0");
    /* missing required fields are all named; bytes after the object are an error */
    char *a = replace(base, "\"hidden_size\": 16,", "");
    config_case(a, "\"vocab_size\": 32,", "", "missing required fields hidden_size, vocab_size");
    free(a);
    config_case(base, "\"model_type\": \"llama\"", "\"model_type\": 7",
                "\"model_type\" must be a string");
    size_t n = strlen(base);
    char *twice = malloc(2 * n + 1);
    memcpy(twice, base, n);
    memcpy(twice + n, base, n + 1);
    CHECK(bl_config_from_hf_json(twice, "c.json", &c, &err) == BL_ERR_FORMAT &&
          strstr(err.msg, "c.json: not valid JSON (error at byte"));
    free(twice);
    /* what stays accepted: null as "absent" (HF writes it), an integral float, a list of eos */
    char *ok = replace(base, "\"num_key_value_heads\": 1", "\"num_key_value_heads\": null");
    CHECK(bl_config_from_hf_json(ok, "c.json", &c, &err) == BL_OK && c.n_kv_heads == 2);
    free(ok);
    ok = replace(base, "\"max_position_embeddings\": 64", "\"max_position_embeddings\": 64.0");
    CHECK(bl_config_from_hf_json(ok, "c.json", &c, &err) == BL_OK && c.max_seq == 64);
    free(ok);
    ok = replace(base, "\"eos_token_id\": 2", "\"eos_token_id\": [2, 3]");
    CHECK(bl_config_from_hf_json(ok, "c.json", &c, &err) == BL_OK && c.eos_id == 2);
    free(ok);
    free(base);
}

static void test_checkpoint_matches_config(void) {
    bl_tensor_set ts;
    unsigned char *keep;
    char *cfg = seed_model(&ts, &keep);
    REQUIRE(cfg);
    const char *dir = tmp_path("m");
    write_model(dir, cfg, &ts, NULL);
    bl_model *m = load_ok(dir, NULL);
    bl_model_free(m);
    /* the config promises 2 layers, the checkpoint has 1: the first missing tensor, the file
     * and the layer count are named */
    char *two = replace(cfg, "\"num_hidden_layers\": 1", "\"num_hidden_layers\": 2");
    write_model(dir, two, &ts, NULL);
    EXPECT_LOAD_FAIL(dir, NULL, "model.safetensors", "missing tensor model.layers.1.input_layernorm.weight",
                     "num_hidden_layers = 2");
    free(two);
    /* one layer configured, a second one stored: refused, not silently dropped */
    edit more = {.extra = {"model.layers.1.input_layernorm.weight"},
                 .like = "model.layers.0.input_layernorm.weight"};
    write_model(dir, cfg, &ts, &more);
    EXPECT_LOAD_FAIL(dir, NULL, "model.safetensors", "model.layers.1.input_layernorm.weight",
                     "belongs to layer 1", "num_hidden_layers = 1");
    /* a part the configured architecture does not have (a q bias on a model without
     * attention_bias) would be ignored: refused */
    edit bias = {.extra = {"model.layers.0.self_attn.q_proj.bias"},
                 .like = "model.layers.0.input_layernorm.weight"};
    write_model(dir, cfg, &ts, &bias);
    EXPECT_LOAD_FAIL(dir, NULL, "model.layers.0.self_attn.q_proj.bias", "not part of the model");
    /* a missing and a mis-shaped tensor, named with the file */
    edit drop = {.drop = "model.layers.0.mlp.up_proj.weight"};
    write_model(dir, cfg, &ts, &drop);
    EXPECT_LOAD_FAIL(dir, NULL, "model.safetensors", "missing tensor model.layers.0.mlp.up_proj.weight");
    edit shape = {.drop = "model.layers.0.self_attn.k_proj.weight",
                  .extra = {"model.layers.0.self_attn.k_proj.weight"},
                  .like = "model.layers.0.self_attn.k_proj.weight", .extra_shape = {16, 8}};
    write_model(dir, cfg, &ts, &shape);
    EXPECT_LOAD_FAIL(dir, NULL, "model.safetensors", "model.layers.0.self_attn.k_proj.weight",
                     "[16, 8]", "expected a float matrix [8, 16]");
    /* an untied config needs its output head */
    char *untied = replace(cfg, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    write_model(dir, untied, &ts, NULL);
    EXPECT_LOAD_FAIL(dir, NULL, "missing tensor lm_head.weight", "not tied");
    free(untied);
    /* a quantization_config entry for a layer the model does not have */
    char *q = replace(cfg, "\"hidden_act\": \"silu\"",
                      "\"hidden_act\": \"silu\", \"quantization_config\": {\"method\": \"dbf\", "
                      "\"layers\": {\"model.layers.3.self_attn.q_proj\": {\"format\": \"dbf\", "
                      "\"mid\": 4}}}");
    write_model(dir, q, &ts, NULL);
    EXPECT_LOAD_FAIL(dir, NULL, "config.json", "model.layers.3.self_attn.q_proj",
                     "not a projection of this 1-layer model");
    free(q);
    q = replace(cfg, "\"hidden_act\": \"silu\"",
                "\"hidden_act\": \"silu\", \"quantization_config\": {\"method\": \"dbf\", "
                "\"layers\": {\"model.layers.0.self_attn.q_proj\": {\"format\": \"dbf\", "
                "\"mid\": \"4\"}}}");
    write_model(dir, q, &ts, NULL);
    EXPECT_LOAD_FAIL(dir, NULL, "config.json", "model.layers.0.self_attn.q_proj", "\"mid\" must be");
    free(q);
    bl_tensor_set_free(&ts);
    free(keep);
    free(cfg);
}

static void test_nonfinite_weights(void) {
    bl_tensor_set ts;
    unsigned char *keep;
    char *cfg = seed_model(&ts, &keep);
    REQUIRE(cfg);
    const char *dir = tmp_path("nan");
    edit e = {.poke_name = "model.norm.weight", .poke_index = 5, .poke_value = NAN};
    write_model(dir, cfg, &ts, &e);
    EXPECT_LOAD_FAIL(dir, NULL, "nan/model.safetensors", "model.norm.weight",
                     "non-finite value (nan) at element 5");
    e = (edit){.poke_name = "model.layers.0.mlp.down_proj.weight", .poke_index = 3 * 32 + 7,
               .poke_value = -INFINITY};
    write_model(dir, cfg, &ts, &e);
    EXPECT_LOAD_FAIL(dir, NULL, "nan/model.safetensors", "model.layers.0.mlp.down_proj.weight",
                     "non-finite value (-inf) at row 3, column 7");
    bl_tensor_set_free(&ts);
    free(keep);
    free(cfg);
}

static void copy_seed(const char *target, const char *name, const char *to, size_t skip) {
    size_t len;
    unsigned char *d = read_seed(target, name, &len);
    if (d) write_file(to, d + skip, len - skip);
    CHECK_MSG(d != NULL, "no seed %s/%s", target, name);
    free(d);
}

static void test_format_by_content(void) {
    /* a GGUF named .bin and a llama2.c checkpoint named .gguf load as what they are */
    copy_seed("gguf", "ok-llama-f32", tmp_path("gguf-renamed.bin"), 0);
    bl_model *m = load_ok(tmp_path("gguf-renamed.bin"), NULL);
    CHECK(m && m->source == BL_SRC_GGUF && m->tok);
    bl_model_free(m);
    copy_seed("llama2c", "ok-v1", tmp_path("l2c-renamed.gguf"), 0);
    m = load_ok(tmp_path("l2c-renamed.gguf"), NULL);
    CHECK(m && m->source == BL_SRC_LLAMA2C);
    bl_model_free(m);
    /* files of another kind: the message names the expected format and what the file is */
    copy_seed("config", "ok-llama", tmp_path("config.bin"), 0);
    EXPECT_LOAD_FAIL(tmp_path("config.bin"), NULL, "config.bin: not a llama2.c checkpoint",
                     "a JSON file?");
    copy_seed("safetensors", "ok-model", tmp_path("weights.bin"), 0);
    EXPECT_LOAD_FAIL(tmp_path("weights.bin"), NULL, "weights.bin: a safetensors file");
    copy_seed("tokenizer_bin", "ok-32", tmp_path("tok.bin"), 2);
    EXPECT_LOAD_FAIL(tmp_path("tok.bin"), NULL, "tok.bin: not a llama2.c checkpoint",
                     "llama2.c tokenizer.bin");
    write_text(tmp_path("junk.gguf"), "\x7f" "ELF and more bytes that are no model at all");
    EXPECT_LOAD_FAIL(tmp_path("junk.gguf"), NULL, "junk.gguf: not a GGUF file",
                     "starts with bytes 7f 45 4c 46");
}

static void test_tokenizer_fits_model(void) {
    /* the llama2.c seed has 32 rows; tokenizer.bin seeds are prefixed by a u16 vocab size */
    copy_seed("llama2c", "ok-v1", tmp_path("m32.bin"), 0);
    copy_seed("tokenizer_bin", "ok-32", tmp_path("tok32.bin"), 2);
    bl_load_opts o = {.tokenizer_path = tmp_path("tok32.bin")};
    bl_model *m = load_ok(tmp_path("m32.bin"), &o);
    CHECK(m && m->tok && bl_tokenizer_vocab_size(m->tok) == 32);
    bl_model_free(m);
    /* one token more or fewer than the model's vocabulary: a tokenizer for another model */
    size_t len;
    unsigned char *d = read_seed("tokenizer_bin", "ok-32", &len);
    REQUIRE(d);
    unsigned char *more = malloc(len + 16);
    memcpy(more, d + 2, len - 2);
    memcpy(more + len - 2, "\0\0\0\0\3\0\0\0xyz", 11); /* score 0, length 3, "xyz" */
    write_file(tmp_path("tok33.bin"), more, len - 2 + 11);
    o.tokenizer_path = tmp_path("tok33.bin");
    EXPECT_LOAD_FAIL(tmp_path("m32.bin"), &o, "tok33.bin: holds 33 tokens but the model's "
                     "vocabulary has 32");
    size_t cut = len - 2 - (8 + 2); /* the last token is " t": 8 + 2 bytes */
    write_file(tmp_path("tok31.bin"), d + 2, cut);
    o.tokenizer_path = tmp_path("tok31.bin");
    EXPECT_LOAD_FAIL(tmp_path("m32.bin"), &o, "tok31.bin: holds 31 tokens but the model's "
                     "vocabulary has 32");
    free(more);
    free(d);
    /* a tokenizer.json with ids beyond the model's rows */
    copy_seed("tokenizer_json", "ok-bytelevel", tmp_path("tokenizer.json"), 0);
    o.tokenizer_path = tmp_path("tokenizer.json");
    EXPECT_LOAD_FAIL(tmp_path("m32.bin"), &o, "tokenizer.json: the tokenizer has 262 tokens",
                     "m32.bin only 32 embedding rows");
    /* and a model with far more rows than the tokenizer has tokens (more than padding) */
    copy_seed("tokenizer_json", "ok-metaspace", tmp_path("small.json"), 0);
    o.tokenizer_path = tmp_path("small.json");
    EXPECT_LOAD_FAIL(tmp_path("m32.bin"), &o, "small.json: the tokenizer has 4 tokens",
                     "32 embedding rows (more than padding)");
}

static void test_shard_index(void) {
    bl_tensor_set ts;
    unsigned char *keep;
    char *cfg = seed_model(&ts, &keep);
    REQUIRE(cfg);
    const char *dir = tmp_path("sharded");
    mkdir(dir, 0700);
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, cfg);
    /* two shards: the embedding in the first, everything else in the second */
    bl_st_writer *w[2];
    REQUIRE(bl_st_writer_new(&w[0], NULL) == BL_OK && bl_st_writer_new(&w[1], NULL) == BL_OK);
    char map[8192] = "{\"metadata\": {}, \"weight_map\": {";
    for (int i = 0; i < ts.n; i++) {
        const bl_tensor *t = &ts.t[i];
        int k = strcmp(t->name, "model.embed_tokens.weight") != 0;
        bl_st_writer_add(w[k], t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, true,
                         NULL);
        snprintf(map + strlen(map), sizeof map - strlen(map), "%s\"%s\": \"model-%d.safetensors\"",
                 i ? ", " : "", t->name, k + 1);
    }
    strcat(map, "}}");
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/model-%d.safetensors", dir, k + 1);
        bl_st_writer_finish(w[k], p, NULL);
        bl_st_writer_free(w[k]);
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, map);
    bl_model *m = load_ok(dir, NULL);
    bl_model_free(m);
    /* an index that swaps the shards of two tensors */
    char *b1 = replace(map, "\"model.embed_tokens.weight\": \"model-1.safetensors\"",
                       "\"model.embed_tokens.weight\": \"model-2.safetensors\"");
    char *bad = replace(b1, "\"model.norm.weight\": \"model-2.safetensors\"",
                        "\"model.norm.weight\": \"model-1.safetensors\"");
    write_text(p, bad);
    EXPECT_LOAD_FAIL(dir, NULL, "model.safetensors.index.json", "model.embed_tokens.weight",
                     "in shard 'model-2.safetensors', but it is in 'model-1.safetensors'");
    free(bad);
    /* and one whose shard does not hold the tensor at all */
    bad = replace(map, "\"model.embed_tokens.weight\": \"model-1.safetensors\"",
                  "\"model.embed_tokens.weight\": \"model-2.safetensors\"");
    write_text(p, bad);
    EXPECT_LOAD_FAIL(dir, NULL, "model.safetensors.index.json",
                     "tensor 'model.embed_tokens.weight' is not in shard 'model-2.safetensors'");
    free(bad);
    free(b1);
    /* bytes after the index object */
    char twice[16384];
    snprintf(twice, sizeof twice, "%s%s", map, map);
    write_text(p, twice);
    EXPECT_LOAD_FAIL(dir, NULL, "model.safetensors.index.json: not valid JSON");
    bl_tensor_set_free(&ts);
    free(keep);
    free(cfg);
}

static void expect_task_fail(bl_task_id id, const char *dir, const char *want) {
    bl_task_set *s = NULL;
    bl_err err = {0};
    bl_status st = bl_task_load(id, dir, 0, &s, &err);
    CHECK_MSG(st != BL_OK && !s && strstr(err.msg, want), "%s: status %d: %s (want %s)",
              bl_task_name(id), (int)st, err.msg, want);
    bl_task_set_free(s);
}

static void test_task_files(void) {
    char q[600], h[600], p[700];
    snprintf(q, sizeof q, "%s/llm-foundry-icl", tmp);
    snprintf(h, sizeof h, "%s/hellaswag", tmp);
    mkdir(q, 0700);
    mkdir(h, 0700);
    snprintf(p, sizeof p, "%s/arc_easy.jsonl", q);
    const char *row = "{\"query\": \"Question: a\", \"choices\": [\"x\", \"y\"], \"gold\": 1}";
    char two[512];
    /* two objects on one line: the second would be dropped silently */
    snprintf(two, sizeof two, "%s %s\n", row, row);
    write_text(p, two);
    expect_task_fail(BL_TASK_ARC_EASY, tmp, "arc_easy.jsonl:1: not valid JSON");
    /* a gold index far outside int range (its conversion to int was undefined) */
    write_text(p, "{\"query\": \"Question: a\", \"choices\": [\"x\", \"y\"], \"gold\": 1e300}\n");
    expect_task_fail(BL_TASK_ARC_EASY, tmp, "arc_easy.jsonl:1: \"gold\" must be an index");
    write_text(p, "{\"query\": \"Question: a\", \"choices\": [\"x\", \"y\"], \"gold\": \"1\"}\n");
    expect_task_fail(BL_TASK_ARC_EASY, tmp, "arc_easy.jsonl:1: \"gold\" must be an index");
    /* a NUL byte in the HellaSwag text would cut a line short */
    snprintf(p, sizeof p, "%s/hellaswag_val_full.txt", h);
    write_file(p, "A: b\n1\nw\nx\0y\ny\nz\n", 17);
    expect_task_fail(BL_TASK_HELLASWAG, tmp, "hellaswag_val_full.txt: a NUL byte at offset 10");
}

/* The architecture table: what it lists for each family's optional tensors, its projection
 * shapes against a loaded checkpoint, its names in both schemes, and the counts built on it. */
static void test_arch_table(void) {
    bl_config c;
    memset(&c, 0, sizeof c);
    c.dim = 96;
    c.hidden_dim = 160;
    c.n_layers = 3;
    c.n_heads = 6;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.vocab_size = 300;
    const struct {
        bool tied, bias, qkn;
        int want; /* tensors listed */
    } cases[] = {
        {false, false, false, 3 + 3 * 9}, /* embd, norm, head; 2 norms + 7 projections */
        {true, false, false, 2 + 3 * 9},
        {true, true, false, 2 + 3 * 12},  /* + q/k/v biases */
        {true, false, true, 2 + 3 * 11},  /* + q/k norms */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        c.tied_embeddings = cases[k].tied;
        c.qkv_bias = cases[k].bias;
        c.qk_norm = cases[k].qkn;
        int n = 0, last_layer = 0;
        bool ordered = true;
        for (bl_arch_iter it = {0}; bl_arch_next(&c, &it); n++) {
            ordered &= it.layer >= last_layer && (it.t->per_layer || it.layer == 0);
            last_layer = it.layer;
            int64_t r, cl;
            bl_arch_shape(it.t, &c, &r, &cl);
            CHECK(r > 0 && (cl > 0) == (it.t->kind != BL_TK_VECTOR));
        }
        CHECK_MSG(n == cases[k].want, "case %zu: %d tensors, want %d", k, n, cases[k].want);
        CHECK(ordered);
    }
    int64_t r, cl;
    bl_proj_shape(&c, BL_PROJ_O, &r, &cl);
    CHECK(r == 96 && cl == 96);
    bl_proj_shape(&c, BL_PROJ_K, &r, &cl);
    CHECK(r == 32 && cl == 96);
    bl_proj_shape(&c, BL_PROJ_DOWN, &r, &cl);
    CHECK(r == 96 && cl == 160);
    char name[128];
    bl_arch_tensor_name(bl_arch_role("attn_k_bias"), 7, false, name, sizeof name);
    CHECK(strcmp(name, "model.layers.7.self_attn.k_proj.bias") == 0);
    bl_arch_tensor_name(bl_arch_role("attn_k_bias"), 7, true, name, sizeof name);
    CHECK(strcmp(name, "blk.7.attn_k.bias") == 0);
    bl_proj_name(2, BL_PROJ_GATE, name, sizeof name);
    CHECK(strcmp(name, "model.layers.2.mlp.gate_proj") == 0);
    bl_arch a;
    CHECK(bl_arch_from_name("qwen3", &a) && a == BL_ARCH_QWEN3 && bl_arch_family_of(a)->qk_norm);
    CHECK(!bl_arch_from_name("gpt2", &a));

    /* a real checkpoint: every projection has the table's shape, and the parameter count is the
     * sum of the checkpoint's tensors (all of which the model uses) */
    const char *path = test_data_path("models/stories260K/stories260K.gguf");
    bl_model *m = NULL;
    if (access(path, F_OK) != 0) SKIP("%s not found", path);
    REQUIRE(bl_model_load(path, NULL, &m, NULL) == BL_OK);
    for (int p = 0; p < BL_PROJ_COUNT; p++) {
        bl_proj_shape(&m->cfg, p, &r, &cl);
        CHECK(m->layers[1].proj[p].m == r && m->layers[1].proj[p].n == cl);
    }
    int64_t total = 0;
    for (int i = 0; i < m->tensors.n; i++) total += bl_tensor_numel(&m->tensors.t[i]);
    CHECK_MSG(bl_model_param_count(m) == total, "%lld vs %lld",
              (long long)bl_model_param_count(m), (long long)total);
    bl_model_free(m);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/bitllm_loaders_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    TEST_RUN(test_config_fields);
    TEST_RUN(test_checkpoint_matches_config);
    TEST_RUN(test_nonfinite_weights);
    TEST_RUN(test_format_by_content);
    TEST_RUN(test_arch_table);
    TEST_RUN(test_tokenizer_fits_model);
    TEST_RUN(test_shard_index);
    TEST_RUN(test_task_files);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
    return test_summary();
}
