/* Model internals shared by the loader, the forward pass and the quantized-checkpoint writer. */
#ifndef BITLLM_MODEL_INTERNAL_H
#define BITLLM_MODEL_INTERNAL_H

#include "bitllm/model.h"

/* Names of the configuration fields in the source a config came from, for messages: the HF
 * config.json keys, GGUF metadata keys or llama2.c header fields. */
typedef struct {
    const char *src; /* "config.json", "GGUF metadata", "llama2.c header" */
    const char *dim, *hidden_dim, *n_layers, *n_heads, *n_kv_heads, *head_dim, *vocab_size,
        *max_seq, *norm_eps, *rope_theta, *bos, *eos;
} bl_config_fields;
extern const bl_config_fields bl_hf_config_fields;
/* Validates the sizes, ids and constants the forward pass relies on; every error names the field
 * as fields spells it (NULL: config.json names). Shared by every loader. */
bl_status bl_config_validate(const bl_config *c, const char *path, const bl_config_fields *fields,
                             bl_err *err);
/* quantization_config.layers entries: through the format's schema. */
#include "formats/format_json.h"

/* Where a model being loaded came from, for messages. */
typedef struct {
    const char *tensors;  /* the checkpoint file(s): model.safetensors, its index, the .gguf */
    const char *cfg_file; /* config.json, or the checkpoint itself when it holds the config */
    const bl_config_fields *cfg;
    bool gguf_names;      /* GGUF / llama2.c tensor names (else Hugging Face names) */
    bool head_required;   /* the config says the output head is not tied to the embeddings */
} bl_load_source;
/* Loads the weights of m (m->cfg and m->tensors filled in) and checks them (src/model/
 * load_weights.c); qc is the quantization_config object or NULL; opts (may be NULL) gives the
 * threads that repack sign matrices. With m->load_mode BL_LOAD_READ the mapped files are first
 * made private memory. */
bl_status bl_model_load_weights(bl_model *m, const bl_load_source *src, const cJSON *qc,
                                const bl_load_opts *opts, bl_err *err);
/* Hands a heap buffer to the model (freed with it; freed at once on failure). */
bl_status bl_model_own(bl_model *m, void *p, bl_err *err);
/* Loads the tokenizer at path into m->tok: a tokenizer.json or its directory, a llama2.c
 * tokenizer.bin or a GGUF file, told apart by content (src/model/load_tokenizer.c). */
bl_status bl_model_load_tokenizer(bl_model *m, const char *path, bl_err *err);
/* Whether m->tok can serve m: it may not emit ids the model lacks, and the model's vocabulary
 * may exceed it only by padding. */
bl_status bl_model_check_tokenizer(const bl_model *m, bl_err *err);

/* The token embeddings' tensor name without ".weight" ("model.embed_tokens"): the prefix of their
 * tensors and their quantization_config entry when they are stored in a quantized format. */
void bl_embed_prefix(const char *tensor_name, char *buf, size_t cap);

/* Parts of a model to write in place of its own (each NULL: the model's). */
typedef struct {
    const bl_linear *proj;  /* n_layers × BL_PROJ_COUNT projections */
    const bl_linear *head;  /* the output head, written untied (tie_word_embeddings false) */
    const bl_linear *embed; /* the token embeddings, in a format with a row lookup (get_row) */
} bl_model_parts;

/* Writes m as an HF directory with the parts given replacing its own (src/model/save.c). */
bl_status bl_model_write(const bl_model *m, const bl_model_parts *parts, const char *outdir,
                         const char *method, const char *extra_json, bl_err *err);

/* The HF config.json object for cfg (src/model/save.c). */
cJSON *bl_config_to_json(const bl_config *c);

/* Released OneBit checkpoints (src/model/onebit_import.c). */
bool bl_onebit_layer_present(const bl_tensor_set *ts, const char *prefix);
bl_status bl_onebit_import_layer(const bl_tensor_set *ts, const char *prefix, int64_t m,
                                 int64_t n, bl_linear *L, bl_err *err);

#endif
