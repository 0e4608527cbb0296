/* The architecture table: the model families and every tensor of the LLaMA-family decoder with
 * its Hugging Face and GGUF names, its shape as a function of the configuration, whether it is
 * per layer, when it is present and where the model keeps it (as llama.cpp's tensor-name table).
 * The loader, the writer, synthetic models, the parameter and bit counts, the training layout
 * and the export all iterate over this table; a Llama-family variant that adds or drops tensors
 * is described here (and its config fields parsed in config.c / load.c), nowhere else. */
#include "model/model_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const bl_arch_family families[] = {
    {BL_ARCH_LLAMA, "llama", "LlamaForCausalLM", false, false, true},
    {BL_ARCH_MISTRAL, "mistral", "MistralForCausalLM", false, false, true},
    {BL_ARCH_QWEN2, "qwen2", "Qwen2ForCausalLM", true, false, false},
    {BL_ARCH_QWEN3, "qwen3", "Qwen3ForCausalLM", false, true, false},
};
#define N_FAMILIES ((int)(sizeof families / sizeof families[0]))

const bl_arch_family *bl_arch_family_of(bl_arch a) {
    for (int i = 0; i < N_FAMILIES; i++)
        if (families[i].arch == a) return &families[i];
    return &families[0];
}

const char *bl_arch_name(bl_arch a) { return bl_arch_family_of(a)->name; }

bool bl_arch_from_name(const char *name, bl_arch *out) {
    for (int i = 0; i < N_FAMILIES; i++)
        if (strcmp(families[i].name, name) == 0) {
            *out = families[i].arch;
            return true;
        }
    return false;
}

const char *bl_arch_names(void) {
    static char buf[128];
    if (!buf[0])
        for (int i = 0; i < N_FAMILIES; i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? ", " : "",
                     families[i].name);
    return buf;
}

#define LAYER(f) offsetof(bl_layer, f)
#define MODEL(f) offsetof(bl_model, f)

/* In the order bitllm writes model files (which keeps written files byte-identical). */
static const bl_arch_tensor tensors[] = {
    {"tok_embd", BL_TK_EMBED, false, "model.embed_tokens.weight", "token_embd.weight",
     BL_DIM_VOCAB, BL_DIM_MODEL, BL_WHEN_ALWAYS, -1, MODEL(tok_embd)},
    {"output_norm", BL_TK_VECTOR, false, "model.norm.weight", "output_norm.weight", BL_DIM_MODEL,
     BL_DIM_NONE, BL_WHEN_ALWAYS, -1, MODEL(out_norm)},
    {"output", BL_TK_LINEAR, false, "lm_head", "output", BL_DIM_VOCAB, BL_DIM_MODEL,
     BL_WHEN_UNTIED, -1, MODEL(output)},
    {"attn_norm", BL_TK_VECTOR, true, "input_layernorm.weight", "attn_norm.weight", BL_DIM_MODEL,
     BL_DIM_NONE, BL_WHEN_ALWAYS, -1, LAYER(attn_norm)},
    {"ffn_norm", BL_TK_VECTOR, true, "post_attention_layernorm.weight", "ffn_norm.weight",
     BL_DIM_MODEL, BL_DIM_NONE, BL_WHEN_ALWAYS, -1, LAYER(ffn_norm)},
    {"attn_q", BL_TK_LINEAR, true, "self_attn.q_proj", "attn_q", BL_DIM_Q, BL_DIM_MODEL,
     BL_WHEN_ALWAYS, BL_PROJ_Q, LAYER(proj[BL_PROJ_Q])},
    {"attn_q_bias", BL_TK_VECTOR, true, "self_attn.q_proj.bias", "attn_q.bias", BL_DIM_Q,
     BL_DIM_NONE, BL_WHEN_QKV_BIAS, BL_PROJ_Q, LAYER(bias[0])},
    {"attn_k", BL_TK_LINEAR, true, "self_attn.k_proj", "attn_k", BL_DIM_KV, BL_DIM_MODEL,
     BL_WHEN_ALWAYS, BL_PROJ_K, LAYER(proj[BL_PROJ_K])},
    {"attn_k_bias", BL_TK_VECTOR, true, "self_attn.k_proj.bias", "attn_k.bias", BL_DIM_KV,
     BL_DIM_NONE, BL_WHEN_QKV_BIAS, BL_PROJ_K, LAYER(bias[1])},
    {"attn_v", BL_TK_LINEAR, true, "self_attn.v_proj", "attn_v", BL_DIM_KV, BL_DIM_MODEL,
     BL_WHEN_ALWAYS, BL_PROJ_V, LAYER(proj[BL_PROJ_V])},
    {"attn_v_bias", BL_TK_VECTOR, true, "self_attn.v_proj.bias", "attn_v.bias", BL_DIM_KV,
     BL_DIM_NONE, BL_WHEN_QKV_BIAS, BL_PROJ_V, LAYER(bias[2])},
    {"attn_output", BL_TK_LINEAR, true, "self_attn.o_proj", "attn_output", BL_DIM_MODEL,
     BL_DIM_Q, BL_WHEN_ALWAYS, BL_PROJ_O, LAYER(proj[BL_PROJ_O])},
    {"ffn_gate", BL_TK_LINEAR, true, "mlp.gate_proj", "ffn_gate", BL_DIM_HIDDEN, BL_DIM_MODEL,
     BL_WHEN_ALWAYS, BL_PROJ_GATE, LAYER(proj[BL_PROJ_GATE])},
    {"ffn_up", BL_TK_LINEAR, true, "mlp.up_proj", "ffn_up", BL_DIM_HIDDEN, BL_DIM_MODEL,
     BL_WHEN_ALWAYS, BL_PROJ_UP, LAYER(proj[BL_PROJ_UP])},
    {"ffn_down", BL_TK_LINEAR, true, "mlp.down_proj", "ffn_down", BL_DIM_MODEL, BL_DIM_HIDDEN,
     BL_WHEN_ALWAYS, BL_PROJ_DOWN, LAYER(proj[BL_PROJ_DOWN])},
    {"attn_q_norm", BL_TK_VECTOR, true, "self_attn.q_norm.weight", "attn_q_norm.weight",
     BL_DIM_HEAD, BL_DIM_NONE, BL_WHEN_QK_NORM, -1, LAYER(q_norm)},
    {"attn_k_norm", BL_TK_VECTOR, true, "self_attn.k_norm.weight", "attn_k_norm.weight",
     BL_DIM_HEAD, BL_DIM_NONE, BL_WHEN_QK_NORM, -1, LAYER(k_norm)},
};
#define N_TENSORS ((int)(sizeof tensors / sizeof tensors[0]))

const bl_arch_tensor *bl_arch_tensors(int *count) {
    *count = N_TENSORS;
    return tensors;
}

bool bl_arch_next(const bl_config *c, bl_arch_iter *it) {
    for (;;) {
        if (it->next >= N_TENSORS) {
            it->next = 0;
            it->layer++;
        }
        if (it->layer >= c->n_layers) return false;
        const bl_arch_tensor *t = &tensors[it->next++];
        if ((it->layer > 0 && !t->per_layer) || !bl_arch_present(t, c)) continue;
        it->t = t;
        return true;
    }
}

const bl_arch_tensor *bl_arch_role(const char *role) {
    for (int i = 0; i < N_TENSORS; i++)
        if (strcmp(tensors[i].role, role) == 0) return &tensors[i];
    return NULL;
}

const bl_arch_tensor *bl_arch_proj(int p) {
    for (int i = 0; i < N_TENSORS; i++)
        if (tensors[i].kind == BL_TK_LINEAR && tensors[i].per_layer && tensors[i].proj == p)
            return &tensors[i];
    return NULL;
}

const char *bl_proj_hf_name(int proj) { return bl_arch_proj(proj)->hf; }

int64_t bl_arch_dim(const bl_config *c, bl_dim d) {
    switch (d) {
    case BL_DIM_MODEL: return c->dim;
    case BL_DIM_HIDDEN: return c->hidden_dim;
    case BL_DIM_Q: return (int64_t)c->n_heads * c->head_dim;
    case BL_DIM_KV: return (int64_t)c->n_kv_heads * c->head_dim;
    case BL_DIM_HEAD: return c->head_dim;
    case BL_DIM_VOCAB: return c->vocab_size;
    case BL_DIM_NONE: break;
    }
    return 0;
}

bool bl_arch_present(const bl_arch_tensor *t, const bl_config *c) {
    switch (t->when) {
    case BL_WHEN_UNTIED: return !c->tied_embeddings;
    case BL_WHEN_QKV_BIAS: return c->qkv_bias;
    case BL_WHEN_QK_NORM: return c->qk_norm;
    case BL_WHEN_ALWAYS: break;
    }
    return true;
}

void bl_arch_shape(const bl_arch_tensor *t, const bl_config *c, int64_t *rows, int64_t *cols) {
    *rows = bl_arch_dim(c, t->rows);
    *cols = bl_arch_dim(c, t->cols);
}

void bl_proj_shape(const bl_config *c, int p, int64_t *rows, int64_t *cols) {
    bl_arch_shape(bl_arch_proj(p), c, rows, cols);
}

const char *bl_arch_layer_prefix(bool gguf) { return gguf ? "blk." : "model.layers."; }

void bl_arch_tensor_name(const bl_arch_tensor *t, int layer, bool gguf, char *buf, size_t cap) {
    const char *n = gguf ? t->gguf : t->hf;
    if (t->per_layer) snprintf(buf, cap, "%s%d.%s", bl_arch_layer_prefix(gguf), layer, n);
    else snprintf(buf, cap, "%s", n);
}

void bl_proj_name(int layer, int p, char *buf, size_t cap) {
    bl_arch_tensor_name(bl_arch_proj(p), layer, false, buf, cap);
}

static void *slot_of(bl_model *m, const bl_arch_tensor *t, int layer) {
    return t->per_layer ? (char *)&m->layers[layer] + t->slot : (char *)m + t->slot;
}

float **bl_arch_vector_slot(bl_model *m, const bl_arch_tensor *t, int layer) {
    return t->kind == BL_TK_VECTOR ? slot_of(m, t, layer) : NULL;
}

bl_linear *bl_arch_linear_slot(bl_model *m, const bl_arch_tensor *t, int layer) {
    return t->kind == BL_TK_LINEAR ? slot_of(m, t, layer) : NULL;
}

void bl_embed_prefix(const char *tensor_name, char *buf, size_t cap) {
    size_t n = strlen(tensor_name);
    if (n >= 7 && strcmp(tensor_name + n - 7, ".weight") == 0) n -= 7;
    snprintf(buf, cap, "%.*s", (int)n, tensor_name);
}
