/* Random-weight checkpoints with real architecture dimensions (for speed and memory benchmarks). */
#include "model/model_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *name;
    bl_config c;
} preset;

/* Dimensions from the models' published config.json files. */
static const preset presets[] = {
    {"llama2-7b", {.arch = BL_ARCH_LLAMA, .dim = 4096, .hidden_dim = 11008, .n_layers = 32,
                   .n_heads = 32, .n_kv_heads = 32, .head_dim = 128, .vocab_size = 32000,
                   .max_seq = 4096, .rope_theta = 10000, .norm_eps = 1e-5f, .bos_id = 1,
                   .eos_id = 2}},
    {"llama3-8b", {.arch = BL_ARCH_LLAMA, .dim = 4096, .hidden_dim = 14336, .n_layers = 32,
                   .n_heads = 32, .n_kv_heads = 8, .head_dim = 128, .vocab_size = 128256,
                   .max_seq = 8192, .rope_theta = 500000, .norm_eps = 1e-5f, .bos_id = 128000,
                   .eos_id = 128001}},
    {"mistral-7b", {.arch = BL_ARCH_MISTRAL, .dim = 4096, .hidden_dim = 14336, .n_layers = 32,
                    .n_heads = 32, .n_kv_heads = 8, .head_dim = 128, .vocab_size = 32000,
                    .max_seq = 32768, .rope_theta = 10000, .norm_eps = 1e-5f, .bos_id = 1,
                    .eos_id = 2}},
    {"tinyllama-1.1b", {.arch = BL_ARCH_LLAMA, .dim = 2048, .hidden_dim = 5632, .n_layers = 22,
                        .n_heads = 32, .n_kv_heads = 4, .head_dim = 64, .vocab_size = 32000,
                        .max_seq = 2048, .rope_theta = 10000, .norm_eps = 1e-5f, .bos_id = 1,
                        .eos_id = 2}},
    {"qwen2.5-0.5b", {.arch = BL_ARCH_QWEN2, .dim = 896, .hidden_dim = 4864, .n_layers = 24,
                      .n_heads = 14, .n_kv_heads = 2, .head_dim = 64, .vocab_size = 151936,
                      .max_seq = 32768, .rope_theta = 1000000, .norm_eps = 1e-6f,
                      .tied_embeddings = true, .qkv_bias = true, .bos_id = -1,
                      .eos_id = 151643}},
    {"qwen3-0.6b", {.arch = BL_ARCH_QWEN3, .dim = 1024, .hidden_dim = 3072, .n_layers = 28,
                    .n_heads = 16, .n_kv_heads = 8, .head_dim = 128, .vocab_size = 151936,
                    .max_seq = 40960, .rope_theta = 1000000, .norm_eps = 1e-6f,
                    .tied_embeddings = true, .qk_norm = true, .bos_id = -1, .eos_id = 151645}},
    {"smollm2-135m", {.arch = BL_ARCH_LLAMA, .dim = 576, .hidden_dim = 1536, .n_layers = 30,
                      .n_heads = 9, .n_kv_heads = 3, .head_dim = 64, .vocab_size = 49152,
                      .max_seq = 8192, .rope_theta = 100000, .norm_eps = 1e-5f,
                      .tied_embeddings = true, .bos_id = 1, .eos_id = 2}},
};

#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

bool bl_synth_preset(const char *name, bl_config *out) {
    for (int i = 0; i < N_PRESETS; i++)
        if (strcmp(presets[i].name, name) == 0) {
            *out = presets[i].c;
            return true;
        }
    return false;
}

const char *const *bl_synth_preset_names(int *count) {
    static const char *names[N_PRESETS];
    for (int i = 0; i < N_PRESETS; i++) names[i] = presets[i].name;
    *count = N_PRESETS;
    return names;
}

typedef struct {
    uint64_t seed;
    bl_dtype dtype;
} fill_ctx;

bl_status bl_synth_llm_matrix(int64_t m, int64_t n, uint64_t seed, float *W, bl_err *err) {
    bl_rng r;
    bl_rng_seed(&r, seed);
    /* the outlier columns first, from the same stream (keeps earlier benchmark matrices) */
    uint8_t *out = m > 0 && n > 0 ? malloc((size_t)n) : NULL;
    if (!out) return bl_fail(err, BL_ERR_NOMEM, "LLM-like matrix %lldx%lld", (long long)m,
                             (long long)n);
    for (int64_t j = 0; j < n; j++) out[j] = bl_rng_uniform(&r) < 0.01f;
    const float base = 0.02f / sqrtf(2.0f); /* std of t₄ is √2 */
    for (int64_t i = 0; i < m; i++) {
        float rs = 0.5f + bl_rng_uniform(&r);
        for (int64_t j = 0; j < n; j++) {
            double c = 0.0;
            for (int k = 0; k < 4; k++) {
                float y = bl_rng_normal(&r);
                c += (double)y * y;
            }
            const float cs = out[j] ? 10.0f : 1.0f;
            W[i * n + j] = base * rs * cs * bl_rng_normal(&r) / (float)sqrt(c / 4.0);
        }
    }
    free(out);
    return BL_OK;
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Weights uniform in [-a, a] with std 0.02 (a = 0.02·√3); norm weights ("norm" in the name) 1.
 * Chunks get their own seeded generator so filling is parallel and still deterministic. */
static void fill(void *vctx, const char *name, void *buf, size_t nbytes) {
    const fill_ctx *fc = vctx;
    const size_t esz = fc->dtype == BL_DT_F32 ? 4 : 2, n = nbytes / esz;
    const bool ones = strstr(name, "norm") != NULL;
    const uint64_t base = fc->seed ^ hash_name(name);
    const size_t chunk = 1 << 16;
    const float a = 0.02f * sqrtf(3.0f);
#pragma omp parallel for schedule(static)
    for (size_t c0 = 0; c0 < n; c0 += chunk) {
        bl_rng r;
        bl_rng_seed(&r, base + c0);
        size_t end = c0 + chunk < n ? c0 + chunk : n;
        for (size_t i = c0; i < end; i++) {
            float v = ones ? 1.0f : a * (2.0f * bl_rng_uniform(&r) - 1.0f);
            if (esz == 4) {
                memcpy((uint8_t *)buf + 4 * i, &v, 4);
            } else {
                uint16_t h = fc->dtype == BL_DT_F16 ? bl_f32_to_f16(v) : bl_f32_to_bf16(v);
                memcpy((uint8_t *)buf + 2 * i, &h, 2);
            }
        }
    }
}

static bl_status add(bl_st_writer *w, fill_ctx *fc, const char *name, int64_t r, int64_t c,
                     bl_err *err) {
    int64_t shape[2] = {r, c};
    int ndim = c ? 2 : 1;
    size_t esz = fc->dtype == BL_DT_F32 ? 4 : 2;
    return bl_st_writer_add_lazy(w, name, fc->dtype, ndim, shape,
                                 (size_t)r * (size_t)(c ? c : 1) * esz, fill, fc, err);
}

bl_status bl_synth_model(const bl_config *c, bl_dtype dtype, uint64_t seed, const char *outdir,
                         bl_err *err) {
    if (dtype != BL_DT_F32 && dtype != BL_DT_F16 && dtype != BL_DT_BF16)
        return bl_fail(err, BL_ERR_ARG, "synthetic models are F32, F16 or BF16");
    bl_status s = bl_config_validate(c, outdir, NULL, err);
    if (s) return s;
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST)
        return bl_fail(err, BL_ERR_IO, "%s: cannot create directory: %s", outdir, strerror(errno));
    bl_st_writer *w;
    if ((s = bl_st_writer_new(&w, err))) return s;
    fill_ctx fc = {seed, dtype};
    char name[160];
    for (bl_arch_iter it = {0}; !s && bl_arch_next(c, &it);) {
        const bl_arch_tensor *t = it.t;
        int64_t rows, cols;
        bl_arch_shape(t, c, &rows, &cols);
        bl_arch_tensor_name(t, it.layer, false, name, sizeof name);
        if (t->kind == BL_TK_LINEAR) strcat(name, ".weight");
        s = add(w, &fc, name, rows, cols, err);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", outdir);
    if (!s) s = bl_st_writer_finish(w, path, err);
    bl_st_writer_free(w);
    if (s) return s;
    cJSON *cfg = bl_config_to_json(c);
    cJSON_AddStringToObject(cfg, "torch_dtype", dtype == BL_DT_F32 ? "float32"
                                                : dtype == BL_DT_F16 ? "float16" : "bfloat16");
    cJSON_AddBoolToObject(cfg, "bitllm_synthetic", true);
    char *text = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    snprintf(path, sizeof path, "%s/config.json", outdir);
    s = text ? bl_write_file_atomic(path, text, strlen(text), err)
             : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    free(text);
    return s;
}
