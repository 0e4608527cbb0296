/* Whole-model post-training quantization: every q,k,v,o,gate,up,down projection of every layer is
 * fitted with one method and the result is written as a loadable HF-style checkpoint
 * (docs/format.md). Embeddings, output head and norms are kept as they are. */
#ifndef BITLLM_QUANTIZE_H
#define BITLLM_QUANTIZE_H

#include "bitllm/model.h"
#include "bitllm/quant.h"

typedef enum {
    BL_QM_RTN1 = 0, BL_QM_RTN2, BL_QM_RTN3, BL_QM_RTN4, BL_QM_ONEBIT, BL_QM_DBF, BL_QM_MDBF,
    BL_QM_COUNT
} bl_qmethod;

const char *bl_qmethod_name(bl_qmethod q);
bool bl_qmethod_from_name(const char *name, bl_qmethod *out);

/* Parameters of bl_quant_opts that only some methods read. */
typedef enum {
    BL_QP_BPW,              /* bpw: dbf/mdbf size target */
    BL_QP_SVID,             /* fit.nmf: onebit's SVID by NMF or SVD */
    BL_QP_ENVELOPE_RANK,    /* rank_l */
    BL_QP_PATHS,            /* paths */
    BL_QP_ACTIVATION_AWARE, /* activation_aware */
    BL_QP_ADAM_STEPS,       /* fit.adam_steps */
    BL_QP_GROUP,            /* group */
    BL_QP_CALIB,            /* calib_ids, out_importance */
    BL_QP_ITERS,            /* fit.iters */
    BL_QP_SEED,             /* fit.seed */
    BL_QP_COUNT
} bl_qparam;
/* Whether method m reads parameter p: fitted, or with random factors (which read only what fixes
 * the shapes, and the seed). One table (src/model/quantize.c) for every caller that must refuse
 * an option a method would ignore. */
bool bl_qmethod_uses(bl_qmethod m, bool random_factors, bl_qparam p);
/* The methods that read p, as "dbf, mdbf" ("none" if none). */
void bl_qparam_users(bl_qparam p, bool random_factors, char *buf, size_t cap);

typedef struct {
    bl_qmethod method;
    double bpw;          /* dbf/mdbf target for the quantized layers, FP16 vectors counted */
    int group;           /* rtn2..4 group size (default 128) */
    int rank_l;          /* mdbf envelope rank (default 1... see bl_quant_opts_default) */
    int paths;           /* mdbf paths */
    bool activation_aware; /* mdbf: weight the fit by H = XᵀX/N from calibration */
    bl_fit_opts fit;     /* seed, iterations, nmf, ... (importance filled from calibration) */
    /* Benchmarks only: skip fitting and never read the source layers' weights; every projection
     * gets random factors (bl_random_*) of exactly the shapes and bpw the fit would produce for
     * these options. The model computes nonsense. Refused with calibration or gradient stats. */
    bool random_factors;
    /* Calibration: token ids run through the FP model in windows of calib_ctx tokens. */
    const int32_t *calib_ids;
    size_t n_calib;
    int calib_ctx;
    /* Optional per-output-channel importance (mean squared output gradients, ALGORITHMS.md §4):
     * n_layers·BL_PROJ_COUNT arrays of each projection's m values, e.g. from bl_grad_stats. */
    float *const *out_importance;
    /* Called after each layer with its result (rel_err is NaN with random_factors). */
    void (*on_layer)(void *ctx, const char *name, int64_t m, int64_t n, double bpw,
                     double rel_err, double seconds);
    void *on_layer_ctx;
    /* Extra text stored in config.json's quantization_config (e.g. the command line). */
    const char *provenance;
    /* Threads for the fits and the calibration pass (0 = bl_default_threads()); results do not
     * depend on it. */
    int n_threads;
} bl_quant_opts;

void bl_quant_opts_default(bl_quant_opts *o);

typedef struct {
    double bpw_layers;     /* stored bits of the quantized projections / their weights */
    double bpw_model;      /* stored bits of every tensor written / parameter count */
    uint64_t bytes;        /* bytes of model.safetensors */
    double seconds;
} bl_quant_summary;

/* Quantizes src into outdir (created if needed; files written atomically). */
bl_status bl_quantize_model(const bl_model *src, const bl_quant_opts *o, const char *outdir,
                            bl_quant_summary *sum, bl_err *err);

/* Writes a model (its current layers, whatever their formats) as an HF-style directory:
 * config.json (+ quantization_config when a layer is not dense), model.safetensors and the
 * tokenizer files. Used by quantize and by distillation checkpoints. */
bl_status bl_model_save(const bl_model *m, const char *outdir, const char *method,
                        const char *extra_json, bl_err *err);

#endif
