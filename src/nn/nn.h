/* The training engine's model: a LLaMA-family decoder (LLaMA/Mistral/Qwen2/Qwen3) whose
 * parameters live in one flat buffer described by a table of named tensors (llm.c style), with a
 * _forward/_backward pair for every part.
 *
 * Precision: the layer code (the src/nn/ files named *_impl.h) is written once over a scalar
 * type `real` and compiled twice, as f32 for training (nn_f32.c) and as f64 for the
 * finite-difference gradient checks (nn_f64.c). The functions and activation structs of each
 * instantiation carry the suffix _f32 or _f64 (declared in nn_decl.h, included twice below).
 * Everything in this header is precision-independent: the model's structure, the table of
 * parameter offsets and the packed sign matrices of the binary layers. Parameter, gradient and
 * optimizer buffers are plain arrays of n_params reals owned by the caller.
 *
 * Determinism: every operation either works on independent rows (threads split rows), calls
 * bl_sgemm / bl_sign_matmul (blocked so that results do not depend on the thread count), or
 * reduces over tokens serially in token order. Results are identical at any thread count. */
#ifndef BITLLM_NN_H
#define BITLLM_NN_H

#include "bitllm/kernels.h"
#include "bitllm/model.h"

#define NN_NONE ((size_t)-1)

/* What a parameter tensor is: decides the training defaults and the weight decay. */
enum {
    NN_R_EMBED,    /* token embeddings */
    NN_R_HEAD,     /* untied output head */
    NN_R_NORM,     /* RMSNorm weights (attn, ffn, final) */
    NN_R_QKNORM,   /* Qwen3 per-head q/k RMSNorm weights */
    NN_R_BIAS,     /* Qwen2 q/k/v biases */
    NN_R_DENSE,    /* dense projection weight */
    NN_R_LATENT,   /* onebit latent weight (forward uses its sign) */
    NN_R_SCALE,    /* scale vectors of a binary layer */
    NN_R_ENVELOPE, /* envelope matrices of a binary layer */
    NN_R_FLIP,     /* latent score of a frozen sign matrix (sign flipping) */
};

typedef struct {
    char name[112];   /* HF-style, e.g. "model.layers.3.mlp.up_proj.g" */
    size_t off, numel;
    int64_t rows, cols; /* cols == 0 for vectors */
    int role;
    bool trainable;
    bool decay;       /* AdamW weight decay applies (matrices, not vectors or scales) */
} nn_tensor;

/* A ±1 matrix in the canonical packed layout (format.h), owned, with its kernel preparation. */
typedef struct {
    int64_t rows, cols;
    uint8_t *bits;
    bl_signmat mat;
    size_t latent;    /* offset of a rows×cols latent score tensor (flipping), or NN_NONE */
} nn_signs;

struct nn_format;

/* The most F16 tensors a trainable format keeps per layer (nn_format.parts). */
#define NN_MAX_PARTS 4

typedef struct {
    const struct nn_format *fmt; /* its trainable-format entry (nn_format_of) */
    const bl_format_ops *format; /* its format in the registry */
    bl_format_params params;     /* its parameters as the format records them (export) */
    int64_t m, n;     /* out, in */
    bool grad_w;      /* compute the gradient of W (dense) or of the latent */
    bool grad_vec;    /* compute the gradients of the scale vectors / envelopes */
    size_t w;         /* a dense W or a latent, m×n (NN_NONE: none) */
    /* The format's F16 tensors (scales, envelopes) in the layout: part[i] holds the entry's
     * parts[i] (NN_NONE: none); repeat r of a repeated one at + r·rows·cols. */
    size_t part[NN_MAX_PARTS];
    nn_signs *S;      /* the format's sign matrices, in its tensor table's order */
    int n_signs;
} nn_linear;

typedef struct {
    size_t attn_norm, ffn_norm;
    size_t bias[3];           /* q, k, v (Qwen2) or NN_NONE */
    size_t q_norm, k_norm;    /* Qwen3, or NN_NONE */
    nn_linear proj[BL_PROJ_COUNT];
} nn_layer;

typedef struct {
    bl_config cfg;
    int max_seq;              /* longest sequence the RoPE tables cover */
    nn_tensor *t;
    int n_t, cap_t;
    size_t n_params;
    size_t embed, out_norm, head; /* head == embed when the embeddings are tied */
    nn_layer *layers;
    double *rope_cos, *rope_sin;  /* [max_seq][head_dim/2] */
    /* which gradients the backward pass computes (from the table's trainable flags) */
    bool grad_embed, grad_head, grad_norms;
} nn_model;

/* How a model is turned into a trainable student (defaults by nn_build_opts_default). */
typedef struct {
    float latent_init;   /* onebit latent = sign(W)·latent_init (reference code: 0.01) */
    int post_ln;         /* onebit post-LayerNorm: 1 on, 0 off, -1 as in the checkpoint */
    bool train_embed;    /* token embeddings (default off) */
    bool train_head;     /* untied output head (default off) */
    bool train_norms;    /* RMSNorm weights, q/k norms, biases (default on) */
    bool train_dense;    /* projections left dense in the student (default off) */
    bool train_quant;    /* latents, scales, envelopes of the binary layers (default on) */
    bool flip;           /* frozen signs: latent scores for flipping (NN_OPT_FLIP; default off) */
    float flip_init;     /* initial |latent score| of a frozen sign (default 0.01) */
} nn_build_opts;

void nn_build_opts_default(nn_build_opts *o);

/* A student or teacher from a loaded model: dense projections from to_dense, binary layers from
 * their format's tensors in memory (any file layout the loader reads). *params receives n_params
 * floats (caller frees). Layers of a format without a trainable entry: BL_ERR_UNSUPPORTED. */
bl_status nn_model_from_bl(const bl_model *src, int max_seq, const nn_build_opts *o,
                           nn_model **out, float **params, bl_err *err);

/* A random model for tests and benchmarks: every layer uses spec[proj] (a trainable format and
 * its parameters, mid resolved) for its projections. */
bl_status nn_model_random(const bl_config *cfg, const bl_method spec[BL_PROJ_COUNT],
                          uint64_t seed, int max_seq, const nn_build_opts *o, nn_model **out,
                          float **params, bl_err *err);
void nn_model_free(nn_model *m);
/* The offset field where M keeps the vector t of the architecture table (layer ignored for a
 * global), or NULL for a tensor that is not a vector. */
size_t *nn_vector_slot(nn_model *M, const bl_arch_tensor *t, int layer);

/* Training options that only some formats read (train maps bl_distill_opt onto them; nn sits
 * below train and does not see its options). */
typedef enum { NN_OPT_POST_LN, NN_OPT_LATENT_INIT, NN_OPT_FLIP, NN_OPT_COUNT } nn_opt;
#define NN_OPT_BIT(o) (1u << (o))

/* The layer's method as the training engine lays it out: m with the build options the format
 * reads applied (onebit's post_ln). BL_ERR_UNSUPPORTED when the format has no trainable entry. */
bl_status nn_method_spec(const bl_method *m, const nn_build_opts *o, bl_method *sp,
                         bl_err *err);
/* A loaded layer's values into the layer's tensors and sign matrices, read through its format's
 * tensor table (dense: through to_dense). */
bl_status nn_linear_import(const bl_linear *BL, const nn_linear *L, const nn_build_opts *o,
                           float *P, bl_err *err);
/* The trained layer as a layer of its format, written through the format's tensor table;
 * BL_ERR_UNSUPPORTED for a format without one (dense: exported as a view of its weight). */
bl_status nn_linear_export(const nn_linear *L, const float *P, bl_linear *out, bl_err *err);
bool nn_linear_is_dense(const nn_linear *L);

const nn_tensor *nn_model_find(const nn_model *m, const char *name);
/* Marks every tensor trainable (tests) and enables all gradients. */
void nn_model_train_all(nn_model *m);
/* Recomputes the gradient switches of the model and its linears from the trainable flags. */
void nn_model_update_grad_flags(nn_model *m);
/* Re-prepares a sign matrix for the f32 kernels after its bits changed. */
bl_status nn_signs_refresh(nn_signs *s, bl_err *err);

/* Sizes in reals of the per-linear activations kept for backward and of the scratch that the
 * linear forward/backward need for N rows. */
size_t nn_linear_acts_size(const nn_linear *L, int64_t N);
size_t nn_linear_work_size(const nn_linear *L, int64_t N);

#define NN_REAL float
#define FN(x) x##_f32
#include "nn/nn_decl.h"
#undef NN_REAL
#undef FN
#define NN_REAL double
#define FN(x) x##_f64
#include "nn/nn_decl.h"
#undef NN_REAL
#undef FN

/* One F16 tensor of a trainable format's table that its nn layout keeps: entry i of the entry's
 * parts lives at nn_linear.part[i]. */
typedef struct {
    const char *part; /* the table's part as written there ("g", "p%d.A_env") */
} nn_part;

/* One entry per trainable format (nn_format_<name>, in its own file src/nn/linear_<name>.h with
 * its math, listed in the table nn_formats of linear_impl.h), found through the registry
 * (nn_format_of): everything the engine knows about a format. Adding a trainable format = its
 * file + one line in each list of linear_impl.h, its traits record marked trainable. */
typedef struct nn_format {
    const char *format;       /* the registry's name (bl_format_find) */
    bool signs_follow_latent; /* the sign matrix is sign(latent), refreshed every step */
    unsigned opts;            /* the nn_opt options it reads (NN_OPT_BIT) */
    /* The build options it reads, applied to a layer's parameters; NULL: none. */
    void (*apply_opts)(bl_format_params *p, const nn_build_opts *o);
    /* Adds the layer's tensors and sign matrices (L->fmt, format, params, m, n set; offsets
     * NN_NONE). */
    bl_status (*layout)(nn_model *M, const nn_build_opts *o, nn_linear *L, const char *prefix,
                        bl_err *err);
    /* The nn tensor of every F16 tensor of the format's table (at most NN_MAX_PARTS); the
     * table's sign tensors are L->S[] in order (bl_format_data_each). The first one's trainable
     * flag turns on the gradients of all of them (grad_vec). NULL: a format without a table
     * (dense), imported through to_dense into L->w and exported as a view. */
    const nn_part *parts;
    int n_parts;
    /* Optional, after import: what follows from the imported values (a latent from the signs;
     * frozen signs: their flipping scores and kernel preparation). */
    bl_status (*imported)(const nn_linear *L, const nn_build_opts *o, float *P, bl_err *err);
    bl_status (*random)(const nn_linear *L, const nn_build_opts *o, float *P, bl_rng *r,
                        bl_err *err);
    size_t (*acts_size)(const nn_linear *L, int64_t N);
    size_t (*work_size)(const nn_linear *L, int64_t N);
    const nn_lin_math_f32 *math_f32; /* forward/backward, per precision */
    const nn_lin_math_f64 *math_f64;
} nn_format;
/* An entry's fields naming its math (nn_<name>_math_f32 / _f64, defined by its file). */
#define NN_MATH_DECL(f) extern const nn_lin_math_f64 nn_##f##_math_f64;
#define NN_MATH(f) .math_f32 = &nn_##f##_math_f32, .math_f64 = &nn_##f##_math_f64
#define NN_PARTS(a) .parts = (a), .n_parts = (int)(sizeof(a) / sizeof((a)[0]))
extern const nn_format *const nn_formats[];
extern const int nn_n_formats;
/* The entry of a registry format, or NULL when the training engine cannot train it. */
const nn_format *nn_format_of(const bl_format_ops *f);

#endif
