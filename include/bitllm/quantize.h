/* Whole-model post-training quantization: every q,k,v,o,gate,up,down projection of every layer is
 * fitted with one method and the result is written as a loadable HF-style checkpoint
 * (docs/format.md). Embeddings, output head and norms are kept as they are. */
#ifndef BITLLM_QUANTIZE_H
#define BITLLM_QUANTIZE_H

#include "bitllm/model.h"
#include "bitllm/fit.h"

BL_API_BEGIN

/* ---- one matrix ---- */

typedef struct {
    bl_method method;    /* format + parameters; params.mid 0 = the largest that fits bpw */
    double bpw;          /* target of a format with a middle dimension, FP16 vectors counted;
                            0 = onebit's cost for the shape */
    bl_fit_opts fit;     /* seed, iterations, importances (trace is set by bl_fit_layer) */
    /* Benchmarks only: random factors of the fitted shapes; W is never read. */
    bool random_factors;
    /* Threads of the fit's parallel loops and products (0 = bl_default_threads()); the result
     * does not depend on it. Inside a parallel region (fits side by side) the fit runs on its
     * own thread whatever this says. */
    int n_threads;
} bl_layer_fit_opts;

void bl_layer_fit_opts_default(bl_layer_fit_opts *o);

/* What a fitted layer stores and how close it is to W. */
typedef struct {
    double bpw;          /* stored bits / (m·n), everything counted */
    int64_t mid;         /* middle dimension used (0 for formats without one) */
    double rel_err;      /* ‖W − Ŵ‖_F / ‖W‖_F (NaN with random factors) */
    /* the same weighted by the fit's importances, o_r·i_c per entry (under an activation metric
     * H the relative output error tr(diag(o)·E·H·Eᵀ)/tr(diag(o)·W·H·Wᵀ), E = W − Ŵ, o the output
     * importance or ones); = rel_err without them */
    double wrel_err;
    /* the weighted ‖W‖² that wrel_err is relative to (tr(diag(o)·W·H·Wᵀ), Σ o_r·i_c·w², or
     * ‖W‖²_F): wrel_err²·wnorm2 is the absolute weighted error (NaN/0 with random factors) */
    double wnorm2;
    int iters;           /* outer ADMM iterations (iterative fits; all paths together) */
    double seconds, cpu_seconds; /* wall and process CPU time of the fit */
    bl_fit_trace trace;  /* iterative fits: objective after every iteration, phase seconds, flops */
} bl_layer_fit_result;

/* The bpw a layer with a middle dimension is fitted to (o->bpw, or onebit's 1 + 16/n + 16/m),
 * and its middle dimension (params.mid, or the largest whose stored bits fit that target; 0 for
 * formats without one). */
double bl_layer_target_bpw(const bl_layer_fit_opts *o, int64_t m, int64_t n);
int64_t bl_layer_mid(const bl_layer_fit_opts *o, int64_t m, int64_t n);
/* BL_ERR_ARG (naming `name`) when the options cannot fit an m×n matrix, e.g. a bpw target
 * below the cost of middle dimension 1. No work is done. */
bl_status bl_layer_fit_check(const bl_layer_fit_opts *o, int64_t m, int64_t n, const char *name,
                             bl_err *err);
/* Fits W (m×n, row-major f32) into out (a layer of the method's format, owned by the caller)
 * and measures it. OpenBLAS uses all OpenMP threads during the fit. */
bl_status bl_fit_layer(const float *W, int64_t m, int64_t n, const bl_layer_fit_opts *o,
                       bl_linear *out, bl_layer_fit_result *res, bl_err *err);

/* The dense f32 copy (caller frees) of one matrix of a model: a decoder projection by its Hugging
 * Face name ("model.layers.3.mlp.down_proj.weight", whatever the file calls it and however it is
 * stored), or any other 2-D tensor by its name in the checkpoint. */
bl_status bl_model_matrix(const bl_model *m, const char *name, float **W, int64_t *rows,
                          int64_t *cols, bl_err *err);

/* ---- calibration data ---- */

typedef struct {
    int32_t *ids;
    size_t n;
    bool rows;       /* n/seq sequences of seq tokens, each starting with BOS (generated) */
    int seq;
    char what[160];  /* what the data is, for reports ("raw uint16 little-endian, 4096 tokens") */
} bl_calib_data;

/* A calibration file: text (tokenized with m's tokenizer, no BOS), a tokenized .npy (16- to
 * 64-bit integers, 1-D or 2-D, read in C order as one stream), or raw little-endian token ids
 * (int32 when the size is a multiple of 4 and every value is below the vocabulary, else uint16
 * when every value is). A file with zero bytes is binary, one without is text. Every id is
 * checked against the vocabulary. */
bl_status bl_calib_data_load(const bl_model *m, const char *path, bl_calib_data *out,
                             bl_err *err);
/* n_seq sequences of seq tokens sampled from m (bl_train_data_generate: BOS, a random first
 * token, a few greedy tokens, then temperature 1), from seed. */
bl_status bl_calib_data_generate(const bl_model *m, int64_t n_seq, int seq, uint64_t seed,
                                 bl_progress_fn progress, void *progress_ctx, bl_calib_data *out,
                                 bl_err *err);
void bl_calib_data_free(bl_calib_data *d);

/* ---- a whole model ---- */

/* One projection of a per-matrix bit allocation (bl_quant_opts.allocate). */
typedef struct {
    char name[96];               /* Hugging Face name, e.g. model.layers.0.mlp.down_proj */
    int64_t m, n;
    int64_t mid_uniform, mid;    /* the uniform run's middle dimension and the chosen one */
    double bpw_uniform, bpw;     /* stored bits / (m·n) at each */
    double sensitivity;          /* the weight of its error (mean squared output gradient, or 1) */
    double budget_bits, allocated_bits; /* the whole model's: the uniform total and the chosen */
} bl_alloc_entry;

/* One block of block-wise reconstruction, as reported after it is finished (or resumed). Losses
 * are mean squared errors of the block's output against its target over every calibration token;
 * rel_* divide by the mean square of the target. */
typedef struct {
    int block, blocks;
    double loss_before, loss_after, rel_before, rel_after;
    int steps;               /* optimizer steps taken */
    int64_t flips;           /* factor signs flipped by training (factored formats), even if
                              * reverted */
    bool reverted;           /* training did not lower the loss: the initial fit was kept */
    bool resumed;            /* read back from the saved state of an earlier run */
    double seconds;          /* wall time of the block */
    double fit_s, forward_s, backward_s; /* of which: initial fits, forward and backward passes */
} bl_recon_block;

/* Block-wise reconstruction (docs/reconstruct.md) and global scale calibration. */
typedef struct {
    bool block;              /* reconstruct block by block (needs calibration tokens) */
    bool target_quant;       /* target: FP block on the quantized inputs (default: FP inputs) */
    int epochs;              /* passes over the calibration sequences per block (default 2) */
    int batch;               /* sequences per optimizer step (default 4) */
    double lr;               /* Adam learning rate, cosine to 0 (default 1e-3) */
    /* factored formats (frozen sign-matrix factors): each sign of a factor has a latent score
     * (±0.01 at the start) trained by Adam at sign_lr (cosine like lr; default 3e-4); a sign flips
     * when its score crosses zero (straight-through), at most flip_frac of each sign matrix per
     * step, largest scores first (default 1: no cap) */
    double sign_lr;
    double flip_frac;
    /* Bytes of calibration activations kept in RAM (0 = no limit); beyond, they are written to
     * files in state_dir (or the output directory) and streamed back. */
    uint64_t mem_limit;
    /* Where the state after each finished block is saved (atomically) so that a killed run with
     * the same options resumes after the last finished block; NULL = no state. */
    const char *state_dir;
    /* Then, every sign frozen, the FP16 vectors of every quantized layer are tuned to minimise
     * KL(FP ‖ quantized) over the calibration sequences for kl_epochs (default 1) at kl_lr
     * (default 1e-2). */
    bool calibrate_scales;
    int kl_epochs;
    double kl_lr;
    /* Progress: after each finished block, and every few steps (what, done, total, eta seconds). */
    void (*on_block)(void *ctx, const bl_recon_block *b);
    void (*on_progress)(void *ctx, const char *what, int done, int total, double eta_s);
    void *ctx;
} bl_recon_opts;

typedef struct {
    bl_method method;    /* format + parameters (default onebit) */
    double bpw;          /* target of a format with a middle dimension, FP16 vectors counted */
    /* formats that read it, with calibration: fit under the inputs' covariance H = XᵀX/N of each
     * projection, i.e. minimize the output error ‖(W − Ŵ)·X‖² (default true); false fits with
     * the diagonal input importance mean x² only (the earlier recipe). */
    bool activation_aware;
    bl_fit_opts fit;     /* seed, iterations, nmf, ... (importance filled from calibration) */
    /* Benchmarks only: skip fitting and never read the source layers' weights; every projection
     * gets random factors (bl_random_*) of exactly the shapes and bpw the fit would produce for
     * these options. The model computes nonsense. Refused with calibration or gradient stats. */
    bool random_factors;
    /* Calibration: token ids run through the FP model in windows of calib_ctx tokens. */
    const int32_t *calib_ids;
    size_t n_calib;
    int calib_ctx;
    const char *calib_source; /* the calibration data's file (or how it was made), recorded in
                                 the provenance */
    /* calib_ids holds n_calib / calib_ctx sequences of calib_ctx tokens that already start with
     * BOS (generated by the model), not a token stream to cut into windows. */
    bool calib_rows;
    bl_recon_opts recon;
    /* Output-channel importance from a backward pass over the calibration tokens
     * (bl_quant_grad_importance), for the methods that use calibration; default on. */
    bool grad_importance;
    /* Or given: n_layers·BL_PROJ_COUNT arrays of each projection's m values (then no pass). */
    float *const *out_importance;
    /* Per-matrix bit budget (formats with a middle dimension): every projection's
     * middle dimension is chosen, from its error-vs-bits curve (short fits at a few sizes) and
     * its output sensitivity, to minimize the summed weighted error under the total stored bits
     * of the uniform run at this bpw (src/ptq/allocate.c); on_alloc receives the table, progress
     * the fraction of the curve fits done. */
    bool allocate;
    void (*on_alloc)(void *ctx, const bl_alloc_entry *e);
    void *on_alloc_ctx;
    bl_progress_fn progress;
    void *progress_ctx;
    /* Stages run in order after the per-layer initial fits, before the checkpoint is written
     * (e.g. block-wise reconstruction, a per-matrix bit allocation); their names go into the
     * provenance. */
    const struct bl_quant_stage *stages;
    int n_stages;
    /* Called after each layer with its result (rel_err is NaN with random_factors); with block
     * reconstruction, the initial fit of each block's layers (blocks resumed from a saved state
     * are not reported again). */
    void (*on_layer)(void *ctx, const char *name, int64_t m, int64_t n,
                     const bl_layer_fit_result *r);
    void *on_layer_ctx;
    /* Extra text stored in config.json's quantization_config (e.g. the command line). */
    const char *provenance;
    /* Threads for the fits and the calibration pass (0 = bl_default_threads()); results do not
     * depend on it. */
    int n_threads;
    /* The token embeddings and the output head: NULL keeps them as they are (the default);
     * "f16" stores them as dense F16; any other value is a method spec of the registry
     * ("q8_0", "q4_0", "qsym:bits=6"; for the head also a 1-bit format: "onebit", "dbf", ...),
     * fitted from the dense table (random factors with random_factors). The embeddings need a
     * format with a row lookup. A quantized table is never tied: a tied model gets its head
     * written separately, as it was unless `head` says otherwise. */
    const char *embed, *head;
} bl_quant_opts;

void bl_quant_opts_default(bl_quant_opts *o);
/* Whether block-wise reconstruction can train layers of this method (the nn formats). */
bool bl_recon_supports(const bl_method *m);

/* A recipe is calibration → per-layer initial fits → optional stages → the checkpoint. A stage
 * sees the source model, the options (calibration tokens included) and the fitted layers
 * (n_layers·BL_PROJ_COUNT, layer-major), which it may refine or replace in place (a replaced
 * layer is freed with bl_linear_free first). */
typedef struct bl_quant_stage {
    const char *name;
    bl_status (*run)(void *ctx, const bl_model *src, const bl_quant_opts *o, bl_linear *layers,
                     bl_err *err);
    void *ctx;
} bl_quant_stage;

/* The output-gradient importance of every projection over n calibration ids in windows of ctx
 * tokens: bl_grad_stats scaled to mean 1 per projection, + 1e-6. *out receives
 * n_layers·BL_PROJ_COUNT arrays (free with bl_quant_importance_free). */
bl_status bl_quant_grad_importance(const bl_model *m, const int32_t *ids, size_t n, int ctx,
                                   float ***out, bl_err *err);
void bl_quant_importance_free(const bl_model *m, float **imp);

/* The provenance a quantized checkpoint in model_dir was written with (the JSON text of its
 * config.json quantization_config.provenance; caller frees). */
bl_status bl_quant_provenance(const char *model_dir, char **json, bl_err *err);

typedef struct {
    double bpw_layers;     /* stored bits of the quantized projections / their weights */
    double bpw_model;      /* stored bits of every tensor written / parameter count */
    uint64_t bytes;        /* bytes of model.safetensors */
    double seconds;
    /* recon.calibrate_scales: mean KL(FP ‖ quantized) per token over the calibration
     * sequences before and after (NaN otherwise) */
    double kl_before, kl_after;
    int blocks_resumed;    /* blocks read back from an earlier run's state */
    bool spilled;          /* the calibration activations were streamed from a file (--mem) */
} bl_quant_summary;

/* Quantizes src into outdir (created if needed; files written atomically). In a job of several
 * MPI ranks (bitllm/dist.h) every rank calls it: each fits its share of the projections (the
 * largest first onto the least-loaded rank), rank 0 gathers them and writes outdir, which the
 * others ignore (NULL is fine) and for which they get a summary of zeros but the seconds. The
 * output is byte-identical to a run alone: every projection's seed depends on its index only. */
bl_status bl_quantize_model(const bl_model *src, const bl_quant_opts *o, const char *outdir,
                            bl_quant_summary *sum, bl_err *err);

/* Writes a model (its current layers, whatever their formats) as an HF-style directory:
 * config.json (+ quantization_config when a layer is not dense), model.safetensors and the
 * tokenizer files. Used by quantize and by distillation checkpoints. */
bl_status bl_model_save(const bl_model *m, const char *outdir, const char *method,
                        const char *extra_json, bl_err *err);

BL_API_END
#endif
