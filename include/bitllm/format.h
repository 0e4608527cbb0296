/* Linear-layer weight formats. A linear layer maps x (n inputs) to y (m outputs); the weight W is
 * m×n row-major (PyTorch/safetensors convention). Every format is registered once, in the table
 * of src/formats/registry.c, through a bl_format_ops entry.
 *
 * Packed sign matrices (canonical layout, in memory and on disk, independent of the CPU):
 * row-major, each of the `rows` rows takes row_bytes = ceil(cols/8) bytes; bit (j & 7) of byte
 * (j >> 3) is 1 when S[i][j] = −1 and 0 when S[i][j] = +1 (sign(0) := +1). Padding bits are 0.
 * This is the layout of the released OneBit checkpoints (bit 1 = −1, LSB first). */
#ifndef BITLLM_FORMAT_H
#define BITLLM_FORMAT_H

#include "bitllm/io.h"
#include "bitllm/kernels.h"

static inline int64_t bl_sign_row_bytes(int64_t cols) { return (cols + 7) / 8; }
static inline int bl_sign_get(const uint8_t *bits, int64_t row_bytes, int64_t i, int64_t j) {
    return (bits[i * row_bytes + (j >> 3)] >> (j & 7)) & 1 ? -1 : 1;
}

/* The largest middle dimension (dbf k, mdbf r) that fits and checkpoints accept. It is not tied
 * to min(m, n): a layer may have a middle wider than its inputs or outputs. */
#define BL_MAX_MID ((int64_t)1 << 24)

/* Parameters a format may use; unused fields are ignored. Stored in the model's
 * quantization_config so a checkpoint says exactly how it was made. */
typedef struct {
    int bits;       /* rtnK: bits per weight code (1..8) */
    int group;      /* rtnK: input columns per scale/zero group (64 or 128) */
    int64_t mid;    /* dbf: middle dimension k; mdbf: rank r of each path */
    int rank_l;     /* mdbf: envelope rank l */
    int paths;      /* mdbf: number of paths P */
    bool post_ln;   /* onebit: parameter-free LayerNorm over the m outputs */
} bl_format_params;

typedef struct bl_linear bl_linear;

typedef struct bl_format_ops {
    const char *name; /* "dense", "onebit", "dbf", "mdbf", "rtn" (bits in params) */
    /* Exact number of bits this format stores for an m×n layer with params p (everything the
     * layer needs: sign bits, codes, FP16 vectors). bpw = stored_bits / (m·n). For "dense" the
     * dtype's width is taken from p->bits. */
    uint64_t (*stored_bits)(int64_t m, int64_t n, const bl_format_params *p);
    /* y (T×m) = x (T×n) · Ŵᵀ. work holds workspace_floats(L, T) floats (kernels never allocate).
     * The threads of ex's pool split output rows or tokens, and its ISA picks the kernels (ex may
     * be NULL: one thread, the default ISA); results do not depend on the thread count. */
    void (*forward)(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                    const bl_exec *ex);
    size_t (*workspace_floats)(const bl_linear *L, int64_t T);
    /* Ŵ as a dense m×n f32 matrix (for tests, rel_err and conversion). */
    bl_status (*to_dense)(const bl_linear *L, float *W, bl_err *err);
    /* Writes the layer's tensors as "<prefix>.<part>" (e.g. "model.layers.0.mlp.up_proj.sign"). */
    bl_status (*save)(const bl_linear *L, const char *prefix, bl_st_writer *w, bl_err *err);
    /* Reads the layer from ts; L->m, L->n, L->params and L->ops are set by the caller. Every
     * tensor's dtype and shape is validated. Sign bits stay views into ts when possible; their
     * repacking for the kernels uses ts->pool's threads. */
    bl_status (*load)(bl_linear *L, const char *prefix, const bl_tensor_set *ts, bl_err *err);
    void (*free_impl)(bl_linear *L);
    /* Relative tolerance of forward() against x·to_dense()ᵀ, used by the format tests. */
    double forward_tol;
} bl_format_ops;

struct bl_linear {
    const bl_format_ops *ops;
    int64_t m, n;
    bl_format_params params;
    void *impl; /* format-private data (see the structs below for the quantized formats) */
};

/* The registry. */
const bl_format_ops *bl_format_find(const char *name);
const bl_format_ops *const *bl_format_list(int *count);

static inline double bl_linear_bpw(const bl_linear *L) {
    return (double)L->ops->stored_bits(L->m, L->n, &L->params) / ((double)L->m * (double)L->n);
}
void bl_linear_free(bl_linear *L);

/* ---- dense (F32 / F16 / BF16 view of a checkpoint tensor) ---- */
/* Wraps a 2-D tensor (not copied: it must outlive L). */
bl_status bl_linear_dense_init(bl_linear *L, const bl_tensor *w, bl_err *err);
/* The stored bytes of a dense layer (false for other formats). */
bool bl_linear_dense_bytes(const bl_linear *L, const void **data, size_t *nbytes);

/* ---- quantized formats: the data their fitting functions produce ----
 * Vectors are float in memory but hold FP16-representable values (they are stored as F16), so a
 * fitted layer and its saved/loaded copy compute identical outputs. Sign matrices use the canonical
 * packed layout above. Each struct owns its buffers unless `view` is set (loaded from a mapped
 * file), in which case sign/code buffers point into the file and are not freed. */
typedef struct {
    int64_t m, n;
    uint8_t *sign;  /* m × ceil(n/8) */
    float *g;       /* n: input scale */
    float *h;       /* m: output scale */
    bool post_ln;
    bool view;
} bl_onebit;

typedef struct {
    int64_t m, n, k;
    uint8_t *A;     /* m × ceil(k/8) */
    uint8_t *B;     /* k × ceil(n/8) */
    float *a;       /* m */
    float *mu;      /* k */
    float *b;       /* n */
    bool view;
} bl_dbf;

typedef struct {
    uint8_t *SA;    /* m × ceil(r/8) */
    uint8_t *SB;    /* r × ceil(n/8) */
    float *A_env;   /* m × l (row-major) */
    float *Q_U;     /* r × l */
    float *Q_V;     /* r × l */
    float *B_env;   /* n × l */
} bl_mdbf_path;

typedef struct {
    int64_t m, n, r;
    int l, P;
    bl_mdbf_path *paths; /* P entries */
    bool view;
} bl_mdbf;

typedef struct {
    int64_t m, n;
    int bits;       /* 1: sign × per-row mean |W| (rtn1); 2..4: asymmetric per-group */
    int group;      /* columns per group (bits >= 2) */
    uint8_t *q;     /* bits == 1: packed signs m × ceil(n/8);
                       bits >= 2: codes, row-major, each row ceil(n·bits/8) bytes, LSB first */
    float *scale;   /* bits == 1: m; else m × ceil(n/group) */
    float *zero;    /* bits >= 2: m × ceil(n/group) (in code units); NULL for bits == 1 */
    bool view;
} bl_rtn;

/* Wrap fitted data into a layer (takes ownership of the struct's buffers). */
bl_status bl_linear_from_onebit(bl_linear *L, bl_onebit *q, bl_err *err);
bl_status bl_linear_from_dbf(bl_linear *L, bl_dbf *q, bl_err *err);
bl_status bl_linear_from_mdbf(bl_linear *L, bl_mdbf *q, bl_err *err);
bl_status bl_linear_from_rtn(bl_linear *L, bl_rtn *q, bl_err *err);

void bl_onebit_free(bl_onebit *q);
void bl_dbf_free(bl_dbf *q);
void bl_mdbf_free(bl_mdbf *q);
void bl_rtn_free(bl_rtn *q);

#endif
