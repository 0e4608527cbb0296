/* The LLaMA-family decoder (LLaMA 1/2/3, Mistral, Qwen2, Qwen3): configuration, loading from any
 * supported checkpoint, and the FP32 forward pass with a KV cache. */
#ifndef BITLLM_MODEL_H
#define BITLLM_MODEL_H

#include "bitllm/format.h"
#include "bitllm/pool.h"
#include "bitllm/tokenizer.h"

BL_API_BEGIN

typedef enum { BL_ARCH_LLAMA = 0, BL_ARCH_MISTRAL, BL_ARCH_QWEN2, BL_ARCH_QWEN3 } bl_arch;

typedef struct {
    bl_arch arch;
    int dim;          /* hidden size */
    int hidden_dim;   /* MLP intermediate size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int vocab_size;
    int max_seq;      /* trained context length */
    float rope_theta;
    float norm_eps;
    /* RoPE pairing: true = adjacent pairs (2i, 2i+1) as in GGUF llama / llama2.c checkpoints,
     * false = rotate-half pairs (i, i + head_dim/2) as in Hugging Face checkpoints. */
    bool rope_interleaved;
    /* Llama-3 frequency scaling ("rope_scaling": {"rope_type": "llama3", ...}). */
    bool rope_llama3;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_max_pos;
    /* Linear position scaling ("rope_scaling": {"rope_type": "linear", "factor": f}; GGUF
     * <arch>.rope.scaling.type "linear"): positions divided by f. 0: none. */
    float rope_linear;
    /* Sliding-window attention (Mistral v0.1's "sliding_window"; GGUF
     * <arch>.attention.sliding_window): a query at position p sees keys p - W + 1 .. p. 0: all. */
    int sliding_window;
    bool tied_embeddings;
    bool qkv_bias;    /* Qwen2 */
    bool qk_norm;     /* Qwen3: RMSNorm over each head's q and k */
    int bos_id, eos_id; /* -1 if none */
} bl_config;

/* ---- The architecture table (src/model/arch.c): every model family and every tensor of the
 * decoder, with its names, shape and presence, in one place. Loading, saving, synthetic models,
 * parameter/bit counts, the training layout and the export iterate over it. ---- */

/* A model family: its config.json model_type (also the GGUF general.architecture), the HF class
 * written to config.json, and the defaults its config implies. */
typedef struct {
    bl_arch arch;
    const char *name;          /* "llama", "mistral", "qwen2", "qwen3" */
    const char *hf_class;      /* "LlamaForCausalLM", ... */
    bool qkv_bias;             /* attention_bias default in config.json */
    bool qk_norm;              /* RMSNorm over each head's q and k */
    bool gguf_rope_interleaved; /* llama.cpp's converter permutes q/k rows into adjacent pairs */
} bl_arch_family;
const bl_arch_family *bl_arch_family_of(bl_arch a);
const char *bl_arch_name(bl_arch a);
bool bl_arch_from_name(const char *name, bl_arch *out); /* "llama", "mistral", "qwen2", "qwen3" */
/* "llama, mistral, qwen2, qwen3" for messages. */
const char *bl_arch_names(void);

/* The seven projections of a decoder layer, in file order. */
enum { BL_PROJ_Q, BL_PROJ_K, BL_PROJ_V, BL_PROJ_O, BL_PROJ_GATE, BL_PROJ_UP, BL_PROJ_DOWN,
       BL_PROJ_COUNT };
const char *bl_proj_hf_name(int proj); /* "self_attn.q_proj", ..., "mlp.down_proj" */

/* The sizes a tensor's shape is made of. */
typedef enum {
    BL_DIM_NONE = 0, /* a vector's second dimension */
    BL_DIM_MODEL,    /* dim */
    BL_DIM_HIDDEN,   /* hidden_dim */
    BL_DIM_Q,        /* n_heads · head_dim */
    BL_DIM_KV,       /* n_kv_heads · head_dim */
    BL_DIM_HEAD,     /* head_dim */
    BL_DIM_VOCAB,    /* vocab_size */
} bl_dim;

typedef enum {
    BL_TK_EMBED,  /* the token embedding matrix, kept in its stored dtype */
    BL_TK_LINEAR, /* a projection (or the output head): a weight format under the name prefix */
    BL_TK_VECTOR, /* a norm weight or bias, converted to f32 */
} bl_tensor_kind;

/* Presence conditions on the configuration. */
typedef enum { BL_WHEN_ALWAYS = 0, BL_WHEN_UNTIED, BL_WHEN_QKV_BIAS, BL_WHEN_QK_NORM } bl_when;

typedef struct {
    const char *role;   /* short name: "tok_embd", "attn_q", "attn_q_bias", ... */
    bl_tensor_kind kind;
    bool per_layer;
    const char *hf;     /* Hugging Face name (after "model.layers.N." when per layer); linears
                           name the prefix, without ".weight" */
    const char *gguf;   /* GGUF / llama2.c name (after "blk.N.") */
    bl_dim rows, cols;  /* cols BL_DIM_NONE for vectors */
    bl_when when;
    int proj;           /* BL_PROJ_* of a projection, or of the projection a bias belongs to; -1 */
    size_t slot;        /* offset of the field in bl_layer (per layer) or bl_model */
} bl_arch_tensor;

/* Every tensor role, in the order model files are written. */
const bl_arch_tensor *bl_arch_tensors(int *count);
/* Iteration over the tensors a configuration has, in file order: the global ones, then layer
 * 0's, layer 1's, ...:  bl_arch_iter it = {0}; while (bl_arch_next(c, &it)) use(it.t, it.layer); */
typedef struct {
    const bl_arch_tensor *t;
    int layer;
    int next; /* internal */
} bl_arch_iter;
bool bl_arch_next(const bl_config *c, bl_arch_iter *it);
/* The entry named role ("attn_q_bias", ...), or NULL. */
const bl_arch_tensor *bl_arch_role(const char *role);
/* The entry of projection p (BL_PROJ_*). */
const bl_arch_tensor *bl_arch_proj(int p);
int64_t bl_arch_dim(const bl_config *c, bl_dim d);
bool bl_arch_present(const bl_arch_tensor *t, const bl_config *c);
/* rows × cols of t under c (cols 0 for a vector). */
void bl_arch_shape(const bl_arch_tensor *t, const bl_config *c, int64_t *rows, int64_t *cols);
/* The shape of projection p: out × in. */
void bl_proj_shape(const bl_config *c, int p, int64_t *rows, int64_t *cols);
/* The full name of t in layer `layer` (ignored for global tensors) in the HF or the GGUF scheme. */
void bl_arch_tensor_name(const bl_arch_tensor *t, int layer, bool gguf, char *buf, size_t cap);
/* "model.layers.L.self_attn.q_proj": the HF name prefix of projection p of layer l. */
void bl_proj_name(int layer, int p, char *buf, size_t cap);
/* The HF per-layer prefix "model.layers." and the GGUF one "blk.". */
const char *bl_arch_layer_prefix(bool gguf);

typedef struct {
    float *attn_norm;          /* dim */
    float *ffn_norm;           /* dim */
    bl_linear proj[BL_PROJ_COUNT];
    float *bias[3];            /* q, k, v biases (Qwen2) or NULL */
    float *q_norm, *k_norm;    /* head_dim (Qwen3) or NULL */
} bl_layer;

typedef enum { BL_SRC_HF = 0, BL_SRC_GGUF, BL_SRC_LLAMA2C } bl_source;

typedef struct bl_model {
    bl_config cfg;
    bl_source source;
    char *path;
    bl_tensor tok_embd;        /* vocab × dim, any dtype (view); empty when embed holds them */
    bl_linear embed;           /* the token embeddings in a registry format with a row lookup
                                  (get_row, e.g. qsym q8_0); ops NULL: tok_embd is the table */
    float *out_norm;           /* dim */
    bl_linear output;          /* vocab × dim head (a view of tok_embd when tied) */
    bl_layer *layers;
    float *rope_inv_freq;      /* head_dim/2 */
    bl_tensor_set tensors;     /* owns the mapped checkpoint files */
    bl_gguf *gguf;             /* when loaded from GGUF (metadata), else NULL */
    bl_tokenizer *tok;         /* may be NULL if no tokenizer was found */
    char *tokenizer_path;      /* file or directory the tokenizer came from (NULL: GGUF) */
    char quant_method[32];     /* "" for a plain FP model, else the quantization_config method */
    char *quant_config_json;   /* the quantization_config block as JSON text, or NULL */
    void **owned;              /* f32 copies of small tensors (norms, biases) */
    int n_owned, cap_owned;
    bl_isa isa;                /* kernel level its inference states run at (never AUTO) */
    bl_sign_tables sign_tables; /* how their sign products sum (kernels.h) */
    bl_kv_type kv_cache;       /* what its inference states keep keys and values in */
    bl_load_mode load_mode;    /* how its files were brought in (never DEFAULT) */
} bl_model;

/* Where t (layer `layer`) lives in m: the vector (BL_TK_VECTOR), the linear (BL_TK_LINEAR) or the
 * tensor view (BL_TK_EMBED). */
float **bl_arch_vector_slot(bl_model *m, const bl_arch_tensor *t, int layer);
bl_linear *bl_arch_linear_slot(bl_model *m, const bl_arch_tensor *t, int layer);

/* Load options; a zero-initialized struct (or NULL) means every default. */
typedef struct {
    /* tokenizer.json or its directory, llama2.c tokenizer.bin, or a GGUF file holding one (told
     * apart by content); optional. It replaces the one a model directory or GGUF brings. */
    const char *tokenizer_path;
    bl_load_mode load;          /* BL_LOAD_DEFAULT: BITLLM_LOAD from the environment, else mmap */
    bl_isa isa;                 /* BL_ISA_AUTO: BITLLM_ISA from the environment, else the CPU's
                                   best; clamped to what the CPU supports */
    int n_threads;              /* threads for repacking sign matrices at load (0 = default) */
    bl_sign_tables sign_tables; /* BL_TABLES_F32 (default) or BL_TABLES_I8 (kernels.h) */
    /* The KV cache of its inference states: BL_KV_F32 (default), BL_KV_F16 (half the memory and
     * the attention's reads; keys and values rounded to nearest FP16 as they are stored) or
     * BL_KV_Q8 (int8 codes with a scale per 32 values: 9/32 of f32's; bitllm/kernels.h). */
    bl_kv_type kv_cache;
} bl_load_opts;
/* The names of the KV cache's value types, as --kv-cache and the reports write them: "f32",
 * "f16" and "q8". from_name: false for any other text. */
const char *bl_kv_cache_name(bl_kv_type type);
bool bl_kv_cache_from_name(const char *name, bl_kv_type *type);

/* path: a Hugging Face model directory (config.json + safetensors, including bitllm's quantized
 * outputs), a GGUF file, or a llama2.c checkpoint, told apart by content (never by the name).
 * The configuration is read strictly (wrong types, missing required fields, inconsistent sizes
 * are errors naming the field), the checkpoint must hold exactly the tensors the configuration
 * describes, weights must be finite, and a tokenizer must fit the model's vocabulary; every error
 * names the file (docs/errors.md). */
bl_status bl_model_load(const char *path, const bl_load_opts *opts, bl_model **out, bl_err *err);
/* The same from a checkpoint image in memory (name names it in messages): a GGUF file or a
 * llama2.c checkpoint (told apart by content), or, with config_json (the text of config.json),
 * a safetensors file. No tokenizer is loaded except one embedded in a GGUF. The model's tensors
 * are views into data, which must outlive it. */
bl_status bl_model_load_memory(const char *name, const uint8_t *data, size_t size,
                               const char *config_json, bl_model **out, bl_err *err);
void bl_model_free(bl_model *m);
/* Parameter count (all tensors used by the model) and bytes they occupy as stored. */
int64_t bl_model_param_count(const bl_model *m);
/* Whether a text starts with BOS (generate, serve, ppl, calibration): the model has a BOS token
 * and its tokenizer prepends it (tokenizer_config.json's add_bos_token or its post-processor;
 * GGUF tokenizer.ggml.add_bos_token; llama2.c: yes), as Hugging Face and llama.cpp decide.
 * Without a tokenizer: whenever there is a BOS token. */
bool bl_model_adds_bos(const bl_model *m);
/* Bytes of the weights as loaded (quantized layers at their stored size). */
uint64_t bl_model_weight_bits(const bl_model *m);
/* Sign matrices in the model's projections and output head. */
int64_t bl_model_sign_count(const bl_model *m);
/* Projections and output head whose products BL_TABLES_I8 changes (1-bit layers, q8_0 / q4_0
 * matrices; 0: --sign-tables i8 has no effect). */
int64_t bl_model_i8_count(const bl_model *m);
/* Bits per weight of the seven decoder projections, and of every weight of the model. */
void bl_model_bpw(const bl_model *m, double *bpw_layers, double *bpw_model);
/* Parses a Hugging Face config.json text into cfg. */
bl_status bl_config_from_hf_json(const char *json, const char *path, bl_config *cfg,
                                 bl_err *err);

/* Random-weight models with the real dimensions of known architectures, for speed and memory
 * measurements without real weights. Presets: llama2-7b, llama3-8b, mistral-7b, tinyllama-1.1b,
 * qwen2.5-0.5b, qwen3-0.6b, smollm2-135m. */
bool bl_synth_preset(const char *name, bl_config *out);
const char *const *bl_synth_preset_names(int *count);
/* Writes config.json + model.safetensors (weights ~ uniform with std 0.02, norms 1) of dtype
 * F32, F16 or BF16, streaming one tensor at a time. */
/* A deterministic m×n matrix with the statistics of LLM projection weights, for benchmarks and
 * tests of the fits: Student-t (ν = 4) entries scaled to std ≈ 0.02, 1% of the input columns ×10
 * (outlier channels), row scales uniform in [0.5, 1.5). */
bl_status bl_synth_llm_matrix(int64_t m, int64_t n, uint64_t seed, float *W, bl_err *err);
bl_status bl_synth_model(const bl_config *c, bl_dtype dtype, uint64_t seed, const char *outdir,
                         bl_err *err);

/* Inference state: KV cache, scratch for batches of up to max_batch tokens, and the thread pool
 * its forward passes run on: n_threads threads (0 = bl_default_threads(): OMP_NUM_THREADS or the
 * CPUs this process may use), the calling thread included. Per-thread scratch is sized from that
 * count. Logits do not depend on n_threads (bit for bit). A state is used by one host thread at
 * a time; several states (of one model or several) may run on different host threads at once. */
typedef struct bl_state bl_state;
bl_status bl_state_new(const bl_model *m, int max_seq, int max_batch, int n_threads,
                       bl_state **out, bl_err *err);
int bl_state_threads(const bl_state *s);     /* the resolved thread count */
/* The state's threads, for work between two calls on the same host thread (e.g. sampling the
 * sequences of a batched step side by side); not while a call on the state runs. */
bl_pool *bl_state_pool(const bl_state *s);
void bl_state_free(bl_state *s);
void bl_state_reset(bl_state *s);            /* empties the KV cache */
int bl_state_pos(const bl_state *s);         /* tokens in the cache */
/* Truncates the cache to its first pos tokens (pos <= current), e.g. to reuse a shared prefix. */
void bl_state_truncate(bl_state *s, int pos);

/* Bytes of KV cache one position of one sequence takes on m (keys and values of every layer, in
 * m->kv_cache's type, scales included). */
double bl_kv_cache_bytes_per_token(const bl_model *m);

/* Several sequences in one state: n_slots KV caches of max_seq tokens each, and scratch for
 * max_batch rows per call, shared by the sequences of the call; n_threads as for bl_state_new.
 * The single-sequence calls above
 * and below (bl_forward, bl_state_pos, ...) use slot 0. */
bl_status bl_state_new_slots(const bl_model *m, int n_slots, int max_seq, int max_batch,
                             int n_threads, bl_state **out, bl_err *err);
int bl_state_slots(const bl_state *s);
int bl_state_max_batch(const bl_state *s);   /* rows one call may hold (clamped at creation) */
int bl_state_slot_pos(const bl_state *s, int slot);
/* Truncates one slot to its first pos tokens (0 frees it for a new sequence). */
void bl_state_slot_truncate(bl_state *s, int slot, int pos);
/* Makes slot dst hold the first n tokens of slot src (n <= src's position; dst != src): their
 * keys and values are copied and dst continues from position n. A server uses it to give a new
 * sequence a prompt prefix another sequence has already run. */
void bl_state_slot_copy(bl_state *s, int dst, int src, int n);

/* Calibration hook: called with the input of every decoder projection before it is applied
 * (x is T×n, row-major). q/k/v share one input, as do gate/up; the hook sees each projection. */
typedef void (*bl_observer_fn)(void *ctx, int layer, int proj, const float *x, int T, int64_t n);
void bl_state_set_observer(bl_state *s, bl_observer_fn fn, void *ctx);

/* Runs T tokens at the next T positions (one matrix product per layer per batch of up to
 * max_batch tokens). logits receives T×vocab floats when all_logits, else vocab floats for the
 * last token; may be NULL to skip the output head. A NaN or Inf in a token's embedding, in the
 * residual stream after a layer's attention or MLP, after the final norm or in the logits stops
 * the pass with BL_ERR_NUMERIC and a message naming the model file, the layer (or tensor) and the
 * token position; the cache then keeps the tokens before the failing batch. */
bl_status bl_forward(bl_state *s, const int32_t *tokens, int T, float *logits, bool all_logits,
                     bl_err *err);

/* One sequence of a batched call: n new tokens for the sequence in `slot`, at its next positions;
 * logits (vocab floats) receives the distribution after its last token, or NULL; with
 * all_logits, n × vocab floats, the distribution after each of its tokens (a server scoring a
 * prompt). */
typedef struct {
    int slot;
    const int32_t *tokens;
    int n;
    float *logits;
    bool all_logits;
} bl_seq_batch;

/* Runs the new tokens of n_seqs sequences (distinct slots; at most max_batch tokens in all) in
 * one forward: their rows are stacked so every projection is one matrix product over all of
 * them, and attention runs per sequence over its own slot. A sequence's logits and cache are
 * bit-identical to running it alone, in a state of its own, through bl_forward with the same
 * token chunks: every per-row step uses the same kernels and summation order whatever else is in
 * the batch (tests/test_batch.c checks this for every weight format). */
bl_status bl_forward_batch(bl_state *s, const bl_seq_batch *seqs, int n_seqs, bl_err *err);

/* Penalties on the tokens of the recent text, applied to the logits before sampling (greedy
 * too), as llama.cpp's penalties sampler and OpenAI's presence_penalty / frequency_penalty: a
 * token j that occurs c_j > 0 times among the last `last_n` tokens given to bl_sampler_accept has
 * its logit l_j divided by `repeat` when positive or multiplied by it otherwise, then lowered by
 * c_j·frequency + presence. */
typedef struct {
    float repeat;    /* > 0; 1 = no repetition penalty */
    float presence;  /* finite; 0 = none */
    float frequency; /* finite; 0 = none */
    int last_n;      /* tokens of history: > 0, or -1 = all of them, or 0 = no penalties */
} bl_penalties;
/* Off: repeat 1, presence 0, frequency 0, last_n 64 (llama.cpp's window). */
#define BL_PENALTIES_OFF ((bl_penalties){1.0f, 0.0f, 0.0f, 64})

/* Sampling. temperature 0 = greedy (argmax, lowest id on ties). */
typedef struct {
    float temperature;
    float top_p;
    int top_k;    /* 0 = off (bl_sampler_set_filters) */
    float min_p;  /* 0 = off */
    bl_rng rng;
    int vocab;
    float *probs; /* vocab */
    struct bl_prob_index { float p; int id; } *cand; /* 2·vocab: candidates, sort scratch */
    /* penalties (bl_sampler_set_penalties; all NULL while they are off) */
    bl_penalties pen;
    int *count;      /* vocab: occurrences in the window */
    int *where;      /* vocab: index in `present`, or -1 */
    int *present;    /* the distinct tokens of the window (n_present of them) */
    int n_present;
    int32_t *hist;   /* ring of the last last_n tokens (NULL for last_n = -1) */
    int64_t n_seen;  /* tokens accepted */
    float *adjusted; /* vocab: the biased and penalized logits (NULL while neither is set) */
    /* logit biases (bl_sampler_set_bias) */
    int n_bias;
    int32_t *bias_id;
    float *bias;
} bl_sampler;
/* temperature >= 0 (0 = greedy; +Inf = uniform over the vocabulary), top_p in (0, 1] (1 = the
 * whole distribution); NaN is refused. */
bl_status bl_sampler_init(bl_sampler *s, int vocab, float temperature, float top_p,
                          uint64_t seed, bl_err *err);
void bl_sampler_free(bl_sampler *s);
/* Top-k and min-p, applied as Hugging Face transformers applies them after the temperature: of
 * the tokens by probability (ties: lower ids first), the top_k most likely, then top_p of their
 * renormalized mass, then those at least min_p times as likely as the most likely token; the draw
 * is from what is left, renormalized. top_k >= 0 and min_p in [0, 1]; 0 turns either off (the
 * default). Bad values are refused with a message naming them. */
bl_status bl_sampler_set_filters(bl_sampler *s, int top_k, float min_p, bl_err *err);
/* Turns the penalties on (or off, with BL_PENALTIES_OFF or last_n 0); the history restarts. Bad
 * values are refused with a message naming them. */
bl_status bl_sampler_set_penalties(bl_sampler *s, const bl_penalties *p, bl_err *err);
/* Biases added to the logits of the tokens ids[0..n) before the penalties and the choice (OpenAI's
 * logit_bias; llama.cpp applies its logit-bias sampler first too): a bias of −100 all but bans
 * a token, +100 all but forces it. Ids in [0, vocab), biases finite; n = 0 removes them. */
bl_status bl_sampler_set_bias(bl_sampler *s, const int32_t *ids, const float *bias, int n,
                              bl_err *err);
/* Whether p changes anything (a penalty set and a window). */
bool bl_penalties_active(const bl_penalties *p);
/* Records one token of the text for the penalties: the prompt's, then every token generated.
 * A no-op while they are off; ids outside [0, vocab) are ignored. */
void bl_sampler_accept(bl_sampler *s, int token);
/* A token id in [0, vocab), or -1 when a logit is NaN or Inf (never an index out of range). */
int bl_sample(bl_sampler *s, const float *logits);

BL_API_END
#endif
